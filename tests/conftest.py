"""Shared fixtures: the shipped sample, bundles packaged once per session, a CLI runner."""
import contextlib
import json
import pathlib
import subprocess
import sys
import tarfile

import pytest
from click.testing import CliRunner

from edgeopt import api
from edgeopt.cli import main

SAMPLES = pathlib.Path(api.__file__).resolve().parent / "samples"
MODEL, CALIB, EVAL = SAMPLES / "digits_cnn.onnx", SAMPLES / "digits_calib.npz", SAMPLES / "digits_eval.npz"
FAST_LOOP = {"min_iterations": 50, "min_seconds": 0.05, "max_iterations": 500, "warmup_iterations": 2,
             "warmup_seconds": 0.0}
FAST_BENCH_ARGS = ["--min-iterations", "50", "--min-seconds", "0.05", "--max-iterations", "500",
                   "--warmup-iterations", "2", "--warmup-seconds", "0"]


def bundle_member(bundle, name) -> bytes:
    """One file of a written bundle, read straight from its tar."""
    with tarfile.open(bundle) as tar:
        return tar.extractfile(name).read()


def bundle_manifest(bundle) -> dict:
    return json.loads(bundle_member(bundle, "manifest.json"))


def model_bytes(manifest) -> int:
    return sum(f["bytes"] for f in manifest["files"] if f["role"] == "model")


class Result:
    def __init__(self, code, stdout, stderr):
        self.exit_code, self.stdout, self.stderr = code, stdout, stderr

    def json(self):
        return json.loads(self.stdout)


@pytest.fixture
def cli():
    """Run the edgeopt CLI in-process; returns exit code, stdout and stderr apart."""
    def run(*args):
        # tables are as wide as a pipe's (120), whatever width the shell running the tests exports
        result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False, env={"COLUMNS": None})
        return Result(result.exit_code, result.stdout, result.stderr)
    return run


@pytest.fixture
def cli_subprocess():
    """Run `python -m edgeopt` as a real process (exit codes and streams exactly as a shell sees them)."""
    def run(*args, cwd=None):
        p = subprocess.run([sys.executable, "-m", "edgeopt", *[str(a) for a in args]], capture_output=True,
                           text=True, cwd=cwd, timeout=600)
        return Result(p.returncode, p.stdout, p.stderr)
    return run


# Raspberry Pi (LiteRT) variants: key -> (precision, quantize, int8 I/O)
PI_VARIANTS = {"fp32": ("fp32", "none", ""), "fp16": ("fp16", "none", ""), "dynamic": ("fp32", "dynamic", ""),
               "int8": ("fp32", "int8", ""), "int8-float-io": ("fp32", "int8", "float")}


@pytest.fixture(scope="session")
def pi_bundles(tmp_path_factory):
    """The shipped model packaged every way the raspberry-pi-5 profile offers (manifests, with `path`)."""
    out = tmp_path_factory.mktemp("pi")
    return {key: api.package(str(MODEL), "raspberry-pi-5", out / f"{key}.edgepkg", precision, quantize,
                             calib=CALIB if quantize == "int8" else None, eval_data=EVAL, int8_io=io)
            for key, (precision, quantize, io) in PI_VARIANTS.items()}


@pytest.fixture(scope="session")
def bundles(tmp_path_factory):
    """fp32 and int8 bundles of the shipped model, packaged once for the whole session."""
    out = tmp_path_factory.mktemp("bundles")
    made = {}
    for precision, quantize in (("fp32", "none"), ("fp32", "int8")):
        m = api.package(str(MODEL), "generic", out / f"{quantize}-{precision}.edgepkg", precision, quantize,
                        calib=CALIB, eval_data=EVAL)
        made["int8" if quantize == "int8" else precision] = pathlib.Path(m["path"])
    return made


@pytest.fixture(scope="session")
def int8_result(bundles, tmp_path_factory):
    """A real benchmark result of the INT8 bundle on the local device."""
    doc = api.bench(bundles["int8"], "local", tmp_path_factory.mktemp("results"), loop=FAST_LOOP)
    return doc


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """Real sshd devices on loopback (tests/sshd.py); skipped with the reason where sshd is missing."""
    import sshd
    reason = sshd.available()
    if reason:
        pytest.skip(reason)
    devices = sshd.Lab(tmp_path_factory.mktemp("lab"))
    yield devices
    devices.stop()


def write_inventory(path, lab, devices, groups=None, **overrides):
    """edgeopt's own YAML inventory for `devices` (sshd.Device objects) of `lab`."""
    import yaml
    entries = {d.name: dict(lab.inventory_entry(d), **overrides.get(d.name, {})) for d in devices}
    path.write_text(yaml.safe_dump({"devices": entries, "groups": groups or {}}, allow_unicode=True))
    return path


@pytest.fixture(scope="session")
def ov_bundles(tmp_path_factory):
    """intel-cpu (OpenVINO) fp32 and NNCF int8 bundles of the shipped model, packaged once."""
    out = tmp_path_factory.mktemp("ov-bundles")
    made = {}
    for key, quantize in (("fp32", "none"), ("int8", "int8")):
        made[key] = api.package(str(MODEL), "intel-cpu", out / f"digits-ov-{key}.edgepkg", "fp32", quantize,
                                calib=CALIB, eval_data=EVAL)
    return made


@pytest.fixture
def agent_cache(tmp_path, monkeypatch):
    """A private OpenVINO model cache for the agents this test starts (they inherit the environment)."""
    path = tmp_path / "agent-cache"
    monkeypatch.setenv("EDGEOPT_AGENT_CACHE", str(path))
    return path


@pytest.fixture(scope="module")
def torch_one_thread():
    """torch at one thread for a module's tests: on a busy 2-core machine its OpenMP workers spin-wait, and
    small convolutions ran several times slower at two threads."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@contextlib.contextmanager
def ctrl_c_works():
    """Around starting a child that a test interrupts: SIGINT not ignored in this process, so the child does not
    inherit it ignored. A test run started in the background of a non-interactive shell (`make test &`) has
    SIGINT ignored, and Python then installs no KeyboardInterrupt handler in the child: the signal would be
    lost, not the behaviour under test. (An ignored signal survives exec; a handler does not.)"""
    import signal
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)
