"""This machine's own sensors, read for real where it has them; skipped with the reason where not."""
import time

import pytest

from device_agent.measure import thermal
from device_agent.power import open_reader
from device_agent.power.base import SensorConfig
from device_agent.power.sampler import Sampler
from device_agent.power.summary import power_timeline, window_figures


@pytest.mark.hardware
def test_live_power_sensor():
    reader, tried = open_reader(SensorConfig())
    if reader is None:
        pytest.skip("no power sensor on this machine: " + "; ".join("%s: %s" % kv for kv in tried.items()))
    with Sampler([("power", reader.read, 1.0 / reader.rate_hz())]) as s:
        time.sleep(1.0)
    f = window_figures(reader.kind, s.values["power"], s.errors["power"], s.t_start, s.t_end, 1.0 / reader.rate_hz())
    reader.close()
    assert f["failed"] == 0 and f["mean_w"] > 0 and f["coverage"] > 0.98, f


@pytest.mark.hardware
def test_live_thermal_zones():
    zones = thermal.zones(SensorConfig())
    if not zones:
        pytest.skip("no readable thermal zones under /sys/class/thermal on this machine")
    assert all(-40 < t < 150 for t in zones.values()), zones


@pytest.mark.hardware
def test_live_power_and_thermal_timelines():
    """Where this machine has a power sensor (RAPL on most x86 hosts) or thermal zones, the timelines of one
    second's sampling are real readings: positive watts, plausible temperatures, times inside the window."""
    config = SensorConfig()
    reader, tried = open_reader(config)
    source = thermal.timeline_source(config)
    if reader is None and source is None:
        pytest.skip("no power sensor (%s) and no thermal zone or cpufreq policy on this machine"
                    % "; ".join("%s: %s" % kv for kv in tried.items()))
    period = 1.0 / reader.rate_hz() if reader else None
    with Sampler([("power", reader.read, period) if reader else None, source]) as s:
        time.sleep(1.0)
    if reader is not None:
        line = power_timeline(reader.kind, s.values["power"], s.t_start, period)
        reader.close()
        assert len(line["t_s"]) >= 3 and all(w > 0 for w in line["total_w"]), line
        assert 0 <= line["t_s"][0] and line["t_s"][-1] <= s.t_end - s.t_start
    if source is not None:
        doc, _ = thermal.section(config, thermal.snapshot(config), thermal.snapshot(config), s.values["thermal"],
                                 s.t_start, s.errors["thermal"])
        line = doc["timeline"]
        assert len(line["t_s"]) >= 3 and all(-40 < c < 150 for z in line["zones_c"].values() for c in z if c is not None)
