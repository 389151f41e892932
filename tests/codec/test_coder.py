"""The coding pipeline (coder.py) on Kodak crops: continuous quality, size and PSNR targets, and
encoder effort (latent refinement)."""
import numpy as np
import pytest
from conftest import KODAK
from PIL import Image

import aecodec
from aecodec.bench.metrics import psnr
from aecodec.cli import main
from aecodec.codec import bitstream

pytestmark = pytest.mark.needs_data


def _crop(name="kodim23.png", box=(200, 150, 456, 342)):
    with Image.open(KODAK / name) as im:
        return np.asarray(im.convert("RGB").crop(box))


def test_whole_qualities_write_version_1_files_as_before():
    img = _crop()
    data = aecodec.compress(img, quality=4)
    assert data[4] == 1 and aecodec.compress(img, quality=4.0) == data
    assert aecodec.api.read_header(data).quality == 4


def test_continuous_quality_is_monotone_in_rate_and_decodes():
    img = _crop()
    sizes = []
    for q in (3, 3.25, 3.5, 3.75, 4):
        data = aecodec.compress(img, quality=q)
        assert data[4] == (1 if float(q).is_integer() else 2)
        assert aecodec.api.read_header(data).quality == q
        out = np.asarray(aecodec.decompress(data))
        assert out.shape == img.shape and psnr(img, out) > 20
        sizes.append(len(data))
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes), sizes


@pytest.mark.parametrize("name", ["kodim01.png", "kodim12.png", "kodim23.png"])
def test_size_target_is_never_exceeded(name):
    img = _crop(name)
    for target in (3000, 6000, 9000):
        data = aecodec.compress(img, size=target)
        assert len(data) <= target
        assert len(data) > 0.8 * target or aecodec.api.read_header(data).quality == 8
    bpp = aecodec.compress(img, bpp=0.5)
    assert len(bpp) * 8 / (img.shape[0] * img.shape[1]) <= 0.5


def test_psnr_target_is_reached_with_the_smallest_quality():
    img = _crop()
    data = aecodec.compress(img, psnr=30)
    got = psnr(img, np.asarray(aecodec.decompress(data)))
    assert got >= 30
    q = aecodec.api.read_header(data).quality
    if q > 1:  # one step lower misses the target
        lower = aecodec.compress(img, quality=bitstream.snap_quality(q - 1 / 256))
        assert psnr(img, np.asarray(aecodec.decompress(lower))) < 30


def test_impossible_targets_are_clear_errors(tmp_path, capsys):
    img = _crop()
    with pytest.raises(aecodec.AecError, match="cannot fit in 100 bytes"):
        aecodec.compress(img, size=100)
    with pytest.raises(aecodec.AecError, match="cannot reach 70 dB"):
        aecodec.compress(img, psnr=70)
    with pytest.raises(aecodec.AecError, match="at most one"):
        aecodec.compress(img, size=100, psnr=30)
    p = tmp_path / "c.png"
    Image.fromarray(img).save(p)
    assert main(["compress", str(p), "--size", "100B"]) == 1
    assert "cannot fit in 100 bytes" in capsys.readouterr().err
    assert main(["compress", str(p), "-q", "4", "--psnr", "30"]) == 1
    assert not p.with_suffix(".aec").exists()
    with pytest.raises(SystemExit):
        main(["compress", str(p), "--size", "12 parsecs"])
    assert main(["compress", str(p), "--size", "6KB"]) == 0
    out = capsys.readouterr().out
    assert "target 6000 bytes" in out and p.with_suffix(".aec").stat().st_size <= 6000


@pytest.mark.slow
def test_effort_lowers_the_real_rd_cost_and_decodes_with_the_plain_decoder():
    from aecodec.codec.refine import rd_lambda

    img = _crop("kodim05.png", (300, 200, 492, 328))
    costs = {}
    for effort in (0, 1):
        data = aecodec.compress(img, quality=3, effort=effort)
        out = np.asarray(aecodec.decompress(data))
        mse = np.mean((out.astype(np.float64) - img) ** 2)
        costs[effort] = len(data) * 8 / (img.shape[0] * img.shape[1]) + rd_lambda(3) * mse
        assert data[4] == 1  # same format, same decoder
    assert costs[1] < costs[0], costs
    assert aecodec.compress(img, quality=3, effort=1) == aecodec.compress(img, quality=3, effort=1)
    with pytest.raises(aecodec.AecError, match="effort"):
        aecodec.compress(img, quality=3, effort=7)


@pytest.mark.slow
def test_effort_with_targets_meets_them_and_beats_the_single_pass(tmp_path, capsys):
    img = _crop("kodim05.png", (300, 200, 428, 296))

    def quality_of(data):
        return psnr(img, np.asarray(aecodec.decompress(data)))

    plain, refined = aecodec.compress(img, size=3000), aecodec.compress(img, size=3000, effort=1)
    assert len(refined) <= 3000
    assert quality_of(refined) >= quality_of(plain)
    plain, refined = aecodec.compress(img, psnr=29), aecodec.compress(img, psnr=29, effort=1)
    assert quality_of(refined) >= 29
    assert len(refined) <= len(plain)
    p = tmp_path / "c.png"
    Image.fromarray(img).save(p)
    assert main(["compress", str(p), "--size", "3KB", "--effort", "1"]) == 0
    assert p.with_suffix(".aec").stat().st_size <= 3000
    assert "target 3000 bytes" in capsys.readouterr().out


def test_the_two_stages_of_decoding_are_the_whole_decoding():
    """synthesize(decode_latents()), the stages a CLI batch overlaps, decode exactly as decode."""
    from aecodec.codec import coder

    img = _crop(box=(0, 0, 128, 96))
    for q in (8, 2, 4.5):
        data = coder.encode(img, "RGB", q, device="cpu")
        latents = coder.decode_latents(data, device="cpu")
        assert latents.header == bitstream.parse(data)[0]
        pixels, header = coder.synthesize(latents)
        assert header == latents.header and np.array_equal(pixels, coder.decode(data, device="cpu")[0])
