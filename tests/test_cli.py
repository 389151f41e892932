"""End-to-end CLI tests on a Kodak crop: round trips, exit codes, overwrite safety, stdin/stdout."""
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aecodec.bench.metrics import psnr
from aecodec.cli import main


@pytest.fixture()
def crop_png(tmp_path, kodak_crop):
    p = tmp_path / "crop.png"
    kodak_crop.save(p)
    return p


def run(*args):
    return main([str(a) for a in args])


def test_round_trip_default_names_never_touch_the_original(crop_png, capsys):
    original = crop_png.read_bytes()
    assert run("compress", crop_png) == 0
    aec = crop_png.with_suffix(".aec")
    assert aec.exists()
    line = capsys.readouterr().out
    assert "bpp" in line and "bytes" in line
    assert run("decompress", aec) == 0  # beside the original crop.png: crop.decoded.png
    decoded = crop_png.with_name("crop.decoded.png")
    assert f"-> {decoded}:" in capsys.readouterr().out and crop_png.read_bytes() == original
    out, ref = np.asarray(Image.open(decoded)), np.asarray(Image.open(crop_png))
    assert out.shape == ref.shape == (64, 96, 3)
    assert psnr(ref, out) > 20
    assert run("decompress", aec) == 1  # again: the decoded file exists, -f overwrites it, not crop.png
    assert run("decompress", aec, "-f", "--quiet") == 0 and crop_png.read_bytes() == original


@pytest.mark.parametrize("command,src,suffix", [("compress", "crop.png", ".aec"), ("decompress", "crop.aec", ".png")])
def test_an_output_folder_for_one_input(crop_png, tmp_path, capsys, command, src, suffix):
    """-o DIR/ (a trailing slash) or an existing directory is a folder, created if missing, for one
    input as for many; the line printed names the file really written."""
    assert run("compress", crop_png, "--quiet") == 0
    for folder in (f"{tmp_path}/new/", str(tmp_path / "existing")):
        (tmp_path / "existing").mkdir(exist_ok=True)
        assert run(command, tmp_path / src, "-o", folder) == 0
        written = Path(folder) / ("crop" + suffix)
        assert written.is_file() and f"-> {written}:" in capsys.readouterr().out
    assert not (tmp_path / "new").is_file()


def test_info_takes_several_files(crop_png, tmp_path, capsys):
    assert run("compress", crop_png, "-o", tmp_path / "a.aec", "--quiet") == 0
    assert run("compress", crop_png, "-q", 7, "-o", tmp_path / "b.aec", "--quiet") == 0
    assert run("info", tmp_path / "a.aec", tmp_path / "b.aec") == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{tmp_path / 'a.aec'}: 96x64 RGB") and "q7" in lines[1]
    assert run("info", tmp_path / "a.aec", crop_png) == 1  # one line for the good file, the other named
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 1 and f"{crop_png}: not an .aec file" in err


def test_quality_and_k_options(crop_png, tmp_path, capsys):
    sizes = {}
    for q in (1, 8):
        out = tmp_path / f"q{q}.aec"
        assert run("compress", crop_png, "-q", q, "-o", out, "--quiet") == 0
        sizes[q] = out.stat().st_size
    assert sizes[1] < sizes[8]
    assert run("compress", crop_png, "--k", 10, "-o", tmp_path / "k.aec", "--quiet") == 0
    assert run("info", tmp_path / "k.aec") == 0
    info = capsys.readouterr().out
    assert "k: 10" in info and "96x64" in info and "bpp" in info


def test_refuses_to_overwrite_without_force(crop_png, tmp_path, capsys):
    out = tmp_path / "x.aec"
    out.write_bytes(b"precious")
    assert run("compress", crop_png, "-o", out) == 1
    assert out.read_bytes() == b"precious"
    assert "exists" in capsys.readouterr().err
    assert run("compress", crop_png, "-o", out, "-f", "--quiet") == 0
    assert out.read_bytes()[:4] == b"\x8aAEC"
    png = tmp_path / "y.png"
    png.write_bytes(b"keep")
    assert run("decompress", out, "-o", png) == 1
    assert png.read_bytes() == b"keep"


def test_every_per_file_error_names_the_file(crop_png, tmp_path, kodak_crop, capsys):
    """Each error path of compress, decompress and info, one input at a time: one line, exit 1,
    the file's name in it."""
    rgba = np.asarray(kodak_crop.convert("RGBA")).copy()
    rgba[..., 3] = 7
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    Image.fromarray(np.asarray(kodak_crop.convert("L")).astype(np.uint16) * 257).save(tmp_path / "deep.png")
    (tmp_path / "text.txt").write_text("hello")
    (tmp_path / "empty.png").write_bytes(b"")
    assert run("compress", crop_png, "-o", tmp_path / "ok.aec", "--quiet") == 0
    (tmp_path / "trunc.aec").write_bytes((tmp_path / "ok.aec").read_bytes()[:-9])
    (tmp_path / "exists.aec").write_bytes(b"x")
    cases = [
        (("compress", tmp_path / "alpha.png"), "alpha.png"), (("compress", tmp_path / "deep.png"), "deep.png"),
        (("compress", tmp_path / "text.txt"), "text.txt"), (("compress", tmp_path / "empty.png"), "empty.png"),
        (("compress", tmp_path / "missing.png"), "missing.png"), (("compress", tmp_path), str(tmp_path)),
        (("compress", crop_png, "--size", "20B", "-o", tmp_path / "s.aec"), "crop.png"),
        (("compress", crop_png, "--psnr", "80", "-o", tmp_path / "p.aec"), "crop.png"),
        (("compress", crop_png, "--k", "500", "-o", tmp_path / "k.aec"), "crop.png"),
        (("compress", crop_png, "-o", tmp_path / "exists.aec"), "exists.aec"),
        (("compress", crop_png, "-o", tmp_path / "nodir" / "x.aec"), "crop.png"),
        (("decompress", tmp_path / "trunc.aec", "-o", tmp_path / "t.png"), "trunc.aec"),
        (("decompress", tmp_path / "text.txt", "-o", tmp_path / "t.png"), "text.txt"),
        (("decompress", tmp_path / "ok.aec", "-o", tmp_path / "t.xyz"), "t.xyz"),
        (("info", crop_png), "crop.png"), (("info", tmp_path / "trunc.aec"), "trunc.aec"),
        (("info", tmp_path / "missing.aec"), "missing.aec"),
    ]
    for args, name in cases:
        assert run(*args) == 1, args
        err = capsys.readouterr().err
        assert err.startswith("aecodec: error:") and err.count("\n") == 1 and name in err, (args, err)


def test_bad_inputs_exit_1_with_one_line(tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    for args in (("compress", text), ("compress", empty), ("compress", tmp_path / "missing.png"),
                 ("compress", tmp_path), ("decompress", text, "-o", tmp_path / "o.png"),
                 ("info", text), ("decompress", tmp_path / "missing.aec")):
        assert run(*args) == 1, args
        err = capsys.readouterr().err
        assert err.startswith("aecodec: error:") and err.count("\n") == 1, err
    assert not (tmp_path / "o.png").exists()
    assert not list(tmp_path.glob(".*.part"))


def test_usage_errors_exit_2(crop_png):
    for args in (("compress", crop_png, "-q", "9"), ("compress", crop_png, "-q", "x"),
                 ("compress",), ("frobnicate",), ("compress", crop_png, "--k", "0")):
        with pytest.raises(SystemExit) as e:
            run(*args)
        assert e.value.code == 2


def test_k_out_of_model_range_is_exit_1(crop_png, capsys):
    assert run("compress", crop_png, "--k", 500, "-o", crop_png.with_suffix(".x.aec")) == 1
    assert "k must be" in capsys.readouterr().err


def test_decompress_to_other_formats(crop_png, tmp_path):
    assert run("compress", crop_png, "-o", tmp_path / "a.aec", "--quiet") == 0
    for ext in ("bmp", "tif", "webp", "jpg"):
        assert run("decompress", tmp_path / "a.aec", "-o", tmp_path / f"a.{ext}", "--quiet") == 0
        with Image.open(tmp_path / f"a.{ext}") as im:
            assert im.size == (96, 64)
    assert run("decompress", tmp_path / "a.aec", "-o", tmp_path / "a.unknownext") == 1


def test_stdin_stdout_subprocess(crop_png, tmp_path):
    """The real console entry point, piping through - for both directions."""
    cmd = [sys.executable, "-m", "aecodec"]
    enc = subprocess.run(cmd + ["compress", "-", "-o", "-", "-q", "2"], input=crop_png.read_bytes(),
                         capture_output=True, timeout=300)
    assert enc.returncode == 0, enc.stderr
    assert enc.stdout[:4] == b"\x8aAEC"
    dec = subprocess.run(cmd + ["decompress", "-", "-o", "-"], input=enc.stdout, capture_output=True, timeout=300)
    assert dec.returncode == 0, dec.stderr
    assert dec.stdout[:8] == b"\x89PNG\r\n\x1a\n"
    # one-shot commands end without the interpreter's teardown (cli.run): nothing may be lost
    piped = Image.open(io.BytesIO(dec.stdout))
    piped.load()
    assert piped.size == Image.open(crop_png).size
    to_file = subprocess.run(cmd + ["decompress", "-", "-o", str(tmp_path / "y.png")], input=enc.stdout,
                             capture_output=True, timeout=300)
    assert to_file.returncode == 0 and (tmp_path / "y.png").read_bytes() == dec.stdout
    bad = subprocess.run(cmd + ["decompress", "-", "-o", str(tmp_path / "z.png")], input=enc.stdout[:-3],
                         capture_output=True, timeout=300)
    assert bad.returncode == 1
    assert b"Traceback" not in bad.stderr and bad.stderr.count(b"\n") == 1
    assert not (tmp_path / "z.png").exists()
    helps = subprocess.run(cmd + ["compress", "--help"], capture_output=True, timeout=300)
    assert helps.returncode == 0 and b"--quality" in helps.stdout


@pytest.mark.parametrize("size", [(1, 1), (17, 31), (31, 17), (1, 70), (65, 1)])
def test_odd_sizes_round_trip(size, tmp_path, kodak_crop):
    w, h = size
    img = kodak_crop.resize((w, h))
    p = tmp_path / "odd.png"
    img.save(p)
    assert run("compress", p, "-o", tmp_path / "odd.aec", "--quiet") == 0
    assert run("decompress", tmp_path / "odd.aec", "-o", tmp_path / "back.png", "--quiet") == 0
    with Image.open(tmp_path / "back.png") as back:
        assert back.size == (w, h) and back.mode == "RGB"


def test_grayscale_comes_back_grayscale(tmp_path, kodak_crop):
    p = tmp_path / "gray.png"
    kodak_crop.convert("L").save(p)
    assert run("compress", p, "--quiet") == 0
    assert run("decompress", tmp_path / "gray.aec", "-o", tmp_path / "g2.png", "--quiet") == 0
    with Image.open(tmp_path / "g2.png") as back:
        assert back.mode == "L" and back.size == (96, 64)
        assert psnr(np.asarray(kodak_crop.convert("L")), np.asarray(back)) > 20


def test_alpha_and_16_bit_are_refused_unless_allowed(tmp_path, kodak_crop, capsys):
    rgba = kodak_crop.convert("RGBA")
    a = np.asarray(rgba).copy()
    a[..., 3] = 128
    Image.fromarray(a, "RGBA").save(tmp_path / "alpha.png")
    assert run("compress", tmp_path / "alpha.png") == 1
    assert "--drop-alpha" in capsys.readouterr().err
    assert run("compress", tmp_path / "alpha.png", "--drop-alpha", "-f") == 0
    assert "alpha channel discarded" in capsys.readouterr().err
    deep = (np.asarray(kodak_crop.convert("L")).astype(np.uint16) * 257)
    Image.fromarray(deep).save(tmp_path / "deep.png")  # a 16-bit grayscale PNG
    assert run("compress", tmp_path / "deep.png") == 1
    assert "--reduce-depth" in capsys.readouterr().err
    assert run("compress", tmp_path / "deep.png", "--reduce-depth") == 0
    pal = kodak_crop.convert("P")
    pal.save(tmp_path / "pal.png")
    assert run("compress", tmp_path / "pal.png") == 0
    assert "palette" in capsys.readouterr().err
