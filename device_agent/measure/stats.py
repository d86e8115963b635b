"""Summary statistics of latency samples, with distribution-free confidence intervals.

A percentile's 95% interval comes from order statistics (the binomial argument MLPerf
LoadGen's early-stopping estimate uses): no normality assumed. A percentile is left out,
with the reason, when there are too few samples to say anything about it.
"""
import math

import numpy as np

PERCENTILES = (50, 90, 95, 99)
CONFIDENCE = 0.95
# A run with a slow mode: the share of samples above SLOW_FACTOR x the median. The robust spread ignores a slow
# mode by design (up to half the samples), so a run whose p90 sits in one (threads waiting for cores) needs its
# own flag.
SLOW_FACTOR = 2.0
# MAD x 1.4826 estimates the standard deviation of normal data, so robust_cv reads like a cv, but
# a few stalls (a 100 ms preemption among 20 us inferences) cannot move it: cv is 10 there, robust_cv 0.06.
MAD_TO_SD = 1.4826


def _binom_cdf_table(n, p):
    """cdf[k] = P(Binomial(n, p) <= k) for k = 0..n, in log space to survive large n."""
    logp, logq = math.log(p), math.log1p(-p)
    logs = [math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * logp + (n - k) * logq
            for k in range(n + 1)]
    peak = max(logs)
    pmf = [math.exp(v - peak) for v in logs]
    total = sum(pmf)
    cdf, acc = [], 0.0
    for v in pmf:
        acc += v / total
        cdf.append(acc)
    return cdf


def percentile_interval(sorted_samples, q):
    """(low, high) bounds of the q-th percentile at 95% confidence, or None if n is too small."""
    n = len(sorted_samples)
    p = q / 100.0
    cdf = _binom_cdf_table(n, p)
    alpha = (1 - CONFIDENCE) / 2
    # X_(l) <= true quantile with prob P(B >= l); choose the largest l with P(B < l) <= alpha.
    lower = max((k + 1 for k in range(n) if cdf[k] <= alpha), default=0)
    upper = min((k + 1 for k in range(n) if 1 - cdf[k] <= alpha), default=None)
    if lower < 1 or upper is None:
        return None
    return float(sorted_samples[lower - 1]), float(sorted_samples[upper - 1])


def summarize(samples_ms):
    """Latency summary of raw samples (milliseconds) as a dict of the result document's fields."""
    arr = np.sort(np.asarray(samples_ms, dtype=np.float64))
    n = int(arr.size)
    mean = float(arr.mean())
    median = float(np.median(arr))
    mad = float(np.median(np.abs(arr - median)))
    out = {"n": n, "mean_ms": mean,
           "mad_ms": mad, "robust_cv": MAD_TO_SD * mad / median if median > 0 else 0.0,
           "slow_share": float(np.mean(arr > SLOW_FACTOR * median)) if median > 0 else 0.0,
           "min_ms": float(arr[0]), "max_ms": float(arr[-1])}
    if n > 1:
        std = float(arr.std(ddof=1))
        out.update(std_ms=std, cv=std / mean if mean > 0 else 0.0)
    else:   # one sample has no spread to speak of: "± 0.0000 (cv 0.00)" read as a perfectly steady device
        out.update(std_ms_absent="needs at least 2 samples, have %d" % n, cv_absent="needs at least 2 samples, have %d" % n)
    intervals, absent = {}, {}
    for q in PERCENTILES:
        key = "p%d_ms" % q
        needed = int(math.ceil(round(100.0 / (100 - q), 9)))   # 1/(1-0.9) is 10.000000000000002 in floats
        if n < needed:
            absent[key] = "needs at least %d samples, have %d" % (needed, n)
            continue
        out[key] = float(np.percentile(arr, q))
        if q != 50:
            ci = percentile_interval(arr, q)
            if ci is None:
                absent["ci95_" + key] = "too few samples for a 95%% interval (n=%d)" % n
            else:
                intervals[key] = list(ci)
    out["ci95"] = intervals
    for key, reason in absent.items():
        out[key + "_absent"] = reason
    return out
