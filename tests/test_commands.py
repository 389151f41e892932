"""Start-up, batches and determinism of the command line (issue: fast and friendly on a laptop)."""
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from aecodec.cli import main


def _torch_free(args, cwd, env=None) -> tuple[bool, int]:
    """Run the CLI in a fresh interpreter: (was torch imported?, exit code)."""
    code = ("import sys\nfrom aecodec.cli import main\n"
            "try:\n    rc = main(sys.argv[1:])\nexcept SystemExit as e:\n    rc = e.code\n"
            "print('torch' in sys.modules, rc)")
    out = subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                         env=None if env is None else {**os.environ, **env})
    imported, rc = out.stdout.split()[-2:]  # the last line; help and info print before it
    return imported == "True", int(rc)


@pytest.fixture()
def crops(tmp_path, kodak_crop):
    paths = []
    for i, box in enumerate([(0, 0, 96, 64), (0, 0, 64, 64), (32, 0, 96, 48)]):
        p = tmp_path / f"c{i}.png"
        kodak_crop.crop(box).save(p)
        paths.append(p)
    return paths


def test_help_info_refusals_and_cpu_coding_do_not_import_torch(crops, tmp_path):
    assert main(["compress", str(crops[0])]) == 0
    aec = crops[0].with_suffix(".aec")
    (tmp_path / "notes.txt").write_text("not an image")
    for args, rc in [(["--help"], 0), (["compress", "--help"], 0), (["bench", "--help"], 0),
                     (["info", aec], 0), (["compress", crops[0]], 1),           # output exists
                     (["compress", "notes.txt"], 1), (["decompress", "notes.txt"], 1),
                     (["compress", "missing.png"], 1), (["compress", "-q", "9", crops[0]], 2),
                     # coding on the CPU: the numpy engine (a GPU machine's "auto" would pick torch)
                     (["compress", "--device", "cpu", "--size", "900", crops[1], "-o", "t.aec"], 0),
                     (["decompress", "--device", "cpu", "t.aec", "-o", "t.png"], 0)]:
        assert _torch_free(args, tmp_path) == (False, rc), args
    assert (tmp_path / "t.png").exists() and (tmp_path / "t.aec").stat().st_size <= 900
    if importlib.util.find_spec("openvino"):  # the bf16 engine that "auto" takes for large jobs is torch-free too
        for args in (["compress", crops[2], "-o", "o.aec"], ["decompress", "o.aec", "-o", "o.png"]):
            assert _torch_free(args, tmp_path, {"AECODEC_ENGINE": "openvino"}) == (False, 0), args


def test_bench_help_lists_its_options(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    out = capsys.readouterr().out
    assert "--codecs" in out and "--qualities" in out and "aecodec-bench" in out


def test_batch_round_trip_matches_single_files(crops, tmp_path, capsys):
    assert main(["compress", *map(str, crops), "-o", str(tmp_path / "aec"), "-q", "3"]) == 0
    for p in crops:
        assert main(["compress", str(p), "-o", str(tmp_path / f"{p.stem}.single.aec"), "-q", "3"]) == 0
        assert (tmp_path / "aec" / f"{p.stem}.aec").read_bytes() == (tmp_path / f"{p.stem}.single.aec").read_bytes()
    aecs = sorted((tmp_path / "aec").glob("*.aec"))
    assert main(["decompress", *map(str, aecs), "-o", str(tmp_path / "png")]) == 0
    for p in crops:
        assert main(["decompress", str(tmp_path / "aec" / f"{p.stem}.aec"), "-o", str(tmp_path / f"{p.stem}.single.png")]) == 0
        back = np.asarray(Image.open(tmp_path / "png" / f"{p.stem}.png"))
        assert back.shape == np.asarray(Image.open(p)).shape
        assert np.array_equal(back, np.asarray(Image.open(tmp_path / f"{p.stem}.single.png")))  # batch = single file
    assert capsys.readouterr().out.count(" -> ") == 2 * len(crops) + 2 * len(crops)


def test_a_batch_chooses_its_cpu_engine_for_its_whole_size(crops, tmp_path, monkeypatch):
    """The engine choice (engines.cpu_engine) sees a batch's pixels, a single file its own."""
    from aecodec.codec import engines

    seen, choose = [], engines.cpu_engine
    monkeypatch.setattr(engines, "cpu_engine", lambda pixels=None, decoding=False: seen.append((pixels, decoding))
                        or choose(pixels, decoding))
    total = sum(Image.open(p).width * Image.open(p).height for p in crops)
    assert main(["compress", *map(str, crops), str(tmp_path / "missing.png"), "-o", str(tmp_path / "aec")]) == 1
    assert seen == [(total, False)] * len(crops)
    seen.clear()
    assert main(["decompress", str(tmp_path / "aec" / "c0.aec"), "-o", str(tmp_path / "back.png")]) == 0
    assert seen == [(96 * 64, True)]
    seen.clear()
    aecs = [str(tmp_path / "aec" / f"c{i}.aec") for i in range(2)]
    assert main(["decompress", *aecs, str(tmp_path / "missing.aec"), "-o", str(tmp_path / "png")]) == 1
    assert seen == [(96 * 64 + 64 * 64, True)] * 2


def test_batch_with_a_bad_file_finishes_the_others(crops, tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    out = tmp_path / "out"
    assert main(["compress", str(crops[0]), str(bad), str(crops[1]), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:" in err and "1 of 3 files failed" in err
    assert sorted(p.name for p in out.iterdir()) == ["c0.aec", "c1.aec"]  # nothing partial for bad.png
    # decompress: a damaged file among good ones
    damaged = out / "c9.aec"
    data = bytearray((out / "c0.aec").read_bytes())
    data[-5] ^= 0xFF
    damaged.write_bytes(bytes(data))
    assert main(["decompress", str(out / "c0.aec"), str(damaged), str(out / "c1.aec"), "-o", str(tmp_path / "png")]) == 1
    assert "c9.aec:" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == ["c0.png", "c1.png"]


def test_batch_refuses_same_output_twice(crops, tmp_path, capsys):
    other = tmp_path / "sub"
    other.mkdir()
    twin = other / crops[0].name
    twin.write_bytes(crops[0].read_bytes())
    assert main(["compress", str(crops[0]), str(twin), "-o", str(tmp_path / "out")]) == 1
    assert "also" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["c0.aec"]


def test_lossy_output_says_so(crops, tmp_path, capsys):
    assert main(["compress", str(crops[0])]) == 0
    assert main(["decompress", str(crops[0].with_suffix(".aec")), "-o", str(tmp_path / "x.jpg")]) == 0
    assert "lossy" in capsys.readouterr().err
    assert main(["decompress", str(crops[0].with_suffix(".aec")), "-o", str(tmp_path / "x.png")]) == 0
    assert "lossy" not in capsys.readouterr().err


def test_binary_to_a_terminal_is_refused(crops, monkeypatch, capsys):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert main(["compress", str(crops[0]), "-o", "-"]) == 1
    assert "terminal" in capsys.readouterr().err


_DECODE = ("import sys, hashlib, aecodec\n"
           "print(hashlib.sha256(aecodec.decompress(open(sys.argv[1], 'rb').read(), device='cpu').tobytes()).hexdigest())")


def test_same_bytes_decode_to_same_pixels_in_two_processes(crops):
    assert main(["compress", str(crops[0]), "-q", "6"]) == 0
    aec = crops[0].with_suffix(".aec")
    digests = {subprocess.run([sys.executable, "-c", _DECODE, str(aec)], capture_output=True, text=True,
                              check=True).stdout.strip() for _ in range(2)}
    import aecodec
    import hashlib

    digests.add(hashlib.sha256(aecodec.decompress(aec.read_bytes(), device="cpu").tobytes()).hexdigest())
    digests.add(hashlib.sha256(aecodec.decompress(aec.read_bytes(), device="cpu").tobytes()).hexdigest())
    assert len(digests) == 1


def test_a_batch_finishes_files_in_order_beside_the_next_one(capsys):
    """_run_all: a file's last stage (a callable) runs while the next file starts; lines come in
    the files' order, a failure in either stage names its file, and the rest still run."""
    import threading

    from aecodec.commands import _run_all
    from aecodec.errors import AecError

    started, finished = [], []

    def one(src, out):
        started.append(src)
        if src == "a2":
            raise AecError(f"{src}: first stage failed")
        if src == "a4":
            return f"{src} done at once"

        def finish():
            assert threading.current_thread() is not threading.main_thread()
            if src == "a3":
                raise AecError("last stage failed")
            finished.append(src)
            return f"{src} done"
        return finish

    plan = [("a0", "o0"), ("a1", "o1"), ("a2", "o2"), ("x", None), ("a3", "o3"), ("a4", "o4"), ("a5", "o5")]
    assert _run_all(plan, one, quiet=False, what="test") == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == ["a0 done", "a1 done", "a4 done at once", "a5 done"]
    assert "a2: first stage failed" in err and "a3: last stage failed" in err and "3 of 7 files failed" in err
    assert started == ["a0", "a1", "a2", "a3", "a4", "a5"] and finished == ["a0", "a1", "a5"]
    # one file: both stages in this thread
    assert _run_all([("b", "o")], lambda s, o: (lambda: threading.current_thread().name), quiet=False, what="t") == 0
    assert capsys.readouterr().out.strip() == threading.main_thread().name


def test_decoded_png_holds_the_decoded_pixels(crops, tmp_path):
    """PNG is written fast (zlib level 1); its pixels are the decoder's."""
    from aecodec.codec import coder

    aec = tmp_path / "c.aec"
    assert main(["compress", str(crops[0]), "-o", str(aec)]) == 0
    assert main(["decompress", str(aec), "-o", str(tmp_path / "c.png")]) == 0
    with Image.open(tmp_path / "c.png") as im:
        assert im.format == "PNG" and np.array_equal(np.asarray(im), coder.decode(aec.read_bytes())[0])
