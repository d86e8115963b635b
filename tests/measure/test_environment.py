"""The environment at the start of a measurement: cpufreq governor and clocks, load, running processes,
read through the agent's sysfs root from recorded trees (as thermal.py's tests do), live, and in a result."""
import pathlib

from device_agent.measure import environment
from device_agent.power.base import SensorConfig

FIXTURES = pathlib.Path(__file__).resolve().parent.parent / "power" / "fixtures"


def _tree(root, files):
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    return SensorConfig(sysfs_root=str(root))


def test_a_recorded_board_reads_governor_clocks_and_load(tmp_path):
    policy = "sys/devices/system/cpu/cpufreq/policy0/"
    config = _tree(tmp_path, {
        policy + "scaling_governor": "powersave", policy + "related_cpus": "0 1 2 3",
        policy + "scaling_cur_freq": "1500000", policy + "scaling_min_freq": "600000",
        policy + "scaling_max_freq": "1800000", policy + "cpuinfo_min_freq": "600000",
        policy + "cpuinfo_max_freq": "2400000",
        "proc/loadavg": "3.50 2.25 1.00 5/310 4242", "proc/stat": "cpu  1 2 3\nprocs_running 4\nprocs_blocked 1"})
    env = environment.read(config)
    assert env["cpufreq"] == {"policy0": {"governor": "powersave", "cpus": "0 1 2 3", "cur_mhz": 1500.0,
                                          "min_mhz": 600.0, "max_mhz": 1800.0, "hw_min_mhz": 600.0,
                                          "hw_max_mhz": 2400.0}}
    assert env["load_1m"] == 3.5 and env["load_15m"] == 1.0
    assert (env["runnable"], env["processes"], env["procs_running"], env["procs_blocked"]) == (5, 310, 4, 1)


def test_what_a_device_lacks_is_absent_with_the_reason(tmp_path):
    env = environment.read(SensorConfig(sysfs_root=str(FIXTURES / "rpi5")))   # cpufreq, but no /proc/loadavg
    assert env["cpufreq"]["policy0"]["governor"] == "schedutil" and "min_mhz" not in env["cpufreq"]["policy0"]
    assert "loadavg" in env["load_absent"] and "load_1m" not in env
    config = _tree(tmp_path, {"proc/loadavg": "garbage"})
    env = environment.read(config)
    assert "cpufreq_absent" in env and "unexpected content" in env["load_absent"]


def test_this_machine_and_a_real_result(int8_result):
    live = environment.read(SensorConfig())
    assert live["load_1m"] >= 0 and live["runnable"] >= 1 and live["processes"] >= 1
    env = int8_result["environment"]
    assert env["runnable"] >= 1 and ("cpufreq" in env or "cpufreq_absent" in env)
