"""Image quality metrics on 8-bit images as users get them back."""
from __future__ import annotations

import math

import numpy as np


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB over all channels of two uint8 images (inf when identical)."""
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """MS-SSIM (pytorch-msssim, data range 255) of two uint8 RGB/L images; small images padded."""
    import torch
    from pytorch_msssim import ms_ssim as _ms_ssim

    def t(x):
        x = torch.from_numpy(np.array(x, dtype=np.float64))
        x = x[None, None] if x.ndim == 2 else x.permute(2, 0, 1)[None]
        return x

    x, y = t(a), t(b)
    # pytorch-msssim needs a side > (win_size - 1) * 2**4 = 160
    if min(x.shape[-2:]) <= 160:
        raise ValueError("MS-SSIM needs images larger than 160 pixels per side")
    return float(_ms_ssim(x, y, data_range=255.0, size_average=True))
