"""Tiles for the transforms, so that peak memory stays bounded for huge images (both engines).

Convolutions only see a few latents around each output, so a halo of HALO latents around every
tile makes the tiled result equal the whole-image one up to float rounding: no seams. Images up to
TILE (analysis) or TILE_S (synthesis) latents per side are a single tile.
"""
from __future__ import annotations

TILE = 1024 // 16   # latents per analysis tile side (1024 pixels)
TILE_S = 768 // 16  # latents per synthesis tile side (768 pixels: g_s has the larger activations)
HALO = 4            # latents of context on each side (64 pixels), more than g_a/g_s can see


def windows(h: int, w: int, size: int) -> list[tuple[int, int, int, int, int, int, int, int]]:
    """Tiles of an (h, w) latent grid: (r0, r1, c0, c1) the tile, (a0, a1, b0, b1) it with its
    halo (clipped to the grid)."""
    out = []
    for r0 in range(0, h, size):
        r1 = min(r0 + size, h)
        for c0 in range(0, w, size):
            c1 = min(c0 + size, w)
            out.append((r0, r1, c0, c1, max(0, r0 - HALO), min(h, r1 + HALO), max(0, c0 - HALO), min(w, c1 + HALO)))
    return out
