"""tegrastats: the rail formats of each Jetson generation on real published lines (tests/assets/jetson/README.md
names each source), the total's choice, a parser that never raises, and the reader following a real process
that replays a recorded line (the tegrastats command is configurable, as vcgencmd is)."""
import pathlib
import sys

import pytest
from hypothesis import given, settings, strategies as st

from device_agent.power import READERS, open_reader
from device_agent.power.tegrastats import TegrastatsReader, parse, total
from powertrees import config

ASSETS = pathlib.Path(__file__).resolve().parents[1] / "assets" / "jetson"


def line(name):
    return (ASSETS / name).read_text().strip()


def test_nano_pom_rails_in_milliwatts_without_a_unit():
    rails, why = parse(line("tegrastats-nano-jp4.txt"))
    assert why is None and rails == {"POM_5V_IN": 4.52, "POM_5V_GPU": 0.0, "POM_5V_CPU": 1.078}
    assert total(rails) == (4.52, "POM_5V_IN (input rail)")


def test_jetpack4_vdd_in_rails_and_ram_or_emc_fields_are_not_rails():
    rails, _ = parse(line("tegrastats-vdd-in-jp4.txt"))
    assert rails == {"VDD_IN": 14.025, "VDD_CPU": 2.209, "VDD_GPU": 6.854, "VDD_SOC": 1.371, "VDD_WIFI": 0.019,
                     "VDD_DDR": 2.702}
    assert total(rails)[0] == 14.025


def test_orin_jetpack5_mw_rails_input_is_vin_sys_5v0_and_nc_rails_are_left_out():
    rails, _ = parse(line("tegrastats-agx-orin-jp5.txt"))
    assert rails == {"VDD_GPU_SOC": 2.399, "VDD_CPU_CV": 0.4, "VIN_SYS_5V0": 4.032, "VDDQ_VDD2_1V8AO": 0.301}
    assert total(rails) == (4.032, "VIN_SYS_5V0 (input rail)")


def test_orin_jetpack7_three_values_per_rail_first_is_now():
    rails, _ = parse(line("tegrastats-agx-orin-jp7.txt"))
    assert rails == {"VDD_GPU_SOC": 5.139, "VDD_CPU_CV": 3.268, "VIN_SYS_5V0": 5.5}


def test_without_an_input_rail_the_total_is_the_sum_and_says_so():
    rails, _ = parse("VDD_GPU_SOC 2390mW/2390mW VDD_CPU_CV 400mW/400mW")
    assert total(rails) == (pytest.approx(2.79), "sum of rails VDD_CPU_CV + VDD_GPU_SOC")


@pytest.mark.parametrize("text, reason", [
    ("RAM 1282/62795MB (lfb 15152x4MB) SWAP 0/31398MB CPU [0%@729] EMC_FREQ 0%@2133", "without power rails"),
    ("Segmentation fault", "unrecognised"),
    ("", "unrecognised"),
    ("VDD_IN 12/", "unrecognised"),
])
def test_lines_without_readings_give_the_reason(text, reason):
    rails, why = parse(text)
    assert rails == {} and reason in why


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.binary().map(lambda b: b.decode("latin-1")),
                 st.lists(st.sampled_from(["VDD_IN", "POM_5V_IN", "12", "mW", "/", " ", "RAM", "@", "%", "9" * 12]))
                 .map("".join)))
def test_parser_is_total(text):
    rails, why = parse(text)
    assert (rails and why is None) or (rails == {} and isinstance(why, str) and why)
    assert all(isinstance(v, float) and v >= 0 for v in rails.values())


def test_registered_after_ina3221_so_sysfs_rails_win():
    names = list(READERS)
    assert names.index("ina3221") < names.index("tegrastats")


def _replayer(tmp_path, fixture):
    """A stand-in tegrastats: a real process printing a recorded line every --interval ms."""
    script = tmp_path / "tegrastats.py"
    script.write_text("import sys, time\nline = open(%r).read().strip()\nms = int(sys.argv[sys.argv.index('--interval') + 1])\n"
                      "while True:\n    print(line, flush=True)\n    time.sleep(ms / 1000.0)\n" % str(ASSETS / fixture))
    return "%s %s" % (sys.executable, script)


def test_reader_follows_the_process_and_stops_it(tmp_path):
    cfg = config(tmp_path, power_sensor="tegrastats", tegrastats=_replayer(tmp_path, "tegrastats-agx-orin-jp5.txt"))
    reader, tried = open_reader(cfg)
    assert reader is not None, tried
    try:
        sample = reader.read()
        assert sample.value == 4.032 and sample.rails["VDD_GPU_SOC"] == 2.399
        assert reader.total() == "VIN_SYS_5V0 (input rail)" and "VIN_SYS_5V0" in reader.rails()
    finally:
        reader.close()
    assert reader.proc.poll() is not None


def test_missing_command_or_no_rails_is_a_reason(tmp_path):
    reader, reason = TegrastatsReader.probe(config(tmp_path, tegrastats="/nonexistent/tegrastats"))
    assert reader is None and "no tegrastats" in reason
    silent = _replayer(tmp_path, "tegrastats-nano-jp4.txt").replace("tegrastats.py", "quiet.py")
    (tmp_path / "quiet.py").write_text("import time\nprint('RAM 1/2MB CPU [1%@100]', flush=True)\ntime.sleep(30)\n")
    reader, reason = TegrastatsReader.probe(config(tmp_path, tegrastats=silent))
    assert reader is None and "without power rails" in reason
