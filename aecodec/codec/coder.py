"""Image <-> bitstream, the whole data flow:

    pixels -> pad -> g_a -> gain -> gate_quantize(k) -> h_a -> entropy coders -> bitstream
    bitstream -> entropy decoders -> inverse gain -> g_s -> crop -> pixels

The transforms run on the chosen device; entropy coding and the scale network always run on the
CPU (the latter in float64) so that a file encoded on one device decodes on any other.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import AecError
from . import bitstream
from .model import PAD
from .weights import DEFAULT_MODEL, LoadedModel, load_model, shipped_models


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise AecError("--device cuda was requested but no CUDA GPU is available")
    return dev


def _transforms_on(loaded: LoadedModel, device: torch.device):
    """The model whose g_a/h_a/g_s run on `device` (entropy models stay on the CPU copy)."""
    if device.type == "cpu":
        return loaded.model
    cache = loaded.__dict__.setdefault("_device_models", {})
    if device not in cache:
        m = copy.deepcopy(loaded.model)
        m.entropy_bottleneck = None
        m.gaussian_conditional = None
        cache[device] = m.to(device)
    return cache[device]


def _to_tensor(rgb: np.ndarray, device) -> torch.Tensor:
    x = torch.from_numpy(np.array(rgb, dtype=np.uint8, copy=True)).to(device)
    return x.permute(2, 0, 1).unsqueeze(0).float().div_(255.0)


def encode(rgb: np.ndarray, mode: str, quality: int, k: int | None = None,
           loaded: LoadedModel | None = None, device=None) -> bytes:
    """Encode an 8-bit (H, W, 3) array. mode is the colour mode recorded for the decoder."""
    loaded = loaded or load_model(DEFAULT_MODEL)
    M = loaded.model.channels
    if quality not in bitstream.QUALITY_RANGE:
        raise AecError(f"quality must be 1..8, got {quality}")
    k = loaded.default_k[quality - 1] if k is None else k
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= M:
        raise AecError(f"k must be an integer in 1..{M} for model {loaded.name}, got {k}")
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise AecError("encode expects an 8-bit RGB array of shape (H, W, 3)")
    h, w = rgb.shape[:2]
    bitstream._check_ranges(w, h, quality, k, mode)
    device = resolve_device(device)
    with loaded.lock, torch.inference_mode():
        net = _transforms_on(loaded, device)
        x = _to_tensor(rgb, device)
        x = F.pad(x, (0, (-w) % PAD, 0, (-h) % PAD), mode="replicate")
        y_hat, z = net.analyze(x, quality, k)
        y_bytes, z_bytes = loaded.model.encode_latents(y_hat.cpu(), z.cpu())
    header = bitstream.Header(loaded.name, loaded.short_digest, w, h, mode, quality, k,
                              len(z_bytes), len(y_bytes))
    return bitstream.pack(header, z_bytes, y_bytes)


def model_for(header: bitstream.Header) -> LoadedModel:
    if header.model not in shipped_models():
        raise AecError(f"file was made by model {header.model!r}, which this aecodec does not have "
                       f"(it has {', '.join(sorted(shipped_models()))})")
    loaded = load_model(header.model)
    if loaded.short_digest != header.digest:
        raise AecError(f"file was made by other weights of model {header.model!r} "
                       f"(digest {header.digest.hex()}, installed {loaded.short_digest.hex()}); "
                       "decode it with the aecodec version that wrote it")
    if header.k > loaded.model.channels:
        raise AecError(f"corrupt .aec header (k {header.k} > {loaded.model.channels} channels)")
    return loaded


def decode(data: bytes, device=None) -> tuple[np.ndarray, bitstream.Header]:
    """Decode an .aec file to an 8-bit array: (H, W, 3) for RGB, (H, W) for L."""
    header, z_bytes, y_bytes = bitstream.parse(data)
    loaded = model_for(header)
    device = resolve_device(device)
    hp, wp = -(-header.height // PAD) * PAD, -(-header.width // PAD) * PAD
    with loaded.lock, torch.inference_mode():
        try:
            y_hat = loaded.model.decode_latents(y_bytes, z_bytes, (hp // PAD, wp // PAD))
        except (RuntimeError, ValueError) as e:  # the rANS decoder's own complaints
            raise AecError(f"corrupt .aec payload ({e})") from None
        net = _transforms_on(loaded, device)
        x_hat = net.synthesize(y_hat.to(device), header.quality)
        x_hat = x_hat[0, :, :header.height, :header.width].clamp_(0, 1).mul_(255).round_()
        pixels = x_hat.to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    if header.mode == "L":
        pixels = np.round(pixels.astype(np.float32).mean(axis=2)).astype(np.uint8)
    return pixels, header
