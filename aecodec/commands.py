"""Implementations of the CLI subcommands (argument parsing lives in cli.py)."""
from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

from PIL import Image

from .errors import AecError
from .fileio import atomic_write_bytes, check_writable, write_stdout


def _read_input(path: str, limit: int | None = None) -> bytes:
    """Read a file or stdin; with limit, refuse (without reading it all) anything larger."""
    if path == "-":
        data = sys.stdin.buffer.read(limit + 1) if limit else sys.stdin.buffer.read()
        if limit and len(data) > limit:
            raise AecError(f"input is larger than {limit >> 20} MiB; not an .aec file")
        return data
    p = Path(path)
    if p.is_dir():
        raise AecError(f"{path}: is a directory")
    try:
        if limit and p.stat().st_size > limit:
            raise AecError(f"{path}: larger than {limit >> 20} MiB; not an .aec file")
        return p.read_bytes()
    except FileNotFoundError:
        raise AecError(f"{path}: no such file") from None
    except OSError as e:
        raise AecError(f"{path}: {e.strerror}") from None


def _write_output(path: str, data: bytes, force: bool) -> None:
    if path == "-":
        write_stdout(data)
    else:
        atomic_write_bytes(Path(path), data, force=force)


def _output_path(args, suffix: str) -> str:
    """-o if given; stdout for stdin input; else the input with `suffix`. Checked before the work
    starts, so a refused output costs nothing."""
    if args.output:
        out = args.output
    elif args.input == "-":
        out = "-"
    else:
        out = str(Path(args.input).with_suffix(suffix))
    if out == "-":
        return out
    if args.input != "-" and Path(out).resolve() == Path(args.input).resolve():
        raise AecError("output would overwrite the input")
    check_writable(Path(out), args.force)
    return out


def _notes_to_stderr(caught, quiet: bool) -> None:
    if quiet:
        return
    from .imageio import AecWarning

    for w in caught:
        if issubclass(w.category, AecWarning):
            print(f"aecodec: note: {w.message}", file=sys.stderr)


def cmd_compress(args) -> int:
    from .api import compress

    out = _output_path(args, ".aec")
    raw = _read_input(args.input)
    if not raw:
        raise AecError(f"{args.input}: empty file")
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = compress(raw, quality=args.quality, k=args.k, device=args.device,
                        drop_alpha=args.drop_alpha, reduce_depth=args.reduce_depth)
    elapsed = time.perf_counter() - t0
    _notes_to_stderr(caught, args.quiet)
    _write_output(out, data, args.force)
    if not args.quiet:
        from .codec.bitstream import parse

        h = parse(data)[0]
        print(f"{args.input} -> {out}: {h.width}x{h.height} {h.mode}, q{h.quality} k{h.k}, "
              f"{len(data)} bytes, {len(data) * 8 / h.pixels:.4f} bpp, {elapsed:.2f} s",
              file=sys.stderr if out == "-" else sys.stdout)
    return 0


def _output_format(out: str) -> str:
    if out == "-":
        return "PNG"
    ext = Path(out).suffix.lower()
    fmt = Image.registered_extensions().get(ext)
    if fmt is None or fmt not in Image.SAVE:
        raise AecError(f"{out}: unknown image extension {ext or '(none)'!r}; use e.g. .png, .bmp, .tif, .webp")
    return fmt


def cmd_decompress(args) -> int:
    from .api import decompress

    out = _output_path(args, ".png")
    fmt = _output_format(out)
    from .codec.bitstream import MAX_FILE

    data = _read_input(args.input, MAX_FILE)
    t0 = time.perf_counter()
    img = decompress(data, device=args.device)
    elapsed = time.perf_counter() - t0
    import io

    buf = io.BytesIO()
    try:
        img.save(buf, format=fmt)
    except (OSError, ValueError, KeyError) as e:
        raise AecError(f"cannot write {fmt}: {e}") from None
    _write_output(out, buf.getvalue(), args.force)
    if not args.quiet:
        print(f"{args.input} -> {out}: {img.width}x{img.height} {img.mode}, {elapsed:.2f} s",
              file=sys.stderr if out == "-" else sys.stdout)
    return 0


def cmd_info(args) -> int:
    from .codec.bitstream import MAX_FILE, parse

    data = _read_input(args.input, MAX_FILE)
    h = parse(data)[0]
    rows = [
        ("format", "aec version 1"),
        ("model", f"{h.model} (weights digest {h.digest.hex()})"),
        ("size", f"{h.width}x{h.height}"),
        ("mode", h.mode),
        ("quality", h.quality),
        ("k", h.k),
        ("payload", f"z {h.z_length} bytes, y {h.y_length} bytes"),
        ("file size", f"{len(data)} bytes"),
        ("bpp", f"{len(data) * 8 / h.pixels:.4f}"),
    ]
    for name, value in rows:
        print(f"{name:>10}: {value}")
    return 0


def cmd_bench(args) -> int:
    if args.directory == "kernels":
        from .bench.kernels import main

        return main(args.rest)
    from .bench.rd import main

    return main([args.directory, *args.rest])


def cmd_demo(args) -> int:
    """Compress and decompress the sample photo that ships with the package, at every quality."""
    import resource
    from importlib import resources

    import numpy as np

    from .api import compress, decompress
    from .bench.metrics import psnr

    with resources.as_file(resources.files("aecodec.data").joinpath("kodim23.png")) as path:
        with Image.open(path) as im:
            ref = im.convert("RGB")
    arr = np.asarray(ref)
    n = ref.width * ref.height
    print(f"sample: kodim23.png {ref.width}x{ref.height} (Kodak), device {args.device}")
    print(f"{'q':>2} {'k':>4} {'bytes':>7} {'bpp':>7} {'PSNR dB':>8} {'enc s':>6} {'dec s':>6}")
    qualities = [args.quality] if args.quality else range(1, 9)
    for q in qualities:
        t0 = time.perf_counter()
        data = compress(ref, quality=q, device=args.device)
        t1 = time.perf_counter()
        out = decompress(data, device=args.device)
        t2 = time.perf_counter()
        from .codec.bitstream import parse

        h = parse(data)[0]
        print(f"{q:>2} {h.k:>4} {len(data):>7} {len(data) * 8 / n:>7.4f} {psnr(arr, np.asarray(out)):>8.2f} "
              f"{t1 - t0:>6.2f} {t2 - t1:>6.2f}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory (max RSS): {peak:.0f} MB")
    return 0
