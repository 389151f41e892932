"""What a user waits for and how much memory it takes: `python -m aecodec.bench.latency`.

Quality 4 (default k), this machine, on kodim23 (768x512) and a 24 MP photo mosaic:
- in-process encode and decode time (model already loaded; median of --repeat runs for kodim23),
  and the decoded PSNR;
- whole-process time and peak RSS of the `aecodec` command: `--help`, compress, decompress, and
  compress/decompress of a batch of the 24 Kodak files in one call (and, with --separate, one
  process per file, the way a loop over files ran before batches existed), on each CPU engine
  installed (numpy; openvino) and as device "auto" chooses;
- with --sizes, one-shot compress and decompress of kodim23 resized from 256x256 to 2048x1536 on
  each engine: where a faster engine's start-up pays off (engines.FAST_CPU_MIN_PIXELS).

Peak RSS is each child process's own maximum resident set (os.wait4), shared libraries included.
Pause a background training run while this runs (`make bench-latency` does).
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ..codec.engines import ENGINE_ENV
from . import KODAK_ENV, kodak_folder
from .large import mosaic

QUALITY = 4


def _aecodec() -> list[str]:
    exe = Path(sys.executable).with_name("aecodec")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "aecodec"]


TIME = "/usr/bin/time"


def run_process(args: list[str], env: dict | None = None) -> tuple[float, float | None, int]:
    """-> (seconds, peak RSS MB or None, exit code) of one child process.

    The peak comes from GNU time: a child forked from this (large) process would inherit its
    high-water mark across exec, so getrusage cannot tell the child's own."""
    with tempfile.NamedTemporaryFile("r") as rss:
        wrap = [TIME, "-f", "%M", "-o", rss.name] if os.access(TIME, os.X_OK) else []
        t = time.perf_counter()
        p = subprocess.run(wrap + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           env=None if env is None else {**os.environ, **env})
        dt = time.perf_counter() - t
        text = rss.read().strip().splitlines()
    if p.returncode != 0:
        err = p.stderr.decode(errors="replace").strip()
        raise SystemExit(f"{' '.join(args[:3])} ... failed ({p.returncode}): {err[-300:]}")
    return dt, (int(text[-1]) / 1024 if wrap and text else None), p.returncode


def in_process(path: Path, repeat: int, engine: str = "numpy") -> dict:
    """Encode and decode times with the model loaded, on the CPU. engine "numpy" is what the API
    and the CLI use on the CPU; "openvino" the optional bf16 engine; "torch" runs the torch engine
    on the CPU for comparison (measure it last: torch's idle OpenMP threads slow numpy's BLAS in
    the same process)."""
    from aecodec.bench.metrics import psnr
    from aecodec.codec import coder, engines

    eng = engines.create(engine, device="cpu" if engine == "torch" else None)
    with Image.open(path) as im:
        ref = np.asarray(im.convert("RGB"))
    data = coder.encode(ref, "RGB", QUALITY, engine=eng)  # warms up
    coder.decode(data, engine=eng)
    enc, dec = [], []
    for _ in range(repeat):
        t = time.perf_counter()
        data = coder.encode(ref, "RGB", QUALITY, engine=eng)
        enc.append(time.perf_counter() - t)
        t = time.perf_counter()
        out = coder.decode(data, engine=eng)[0]
        dec.append(time.perf_counter() - t)
    return {"encode_s": statistics.median(enc), "decode_s": statistics.median(dec), "bytes": len(data),
            "bpp": len(data) * 8 / (ref.shape[0] * ref.shape[1]), "psnr": psnr(ref, out),
            "range": (min(enc), max(enc), min(dec), max(dec)), "precision": getattr(eng, "precision", "f32")}


def _has_openvino() -> bool:
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


SIZES = ((256, 256), (512, 384), (768, 512), (1024, 768), (1536, 1024), (2048, 1536))


def one_shot_sizes(cmd: list[str], kodim23: Path, tmp: Path, engines_: list[str], repeat: int = 3) -> None:
    """Whole-process compress / decompress per image size and engine (median of `repeat`)."""
    from aecodec.codec.engines import cpu_engine

    print(f"one-shot calls by size (median of {repeat}; auto: the engine device \"auto\" picks here)")
    print(f"{'size':>10} {'Mpx':>5} " + " ".join(f"{e + ' c/d s':>16}" for e in engines_) + "   auto c/d")
    with Image.open(kodim23) as im:
        src = im.convert("RGB")
    for w, h in SIZES:
        png = tmp / f"s{w}.png"
        src.resize((w, h), Image.LANCZOS).save(png)
        ref = tmp / f"s{w}.aec"
        run_process(cmd + ["compress", str(png), "-o", str(ref), "-f"], {"AECODEC_ENGINE": "numpy"})
        cells = []
        for e in engines_:
            env = {"AECODEC_ENGINE": e}
            c = statistics.median(run_process(cmd + ["compress", str(png), "-o", str(tmp / "x.aec"), "-f"], env)[0]
                                  for _ in range(repeat))
            d = statistics.median(run_process(cmd + ["decompress", str(ref), "-o", str(tmp / "x.png"), "-f"], env)[0]
                                  for _ in range(repeat))
            cells.append(f"{c:7.2f} / {d:5.2f}")
        auto = f"{cpu_engine(w * h)} / {cpu_engine(w * h, decoding=True)}"
        print(f"{w:>5}x{h:<4} {w * h / 1e6:5.2f} " + " ".join(f"{c:>16}" for c in cells) + f"   {auto}", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m aecodec.bench.latency", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kodak", help=f"Kodak folder: kodim23, the batch, the mosaic (default ${KODAK_ENV})")
    ap.add_argument("--repeat", type=int, default=5, help="in-process runs on kodim23 (median reported)")
    ap.add_argument("--no-large", action="store_true", help="skip the 24 MP image")
    ap.add_argument("--separate", action="store_true", help="also time one process per file for the batch")
    ap.add_argument("--sizes", action="store_true", help="also time one-shot calls per image size and engine")
    args = ap.parse_args(argv)
    kodak = Path(kodak_folder(args.kodak))
    kodim23 = kodak / "kodim23.png"
    files = sorted(kodak.glob("*.png"))
    if not kodim23.exists() or len(files) < 2:
        raise SystemExit(f"{kodak}: Kodak PNGs not found")
    cmd = _aecodec()
    forced = os.environ.pop(ENGINE_ENV, None)  # this process's and its children's: each row names its engine
    if forced:
        print(f"note: {ENGINE_ENV}={forced} is ignored here: the rows time each engine and device \"auto\"")
    print(f"aecodec latency, quality {QUALITY}, {os.cpu_count()} CPUs, python {sys.version.split()[0]}")

    r = in_process(kodim23, args.repeat)
    print(f"in-process kodim23 768x512: encode {r['encode_s']:.3f} s, decode {r['decode_s']:.3f} s, "
          f"{r['bpp']:.4f} bpp, PSNR {r['psnr']:.3f} dB (numpy engine; runs ranged "
          f"{r['range'][0]:.3f}-{r['range'][1]:.3f} / {r['range'][2]:.3f}-{r['range'][3]:.3f} s)")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if not args.no_large:
            big = tmp / "big.png"
            mosaic(kodak, 6000, 4000).save(big, compress_level=1)
            r = in_process(big, 1)
            print(f"in-process mosaic 6000x4000: encode {r['encode_s']:.2f} s, decode {r['decode_s']:.2f} s, "
                  f"{r['bpp']:.4f} bpp, PSNR {r['psnr']:.2f} dB")

        print(f"{'whole process':<50} {'s':>7} {'peak MB':>8}")

        def row(label, argv_, env=None):
            try:
                s, mb, _ = run_process(argv_, env)
            except SystemExit as e:  # e.g. an aecodec without batches
                print(f"{label:<50} failed: {e}", flush=True)
                return
            print(f"{label:<50} {s:7.2f} {mb or float('nan'):8.0f}", flush=True)

        row("aecodec --help", cmd + ["--help"])
        engines_ = ["numpy"] + (["openvino"] if _has_openvino() else [])
        aec, n = tmp / "k23.aec", len(files)
        for e in engines_ + ["auto"]:
            env = None if e == "auto" else {"AECODEC_ENGINE": e}
            tag, d = f", {e}", tmp / e
            d.mkdir()
            row("compress kodim23" + tag, cmd + ["compress", str(kodim23), "-o", str(d / "k23.aec"), "-q", str(QUALITY)], env)
            if e == "numpy":
                shutil.copy(d / "k23.aec", aec)
            row("decompress kodim23" + tag, cmd + ["decompress", str(aec), "-o", str(d / "k23.png")], env)
            ref = tmp / "numpy"  # every engine decodes the numpy engine's files
            if not args.no_large:
                row("compress 24 MP" + tag, cmd + ["compress", str(big), "-o", str(d / "big.aec")], env)
                row("decompress 24 MP" + tag, cmd + ["decompress", str(ref / "big.aec"), "-o", str(d / "big.png")], env)
            row(f"compress {n} Kodak files, one call" + tag, cmd + ["compress", *map(str, files), "-o", str(d / "batch")], env)
            row(f"decompress {n} files, one call" + tag,
                cmd + ["decompress", *map(str, sorted((ref / "batch").glob("*.aec"))), "-o", str(d / "out")], env)
        if args.sizes:
            one_shot_sizes(cmd, kodim23, tmp, engines_)
        if args.separate:
            batch, out = tmp / "numpy" / "batch", tmp / "numpy" / "sep"
            out.mkdir()
            shutil.rmtree(batch)
            batch.mkdir()
            t = time.perf_counter()
            peak = 0.0
            for f in files:
                peak = max(peak, run_process(cmd + ["compress", str(f), "-o", str(batch / (f.stem + ".aec"))])[1] or 0)
            print(f"{f'compress {n} files, one process each':<50} {time.perf_counter() - t:7.2f} {peak:8.0f}")
            t = time.perf_counter()
            for f in sorted(batch.glob("*.aec")):
                peak = max(peak, run_process(cmd + ["decompress", str(f), "-o", str(out / (f.stem + "x.png"))])[1] or 0)
            print(f"{f'decompress {n} files, one process each':<50} {time.perf_counter() - t:7.2f} {peak:8.0f}")
    if _has_openvino():
        r = in_process(kodim23, args.repeat, "openvino")
        print(f"the openvino engine ({r['precision']}), kodim23: encode {r['encode_s']:.3f} s, decode {r['decode_s']:.3f} s, "
              f"{r['bpp']:.4f} bpp, PSNR {r['psnr']:.3f} dB (runs ranged {r['range'][0]:.3f}-{r['range'][1]:.3f} / "
              f"{r['range'][2]:.3f}-{r['range'][3]:.3f} s)")
        if not args.no_large:
            with tempfile.TemporaryDirectory() as tmp:
                big = Path(tmp) / "big.png"
                mosaic(kodak, 6000, 4000).save(big, compress_level=1)
                r = in_process(big, 1, "openvino")
            print(f"the openvino engine, mosaic 6000x4000: encode {r['encode_s']:.2f} s, decode {r['decode_s']:.2f} s, "
                  f"{r['bpp']:.4f} bpp, PSNR {r['psnr']:.2f} dB")
    r = in_process(kodim23, args.repeat, "torch")
    print(f"for comparison, the torch engine on the CPU, kodim23: encode {r['encode_s']:.3f} s, decode "
          f"{r['decode_s']:.3f} s, {r['bpp']:.4f} bpp, PSNR {r['psnr']:.3f} dB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
