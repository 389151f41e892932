"""The numpy engine: the transforms in float32 on (H, W, C) arrays, on the CPU, without torch.

A CLI call on the CPU codes with this engine and never imports torch: start-up is ~0.1 s of
imports instead of ~1 s. Its programs are built from the model's layer lists (numpy_net.py); same
arithmetic as the torch model up to float32 summation order: the latents it decodes are identical
to the torch engine's (same entropy coder), and its pixels agree with them to within one level on
rare pixels. No shared mutable state: calls may run in parallel.
"""
from __future__ import annotations

import numpy as np

from .. import gains, numpy_ops as ops
from ..numpy_net import Program
from .base import Engine


class NumpyEngine(Engine):
    kind = "numpy"
    transforms = ("g_a", "h_a", "g_s")  # the programs it builds (a subclass may run some elsewhere)

    def __init__(self, weights, device=None):
        if device not in (None, "cpu"):
            raise ValueError(f"the numpy engine runs on the CPU, not {device!r}")
        super().__init__(weights, device)
        tensors, layers = weights.tensors, weights.config.layers()
        try:
            self.programs = {name: Program(layers[name], tensors, name) for name in self.transforms}
            self.gain = np.abs(tensors["gain"]).astype(np.float32)
            self.inv_gain = np.abs(tensors["inv_gain"]).astype(np.float32)
        except (KeyError, ValueError) as e:
            from ...errors import AecError

            raise AecError(f"weights file does not fit the model: {e}") from None

    def image(self, rgb):
        return rgb.astype(np.float32) / np.float32(255)

    def at(self, rows_cols):
        return rows_cols

    def latents(self, h, w):
        return np.empty((h, w, self.channels), np.float32)

    def latent_size(self, y_hat):
        return y_hat.shape[:2]

    def gains(self, quality):
        if gains.is_level(quality):
            i = int(quality) - 1
            return self.gain[i], self.inv_gain[i]
        return tuple(gains.between_levels(v, quality, np.log, np.exp) for v in (self.gain, self.inv_gain))

    def g_a(self, x):
        with ops.one_blas_thread():
            return self.programs["g_a"](x)

    def gate(self, y, g, k):
        return ops.gate_quantize(y * g, k)

    def h_a(self, y_hat):
        with ops.one_blas_thread():
            return self.programs["h_a"](np.abs(y_hat))

    def tile_pixels(self, y_hat, quality, crop):
        _, ig = self.gains(quality)
        with ops.one_blas_thread():
            x = self.programs["g_s"](np.ascontiguousarray(y_hat) * ig)
        px = np.clip(x[crop], 0, 1)
        px *= 255
        return np.round(px)

    def to_chw(self, a):
        return a.transpose(2, 0, 1)

    def from_chw(self, a):
        return a.transpose(1, 2, 0)


ENGINE = NumpyEngine
