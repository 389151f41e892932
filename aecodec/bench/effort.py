"""Encoder control on Kodak: `python -m aecodec.bench.effort`.

- Effort levels: bpp and PSNR per quality for each effort on a subset of images, BD-rate of each
  effort against effort 0 (same images, same qualities), and the encode time per image.
- Size targets (`--size`): achieved size / target over every image, for a few targets.
- Continuous quality: file size at quarter steps between two levels (monotone?).

Pause a background training run while this runs (it times encodes).
"""
from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

from . import KODAK_ENV, kodak_folder
from .bdrate import bd_rate
from .metrics import psnr


def _images(folder: Path, names: list[str] | None) -> list[tuple[str, np.ndarray]]:
    files = sorted(folder.glob("*.png"))
    if names:
        files = [f for f in files if f.name in names]
    out = []
    for f in files:
        with Image.open(f) as im:
            out.append((f.name, np.asarray(im.convert("RGB"))))
    return out


def _refined_run(img, q: int, efforts) -> dict[int, tuple[int, float, float]]:
    """One encode at the highest effort, read at every lower effort's step count too: the Adam
    path is the same for every effort, so the best latents after EFFORT_STEPS[e] steps are what
    `effort=e` codes. -> {effort: (file bytes, PSNR, encode seconds)}; the seconds of a lower
    effort are the run's time to that step (the benchmark's own measurements excluded) plus the
    final coding."""
    from ..codec import coder, engines
    from ..codec.refine import EFFORT_STEPS

    top = max(efforts)
    at = {EFFORT_STEPS[e]: e for e in efforts if e > 0}
    seen, paused = {}, [0.0]
    t0 = time.perf_counter()

    def on_check(step, steps, best):
        if step in at:
            t1 = time.perf_counter()
            payload, mse = enc.measure(*best, q)
            paused[0] += time.perf_counter() - t1
            seen[at[step]] = (payload, mse, t1 - t0 - paused[0])

    engine = engines.for_device("cpu", effort=top)
    with engine.session():
        enc = coder._Encoder(img, "RGB", engine)
        data = enc.code(q, None, top, on_check)
    total = time.perf_counter() - t0 - paused[0]
    header = len(data) - seen[top][0]  # same model, quality and k: the same header and framing
    tail = total - seen[top][2]        # the final coding after the last check
    return {e: (payload + header, 10 * math.log10(255 ** 2 / mse), secs + tail)
            for e, (payload, mse, secs) in seen.items()}


def effort_table(images, qualities, efforts) -> None:
    from ..codec import coder
    from ..codec.zoo import DEFAULT_MODEL

    print(f"effort levels on {len(images)} images ({', '.join(n for n, _ in images)}), qualities {qualities}, "
          f"model {DEFAULT_MODEL}; efforts above 0 read off one effort-{max(efforts)} run per image and quality")
    print(f"{'image':>12} {'q':>3} " + " ".join(f"{'e' + str(e) + ' bytes':>10} {'dB':>7} {'s':>7}" for e in efforts))
    points = {e: {q: [] for q in qualities} for e in efforts}  # (bpp, PSNR, seconds) per image
    for q in qualities:
        for name, img in images:
            pixels = img.shape[0] * img.shape[1]
            row = {}
            if 0 in efforts:
                t0 = time.perf_counter()
                data = coder.encode(img, "RGB", q, device="cpu")
                secs = time.perf_counter() - t0
                row[0] = (len(data), psnr(img, coder.decode(data, device="cpu")[0]), secs)
            if max(efforts) > 0:
                row.update(_refined_run(img, q, efforts))
            for e in efforts:
                points[e][q].append((row[e][0] * 8 / pixels, row[e][1], row[e][2]))
            print(f"{name:>12} {q:>3} " + " ".join(f"{row[e][0]:>10} {row[e][1]:7.3f} {row[e][2]:7.1f}"
                                                  for e in efforts), flush=True)
    curves = {e: ([float(np.mean([p[0] for p in points[e][q]])) for q in qualities],
                  [float(np.mean([p[1] for p in points[e][q]])) for q in qualities],
                  statistics.mean(p[2] for q in qualities for p in points[e][q])) for e in efforts}
    print("\n| effort | " + " | ".join(f"q{q} bpp / dB" for q in qualities) + " | BD-rate vs effort 0 (PSNR) "
          "| encode s per image |\n| ---: | " + "---: | " * len(qualities) + "---: | ---: |")
    base = curves[efforts[0]]
    for e in efforts:
        bd = bd_rate(base[0], base[1], curves[e][0], curves[e][1])
        cells = " | ".join(f"{b:.4f} / {p:.2f}" for b, p in zip(curves[e][0], curves[e][1]))
        print(f"| {e} | {cells} | {bd:+.2f} % | {curves[e][2]:.1f} |")


def target_table(images, targets_kb) -> None:
    from ..codec import coder

    print(f"\nsize targets over {len(images)} images")
    print("| target | achieved / target: mean | min | max | over target | quality range |")
    print("| ---: | ---: | ---: | ---: | ---: | --- |")
    for kb in targets_kb:
        target = int(kb * 1000)
        ratios, qs, over = [], [], 0
        for _, img in images:
            try:
                data, q = coder.encode_to_target(img, "RGB", max_bytes=target, device="cpu")
            except Exception:
                continue
            ratios.append(len(data) / target)
            qs.append(q)
            over += len(data) > target
        print(f"| {kb:g} KB | {np.mean(ratios):.4f} | {min(ratios):.4f} | {max(ratios):.4f} | {over} | "
              f"{min(qs):.3f}..{max(qs):.3f} |", flush=True)


def continuous_table(images, lo: int) -> None:
    from ..codec import coder

    steps = [lo + i / 4 for i in range(5)]
    sizes = [sum(len(coder.encode(img, "RGB", q, device="cpu")) for _, img in images) for q in steps]
    print(f"\ncontinuous quality {lo}..{lo + 1}, total bytes over {len(images)} images: "
          + ", ".join(f"q{q:g}: {s}" for q, s in zip(steps, sizes))
          + f" (monotone: {sizes == sorted(sizes)})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m aecodec.bench.effort", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kodak", help=f"the Kodak folder (default ${KODAK_ENV})")
    ap.add_argument("--images", default="kodim01.png,kodim05.png,kodim14.png,kodim23.png",
                    help="images for the effort table (comma-separated names; the targets use all)")
    ap.add_argument("--qualities", default="2,4,6,8")
    ap.add_argument("--efforts", default="0,1,2,3")
    ap.add_argument("--targets", default="20,40,80", help="size targets in KB (1000 bytes)")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: effort,targets,continuous")
    args = ap.parse_args(argv)
    skip = set(args.skip.split(","))
    folder = Path(kodak_folder(args.kodak))
    if "effort" not in skip:
        effort_table(_images(folder, args.images.split(",")), [int(q) for q in args.qualities.split(",")],
                     [int(e) for e in args.efforts.split(",")])
    everything = _images(folder, None)
    if "targets" not in skip:
        target_table(everything, [float(t) for t in args.targets.split(",")])
    if "continuous" not in skip:
        continuous_table(everything, 4)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
