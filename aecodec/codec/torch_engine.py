"""The torch engine: the AecModel's transforms on a torch device (a CUDA GPU, or the CPU while the
encoder refines latents by gradient descent, effort > 0), tiled for huge images.

Same steps as the numpy engine (numpy_engine.py); entropy coding goes through the same numpy
entropy coder on the CPU, so a file made here decodes identically anywhere.
"""
from __future__ import annotations

import contextlib
import copy

import numpy as np
import torch

from ..errors import AecError
from . import tiling
from .config import PAD, Y_STRIDE
from .weights import LoadedModel


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise AecError(f"unknown device {device!r}; use \"auto\", \"cpu\" or \"cuda\"") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise AecError("--device cuda was requested but no CUDA GPU is available")
    return dev


def _transforms_on(loaded: LoadedModel, device: torch.device):
    """The model whose g_a/h_a/g_s run on `device` (entropy models stay on the CPU copy)."""
    if device.type == "cpu":
        return loaded.model
    with loaded.lock:
        if device not in loaded.device_models:  # entropy models come along: refinement needs their likelihoods
            loaded.device_models[device] = copy.deepcopy(loaded.model).to(device)
        return loaded.device_models[device]


def to_tensor(rgb: np.ndarray, device, pad: int = 1) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H', W') float in [0, 1], H' and W' rounded up to multiples of
    `pad` by repeating the edge pixels. Padded as uint8 and converted once, straight into the
    channels-last layout (the faster one for CPU convolutions): a 24 MP image makes one float
    copy, not three."""
    h, w = rgb.shape[:2]
    rgb = np.pad(rgb, ((0, (-h) % pad), (0, (-w) % pad), (0, 0)), mode="edge")
    x = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.uint8)).to(device)
    return x.permute(2, 0, 1).unsqueeze(0).float().div_(255.0)  # HWC memory = channels-last


class _Analysis:
    """One image on the device: the padded input x, g_a's output y, the picture's size."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, size: tuple[int, int]):
        self.x, self.y, self.size = x, y, size


class TorchEngine:
    kind = "torch"

    def __init__(self, loaded: LoadedModel, device: torch.device, viewer=None):
        """viewer: the engine that decodes files on this device when it is not this one (the numpy
        engine on the CPU); pixels() shows what it shows, so refinement judges what users see."""
        self.loaded, self.device, self.viewer = loaded, device, viewer
        self.net = _transforms_on(loaded, device)
        self.name, self.digest, self.default_k, self.channels = loaded.name, loaded.digest, loaded.default_k, \
            loaded.model.channels

    @contextlib.contextmanager
    def session(self):
        # torch modules are not safe to share across threads. cuDNN's default TF32 convolutions
        # round inputs to 10-bit mantissas: decoded pixels then drift from the CPU's in ~0.5 % of
        # values (measured on an H200); full float32 keeps them within tolerance.
        with self.loaded.lock, torch.inference_mode(), torch.backends.cudnn.flags(
                enabled=True, benchmark=False, deterministic=True, allow_tf32=False):
            yield

    def analyze(self, rgb: np.ndarray) -> _Analysis:
        x = to_tensor(rgb, self.device, PAD)
        _, _, H, W = x.shape
        h, w = H // Y_STRIDE, W // Y_STRIDE
        if h <= tiling.TILE and w <= tiling.TILE:
            return _Analysis(x, self.net.g_a(x), rgb.shape[:2])
        y = torch.empty((1, self.net.channels, h, w), dtype=x.dtype, device=x.device)
        for t in tiling.analysis_tiles(h, w):
            y[(..., *t.dst)] = self.net.g_a(x[(..., *t.src)])[(..., *t.crop)]
        return _Analysis(x, y, rgb.shape[:2])

    def quantize(self, state: _Analysis, quality, k: int):
        return self.net.quantize_latents(state.y, quality, k)

    def refine(self, state: _Analysis, quality, k: int, effort: int, cost, on_check=None):
        """effort > 0: the latents refined for this image (refine.py), judged by cost(y_hat, z)."""
        from .refine import refine

        g, _ = self.net._gains(quality, state.y.device)
        y_scaled = (state.y * g).float()
        _, z = self.net.quantize_latents(state.y, quality, k)
        return refine(self.net, state.x, state.size, y_scaled, z, quality, k, effort, cost, on_check)

    def entropy_code(self, y_hat: torch.Tensor, z: torch.Tensor) -> tuple[bytes, bytes]:
        return self.loaded.model.encode_latents(y_hat.cpu(), z.cpu())

    def decode_latents(self, y_bytes: bytes, z_bytes: bytes, z_shape: tuple[int, int]) -> torch.Tensor:
        return self.loaded.model.decode_latents(y_bytes, z_bytes, z_shape).to(self.device)

    def pixels(self, y_hat: torch.Tensor, quality, height: int, width: int) -> np.ndarray:
        """g_s tile by tile, straight to cropped 8-bit pixels (height, width, 3) on the CPU."""
        if self.viewer is not None:
            return self.viewer.pixels(y_hat[0].permute(1, 2, 0).float().cpu().numpy(), quality, height, width)
        _, _, h, w = y_hat.shape
        out = torch.empty((height, width, 3), dtype=torch.uint8)
        for t in tiling.synthesis_tiles(h, w, height, width):
            px = self.net.synthesize(y_hat[(..., *t.src)], quality)[0].permute(1, 2, 0)  # HWC
            out[t.dst] = px[t.crop].clamp(0, 1).mul_(255).round_().to(torch.uint8).cpu()
        return out.numpy()
