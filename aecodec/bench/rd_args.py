"""The options of `aecodec bench` (rate-distortion), apart from the harness so that the CLI's
parser and `--help` stay free of its imports."""
from __future__ import annotations

import argparse
import os

CODECS = ("aecodec", "jpeg", "jpeg2000", "webp", "avif", "avif-psnr", "heic", "jxl")
DEFAULT_OUTPUT = "aecodec-bench"


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("directory", help="folder of images (e.g. ../shared/data/kodak)")
    ap.add_argument("-o", "--output", default=DEFAULT_OUTPUT,
                    help=f"output folder (default ./{DEFAULT_OUTPUT}); finished points are cached there, "
                    "so a rerun into the same folder only computes what is new; a classic codec whose rd.csv rows "
                    "and <codec>.json (same settings and library version) are already there, as in the "
                    "committed results/, is read from them rather than measured again")
    ap.add_argument("--codecs", default=",".join(CODECS), help=f"comma-separated subset of {','.join(CODECS)}")
    ap.add_argument("--qualities", default="1,2,3,4,5,6,7,8", help="aecodec quality levels (default all 8)")
    ap.add_argument("--k", default="", help="extra aecodec curves at these k values, e.g. 192,48")
    ap.add_argument("--efforts", default="",
                    help="extra aecodec curves encoded at these efforts (1..3: the latents refined per image by "
                    "gradient descent, like `aecodec compress --effort N`; ~13 s per Kodak image at effort 1 "
                    "on 2 CPU cores), e.g. 1")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                    help="where aecodec's transforms run (default auto: cuda if available, else the CPU's "
                    "float32 engine, the reference the curves are measured with)")
    ap.add_argument("-j", "--jobs", type=int, default=max(1, (os.cpu_count() or 1)),
                    help="parallel workers for the classic codecs (default: all cores)")
    ap.add_argument("--reference", help="folder of published CompressAI-format JSONs to overlay")
    ap.add_argument("--bd-range", nargs=2, type=float, default=(0.1, 1.5), metavar=("LO", "HI"),
                    help="bpp range for BD-rates (default 0.1 1.5)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 2 images, 256x256 centre crops, a third of the operating points")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
