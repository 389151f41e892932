"""Bjontegaard delta rate: the average bitrate difference at equal quality, in percent.

Log-rate is interpolated as a function of the metric with a monotone piecewise-cubic (PCHIP)
curve through each codec's points and integrated over the metric range both curves cover.
-50 % means the test codec needs half the bits of the anchor for the same quality.
"""
from __future__ import annotations

import numpy as np
from scipy.interpolate import PchipInterpolator


def _curve(rate, metric):
    r = np.asarray(rate, dtype=np.float64)
    m = np.asarray(metric, dtype=np.float64)
    ok = np.isfinite(r) & np.isfinite(m) & (r > 0)
    r, m = r[ok], m[ok]
    if len(m) == 0:
        return m, r
    order = np.argsort(m)
    m, lr = m[order], np.log(r[order])
    keep = np.concatenate([[True], np.diff(m) > 1e-9])  # strictly increasing metric
    return m[keep], lr[keep]


def bd_rate(anchor_rate, anchor_metric, test_rate, test_metric, rate_range=None) -> float:
    """BD-rate of test vs anchor in percent; NaN if the curves do not overlap (>= 2 points each).

    rate_range=(lo, hi) keeps only points with lo <= bpp <= hi on both curves.
    """
    def filt(r, m):
        r, m = np.asarray(r, float), np.asarray(m, float)
        if rate_range is not None:
            sel = (r >= rate_range[0]) & (r <= rate_range[1])
            r, m = r[sel], m[sel]
        return r, m

    ma, la = _curve(*filt(anchor_rate, anchor_metric))
    mt, lt = _curve(*filt(test_rate, test_metric))
    if len(ma) < 2 or len(mt) < 2:
        return float("nan")
    lo, hi = max(ma[0], mt[0]), min(ma[-1], mt[-1])
    if hi <= lo:
        return float("nan")
    ia = PchipInterpolator(ma, la).integrate(lo, hi)
    it = PchipInterpolator(mt, lt).integrate(lo, hi)
    return float((np.exp((it - ia) / (hi - lo)) - 1) * 100)


def psnr_at(rate, metric, at_rate) -> np.ndarray:
    """A codec's metric at the given bitrates: PCHIP through its points in log-rate (the curve's
    upper frontier: points a cheaper point matches are dropped); NaN outside its range."""
    r, m = np.asarray(rate, float), np.asarray(metric, float)
    order = np.argsort(r)
    r, m = r[order], m[order]
    keep = np.maximum.accumulate(m) <= m  # each kept point beats every cheaper one
    r, m = r[keep], m[keep]
    keep = np.concatenate([[True], np.diff(r) > 1e-12])
    r, m = r[keep], m[keep]
    at = np.log(np.asarray(at_rate, float))
    out = np.full(at.shape, np.nan)
    if len(r) < 2:
        return out
    inside = (at >= np.log(r[0])) & (at <= np.log(r[-1]))
    out[inside] = PchipInterpolator(np.log(r), m)(at[inside])
    return out
