"""The numpy engine: coding on the CPU without torch (numpy_model), tiled for huge images.

The coder (coder.py) drives an engine through: analyze(rgb) once per image, then quantize,
entropy_code and pixels per coding; decode_latents and pixels to decode. This engine codes every
file on the CPU; the torch engine (torch_engine.py) runs the same steps on a GPU and refines
latents (effort > 0).
"""
from __future__ import annotations

import contextlib

import numpy as np

from . import tiling
from .config import PAD
from .numpy_model import NumpyModel


class NumpyEngine:
    kind = "numpy"

    def __init__(self, model: NumpyModel):
        self.model = model
        self.name, self.digest, self.default_k, self.channels = model.name, model.digest, model.default_k, \
            model.channels

    def session(self):
        return contextlib.nullcontext()  # no shared mutable state: calls may run in parallel

    def analyze(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 -> y (h, w, M): padded to multiples of PAD by repeating the edge."""
        h, w = rgb.shape[:2]
        rgb = np.pad(rgb, ((0, (-h) % PAD), (0, (-w) % PAD), (0, 0)), mode="edge")
        x = rgb.astype(np.float32) / np.float32(255)
        hl, wl = x.shape[0] // 16, x.shape[1] // 16
        if hl <= tiling.TILE and wl <= tiling.TILE:
            return self.model.analyze(x)
        y = np.empty((hl, wl, self.channels), np.float32)
        for r0, r1, c0, c1, a0, a1, b0, b1 in tiling.windows(hl, wl, tiling.TILE):
            t = self.model.analyze(x[16 * a0:16 * a1, 16 * b0:16 * b1])
            y[r0:r1, c0:c1] = t[r0 - a0:r1 - a0, c0 - b0:c1 - b0]
        return y

    def quantize(self, y: np.ndarray, quality, k: int):
        return self.model.quantize_latents(y, quality, k)

    def entropy_code(self, y_hat: np.ndarray, z: np.ndarray) -> tuple[bytes, bytes]:
        return self.model.encode_latents(y_hat, z)

    def decode_latents(self, y_bytes: bytes, z_bytes: bytes, z_shape: tuple[int, int]) -> np.ndarray:
        return self.model.decode_latents(y_bytes, z_bytes, z_shape)

    def pixels(self, y_hat: np.ndarray, quality, height: int, width: int) -> np.ndarray:
        """g_s tile by tile, straight to cropped 8-bit pixels (height, width, 3)."""
        h, w = y_hat.shape[:2]
        out = np.empty((height, width, 3), np.uint8)
        for r0, r1, c0, c1, a0, a1, b0, b1 in tiling.windows(h, w, tiling.TILE_S):
            if 16 * r0 >= height or 16 * c0 >= width:
                continue
            t = self.model.synthesize(np.ascontiguousarray(y_hat[a0:a1, b0:b1]), quality)
            y0, x0 = 16 * (r0 - a0), 16 * (c0 - b0)
            rows, cols = min(16 * r1, height) - 16 * r0, min(16 * c1, width) - 16 * c0
            t = np.clip(t[y0:y0 + rows, x0:x0 + cols], 0, 1)
            t *= 255
            out[16 * r0:16 * r0 + rows, 16 * c0:16 * c0 + cols] = np.round(t)
        return out
