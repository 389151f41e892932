"""The mean-scale hyperprior (Minnen et al. 2018, without its autoregressive context): h_s predicts
a scale and a mean per latent; the coder rounds the mean to an integer, so y_hat - mean stays an
integer symbol and the mean costs no precision across devices."""
from __future__ import annotations

from .registry import register
from .base import Family


@register
class MeanScale(Family):
    name = "mean-scale"
    tag = "msh"
    legacy_flags = {"means": True}
    parent = "hyperprior"
    scales_only = False

    def grow(self, state: dict, model) -> dict:
        """A scale-only model -> mean-scale, predicting mean 0 at first: h_s's last convolution
        gets M more output channels (the means) with zero weights; its ReLU goes (a parameter-free
        layer, and the coder's scales are clamped at 0 anyway)."""
        import torch

        state = dict(state)
        last = f"h_s.{len(model.config.layers()['h_s']) - 1}"
        w, b = state[f"{last}.weight"], state[f"{last}.bias"]
        if w.shape[0] == model.config.M:
            state[f"{last}.weight"] = torch.cat([w, torch.zeros_like(w)])
            state[f"{last}.bias"] = torch.cat([b, torch.zeros_like(b)])
        return state
