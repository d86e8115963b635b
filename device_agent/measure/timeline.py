"""Bounded timelines for the result: what was sampled during the timed loop, as seconds since the loop's
sampling window opened (just before the first timed run) and one list of values per series.

Downsampling rule: up to MAX_POINTS readings are kept as read. Beyond that, the span from the first to the
last reading is cut into MAX_POINTS bins of equal duration, and each bin that holds readings gives one point:
the mean of its readings' times and, per series, the mean of the values read in it (null where that series
was never read in the bin). An empty bin gives no point, so a gap in the readings stays a gap. Averaging
keeps the energy-relevant level of a power series; a peak shorter than a bin is kept by the section's peak_w.
Pure Python, so the result stays small (a 30 s loop at 20 Hz is 600 points) without numpy.
"""
MAX_POINTS = 600
T_DIGITS = 4   # 0.1 ms: far finer than any sampling period here


def _mean(values):
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _bins(times, max_points):
    """Lists of indices of `times` (sorted) falling in each non-empty equal-duration bin."""
    t0, span = times[0], (times[-1] - times[0]) or 1.0
    groups = {}
    for i, t in enumerate(times):
        groups.setdefault(min(max_points - 1, int((t - t0) / span * max_points)), []).append(i)
    return [groups[k] for k in sorted(groups)], span / max_points


def downsample(times, series, max_points=MAX_POINTS):
    """(times, {name: values}, bin_s) with at most max_points points; bin_s is None when kept as read.
    times: sorted seconds; series: {name: [value or None per time]}."""
    if len(times) <= max_points:
        return list(times), {k: list(v) for k, v in series.items()}, None
    groups, bin_s = _bins(times, max_points)
    out_t = [sum(times[i] for i in g) / len(g) for g in groups]
    out = {k: [_mean([v[i] for i in g]) for g in groups] for k, v in series.items()}
    return out_t, out, bin_s


def rounded(values, digits):
    return [None if v is None else round(v, digits) + 0.0 for v in values]


def document(times, groups, readings, period_s):
    """The result's timeline object, downsampled by the rule above: t_s, then per group key a {name: values}.
    groups: {key: ({name: [value or None per time]}, digits to round to)}."""
    flat = {(key, name): values for key, (named, _) in groups.items() for name, values in named.items()}
    t, values, bin_s = downsample(times, flat)
    doc = {"t_s": rounded(t, T_DIGITS), "readings": readings, "period_s": period_s, "bin_s": bin_s,
           "downsampling": None if bin_s is None else
           "mean of each of %d equal time bins of %.4g s (empty bins left out)" % (MAX_POINTS, bin_s)}
    for key, (named, digits) in groups.items():
        doc[key] = {name: rounded(values[(key, name)], digits) for name in named}
    return doc
