"""Implementations of the CLI subcommands (argument parsing lives in cli.py)."""
from __future__ import annotations

import contextlib
import os
import sys
import time
import warnings
from pathlib import Path

from PIL import Image

from .codec.config import QUALITY_LEVELS
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


def _plan(inputs: list[str], output: str | None, suffix: str) -> list[tuple[str, str | None]]:
    """[(input, output path or None if that input is refused)] for one call.

    -o is a folder when it ends with a slash or is an existing directory, and always with several
    inputs (created if missing); otherwise the output file. Without -o each output goes beside its
    input with `suffix` (stdout for stdin). Nothing is written or imported here: refusals cost
    nothing (the folder is created once the plan stands)."""
    batch = len(inputs) > 1
    if batch and "-" in inputs:
        raise AecError("- (stdin) can only be the only input")
    if output == "-":
        if batch:
            raise AecError("-o - (stdout) takes a single input")
        if sys.stdout.isatty():
            raise AecError("refusing to write binary data to a terminal; redirect stdout or use -o FILE")
        return [(inputs[0], "-")]
    folder = None
    if output is not None and (batch or output.endswith(("/", os.sep)) or Path(output).is_dir()):
        folder = Path(output)
        if folder.exists() and not folder.is_dir():
            raise AecError(f"{output}: not a directory (several inputs need -o DIRECTORY)")
    elif output is not None:
        return [(inputs[0], output)]
    if inputs == ["-"] and folder is None:
        if sys.stdout.isatty():
            raise AecError("refusing to write binary data to a terminal; redirect stdout or use -o FILE")
        return [("-", "-")]
    plan, taken = [], {}
    for src in inputs:
        name = Path("stdin" if src == "-" else src).name
        out = str(folder / Path(name).with_suffix(suffix)) if folder else str(Path(src).with_suffix(suffix))
        key = os.path.abspath(out)
        if key in taken:
            print(f"aecodec: error: {src}: its output {out} is also {taken[key]}'s", file=sys.stderr)
            plan.append((src, None))
            continue
        taken[key] = src
        plan.append((src, out))
    if folder is not None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise AecError(f"{folder}: cannot create directory ({e.strerror})") from None
    return plan


def _check_output(src: str, out: str, force: bool) -> None:
    if out == "-":
        return
    if src != "-" and Path(out).resolve() == Path(src).resolve():
        raise AecError(f"{out}: output would overwrite the input")
    check_writable(Path(out), force)


def _notes_to_stderr(caught, quiet: bool, name: str) -> None:
    if quiet:
        return
    from .imageio import AecWarning

    for w in caught:
        if issubclass(w.category, AecWarning):
            print(f"aecodec: note: {name}: {w.message}", file=sys.stderr)


def _run_all(plan, one, quiet: bool, what: str) -> int:
    """Run `one(src, out)` for each planned file: it returns the file's summary line, or a
    callable that finishes the file (its last stage) and returns the line. A single file's error
    ends the command (exit 1); in a batch it is reported with the file's name and the rest still
    run, and each file's last stage runs in a second thread while the next file starts (at most
    one waits: two files' data in memory), its line printed in the files' order."""
    if len(plan) == 1 and plan[0][1] is not None:
        try:
            line = one(*plan[0])
            if callable(line):
                line = line()
        except AecError as e:
            raise AecError(_named(plan[0][0], e)) from None
        if not quiet:
            print(line, file=sys.stderr if plan[0][1] == "-" else sys.stdout)
        return 0
    from concurrent.futures import Future, ThreadPoolExecutor

    from tqdm import tqdm

    failed = sum(out is None for _, out in plan)
    bar = tqdm(total=len(plan), desc=what, unit="file", disable=quiet or not sys.stderr.isatty(), file=sys.stderr)

    def report(src: str, result) -> None:
        """A file's outcome: its line, its last stage's future, or the AecError that ended it."""
        nonlocal failed
        try:
            if isinstance(result, AecError):
                raise result
            line = result.result() if isinstance(result, Future) else result
        except AecError as e:
            failed += 1
            bar.write(f"aecodec: error: {_named(src, e)}", file=sys.stderr)
        else:
            if not quiet:
                bar.write(line, file=sys.stdout)
        bar.update()

    with ThreadPoolExecutor(1, thread_name_prefix="aecodec-finish") as finisher:
        waiting = None  # (src, the future of its last stage)
        for src, out in plan:
            if out is None:
                bar.update()
                continue
            try:
                result = one(src, out)
            except AecError as e:
                result = e
            if waiting:
                report(*waiting)
                waiting = None
            if callable(result):
                waiting = (src, finisher.submit(result))
            else:
                report(src, result)
        if waiting:
            report(*waiting)
    bar.close()
    if failed:
        print(f"aecodec: {failed} of {len(plan)} files failed", file=sys.stderr)
        return 1
    return 0


@contextlib.contextmanager
def _refinement_bar(src: str, effort: int, quiet: bool):
    """A progress bar on a terminal for effort > 0 (minutes per image); yields the callback."""
    if not effort or quiet or not sys.stderr.isatty():
        yield None
        return
    from tqdm import tqdm

    with tqdm(desc=f"{src}: effort {effort}", unit="step", leave=False, file=sys.stderr) as bar:
        def progress(step: int, steps: int) -> None:
            bar.total = steps
            bar.update(step - bar.n)
        yield progress


def _job_pixels(plan, pixels_of) -> int:
    """The pixels of a batch's files (pixels_of(path) from each file's header), for the choice of
    the CPU engine: a batch repays a faster engine's start-up sooner than one image. Unreadable
    files count 0: their own coding reports them."""
    if len(plan) < 2:
        return 0
    total = 0
    for src, out in plan:
        if out is None:
            continue
        try:
            total += pixels_of(src)
        except Exception:  # noqa: BLE001 (any reader's failure; the file's own coding names it)
            continue
    return total


def _image_pixels(path: str) -> int:
    with Image.open(path) as im:
        return im.width * im.height


def _aec_pixels(path: str) -> int:
    from .codec.bitstream import HEAD_MAX, peek_size

    with open(path, "rb") as f:  # the header alone: the file itself is read once, to decode it
        width, height = peek_size(f.read(HEAD_MAX))
    return width * height


def cmd_compress(args) -> int:
    from .imageio import open_image, to_codec_array

    def one(src: str, out: str) -> str:
        _check_output(src, out, args.force)
        raw = _read_input(src)
        if not raw:
            raise AecError(f"{src}: empty file")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with open_image(raw, name="stdin" if src == "-" else src) as im:
                rgb, mode = to_codec_array(im, args.drop_alpha, args.reduce_depth)
        _notes_to_stderr(caught, args.quiet, src)
        from .codec import coder

        t0 = time.perf_counter()
        pixels = rgb.shape[0] * rgb.shape[1]
        target = ""
        with _refinement_bar(src, args.effort, args.quiet) as progress:
            if args.size or args.bpp:
                max_bytes = args.size or int(args.bpp * pixels / 8)
                data, _ = coder.encode_to_target(rgb, mode, max_bytes=max_bytes, k=args.k, device=args.device,
                                                 effort=args.effort, progress=progress, job_pixels=job)
                target = f" (target {max_bytes} bytes)"
            elif args.psnr:
                data, q = coder.encode_to_target(rgb, mode, min_psnr=args.psnr, k=args.k, device=args.device,
                                                 effort=args.effort, progress=progress, job_pixels=job)
                target = f" (target {args.psnr:g} dB)"
            else:
                data = coder.encode(rgb, mode, 4 if args.quality is None else args.quality, args.k,
                                    device=args.device, effort=args.effort, progress=progress, job_pixels=job)
        elapsed = time.perf_counter() - t0
        _write_output(out, data, args.force)
        from .codec.bitstream import parse

        hdr = parse(data)[0]
        reached = ""
        if args.psnr:
            from .codec.coder import decode

            reached = f", PSNR {_psnr(rgb, decode(data, device=args.device)[0], mode):.2f} dB"
        return (f"{src} -> {out}: {hdr.width}x{hdr.height} {hdr.mode}, q{hdr.quality:.4g} k{hdr.k}, "
                f"{len(data)} bytes{target}, {len(data) * 8 / pixels:.4f} bpp{reached}, {elapsed:.2f} s")

    if args.quality is not None and (args.size or args.bpp or args.psnr):
        raise AecError("give either a quality or a target (--size, --bpp, --psnr), not both")
    plan = _plan(args.input, args.output, ".aec")
    job = _job_pixels(plan, _image_pixels)
    return _run_all(plan, one, args.quiet, "compress")


def _psnr(rgb, pixels, mode: str) -> float:
    from .bench.metrics import psnr

    return psnr(rgb, pixels[:, :, None].repeat(3, axis=2) if mode == "L" else pixels)


# Formats Pillow writes lossily by default, with the options aecodec writes them at.
LOSSY_SAVE = {"JPEG": {"quality": 95, "subsampling": 0}, "WEBP": {"quality": 95}, "AVIF": {"quality": 95},
              "HEIF": {"quality": 95}, "JXL": {"quality": 95}}


def _encoded_image(img: Image.Image, fmt: str, out: str) -> bytes:
    """The decoded image in the output's format. PNG at zlib level 1: 4 % larger than Pillow's
    default level 6 on Kodak's decodes, 4x faster to write (26 against 113 ms per image, a third of
    a batch's time per file); the pixels are the same."""
    import io

    buf = io.BytesIO()
    try:
        img.save(buf, format=fmt, **LOSSY_SAVE.get(fmt, {"compress_level": 1} if fmt == "PNG" else {}))
    except (OSError, ValueError, KeyError) as e:
        raise AecError(f"{out}: cannot write {fmt}: {e}") from None
    return buf.getvalue()


def _output_format(out: str) -> str:
    if out == "-":
        return "PNG"
    ext = Path(out).suffix.lower()
    Image.preinit()  # the common formats (PNG, JPEG, BMP, ...): importing every plugin costs ~40 ms
    fmt = Image.EXTENSION.get(ext) or Image.registered_extensions().get(ext)
    if fmt is None or fmt not in Image.SAVE:
        raise AecError(f"{out}: unknown image extension {ext or '(none)'!r}; use e.g. .png, .bmp, .tif, .webp")
    return fmt


def cmd_decompress(args) -> int:
    from .codec.bitstream import MAX_FILE, parse
    from .codec.zoo import check_known

    def one(src: str, out: str):
        fmt = _output_format(out)
        _check_output(src, out, args.force)
        data = _read_input(src, MAX_FILE)
        try:
            header = parse(data)[0]
            check_known(header.model)
        except AecError as e:
            raise AecError(f"{src}: {e}") from None
        from .codec import coder

        t0 = time.perf_counter()
        try:
            latents = coder.decode_latents(data, device=args.device, job_pixels=job)
        except AecError as e:
            raise AecError(f"{src}: {e}") from None
        entropy_s = time.perf_counter() - t0
        if fmt in LOSSY_SAVE and not args.quiet:
            print(f"aecodec: note: {out}: {fmt} is lossy; the decoded image is re-encoded at quality "
                  f"{LOSSY_SAVE[fmt]['quality']} (write .png to keep the decoded pixels exactly)", file=sys.stderr)

        def finish() -> str:
            from .imageio import from_codec_array

            t1 = time.perf_counter()
            pixels, header = coder.synthesize(latents)
            img = from_codec_array(pixels, header.mode)
            elapsed = entropy_s + time.perf_counter() - t1
            _write_output(out, _encoded_image(img, fmt, out), args.force)
            return f"{src} -> {out}: {img.width}x{img.height} {img.mode}, {elapsed:.2f} s"

        return finish

    # beside its input a decoded file is STEM.decoded.png, never STEM.png: that is usually the
    # original the .aec was made from (`compress photo.png` then `decompress photo.aec`)
    plan = _plan(args.input, args.output, ".decoded.png" if args.output is None else ".png")
    job = _job_pixels(plan, _aec_pixels)
    return _run_all(plan, one, args.quiet, "decompress")


def cmd_info(args) -> int:
    """The header of each file: the fields in rows for one file, one line per file for several."""
    from .codec.bitstream import MAX_FILE, parse

    if len(args.input) > 1 and "-" in args.input:
        raise AecError("- (stdin) can only be the only input")
    failed = 0
    for src in args.input:
        try:
            data = _read_input(src, MAX_FILE)
            h = parse(data)[0]
        except AecError as e:
            if len(args.input) == 1:
                raise AecError(_named(src, e)) from None
            print(f"aecodec: error: {_named(src, e)}", file=sys.stderr)
            failed += 1
            continue
        if len(args.input) > 1:
            print(f"{src}: {h.width}x{h.height} {h.mode}, model {h.model}, q{h.quality:g} k{h.k}, {len(data)} bytes, "
                  f"{len(data) * 8 / h.pixels:.4f} bpp")
            continue
        rows = [
            ("format", f"aec version {h.version}"),
            ("model", f"{h.model} (weights digest {h.digest.hex()})"),
            ("size", f"{h.width}x{h.height}"),
            ("mode", h.mode),
            ("quality", f"{h.quality:g}"),
            ("k", h.k),
            ("payload", f"z {h.z_length} bytes, y {h.y_length} bytes"),
            ("file size", f"{len(data)} bytes"),
            ("bpp", f"{len(data) * 8 / h.pixels:.4f}"),
        ]
        for name, value in rows:
            print(f"{name:>10}: {value}")
    if failed:
        print(f"aecodec: {failed} of {len(args.input)} files failed", file=sys.stderr)
        return 1
    return 0


def _named(src: str, e: Exception) -> str:
    """An error message that names the file it is about (once)."""
    name = "stdin" if src == "-" else src
    return str(e) if str(e).startswith(name) else f"{name}: {e}"


def cmd_bench(args) -> int:
    from .bench import require_extra

    require_extra()
    from .bench.rd import run_from_args

    return run_from_args(args)


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
    qualities = [args.quality] if args.quality else QUALITY_LEVELS
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
