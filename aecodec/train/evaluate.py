"""Validation: real coded size and PSNR per quality on the validation set, and BD-rate against
JPEG 2000 measured on the same images with the benchmark harness's settings.

Sizes are the real `.aec` sizes (header, hyper-latent and latent rANS streams) from the shipped
entropy coder; reconstructions are the decoder's (g_s on the decoded latents, 8-bit rounding).
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..bench.bdrate import bd_rate
from ..bench.codecs import J2K_BPPS, Jpeg2000Codec
from ..bench.metrics import psnr
from ..codec import bitstream
from ..codec.config import QUALITY_LEVELS
from ..codec.model import PAD, AecModel
from ..fileio import atomic_write_bytes

RATE_RANGE = (0.1, 1.5)  # bpp range of the BD-rate, as in the Kodak table
EVAL_K = (64, 64, 96, 96, 96, 128, 128, 128)  # fixed k per quality, so runs compare


def coding_copy(model: AecModel, state: dict | None = None) -> AecModel:
    """A CPU float32 copy of the model (optionally with other weights, e.g. the EMA) with fresh
    CDF tables, ready for the real entropy coder."""
    m = copy.deepcopy(model).cpu().float()
    if state is not None:
        full = m.state_dict()
        full.update({k: v.float() for k, v in state.items() if k in full})
        m.load_state_dict(full)
    m = m.to(memory_format=torch.contiguous_format).eval()
    m.update(force=True)
    return m


@torch.no_grad()
def code_image(model: AecModel, rgb: np.ndarray, quality: int, k: int) -> tuple[int, np.ndarray]:
    """(bytes of the .aec file, decoded uint8 image) through the real coder."""
    h, w = rgb.shape[:2]
    x = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float().div(255)
    x = F.pad(x, (0, (-w) % PAD, 0, (-h) % PAD), mode="replicate")
    y_hat, z = model.analyze(x, quality, k)
    y_bytes, z_bytes = model.encode_latents(y_hat, z)
    header = bitstream.Header("validation", bytes(8), w, h, "RGB", quality, k, len(z_bytes), len(y_bytes))
    size = len(bitstream.pack(header, z_bytes, y_bytes))
    _, ig = model._gains(quality, "cpu")
    x_hat = model.g_s(y_hat * ig)[0, :, :h, :w].clamp(0, 1).mul(255).round().to(torch.uint8)
    return size, x_hat.permute(1, 2, 0).numpy()


@torch.no_grad()
def autoencoder_psnr(model: AecModel, rgb: np.ndarray, quality: int) -> float:
    """PSNR of g_s(g_a(x)) with no gating and no quantization: the transforms' own ceiling."""
    h, w = rgb.shape[:2]
    x = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float().div(255)
    x = F.pad(x, (0, (-w) % PAD, 0, (-h) % PAD), mode="replicate")
    g, ig = model._gains(quality, "cpu")
    x_hat = model.g_s(model.g_a(x) * g * ig)[0, :, :h, :w].clamp(0, 1).mul(255).round().to(torch.uint8)
    return psnr(x_hat.permute(1, 2, 0).numpy(), rgb)


def evaluate(model: AecModel, images: list[tuple[str, np.ndarray]], qualities=QUALITY_LEVELS,
             ks=EVAL_K) -> dict:
    """{"bpp": [...], "psnr-rgb": [...], "quality": [...], "k": [...], "ae_psnr_q8": float}"""
    res = {"quality": [], "k": [], "bpp": [], "psnr-rgb": []}
    for q in qualities:
        k = min(ks[q - 1], model.config.M)
        bpps, psnrs = [], []
        for _, rgb in images:
            size, out = code_image(model, rgb, q, k)
            bpps.append(size * 8 / (rgb.shape[0] * rgb.shape[1]))
            psnrs.append(psnr(out, rgb))
        for key, v in (("quality", q), ("k", k), ("bpp", float(np.mean(bpps))), ("psnr-rgb", float(np.mean(psnrs)))):
            res[key].append(v)
    res["ae_psnr_q8"] = float(np.mean([autoencoder_psnr(model, rgb, model.config.qualities) for _, rgb in images]))
    return res


def images_digest(images) -> str:
    h = hashlib.sha256()
    for name, rgb in images:
        h.update(name.encode())
        h.update(rgb.tobytes())
    return h.hexdigest()[:16]


def jpeg2000_anchor(images, cache_dir: Path) -> dict:
    """JPEG 2000 (bench settings: 9/7, MCT, raw codestream, rate-controlled) on the validation
    images, averaged per target bpp; cached by the images' digest."""
    cache = Path(cache_dir) / f"jpeg2000-{images_digest(images)}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    res = {"bpp": [], "psnr-rgb": []}
    for target in J2K_BPPS:
        codec = Jpeg2000Codec("JPEG 2000", target)
        bpps, psnrs = [], []
        for _, rgb in images:
            data = codec.encode(Image.fromarray(rgb))
            out = np.asarray(codec.decode(data))
            bpps.append(len(data) * 8 / (rgb.shape[0] * rgb.shape[1]))
            psnrs.append(psnr(out, rgb))
        res["bpp"].append(float(np.mean(bpps)))
        res["psnr-rgb"].append(float(np.mean(psnrs)))
    atomic_write_bytes(cache, json.dumps(res).encode(), force=True)
    return res


def bd_vs_jpeg2000(result: dict, anchor: dict) -> float:
    return bd_rate(anchor["bpp"], anchor["psnr-rgb"], result["bpp"], result["psnr-rgb"], RATE_RANGE)


def format_result(result: dict, bd: float) -> str:
    rows = [f"  q{q} k={k:3d}: {b:.3f} bpp {p:.2f} dB" for q, k, b, p in
            zip(result["quality"], result["k"], result["bpp"], result["psnr-rgb"])]
    bd_s = "n/a" if math.isnan(bd) else f"{bd:+.1f} %"
    return "\n".join(rows + [f"  autoencoder ceiling (q8, no quantization): {result['ae_psnr_q8']:.2f} dB",
                             f"  BD-rate vs JPEG 2000 (PSNR, {RATE_RANGE[0]}-{RATE_RANGE[1]} bpp): {bd_s}"])
