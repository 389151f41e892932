"""The torch engine: the model's transforms (model.AecModel, built from the same layer lists) on a
torch device: a CUDA GPU, or the CPU while the encoder refines latents by gradient descent
(effort > 0). Arrays are (1, C, H, W) tensors; entropy coding goes through the same float64 coder
on the CPU as every engine, so a file made here decodes identically anywhere.
"""
from __future__ import annotations

import contextlib
import threading

import numpy as np
import torch

from ..model import AecModel
from .base import Engine
from .devices import resolve_device


class TorchEngine(Engine):
    kind = "torch"
    keeps_input = True

    def __init__(self, weights, device=None, viewer: Engine | None = None):
        """viewer: the engine that decodes files on this device when it is not this one (the numpy
        engine on the CPU); pixels() shows what it shows, so refinement judges what users see."""
        super().__init__(weights, device)
        self.device = resolve_device(device)
        self.net = AecModel.from_weights(weights).to(self.device)
        self.viewer = viewer
        self.lock = threading.RLock()  # torch modules are not safe to run from several threads

    @contextlib.contextmanager
    def session(self):
        # cuDNN's default TF32 convolutions round inputs to 10-bit mantissas: decoded pixels then
        # drift from the CPU's in ~0.5 % of values (measured on an H200); full float32 keeps them
        # within tolerance.
        with self.lock, torch.inference_mode(), torch.backends.cudnn.flags(
                enabled=True, benchmark=False, deterministic=True, allow_tf32=False):
            yield

    def image(self, rgb):
        x = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.uint8)).to(self.device)
        return x.permute(2, 0, 1).unsqueeze(0).float().div_(255.0)  # HWC memory = channels-last

    def at(self, rows_cols):
        return (..., *rows_cols)

    def latents(self, h, w):
        return torch.empty((1, self.channels, h, w), dtype=torch.float32, device=self.device)

    def latent_size(self, y_hat):
        return tuple(y_hat.shape[-2:])

    def gains(self, quality):
        return self.net.gains(quality, self.device)

    def g_a(self, x):
        return self.net.g_a(x)

    def gate(self, y, g, k):
        from ...kernels import gate_quantize

        return gate_quantize((y * g).float(), k)

    def h_a(self, y_hat):
        return self.net.h_a(y_hat.abs())

    def refine(self, state, quality, k: int, effort: int, cost, on_check=None):
        """effort > 0: the latents refined for this image (refine.py), judged by cost(y_hat, z)."""
        from ..refine import refine

        g, _ = self.gains(quality)
        y_scaled = (state.y * g).float()
        _, z = self.quantize(state, quality, k)
        return refine(self.net, state.x, state.size, y_scaled, z, quality, k, effort, cost, on_check)

    def pixels(self, y_hat, quality, height, width):
        if self.viewer is not None:
            return self.viewer.pixels(self.viewer.from_chw(self.to_chw(y_hat)), quality, height, width)
        return super().pixels(y_hat, quality, height, width)

    def tile_pixels(self, y_hat, quality, crop):
        px = self.net.synthesize(y_hat, quality)[0].permute(1, 2, 0)  # HWC
        return px[crop].clamp(0, 1).mul_(255).round_().to(torch.uint8).cpu().numpy()

    def to_chw(self, a):
        return a[0].detach().float().cpu().numpy()

    def from_chw(self, a):
        return torch.from_numpy(a)[None].to(self.device)


ENGINE = TorchEngine
