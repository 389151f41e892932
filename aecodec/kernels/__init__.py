"""The latent path's op: k-sparse top-k gating + quantization.

`gate_quantize` runs the fused Triton kernel on CUDA tensors and the PyTorch reference elsewhere;
both give identical results (tests/test_kernels.py).
"""
from __future__ import annotations

import os

import torch

from .reference import MODES, gate_quantize as reference_gate_quantize

__all__ = ["MODES", "gate_quantize", "reference_gate_quantize", "triton_gate_quantize", "triton_available"]


def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except Exception:  # pragma: no cover - triton ships with the CUDA build of torch
        return False
    return True


def triton_gate_quantize(y, k, mode="round", noise=None):
    """The Triton kernel path (compiled on CUDA, interpreted on CPU under TRITON_INTERPRET=1)."""
    from .gate_quantize_triton import triton_gate_quantize as impl

    return impl(y, k, mode=mode, noise=noise)


def gate_quantize(y: torch.Tensor, k: int, mode: str = "round", noise: torch.Tensor | None = None):
    """k-sparse gating + quantization of y (B, C, H, W); see `aecodec.kernels.reference`.

    Set AECODEC_NO_TRITON=1 to force the reference path on CUDA (for comparisons).
    """
    if y.is_cuda and triton_available() and os.environ.get("AECODEC_NO_TRITON") != "1":
        return triton_gate_quantize(y, k, mode=mode, noise=noise)
    return reference_gate_quantize(y, k, mode=mode, noise=noise)
