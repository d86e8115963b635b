"""From timestamped samples to the result's power figures.

Energy is integrated over time, never an average of averages: from a counter (RAPL, NVML) it is
the counter's difference between the first and last reading; from watts it is the trapezoidal
integral over consecutive samples. Watts samples further apart than MAX_GAP_PERIODS sample
periods (a failed read between them) are not bridged: that stretch counts as not covered; the period is the one
asked for, or the meter's own where it answers slower. Energy
per inference is given only when the readings cover nearly the whole window (MIN_COVERAGE);
otherwise it is absent with the reason, and the mean says which part it covers.

The timeline (power.timeline) is watts over the loop: each reading as read, or from a counter the mean watts
between consecutive readings at the interval's midpoint; bounded by measure/timeline.py's rule.
"""
import bisect

from ..measure.timeline import document

MAX_GAP_PERIODS = 2.5
MIN_COVERAGE = 0.98
FEW_SAMPLES = 10  # fewer readings than this in the loop: the figures stand, with a warning
# Figures are rounded to 1 µW and 1 pJ: far below any sensor's resolution, and it keeps float noise
# (a constant 2.352 W giving -1e-17 mJ above idle) out of the result.
W_DIGITS, MJ_DIGITS = 6, 9


def _w(x):
    return round(x, W_DIGITS) + 0.0  # + 0.0 turns -0.0 into 0.0


def _watts(d):
    return {k: _w(v) for k, v in d.items()}


# an energy counter that stands still this long is frozen; over a shorter window it may only update coarsely
FROZEN_AFTER_S = 1.0


def _pairs(samples):
    return zip(samples, samples[1:])


def _from_counter(samples):
    first, last = samples[0], samples[-1]
    covered = last.t - first.t
    intervals = [(b.value - a.value) / (b.t - a.t) for a, b in _pairs(samples) if b.t > a.t]
    rails = {r: (last.rails[r] - first.rails[r]) for r in first.rails if r in last.rails}
    return last.value - first.value, covered, max(intervals) if intervals else None, rails


def _from_watts(samples, max_gap):
    energy, covered, rails = 0.0, 0.0, {r: 0.0 for r in samples[0].rails}
    for a, b in _pairs(samples):
        dt = b.t - a.t
        if dt <= 0 or dt > max_gap:
            continue
        energy += (a.value + b.value) / 2.0 * dt
        covered += dt
        for r in rails:
            if r in a.rails and r in b.rails:
                rails[r] += (a.rails[r] + b.rails[r]) / 2.0 * dt
    return energy, covered, max(s.value for s in samples), rails


def _pace(samples, errors, period):
    """The period the readings kept: the one asked for, or the meter's own where it answers slower (the median
    step between consecutive good readings with no failure between them: failures that each took a timeout would
    make the pace of a dropout). A meter that takes 5 ms a reading, asked for 1 kHz, had every step read as a
    dropout and its energy absent as "readings missing for part of the loop" (a user walkthrough)."""
    failed = sorted(t for t, _ in errors)

    def clean(a, b):   # no failure strictly between them (bisect: a minute at 1 kHz is 60,000 steps)
        i = bisect.bisect_right(failed, a.t)
        return i == len(failed) or failed[i] >= b.t

    steps = sorted(b.t - a.t for a, b in zip(samples, samples[1:]) if b.t > a.t and clean(a, b))
    return max(period, steps[len(steps) // 2]) if steps else period


def window_figures(kind, samples, errors, t_start, t_end, period):
    """Figures of one window: mean_w, peak_w, energy_j, coverage, counts; or `absent` with the reason."""
    samples = sorted(samples, key=lambda s: s.t)
    out = {"samples": len(samples), "failed": len(errors), "window_s": t_end - t_start}
    if errors:
        out["first_error"] = errors[0][1]
    if len(samples) < 2:
        out["absent"] = ("%d usable reading(s) in a %.2f s window%s" %
                         (len(samples), out["window_s"], "; first failure: " + errors[0][1] if errors else ""))
        return out
    if kind == "energy":
        energy, covered, peak, rails = _from_counter(samples)
        if energy == 0 and covered > 0:   # a running CPU draws something: a counter that stood still is no 0 W
            why = ("frozen (a hypervisor's, or a locked-down RAPL)" if covered >= FROZEN_AFTER_S else
                   "a window shorter than the counter's updates (a longer --min-seconds measures it)")
            out["absent"] = ("the energy counter did not advance over %.3g s (%d readings): %s"
                             % (covered, len(samples), why))
            return out
    else:
        energy, covered, peak, rails = _from_watts(samples, MAX_GAP_PERIODS * _pace(samples, errors, period))
    if covered <= 0:
        out["absent"] = "no two consecutive readings close enough to integrate (%d failed)" % len(errors)
        return out
    # Coverage is judged between the first and last attempted reading (failed ones count), so the
    # time a reading itself takes at the window's edges is not mistaken for a gap.
    attempts = [s.t for s in samples] + [t for t, _ in errors]
    span = max(attempts) - min(attempts)
    out.update(energy_j=energy, covered_s=covered, mean_w=energy / covered, peak_w=peak,
               rails_mean_w={r: e / covered for r, e in rails.items()}, span_s=span,
               coverage=min(1.0, covered / span) if span > 0 else 0.0)
    return out


# No device edgeopt measures draws this much (a GPU workstation stays well below it): a meter printing 1e9 gave
# 1e9 W and 6.5e7 mJ per inference, with no word (a user walkthrough). It catches a reading off by 1000x only above
# 5 W of real draw: a Pi's 3.2 W printed in mW (3200) still reads as watts.
MAX_PLAUSIBLE_W = 5000.0


def power_section(description, idle, loop, inferences, loop_seconds):
    """The result's `power` section and its warnings, from the idle and timed-loop window figures."""
    if "absent" not in loop and loop["mean_w"] < 0:   # saved as it was, every verb then refused the result
        loop = dict(loop, absent="the sensor read a negative mean power (%.3g W), which is no power drawn (a sign "
                                 "convention, or an offset at low load)" % loop["mean_w"])
    if "absent" not in loop and loop["mean_w"] > MAX_PLAUSIBLE_W:
        loop = dict(loop, absent="the sensor read a mean power of %.3g W, more than the %g W any device measured "
                                 "here draws: a meter printing mW or uW, not W?" % (loop["mean_w"], MAX_PLAUSIBLE_W))
    if "absent" in loop:
        doc = dict(description, available=False, reason="no power figures for the timed loop: " + loop["absent"])
        return doc, ["power: %s" % doc["reason"]]
    doc = dict(description, available=True, inferences=inferences, loop_seconds=loop_seconds,
               samples=loop["samples"], samples_failed=loop["failed"], window_s=loop["window_s"],
               achieved_rate_hz=(loop["samples"] - 1) / loop["window_s"] if loop["window_s"] > 0 else None,
               mean_w=_w(loop["mean_w"]), rails_mean_w=_watts(loop["rails_mean_w"]),
               energy_method="energy counter" if description["kind"] == "energy" else "trapezoidal integration of timestamped samples")
    _peak(doc, loop, description)
    _idle(doc, idle)
    warnings = _energy(doc, loop, inferences, loop_seconds)
    if not doc["rails_mean_w"]:
        del doc["rails_mean_w"]
    return doc, warnings


def _peak(doc, loop, description):
    if loop["peak_w"] is None:
        doc["peak_w_absent"] = "no interval between counter readings"
    else:
        doc["peak_w"] = _w(loop["peak_w"])
        doc["peak_scope"] = ("highest sample" if description["kind"] == "watts" else
                             "highest mean between consecutive counter readings (~%.3g s apart)"
                             % (1.0 / description["sample_rate_hz"]))


def _idle(doc, idle):
    if idle is None:
        doc["idle_w_absent"] = "idle baseline skipped (--idle-seconds 0)"
    elif "absent" in idle:
        doc["idle_w_absent"] = "idle baseline: " + idle["absent"]
    elif idle["mean_w"] < 0 or idle["mean_w"] > MAX_PLAUSIBLE_W:
        doc["idle_w_absent"] = "idle baseline: the sensor read an implausible mean power (%.3g W)" % idle["mean_w"]
    else:
        doc.update(idle_w=_w(idle["mean_w"]), idle_seconds=idle["window_s"], idle_samples=idle["samples"],
                   rails_idle_w=_watts(idle["rails_mean_w"]))


def _energy(doc, loop, inferences, loop_seconds):
    """Energy per inference (and above idle) when the readings cover the window; the warnings."""
    warnings = []
    if loop["samples"] < FEW_SAMPLES:
        warnings.append("power: only %d readings in the %.2f s loop at %.3g Hz: a coarse figure; a longer loop "
                        "(--min-seconds) gives a steadier one" % (loop["samples"], loop["window_s"], doc["sample_rate_hz"]))
    if loop["failed"]:
        doc["first_error"] = loop["first_error"]
        warnings.append("power: %d of %d sensor reads failed during the timed loop (first: %s)"
                        % (loop["failed"], loop["failed"] + loop["samples"], loop["first_error"]))
    if loop["coverage"] < MIN_COVERAGE:
        scope = "readings cover %.2f of %.2f s" % (loop["covered_s"], loop["span_s"])
        doc["mean_w_scope"] = "partial: " + scope
        doc["energy_mj_per_inference_absent"] = "sensor readings missing for part of the loop (%s)" % scope
        doc["dynamic_energy_mj_per_inference_absent"] = doc["energy_mj_per_inference_absent"]
        warnings.append("power: mean power is partial (%s); energy per inference not measured" % scope)
        return warnings
    per_inference_s = loop_seconds / inferences
    doc["energy_mj_per_inference"] = round(loop["mean_w"] * per_inference_s * 1e3, MJ_DIGITS) + 0.0
    if "idle_w" in doc:
        dynamic = (loop["mean_w"] - doc["idle_w"]) * per_inference_s * 1e3
        doc["dynamic_energy_mj_per_inference"] = round(dynamic, MJ_DIGITS) + 0.0
    else:
        doc["dynamic_energy_mj_per_inference_absent"] = "needs idle_w, which is absent: " + doc["idle_w_absent"]
    return warnings


def _counter_watts(samples, period):
    """(t, W, {rail: W}) between counter readings, at each interval's midpoint. An interval shorter than half a
    period (the closing reading just after a periodic one) is merged into the next, or left out at the end: a
    counter difference over a millisecond is mostly the counter's update granularity."""
    points, anchor = [], samples[0]
    for s in samples[1:]:
        dt = s.t - anchor.t
        if dt < period / 2.0:
            continue
        rails = {r: (s.rails[r] - anchor.rails[r]) / dt for r in anchor.rails if r in s.rails}
        points.append(((anchor.t + s.t) / 2.0, (s.value - anchor.value) / dt, rails))
        anchor = s
    return points


def power_timeline(kind, samples, t_start, period):
    """The result's power.timeline: t_s since the loop window opened, total_w, rails_w per rail; None without
    two readings. Failed readings are not points: they are counted in the section (samples_failed)."""
    samples = sorted(samples, key=lambda s: s.t)
    if len(samples) < 2:
        return None
    points = _counter_watts(samples, period) if kind == "energy" else [(s.t, s.value, s.rails) for s in samples]
    if not points:
        return None
    names = sorted(set(r for _, _, rails in points for r in rails))
    groups = {"total_w": ({"total": [w for _, w, _ in points]}, W_DIGITS),
              "rails_w": ({r: [rails.get(r) for _, _, rails in points] for r in names}, W_DIGITS)}
    doc = document([t - t_start for t, _, _ in points], groups, len(samples), period)
    doc["total_w"] = doc["total_w"]["total"]
    doc["values"] = ("mean watts between consecutive counter readings, at the interval's midpoint"
                     if kind == "energy" else "watts as read")
    if not names:
        del doc["rails_w"]
    return doc
