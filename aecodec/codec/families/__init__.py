"""Entropy models as families: how a model codes its latents y given the hyperprior (CompressAI's
latent_codecs, in aecodec's terms). Torch-free to import.

Each family is one module here holding both sides of its entropy model: the training side (the
modules it adds to the torch model, how h_s's output and the decoded neighbours become each
latent's scale and mean) and the device-exact coder side (float64 parameters, the order of the
symbols in the stream, rANS). A model's config names its family; `get` finds it.

    hyperprior    scales only (Balle et al. 2018)
    mean-scale    scales and integer means (Minnen et al. 2018, without the autoregressive context)
    checkerboard  mean-scale + a checkerboard context over the anchors (He et al. 2021)
    channel-checkerboard  the checkerboard + uneven channel groups, each conditioned on the ones
                  before it (ELIC, He et al. 2022)

A new family: a module with a `Family` subclass decorated with `@register`, imported below.
"""
from __future__ import annotations

from . import channel_checkerboard, checkerboard, hyperprior, mean_scale  # noqa: F401  (they register themselves)
from .base import EntropyCoder, Family
from .registry import from_flags, get, lineage, names, register

__all__ = ["EntropyCoder", "Family", "from_flags", "get", "lineage", "names", "register"]
