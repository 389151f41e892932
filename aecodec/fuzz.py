"""Fuzzer for the decoder: `python -m aecodec.fuzz --seconds 600`.

Mutates real .aec files (truncations, bit flips, random bytes, header fields set to extremes,
garbage payloads) and decodes each case through the same path as `aecodec decompress`. Half of
the mutants get a recomputed CRC so that they reach the header checks and the entropy decoder
instead of stopping at the checksum. A case passes if it decodes to an image of the size its
header claims or raises AecError, within --case-limit seconds. Anything else is a finding:
its bytes are saved to --save-dir for replay (`aecodec decompress FILE`).
"""
from __future__ import annotations

import argparse
import faulthandler
import random
import resource
import struct
import sys
import time
import zlib
from collections import Counter
from pathlib import Path



def corpus() -> list[bytes]:
    """Small real files: an RGB photo crop at low and high quality, grayscale, 1x1, odd size."""
    from importlib import resources

    from PIL import Image

    from .api import compress

    with resources.as_file(resources.files("aecodec.data").joinpath("kodim23.png")) as p:
        with Image.open(p) as im:
            photo = im.convert("RGB").crop((300, 200, 396, 264))
    return [compress(photo, quality=1), compress(photo, quality=8), compress(photo.convert("L"), quality=4),
            compress(photo.resize((1, 1)), quality=4), compress(photo.resize((17, 31)), quality=6, k=8)]


def reseal(data: bytes) -> bytes:
    if len(data) < 4:
        return data
    return data[:-4] + struct.pack(">I", zlib.crc32(data[:-4]))


def _field_offsets(data: bytes):
    n = data[5] if len(data) > 5 else 0
    base = 6 + n + 8
    # (offset, struct format) of width, height, mode, quality, k, len(z), len(y)
    return [(base, ">I"), (base + 4, ">I"), (base + 8, ">B"), (base + 9, ">B"), (base + 10, ">H"),
            (base + 12, ">I"), (base + 16, ">I")]


EXTREMES = {">I": (0, 1, 2**16, 2**31 - 1, 2**32 - 1), ">H": (0, 1, 192, 193, 65535), ">B": (0, 1, 2, 8, 9, 255)}


def mutate(rng: random.Random, seeds: list[bytes]) -> tuple[str, bytes]:
    base = rng.choice(seeds)
    kind = rng.choice(["random", "truncate", "flip", "bytes", "field", "field", "payload", "splice", "extend"])
    d = bytearray(base)
    if kind == "random":
        d = bytearray(rng.randbytes(rng.randrange(0, 300)))
        if rng.random() < 0.5:
            d[:4] = base[:4]
    elif kind == "truncate":
        d = d[:rng.randrange(len(d))]
    elif kind == "flip":
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(d) * 8)
            d[i // 8] ^= 1 << (i % 8)
    elif kind == "bytes":
        for _ in range(rng.randint(1, 16)):
            d[rng.randrange(len(d))] = rng.randrange(256)
    elif kind == "field":
        off, fmt = rng.choice(_field_offsets(base))
        struct.pack_into(fmt, d, off, rng.choice(EXTREMES[fmt]))
    elif kind == "payload":
        start = len(base) - 4 - rng.randrange(1, max(2, len(base) // 2))
        for i in range(max(0, start), len(d) - 4):
            d[i] = rng.randrange(256) if rng.random() < 0.3 else d[i]
    elif kind == "splice":
        other = rng.choice(seeds)
        cut = rng.randrange(len(d))
        d = d[:cut] + bytearray(other[cut:])
    else:  # extend: lengths that promise more than is there
        d = d[:-4] + bytearray(rng.randbytes(rng.randrange(1, 64))) + d[-4:]
    out = bytes(d)
    if rng.random() < 0.5:
        out, kind = reseal(out), kind + "+crc"
    return kind, out


def run_case(data: bytes):
    from .codec import coder
    from .errors import AecError

    try:
        pixels, header = coder.decode(data, device="cpu")
    except AecError:
        return "rejected"
    if pixels.shape[:2] != (header.height, header.width):
        raise AssertionError(f"decoded {pixels.shape} for a {header.width}x{header.height} header")
    return "decoded"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m aecodec.fuzz", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0, help="run this long (default 60)")
    ap.add_argument("--cases", type=int, default=None, help="or stop after this many cases")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--case-limit", type=float, default=2.0, help="seconds one case may take")
    ap.add_argument("--save-dir", default="fuzz-findings", help="where findings are written")
    args = ap.parse_args(argv)
    faulthandler.enable()
    rng = random.Random(args.seed)
    seeds = corpus()
    tally, kinds, findings = Counter(), Counter(), []
    slowest = (0.0, "")
    t_end = time.time() + args.seconds
    n = 0
    while time.time() < t_end and (args.cases is None or n < args.cases):
        kind, data = mutate(rng, seeds)
        t0 = time.perf_counter()
        try:
            outcome = run_case(data)
        except Exception as e:  # a finding: anything but AecError
            outcome = f"finding: {type(e).__name__}: {str(e)[:120]}"
        dt = time.perf_counter() - t0
        if dt > args.case_limit:
            outcome = f"finding: slow ({dt:.1f} s)"
        if dt > slowest[0]:
            slowest = (dt, kind)
        if outcome.startswith("finding"):
            save = Path(args.save_dir)
            save.mkdir(parents=True, exist_ok=True)
            (save / f"case-{n}.aec").write_bytes(data)
            findings.append((n, kind, outcome))
        tally[outcome if not outcome.startswith("finding") else "finding"] += 1
        kinds[kind] += 1
        n += 1
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"fuzz: {n} cases in {args.seconds:.0f} s budget, seed {args.seed}")
    print("outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(tally.items())))
    print("mutations: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    print(f"slowest case: {slowest[0]:.3f} s ({slowest[1]}); peak RSS {rss:.0f} MB")
    for n_, kind, outcome in findings[:20]:
        print(f"  case {n_} ({kind}): {outcome}")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
