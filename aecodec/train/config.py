"""The training recipe as one dataclass: what a run was started with is stored in its state and
restored on resume, so a run's curve is never silently trained with another recipe."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import AecError

# The long run's home: outside the repository, survives between sessions on the same machine.
RUNS_DIR = Path(os.environ.get("AECODEC_RUNS", Path.home() / ".cache" / "aecodec" / "runs"))
DATA_ENV = "AECODEC_TRAIN_DATA"  # the training folder when --data is not given
CALIBRATION_IMAGES = 12  # validation images calibrating integer networks: a new run, `export --k-images`


def parse_integer_bits(text: str) -> tuple[int, int] | None:
    """--integer-bits: "8,9" -> (8, 9); "" -> None (float entropy networks)."""
    if not text:
        return None
    try:
        w, a = (int(v) for v in text.split(","))
    except ValueError:
        raise AecError(f"--integer-bits takes WEIGHT_BITS,ACTIVATION_BITS (e.g. 8,9), not {text!r}") from None
    if not (2 <= w <= 16 and 2 <= a <= 16):
        raise AecError("--integer-bits: each bit count in 2..16")
    return w, a


@dataclass
class TrainConfig:
    data: str = ""               # the training folder (required for a new run)
    # a new run's entropy model family (codec/families/); "" = from the flags below and the source
    family: str = ""
    means: bool = True           # mean-scale hyperprior (integer means); see docs/training.md
    context: bool = False        # checkerboard context on top of the mean-scale hyperprior
    # comma-separated parameter-name prefixes: train only these (e.g. "context." to fit a new
    # context to trained transforms: no gradient flows through g_a/g_s, ~3x the steps); "" = all
    train_only: str = ""
    # new runs: the source's transforms widened function-preservingly (train/grow.py), e.g.
    # "g_s=192" gives g_s's hidden layers 192 channels; "" = as the source
    widen: str = ""
    # the entropy networks trained for the integer arithmetic they are coded with (codec/integer_torch.py),
    # "WEIGHT_BITS,ACTIVATION_BITS", e.g. "8,9" (float32-exact: twice as fast to code); "" = float networks
    integer_bits: str = ""
    batch: int = 8
    crop: int = 128
    lr: float = 2e-4            # constant: an open-ended run; EMA weights are what gets exported
    ema_decay: float = 0.999
    aux_lr: float = 1e-3         # the entropy bottleneck's quantiles
    clip: float = 1.0            # gradient-norm clip
    k_min: int = 32              # smallest k drawn in training
    k_full_fraction: float = 0.5  # fraction of steps with k drawn uniformly in [k_min, M]; else M // 2
    # the convolutions between g_a/g_s's GDNs under bfloat16 autocast on the CPU (g_a's first and last
    # layers, g_s's last layer and every GDN stay float32, whose bf16 rounding biased the gradient): ~1.4x the steps,
    # gradient error and bias within the minibatch noise on the shipped default (docs/training.md)
    bf16: bool = True
    # torch.compile of g_a and g_s on the CPU (inductor fuses the GDNs' element-wise passes around
    # oneDNN's convolutions): ~1.3x the steps, the same gradient; ~30 s of compilation per start
    compile: bool = True
    threads: int = 0             # torch threads; 0 = the machine's cores
    seed: int = 0

    @staticmethod
    def target_family(overrides: dict, source: str | None) -> str | None:
        """The family a new run trains, from its flags and its source's family (None: the
        source's own). --family names it; --context asks for the checkerboard; --means (the
        default) grows a scale-only source a mean head; --no-means and --no-context refuse
        sources that have them."""
        if overrides.get("family"):
            return overrides["family"]
        context, means = overrides.get("context"), overrides.get("means", True)
        if context:
            return "checkerboard"
        if context is False and source == "checkerboard":
            raise AecError("a model with a context cannot start a run without one")
        if means is False and source not in (None, "hyperprior"):
            raise AecError(f"a {source} model cannot start a scale-only run")
        if source is None:
            return "mean-scale" if means else "hyperprior"
        return "mean-scale" if means and source == "hyperprior" else None

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
