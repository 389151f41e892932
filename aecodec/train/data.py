"""Training and validation images.

The validation set is carved out of the training folder by a fixed rule (one file in five, at
most VAL_COUNT: the first by SHA-256 of their name), so it is the same on every machine and never
trained on; a folder of a few photos still trains. Kodak is
the test set and plays no part here.

Training crops cost the cores nothing: every image is decoded once and kept as uint8 tensors at a
few scales (downscaling hides the JPEG history of the training photos); a batch is then only
slicing, flipping and one conversion to float.
"""
from __future__ import annotations

import hashlib
import os
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import AecError
from ..imageio import list_images

VAL_COUNT = 24           # validation images of a large folder
VAL_SHARE = 5            # a small folder holds out one image in VAL_SHARE
VAL_MAX_SIDE = 512       # validation images are center crops of at most this side
SCALES = (1.0, 0.8, 0.63, 0.5)  # training crops come from the image resized by one of these


def split(files: list[Path]) -> tuple[list[Path], list[Path]]:
    """(train, validation) file lists: validation = the first min(VAL_COUNT, len // VAL_SHARE)
    files by SHA-256 of the name."""
    ranked = sorted(files, key=lambda p: hashlib.sha256(p.name.encode()).hexdigest())
    val = set(ranked[:min(VAL_COUNT, len(files) // VAL_SHARE)])
    return [p for p in files if p not in val], sorted(val)


def _rgb(path: Path) -> Image.Image:
    with Image.open(path) as im:
        return im.convert("RGB")


def validation_image(path: Path) -> np.ndarray:
    """A validation image as uint8 (H, W, 3): large photos halved (hides their JPEG history),
    then a center crop of at most VAL_MAX_SIDE per side."""
    img = _rgb(path)
    if min(img.size) >= 2 * 384:
        img = img.resize((img.width // 2, img.height // 2), Image.LANCZOS)
    w, h = img.size
    cw, ch = min(w, VAL_MAX_SIDE), min(h, VAL_MAX_SIDE)
    x0, y0 = (w - cw) // 2, (h - ch) // 2
    return np.asarray(img.crop((x0, y0, x0 + cw, y0 + ch)))


def validation_set(data_dir) -> list[tuple[str, np.ndarray]]:
    files = list_images(data_dir)
    _, val = split(files)
    if not val:
        raise AecError(f"{data_dir}: {len(files)} images are too few to hold any out for validation "
                       f"(one in {VAL_SHARE} is, up to {VAL_COUNT}): add images")
    return [(p.name, validation_image(p)) for p in val]


class CropSampler:
    """Random training crops from uint8 images held in memory at several scales."""

    def __init__(self, files: list[Path], crop: int, progress: bool = False):
        from tqdm import tqdm

        self.crop = crop
        # Pillow decodes and resizes without the GIL: one thread per core (seconds on a 16-core host)
        with ThreadPoolExecutor(max(1, len(os.sched_getaffinity(0)))) as pool:
            scaled = list(tqdm(pool.map(self._scales, files), total=len(files), desc="decoding training images",
                               disable=not progress, unit="img"))
        self.images: list[torch.Tensor] = [t for per_file in scaled for t in per_file]
        if not self.images:
            raise AecError(f"no training image has a side of at least {crop} pixels")
        self.pixels = sum(t.shape[1] * t.shape[2] for t in self.images)

    def _scales(self, path: Path) -> list[torch.Tensor]:
        img = _rgb(path)
        out = []
        for s in SCALES:
            w, h = round(img.width * s), round(img.height * s)
            if min(w, h) < self.crop:
                continue
            im = img if s == 1.0 else img.resize((w, h), Image.LANCZOS)
            out.append(torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1))
        return out

    def batch(self, n: int, gen: random.Random, device: torch.device | str = "cpu") -> torch.Tensor:
        """(n, 3, crop, crop) float32 in [0, 1], channels_last, on `device` (crops travel as uint8)."""
        c = self.crop
        out = torch.empty((n, 3, c, c), dtype=torch.uint8)
        for i in range(n):
            img = self.images[gen.randrange(len(self.images))]
            _, h, w = img.shape
            y0, x0 = gen.randrange(h - c + 1), gen.randrange(w - c + 1)
            t = img[:, y0:y0 + c, x0:x0 + c]
            if gen.random() < 0.5:
                t = t.flip(-1)
            if gen.random() < 0.5:
                t = t.flip(-2)
            out[i] = t
        return out.to(device, non_blocking=True).float().div_(255.0).contiguous(memory_format=torch.channels_last)
