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

from ..errors import AecError
from . import bitstream
from .model import PAD
from .weights import DEFAULT_MODEL, LoadedModel, load_model
from .zoo import check_known


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


# Transforms run in tiles so that peak memory stays bounded for huge images. Convolutions only see
# a few latents around each output, so a halo of HALO latents around every tile makes the tiled
# result equal the whole-image one up to float rounding: no seams. Images up to TILE pixels per
# side are a single tile.
TILE = 1024 // 16   # latents per analysis tile side (1024 pixels)
TILE_S = 768 // 16  # latents per synthesis tile side (768 pixels: g_s has the larger activations)
HALO = 4            # latents of context on each side (64 pixels), more than g_a/g_s can see


def _tiles(n: int, size: int | None = None):
    """[(start, stop)] covering 0..n in steps of `size` (default TILE) latents."""
    size = size or TILE
    return [(a, min(a + size, n)) for a in range(0, n, size)]


def _analyze_tiled(net, x: torch.Tensor) -> torch.Tensor:
    """g_a over x (1, 3, 16h, 16w) tile by tile -> y (1, M, h, w)."""
    _, _, H, W = x.shape
    h, w = H // 16, W // 16
    if h <= TILE and w <= TILE:
        return net.g_a(x)
    y = torch.empty((1, net.channels, h, w), dtype=x.dtype, device=x.device)
    for r0, r1 in _tiles(h):
        for c0, c1 in _tiles(w):
            a0, a1, b0, b1 = max(0, r0 - HALO), min(h, r1 + HALO), max(0, c0 - HALO), min(w, c1 + HALO)
            t = net.g_a(x[:, :, 16 * a0:16 * a1, 16 * b0:16 * b1])
            y[:, :, r0:r1, c0:c1] = t[:, :, r0 - a0:r1 - a0, c0 - b0:c1 - b0]
    return y


def _synthesize_tiled(net, y_hat: torch.Tensor, quality: int, height: int, width: int) -> np.ndarray:
    """g_s tile by tile, straight to cropped 8-bit pixels (height, width, 3) on the CPU."""
    _, _, h, w = y_hat.shape
    out = torch.empty((height, width, 3), dtype=torch.uint8)
    for r0, r1 in _tiles(h, TILE_S):
        for c0, c1 in _tiles(w, TILE_S):
            if 16 * r0 >= height or 16 * c0 >= width:
                continue
            a0, a1, b0, b1 = max(0, r0 - HALO), min(h, r1 + HALO), max(0, c0 - HALO), min(w, c1 + HALO)
            t = net.synthesize(y_hat[:, :, a0:a1, b0:b1], quality)[0].permute(1, 2, 0)  # HWC
            y0, x0 = 16 * (r0 - a0), 16 * (c0 - b0)
            rows, cols = min(16 * r1, height) - 16 * r0, min(16 * c1, width) - 16 * c0
            t = t[y0:y0 + rows, x0:x0 + cols].clamp(0, 1).mul_(255).round_()
            out[16 * r0:16 * r0 + rows, 16 * c0:16 * c0 + cols] = t.to(torch.uint8).cpu()
    return out.numpy()


def _to_tensor(rgb: np.ndarray, device, pad: int = 1) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H', W') float in [0, 1], H' and W' rounded up to multiples of
    `pad` by repeating the edge pixels. Padded as uint8 and converted once, straight into the
    channels-last layout (the faster one for CPU convolutions): a 24 MP image makes one float
    copy, not three."""
    h, w = rgb.shape[:2]
    rgb = np.pad(rgb, ((0, (-h) % pad), (0, (-w) % pad), (0, 0)), mode="edge")
    x = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.uint8)).to(device)
    return x.permute(2, 0, 1).unsqueeze(0).float().div_(255.0)  # HWC memory = channels-last


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
        x = _to_tensor(rgb, device, PAD)
        y_hat, z = net.analyze(x, quality, k, g_a=lambda t: _analyze_tiled(net, t))
        try:
            y_bytes, z_bytes = loaded.model.encode_latents(y_hat.cpu(), z.cpu())
        except ValueError as e:
            raise AecError(f"cannot encode this image: {e}") from None
    header = bitstream.Header(loaded.name, loaded.short_digest, w, h, mode, quality, k,
                              len(z_bytes), len(y_bytes))
    return bitstream.pack(header, z_bytes, y_bytes)


def model_for(header: bitstream.Header) -> LoadedModel:
    check_known(header.model)
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
        pixels = _synthesize_tiled(net, y_hat.to(device), header.quality, header.height, header.width)
    if header.mode == "L":
        pixels = np.round(pixels.astype(np.float32).mean(axis=2)).astype(np.uint8)
    return pixels, header
