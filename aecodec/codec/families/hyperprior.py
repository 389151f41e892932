"""The scale hyperprior (Balle et al. 2018): h_s predicts one scale per latent (after a ReLU); each
latent is coded with a zero-mean Gaussian of that scale, all in one pass. The first aecodec
models; the base class is all of it."""
from __future__ import annotations

from .registry import register
from .base import Family


@register
class Hyperprior(Family):
    name = "hyperprior"
    tag = "hp"
    legacy_flags = {}
