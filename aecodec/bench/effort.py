"""Encoder control on Kodak: `python -m aecodec.bench.effort`.

- Effort levels: bpp and PSNR per quality for each effort on a subset of images, BD-rate of each
  effort against effort 0 (same images, same qualities), and the encode time per image.
- Size targets (`--size`): achieved size / target over every image, for a few targets.
- Continuous quality: file size at quarter steps between two levels (monotone?).

Pause a background training run while this runs (it times encodes).
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

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


def effort_table(images, qualities, efforts) -> None:
    from ..codec import coder
    from ..codec.weights import load_model

    loaded = load_model()
    curves = {}
    print(f"effort levels on {len(images)} images ({', '.join(n for n, _ in images)}), qualities {qualities}")
    print(f"{'effort':>6} {'q':>3} {'bpp':>7} {'PSNR':>7} {'encode s/img':>13}")
    for e in efforts:
        bpps, psnrs, secs = [], [], []
        for q in qualities:
            b, p, t = [], [], []
            for _, img in images:
                t0 = time.perf_counter()
                data = coder.encode(img, "RGB", q, loaded=loaded, device="cpu", effort=e)
                t.append(time.perf_counter() - t0)
                out = coder.decode(data, device="cpu")[0]
                b.append(len(data) * 8 / (img.shape[0] * img.shape[1]))
                p.append(psnr(img, out))
            bpps.append(float(np.mean(b)))
            psnrs.append(float(np.mean(p)))
            secs.append(float(np.mean(t)))
            print(f"{e:>6} {q:>3} {bpps[-1]:7.4f} {psnrs[-1]:7.3f} {secs[-1]:13.2f}", flush=True)
        curves[e] = (bpps, psnrs, statistics.mean(secs))
    print("\n| effort | BD-rate vs effort 0 (PSNR) | encode s per image |\n| ---: | ---: | ---: |")
    base = curves[efforts[0]]
    for e in efforts:
        bd = bd_rate(base[0], base[1], curves[e][0], curves[e][1])
        print(f"| {e} | {bd:+.2f} % | {curves[e][2]:.2f} |")


def target_table(images, targets_kb) -> None:
    from ..codec import coder
    from ..codec.weights import load_model

    loaded = load_model()
    print(f"\nsize targets over {len(images)} images")
    print("| target | achieved / target: mean | min | max | over target | quality range |")
    print("| ---: | ---: | ---: | ---: | ---: | --- |")
    for kb in targets_kb:
        target = int(kb * 1000)
        ratios, qs, over = [], [], 0
        for _, img in images:
            try:
                data, q = coder.encode_to_target(img, "RGB", max_bytes=target, loaded=loaded, device="cpu")
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
    ap.add_argument("--kodak", default="../shared/data/kodak")
    ap.add_argument("--images", default="kodim01.png,kodim05.png,kodim14.png,kodim23.png",
                    help="images for the effort table (comma-separated names; the targets use all)")
    ap.add_argument("--qualities", default="2,4,6,8")
    ap.add_argument("--efforts", default="0,1,2,3")
    ap.add_argument("--targets", default="20,40,80", help="size targets in KB (1000 bytes)")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: effort,targets,continuous")
    args = ap.parse_args(argv)
    skip = set(args.skip.split(","))
    folder = Path(args.kodak)
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
