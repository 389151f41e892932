"""The engine interface, and what every engine shares: padding, tiling, gain + gate + h_a, the
entropy coder (the weights' family's, float64 on the CPU for every engine, so a file made by any
engine on any device decodes on any other), and 8-bit pixels out.

The coder (coder.py) drives an engine through: analyze(rgb) once per image, then quantize,
entropy_code and pixels per coding; decode_latents and pixels to decode. A subclass supplies the
array-level steps (the `# ---- per engine` block): its own array type and layout, with `at`
turning a tile's (rows, cols) slices into an index of that layout.
"""
from __future__ import annotations

import contextlib

import numpy as np

from ..config import PAD, Y_STRIDE
from ..weights import Weights
from . import tiling


class Analysis:
    """One image analysed: the padded input x (kept only by engines that refine), g_a's output y,
    the picture's (height, width)."""

    def __init__(self, x, y, size: tuple[int, int]):
        self.x, self.y, self.size = x, y, size


class Engine:
    kind = ""
    keeps_input = False  # whether Analysis keeps the padded image (refinement needs it)

    def __init__(self, weights: Weights, device=None):
        self.weights = weights
        self.name, self.digest, self.default_k = weights.name, weights.digest, weights.default_k
        self.channels = weights.config.M
        self.coder = weights.coder()

    def prepare(self, *transforms: str) -> None:
        """Build these transforms ("g_a", "g_s") ahead of their first use, where an engine builds
        them lazily: their failures then surface here (the CPU engine's choice falls back on them)."""

    def session(self):
        """A context to run one coding in (locks, inference mode); calls may nest."""
        return contextlib.nullcontext()

    # ---- shared ---------------------------------------------------------------------------------
    def analyze(self, rgb: np.ndarray) -> Analysis:
        """(H, W, 3) uint8 -> g_a's output, padded to multiples of PAD by repeating the edge and
        tiled for large images (tiling.py)."""
        h, w = rgb.shape[:2]
        padded = np.pad(rgb, ((0, (-h) % PAD), (0, (-w) % PAD), (0, 0)), mode="edge")
        x = self.image(padded)
        hl, wl = padded.shape[0] // Y_STRIDE, padded.shape[1] // Y_STRIDE
        if hl <= tiling.TILE and wl <= tiling.TILE:
            y = self.g_a(x)
        else:
            y = self.latents(hl, wl)
            for t in tiling.analysis_tiles(hl, wl):
                y[self.at(t.dst)] = self.g_a(x[self.at(t.src)])[self.at(t.crop)]
        return Analysis(x if self.keeps_input else None, y, (h, w))

    def quantize(self, state: Analysis, quality, k: int):
        """-> (y_hat, z): gain for the quality, k-sparse gate and rounding, h_a."""
        g, _ = self.gains(quality)
        y_hat = self.gate(state.y, g, k)
        return y_hat, self.h_a(y_hat)

    def entropy_code(self, y_hat, z) -> tuple[bytes, bytes]:
        return self.coder.encode(self.to_chw(y_hat), self.to_chw(z))

    def decode_latents(self, y_bytes: bytes, z_bytes: bytes, z_shape: tuple[int, int]):
        """-> y_hat; ValueError for a damaged stream (families.base.EntropyCoder.decode)."""
        return self.from_chw(self.coder.decode(y_bytes, z_bytes, z_shape))

    def pixels(self, y_hat, quality, height: int, width: int) -> np.ndarray:
        """g_s tile by tile, straight to cropped 8-bit pixels (height, width, 3)."""
        h, w = self.latent_size(y_hat)
        out = np.empty((height, width, 3), np.uint8)
        for t in tiling.synthesis_tiles(h, w, height, width):
            out[t.dst] = self.tile_pixels(y_hat[self.at(t.src)], quality, t.crop)
        return out

    # ---- per engine -------------------------------------------------------------------------------
    def image(self, rgb: np.ndarray):
        """Padded (H, W, 3) uint8 -> the engine's float image in [0, 1]."""
        raise NotImplementedError

    def at(self, rows_cols: tuple[slice, slice]):
        """A tile's (rows, cols) slices -> an index into the engine's image or latent arrays."""
        raise NotImplementedError

    def latents(self, h: int, w: int):
        """An uninitialised float32 array for (h, w) latents of all channels."""
        raise NotImplementedError

    def latent_size(self, y_hat) -> tuple[int, int]:
        raise NotImplementedError

    def gains(self, quality):
        """(gain, inverse gain) of a quality, shaped to multiply the engine's latents."""
        raise NotImplementedError

    def g_a(self, x):
        raise NotImplementedError

    def gate(self, y, g, k: int):
        """The k-sparse gate and rounding of y * g (kernels.reference's rule)."""
        raise NotImplementedError

    def h_a(self, y_hat):
        """h_a of |y_hat|."""
        raise NotImplementedError

    def tile_pixels(self, y_hat, quality, crop: tuple[slice, slice]) -> np.ndarray:
        """g_s of a tile of latents, cropped: (rows, cols, 3) values in 0..255 (rounded)."""
        raise NotImplementedError

    def to_chw(self, a) -> np.ndarray:
        """Latents -> (C, h, w) numpy, the entropy coder's layout."""
        raise NotImplementedError

    def from_chw(self, a: np.ndarray):
        raise NotImplementedError
