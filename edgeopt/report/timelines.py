"""Power and thermal timelines of a result (the agent's power.timeline and thermal.timeline, see
device_agent/measure/timeline.py), checked field by field and summarised for the report.

A malformed timeline is refused in one line naming the file and the field, like every field rows.py reads; a
result without one (an agent from before timelines, or nothing readable) gives the reason instead. Each series
gets min/mean/max and its change from the first to the last quarter of the loop (by time): a rise in
temperature or a fall in frequency over the run is how heat and throttling show. Throttled spans are marked by
the agent's own rules: a zone at or above one of its passive/hot/critical trip points, a cpufreq policy below
FELL_BELOW of its peak after reaching NEAR_MAX of its hardware maximum.
"""
from __future__ import annotations

import math

from device_agent.measure.thermal import FELL_BELOW, NEAR_MAX

from ..budgets import number_in, shown
from ..errors import BadInput

# What a result from an agent that kept no timelines holds instead (said in the report).
NOT_KEPT = {"power": "the result keeps idle, mean and peak power and energy per inference, not the power samples "
                     "(written by an agent that kept no timeline)",
            "thermal": "the result keeps each zone's temperature at the start and end of the timed loop and each "
                       "cpufreq policy's min/mean/max during it (written by an agent that kept no timeline)"}
WATTS, CELSIUS, MHZ = (-math.inf, math.inf), (-273.15, 1000.0), (0.0, math.inf)


def _refuse(doc: dict, name: str, must: str, value):
    raise BadInput(f"{doc.get('_path', 'result')}: {name} {must}, got {shown(value)}")


def values(doc: dict, name: str, raw, n: int, low: float, high: float) -> list:
    """A list of n numbers in [low, high] or nulls (not read in that bin), as floats and None."""
    if not isinstance(raw, list) or len(raw) != n:
        _refuse(doc, name, f"must be a list of {n} numbers (one per t_s)", raw)
    out = [None if v is None else number_in(v, low, high) for v in raw]
    bad = next((i for i, (v, o) in enumerate(zip(raw, out)) if v is not None and o is None), None)
    if bad is not None:
        _refuse(doc, f"{name}[{bad}]", f"must be a finite number in [{low:g}, {high:g}] or null", raw[bad])
    return out


def times(doc: dict, name: str, raw) -> list:
    """t_s: a non-empty list of seconds >= 0, in order."""
    if not isinstance(raw, list) or not raw:
        _refuse(doc, name, "must be a non-empty list of seconds", raw)
    t = values(doc, name, raw, len(raw), 0.0, math.inf)
    if None in t or any(b < a for a, b in zip(t, t[1:])):
        _refuse(doc, name, "must hold seconds >= 0 in order", raw)
    return t


def named(doc: dict, name: str, raw, n: int, bounds: tuple) -> dict:
    """{series name: values} of one group (rails_w, zones_c, cpufreq_mhz); absent is empty."""
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(isinstance(k, str) for k in raw):
        _refuse(doc, name, "must be an object of lists", raw)
    return {k: values(doc, f"{name}[{k!r}]", v, n, *bounds) for k, v in raw.items()}


def _number(doc: dict, name: str, raw, low=0.0, high=math.inf):
    if raw is None:
        return None
    number = number_in(raw, low, high)
    if number is None:
        _refuse(doc, name, f"must be a finite number in [{low:g}, {high:g}]", raw)
    return number


def summary(t: list, series: list) -> dict | None:
    """min, mean, max, and the mean of the last quarter of the loop's time minus the first quarter's."""
    pairs = [(a, v) for a, v in zip(t, series) if v is not None]
    if not pairs:
        return None
    read = [v for _, v in pairs]
    span = pairs[-1][0] - pairs[0][0]
    first = [v for a, v in pairs if a <= pairs[0][0] + span / 4]
    last = [v for a, v in pairs if a >= pairs[-1][0] - span / 4]
    out = {"min": min(read), "mean": sum(read) / len(read), "max": max(read),
           "first_quarter": sum(first) / len(first), "last_quarter": sum(last) / len(last)}
    return dict(out, change=out["last_quarter"] - out["first_quarter"])


def spans(t: list, flags: list) -> list:
    """[start, end] seconds of each run of consecutive flagged points."""
    out, start, prev = [], None, None
    for a, flag in zip(t, flags):
        if flag and start is None:
            start = a
        if not flag and start is not None:
            out.append([start, prev])
            start = None
        prev = a
    return out + ([[start, prev]] if start is not None else [])


def _frame(doc: dict, where: str, line: dict, end_s) -> dict:
    t = times(doc, f"{where}.t_s", line.get("t_s"))
    period = max(_number(doc, f"{where}.period_s", line.get("period_s")) or 0.0,
                 _number(doc, f"{where}.bin_s", line.get("bin_s")) or 0.0)
    return {"t": t, "end_s": max(end_s or 0.0, t[-1]), "gap_s": 2.5 * period if period > 0 else None,
            "downsampling": line.get("downsampling") if isinstance(line.get("downsampling"), str) else None}


def _series(name: str, t: list, v: list, width: float = 1.5) -> dict:
    return {"name": name, "values": v, "summary": summary(t, v), "width": width}


def _read(named_values: dict) -> dict:
    return {k: v for k, v in named_values.items() if any(x is not None for x in v)}


def power(doc: dict, p: dict) -> dict:
    """{"timeline": …} or {"timeline_absent": reason} for an available power section."""
    line = p.get("timeline")
    if line is None:
        return {"timeline_absent": p.get("timeline_absent") if isinstance(p.get("timeline_absent"), str)
                else NOT_KEPT["power"]}
    if not isinstance(line, dict):
        _refuse(doc, "power.timeline", "must be an object", line)
    frame = _frame(doc, "power.timeline", line, _number(doc, "power.window_s", p.get("window_s")))
    n = len(frame["t"])
    total = values(doc, "power.timeline.total_w", line.get("total_w"), n, *WATTS)
    rails = named(doc, "power.timeline.rails_w", line.get("rails_w"), n, WATTS)
    label = f"total ({p['total']})" if isinstance(p.get("total"), str) else "total"
    # a rail that is the total (VDD_IN on a Jetson) would hide the total's line under its own
    series = [_series(label, frame["t"], total, 2.0)] + [_series(k, frame["t"], v, 1.0) for k, v in rails.items()
                                                        if v != total]
    series = [s for s in series if s["summary"]]   # a series of nulls only has nothing to draw
    if not series:
        return {"timeline_absent": "the timeline holds no reading"}
    return {"timeline": dict(frame, series=series, unit="W", spans=[])}


def _trips(doc: dict, t: dict) -> dict:
    raw = t.get("trip_points_c") or {}
    if not isinstance(raw, dict):
        _refuse(doc, "thermal.trip_points_c", "must be an object of lists", raw)
    out = {}
    for zone, points in raw.items():
        if not isinstance(points, list) or not all(isinstance(p, dict) for p in points):
            _refuse(doc, f"thermal.trip_points_c[{zone!r}]", "must be a list of {type, c}", points)
        out[zone] = [(str(p.get("type")), _number(doc, f"thermal.trip_points_c[{zone!r}].c", p.get("c"), *CELSIUS))
                     for p in points]
    return out


def _hot(frame: dict, zones: dict, trips: dict) -> tuple:
    """(temperature chart, spans where a zone stood at or above its lowest trip point)."""
    t, series, flags = frame["t"], [], [False] * len(frame["t"])
    for zone, v in zones.items():
        limit = min((c for _, c in trips.get(zone, []) if c is not None), default=None)
        s = _series(zone, t, v)
        if limit is not None:
            s["trip_c"] = limit
            flags = [f or (x is not None and x >= limit) for f, x in zip(flags, v)]
        series.append(s)
    return dict(frame, series=series, unit="°C", spans=spans(t, flags))


def _slow(frame: dict, freq: dict, hw_max: dict) -> dict:
    """The frequency chart, with spans where a policy that reached NEAR_MAX of its maximum fell below FELL_BELOW of
    its peak."""
    t, series, flags = frame["t"], [], [False] * len(frame["t"])
    for policy, v in freq.items():
        s = _series(policy, t, v)
        peak, hw = (s["summary"] or {}).get("max"), hw_max.get(policy)
        if peak is not None and hw and peak >= NEAR_MAX * hw:
            flags = [f or (x is not None and x < FELL_BELOW * peak) for f, x in zip(flags, v)]
        series.append(s)
    return dict(frame, series=series, unit="MHz", spans=spans(t, flags))


def thermal(doc: dict, t: dict, hw_max: dict) -> dict:
    """{"temperature": chart or "temperature_absent": reason, the same for "frequency"} of an available section."""
    line = t.get("timeline")
    if line is None:
        why = t.get("timeline_absent") if isinstance(t.get("timeline_absent"), str) else NOT_KEPT["thermal"]
        return {"temperature_absent": why, "frequency_absent": why}
    if not isinstance(line, dict):
        _refuse(doc, "thermal.timeline", "must be an object", line)
    frame = _frame(doc, "thermal.timeline", line, None)
    n = len(frame["t"])
    zones = _read(named(doc, "thermal.timeline.zones_c", line.get("zones_c"), n, CELSIUS))
    freq = _read(named(doc, "thermal.timeline.cpufreq_mhz", line.get("cpufreq_mhz"), n, MHZ))
    out = {}
    if zones:
        out["temperature"] = _hot(frame, zones, _trips(doc, t))
    else:
        out["temperature_absent"] = "no thermal zone was readable during the timed loop"
    if freq:
        out["frequency"] = _slow(frame, freq, hw_max)
    else:
        out["frequency_absent"] = "no cpufreq policy was readable during the timed loop"
    return out
