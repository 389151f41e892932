"""Training throughput of the real training step: `python -m aecodec.train.speed`.

Times `aecodec.train.step.Trainer.step` with crops from `CropSampler` (data included) for each
configuration, and prints megapixels per second and steps per second. `--check` compares one
bfloat16-autocast step with the float32 step on the same batch and weights (loss difference and
cosine similarity of the gradients), the evidence that bf16 does not change what is learned.
Pause a background training run (kill -STOP) while this runs; the cores are shared.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import random
import time

import torch

from ..codec.config import QUALITIES
from ..codec.model import AecModel
from ..imageio import list_images
from .checkpoint import initial_model
from .commands import data_dir
from .config import TrainConfig
from .data import CropSampler, split
from .latent_cache import LatentCache, keep, step_inputs
from .step import Trainer, draw_k, rd_loss

# (label, bf16, channels_last, compile, threads, batch, crop[, train_only: a context model, only that
# trains[, cached: with the training loop's latent cache (default)]])
CONFIGS = [
    ("fp32", False, True, False, 0, 8, 128),
    ("fp32 contiguous", False, False, False, 0, 8, 128),
    ("fp32 1 thread", False, True, False, 1, 8, 128),
    ("bf16", True, True, False, 0, 8, 128),
    ("bf16 contiguous", True, False, False, 0, 8, 128),
    ("bf16 torch.compile", True, True, True, 0, 8, 128),
    ("bf16 batch 4", True, True, False, 0, 4, 128),
    ("bf16 batch 16", True, True, False, 0, 16, 128),
    ("bf16 crop 192", True, True, False, 0, 4, 192),
    ("bf16 crop 256", True, True, False, 0, 2, 256),
    ("fp32 crop 256 full", False, True, False, 0, 8, 256),
    ("bf16 crop 256 full", True, True, False, 0, 8, 256),
    ("fp32 crop 256 compiled", False, True, True, 0, 8, 256),
    ("bf16 crop 256 compiled", True, True, True, 0, 8, 256),
    ("bf16 crop 128 compiled", True, True, True, 0, 32, 128),  # the same pixels per step as 8 x 256
    ("fp32 crop 256 context-only uncached", False, True, False, 0, 8, 256, "context.", False),
    ("fp32 crop 256 context-only", False, True, False, 0, 8, 256, "context."),
]


def _model(channels_last: bool) -> AecModel:
    m = initial_model(None).train()  # the shipped default
    return m.to(memory_format=torch.channels_last) if channels_last else m


def time_config(files, label, bf16, channels_last, compile_, threads, batch, crop, train_only="", cached=True, *,
                seconds) -> dict:
    import os

    torch.set_num_threads(threads or len(os.sched_getaffinity(0)))
    cfg = TrainConfig(batch=batch, crop=crop, bf16=bf16, compile=compile_, train_only=train_only)
    trainer = Trainer(_model(channels_last), cfg)
    if compile_:
        trainer.compile()  # as the training loop does on the CPU
    sampler = CropSampler(files, crop)
    gen = random.Random(0)
    M = trainer.model.config.M

    cache = LatentCache() if trainer.rate_only and cached else None  # as the training loop does

    def one():
        x, y = step_inputs(trainer, cache, sampler, batch, gen, "cpu")
        if x is not None and not channels_last:
            x = x.contiguous()
        q = torch.tensor([gen.randint(1, QUALITIES) for _ in range(batch)])
        keep(cache, trainer.step(x, q, draw_k(cfg, M, gen), y=y), cached=x is None)

    while cache is not None and not cache.ready:  # the loop fills it in its first ~64 steps
        one()

    for _ in range(3):  # warm-up (and compilation)
        one()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        one()
        n += 1
    dt = (time.perf_counter() - t0) / n
    return {"config": label, "threads": torch.get_num_threads(), "batch": batch, "crop": crop,
            "steps_per_s": 1 / dt, "mpx_per_s": batch * crop * crop / dt / 1e6}


def check_bf16(files, batch=8, crop=256, batches=4) -> dict:
    """bf16's error in the gradient against the minibatch noise that training lives with anyway.

    `batches` batches each go through the float32 and the bf16 step from the same weights and
    the same noise. err_ratio: the mean squared difference of the two gradients over the
    minibatch variance of the float32 gradient (half the mean squared difference between
    batches). bias_ratio: the same for the mean difference, the part of the error that does not
    average out over steps (it includes err_ratio / batches of sampling noise)."""
    sampler = CropSampler(files, crop)
    xs = [sampler.batch(batch, random.Random(seed)) for seed in range(batches)]
    q = torch.arange(batch) % QUALITIES + 1
    m0 = _model(True)

    def run(dtype, x):
        m = copy.deepcopy(m0)
        torch.manual_seed(0)  # the latent path's uniform noise
        loss, _, _ = rd_loss(m(x, q, 96, autocast=dtype), x, q)
        loss.backward()
        return loss.item(), torch.cat([p.grad.flatten() for n, p in m.named_parameters()
                                       if p.grad is not None and not n.endswith("quantiles")])

    r32, r16 = [run(None, x) for x in xs], [run(torch.bfloat16, x) for x in xs]
    g32, g16 = [g for _, g in r32], [g for _, g in r16]
    noise = sum((g32[i] - g32[j]).pow(2).sum() for i in range(batches) for j in range(i))
    noise = noise / (batches * (batches - 1) / 2) / 2
    err = sum((a - b).pow(2).sum() for a, b in zip(g16, g32)) / batches
    bias = (sum(g16) - sum(g32)).div(batches).pow(2).sum()
    cos = torch.nn.functional.cosine_similarity
    return {"shape": f"{batches} batches of {batch}x{crop}x{crop}", "loss_rel_diff": max(abs(a - b) / b for (a, _), (b, _) in zip(r16, r32)),
            "err_ratio": (err / noise).item(), "bias_ratio": (bias / noise).item(),
            "grad_cosines": [cos(a, b, dim=0).item() for a, b in zip(g16, g32)]}


def fused_vs_eager(steps: int = 100, batch: int = 16, crop: int = 256) -> dict:
    """Training steps per second on a CUDA GPU with the fused Triton gate (kernels/) and with its
    PyTorch reference: what the kernel gains a whole training step."""
    import os

    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    result = {}
    for label, flag in (("fused", "0"), ("eager", "1")):
        os.environ["AECODEC_NO_TRITON"] = flag
        torch.manual_seed(0)
        model = AecModel().cuda().to(memory_format=torch.channels_last)
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        x = torch.rand(batch, 3, crop, crop, device="cuda").contiguous(memory_format=torch.channels_last)
        q = torch.randint(1, 9, (batch,), device="cuda")

        def step():
            out = model(x, q, 96)
            loss, _, _ = rd_loss(out, x, q)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        for _ in range(15):
            step()
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
        result[label] = steps / (time.perf_counter() - t)
    os.environ.pop("AECODEC_NO_TRITON", None)
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m aecodec.train.speed", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="training folder (a few images are used; default $AECODEC_TRAIN_DATA)")
    p.add_argument("--fused-vs-eager", action="store_true",
                   help="on a CUDA GPU: training steps with the fused Triton gate against its reference, and exit")
    p.add_argument("--images", type=int, default=40, help="training images to sample crops from")
    p.add_argument("--seconds", type=float, default=20.0, help="timed seconds per configuration")
    p.add_argument("--only", help="comma-separated labels to run (default: all)")
    p.add_argument("--check", action="store_true", help="also compare a bf16 step with a float32 step")
    args = p.parse_args(argv)
    if args.fused_vs_eager:
        if not torch.cuda.is_available():
            print("--fused-vs-eager needs a CUDA GPU")
            return 1
        r = fused_vs_eager()
        print(f"training (batch 16, 256x256, AecModel N=128 M=192, k=96): fused {r['fused']:.1f} it/s, "
              f"eager {r['eager']:.1f} it/s")
        return 0
    files = split(list_images(data_dir(args.data, "python -m aecodec.train.speed")))[0][: args.images]
    only = set(args.only.split(",")) if args.only else None
    print(f"{'configuration':36s} {'threads':>7s} {'batch':>5s} {'crop':>4s} {'steps/s':>8s} {'Mpx/s':>7s}")
    for cfg in CONFIGS:
        if only and cfg[0] not in only:
            continue
        with contextlib.suppress(KeyboardInterrupt):
            r = time_config(files, *cfg, seconds=args.seconds)
            print(f"{r['config']:36s} {r['threads']:7d} {r['batch']:5d} {r['crop']:4d} "
                  f"{r['steps_per_s']:8.2f} {r['mpx_per_s']:7.3f}", flush=True)
    if args.check:
        c = check_bf16(files)
        print(f"bf16 vs fp32 gradients over {c['shape']}: squared error {c['err_ratio']:.2f}x the "
              f"minibatch variance, its mean (the bias) {c['bias_ratio']:.2f}x; cosines "
              f"{', '.join(f'{v:.2f}' for v in c['grad_cosines'])}; loss rel. diff <= {c['loss_rel_diff']:.1e}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
