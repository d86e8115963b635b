"""This machine's own sensors, read for real where it has them; skipped with the reason where not."""
import time

import pytest

from device_agent.measure import thermal
from device_agent.power import open_reader
from device_agent.power.base import SensorConfig
from device_agent.power.sampler import Sampler
from device_agent.power.summary import window_figures


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
