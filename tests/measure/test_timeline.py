"""Bounded timelines (device_agent/measure/timeline.py) and the power timeline built from watts or counter
readings (power/summary.py): at most MAX_POINTS points, each a mean of the readings in its time bin, gaps kept."""
import pytest
from hypothesis import given, settings, strategies as st

from device_agent.measure.timeline import MAX_POINTS, document, downsample
from device_agent.power.base import Sample
from device_agent.power.summary import power_timeline

FAST = settings(max_examples=150, deadline=None)
short = st.lists(st.floats(1e-4, 2.0, allow_nan=False), min_size=1, max_size=40)
levels = st.lists(st.floats(-50, 5000, allow_nan=False), min_size=1, max_size=40)


def _times(gaps):
    out, t = [], 0.0
    for g in gaps:
        t += g
        out.append(t)
    return out


@FAST
@given(n=st.integers(1, 3000), gaps=short, values=levels, max_points=st.sampled_from([2, 7, 100, MAX_POINTS]))
def test_downsampling_is_bounded_ordered_and_keeps_the_level(n, gaps, values, max_points):
    times = _times(gaps[i % len(gaps)] for i in range(n))   # irregular spacing, cycled to any length
    v = [values[i % len(values)] for i in range(n)]
    t, out, bin_s = downsample(times, {"x": v}, max_points)
    assert len(t) == len(out["x"]) <= max_points and t == sorted(t)
    assert times[0] - 1e-9 <= t[0] and t[-1] <= times[-1] + 1e-9
    assert all(min(v) - 1e-6 <= x <= max(v) + 1e-6 for x in out["x"])   # a mean never leaves the range read
    if n <= max_points:
        assert bin_s is None and t == times and out["x"] == v              # kept as read
    else:
        assert bin_s == pytest.approx((times[-1] - times[0]) / max_points)


def test_each_point_is_the_mean_of_its_bin_and_a_gap_stays_a_gap():
    # 2000 readings at 1 ms, a 9 s silence, 1000 more: 600 bins of ~20 ms. A value proportional to its time
    # checks that a point pairs the mean time and the mean value of the same readings, wherever bins fall.
    times = [i * 0.001 for i in range(2000)] + [11.0 + i * 0.001 for i in range(1000)]
    t, out, bin_s = downsample(times, {"w": [3.0 * x for x in times], "rail": [None] * 3000})
    assert bin_s == pytest.approx(11.999 / 600) and 145 <= len(t) <= 155
    assert all(w == pytest.approx(3.0 * x) for x, w in zip(t, out["w"]))
    assert max(b - a for a, b in zip(t, t[1:])) > 8.9     # no point invented in the silence
    assert out["rail"] == [None] * len(t)                 # a series never read stays null, not zero


def test_document_names_the_rule_only_when_it_applied():
    doc = document([0.0, 0.5], {"zones_c": ({"z": [40.123456, 41.0]}, 3)}, readings=2, period_s=0.25)
    assert doc == {"t_s": [0.0, 0.5], "zones_c": {"z": [40.123, 41.0]}, "readings": 2, "period_s": 0.25,
                   "bin_s": None, "downsampling": None}
    many = document([i * 0.01 for i in range(1200)], {"w": ({"total": [1.0] * 1200}, 6)}, 1200, 0.01)
    assert len(many["t_s"]) == MAX_POINTS and "mean of each of 600 equal time bins" in many["downsampling"]


def test_counter_readings_become_watts_between_them():
    # 2 W for 1 s, then 6 W; a closing reading 1 ms after the last periodic one is merged, not a 1 ms interval
    readings = [Sample(0.0, 0.0, {"pkg": 0.0}), Sample(0.5, 1.0, {"pkg": 1.0}), Sample(1.0, 2.0, {"pkg": 2.0}),
                Sample(1.5, 5.0, {"pkg": 5.0}), Sample(1.501, 5.9, {"pkg": 5.9})]
    line = power_timeline("energy", readings, t_start=-0.1, period=0.5)
    assert line["t_s"] == [0.35, 0.85, 1.35] and line["total_w"] == [2.0, 2.0, 6.0]
    assert line["rails_w"] == {"pkg": [2.0, 2.0, 6.0]} and line["readings"] == 5
    assert "counter readings" in line["values"]


def test_watts_readings_are_kept_as_read_and_one_reading_is_no_timeline():
    readings = [Sample(10.0 + i * 0.1, 5.0 + i, {}) for i in range(4)]
    line = power_timeline("watts", readings, t_start=10.0, period=0.1)
    assert line["t_s"] == [0.0, 0.1, 0.2, 0.3] and line["total_w"] == [5.0, 6.0, 7.0, 8.0] and "rails_w" not in line
    assert power_timeline("watts", readings[:1], 10.0, 0.1) is None
