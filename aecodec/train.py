"""`aecodec train` and `aecodec export`: device-agnostic training of the variable-rate model.

Each step draws a batch of random crops (random downscale first: the training photos carry JPEG
history that downscaling hides), random flips, and a random quality per image; the loss is
lambda[q] * 255^2 * MSE + bpp, averaged over the batch, with k drawn per step from the range the
model is meant to support. Images are decoded once and kept on the training device.

Checkpoints are safetensors (model + step), written atomically; `--resume` takes a checkpoint or an
exported weights file (the way training continues across GPU sessions).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file

from .codec.model import LAMBDAS, AecModel, ModelConfig
from .codec.weights import export_bytes, model_from_bytes
from .errors import AecError
from .fileio import atomic_write_bytes
from .imageio import list_images

def load_images(files, device, min_side: int) -> list[torch.Tensor]:
    out = []
    for f in files:
        with Image.open(f) as im:
            im = im.convert("RGB")
            if min(im.size) < min_side:
                continue
            t = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
            out.append(t.view(im.height, im.width, 3).permute(2, 0, 1).contiguous().to(device))
    if not out:
        raise AecError(f"no training image has a side of at least {min_side} pixels")
    return out


def random_batch(images, batch: int, crop: int, gen: random.Random, device) -> torch.Tensor:
    crops = []
    for _ in range(batch):
        img = images[gen.randrange(len(images))]
        _, h, w = img.shape
        # source window of side crop/scale, scale in [0.5, 1], so the crop is a downscaled view
        max_side = min(h, w)
        side = int(crop / gen.uniform(0.5, 1.0))
        side = max(crop, min(side, max_side))
        y0, x0 = gen.randrange(h - side + 1), gen.randrange(w - side + 1)
        c = img[:, y0:y0 + side, x0:x0 + side].float().unsqueeze(0)
        if side != crop:
            c = F.interpolate(c, size=(crop, crop), mode="bilinear", antialias=True, align_corners=False)
        if gen.random() < 0.5:
            c = c.flip(-1)
        if gen.random() < 0.5:
            c = c.flip(-2)
        crops.append(c)
    x = torch.cat(crops).div_(255.0).clamp_(0, 1)
    return x.contiguous(memory_format=torch.channels_last)


def rd_loss(out, x, quality: torch.Tensor):
    n_pix = x.shape[2] * x.shape[3]
    bits = sum(torch.log(l).flatten(1).sum(1) for l in out["likelihoods"].values()) / -math.log(2)
    bpp = bits / n_pix
    mse = F.mse_loss(out["x_hat"].float(), x, reduction="none").flatten(1).mean(1)
    lam = torch.tensor(LAMBDAS, device=x.device)[quality - 1]
    loss = (lam * 255 ** 2 * mse + bpp).mean()
    return loss, bpp.mean(), mse


@torch.no_grad()
def evaluate(model: AecModel, images, device, qualities, k_of) -> list[dict]:
    """Estimated Kodak RD (rounded latents, model likelihoods; the real coder adds ~1%)."""
    model.eval()
    model.drop_float64_copies()  # they would hold stale weights mid-training
    rows = []
    for q in qualities:
        bpps, psnrs = [], []
        for img in images:
            x = img.float().div(255).unsqueeze(0)
            h, w = x.shape[-2:]
            ph, pw = (-h) % 64, (-w) % 64
            xp = F.pad(x, (0, pw, 0, ph), mode="replicate")
            y_hat, z = model.analyze(xp, q, k_of(q))
            z_hat, z_lik = model.entropy_bottleneck(z, training=False)
            scales = model.h_s(z_hat)
            y_lik = model.gaussian_conditional.likelihood_lower_bound(
                model.gaussian_conditional._likelihood(y_hat, scales))
            bits = (-torch.log2(y_lik).sum() - torch.log2(z_lik).sum()).item()
            x_hat = model.synthesize(y_hat, q)[..., :h, :w].clamp(0, 1)
            mse = F.mse_loss((x_hat * 255).round(), (x * 255).round()).item()
            bpps.append(bits / (h * w))
            psnrs.append(10 * math.log10(255 ** 2 / max(mse, 1e-10)))
        rows.append({"quality": q, "k": k_of(q), "bpp": sum(bpps) / len(bpps), "psnr": sum(psnrs) / len(psnrs)})
    model.train()
    return rows


def save_checkpoint(model: AecModel, path: Path, step: int, args: dict) -> None:
    state = {k: v.detach().float().cpu().contiguous() if v.is_floating_point() else v.detach().cpu().contiguous()
             for k, v in model.state_dict().items()}
    meta = {"step": str(step), "args": json.dumps(args),
            "config": json.dumps(dataclasses.asdict(model.config))}
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp), metadata=meta)
    os.replace(tmp, path)


def load_for_resume(path: Path, device) -> tuple[AecModel, int]:
    data = Path(path).read_bytes()
    try:
        lm = model_from_bytes(data)  # an exported weights file
        return lm.model.to(device).train(), 0
    except AecError:
        pass
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    state = load_file(str(path))
    cfg = ModelConfig(**{k: int(v) for k, v in json.loads(meta.get("config", "{}")).items()})
    model = AecModel(cfg)
    model.load_state_dict(state)
    return model.to(device).train(), int(meta.get("step", 0))


def train(args) -> None:
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(args.seed)
    gen = random.Random(args.seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = list_images(args.data)
    images = load_images(files, device, min_side=args.crop)
    eval_images = load_images(list_images(args.eval_dir), device, 1) if args.eval_dir else []
    print(f"training on {len(images)} images ({device}), eval on {len(eval_images)}", flush=True)

    if args.resume:
        model, start = load_for_resume(Path(args.resume), device)
    else:
        model, start = AecModel(ModelConfig(N=args.N, M=args.M)).to(device), 0
    model = model.to(memory_format=torch.channels_last)
    M = model.config.M
    k_lo = max(1, min(M, args.k_min))
    params = [p for n, p in model.named_parameters() if not n.endswith(".quantiles")]
    aux_params = [p for n, p in model.named_parameters() if n.endswith(".quantiles")]
    opt = torch.optim.Adam(params, lr=args.lr)
    aux_opt = torch.optim.Adam(aux_params, lr=1e-3)
    total = args.steps
    warmup = min(500, total // 10) if start == 0 else 0

    def lr_at(step: int) -> float:
        if step < warmup:
            return args.lr * (step + 1) / warmup
        t = (step - start) / max(1, total - start)
        if deadline:  # a time-boxed run (a GPU session) decays on the clock, whichever ends first
            t = max(t, (time.time() - t_start) / (deadline - t_start))
        return args.lr_min + 0.5 * (args.lr - args.lr_min) * (1 + math.cos(math.pi * min(1.0, t)))

    from tqdm import tqdm

    bar = tqdm(range(start, total), initial=start, total=total, mininterval=args.log_every_s,
               disable=args.quiet)
    t0, n0 = time.time(), start
    t_start = time.time()
    deadline = t_start + args.max_minutes * 60 if args.max_minutes else None
    step = start
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        x = random_batch(images, args.batch, args.crop, gen, device)
        quality = torch.randint(1, model.config.qualities + 1, (x.shape[0],), device=device)
        k = gen.randint(k_lo, M) if gen.random() < 0.5 else M // 2
        out = model(x, quality, k)
        loss, bpp, mse = rd_loss(out, x, quality)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, args.clip)
        opt.step()
        aux_opt.zero_grad(set_to_none=True)
        model.aux_loss().backward()
        aux_opt.step()
        if step % 50 == 0:
            psnr = (10 * torch.log10(1 / mse.clamp_min(1e-10))).mean().item()
            bar.set_postfix(loss=f"{loss.item():.3f}", bpp=f"{bpp.item():.3f}", psnr=f"{psnr:.2f}",
                            lr=f"{lr_at(step):.1e}")
        done = step + 1
        if done % args.save_every == 0 or done == total:
            save_checkpoint(model, out_dir / "checkpoint.safetensors", done, vars(args))
        if eval_images and args.eval_every and done % args.eval_every == 0:
            rows = evaluate(model, eval_images, device, [1, 4, 8], lambda q: M // 2)
            rate = (done - n0) / (time.time() - t0)
            print(f"step {done} ({rate:.1f} it/s) eval: " + ", ".join(
                f"q{r['quality']} {r['bpp']:.3f} bpp {r['psnr']:.2f} dB" for r in rows), flush=True)
        if deadline and time.time() > deadline:
            print(f"time limit reached at step {done}", flush=True)
            break
    step = step + 1
    save_checkpoint(model, out_dir / "checkpoint.safetensors", step, vars(args))
    rate = (step - n0) / max(1e-9, time.time() - t0)
    print(f"done: step {step}, {rate:.1f} it/s, checkpoint {out_dir / 'checkpoint.safetensors'}", flush=True)


def export(args) -> None:
    model, step = load_for_resume(Path(args.checkpoint), torch.device("cpu"))
    M = model.config.M
    default_k = [int(v) for v in args.default_k.split(",")] if args.default_k else [M // 2] * model.config.qualities
    if len(default_k) == 1:
        default_k = default_k * model.config.qualities
    data = export_bytes(model, args.name, default_k, extra={"train_steps": step})
    out = Path(args.output)
    atomic_write_bytes(out, data, force=args.force)
    sha = hashlib.sha256(data).hexdigest()
    print(f"wrote {out} ({len(data) / 1e6:.1f} MB, sha256 {sha})")
    if args.register:
        # record the file in the manifest beside it (the package's model zoo)
        manifest = out.parent / "manifest.json"
        entries = json.loads(manifest.read_text()) if manifest.exists() else {"models": {}}
        entries["models"][args.name] = {"file": out.name, "sha256": sha}
        atomic_write_bytes(manifest, (json.dumps(entries, indent=2) + "\n").encode(), force=True)
        print(f"registered {args.name} in {manifest}")
