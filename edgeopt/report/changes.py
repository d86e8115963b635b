"""Change points in a history series (p90 latency of one bundle on one device, oldest first).

Method: optimal partitioning (Jackson et al. 2005; PELT's exact answer, without its pruning, which a series of
at most a few hundred runs does not need) on log(p90), with
an absolute-deviation cost (each segment's sum of |x - median|) and a penalty of PENALTY_FACTOR * sigma * ln(n)
per change. Exact rather than binary segmentation, because a greedy first split can miss a level that returns
(1 1 1 2 2 2 1 1 1: no single split gains anything). Why these choices:
- log space: a step is the same relative change on a 0.1 ms model and a 100 ms one, and a ms series and a
  s series give the same answer;
- median cost, not squared error: one preempted run on a shared machine (a p90 three times the others) moves
  no median, so it is an outlier, not a new level; with squared error it would be cut out as a segment;
- sigma, the run-to-run noise, is estimated robustly from the median absolute first difference (a step moves
  one difference, not the median) and floored at MIN_RELATIVE_NOISE, so a near-constant series does not turn
  a 1 % wobble into a change. PENALTY_FACTOR 3 was chosen on simulated series (tests/report/test_changes.py).
Segments are at least MIN_SEGMENT runs long: a level needs three runs to be one.
"""
from __future__ import annotations

import heapq
import math

import numpy as np

PENALTY_FACTOR = 3.0
MIN_RELATIVE_NOISE = 0.02   # 2 %: below this, run-to-run differences on a shared machine are not a change
MIN_SEGMENT = 3
MIN_RUNS_FOR_NOISE = 3     # two runs give one difference: no spread to estimate the noise from
MAD_TO_SIGMA = 1.4826       # a normal distribution's sigma per median absolute deviation


def noise(values: np.ndarray) -> float:
    """Robust sigma of log-values: MAD of first differences / sqrt(2) (a difference has twice the variance)."""
    if values.size < MIN_RUNS_FOR_NOISE:
        return MIN_RELATIVE_NOISE
    diffs = np.diff(values)
    sigma = MAD_TO_SIGMA * float(np.median(np.abs(diffs - np.median(diffs)))) / math.sqrt(2.0)
    return max(sigma, MIN_RELATIVE_NOISE)


def _costs(values: np.ndarray) -> np.ndarray:
    """cost[s, t] = sum of |x - median| over values[s:t], every segment at once: for each start a running median
    (two heaps with their sums), so n = 200 takes some 20 000 heap steps instead of 20 000 sorts."""
    n = values.size
    cost = np.zeros((n + 1, n + 1))
    for s in range(n):
        low, high, low_sum, high_sum = [], [], 0.0, 0.0     # low: a max-heap (negated) of the smaller half
        for t in range(s, n):
            x = float(values[t])
            if low and x > -low[0]:
                heapq.heappush(high, x)
                high_sum += x
            else:
                heapq.heappush(low, -x)
                low_sum += x
            if len(low) > len(high) + 1:
                moved = -heapq.heappop(low)
                low_sum -= moved
                heapq.heappush(high, moved)
                high_sum += moved
            elif len(high) > len(low):
                moved = heapq.heappop(high)
                high_sum -= moved
                heapq.heappush(low, -moved)
                low_sum += moved
            median = -low[0]
            cost[s, t + 1] = median * len(low) - low_sum + high_sum - median * len(high)
    return cost


def change_points(series) -> list:
    """Indices i (sorted) where a new level starts at series[i]. The values must be > 0 (the caller keeps only
    measured p90s); a series shorter than two segments has none. Optimal partitioning: the partition with the
    least total cost plus one penalty per segment, exactly, not greedily."""
    values = np.log(np.asarray(series, dtype=np.float64))
    n = values.size
    if n < 2 * MIN_SEGMENT:
        return []
    penalty = PENALTY_FACTOR * noise(values) * math.log(n)
    cost = _costs(values)
    best = np.full(n + 1, np.inf)    # best[t]: least cost + penalties of values[:t]
    best[0] = -penalty
    last = np.zeros(n + 1, dtype=int)    # where the last segment of that best partition starts
    for t in range(MIN_SEGMENT, n + 1):
        starts = np.arange(0, t - MIN_SEGMENT + 1)
        starts = starts[(starts == 0) | (starts >= MIN_SEGMENT)]
        totals = best[starts] + cost[starts, t] + penalty
        k = int(np.argmin(totals))
        best[t], last[t] = totals[k], starts[k]
    points, t = [], n
    while last[t] > 0:
        points.append(int(last[t]))
        t = last[t]
    return sorted(points)


def segments(series, points) -> list:
    """[(start, end, median)] of each level between change points (end exclusive)."""
    series = np.asarray(series, dtype=np.float64)
    bounds = [0, *points, len(series)]
    return [(a, b, float(np.median(series[a:b]))) for a, b in zip(bounds, bounds[1:])]
