"""Jetson environment on a recorded tree (tests/assets/jetson/README.md names each source): L4T, JetPack, TensorRT
and CUDA versions, power mode and clock state from recorded `nvpmodel -q` / `jetson_clocks --show` answers (stand-in
commands on PATH print them), GPU and EMC clocks; and `device doctor`'s version check against the profile."""
import pathlib
import shutil

from device_agent.measure import environment, jetson
from device_agent.power.base import SensorConfig
from edgeopt.doctor import software_checks, version_matches
from edgeopt.profiles import load_profile

ASSETS = pathlib.Path(__file__).resolve().parents[1] / "assets" / "jetson"


def _tools(tmp_path, monkeypatch, clocks="jetson_clocks-show-tx2.txt"):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, answer in (("nvpmodel", "nvpmodel-q.txt"), ("jetson_clocks", clocks)):
        script = bin_dir / name
        script.write_text("#!/bin/sh\ncat '%s'\n" % (ASSETS / "commands" / answer))
        script.chmod(0o755)
    monkeypatch.setenv("PATH", "%s:%s" % (bin_dir, "/usr/bin:/bin"))


def test_orin_nano_jetpack5_tree(tmp_path, monkeypatch):
    _tools(tmp_path, monkeypatch)
    env = environment.read(SensorConfig(sysfs_root=str(ASSETS / "orin-nano-jp5")))
    j = env["jetson"]
    assert j["l4t"] == "35.4.1" and j["board"] == "t186ref" and j["jetpack"] == "5.1.2"
    assert j["tensorrt"] == "8.5.2.2" and j["cuda"] == "11.4.315"
    assert "libnvinfer10" not in j["packages"]                      # config-files only: not installed
    assert j["power_mode"] == {"mode": "15W", "id": 0}
    assert j["clocks"]["locked"] is False and j["clocks"]["gpu"]["cur_mhz"] == 114.75
    assert j["gpu_freq"] == {"device": "17000000.ga10b", "cur_mhz": 306.0, "min_mhz": 306.0, "max_mhz": 624.75,
                             "governor": "nvhost_podgov"}
    assert j["emc_mhz"] == 2133.0


def test_locked_clocks(tmp_path, monkeypatch):
    clocks = jetson.parse_clocks((ASSETS / "commands" / "jetson_clocks-show-tx1-locked.txt").read_text())
    assert clocks["cpu_locked"] and clocks["gpu_locked"] and clocks["emc_locked"] and clocks["locked"]


def test_missing_commands_and_files_are_absent_with_reasons(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))               # no nvpmodel, no jetson_clocks
    root = tmp_path / "root"
    shutil.copytree(ASSETS / "orin-nano-jp5" / "etc", root / "etc")
    j = jetson.read(SensorConfig(sysfs_root=str(root)))
    assert j["l4t"] == "35.4.1" and "tensorrt" not in j and "cuda" not in j
    assert j["power_mode"]["available"] is False and "nvpmodel" in j["power_mode"]["reason"]
    assert j["gpu_freq"]["available"] is False and j["emc_mhz"]["available"] is False


def test_not_a_jetson_adds_nothing(tmp_path):
    assert "jetson" not in environment.read(SensorConfig(sysfs_root=str(tmp_path)))


def test_parsers_are_total():
    for text in ("", "garbage", "# R (release)", None, "NV Power Mode:"):
        assert jetson.parse_release(text) == {} and jetson.parse_nvpmodel(text) == {}
        assert jetson.parse_clocks(text) == {} and jetson.dpkg_versions(text, ("tensorrt",)) == {}


def test_doctor_flags_versions_the_profile_is_not_made_for():
    profile = load_profile("jetson-orin-nano")
    good = {c["check"]: c for c in software_checks({"l4t": "35.4.1", "jetpack": "5.1.2", "tensorrt": "8.5.2.2",
                                                    "cuda": "11.4.315"}, profile)}
    assert set(good) == {"jetpack", "l4t", "tensorrt", "cuda"} and all(c["ok"] for c in good.values())
    bad = {c["check"]: c for c in software_checks({"l4t": "36.3.0", "tensorrt": "8.6.2.3", "cuda": "12.2.140"}, profile)}
    assert not bad["tensorrt"]["ok"] and "8.6.2.3; profile jetson-orin-nano expects 8.5, 10.3" in bad["tensorrt"]["detail"]
    assert not bad["l4t"]["ok"] and not bad["jetpack"]["ok"] and "not found" in bad["jetpack"]["detail"]
    assert software_checks({}, load_profile("generic")) == []
    assert version_matches("10.3.0.30", ("10.3",)) and not version_matches("10.30", ("10.3",))
