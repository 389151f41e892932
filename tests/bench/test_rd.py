"""RD harness: BD-rate on known cases, the harness end to end, CompressAI-readable JSON."""
import json

import numpy as np
import pytest
from PIL import Image

from aecodec.bench.bdrate import bd_rate, psnr_at
from aecodec.bench.rd import main as bench_main

RATES = np.array([0.1, 0.2, 0.4, 0.8, 1.6])
PSNRS = np.array([26.0, 28.5, 31.0, 34.0, 37.5])


def test_bd_rate_identical_curves_is_zero():
    assert bd_rate(RATES, PSNRS, RATES, PSNRS) == pytest.approx(0.0, abs=1e-9)


def test_bd_rate_half_rate_is_minus_50():
    assert bd_rate(RATES, PSNRS, RATES / 2, PSNRS) == pytest.approx(-50.0, abs=1e-6)
    assert bd_rate(RATES, PSNRS, RATES * 2, PSNRS) == pytest.approx(100.0, abs=1e-6)


def test_bd_rate_better_quality_is_negative_and_no_overlap_is_nan():
    assert bd_rate(RATES, PSNRS, RATES, PSNRS + 1.0) < -10
    assert np.isnan(bd_rate(RATES, PSNRS, RATES, PSNRS + 50))
    assert np.isnan(bd_rate(RATES[:1], PSNRS[:1], RATES, PSNRS))


def test_bd_rate_respects_rate_range():
    # outside the range the test curve is much worse; inside it is identical
    test_p = PSNRS.copy()
    test_p[-1] -= 5
    assert bd_rate(RATES, PSNRS, RATES, test_p, rate_range=(0.1, 0.8)) == pytest.approx(0.0, abs=1e-9)


def test_psnr_at_interpolates_the_frontier_and_not_beyond_it():
    at = psnr_at(RATES, PSNRS, [0.05, 0.2, 0.3, 1.6, 2.0])
    assert np.isnan(at[0]) and np.isnan(at[-1])  # outside the points
    assert at[1] == pytest.approx(28.5) and at[3] == pytest.approx(37.5)
    assert 28.5 < at[2] < 31.0
    # a point that a cheaper one matches is not on the curve
    assert psnr_at([0.1, 0.2, 0.3], [30.0, 29.0, 32.0], [0.2])[0] > 30.0


def test_the_table_has_the_high_fidelity_range_and_the_gaps_at_each_quality():
    from aecodec.bench.rd import bd_table, gap_table

    curves = {"JPEG 2000": {"bpp": RATES, "psnr-rgb": PSNRS},
              "aecodec": {"param": [1, 2, 3], "bpp": [0.2, 0.4, 1.9], "psnr-rgb": [29.0, 31.0, 36.0]}}
    assert "over 0.1-2.0 bpp" in bd_table(curves, (0.1, 2.0))
    gaps = gap_table(curves)
    assert "| 1 | 0.200 | 29.00 | +0.50 |" in gaps and "| 2 | 0.400 | 31.00 | +0.00 |" in gaps
    assert "| 3 | 1.900 | 36.00 | n/a |" in gaps  # beyond JPEG 2000's points


@pytest.mark.slow
def test_harness_end_to_end(tmp_path, kodak_crop, capsys):
    images = tmp_path / "imgs"
    images.mkdir()
    big = kodak_crop.resize((192, 192))  # > 160 px so MS-SSIM is defined
    big.save(images / "a.png")
    big.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(images / "b.png")
    out = tmp_path / "out"
    args = [str(images), "-o", str(out), "--codecs", "aecodec,jpeg,jpeg2000", "--qualities", "1,4,8",
            "-j", "1", "--no-progress"]
    assert bench_main(args) == 0
    printed = capsys.readouterr().out
    assert "| aecodec |" in printed  # the BD-rate table
    assert "aecodec, averages per image:" in printed and "| 4 | " in printed  # the per-quality table
    assert f"files in {out}/: rd.csv" in printed
    rows = (out / "rd.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert header[:3] == ["image", "codec", "param"]
    # 2 images x (3 aecodec + 2x16 JPEG + 17 JPEG 2000) points
    assert len(rows) - 1 == 2 * (3 + 32 + 17)
    for name in ("aecodec", "jpeg-420", "jpeg-444", "jpeg-2000"):
        doc = json.loads((out / f"{name}.json").read_text())
        res = doc["results"]
        assert len(res["bpp"]) == len(res["psnr-rgb"]) == len(res["ms-ssim-rgb"]) > 2
        assert all(0 < b < 24 for b in res["bpp"])
    aec = json.loads((out / "aecodec.json").read_text())["results"]
    assert aec["bpp"] == sorted(aec["bpp"])  # rate grows with quality
    table = (out / "bd-rate.md").read_text()
    assert "| aecodec |" in table and "JPEG 2000" in table
    assert "over 0.1-2.0 bpp" in table and "PSNR difference to each anchor" in table
    assert (out / "rd.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a rerun is served from the cache
    cached = len(list((out / "cache").glob("*.json")))
    assert cached == len(rows) - 1
    assert bench_main(args) == 0
    assert len(list((out / "cache").glob("*.json"))) == cached


def test_json_is_readable_by_compressai(tmp_path, kodak_crop):
    plot = pytest.importorskip("compressai.utils.plot.__main__")
    images = tmp_path / "imgs"
    images.mkdir()
    kodak_crop.save(images / "a.png")
    out = tmp_path / "out"
    assert bench_main([str(images), "-o", str(out), "--codecs", "jpeg", "-j", "1", "--no-progress"]) == 0
    parsed = plot.parse_json_file(out / "jpeg-420.json", "psnr")
    assert parsed["name"] == "JPEG 4:2:0" and len(parsed["xs"]) == 16


def test_reference_jsons_load(tmp_path):
    from aecodec.bench.rd import load_reference

    (tmp_path / "x.json").write_text(json.dumps({"name": "X", "results": {"bpp": [0.1, 0.2], "psnr-rgb": [1, 2]}}))
    (tmp_path / "broken.json").write_text("{")
    ref = load_reference(tmp_path)
    assert list(ref) == ["x"] and ref["x"]["bpp"] == [0.1, 0.2]


@pytest.mark.parametrize("label", ["AVIF 4:2:0 (default tune)", "AVIF 4:4:4 tune=psnr", "HEIC 4:2:0",
                                   "HEIC 4:4:4", "JPEG XL"])
def test_strong_codecs_round_trip_at_sane_rates(kodak_crop, label):
    from aecodec.bench.codecs import classic_codecs
    from aecodec.bench.metrics import psnr

    codecs = [c for c in classic_codecs() if c.name == label]
    assert len(codecs) >= 8, label  # dense sweeps
    img = kodak_crop.resize((192, 128))
    ref = np.asarray(img)
    points = []
    for c in (codecs[1], codecs[-2]):  # a low and a high setting
        data = c.encode(img)
        out = np.asarray(c.decode(data))
        assert out.shape == ref.shape
        points.append((len(data) * 8 / (192 * 128), psnr(ref, out)))
    (lo_bpp, lo_psnr), (hi_bpp, hi_psnr) = points
    assert 0.02 < lo_bpp < hi_bpp < 12 and 20 < lo_psnr < hi_psnr < 60, points
    assert c.settings() and c.library()


def test_results_json_records_settings_and_versions(tmp_path, kodak_crop):
    images = tmp_path / "imgs"
    images.mkdir()
    kodak_crop.save(images / "a.png")
    out = tmp_path / "out"
    assert bench_main([str(images), "-o", str(out), "--codecs", "heic,jxl", "--quick", "-j", "1",
                       "--no-progress"]) == 0
    heic = json.loads((out / "heic-444.json").read_text())
    assert heic["settings"]["chroma"] == 444 and heic["settings"]["enc_params"]["tune"] == "psnr"
    assert "x265" in heic["library"] and "libheif" in heic["library"]
    assert "pillow-jxl-plugin" in json.loads((out / "jpeg-xl.json").read_text())["library"]


def test_missing_bench_extra_skips_with_a_note(monkeypatch, capsys):
    import builtins

    from aecodec.bench import codecs as codecs_mod

    real_import = builtins.__import__

    def no_extra(name, *args, **kwargs):
        if name in ("pillow_heif", "pillow_jxl"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_extra)
    got = codecs_mod.classic_codecs(("jpeg", "heic", "jxl"))
    assert got and all(c.name.startswith("JPEG 4") for c in got)
    err = capsys.readouterr().err
    assert "HEIC skipped" in err and "JPEG XL skipped" in err and "aecodec[bench]" in err


def test_effort_curve_is_what_compress_at_that_effort_writes(tmp_path, kodak_crop):
    from aecodec.api import compress

    images = tmp_path / "imgs"
    images.mkdir()
    kodak_crop.save(images / "a.png")
    out = tmp_path / "out"
    assert bench_main([str(images), "-o", str(out), "--codecs", "aecodec", "--qualities", "5", "--efforts", "1",
                       "-j", "1", "--no-progress"]) == 0
    plain = json.loads((out / "aecodec.json").read_text())
    refined = json.loads((out / "aecodec-effort-1.json").read_text())
    assert refined["settings"]["effort"] == 1 and plain["settings"]["effort"] == 0
    pixels = kodak_crop.width * kodak_crop.height
    for doc, effort in ((plain, 0), (refined, 1)):
        assert doc["results"]["bpp"] == [pytest.approx(len(compress(kodak_crop, 5, effort=effort)) * 8 / pixels)]
    # refinement keeps the cheaper candidate, so it never costs more bits for less quality
    assert (refined["results"]["bpp"][0] <= plain["results"]["bpp"][0]
            or refined["results"]["psnr-rgb"][0] > plain["results"]["psnr-rgb"][0])


@pytest.mark.parametrize("efforts", ["0", "4", "x"])
def test_bench_rejects_bad_efforts(tmp_path, efforts):
    from aecodec.errors import AecError

    with pytest.raises(AecError, match="efforts"):
        bench_main([str(tmp_path), "-o", str(tmp_path / "out"), "--codecs", "aecodec", "--efforts", efforts])


def test_fresh_cache_reuses_committed_classic_rows_only_for_the_same_library(tmp_path, kodak_crop):
    images = tmp_path / "imgs"
    images.mkdir()
    kodak_crop.resize((192, 192)).save(images / "a.png")
    out = tmp_path / "out"
    args = [str(images), "-o", str(out), "--codecs", "jpeg", "-j", "1", "--no-progress"]
    assert bench_main(args) == 0

    def mark_and_clear():  # a committed rd.csv whose figures this machine would not reproduce
        lines = (out / "rd.csv").read_text().splitlines()
        head = lines[0].split(",")
        for i, line in enumerate(lines[1:], 1):
            cells = line.split(",")
            cells[head.index("psnr")] = "99.0"
            lines[i] = ",".join(cells)
        (out / "rd.csv").write_text("\n".join(lines) + "\n")
        for f in (out / "cache").glob("*.json"):
            f.unlink()

    def psnrs(name):
        return json.loads((out / f"{name}.json").read_text())["results"]["psnr-rgb"]

    mark_and_clear()
    assert bench_main(args) == 0  # same settings and library: the rows are taken, not re-measured
    assert set(psnrs("jpeg-420")) == set(psnrs("jpeg-444")) == {99.0}

    mark_and_clear()
    doc = json.loads((out / "jpeg-420.json").read_text())
    doc["library"] = "some other libjpeg"
    (out / "jpeg-420.json").write_text(json.dumps(doc))
    assert bench_main(args) == 0  # another library: JPEG 4:2:0 is measured again
    assert 20 < max(psnrs("jpeg-420")) < 60 and set(psnrs("jpeg-444")) == {99.0}


def test_curves_drop_points_a_cheaper_point_matches():
    from aecodec.bench.rd import frontier

    bpp, psnr = [0.3, 0.1, 0.2, 0.25, 0.5], [30.0, 26.0, 28.0, 27.5, 31.0]
    assert frontier(bpp, psnr) == ([0.1, 0.2, 0.3, 0.5], [26.0, 28.0, 30.0, 31.0])  # 0.25 bpp gives less than 0.2


def test_the_plot_names_the_set_shows_2_bpp_and_keeps_its_legend_below():
    import matplotlib.pyplot as plt

    from aecodec.bench.rd import figure

    curve = {"bpp": [0.2, 0.8, 1.9], "psnr-rgb": [28.0, 34.0, 39.0], "ms-ssim-rgb": [0.9, 0.97, 0.99]}
    curves = {"aecodec": curve, "JPEG 2000": curve, **{f"codec {i}": curve for i in range(12)}}
    fig = figure(curves, title="kodak (24 images)")
    try:
        assert fig._suptitle.get_text() == "Rate-distortion on kodak (24 images)"
        fig.canvas.draw()
        legend = fig.legends[0].get_window_extent()
        for ax in fig.axes:
            assert ax.get_xlim() == (0, 2.0)
            assert legend.y1 < ax.get_window_extent().y0  # below the panels, not beside them
    finally:
        plt.close(fig)
