"""The generic hwmon reader: power*_input, else curr*_input x in*_input; a rail without its pair."""
import pytest

from device_agent.power.hwmon import HwmonReader
from powertrees import config, tree


def test_power_channels_and_current_voltage_pairs(tmp_path):
    reader, reason = HwmonReader.probe(config(tree("hwmon-generic", tmp_path)))
    assert reason is None
    s = reader.read()
    assert s.rails == pytest.approx({"ina219/power1": 2.5, "board_mon/VIN": 2.4})  # µW; mA x mV
    assert s.value == pytest.approx(4.9)
    notes = " ".join(reader.notes())
    assert "curr2_input has no in2_input" in notes and "counted twice" in notes


def test_no_hwmon_power(tmp_path):
    reader, reason = HwmonReader.probe(config(tree("rapl-x86", tmp_path)))
    assert reader is None and "no hwmon power" in reason
