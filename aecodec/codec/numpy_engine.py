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
from .config import PAD, Y_STRIDE
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
        hl, wl = x.shape[0] // Y_STRIDE, x.shape[1] // Y_STRIDE
        if hl <= tiling.TILE and wl <= tiling.TILE:
            return self.model.analyze(x)
        y = np.empty((hl, wl, self.channels), np.float32)
        for t in tiling.analysis_tiles(hl, wl):
            y[t.dst] = self.model.analyze(x[t.src])[t.crop]
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
        for t in tiling.synthesis_tiles(h, w, height, width):
            px = np.clip(self.model.synthesize(np.ascontiguousarray(y_hat[t.src]), quality)[t.crop], 0, 1)
            px *= 255
            out[t.dst] = np.round(px)
        return out
