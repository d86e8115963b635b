"""Format-neutral rows and the SVG they become, over generated latency samples: any sample set (one run, all
equal, a tail decades long) gives monotone ECDF points, bins that cover the run, and charts with finite
coordinates."""
import copy
import re

import pytest
from hypothesis import example, given, settings, strategies as st

from edgeopt.errors import BadInput
from edgeopt.report import html, rows
from edgeopt.report.svg import log_ticks, nice_ticks

FAST = settings(max_examples=150, deadline=None)
samples_ms = st.lists(st.floats(1e-4, 1e4, allow_nan=False), min_size=1, max_size=400)


def doc_with(base: dict, values: list) -> dict:
    doc = copy.deepcopy(base)
    doc["latency"]["samples_ms"] = values
    return doc


@FAST
@given(values=samples_ms)
def test_ecdf_and_timeline_describe_the_samples(int8_result, values):
    row = rows.latency_row(doc_with(int8_result, values))
    xs, ys = zip(*row["ecdf"])
    assert list(xs) == sorted(xs) and list(ys) == sorted(ys) and ys[-1] == 1.0 and 0 < ys[0]
    assert xs[0] == min(values) and xs[-1] == max(values) and len(xs) <= rows.ECDF_POINTS
    bins = row["timeline"]["bins"]
    assert bins[0]["start"] == 0 and bins[-1]["end"] == len(values)
    assert all(a["end"] == b["start"] for a, b in zip(bins, bins[1:]))
    assert all(b["p10"] <= b["median"] <= b["p90"] for b in bins)


@FAST
@given(values=samples_ms)
def test_drift_is_a_figure_of_enough_runs_only(int8_result, values):
    """One run read "latency drift +0.0 %", three "-45.5 %": under MIN_DRIFT_RUNS drift is absent with why."""
    t = rows.latency_row(doc_with(int8_result, values))["timeline"]
    if len(values) < rows.MIN_DRIFT_RUNS:
        assert t["drift_pct"] is None and f"{len(values)} run" in t["drift_absent"]
    else:
        assert "drift_absent" not in t and t["drift_pct"] is not None


@FAST
@given(values=samples_ms)
def test_charts_have_finite_coordinates(int8_result, values):
    doc = doc_with(int8_result, values)
    report = rows.build([doc], {"results": [{"status": "ok", "budgets": []}], "exit_code": 0}, None, "none")
    page = html.render(report)
    numbers = re.findall(r'(?:points|x|y|x1|x2|y1|y2|width|height|cx|cy)="([^"]*)"', page)
    assert numbers and not any(re.search(r"nan|inf", n, re.I) for n in numbers)


@FAST
@given(lo=st.floats(1e-6, 1e6), span=st.floats(1.001, 1e6))
def test_ticks_lie_in_the_range_in_order(lo, span):
    hi = lo * span
    for ticks in (nice_ticks(lo, hi), log_ticks(lo, hi)):
        assert ticks == sorted(ticks) and all(lo * (1 - 1e-9) <= t <= hi * (1 + 1e-9) for t in ticks)
    assert 2 <= len(nice_ticks(lo, hi)) <= 12


@pytest.mark.parametrize("lo, hi", [(0.0, 5e-324), (0.0, 1e-320), (1.0, 1.0 + 2.2e-16)])
def test_ticks_of_a_span_near_the_float_limits_are_finite(lo, hi):
    """A span whose fifth underflows to 0 (hypothesis drew a timeline ending at 5e-324 s) gets one tick."""
    ticks = nice_ticks(lo, hi)
    assert ticks and all(lo <= t <= hi for t in ticks)


@pytest.mark.parametrize("bad", [float("nan"), -1.0, True, "1.0", None])
def test_malformed_samples_are_refused_naming_the_field(int8_result, bad):
    values = list(int8_result["latency"]["samples_ms"][:10])
    values[4] = bad
    with pytest.raises(BadInput, match=r"latency\.samples_ms must hold finite numbers >= 0"):
        rows.latency_row(doc_with(int8_result, values))


readings = st.lists(st.tuples(st.floats(0, 5, allow_nan=False), st.one_of(st.none(), st.floats(-5, 150, allow_nan=False)),
                              st.one_of(st.none(), st.floats(0, 5000, allow_nan=False))), min_size=1, max_size=60)


def doc_with_timelines(base: dict, points: list) -> dict:
    """base with power and thermal timelines of the generated (gap, °C or null, MHz or null) readings."""
    doc = copy.deepcopy(base)
    t, now = [], 0.0
    for gap, _, _ in points:
        now += gap
        t.append(now)
    temps, freqs = [c for _, c, _ in points], [f for _, _, f in points]
    doc["power"] = {"available": True, "reader": "fake", "total": "rail", "window_s": now,
                    "timeline": {"t_s": t, "total_w": [abs(c) if c is not None else None for c in temps],
                                 "rails_w": {"rail": freqs}, "period_s": 0.05, "bin_s": None}}
    doc["thermal"] = {"start_c": {}, "end_c": {}, "trip_points_c": {"z": [{"type": "passive", "c": 80.0}]},
                      "cpufreq": {"p0": {"hw_max_mhz": 4000.0}},
                      "timeline": {"t_s": t, "zones_c": {"z": temps}, "cpufreq_mhz": {"p0": freqs}, "period_s": 0.25}}
    return doc


@FAST
@given(points=readings)
@example(points=[(5e-324, 1.0, 1.0)])   # a run 5e-324 s long: its tick step underflowed to 0 (found by CI)
@example(points=[(5e-324, None, None), (5e-324, None, None), (5e-324, None, 0.0)])   # its magnitude did
def test_any_timeline_draws_with_finite_coordinates(int8_result, points):
    doc = doc_with_timelines(int8_result, points)
    report = rows.build([doc], {"results": [{"status": "ok", "budgets": []}], "exit_code": 0}, None, "none")
    thermal = report["thermal"][0]
    for key in ("temperature", "frequency"):
        line = thermal.get(key)
        if line is not None:
            assert all(a <= b for a, b in zip(line["t"], line["t"][1:]))
            assert all(line["t"][0] <= a <= b <= line["t"][-1] for a, b in line["spans"])
    page = html.render(report)
    numbers = re.findall(r'(?:points|x|y|x1|x2|y1|y2|width|height|cx|cy)="([^"]*)"', page)
    assert numbers and not any(re.search(r"nan|inf", n, re.I) for n in numbers)


@pytest.mark.parametrize("path, bad, field", [
    (("power", "timeline", "t_s"), [0.0, -1.0, 2.0], r"power\.timeline\.t_s\[1\] must be a finite number"),
    (("power", "timeline", "t_s"), [0.0, 2.0, 1.0], r"power\.timeline\.t_s must hold seconds >= 0 in order"),
    (("power", "timeline", "total_w"), [1.0, 2.0], r"power\.timeline\.total_w must be a list of 3 numbers"),
    (("power", "timeline"), [1, 2], r"power\.timeline must be an object"),
    (("thermal", "timeline", "zones_c"), {"z": [1.0, True, 2.0]}, r"thermal\.timeline\.zones_c\['z'\]\[1\] must be"),
    (("thermal", "timeline", "cpufreq_mhz"), [1.0], r"thermal\.timeline\.cpufreq_mhz must be an object of lists"),
    (("thermal", "trip_points_c", "z"), [{"type": "passive", "c": "hot"}], r"thermal\.trip_points_c\['z'\]\.c must"),
])
def test_malformed_timelines_are_refused_naming_the_field(int8_result, path, bad, field):
    doc = doc_with_timelines(int8_result, [(0.1, 50.0, 1000.0)] * 3)
    node = doc
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = bad
    with pytest.raises(BadInput, match=field):
        rows.build([doc], {"results": [{"status": "ok", "budgets": []}], "exit_code": 0}, None, "none")


def test_the_bench_table_says_what_accuracy_was_measured_and_what_was_not(int8_result):
    """Eval data without labels still gives the outputs' error against the source: the table says both."""
    from edgeopt.report.tables import bench_rows

    labelled = dict(bench_rows(int8_result))["accuracy"]
    assert labelled.startswith("top-1 ") and "drop" in labelled
    unlabelled = copy.deepcopy(int8_result)
    unlabelled["accuracy"] = {"n": 16, "max_abs_error": 0.0442, "top1_absent": "the eval data has no labels",
                              "drop_absent": "the eval data has no labels"}
    assert dict(bench_rows(unlabelled))["accuracy"] == (
        "top-1 absent: the eval data has no labels; max abs error 0.0442 vs the source's outputs on 16 samples")
    # a pruned bundle's reference outputs are the pruned model's: "0 vs the source's outputs" beside a drop of 0.9
    unlabelled["bundle"] = dict(unlabelled["bundle"], transforms=["prune", "distill"])
    assert dict(bench_rows(unlabelled))["accuracy"].endswith(
        "max abs error 0.0442 vs the outputs of the model after prune, distill on 16 samples")


def test_results_alike_are_told_apart_by_profile_then_by_their_time_in_utc():
    from edgeopt.report.rows import distinguish, label

    def doc(profile, created):
        return {"bundle": {"name": "m", "profile": {"name": profile}}, "device": {"name": "pi"}, "created": created}
    docs = [doc("generic", "2026-12-01T10:00:00+00:00"), doc("generic", "2026-12-01T15:30:00+05:00"),
            doc("intel-cpu", "2026-12-01T10:00:00+00:00")]
    distinguish(docs)
    assert [label(d)["device"] for d in docs] == ["pi (generic, 2026-12-01 10:00:00)", "pi (generic, 2026-12-01 "
                                                  "10:30:00)", "pi (intel-cpu)"]
    assert {label(d)["device_name"] for d in docs} == {"pi"} and label(docs[2])["profile_apart"] == "intel-cpu"
    runs = [doc("generic", "2026-12-01T10:00:00Z"), doc("generic", "2026-12-02T10:00:00Z")]
    distinguish(runs)
    assert [label(d)["device"] for d in runs] == ["pi (2026-12-01 10:00:00)", "pi (2026-12-02 10:00:00)"]
    assert label(runs[0])["profile_apart"] is None
    # `local` of two machines in one second: 44 labels of one text in a report (a clock walkthrough)
    machines = [dict(doc("generic", "2026-12-01T10:00:00Z"), device={"name": "local", "hostname": h})
                for h in ("laptop", "runner-2", "runner-2")]
    distinguish(machines)
    assert [label(d)["device"] for d in machines] == ["local (laptop)", "local (runner-2, 2026-12-01 10:00:00)",
                                                      "local (runner-2, 2026-12-01 10:00:00)"]
