"""Benchmark of the fused gate+quantize kernel: `python -m aecodec.bench.kernels` (needs CUDA).

Per case: time, effective bandwidth (bytes read + written / time) and % of the GPU's peak, for the
Triton kernel, eager PyTorch (topk + scatter + round) and torch.compile of that eager code,
forward and forward+backward, fp32 and bf16. What the kernel gains a whole training step:
`python -m aecodec.train.speed --fused-vs-eager`.
"""
from __future__ import annotations

import argparse
import os

import torch

CASES = [(16, 192, 64, 64), (16, 192, 128, 128), (1, 320, 270, 480)]
PEAK_GBS = {"H100": 3350.0, "H200": 4800.0, "A100": 2039.0}


def eager_gate_round(y: torch.Tensor, k: int) -> torch.Tensor:
    """The straightforward PyTorch version: topk over channels, scatter a mask, round."""
    idx = y.abs().topk(k, dim=1).indices
    mask = torch.zeros_like(y, dtype=torch.bool).scatter_(1, idx, True)
    return torch.where(mask, torch.round(y), torch.zeros_like(y))


def _peak(name: str, override: float | None) -> float:
    if override:
        return override
    for key, v in PEAK_GBS.items():
        if key in name:
            return v
    return float("nan")


def _time_ms(fn) -> float:
    from triton.testing import do_bench

    return do_bench(fn, warmup=25, rep=100)


def bench_case(shape, dtype, backward: bool):
    from aecodec.kernels import triton_gate_quantize

    B, C, H, W = shape
    k = C // 4
    y = torch.randn(shape, device="cuda", dtype=dtype)
    n, es = y.numel(), y.element_size()
    mask_bytes = B * H * W * ((C + 31) // 32) * 4
    compiled = torch.compile(eager_gate_round)
    if not backward:
        nbytes = 2 * n * es + mask_bytes
        fns = {
            "triton": lambda: triton_gate_quantize(y, k),
            "eager": lambda: eager_gate_round(y, k),
            "compile": lambda: compiled(y, k),
        }
    else:
        nbytes = 4 * n * es + 2 * mask_bytes
        g = torch.randn_like(y)
        yr = y.clone().requires_grad_()

        def tri():
            out = triton_gate_quantize(yr, k, mode="ste")
            out.backward(g)

        def eager():
            out = yr + (eager_gate_round(yr.detach(), k) - yr).detach()  # straight-through
            mask = out != 0
            (out * mask).backward(g)

        def comp():
            out = yr + (compiled(yr.detach(), k) - yr).detach()
            (out * (out != 0)).backward(g)

        fns = {"triton": tri, "eager": eager, "compile": comp}
    rows = []
    for name, fn in fns.items():
        try:
            fn()
            ms = _time_ms(fn)
        except Exception as e:  # report, don't hide, a failing baseline
            rows.append((name, float("nan"), float("nan"), f"failed: {type(e).__name__}"))
            continue
        rows.append((name, ms, nbytes / (ms * 1e-3) / 1e9, ""))
    return rows


def tune() -> int:
    from aecodec.kernels import triton_gate_quantize

    for dtype in (torch.float32, torch.bfloat16):
        y = torch.randn(16, 192, 128, 128, device="cuda", dtype=dtype)
        nbytes = 2 * y.numel() * y.element_size() + 16 * 128 * 128 * 8 * 4
        for tile in (1024, 2048, 4096, 8192):
            for warps in (2, 4, 8):
                os.environ["AECODEC_GQ_TILE"], os.environ["AECODEC_GQ_WARPS"] = str(tile), str(warps)
                ms = _time_ms(lambda: triton_gate_quantize(y, 48))
                print(f"tune {str(dtype)[6:]} tile {tile} ({tile // 256} positions) warps {warps}: "
                      f"{ms:.4f} ms {nbytes / ms / 1e6:.0f} GB/s", flush=True)
    os.environ.pop("AECODEC_GQ_TILE"), os.environ.pop("AECODEC_GQ_WARPS")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="aecodec bench kernels", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peak-gbs", type=float, help="peak memory bandwidth in GB/s (default: by GPU name)")
    ap.add_argument("--tune", action="store_true",
                    help="sweep the kernel's tile size and warp count on 16x192x128x128 and exit")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("aecodec bench kernels: needs a CUDA GPU (the kernel is tested on CPU under TRITON_INTERPRET=1)")
        return 1
    if args.tune:
        return tune()
    name = torch.cuda.get_device_name()
    peak = _peak(name, args.peak_gbs)
    print(f"# {name}, peak {peak:.0f} GB/s, torch {torch.__version__}, k = C/4")
    print(f"{'shape':>18} {'dtype':>6} {'pass':>8} {'impl':>8} {'ms':>9} {'GB/s':>8} {'%peak':>6}")
    for shape in CASES:
        for dtype in (torch.float32, torch.bfloat16):
            for backward in (False, True):
                for impl, ms, gbs, note in bench_case(shape, dtype, backward):
                    print(f"{'x'.join(map(str, shape)):>18} {str(dtype)[6:]:>6} "
                          f"{'fwd+bwd' if backward else 'fwd':>8} {impl:>8} {ms:9.4f} {gbs:8.0f} "
                          f"{100 * gbs / peak:6.1f} {note}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
