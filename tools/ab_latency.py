"""Before and after, side by side: the same jobs timed on two checkouts in alternating processes.

    python tools/ab_latency.py REV [--rounds 5] [--image PNG] [--engines numpy,openvino] [--no-oneshot]

These 2-core machines drift by 10-30 % between runs and between sessions (docs/performance.md),
so a before/after figure is only worth something when old and new code alternate in the same
minutes. This makes a git worktree of REV (removed afterwards) and, for each round, runs each
checkout in fresh processes: in-process encode and decode of the image on each engine (quality 4,
medians of 7 after a warm-up), then one-shot `compress` and `decompress` processes (device auto,
medians of 3).
Every process starts in a scratch folder with PYTHONPATH naming its checkout, so neither picks up
the other's package from the working directory. A training run's process is paused while it runs
(SIGSTOP / SIGCONT, as `make bench-latency` does). Prints each round, then the medians per side.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

IN_PROCESS = """
import json, sys, time
import numpy as np
from PIL import Image
from aecodec.codec import coder, engines
rgb = np.asarray(Image.open(sys.argv[1]).convert("RGB"))
out = {}
for kind in sys.argv[2].split(","):
    e = engines.create(kind)
    data = coder.encode(rgb, "RGB", 4, engine=e); coder.decode(data, engine=e)
    te, td = [], []
    for _ in range(7):
        t = time.perf_counter(); data = coder.encode(rgb, "RGB", 4, engine=e); te.append(time.perf_counter() - t)
        t = time.perf_counter(); coder.decode(data, engine=e); td.append(time.perf_counter() - t)
    out[f"{kind} encode"], out[f"{kind} decode"] = float(np.median(te)), float(np.median(td))
print(json.dumps(out))
"""


def training_pid() -> int | None:
    runs = Path(os.environ.get("AECODEC_RUNS", Path.home() / ".cache" / "aecodec" / "runs"))
    try:
        pid = int((runs / "main" / "pid").read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def timed(cmd: list[str], env: dict, cwd: str) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - start


def one_round(checkout: Path, image: Path, kinds: str, oneshot: bool, scratch: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    done = subprocess.run([sys.executable, "-c", IN_PROCESS, str(image), kinds], env=env, cwd=scratch,
                          capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{checkout}: in-process timing failed:\n{done.stderr[-2000:]}")
    times = json.loads(done.stdout.strip().splitlines()[-1])
    if oneshot:
        aec, png = scratch / "x.aec", scratch / "x.png"
        cli = [sys.executable, "-m", "aecodec"]
        # three of each per round (a single process time spreads by ~0.1 s): their median
        times["one-shot compress"] = statistics.median(
            timed(cli + ["compress", str(image), "-o", str(aec), "--force"], env, scratch) for _ in range(3))
        times["one-shot decompress"] = statistics.median(
            timed(cli + ["decompress", str(aec), "-o", str(png), "--force"], env, scratch) for _ in range(3))
    return times


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("rev", help="the commit to compare the working tree with (e.g. HEAD~3, a tag)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--image", type=Path, default=ROOT / "aecodec" / "data" / "kodim23.png")
    ap.add_argument("--engines", default="numpy,openvino", help="in-process engines, comma-separated")
    ap.add_argument("--no-oneshot", action="store_true", help="skip the one-shot CLI processes")
    args = ap.parse_args(argv)
    pid = training_pid()
    with tempfile.TemporaryDirectory(prefix="ab-latency-") as tmp:
        old = Path(tmp) / "old"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(old), args.rev], check=True)
        scratch = Path(tmp) / "scratch"
        scratch.mkdir()
        sides = {f"old ({args.rev})": old, "new (working tree)": ROOT}
        results: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
        try:
            if pid:
                os.kill(pid, signal.SIGSTOP)
            for r in range(args.rounds):
                for side, checkout in sides.items():
                    t = one_round(checkout, args.image.resolve(), args.engines, not args.no_oneshot, scratch)
                    results[side].append(t)
                    print(f"round {r + 1} {side}: " + ", ".join(f"{k} {1000 * v:.0f} ms" for k, v in t.items()), flush=True)
        finally:
            if pid:
                os.kill(pid, signal.SIGCONT)
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)], check=False)
    keys = list(results[next(iter(sides))][0])
    print(f"\nmedians of {args.rounds} alternating rounds, ms")
    print(f"{'':28s}" + "".join(f"{side:>26s}" for side in sides))
    for k in keys:
        print(f"{k:28s}" + "".join(f"{1000 * statistics.median(t[k] for t in results[side]):26.0f}" for side in sides))
    return 0


if __name__ == "__main__":
    sys.exit(main())
