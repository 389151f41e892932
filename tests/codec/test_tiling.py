"""Tiles (codec/engines/tiling.py): bounded memory for huge images without seams, in every engine."""
import numpy as np
import pytest

from aecodec.codec import coder, engines
from aecodec.codec.engines import tiling


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_tiled_transforms_have_no_seams(kodak_crop, monkeypatch, kind):
    engine = engines.create(kind, **({"device": "cpu"} if kind == "torch" else {}))
    img = np.asarray(kodak_crop.resize((200, 136)))
    whole = coder.decode(coder.encode(img, "RGB", 5, engine=engine), engine=engine)[0]
    monkeypatch.setattr(tiling, "TILE", 4)  # 64-pixel tiles: 4 x 3 tiles with halos
    monkeypatch.setattr(tiling, "TILE_S", 3)
    data = coder.encode(img, "RGB", 5, engine=engine)
    tiled = coder.decode(data, engine=engine)[0]
    # analysis tiles: float32, equal up to rounding (a symbol may flip, so compare pixels loosely)
    assert np.abs(whole.astype(int) - tiled.astype(int)).max() <= 8
    assert (whole != tiled).mean() < 0.01
    # synthesis tiles (float32): the same file decodes tiled or not to pixels that differ only
    # where float32 summation order flips a rounding (one level, rare pixels)
    monkeypatch.setattr(tiling, "TILE", 64)
    monkeypatch.setattr(tiling, "TILE_S", 48)
    untiled = coder.decode(data, engine=engine)[0]
    diff = np.abs(untiled.astype(int) - tiled.astype(int))
    print("synthesis tiles: max diff", diff.max(), "fraction differing", (diff > 0).mean())
    assert diff.max() <= 1
    assert (diff > 0).mean() < 0.001


@pytest.mark.parametrize("height,width", [(200, 330), (64, 64), (1000, 17)])
def test_tiles_cover_each_output_exactly_once(height, width, monkeypatch):
    """Every engine writes whatever the tiles say: every latent / pixel once, none twice, the
    crops the size of their destinations."""
    monkeypatch.setattr(tiling, "TILE", 4)
    monkeypatch.setattr(tiling, "TILE_S", 3)
    h, w = -(-height // 64) * 4, -(-width // 64) * 4  # latents of the image padded to 64
    for tiles, shape in ((tiling.analysis_tiles(h, w), (h, w)),
                         (tiling.synthesis_tiles(h, w, height, width), (height, width))):
        hits = np.zeros(shape, int)
        for t in tiles:
            hits[t.dst] += 1
            assert [s.stop - s.start for s in t.crop] == [s.stop - s.start for s in t.dst]
        assert (hits == 1).all()
