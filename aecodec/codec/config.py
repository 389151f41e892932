"""The model family's architecture settings and coding limits, torch-free (the numpy engine and
the entropy coder read them without importing torch)."""
from __future__ import annotations

from dataclasses import dataclass

# CompressAI's lambdas for its 8 MSE quality levels (bmshj2018): distortion weight per quality.
LAMBDAS = (0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932, 0.1800)
QUALITIES = len(LAMBDAS)
QUALITY_LEVELS = range(1, QUALITIES + 1)  # the integer levels; the format and API also take values between
Y_STRIDE = 16  # g_a downsamples by 16
PAD = 4 * Y_STRIDE  # and h_a by 4 more
SYMBOL_LIMIT = 1 << 14  # |latent symbol| bound; the encoder refuses inputs beyond it
# A checkerboard context's taps: the 12 offsets of a 5x5 window around a non-anchor position that
# land on anchors ((dy + dx) odd), the only neighbours it can see when it is decoded.
CONTEXT_TAPS = tuple((dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if (dy + dx) % 2)

# encoder effort -> gradient steps of latent refinement (refine.py; each: g_s forward + backward,
# ~0.6 s for a 768x512 image on 2 CPU cores); on validation crops the real cost stops improving
# at ~300 steps (docs/performance.md)
EFFORT_STEPS = {0: 0, 1: 40, 2: 100, 3: 300}
MAX_EFFORT = max(EFFORT_STEPS)


@dataclass(frozen=True)
class ModelConfig:
    N: int = 128
    M: int = 192
    qualities: int = QUALITIES
    means: bool = False  # mean-scale hyperprior: h_s predicts an integer mean per latent too
    context: bool = False  # checkerboard context (layers.CheckerboardContext); needs means

    def to_dict(self) -> dict:
        d = {"N": self.N, "M": self.M, "qualities": self.qualities}
        if self.means:  # scale-only configs keep their original form (and file digests)
            d["means"] = True
        if self.context:
            d["context"] = True
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        return cls(N=int(d["N"]), M=int(d["M"]), qualities=int(d.get("qualities", QUALITIES)),
                   means=bool(d.get("means", False)), context=bool(d.get("context", False)))
