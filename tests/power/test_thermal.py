"""Thermal zones, CPU frequency and every throttling signal: what is decoded, and when a run is flagged."""
import pytest

from device_agent.measure import thermal
from powertrees import config, tree, write


def test_get_throttled_bits():
    d = thermal.decode_throttled(0x50005)
    assert d["raw"] == "0x50005"
    assert d["now"] == ["under-voltage detected", "currently throttled"]
    assert d["since_boot"] == ["under-voltage detected", "currently throttled"]
    assert thermal.decode_throttled(0x8)["now"] == ["soft temperature limit active"]
    assert thermal.decode_throttled(0x20000) == {"raw": "0x20000", "now": [], "since_boot": ["arm frequency capped"]}


def _snap(**kw):
    base = {"zones": {"thermal_zone0 (cpu-thermal)": 50.0}, "cpufreq": {}, "cooling": {}, "oc": {}, "rpi": None}
    base.update(kw)
    return base


def test_raspberry_pi_throttled_now_and_during_the_run(tmp_path):
    cfg = config(tmp_path)
    doc, warnings = thermal.section(cfg, _snap(rpi=0x0), _snap(rpi=0x50005), [])
    assert doc["throttled"] is True and doc["rpi_throttled"]["end"]["raw"] == "0x50005"
    assert warnings == ["throttled: Raspberry Pi firmware reports under-voltage detected, currently throttled at the "
                        "end of the run (get_throttled=0x50005)"]
    _, warnings = thermal.section(cfg, _snap(rpi=0x0), _snap(rpi=0x20000), [])
    assert warnings == ["throttled: Raspberry Pi firmware recorded arm frequency capped during the run "
                        "(get_throttled 0x0 -> 0x20000)"]
    doc, warnings = thermal.section(cfg, _snap(rpi=0x20000), _snap(rpi=0x20000), [])  # before the run: not ours
    assert warnings == [] and doc["throttled"] is False


def test_a_raspberry_pi_whose_throttling_status_cannot_be_read_is_not_called_unthrottled(tmp_path):
    """vcgencmd failing on a Pi (a user outside the video group: "VCHI initialization failed") or printing
    something else was recorded as throttled: false, with nothing said (a user walkthrough)."""
    root = tree("rpi5", tmp_path)
    cfg = config(root, vcgencmd=str(root / "vcgencmd"))
    assert thermal.rpi_throttled(cfg) == 0x0   # the recording reads
    write(root / "get_throttled.txt", "junk")
    unread = thermal.rpi_throttled(cfg)
    assert isinstance(unread, str) and "junk" in unread
    doc, warnings = thermal.section(cfg, _snap(rpi=unread), _snap(rpi=unread), [])
    assert doc["rpi_throttled_absent"] == unread and doc["throttled"] is False
    assert warnings == [f"the Raspberry Pi firmware's throttling status could not be read ({unread}): under-voltage "
                        "and throttling during the run are unknown"]
    (root / "proc" / "device-tree" / "model").write_text("Some other board\n")   # no Pi: nothing to say
    assert thermal.rpi_throttled(cfg) is None


def _policy(cur, cap, hw=2400.0):
    return {"policy0": {"cur_mhz": cur, "max_mhz": cap, "hw_max_mhz": hw}}


def test_cpufreq_capped_below_its_hardware_maximum():
    doc, warnings = thermal.section(config("/x"), _snap(cpufreq=_policy(1500, 1500)), _snap(cpufreq=_policy(1500, 1500)), [])
    assert doc["frequency_capped"] is True and doc["throttled"] is False
    assert warnings[0].startswith("frequency-capped: cpufreq policy0 limited to 1500 of 2400 MHz")


@pytest.mark.parametrize("series, flagged", [
    ([2400] * 6 + [1800] * 3, True),    # reached the maximum, then fell under load
    ([2400] * 9, False),
    ([1200, 1300, 1200, 1250, 900, 900], False),  # never near the maximum: an idle policy, not throttling
])
def test_cpufreq_falling_under_load(series, flagged):
    during = [{"t": i * 0.25, "zones": {}, "cpufreq": {"policy0": f}} for i, f in enumerate(series)]
    doc, warnings = thermal.section(config("/x"), _snap(cpufreq=_policy(2400, 2400)), _snap(cpufreq=_policy(2400, 2400)), during)
    assert doc["throttled"] is flagged and doc["cpufreq"]["policy0"]["during_mhz"]["samples"] == len(series)
    if flagged:
        assert warnings == ["throttled: cpufreq policy0 fell from 2400 to 1800 MHz under load (thermal or power throttling)"]


def test_jetson_over_current_events_and_cooling_devices():
    doc, warnings = thermal.section(config("/x"), _snap(oc={"oc1": 0, "oc3": 5}, cooling={"cooling_device0 (pwm-fan)": [0, 3]}),
                                    _snap(oc={"oc1": 0, "oc3": 32}, cooling={"cooling_device0 (pwm-fan)": [3, 3],
                                                                             "cooling_device1 (cpufreq-cpu0)": [2, 5]}), [])
    assert doc["jetson_oc_events"]["oc3"] == {"start": 5, "end": 32}
    assert "throttled: Jetson soctherm over-current/under-voltage throttling during the run (oc3 +27)" in warnings
    assert "throttled: thermal cooling device cooling_device1 (cpufreq-cpu0) at state 2 of 5 at the end of the run" in warnings
    assert not any("pwm-fan" in w for w in warnings)  # a spinning fan is cooling, not throttling


def test_snapshot_of_a_recorded_jetson_tree(tmp_path):
    root = tree("jetson-orin-nano-jp5", tmp_path)
    cfg = config(root, vcgencmd=str(tmp_path / "no-vcgencmd"))
    snap = thermal.snapshot(cfg)
    assert snap["zones"]["thermal_zone0 (cpu-thermal)"] == 48.5 and len(snap["zones"]) == 5
    assert snap["cpufreq"]["policy4"] == {"cur_mhz": 1510.4, "max_mhz": 1510.4, "hw_max_mhz": 1510.4}
    assert snap["oc"] == {"oc1": 0, "oc2": 0, "oc3": 0} and snap["rpi"] is None
    write(root / "sys/class/thermal/thermal_zone1/temp", "")  # a zone that stops answering is left out
    assert "thermal_zone1 (gpu-thermal)" not in thermal.zones(cfg)


def test_nothing_readable_is_said_not_zeroed(tmp_path):
    cfg = config(tmp_path, vcgencmd=str(tmp_path / "no-vcgencmd"))
    doc, warnings = thermal.section(cfg, thermal.snapshot(cfg), thermal.snapshot(cfg), [])
    assert doc == {"available": False, "reason": "no thermal zones, cpufreq or throttling status readable under %s/sys" % tmp_path}
