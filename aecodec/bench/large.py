"""Time and peak memory of compress/decompress by image size: `python -m aecodec.bench.large`.

Each size is a mosaic of Kodak photos (resized, so content is photographic at every scale).
Compress and decompress run in fresh subprocesses so that each peak RSS is that operation's own.
For the largest size it also reports PSNR on pixels near tile boundaries vs elsewhere (seams).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from . import KODAK_ENV, kodak_folder

SIZES = [(768, 512), (1920, 1080), (4000, 3000), (6000, 4000)]

_CHILD = r"""
import json, resource, sys, time
op, src, dst, device = sys.argv[1:5]
from aecodec.cli import main
t = time.perf_counter()
args = ["compress", src, "-o", dst, "-f", "--quiet", "--device", device] if op == "compress" else \
       ["decompress", src, "-o", dst, "-f", "--quiet", "--device", device]
code = main(args)
dt = time.perf_counter() - t
print(json.dumps({"code": code, "seconds": dt, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def mosaic(folder: Path, width: int, height: int) -> Image.Image:
    files = sorted(folder.glob("*.png"))
    if not files:
        raise SystemExit(f"no PNG images in {folder}")
    tile_w = min(width, 1536)
    tile_h = tile_w * 2 // 3
    canvas = Image.new("RGB", (width, height))
    i = 0
    for y in range(0, height, tile_h):
        for x in range(0, width, tile_w):
            with Image.open(files[i % len(files)]) as im:
                im = im.convert("RGB")
                if im.height > im.width:
                    im = im.rotate(90, expand=True)
                canvas.paste(im.resize((tile_w, tile_h), Image.Resampling.LANCZOS), (x, y))
            i += 1
    return canvas


def _run(op: str, src: Path, dst: Path, device: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD, op, str(src), str(dst), device],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{op} failed: {out.stderr.strip()[-500:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def seam_psnr(ref: np.ndarray, out: np.ndarray, content_edges: tuple[int, int], band: int = 8,
              tiles: tuple[int, ...] = (768, 1024)) -> tuple[float, float]:
    """PSNR on pixels within `band` of the codec's tile boundaries (synthesis every 768 px,
    analysis every 1024 px) vs elsewhere, leaving out boundaries that coincide with the mosaic's
    own picture edges (every content_edges = (tile_w, tile_h) px), where content changes abruptly."""
    err = (ref.astype(np.float64) - out.astype(np.float64)) ** 2
    h, w = err.shape[:2]
    near = np.zeros((h, w), bool)
    edge_w, edge_h = content_edges
    for t in tiles:
        for b in range(t, h, t):
            if min(b % edge_h, edge_h - b % edge_h) > 2 * band:
                near[b - band:b + band, :] = True
        for b in range(t, w, t):
            if min(b % edge_w, edge_w - b % edge_w) > 2 * band:
                near[:, b - band:b + band] = True
    excluded = np.zeros((h, w), bool)
    for b in range(edge_h, h, edge_h):
        excluded[b - 2 * band:b + 2 * band, :] = True
    for b in range(edge_w, w, edge_w):
        excluded[:, b - 2 * band:b + 2 * band] = True

    def p(mask):
        return 10 * np.log10(255 ** 2 / err[mask].mean())

    return p(near & ~excluded), p(~near & ~excluded)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m aecodec.bench.large", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", help=f"folder of photos for the mosaics (default ${KODAK_ENV}, the Kodak folder)")
    ap.add_argument("--sizes", default=",".join(f"{w}x{h}" for w, h in SIZES))
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    args = ap.parse_args(argv)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    print(f"{'size':>10} {'MP':>5} {'bytes':>9} {'bpp':>6} {'PSNR':>6} {'enc s':>7} {'enc MB':>7} "
          f"{'dec s':>7} {'dec MB':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for w, h in sizes:
            img = mosaic(Path(kodak_folder(args.images)), w, h)
            src, aec, back = tmp / "in.png", tmp / "in.aec", tmp / "out.png"
            img.save(src, compress_level=1)
            enc = _run("compress", src, aec, args.device)
            dec = _run("decompress", aec, back, args.device)
            ref = np.asarray(img)
            with Image.open(back) as b:
                out = np.asarray(b.convert("RGB"))
            mse = np.mean((ref.astype(np.float64) - out) ** 2)
            n = aec.stat().st_size
            print(f"{w}x{h:<5} {w * h / 1e6:5.1f} {n:9d} {n * 8 / (w * h):6.3f} {10 * np.log10(255**2 / mse):6.2f} "
                  f"{enc['seconds']:7.1f} {enc['peak_mb']:7.0f} {dec['seconds']:7.1f} {dec['peak_mb']:7.0f}",
                  flush=True)
            if (w, h) == max(sizes, key=lambda s: s[0] * s[1]) and max(w, h) > 1024:
                tile_w = min(w, 1536)
                near, rest = seam_psnr(ref, out, (tile_w, tile_w * 2 // 3))
                print(f"  PSNR within 8 px of codec tile boundaries {near:.2f} dB, elsewhere {rest:.2f} dB "
                      "(mosaic picture edges left out)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
