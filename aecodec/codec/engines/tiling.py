"""Tiles for the transforms, so that peak memory stays bounded for huge images (both engines).

Convolutions only see a few latents around each output, so a halo of HALO latents around every
tile makes the tiled result equal the whole-image one up to float rounding: no seams. Images up to
TILE (analysis) or TILE_S (synthesis) latents per side are a single tile.

Both engines index with the same `Tile`s; the first two axes of `src` / `dst` are rows and
columns (numpy's (H, W, C) arrays directly, torch's (N, C, H, W) tensors after an Ellipsis).
"""
from __future__ import annotations

from typing import NamedTuple

from ..config import Y_STRIDE

TILE = 1024 // Y_STRIDE   # latents per analysis tile side (1024 pixels)
TILE_S = 768 // Y_STRIDE  # latents per synthesis tile side (768 pixels: g_s has the larger activations)
# Latents of context on each side (32 pixels): all that g_a and g_s can see. Four 5x5 stride-2
# layers reach 30 pixels (g_a) or 1 + 1/2 + 1/4 + 1/8 latents (g_s) from a position: within 2
# latents either way (tests/codec/test_tiling.py measures it on each shipped model). 4 until
# 0.17.1: the same pixels, ~12 % more work for the synthesis of a large image.
HALO = 2


class Tile(NamedTuple):
    src: tuple[slice, slice]   # the transform's input: the tile and its halo
    crop: tuple[slice, slice]  # the tile within the transform's output
    dst: tuple[slice, slice]   # where that goes in the whole output


def _windows(h: int, w: int, size: int) -> list[tuple[int, int, int, int, int, int, int, int]]:
    """Tiles of an (h, w) latent grid: (r0, r1, c0, c1) the tile, (a0, a1, b0, b1) it with its
    halo (clipped to the grid)."""
    out = []
    for r0 in range(0, h, size):
        r1 = min(r0 + size, h)
        for c0 in range(0, w, size):
            c1 = min(c0 + size, w)
            out.append((r0, r1, c0, c1, max(0, r0 - HALO), min(h, r1 + HALO), max(0, c0 - HALO), min(w, c1 + HALO)))
    return out


def analysis_tiles(h: int, w: int) -> list[Tile]:
    """g_a over an image of (h, w) latents: src in pixels, crop and dst in latents."""
    s = Y_STRIDE
    return [Tile((slice(s * a0, s * a1), slice(s * b0, s * b1)),
                 (slice(r0 - a0, r1 - a0), slice(c0 - b0, c1 - b0)),
                 (slice(r0, r1), slice(c0, c1)))
            for r0, r1, c0, c1, a0, a1, b0, b1 in _windows(h, w, TILE)]


def synthesis_tiles(h: int, w: int, height: int, width: int) -> list[Tile]:
    """g_s from (h, w) latents to a (height, width) image: src in latents, crop and dst in pixels
    (the padding beyond height x width is never written; tiles wholly in it are skipped)."""
    s, out = Y_STRIDE, []
    for r0, r1, c0, c1, a0, a1, b0, b1 in _windows(h, w, TILE_S):
        if s * r0 >= height or s * c0 >= width:
            continue
        y0, x0 = s * (r0 - a0), s * (c0 - b0)
        rows, cols = min(s * r1, height) - s * r0, min(s * c1, width) - s * c0
        out.append(Tile((slice(a0, a1), slice(b0, b1)),
                        (slice(y0, y0 + rows), slice(x0, x0 + cols)),
                        (slice(s * r0, s * r0 + rows), slice(s * c0, s * c0 + cols))))
    return out
