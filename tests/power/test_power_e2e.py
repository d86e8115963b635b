"""`edgeopt bench --device local` on recorded trees, through the real agent and measuring process, then
`edgeopt check` with power and energy budgets: passing, failing and unmeasured."""
import json
import os
import pathlib
import subprocess
import sys
import threading
import time

import pytest

from conftest import FAST_BENCH_ARGS
from device_agent.bench import Sensing, sensor_config
from device_agent.power.base import SensorConfig
from edgeopt.api import _agent_args
from edgeopt.errors import BadInput
from powertrees import rapl_zone, tree, write

LOOP = FAST_BENCH_ARGS + ["--idle-seconds", "0.3"]


def _bench(cli, bundle, tmp_path, *extra):
    r = cli("bench", bundle, "--results-dir", tmp_path / "results", "--json", *LOOP, *extra)
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    return doc, doc["_path"]


@pytest.fixture
def jetson(monkeypatch, tmp_path):
    root = tree("jetson-orin-nano-jp5", tmp_path)
    monkeypatch.setenv("EDGEOPT_SYSFS_ROOT", str(root))  # the local agent inherits it
    return root


def test_jetson_tree_gives_the_expected_figures(cli, bundles, jetson, tmp_path):
    doc, _ = _bench(cli, bundles["fp32"], tmp_path)
    p, lat = doc["power"], doc["latency"]
    assert p["available"] is True and p["reader"] == "ina3221" and p["total"] == "VDD_IN (module input)"
    assert p["mean_w"] == pytest.approx(7.5) and p["peak_w"] == pytest.approx(7.5) and p["idle_w"] == pytest.approx(7.5)
    assert p["inferences"] == lat["n"] and p["loop_seconds"] == lat["duration_s"]
    assert p["energy_mj_per_inference"] == pytest.approx(7.5 * lat["duration_s"] / lat["n"] * 1e3)
    assert p["dynamic_energy_mj_per_inference"] == pytest.approx(0.0, abs=1e-9)
    assert p["rails_mean_w"] == pytest.approx({"VDD_IN": 7.5, "VDD_CPU_GPU_CV": 2.0, "VDD_SOC": 3.0})
    assert p["samples"] >= 2 and p["samples_failed"] == 0 and p["sample_rate_hz"] == 20.0
    t = doc["thermal"]
    assert t["start_c"]["thermal_zone4 (tj-thermal)"] == 48.5 and t["throttled"] is False
    assert t["cpufreq"]["policy0"]["during_mhz"]["samples"] >= 1
    assert doc["settings"]["power_sensor"] == "auto" and doc["settings"]["sysfs_root"] == str(jetson)


def test_check_power_and_energy_budgets(cli, bundles, jetson, tmp_path, int8_result):
    doc, path = _bench(cli, bundles["fp32"], tmp_path)
    energy = doc["power"]["energy_mj_per_inference"]
    r = cli("check", path, "--budget", "power_w=8", "--budget", f"energy_mj={energy * 1.01}", "--json")
    assert r.exit_code == 0, r.stdout
    rows = {b["budget"]: b for b in r.json()["results"][0]["budgets"]}
    assert rows["power_w"]["measured"] == pytest.approx(7.5) and rows["energy_mj"]["status"] == "pass"
    r = cli("check", path, "--budget", "power_w=7", "--budget", f"energy_mj={energy * 0.99}")
    assert r.exit_code == 1 and r.stdout.count("FAIL") == 2
    saved = tmp_path / "nosensor.json"
    saved.write_text(json.dumps({k: v for k, v in int8_result.items() if k != "_path"}))
    r = cli("check", saved, "--budget", "power_w=8", "--budget", "energy_mj=1", "--json")
    assert r.exit_code == 1
    assert [b["status"] for b in r.json()["results"][0]["budgets"]][-2:] == ["unmeasured", "unmeasured"]


class _AdvancingCounter:
    """Rewrites energy_uj every millisecond with P x (elapsed time), wrapped at the counter's range:
    a RAPL package counter that moves with real time, so the agent's figures can be checked against P.
    A process of its own: as a thread of the test's process it shared the GIL with the host side of the bench run
    in that process, and a stall of a tenth of a second at an edge of the window read 10.6 W for 12 (seen in a
    fresh clone's run)."""

    WRITER = ("import os, sys, time\n"
              "path, watts, range_uj = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])\n"
              "tmp, t0 = path + '.tmp', time.monotonic()\n"
              "while True:\n"
              "    with open(tmp, 'w') as f:\n"
              "        f.write('%d\\n' % (int(watts * (time.monotonic() - t0) * 1e6) % range_uj))\n"
              "    os.replace(tmp, path)  # readers see the old or the new value, never half of one\n"
              "    time.sleep(0.001)\n")

    def __init__(self, path, watts, range_uj):
        recorded = pathlib.Path(path).read_text()
        self.process = subprocess.Popen([sys.executable, "-c", self.WRITER, str(path), str(watts), str(range_uj)])
        deadline = time.monotonic() + 10
        while pathlib.Path(path).read_text() == recorded:   # moving before the bench starts
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.close()
                raise RuntimeError("the fake RAPL counter's writer did not start")
            time.sleep(0.01)

    def close(self):
        self.process.kill()
        self.process.wait()


class _Rewriter:
    """Rewrites sysfs files of a recorded tree every few ms with value(elapsed seconds): a sensor whose readings
    change over real time, so the agent's timelines can be checked against a known shape. A recorded tree holds
    one value per file, so a moving one is made this way; each write is atomic (os.replace)."""

    def __init__(self, files):
        self.files, self.t0, self.stop = files, time.monotonic(), threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.wait(0.002):
            elapsed = time.monotonic() - self.t0
            for path, value in self.files.items():
                write("%s.tmp" % path, int(value(elapsed)))
                os.replace("%s.tmp" % path, path)

    def close(self):
        self.stop.set()
        self.thread.join()


def test_power_and_thermal_timelines_follow_the_sensors(cli, bundles, jetson, tmp_path):
    # VDD_IN switches between 1.5 A and 2.5 A (7.5 W / 12.5 W at 5 V) every 0.4 s; each second tj-thermal rises
    # 40 -> 80 degC, then holds 88 degC (past its passive trip point at 85) for half a second, which 4 Hz
    # readings cannot miss; policy0's clock steps between 1510.4 and 1000 MHz.
    hwmon = jetson / "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon1"
    tj = jetson / "sys/class/thermal/thermal_zone4"
    write(tj / "trip_point_0_type", "active")
    write(tj / "trip_point_0_temp", 50000)     # a fan: not where throttling starts
    write(tj / "trip_point_1_type", "passive")
    write(tj / "trip_point_1_temp", 85000)
    moving = _Rewriter({hwmon / "curr1_input": lambda s: 1500 if int(s / 0.4) % 2 == 0 else 2500,
                        tj / "temp": lambda s: 88000 if s % 1.0 >= 0.5 else 40000 + 80000 * (s % 1.0),
                        jetson / "sys/devices/system/cpu/cpufreq/policy0/scaling_cur_freq":
                            lambda s: 1510400 if int(s / 0.4) % 2 == 0 else 1000000})
    try:
        doc, _ = _bench(cli, bundles["fp32"], tmp_path, "--min-seconds", "1.5", "--max-iterations", "100000000")
    finally:
        moving.close()
    line = doc["power"]["timeline"]
    assert line["readings"] == doc["power"]["samples"] and len(line["t_s"]) == len(line["total_w"]) == line["readings"]
    assert set(line["total_w"]) == {7.5, 12.5} and set(line["rails_w"]["VDD_IN"]) == {7.5, 12.5}
    switches = sum(a != b for a, b in zip(line["total_w"], line["total_w"][1:]))
    assert switches >= 3 and line["rails_w"]["VDD_SOC"] == [3.0] * line["readings"] and line["bin_s"] is None
    # the last reading, then the thermal and cpufreq reads before the window closes: a preemption there is no defect
    assert line["t_s"][0] < 0.01 and 0 <= doc["power"]["window_s"] - line["t_s"][-1] < 0.05
    heat = doc["thermal"]["timeline"]
    tj_c, t = heat["zones_c"]["thermal_zone4 (tj-thermal)"], heat["t_s"]
    assert len(t) >= 6 and heat["zones_c"]["thermal_zone0 (cpu-thermal)"] == [48.5] * len(t)
    assert 40.0 <= min(tj_c) and max(tj_c) == 88.0 and max(tj_c) - min(tj_c) > 20   # the sawtooth is seen
    assert set(heat["cpufreq_mhz"]["policy0"]) == {1510.4, 1000.0} and set(heat["cpufreq_mhz"]["policy4"]) == {1510.4}
    assert doc["thermal"]["trip_points_c"] == {"thermal_zone4 (tj-thermal)": [{"type": "passive", "c": 85.0}]}
    assert any(w.startswith("throttled: thermal zone thermal_zone4 (tj-thermal) reached its passive trip point 85.0")
               for w in doc["warnings"]) and doc["thermal"]["throttled"] is True


def test_rapl_counter_that_wraps_during_the_run(cli, bundles, monkeypatch, tmp_path):
    root = tree("rapl-x86", tmp_path)
    write(rapl_zone(root) / "max_energy_range_uj", 5000000)  # 5 J: wraps every ~0.4 s at 12 W
    counter = _AdvancingCounter(rapl_zone(root) / "energy_uj", 12.0, 5000000)
    monkeypatch.setenv("EDGEOPT_SYSFS_ROOT", str(root))
    try:
        doc, _ = _bench(cli, bundles["fp32"], tmp_path, "--min-seconds", "1.5", "--max-iterations", "100000000",
                        "--idle-seconds", "0.5")
    finally:
        counter.close()
    p = doc["power"]
    assert p["reader"] == "rapl" and p["energy_method"] == "energy counter" and p["samples_failed"] == 0
    # the fake counter's writer is a thread on the same 2 shared cores: a 25 ms stall at an edge of the 0.5 s idle
    # window moves the idle figure 5 %
    assert p["mean_w"] == pytest.approx(12.0, rel=0.03) and p["idle_w"] == pytest.approx(12.0, rel=0.1)
    assert p["rails_mean_w"]["package-0/dram"] == 0.0
    assert p["energy_mj_per_inference"] == pytest.approx(p["mean_w"] * p["loop_seconds"] / p["inferences"] * 1e3)
    watts = sorted(p["timeline"]["total_w"])   # from counter differences, across every wrap
    assert len(watts) >= p["samples"] - 2 and watts[len(watts) // 2] == pytest.approx(12.0, rel=0.03)
    assert "counter readings" in p["timeline"]["values"]


def test_throttled_pi5_run_is_flagged_in_the_result_and_in_check(cli, bundles, monkeypatch, tmp_path):
    root = tree("rpi5", tmp_path)
    write(root / "get_throttled.txt", "throttled=0x50005")
    monkeypatch.setenv("EDGEOPT_SYSFS_ROOT", str(root))
    monkeypatch.setenv("EDGEOPT_VCGENCMD", str(root / "vcgencmd"))
    doc, path = _bench(cli, bundles["fp32"], tmp_path, "--power-sensor", "rpi5-pmic")
    assert doc["power"]["mean_w"] == pytest.approx(2.352) and "5 V loads" in doc["power"]["notes"][0]
    assert doc["thermal"]["throttled"] is True
    r = cli("check", path, "--budget", "latency_p90_ms=1000")
    assert r.exit_code == 0
    assert "THROTTLED" in r.stdout and "under-voltage detected, currently throttled" in r.stdout
    assert cli("check", path, "--json").json()["results"][0]["throttled"] is True


def test_sensor_that_disappears_mid_run_leaves_energy_unmeasured(cli, bundles, tmp_path):
    count = tmp_path / "reads"
    count.write_text("0")
    script = tmp_path / "meter.sh"  # answers 5 W four times (probe + 3 in the loop), then the meter is gone
    script.write_text('n=$(($(cat %s) + 1)); echo $n > %s; [ $n -le 4 ] || { echo "meter unplugged" >&2; exit 1; }; '
                      'echo 5.0\n' % (count, count))
    doc, path = _bench(cli, bundles["fp32"], tmp_path, "--power-command", f"sh {script}", "--power-rate", "20",
                       "--idle-seconds", "0", "--min-seconds", "1", "--max-iterations", "100000000")
    p = doc["power"]
    assert p["reader"] == "external" and p["mean_w"] == 5.0 and p["samples"] == 3 and p["samples_failed"] >= 10
    assert p["mean_w_scope"].startswith("partial: readings cover") and "meter unplugged" in p["first_error"]
    assert "energy_mj_per_inference" not in p
    assert any(w.startswith("power: mean power is partial") for w in doc["warnings"])
    r = cli("check", path, "--budget", "energy_mj=1", "--json")
    row = r.json()["results"][0]["budgets"][-1]
    assert r.exit_code == 1 and row["status"] == "unmeasured" and "missing for part of the loop" in row["reason"]


def test_a_negative_reading_is_no_power_figure_and_the_result_reads(cli, bundles, tmp_path):
    """A meter printing -2 W was saved as mean -2 W, which check, compare and report then refused as bad input."""
    doc, path = _bench(cli, bundles["fp32"], tmp_path, "--power-command", "echo -2", "--power-rate", "20")
    p = doc["power"]
    assert p["available"] is False and "negative mean power (-2 W)" in p["reason"]
    assert [w for w in doc["warnings"] if w.startswith("power: ")], doc["warnings"]   # said once, as a warning
    assert not [w for w in doc["warnings"] if "was asked for and measured nothing" in w]
    huge, _ = _bench(cli, bundles["fp32"], tmp_path, "--power-command", "echo 1e9", "--power-rate", "20")
    assert huge["power"]["available"] is False and "mean power of 1e+09 W, more than the 5000 W" in \
        huge["power"]["reason"]   # it was 1e9 W and 6.5e7 mJ per inference, without a word
    # a meter asked for on purpose that never answered: a warning, not only an absent row (a user walkthrough)
    dead, _ = _bench(cli, bundles["fp32"], tmp_path, "--power-command", "exit 1", "--power-rate", "20")
    assert "reader" not in dead["power"]
    assert "power: --power-command was asked for and measured nothing: " in " ".join(dead["warnings"]), dead["warnings"]
    off, _ = _bench(cli, bundles["fp32"], tmp_path, "--no-power")   # asked for none: no warning of it
    assert not [w for w in off["warnings"] if w.startswith("power")], off["warnings"]
    r = cli("check", path, "--budget", "power_w=5", "--json")
    assert r.exit_code == 1 and r.json()["results"][0]["budgets"][-1]["status"] == "unmeasured"


def test_no_power_flag_and_the_profiles_choice(cli, bundles, jetson, tmp_path):
    doc, _ = _bench(cli, bundles["fp32"], tmp_path, "--no-power")
    assert doc["power"] == {"available": False, "reason": "power measurement turned off (power_sensor none, or --no-power)",
                            "tried": {}}
    manifest = {"runtime": {"power_sensor": "none"}}
    assert sensor_config(Sensing().power, manifest).power_sensor == "none"
    with_meter = SensorConfig(power_sensor=None, power_command="cat /meter")
    assert sensor_config(with_meter, manifest).power_sensor == "external"  # a meter given on the command line wins
    assert sensor_config(SensorConfig(power_sensor="rapl"), manifest).power_sensor == "rapl"


def test_sensing_flags_reach_the_agent():
    args = _agent_args(None, {"min_iterations": 5}, {"power_sensor": "external", "power_rate": 5.0, "cooldown": None,
                                                     "power_command": "curl -s http://plug | jq .power"})
    assert args == ["--min-iterations", "5", "--power-sensor", "external", "--power-rate", "5.0",
                    "--power-command", "curl -s http://plug | jq .power"]
    # flags that do nothing beside another are refused, not ignored (a user review)
    for sensing, said in (({"no_power": True, "power_command": "echo 3"}, "--no-power with --power-command"),
                          ({"power_sensor": "rapl", "power_command": "echo 3"}, "--power-sensor rapl reads another"),
                          ({"cooldown_target": 40.0}, "--cooldown-target applies with --cooldown"),
                          ({"power_sensor": "external"}, "--power-sensor external reads the meter that "
                                                         "--power-command runs: give that command")):
        with pytest.raises(BadInput, match=said):
            _agent_args(None, {}, sensing)
    with pytest.raises(BadInput, match="--runtime-option intra_op_num_threads given twice"):
        _agent_args(None, {"runtime_option": ["intra_op_num_threads=1", "intra_op_num_threads=2"]})


def test_judging_agent_flags_from_threads_at_once_leaves_stderr_alone():
    """A fleet's trials judge their flags from one thread per device: a redirect of stderr (the process's) by
    each left it pointing at one thread's buffer, and optimize's progress and Ctrl-C message went into it."""
    import sys
    import threading

    before = sys.stderr
    for _ in range(20):
        threads = [threading.Thread(target=_agent_args, args=(2, {"min_iterations": 20})) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sys.stderr is before
    with pytest.raises(BadInput, match=r"^measurement settings \(threads, loop, sensing\): argument --min-iterations"):
        _agent_args(None, {"min_iterations": "x"})
