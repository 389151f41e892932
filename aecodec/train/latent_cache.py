"""g_a's latents of recent training crops, for runs that train only the entropy model.

With g_a frozen (e.g. `--train-only context.`), a crop's latents never change, and computing them
is most of such a step. The loop runs a real step (crops -> g_a -> ... -> g_s, for the logged PSNR)
every SYNTHESIS_EVERY steps and keeps those steps' latents here. The steps between train on
batches drawn from the last `capacity` crops, each with a new quality, k and quantization noise.
Each crop is then used ~SYNTHESIS_EVERY times on average, whatever the capacity, and a batch mixes
crops from thousands of steps. The cache is not saved: a resumed run refills it, so such a run
does not resume bit for bit like one that trains g_a.
"""
from __future__ import annotations

import random

import torch

CACHE_BYTES = 800 << 20  # ~4,000 crops of 256x256 (M = 192) in float32
MIN_CROPS = 512          # until then every step computes its own latents


class LatentCache:
    def __init__(self, capacity_bytes: int = CACHE_BYTES, min_crops: int = MIN_CROPS):
        self.capacity_bytes, self.min_crops = capacity_bytes, min_crops
        self.store: torch.Tensor | None = None
        self.count = self.next = 0

    @property
    def capacity(self) -> int:
        return 0 if self.store is None else self.store.shape[0]

    def add(self, y: torch.Tensor) -> None:
        """Keep a batch of latents (B, M, h, w), replacing the oldest when full."""
        if self.store is None:
            per_crop = y[0].numel() * y.element_size()
            capacity = max(self.min_crops, self.capacity_bytes // per_crop)
            self.store = torch.empty((capacity, *y.shape[1:]), dtype=y.dtype, device=y.device)
        for row in y:
            self.store[self.next] = row
            self.next = (self.next + 1) % self.capacity
            self.count = min(self.count + 1, self.capacity)

    @property
    def ready(self) -> bool:
        return self.count >= self.min_crops

    def batch(self, n: int, gen: random.Random) -> torch.Tensor:
        """n latents drawn uniformly from those kept (with the run's data generator)."""
        idx = torch.tensor([gen.randrange(self.count) for _ in range(n)], device=self.store.device)
        return self.store.index_select(0, idx).contiguous(memory_format=torch.channels_last)


def step_inputs(trainer, cache: LatentCache | None, sampler, n: int, gen: random.Random, device):
    """(crops, None) or, when the cache can stand in for g_a, (None, cached latents)."""
    if cache is not None and cache.ready and not trainer.wants_pixels():
        return None, cache.batch(n, gen)
    return sampler.batch(n, gen, device), None


def keep(cache: LatentCache | None, stats: dict, cached: bool) -> None:
    """After a step on crops: keep its latents."""
    if cache is not None and not cached:
        cache.add(stats["y"])
