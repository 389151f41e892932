"""Where the transforms run: "auto", "cpu", "cuda", "cuda:N"."""
from __future__ import annotations

import functools
import os
import sys

from ...errors import AecError

_GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/dxg")  # NVIDIA driver (Linux, WSL); torch decides beyond


def resolve_device(device):
    """A torch.device for "auto" (CUDA when there is a GPU), "cpu", "cuda" or "cuda:N"."""
    try:
        import torch
    except ModuleNotFoundError:
        raise AecError(f"device {device!r} needs torch, which is not installed (pip install torch)") from None

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise AecError(f"unknown device {device!r}; use \"auto\", \"cpu\" or \"cuda\"") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise AecError("--device cuda was requested but no CUDA GPU is available")
    return dev


def device_name(device) -> str:
    """"cpu", or a torch device string such as "cuda". "auto" picks a CUDA GPU when there is one;
    without a GPU driver on the machine it answers without importing torch."""
    if device in (None, "auto"):
        if "torch" not in sys.modules and not any(os.path.exists(p) for p in _GPU_DEVICE_FILES):
            return "cpu"
    elif str(device) == "cpu":
        return "cpu"
    dev = resolve_device(device)
    return "cpu" if dev.type == "cpu" else str(dev)


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset:
    """The CPU's instruction-set flags as Linux lists them (/proc/cpuinfo); empty elsewhere."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def native_bf16() -> bool:
    """Whether the CPU multiplies bfloat16 natively: AMX (Xeon Sapphire Rapids on) or AVX512_BF16
    (Zen 4, Cooper Lake). Elsewhere bf16 is emulated and no faster than float32."""
    return bool({"amx_bf16", "avx512_bf16"} & cpu_flags())
