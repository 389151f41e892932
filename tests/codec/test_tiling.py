"""Tiles (codec/engines/tiling.py): bounded memory for huge images without seams, in every engine."""
import numpy as np
import pytest

from aecodec.codec import coder, engines
from aecodec.codec.engines import tiling
from aecodec.codec.zoo import shipped_models


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


@pytest.mark.parametrize("model", sorted(shipped_models()))
def test_halo_covers_what_the_transforms_see(model):
    """A tile's halo must hold every input its outputs depend on, or tiles would leave seams:
    one changed latent moves only pixels within HALO latents of it (g_s), one changed pixel only
    latents within HALO latents of it (g_a), measured on the shipped model's networks (the same shapes in both runs: the same float32 sums)."""
    from aecodec.codec.config import Y_STRIDE
    from aecodec.codec.numpy_net import Program
    from aecodec.codec.weights import Weights

    weights = Weights.shipped(model)
    layers, tensors = weights.config.layers(), weights.tensors
    rng = np.random.default_rng(0)
    s, n, at = Y_STRIDE, 13, 6  # a 13 x 13 latent grid, the change at its centre
    g_s = Program(layers["g_s"], tensors, "g_s")
    y = rng.normal(0, 4, (n, n, weights.config.M)).astype(np.float32)
    y2 = y.copy()
    y2[at, at] += 8
    rows, cols = np.nonzero(np.any(g_s(y2) != g_s(y), axis=2))
    assert rows.size
    for v in (rows, cols):
        assert s * (at - tiling.HALO) <= v.min() and v.max() < s * (at + 1 + tiling.HALO)
    g_a = Program(layers["g_a"], tensors, "g_a")
    x = rng.uniform(0, 1, (n * s, n * s, 3)).astype(np.float32)
    x2 = x.copy()
    x2[at * s, at * s] += 0.5  # the first pixel of latent `at`: it reaches back and forward
    x3 = x.copy()
    x3[at * s + s - 1, at * s + s - 1] += 0.5  # its last
    for changed in (x2, x3):
        rows, cols = np.nonzero(np.any(g_a(changed) != g_a(x), axis=2))
        assert rows.size
        for v in (rows, cols):
            assert at - tiling.HALO <= v.min() and v.max() <= at + tiling.HALO
