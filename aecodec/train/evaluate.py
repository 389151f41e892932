"""Validation: real coded size and PSNR per quality on the validation set, and BD-rate against
JPEG 2000 measured on the same images with the benchmark harness's settings.

Images are coded and decoded by the same coder and engine as `aecodec compress` on the CPU (the
numpy engine), so sizes are real `.aec` sizes and reconstructions are what a user would see.
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
from ..codec import coder, engines
from ..codec.config import QUALITY_LEVELS
from ..codec.config import PAD
from ..codec.model import AecModel
from ..codec.weights import Weights
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


def coding_engine(model: AecModel):
    """The engine `aecodec compress` would code a coding copy's weights with on the CPU; files it
    writes carry the model name "validation" and a null digest."""
    return engines.create("numpy", Weights.from_model(model))


def code_image(engine, rgb: np.ndarray, quality: int, k: int) -> tuple[int, np.ndarray]:
    """(bytes of the .aec file, decoded uint8 image) through the real coder."""
    data = coder.encode(rgb, "RGB", quality, k, engine=engine)
    return len(data), coder.decode(data, engine=engine)[0]


@torch.no_grad()
def autoencoder_psnr(model: AecModel, rgb: np.ndarray, quality: int) -> float:
    """PSNR of g_s(g_a(x)) with no gating and no quantization: the transforms' own ceiling."""
    h, w = rgb.shape[:2]
    x = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float().div(255)
    x = F.pad(x, (0, (-w) % PAD, 0, (-h) % PAD), mode="replicate")
    g, ig = model.gains(quality, "cpu")
    x_hat = model.g_s(model.g_a(x) * g * ig)[0, :, :h, :w].clamp(0, 1).mul(255).round().to(torch.uint8)
    return psnr(x_hat.permute(1, 2, 0).numpy(), rgb)


def evaluate(model: AecModel, images: list[tuple[str, np.ndarray]], qualities=QUALITY_LEVELS,
             ks=EVAL_K) -> dict:
    """model: a coding copy -> {"bpp": [...], "psnr-rgb": [...], "quality": [...], "k": [...],
    "ae_psnr_q8": float}"""
    res = {"quality": [], "k": [], "bpp": [], "psnr-rgb": []}
    engine = coding_engine(model)
    for q in qualities:
        k = min(ks[q - 1], model.config.M)
        bpps, psnrs = [], []
        for _, rgb in images:
            size, out = code_image(engine, rgb, q, k)
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
