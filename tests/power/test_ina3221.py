"""Jetson INA3221: JetPack 5 hwmon and JetPack 4 iio layouts, module input vs sum of rails, a missing
rail, and a monitor that disappears while being read."""
import shutil

import pytest

from device_agent.power import open_reader
from device_agent.power.base import SensorError
from device_agent.power.ina3221 import Ina3221Reader
from powertrees import config, tree

HWMON = ("sys", "bus", "i2c", "drivers", "ina3221", "1-0040", "hwmon", "hwmon1")


def test_jetpack5_hwmon_layout_total_is_vdd_in(tmp_path):
    reader, reason = Ina3221Reader.probe(config(tree("jetson-orin-nano-jp5", tmp_path)))
    assert reason is None and reader.layout == "hwmon (JetPack 5+)"
    s = reader.read()
    assert s.value == pytest.approx(7.5)  # VDD_IN 5000 mV x 1500 mA, not the sum of the rails (12.5)
    assert s.rails == pytest.approx({"VDD_IN": 7.5, "VDD_CPU_GPU_CV": 2.0, "VDD_SOC": 3.0})
    assert reader.total() == "VDD_IN (module input)" and reader.notes() == []


def test_jetpack4_iio_layout_total_is_pom_5v_in(tmp_path):
    reader, reason = Ina3221Reader.probe(config(tree("jetson-nano-jp4", tmp_path)))
    assert reason is None and reader.layout == "iio (JetPack 4)"
    s = reader.read()
    assert s.value == pytest.approx(3.72)
    assert s.rails == pytest.approx({"POM_5V_IN": 3.72, "POM_5V_GPU": 0.12, "POM_5V_CPU": 0.84})


def test_board_without_an_input_rail_sums_the_connected_rails_and_says_so(tmp_path):
    reader, _ = Ina3221Reader.probe(config(tree("jetson-agx-orin-jp5", tmp_path)))
    assert reader.rails() == ["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO"]  # NC channels skipped
    assert reader.read().value == pytest.approx(15.0)
    assert any("total is the sum of the rails" in n for n in reader.notes())


def test_a_missing_rail_is_left_out_with_a_note(tmp_path):
    root = tree("jetson-orin-nano-jp5", tmp_path)
    (root.joinpath(*HWMON) / "curr1_input").unlink()  # VDD_IN's current channel gone
    reader, _ = Ina3221Reader.probe(config(root))
    assert reader.rails() == ["VDD_CPU_GPU_CV", "VDD_SOC"]
    assert reader.read().value == pytest.approx(5.0)
    notes = " ".join(reader.notes())
    assert "VDD_IN has no curr1_input" in notes and "sum of the rails" in notes


def test_an_unreadable_rail_is_left_out_like_a_missing_one_and_auto_names_a_sensor_that_reads_nothing(tmp_path):
    """A sub-rail holding no number disabled the whole reader, and auto then said "no power sensor on this device"
    of a Jetson whose monitor was there (a user walkthrough)."""
    from device_agent.power import unavailable
    root = tree("jetson-orin-nano-jp5", tmp_path)
    (root.joinpath(*HWMON) / "curr2_input").write_text("xyz\n")   # VDD_CPU_GPU_CV
    reader, _ = Ina3221Reader.probe(config(root))
    assert reader.rails() == ["VDD_IN", "VDD_SOC"] and reader.read().value == pytest.approx(7.5)
    assert "rail VDD_CPU_GPU_CV unreadable (" in " ".join(reader.notes()) and "not a number ('xyz')" in \
        " ".join(reader.notes())
    for name in ("curr1_input", "curr3_input"):
        (root.joinpath(*HWMON) / name).write_text("abc\n")
    cfg = config(root)
    reader, tried = open_reader(cfg)
    assert reader is None and unavailable(cfg, tried)["reason"].startswith(
        "power sensor ina3221 found but unreadable: INA3221 rail unreadable: "), tried


def test_monitor_that_disappears_fails_the_reading_not_the_value(tmp_path):
    root = tree("jetson-orin-nano-jp5", tmp_path)
    reader, _ = Ina3221Reader.probe(config(root))
    shutil.rmtree(root.joinpath(*HWMON))
    with pytest.raises(SensorError, match="in1_input: No such file"):
        reader.read()


def test_not_a_jetson(tmp_path):
    reader, reason = Ina3221Reader.probe(config(tree("rapl-x86", tmp_path)))
    assert reader is None and "not a Jetson" in reason


def test_auto_picks_the_jetson_reader_before_the_generic_hwmon_one(tmp_path):
    reader, tried = open_reader(config(tree("jetson-orin-nano-jp5", tmp_path)))
    assert reader.name == "ina3221" and tried == {}
