"""Move a run state through a channel with a per-file size limit (a lent GPU's $OUT: 16 MiB a
file, 64 MiB a call) and put it back together:

    python tools/transfer.py split ~/.cache/aecodec/runs/main/state.safetensors parts/
    python tools/transfer.py join runs/main/state.safetensors parts/part*.safetensors
    python tools/transfer.py split --weights-only STATE parts/   # for a new run's --init
    python tools/lease.py --init STATE --data DIR   # everything a lent GPU needs

The model and EMA weights travel exactly. The Adam moments travel as bfloat16 by default (a state
of ~85 MB becomes ~64 MB): Adam divides one by the square root of the other, so 3 significant
digits leave its steps within a fraction of a percent. `--exact` keeps them float32.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from aecodec.errors import AecError
from aecodec.train.checkpoint import read_meta, weight_keys

LIMIT_MIB = 15.0
_BF16 = "transfer_bf16"     # keys stored as bfloat16 (JSON list), in part 0's metadata
_PARTS = "transfer_parts"   # how many parts there are, in every part's metadata


def _is_moment(key: str, t: torch.Tensor) -> bool:
    return key.startswith(("opt.", "aux.")) and t.is_floating_point() and t.dim() > 0


def split(state: Path, outdir: Path, limit_mib: float = LIMIT_MIB, exact: bool = False,
          weights_only: bool = False) -> list[Path]:
    """state -> outdir/part0.safetensors ... (each at most limit_mib, unless one tensor is larger).
    weights_only: only what `aecodec train --init` reads from a state (the EMA weights and the
    buffers they lack), ~1/3 of the bytes; joined, it starts a new run, it does not resume one."""
    meta = {"format": "aecodec-run-1", **{k: json.dumps(v) for k, v in read_meta(state).items()}}
    tensors = load_file(str(state))
    if weights_only:
        tensors = {k: tensors[k] for k in weight_keys(tensors)}
    bf16 = [] if exact else [k for k, t in tensors.items() if _is_moment(k, t) and t.dtype == torch.float32]
    for k in bf16:
        tensors[k] = tensors[k].to(torch.bfloat16)
    limit = limit_mib * 2 ** 20
    groups, size = [[]], sum(map(len, meta.values()))  # part 0 also carries the metadata
    for k in sorted(tensors):
        n = tensors[k].numel() * tensors[k].element_size() + 128  # + its header entry
        if groups[-1] and size + n > limit:
            groups.append([])
            size = 0
        groups[-1].append(k)
        size += n
    outdir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, keys in enumerate(groups):
        m = {_PARTS: str(len(groups)), "part": str(i)}
        if i == 0:
            m.update(meta, **{_BF16: json.dumps(bf16)})
        p = outdir / f"part{i}.safetensors"
        save_file({k: tensors[k].contiguous() for k in keys}, str(p), metadata=m)
        paths.append(p)
    return paths


def join(parts: list[Path], state: Path) -> Path:
    """The parts of one split (any order) -> a run state file, written atomically."""
    tensors, meta, seen, count = {}, None, set(), None
    for p in parts:
        try:
            with safe_open(str(p), "pt") as f:
                m = f.metadata() or {}
            t = load_file(str(p))
        except (OSError, ValueError, SafetensorError) as e:
            raise AecError(f"{p}: not a readable state part ({e})") from None
        if _PARTS not in m:
            raise AecError(f"{p}: not a part written by `tools/transfer.py split`")
        count = count or int(m[_PARTS])
        if int(m[_PARTS]) != count or m["part"] in seen:
            raise AecError(f"{p}: parts of different splits, or a part given twice")
        seen.add(m["part"])
        tensors.update(t)
        if m["part"] == "0":
            meta = m
    if meta is None or len(seen) != count:
        raise AecError(f"{count or '?'} parts expected, got {len(seen)}: a part is missing")
    for k in json.loads(meta[_BF16]):
        tensors[k] = tensors[k].float()
    meta = {k: v for k, v in meta.items() if k not in (_PARTS, _BF16, "part")}
    state.parent.mkdir(parents=True, exist_ok=True)
    tmp = state.with_name(state.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, state)
    return state


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python tools/transfer.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("split", help="state file -> parts in a folder")
    s.add_argument("state", type=Path)
    s.add_argument("outdir", type=Path)
    s.add_argument("--limit-mib", type=float, default=LIMIT_MIB, help=f"largest part (default {LIMIT_MIB:g} MiB)")
    s.add_argument("--exact", action="store_true", help="keep the Adam moments in float32")
    s.add_argument("--weights-only", action="store_true",
                   help="only the EMA weights (what --init reads): a new run starts from the joined file")
    j = sub.add_parser("join", help="parts -> state file")
    j.add_argument("state", type=Path)
    j.add_argument("parts", type=Path, nargs="+")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "split":
            paths = split(args.state, args.outdir, args.limit_mib, args.exact, args.weights_only)
            sizes = ", ".join(f"{p.stat().st_size / 2 ** 20:.1f}" for p in paths)
            print(f"{len(paths)} parts in {args.outdir} ({sizes} MiB)")
        else:
            print(f"joined {len(args.parts)} parts -> {join(args.parts, args.state)}")
    except AecError as e:
        print(f"aecodec: error: {e}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
