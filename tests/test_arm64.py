"""The device agent on arm64: its zipapp run by Debian bookworm's aarch64 Python (the base of 64-bit
Raspberry Pi OS) under qemu user-mode emulation, with real aarch64 wheels (tests/arm64.py).

This proves the agent, its zipapp and the aarch64 runtime wheels run there. It says nothing about
speed: latency under emulation is no Pi figure, so no test asserts or prints one.
"""
import json
import os
import pathlib

import pytest

import arm64
from device_agent.runtimes import ADAPTERS, adapter_class
from edgeopt import agent_zipapp

pytestmark = pytest.mark.slow

# A short loop: under emulation each run costs 10-50x more, and the figure means nothing anyway.
QUICK_BENCH_ARGS = ["--min-iterations", "20", "--min-seconds", "0", "--warmup-seconds", "0"]
# (fixture holding the bundles, its key, the runtime the bundle names). A LiteRT case is one more line;
# under emulation LiteRT runs without XNNPACK (qemu 7.2 gives its cpuinfo no ARM facts): do not expect it applied.
BENCH_CASES = [
    pytest.param("bundles", "int8", "onnxruntime", id="onnxruntime-int8"),
    pytest.param("pi_bundles", "fp32", "litert", id="litert-fp32"),
    pytest.param("pi_bundles", "int8", "litert", id="litert-int8"),
]


@pytest.fixture(scope="session")
def arm64_root(tmp_path_factory, pytestconfig):
    """This session's own copy of the cached arm64 userland, built first on a machine without one."""
    reason = arm64.unavailable()
    if reason:
        pytest.skip(reason)
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    shown = []

    def show(line):
        shown.append(line)
        print("\n" + line, end="", flush=True)

    with capture.global_and_fixture_disabled():  # a cold build takes minutes: show its progress
        tarball = arm64.ensure_tarball(show)
        if shown:
            print()  # pytest's dots go on below
    root = arm64.Rootfs.unpack(tarball, tmp_path_factory.mktemp("arm64") / "root")
    yield root
    root.remove()  # 380 MB; pytest would keep three sessions' worth


@pytest.fixture(scope="module")
def agent(arm64_root):
    """The agent zipapp, copied onto the "device"; its path there."""
    return arm64_root.put(agent_zipapp.build(), "agent.pyz")


def run_agent(root, agent, *args):
    p = root.run("/usr/bin/python3", agent, *args)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def runtime_version(root, name):
    """The version of the wheel that provides runtime `name` in the rootfs, None when none does."""
    installed = root.installed()
    names = [arm64.normalized(d) for d in adapter_class(name).distributions]
    return next((installed[d] for d in names if d in installed), None)


def test_python_in_the_rootfs_is_an_aarch64_binary(arm64_root):
    python = (arm64_root.path / "usr/bin/python3").resolve()
    assert arm64.elf_machine(python) == "aarch64"


def test_probe_under_emulation_reports_aarch64_and_the_wheels(arm64_root, agent):
    facts = run_agent(arm64_root, agent, "probe")
    assert facts["arch"] == "aarch64" and facts["python"].startswith("3.11.")
    assert facts["os"] == "Debian GNU/Linux 12 (bookworm)" and facts["python_executable"] == "/usr/bin/python3"
    assert facts["numpy"] == arm64_root.installed()["numpy"]
    assert facts["runtimes"]["onnxruntime"] == "1.32.0"
    # Every adapter this agent knows reports the wheel installed for it, or None (OpenVINO: none here).
    assert facts["runtimes"] == {name: runtime_version(arm64_root, name) for name in ADAPTERS}


def test_litert_aarch64_wheel_loads_under_emulation(arm64_root):
    """ai-edge-litert's interpreter (a native extension) imports in the emulated Python."""
    script = ("import importlib.metadata, json, sys; from ai_edge_litert import interpreter; "
              "print(json.dumps({'version': importlib.metadata.version('ai-edge-litert'), "
              "'native': interpreter._interpreter_wrapper.__file__, "
              "'has_interpreter': hasattr(interpreter, 'Interpreter')}))")
    p = arm64_root.run("/usr/bin/python3", "-c", script, timeout=300)
    assert p.returncode == 0, p.stderr
    loaded = json.loads(p.stdout)
    assert loaded["version"] == "2.3.0" and loaded["has_interpreter"]
    assert arm64.elf_machine(arm64_root.path / loaded["native"].lstrip("/")) == "aarch64"


@pytest.mark.parametrize("bundles_fixture, key, runtime", BENCH_CASES)
def test_bench_under_emulation(request, arm64_root, agent, bundles_fixture, key, runtime):
    """bench forks its measuring child as `sys.executable -m device_agent _measure`: an aarch64
    python3 started by an emulated process, which binfmt_misc hands to qemu again."""
    made = request.getfixturevalue(bundles_fixture)[key]
    bundle = pathlib.Path(made if isinstance(made, (str, os.PathLike)) else made["path"])
    doc = run_agent(arm64_root, agent, "bench", arm64_root.put(bundle, bundle.name), *QUICK_BENCH_ARGS)
    assert doc["status"] == "ok", doc.get("error")
    assert doc["device"]["arch"] == "aarch64" and doc["device"]["python"].startswith("3.11.")
    assert doc["runtime"]["name"] == runtime and doc["runtime"]["version"] == runtime_version(arm64_root, runtime)
    assert doc["accuracy"]["n"] == 360 and doc["accuracy"]["top1"] > 0.95
    assert doc["latency"]["n"] >= 20  # a count only: the milliseconds are emulation's, not a Pi's
    if runtime == "litert":  # the Pi bundle as a Pi runs it: NHWC input, int8 I/O, ai_edge_litert, 4 threads
        assert doc["runtime"]["interpreter"] == "ai_edge_litert" and doc["runtime"]["threads"] == 4
        assert doc["runtime"]["int8_io"] is (key == "int8") and doc["runtime"]["xnnpack"]["requested"]
