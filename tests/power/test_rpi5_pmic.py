"""Raspberry Pi 5 PMIC through `vcgencmd pmic_read_adc`, run as a command the test points at a recording."""
import pytest

from device_agent.power.rpi5_pmic import Rpi5PmicReader, parse
from powertrees import FIXTURES, config, tree


def test_parse_sums_volts_times_amps_over_rails_with_both():
    rails = parse((FIXTURES / "rpi5" / "pmic_read_adc.txt").read_text())
    assert "EXT5V" not in rails and "BATT" not in rails  # voltage-only channels carry no power
    assert rails["VDD_CORE"] == pytest.approx(1.5 * 0.8) and len(rails) == 12
    assert sum(rails.values()) == pytest.approx(2.352)


def test_reader_runs_the_configured_command_and_says_what_it_misses(tmp_path):
    root = tree("rpi5", tmp_path)
    reader, reason = Rpi5PmicReader.probe(config(root, vcgencmd=str(root / "vcgencmd")))
    assert reason is None
    s = reader.read()
    assert s.value == pytest.approx(2.352) and s.rails["VDD_CORE"] == pytest.approx(1.2)
    assert "5 V loads" in reader.notes()[0] and "NVMe" in reader.notes()[0]
    assert reader.rate_hz() == 5.0


def test_no_vcgencmd_or_no_pmic(tmp_path):
    reader, reason = Rpi5PmicReader.probe(config(tmp_path, vcgencmd=str(tmp_path / "missing-vcgencmd")))
    assert reader is None and "cannot run" in reason
    root = tree("rpi5", tmp_path)
    (root / "pmic_read_adc.txt").write_text('error=1 error_msg="Command not registered"\n')  # a Pi 4 answers so
    reader, reason = Rpi5PmicReader.probe(config(root, vcgencmd=str(root / "vcgencmd")))
    assert reader is None and "no rail readings (not a Raspberry Pi 5?)" in reason


def test_a_reading_the_pattern_takes_but_no_float_is_a_sensor_error():
    """`VDD_CORE_A current(7)=1.2.3A` matches the line's pattern and is no number: the ValueError crashed the
    sampler and ended the whole measurement (a device_agent review); a sensor error leaves power absent."""
    from device_agent.power.base import SensorError
    with pytest.raises(SensorError, match="not a number"):
        parse("VDD_CORE_A current(7)=1.2.3A\nVDD_CORE_V volt(15)=0.8V\n")
