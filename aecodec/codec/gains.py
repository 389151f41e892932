"""Gain units (Cui et al. 2021): quality q scales y by a learned per-channel gain vector before
rounding (larger gain, finer step, more bits) and by an inverse gain before g_s. A quality between
two levels interpolates both vectors geometrically, i.e. the quantization step varies log-linearly
from one level to the next. Written once for numpy arrays and torch tensors alike."""
from __future__ import annotations

import math


def between_levels(table, quality: float, log, exp):
    """table: (Q, M) absolute gains (numpy or torch); quality strictly between two levels ->
    (M,) the interpolated gains, computed with the array library's `log` and `exp`."""
    lo = int(math.floor(quality))
    t = quality - lo
    v = log(table[lo - 1:lo + 1])
    return exp((1 - t) * v[0] + t * v[1])


def is_level(quality) -> bool:
    return not isinstance(quality, float) or quality.is_integer()
