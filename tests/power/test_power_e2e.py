"""`edgeopt bench --device local` on recorded trees, through the real agent and measuring process, then
`edgeopt check` with power and energy budgets: passing, failing and unmeasured."""
import json
import os
import threading
import time

import pytest

from conftest import FAST_BENCH_ARGS
from device_agent.bench import Sensing, sensor_config
from device_agent.power.base import SensorConfig
from edgeopt.api import _agent_args
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
    a RAPL package counter that moves with real time, so the agent's figures can be checked against P."""

    def __init__(self, path, watts, range_uj):
        self.path, self.watts, self.range_uj = path, watts, range_uj
        self.t0, self.stop = time.monotonic(), threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        tmp = "%s.tmp" % self.path
        while not self.stop.wait(0.001):
            with open(tmp, "w") as f:
                f.write("%d\n" % (int(self.watts * (time.monotonic() - self.t0) * 1e6) % self.range_uj))
            os.replace(tmp, self.path)  # readers see the old or the new value, never half of one

    def close(self):
        self.stop.set()
        self.thread.join()


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
    assert p["mean_w"] == pytest.approx(12.0, rel=0.03) and p["idle_w"] == pytest.approx(12.0, rel=0.05)
    assert p["rails_mean_w"]["package-0/dram"] == 0.0
    assert p["energy_mj_per_inference"] == pytest.approx(p["mean_w"] * p["loop_seconds"] / p["inferences"] * 1e3)


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
    args = _agent_args(None, {"min_iterations": 5}, {"no_power": True, "power_rate": 5.0, "cooldown": None,
                                                     "power_command": "curl -s http://plug | jq .power"})
    assert args == ["--min-iterations", "5", "--no-power", "--power-rate", "5.0",
                    "--power-command", "curl -s http://plug | jq .power"]
