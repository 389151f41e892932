"""Hardening: hostile bitstreams, awkward images, safe writes."""
import errno
import io
import random
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

import aecodec
from aecodec import fuzz
from aecodec.cli import main
from aecodec.codec import coder
from aecodec.errors import AecError


@pytest.fixture(scope="module")
def real_file(kodak_crop):
    return aecodec.compress(kodak_crop.resize((40, 24)), quality=3)


def _decode_or_reject(data):
    try:
        pixels, header = coder.decode(data, device="cpu")
    except AecError:
        return "rejected"
    assert pixels.shape[:2] == (header.height, header.width)
    return "decoded"


def test_every_truncation_of_a_real_file_is_rejected(real_file):
    for n in range(len(real_file)):
        with pytest.raises(AecError):
            coder.decode(real_file[:n], device="cpu")


def test_bit_flips_are_caught_by_the_checksum(real_file):
    rng = random.Random(1)
    for _ in range(200):
        d = bytearray(real_file)
        i = rng.randrange(len(d) * 8)
        d[i // 8] ^= 1 << (i % 8)
        with pytest.raises(AecError):
            coder.decode(bytes(d), device="cpu")


def test_forged_payloads_with_valid_checksums_never_crash(real_file):
    """Payload garbage behind a recomputed CRC reaches the entropy decoder: it must reject it."""
    rng = random.Random(2)
    outcomes = set()
    head = len(real_file) - 4
    for _ in range(150):
        d = bytearray(real_file)
        start = rng.randrange(30, head)
        for i in range(start, min(head, start + rng.randint(1, 12))):
            d[i] = rng.randrange(256)
        outcomes.add(_decode_or_reject(fuzz.reseal(bytes(d))))
    assert "rejected" in outcomes


def test_seeded_fuzz_run(tmp_path):
    """The fuzz command's deterministic short run: no finding in 400 cases."""
    assert fuzz.main(["--cases", "400", "--seconds", "600", "--seed", "7",
                      "--save-dir", str(tmp_path / "findings")]) == 0
    assert not (tmp_path / "findings").exists()


def test_extreme_header_fields_are_refused_cheaply(real_file):
    n = real_file[5]
    base = 6 + n + 8
    for off, fmt, value in [(base, ">I", 2**32 - 1), (base + 4, ">I", 0), (base, ">II", (8192, 8193)), (base, ">II", (8192, 8192)),
                            (base + 9, ">B", 0), (base + 10, ">H", 193), (base + 12, ">I", 2**32 - 1)]:
        d = bytearray(real_file)
        struct.pack_into(fmt, d, off, *(value if isinstance(value, tuple) else (value,)))
        with pytest.raises(AecError):
            coder.decode(fuzz.reseal(bytes(d)), device="cpu")


# ---- awkward images --------------------------------------------------------------------------

def _png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png16_rgb(w, h):
    """A real 48-bit RGB PNG (Pillow cannot write one)."""
    rng = np.random.default_rng(0)
    px = rng.integers(0, 65535, (h, w, 3), dtype=np.uint16).astype(">u2")
    raw = b"".join(b"\x00" + px[y].tobytes() for y in range(h))
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
            + _png_chunk(b"IDAT", zlib.compress(raw)) + _png_chunk(b"IEND", b""))


def _compress_file(tmp_path, name, data: bytes, *extra):
    p = tmp_path / name
    p.write_bytes(data)
    return main(["compress", str(p), "-o", str(tmp_path / (name + ".aec")), "-f", *extra])


def _saved(img, fmt, **kw):
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_16_bit_rgb_png_is_not_silently_reduced(tmp_path, capsys):
    assert _compress_file(tmp_path, "rgb48.png", _png16_rgb(20, 10)) == 1
    assert "--reduce-depth" in capsys.readouterr().err
    assert _compress_file(tmp_path, "rgb48.png", _png16_rgb(20, 10), "--reduce-depth") == 0


def test_grayscale_alpha_and_opaque_alpha(tmp_path, kodak_crop, capsys):
    la = kodak_crop.convert("LA")
    assert _compress_file(tmp_path, "la.png", _saved(la, "PNG")) == 0  # fully opaque: nothing lost
    assert "opaque alpha" in capsys.readouterr().err
    a = np.asarray(la).copy()
    a[0, 0, 1] = 0
    assert _compress_file(tmp_path, "la2.png", _saved(Image.fromarray(a, "LA"), "PNG")) == 1
    assert _compress_file(tmp_path, "la2.png", _saved(Image.fromarray(a, "LA"), "PNG"), "--drop-alpha") == 0
    with Image.open(tmp_path / "la2.png.aec") as back:
        assert back.mode == "L"


def test_cmyk_jpeg_and_exif_rotation(tmp_path, kodak_crop, capsys):
    assert _compress_file(tmp_path, "cmyk.jpg", _saved(kodak_crop.convert("CMYK"), "JPEG")) == 0
    assert "CMYK" in capsys.readouterr().err
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    assert _compress_file(tmp_path, "rot.jpg", _saved(kodak_crop, "JPEG", exif=exif)) == 0
    assert "EXIF orientation" in capsys.readouterr().err
    with Image.open(tmp_path / "rot.jpg.aec") as back:
        assert back.size == (64, 96)  # as displayed: portrait


def test_animated_gif_and_webp_code_the_first_frame_and_say_so(tmp_path, kodak_crop, capsys):
    frames = [kodak_crop, kodak_crop.transpose(Image.Transpose.FLIP_TOP_BOTTOM)]
    for fmt, name in (("GIF", "anim.gif"), ("WEBP", "anim.webp")):
        data = _saved(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100)
        assert _compress_file(tmp_path, name, data) == 0
        assert "only the first frame" in capsys.readouterr().err


def test_broken_and_bogus_inputs(tmp_path, kodak_crop, capsys):
    png = bytearray(_saved(kodak_crop, "PNG"))
    png[30] ^= 0xFF  # inside IHDR/IDAT: CRC no longer matches
    cases = {"badcrc.png": bytes(png), "zero.png": b"", "text.png": b"just text\n",
             "trunc.png": _saved(kodak_crop, "PNG")[:100]}
    for name, data in cases.items():
        assert _compress_file(tmp_path, name, data) == 1, name
        err = capsys.readouterr().err
        assert err.startswith("aecodec: error:") and err.count("\n") == 1
        assert not (tmp_path / (name + ".aec")).exists()


@pytest.mark.parametrize("w,h", [(100000, 100000), (70000, 10), (9000, 8000), (8193, 8193)])
def test_oversized_images_are_refused_with_aecodecs_limits(tmp_path, capsys, w, h):
    """Whichever check trips first (Pillow's bomb guard at twice the pixel limit, aecodec's per-side
    and pixel limits from the header), before any pixel is decoded: aecodec's message, the file named."""
    bomb = (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 100)) + _png_chunk(b"IEND", b""))
    assert _compress_file(tmp_path, "bomb.png", bomb) == 1
    err = capsys.readouterr().err
    assert "bomb.png: image" in err and "larger than aecodec codes (65535 pixels per side, 67 megapixels)" in err
    assert "decompression bomb" not in err and err.count("\n") == 1


def test_output_directory_problems(tmp_path, kodak_crop, monkeypatch, capsys):
    src = tmp_path / "in.png"
    kodak_crop.save(src)
    assert main(["compress", str(src), "-o", str(tmp_path / "nodir" / "x.aec")]) == 1
    assert "no such directory" in capsys.readouterr().err

    import tempfile

    def denied(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    assert main(["compress", str(src), "-o", str(tmp_path / "x.aec")]) == 1
    assert "Permission denied" in capsys.readouterr().err


@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()])
def test_failed_write_leaves_no_partial_file_and_keeps_the_old_one(tmp_path, kodak_crop, monkeypatch, failure):
    import os

    src = tmp_path / "in.png"
    kodak_crop.save(src)
    out = tmp_path / "out.aec"
    out.write_bytes(b"old contents")

    def broken_fsync(fd):
        raise failure

    monkeypatch.setattr(os, "fsync", broken_fsync)
    code = main(["compress", str(src), "-o", str(out), "-f"])
    assert code in (1, 130)
    assert out.read_bytes() == b"old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png", "out.aec"]
