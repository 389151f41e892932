"""Prepare a GPU lease: everything a lent machine needs to train, packed for its calls.

    python tools/lease.py --init ~/.cache/aecodec/runs/main/state.safetensors --data ../shared/data/train

A lent GPU (docs/training.md, "Continuing on a GPU") takes at most 64 MiB a call, the working
tree included, and gives back at most 8 files of 16 MiB, 64 MiB in all. This writes, under an
ignored folder of the checkout (default .gpu/):

- init/part*.safetensors: the EMA weights of --init (`transfer split --weights-only`, exact);
- p1/, p2/, ...: the training photos as hard links, sharded so that each call fits beside the tree
  (the first call also carries the wheels and the weights);
- job.sh: the job for the last call: joins the weights, trains a new run on the GPU for A minutes
  at lr 2e-4 (TF32 convolutions) and B minutes at 2e-5 (strict float32), stops at a NaN loss, and
  writes the EMA weights back into $OUT in parts;
- calls.txt: the calls to make, in order, with what each carries.

It prints calls.txt. Nothing here talks to the device: the session makes the calls.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import transfer  # tools/transfer.py, beside this file

from aecodec.errors import AecError
from aecodec.imageio import list_images

CALL_MIB = 62.0  # of the 64 MiB a lease's call may carry: a margin for the file system's rounding
RUN_NAME = "lease"

JOB = """#!/bin/bash
# The last call of a lease (written by `python tools/lease.py`): bash {out}/job.sh A B
A=${{1:-6}}; B=${{2:-1.5}}
set -o pipefail
python3 -m pip install -q --no-index --no-deps --target /tmp/site {wheels}/*.whl 2>&1 | grep -v "already exists"
export PYTHONPATH=/tmp/site:$PWD AECODEC_RUNS=/tmp/runs AECODEC_NO_TRITON=1
mkdir -p /tmp/train && for d in {out}/p*; do cp -l "$d"/* /tmp/train/ 2>/dev/null || cp "$d"/* /tmp/train/; done
echo "$(ls /tmp/train | wc -l) training files"
python3 tools/transfer.py join /tmp/init.safetensors {out}/init/part*.safetensors || exit 1
python3 -m aecodec train {run} --init /tmp/init.safetensors --data /tmp/train --batch 16 --crop 256 \\
  --lr 2e-4 --device cuda --minutes "$A" --save-minutes 2 --log-seconds 30 2>&1 | grep -v "decoding training" \\
  | tee /tmp/train.txt || exit 1
NVIDIA_TF32_OVERRIDE=0 python3 -m aecodec train {run} --lr 2e-5 --device cuda --minutes "$B" \\
  --save-minutes 2 --log-seconds 30 2>&1 | grep -v "decoding training" | tee -a /tmp/train.txt || exit 1
python3 tools/transfer.py split --weights-only /tmp/runs/{run}/state.safetensors "$OUT/w"
cp /tmp/runs/{run}/log.csv /tmp/train.txt "$OUT/"
ls -la "$OUT" "$OUT/w"
"""


def _mib(n: int) -> float:
    return n / 2 ** 20


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def tree_bytes(repo: Path) -> int:
    """Bytes of what travels with every call: tracked files present in the work tree, and untracked
    files git does not ignore."""
    out = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         capture_output=True, check=True).stdout
    files = {repo / f for f in out.decode().split("\0") if f}
    return sum(p.stat().st_size for p in files if p.is_file())


def shard(sizes: list[tuple[str, int]], first_room: int, room: int) -> list[list[str]]:
    """Files (name, bytes) in order -> shards: the first at most first_room bytes, the others at most
    room. A file larger than a whole call cannot travel."""
    if any(n > max(first_room, room) for _, n in sizes):
        raise AecError("a training file is larger than what one call carries")
    shards, used, cap = [[]], 0, first_room
    for name, n in sizes:
        if used + n > cap:
            shards.append([])
            used, cap = 0, room
        shards[-1].append(name)
        used += n
    return shards


def prepare(init: Path, data: Path, out: Path, repo: Path, wheels: Path, call_mib: float = CALL_MIB) -> str:
    if not wheels.is_dir() or not list(wheels.glob("*.whl")):
        raise AecError(f"{wheels}: no wheels (../shared/GPU.md says how to download CompressAI's and pytorch-msssim's)")
    for folder in (out, wheels):  # both travel with the checkout
        if not folder.resolve().is_relative_to(repo):
            raise AecError(f"{folder}: must be inside the checkout {repo}")
    files = [p for p in sorted(data.iterdir()) if p.is_file()]
    if not list_images(data):
        raise AecError(f"{data}: no training images")
    if subprocess.run(["git", "-C", str(repo), "check-ignore", "-q", f"{out}/"]).returncode != 0:
        raise AecError(f"{out}: not ignored by git (add it to .git/info/exclude): it would travel with every call")
    if out.exists():
        shutil.rmtree(out)
    parts = transfer.split(init, out / "init", weights_only=True)
    tree, limit = tree_bytes(repo), int(call_mib * 2 ** 20)
    first = limit - tree - _size(out / "init") - _size(wheels)
    if first < 0:
        raise AecError(f"the tree ({_mib(tree):.1f} MiB), weights and wheels exceed a call: move the shipped "
                       f"weights the GPU does not need out of the tree for the lease")
    # the first call carries the wheels, the weights and as many photos as still fit (maybe none)
    shards = shard([(p.name, p.stat().st_size) for p in files], first, limit - tree)
    carries = [] if shards[0] else [[]]
    for i, names in enumerate(filter(None, shards), 1):
        d = out / f"p{i}"
        d.mkdir(parents=True)
        for name in names:
            os.link(data / name, d / name)
        carries.append([str(d.relative_to(repo))])
    rel = out.relative_to(repo)
    carries[0] = [str(wheels.relative_to(repo)), str(rel / "init")] + carries[0]
    carries[-1].append(str(rel / "job.sh"))
    (out / "job.sh").write_text(JOB.format(out=rel, run=RUN_NAME, wheels=wheels.relative_to(repo)))
    lines = [f"tree {_mib(tree):.1f} MiB a call; weights {len(parts)} parts, {_mib(_size(out / 'init')):.1f} MiB; "
             f"{len(files)} training files in {len([x for x in shards if x])} shards"]
    for i, c in enumerate(carries, 1):
        carried = tree + sum(_size(repo / p) for p in c)
        cmd = 'bash {}/job.sh A B   (A + B <= (budget_left_s - 90) / 60 and <= 9.5)'.format(rel) \
            if i == len(carries) else "du -sh {}/*".format(rel)
        lines.append(f"call {i}: carry {c} ({_mib(carried):.1f} MiB): {cmd}")
    lines.append("back here: python tools/transfer.py join WEIGHTS.safetensors <files_at>/w/part*.safetensors")
    text = "\n".join(lines) + "\n"
    (out / "calls.txt").write_text(text)
    return text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python tools/lease.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--init", type=Path, required=True, help="a run state to start the GPU run from (its EMA weights)")
    ap.add_argument("--data", type=Path, required=True, help="training folder")
    ap.add_argument("--out", type=Path, default=Path(".gpu"), help="an ignored folder of the checkout (replaced)")
    ap.add_argument("--wheels", type=Path, default=Path(".whl"), help="folder of the wheels the GPU image lacks")
    ap.add_argument("--call-mib", type=float, default=CALL_MIB, help=f"bytes one call may carry (default {CALL_MIB:g} MiB)")
    args = ap.parse_args(argv)
    try:
        print(prepare(args.init, args.data, args.out.resolve(), Path.cwd().resolve(), args.wheels.resolve(),
                      args.call_mib), end="")
    except AecError as e:
        print(f"lease: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
