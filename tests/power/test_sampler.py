"""Sampling and integration: time-weighted energy (never an average of averages), counters, gaps,
a sensor that disappears mid-run, and the background thread itself."""
import time

import pytest

from device_agent.power.base import Sample, SensorError
from device_agent.power.sampler import Sampler
from device_agent.power.summary import power_section, window_figures


def _watts(points):
    return [Sample(t, w, {"rail": w}) for t, w in points]


DESCRIPTION = {"reader": "fake", "sensor": "fake", "kind": "watts", "rails": ["rail"], "total": "rail",
               "sample_rate_hz": 10.0, "notes": []}


def test_energy_is_integrated_over_time_not_averaged_over_samples():
    # Four quick 10 W samples, then one 1 W sample 1.8 s later: the samples average 7.75 W,
    # but the device drew 10 W for 0.2 s and about 5.5 W for 1.8 s.
    f = window_figures("watts", _watts([(0.0, 10), (0.1, 10), (0.2, 10), (2.0, 1)]), [], 0.0, 2.0, period=1.0)
    assert f["energy_j"] == pytest.approx(10 * 0.2 + 5.5 * 1.8)
    assert f["mean_w"] == pytest.approx(11.9 / 2.0) and f["peak_w"] == 10 and f["coverage"] == pytest.approx(1.0)


def test_counter_energy_is_the_difference_and_peak_the_highest_interval():
    samples = [Sample(t, e, {"pkg": e}) for t, e in [(0.0, 0.0), (1.0, 1.0), (2.0, 3.0), (3.0, 6.0)]]
    f = window_figures("energy", samples, [], 0.0, 3.0, period=1.0)
    assert f["energy_j"] == 6.0 and f["mean_w"] == 2.0 and f["peak_w"] == 3.0 and f["rails_mean_w"] == {"pkg": 2.0}


def test_a_sensor_that_disappears_leaves_energy_absent_and_the_mean_marked_partial():
    good = _watts([(i * 0.1, 5.0) for i in range(21)])            # 0 .. 2 s
    errors = [(2.0 + i * 0.1, "in1_input: No such file or directory") for i in range(1, 31)]  # .. 5 s
    loop = window_figures("watts", good, errors, 0.0, 5.0, period=0.1)
    doc, warnings = power_section(DESCRIPTION, None, loop, inferences=1000, loop_seconds=5.0)
    assert doc["available"] is True and doc["mean_w"] == pytest.approx(5.0)
    assert doc["mean_w_scope"] == "partial: readings cover 2.00 of 5.00 s"
    assert "energy_mj_per_inference" not in doc and "missing for part of the loop" in doc["energy_mj_per_inference_absent"]
    assert doc["samples_failed"] == 30 and "No such file" in doc["first_error"]
    assert any("30 of 51 sensor reads failed" in w for w in warnings) and any("partial" in w for w in warnings)


def test_one_missed_sample_is_bridged_but_reported():
    points = [(i * 0.1, 4.0) for i in range(11) if i != 5]
    loop = window_figures("watts", _watts(points), [(0.5, "timeout")], 0.0, 1.0, period=0.1)
    doc, warnings = power_section(DESCRIPTION, None, loop, inferences=100, loop_seconds=1.0)
    assert doc["energy_mj_per_inference"] == pytest.approx(4.0 * 1.0 / 100 * 1e3)
    assert doc["samples_failed"] == 1 and len(warnings) == 1


def test_a_meter_slower_than_the_rate_asked_is_integrated_at_its_own_pace():
    """Asked for 1 kHz, a meter answering every 5 ms had each step read as a dropout: energy absent, "readings
    cover 0.07 of 0.60 s" (a user walkthrough). A real dropout, far longer than the meter's pace, stays one."""
    steady = window_figures("watts", _watts([(i * 0.005, 3.0) for i in range(121)]), [], 0.0, 0.6, period=0.001)
    assert steady["coverage"] == pytest.approx(1.0) and steady["mean_w"] == pytest.approx(3.0)
    gap = [(i * 0.005, 3.0) for i in range(61)] + [(0.6 + i * 0.005, 3.0) for i in range(61)]   # 0.3 s silent
    broken = window_figures("watts", _watts(gap), [], 0.0, 0.9, period=0.001)
    assert broken["coverage"] == pytest.approx(0.6 / 0.9, rel=0.02)
    # failures that each take a 2 s timeout are no pace: one good reading, two timeouts, and so on (a review)
    good = _watts([(i * 4.1, 3.0) for i in range(11)])
    errors = [(i * 4.1 + d, "did not answer within 2.0 s") for i in range(10) for d in (2.05, 4.05)]
    lost = window_figures("watts", good, errors, 0.0, 41.0, period=0.1)
    assert "absent" in lost and "no two consecutive readings close enough" in lost["absent"], lost


def test_time_a_reading_takes_at_the_window_edges_is_not_a_gap():
    # A 20 ms loop whose readings each take 0.5 ms: the window is 21 ms, the readings span 20 ms.
    loop = window_figures("watts", _watts([(0.0005, 3.0), (0.0205, 3.0)]), [], 0.0, 0.021, period=0.05)
    assert loop["coverage"] == 1.0
    doc, _ = power_section(DESCRIPTION, None, loop, inferences=500, loop_seconds=0.02)
    assert doc["energy_mj_per_inference"] == pytest.approx(3.0 * 0.02 / 500 * 1e3)


def test_too_few_readings_make_the_section_unavailable_with_the_reason():
    loop = window_figures("watts", _watts([(0.0, 3.0)]), [(0.05, "gone")], 0.0, 0.1, period=0.1)
    doc, _ = power_section(DESCRIPTION, None, loop, inferences=10, loop_seconds=0.1)
    assert doc["available"] is False and "1 usable reading(s)" in doc["reason"] and "gone" in doc["reason"]
    assert "mean_w" not in doc


def test_energy_per_inference_and_above_idle():
    idle = window_figures("watts", _watts([(0.0, 5.0), (1.0, 5.0)]), [], 0.0, 1.0, period=1.0)
    loop = window_figures("watts", _watts([(0.0, 8.0), (1.0, 8.0), (2.0, 8.0)]), [], 0.0, 2.0, period=1.0)
    doc, warnings = power_section(DESCRIPTION, idle, loop, inferences=1000, loop_seconds=2.0)
    assert doc["idle_w"] == 5.0 and doc["mean_w"] == 8.0
    assert len(warnings) == 1 and warnings[0].startswith("power: only 3 readings in the 2.00 s loop at 10 Hz")
    assert doc["energy_mj_per_inference"] == pytest.approx(16.0) and doc["dynamic_energy_mj_per_inference"] == pytest.approx(6.0)
    doc, _ = power_section(DESCRIPTION, None, loop, inferences=1000, loop_seconds=2.0)
    assert doc["dynamic_energy_mj_per_inference_absent"] == "needs idle_w, which is absent: idle baseline skipped (--idle-seconds 0)"


def test_sampler_thread_reads_at_its_rate_from_window_start_to_end():
    calls = []

    def read():
        calls.append(time.monotonic())
        if len(calls) == 3:
            raise SensorError("transient")
        return Sample(calls[-1], 1.0, {})

    with Sampler([("power", read, 0.02)]) as s:
        time.sleep(0.2)
    t0, t1 = s.window()
    # the count the window actually held (a sleep may overshoot on a busy host), one slot missed per late wake-up
    due = 2 + int((t1 - t0) / 0.02)
    assert due - 3 <= len(calls) <= due + 1, (len(calls), t1 - t0)
    assert t0 <= calls[0] < t0 + 0.05 and t1 - 0.05 < calls[-1] <= t1
    assert len(s.values["power"]) == len(calls) - 1 and s.errors["power"][0][1] == "transient"


def test_a_bug_in_a_reader_is_raised_not_swallowed():
    def broken():
        raise KeyError("bug")
    with pytest.raises(KeyError):
        with Sampler([("power", lambda: Sample(0, 0, {}), 0.01), ("cpufreq", _after(2, broken), 0.01)]):
            time.sleep(0.1)


def _after(n, fn):
    count = [0]

    def call():
        count[0] += 1
        return fn() if count[0] > n else {}
    return call


def test_an_energy_counter_that_never_advances_is_no_reading_of_zero_watts():
    """A frozen RAPL counter (a hypervisor's, a locked-down one) gave "0.000 W mean", 0 mJ per inference, and
    passed power and energy budgets (a user walkthrough): no running CPU draws nothing."""
    frozen = [Sample(t, 5.0, {"pkg": 5.0}) for t in (0.0, 0.1, 0.2, 1.5)]
    f = window_figures("energy", frozen, [], 0.0, 1.5, period=0.1)
    assert "mean_w" not in f and f["absent"] == ("the energy counter did not advance over 1.5 s (4 readings): frozen "
                                                 "(a hypervisor's, or a locked-down RAPL)")
    short = window_figures("energy", frozen[:2], [], 0.0, 0.1, period=0.1)   # may only update coarsely: said so
    assert short["absent"].endswith("a window shorter than the counter's updates (a longer --min-seconds measures it)")
