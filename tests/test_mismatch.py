"""A bundle measured on hardware it was not packaged for: refused before measuring where the inventory says
so, a warning where only the agent's probe can tell, and `device doctor` flags a device listed as the
wrong profile. Real local devices, a real LiteRT bundle, real benchmarks."""
import platform

import pytest
import yaml

from conftest import FAST_BENCH_ARGS, MODEL
from edgeopt import api
from edgeopt.errors import BadInput
from edgeopt.inventory import DeviceSpec

X86 = platform.machine().lower() in ("x86_64", "amd64")


@pytest.fixture(scope="module")
def pi_bundle(tmp_path_factory):
    """The shipped model packaged for raspberry-pi-5 (tflite, aarch64)."""
    out = tmp_path_factory.mktemp("pi-bundle")
    return api.package(str(MODEL), "raspberry-pi-5", out / "pi.edgepkg")["path"]


@pytest.fixture
def inventory(tmp_path):
    """Local devices that the inventory calls an Intel box, a Pi 4 and a Pi 5."""
    path = tmp_path / "inv.yaml"
    path.write_text(yaml.safe_dump({"devices": {
        "nuc1": {"connection": "local", "profile": "intel-cpu"},
        "pi4": {"connection": "local", "profile": "raspberry-pi-4"},
        "pi5": {"connection": "local", "profile": "raspberry-pi-5"}}}))
    return path


def _bench(cli, bundle, device, inventory, tmp_path, *extra):
    return cli("bench", bundle, "-d", device, "-i", inventory, "--results-dir", tmp_path / "results",
               *FAST_BENCH_ARGS, *extra)


def test_other_backend_is_refused_before_measuring(cli, pi_bundle, inventory, tmp_path):
    r = _bench(cli, pi_bundle, "nuc1", inventory, tmp_path)
    assert r.exit_code == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "edgeopt: error:" in r.stderr
    assert "raspberry-pi-5 (tflite)" in r.stderr and "intel-cpu (openvino)" in r.stderr
    assert "--allow-profile-mismatch" in r.stderr
    assert not (tmp_path / "results").exists() or not list((tmp_path / "results").glob("*.json"))


def test_allow_profile_mismatch_measures_and_records_both_warnings(cli, pi_bundle, inventory, tmp_path):
    r = _bench(cli, pi_bundle, "nuc1", inventory, tmp_path, "--allow-profile-mismatch", "--json")
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    assert doc["status"] == "ok" and doc["latency"]["n"] >= 50
    mismatches = [w for w in doc["warnings"] if w.startswith("profile mismatch:")]
    assert any("device nuc1 is intel-cpu (openvino)" in w for w in mismatches)
    if X86:  # the agent's probe says x86_64; the bundle's profile says aarch64
        assert any("raspberry-pi-5 (aarch64), measured on a x86_64 device" in w for w in mismatches)


def test_same_backend_is_a_warning_only(cli, pi_bundle, inventory, tmp_path):
    r = _bench(cli, pi_bundle, "pi4", inventory, tmp_path, "--json")
    assert r.exit_code == 0, r.stderr
    assert any("device pi4 is raspberry-pi-4 (tflite)" in w for w in r.json()["warnings"])


def test_matching_profile_has_no_inventory_warning(cli, pi_bundle, inventory, tmp_path):
    r = _bench(cli, pi_bundle, "pi5", inventory, tmp_path, "--json")
    assert r.exit_code == 0, r.stderr
    warnings = [w for w in r.json()["warnings"] if w.startswith("profile mismatch:")]
    # only the probe's arch can still disagree (this host is not a Pi)
    assert all("measured on a" in w for w in warnings) and (bool(warnings) == X86)


def test_fleet_fails_the_mismatched_device_and_measures_the_others(cli, pi_bundle, inventory, tmp_path):
    r = cli("fleet", "bench", pi_bundle, "-i", inventory, "--results-dir", tmp_path / "results", "-j", "1",
            *FAST_BENCH_ARGS, "--json")
    assert r.exit_code == 3, r.stderr
    report = r.json()
    assert set(report["succeeded"]) == {"pi4", "pi5"}
    assert list(report["failed"]) == ["nuc1"] and "intel-cpu (openvino)" in report["failed"]["nuc1"]
    r = cli("fleet", "bench", pi_bundle, "-i", inventory, "--results-dir", tmp_path / "results2", "-j", "1",
            *FAST_BENCH_ARGS, "--json", "--allow-profile-mismatch")
    assert r.exit_code == 1, r.stderr  # all measured; the Pi profile's accuracy budget is unmeasured (no eval data)
    report = r.json()
    assert set(report["succeeded"]) == {"nuc1", "pi4", "pi5"}
    assert any("device nuc1 is intel-cpu" in w for w in report["documents"]["nuc1"]["warnings"])


@pytest.mark.skipif(not X86, reason="needs an x86_64 host to disagree with raspberry-pi-5's aarch64")
def test_doctor_flags_an_x86_host_listed_as_a_pi(cli, inventory):
    r = cli("device", "doctor", "pi5", "-i", inventory, "--json")
    assert r.exit_code == 3
    checks = {c["check"]: c for c in r.json()["checks"]}
    assert not checks["arch"]["ok"] and "x86_64; profile raspberry-pi-5 is aarch64" in checks["arch"]["detail"]
    assert "pi5" in checks["arch"]["hint"]
    r = cli("device", "doctor", "nuc1", "-i", inventory, "--json")
    checks = {c["check"]: c for c in r.json()["checks"]}
    assert checks["arch"]["ok"]
    assert checks["connection"]["detail"].endswith("runs on this machine (no SSH)")   # no host key to verify


def _manifest(profile, backend):
    return {"name": "b", "profile": {"name": profile, "backend": backend}}


@pytest.mark.parametrize("bundle_profile, backend, device_profile, refused, warned", [
    ("raspberry-pi-5", "tflite", "intel-cpu", True, False),
    ("intel-cpu", "openvino", "jetson-orin-nano", True, False),
    ("raspberry-pi-5", "tflite", "raspberry-pi-4", False, True),
    ("generic", "onnxruntime", "intel-cpu", False, True),       # generic is portable by design
    ("intel-cpu", "openvino", "generic", False, True),          # so is a device the inventory calls generic
    ("intel-cpu", "openvino", "intel-cpu", False, False),
    ("intel-cpu", "openvino", None, False, False),              # the inventory says nothing
    ("/elsewhere/custom.toml", "tflite", "intel-cpu", True, False),  # unknown here: the backend decides
])
def test_profile_mismatch_rule(bundle_profile, backend, device_profile, refused, warned):
    spec = DeviceSpec(name="d", host="localhost", connection="local", profile=device_profile)
    got_refused, text = api.profile_mismatch(_manifest(bundle_profile, backend), spec)
    assert got_refused == refused and bool(text) == (refused or warned)


def test_unknown_device_profile_names_the_field():
    spec = DeviceSpec(name="d", host="localhost", connection="local", profile="no-such-board")
    with pytest.raises(BadInput, match="device d: field `profile`: unknown profile 'no-such-board'"):
        api.profile_mismatch(_manifest("generic", "onnxruntime"), spec)
