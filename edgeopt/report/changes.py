"""Change points in a history series (p90 latency of one bundle on one device, oldest first).

Method: binary segmentation on log(p90) with a least-squares (mean-shift) cost and a BIC-style penalty.
The series is split where splitting lowers the sum of squared deviations from segment means the most, and
each part is split again while a split gains more than PENALTY_FACTOR * sigma^2 * log(n). Working in log space
makes a step mean the same relative change on a 0.1 ms model and a 100 ms one. sigma is the noise of the
series, estimated robustly from the median absolute first difference (a step moves one difference, not the
median), floored at MIN_RELATIVE_NOISE so that a near-constant series does not turn a 1 % wobble into a change.
Segments are at least MIN_SEGMENT runs long: one or two outlying runs are outliers, not a new level.
"""
from __future__ import annotations

import math

import numpy as np

PENALTY_FACTOR = 2.0
MIN_RELATIVE_NOISE = 0.02   # 2 %: below this, run-to-run differences on a shared machine are not a change
MIN_SEGMENT = 3
MAD_TO_SIGMA = 1.4826       # a normal distribution's sigma per median absolute deviation


def noise(values: np.ndarray) -> float:
    """Robust sigma of log-values: MAD of first differences / sqrt(2) (a difference has twice the variance)."""
    if values.size < 3:
        return MIN_RELATIVE_NOISE
    diffs = np.diff(values)
    sigma = MAD_TO_SIGMA * float(np.median(np.abs(diffs - np.median(diffs)))) / math.sqrt(2.0)
    return max(sigma, MIN_RELATIVE_NOISE)


def _best_split(values: np.ndarray, lo: int, hi: int):
    """(gain, index) of the best split of values[lo:hi] into [lo:k] and [k:hi], or (0, None)."""
    seg = values[lo:hi]
    n = seg.size
    if n < 2 * MIN_SEGMENT:
        return 0.0, None
    csum, csq = np.cumsum(seg), np.cumsum(seg * seg)
    total_cost = csq[-1] - csum[-1] ** 2 / n
    ks = np.arange(MIN_SEGMENT, n - MIN_SEGMENT + 1)
    left = csq[ks - 1] - csum[ks - 1] ** 2 / ks
    right = (csq[-1] - csq[ks - 1]) - (csum[-1] - csum[ks - 1]) ** 2 / (n - ks)
    gains = total_cost - (left + right)
    best = int(np.argmax(gains))
    return float(gains[best]), lo + int(ks[best])


def change_points(series) -> list:
    """Indices i (sorted) where a new level starts at series[i]. Non-positive or non-finite values are refused
    by the caller; an empty or short series has none."""
    values = np.log(np.asarray(series, dtype=np.float64))
    n = values.size
    if n < 2 * MIN_SEGMENT:
        return []
    penalty = PENALTY_FACTOR * noise(values) ** 2 * math.log(n)
    found, stack = [], [(0, n)]
    while stack:
        lo, hi = stack.pop()
        gain, k = _best_split(values, lo, hi)
        if k is not None and gain > penalty:
            found.append(k)
            stack += [(lo, k), (k, hi)]
    return sorted(found)


def segments(series, points) -> list:
    """[(start, end, median)] of each level between change points (end exclusive)."""
    bounds = [0, *points, len(series)]
    return [(a, b, float(np.median(series[a:b]))) for a, b in zip(bounds, bounds[1:])]
