"""The device agent: a real subprocess, the real ONNX Runtime, honest numbers."""
import contextlib
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import FAST_BENCH_ARGS, FAST_LOOP, MODEL
from device_agent.measure.stats import percentile_interval, summarize
from edgeopt import agent_zipapp, api
from edgeopt.errors import BadInput, DeviceFailure

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_result_document_has_every_measured_field(int8_result):
    doc = int8_result
    assert doc["schema"] == "edgeopt.result/1" and doc["status"] == "ok"
    lat = doc["latency"]
    assert lat["n"] == len(lat["samples_ms"]) >= FAST_LOOP["min_iterations"]
    assert lat["min_ms"] <= lat["p50_ms"] <= lat["p90_ms"] <= lat["p95_ms"] <= lat["p99_ms"] <= lat["max_ms"]
    assert lat["ci95"]["p90_ms"][0] <= lat["p90_ms"] <= lat["ci95"]["p90_ms"][1]
    assert lat["first_inference_ms"] > 0 and lat["warmup_count"] >= 2
    assert lat["stopped_by"] in ("min_iterations_and_duration", "max_iterations", "max_duration")
    assert abs(lat["p50_ms"] - float(np.percentile(lat["samples_ms"], 50))) < 1e-9
    mem = doc["memory"]
    assert 0 < mem["rss_baseline_mb"] < mem["rss_after_import_mb"] <= mem["rss_after_load_mb"]
    assert mem["peak_rss_mb"] >= mem["rss_after_load_mb"] * 0.9 and mem["peak_scope"] == "timed loop"
    acc = doc["accuracy"]
    assert acc["n"] == 360 and acc["top1"] > 0.95 and abs(acc["drop"]) <= 0.01
    assert acc["max_abs_error"] < 1.0  # INT8 logits vs the source model's reference outputs
    assert doc["runtime"]["name"] == "onnxruntime" and doc["runtime"]["threads"] == doc["settings"]["threads"] >= 1
    assert doc["runtime"]["timed_call"].startswith("InferenceSession.run(None, feed)")   # runtimes time unlike calls
    assert doc["settings"]["threads_source"] == "physical cores of this device"
    assert doc["device"]["name"] == "local" and doc["device"]["arch"] and doc["device"]["python"]
    assert doc["bundle"]["compression"]["method"] == "static" and len(doc["bundle"]["manifest_sha256"]) == 64
    # No sensor here: absent with a reason, never a made-up zero.
    assert doc["power"]["available"] is False and doc["power"]["reason"]
    assert "mean_w" not in doc["power"]


def test_result_is_saved_and_json_flag_prints_only_the_document(cli, bundles, tmp_path):
    r = cli("bench", bundles["fp32"], "--results-dir", tmp_path, "--json", "--threads", "1", *FAST_BENCH_ARGS)
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    assert doc["settings"]["threads"] == 1 and doc["settings"]["threads_source"] == "command line"
    name = doc["bundle"]["name"]
    saved = tmp_path / f"{name}@local.json"
    assert json.loads(saved.read_text())["latency"]["p50_ms"] == doc["latency"]["p50_ms"]
    assert len(list((tmp_path / "history").glob(f"{name}@local-*.json"))) == 1


def test_agent_timeout_is_a_device_failure_and_the_result_is_kept(bundles, tmp_path, monkeypatch):
    from edgeopt import transport
    monkeypatch.setattr(transport, "MIN_TIMEOUT", 1.0)   # bench takes 10 s at least: this test need not wait them
    loop = dict(FAST_LOOP, min_seconds=0.5, min_iterations=10 ** 9, max_iterations=10 ** 9, max_seconds=120)
    with pytest.raises(DeviceFailure, match="did not finish within 1 s"):
        api.bench(bundles["fp32"], "local", tmp_path, loop=loop, timeout=1)
    # a timeout that cannot hold the loop's minimum time is refused before any work (it ran out, then exit 3)
    with pytest.raises(BadInput, match="--timeout 1 is not longer than the warm-up and timed loop"):
        api.bench(bundles["fp32"], "local", tmp_path / "early", loop=dict(FAST_LOOP, min_seconds=20), timeout=1)
    assert not (tmp_path / "early").exists()


def test_agent_child_timeout_yields_failed_document(bundles, tmp_path):
    agent = agent_zipapp.build()
    p = subprocess.run([sys.executable, str(agent), "bench", str(bundles["fp32"]), "--min-seconds", "60",
                        "--max-iterations", "1000000000", "--max-seconds", "120", "--timeout", "2"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 3
    doc = json.loads(p.stdout)
    assert doc["status"] == "failed" and "exceeded the 2 s timeout" in doc["error"]["message"]
    assert doc["device"]["hostname"]  # what was gathered before the failure is kept


def test_the_measuring_process_is_the_agents_own_not_a_device_agent_in_the_working_directory(bundles, tmp_path):
    """`python -m device_agent` put the working directory first on sys.path: a `device_agent` folder there (an
    old checkout, the device user's home over SSH) measured the bundle the real agent had verified."""
    agent = agent_zipapp.build()
    shadow = tmp_path / "home" / "device_agent"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("import sys\nsys.stderr.write('SHADOW AGENT\\n')\nsys.exit(7)\n")
    p = subprocess.run([sys.executable, str(agent), "bench", str(bundles["fp32"]), *FAST_BENCH_ARGS,
                        "--workdir", "work"], capture_output=True, text=True, timeout=120, cwd=tmp_path / "home")
    assert p.returncode == 0 and "SHADOW" not in p.stderr, p.stderr
    assert json.loads(p.stdout)["status"] == "ok"
    # under PYTHONSAFEPATH there is no working-directory entry to drop: the agent's own was dropped instead
    p = subprocess.run([sys.executable, str(agent), "bench", str(bundles["fp32"]), *FAST_BENCH_ARGS],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path / "home",
                       env=dict(os.environ, PYTHONSAFEPATH="1"))
    assert p.returncode == 0 and json.loads(p.stdout)["status"] == "ok", p.stderr


_CRASH = """import sys
if "_measure" in sys.argv:   # the measuring process only: its runtime segfaults in {where}
    import os, signal
    import device_agent.{module} as m
    owner, _, name = "{function}".rpartition(".")
    if name == "_exit_crash":   # the whole result saved, then the process dies as it exits
        import atexit
        atexit.register(lambda: os.kill(os.getpid(), signal.SIGSEGV))
    else:
        setattr(getattr(m, owner) if owner else m, name, lambda *a, **k: os.kill(os.getpid(), signal.SIGSEGV))
"""


@pytest.mark.parametrize("module, function, lost", [
    ("measure.accuracy", "evaluate", ["accuracy"]),
    ("runtimes.onnxruntime", "OnnxRuntimeAdapter.profile_layers", ["layer_profile", "accuracy"]),
    ("runtimes.onnxruntime", "OnnxRuntimeAdapter.close", []),   # every figure saved: nothing lost
    ("measure.run", "_exit_crash", []),                          # a crash at the interpreter's exit, too
    ("measure.latency", "timed_loop", None)])                    # before the timed loop ended: nothing to keep
def test_a_runtime_that_crashes_after_the_timed_loop_loses_that_pass_only(bundles, tmp_path, module, function, lost):
    """A segfault in the eval pass (or the OOM killer, or the timeout, in a later pass) lost the latency, memory
    and power figures already measured: measure.json was written once every pass had finished. Each pass's
    figures are saved as it ends (the throughput pass's survive a crash in the layer profile)."""
    agent = agent_zipapp.build()
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_CRASH.format(where=function, module=module, function=function))
    p = subprocess.run([sys.executable, str(agent), "bench", str(bundles["fp32"]), *FAST_BENCH_ARGS, "--throughput",
                        "--profile-layers"],
                       capture_output=True, text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(site)))
    doc = json.loads(p.stdout)
    if lost is None:
        assert p.returncode == 3 and doc["status"] == "failed" and "SIGSEGV" in doc["error"]["message"], doc
        return
    assert p.returncode == 0 and doc["status"] == "ok", p.stderr
    assert doc["latency"]["p50_ms"] > 0 and doc["memory"]["peak_rss_mb"] > 0 and doc["throughput"]["fps"] > 0
    for section in ("accuracy", "layer_profile"):
        assert (doc[section].get("available") is False and "killed by SIGSEGV" in doc[section]["reason"]) == \
            (section in lost), doc[section]
    said = [w for w in doc["warnings"] if "SIGSEGV" in w]
    assert len(said) == 1 and (f"not measured; the figures measured before it stand" in said[0] if lost else
                               said[0].endswith("after it had saved every figure")), said


_REFUSED_IN_THE_CHILD = """import sys
if "_measure" in sys.argv:   # the runtime refuses the bundle's settings as the measuring process loads it
    from device_agent import BundleError
    import device_agent.runtimes.onnxruntime as ort
    def refuse(self, path):
        raise BundleError("runtime option dla_core=0: the DLA runs FP16 or INT8 only; set fp16 or int8")
    ort.OnnxRuntimeAdapter.load = refuse
"""


def test_a_bundle_the_measuring_process_refuses_is_the_bundles_failure(bundles, tmp_path):
    """TensorRT's build settings are checked as the measuring process loads the model: its BundleError reached
    the agent as the device's failure (exit 3, kind device), where the same refusal elsewhere is exit 2."""
    agent = agent_zipapp.build()
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_REFUSED_IN_THE_CHILD)
    p = subprocess.run([sys.executable, str(agent), "bench", str(bundles["fp32"]), *FAST_BENCH_ARGS],
                       capture_output=True, text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(site)))
    doc = json.loads(p.stdout)
    assert p.returncode == 2 and doc["error"]["kind"] == "bundle" and "dla_core=0" in doc["error"]["message"], doc


def test_unreachable_device_is_exit_3_and_its_failure_is_saved(cli, bundles, tmp_path):
    r = cli("bench", bundles["fp32"], "--device", "edgeopt@127.0.0.1:1", "--results-dir", tmp_path)   # refused
    assert r.exit_code == 3
    errors = [line for line in r.stderr.splitlines() if line.startswith("edgeopt: error:")]
    assert len(errors) == 1 and "device edgeopt@127.0.0.1:1: cannot connect to" in errors[0]
    [latest] = tmp_path.glob(f"{bundles['fp32'].stem}@*.json")   # the device's name made safe for a file name
    saved = json.loads(latest.read_text())
    assert saved["status"] == "failed" and "cannot connect" in saved["error"]["message"]


def test_a_typed_host_that_does_not_resolve_is_bad_input_and_saves_nothing(cli, bundles, tmp_path):
    """A user review: `--device lcoal` was exit 3 with a failed result saved under that name, and every later
    `check results/*.json` then exited 3. A name in no inventory that does not resolve is a typo."""
    results = tmp_path / "results"
    for device in ("lcoal", "pi-kitchen.invalid"):
        r = cli("bench", bundles["fp32"], "--device", device, "--results-dir", results)
        assert r.exit_code == 2, r.stderr
        assert r.stderr.count("edgeopt: error:") == 1 and \
            f"device {device}: no inventory names it and the host {device} does not resolve" in r.stderr
    assert not results.exists()   # not even an empty results store
    assert "(did you mean `local`?)" in cli("bench", bundles["fp32"], "--device", "lcoal", "--results-dir",
                                          results).stderr


def test_device_name_that_is_no_address(cli, bundles):
    r = cli("bench", bundles["fp32"], "--device", "not a host!")
    assert r.exit_code == 2 and "is not in the inventory and is not an SSH address" in r.stderr


def test_probe_reports_device_facts(cli):
    r = cli("agent", "probe", "--json")
    assert r.exit_code == 0, r.stderr
    facts = r.json()
    assert facts["physical_cores"] >= 1 and facts["ram_mb"] > 0 and facts["runtimes"]["onnxruntime"]


def test_stats_percentiles_and_intervals():
    rng = np.random.default_rng(1)
    samples = rng.exponential(1.0, 5000)
    s = summarize(samples)
    for q in (50, 90, 95, 99):
        assert abs(s[f"p{q}_ms"] - np.percentile(samples, q)) < 1e-12
    true_p90 = -np.log(0.1)
    lo, hi = s["ci95"]["p90_ms"]
    assert lo < true_p90 < hi and hi - lo < 0.2
    small = summarize([1.0] * 15)
    assert "p99_ms" not in small and small["p99_ms_absent"] == "needs at least 100 samples, have 15"
    assert "p95_ms" not in small and "p90_ms" in small
    assert percentile_interval(sorted(samples[:20]), 99) is None
    # n >= 1/(1-q): 10 samples give a p90, 20 a p95 (1/(1-0.9) is 10.000000000000002 in floats: it asked for 11)
    assert "p90_ms" in summarize([1.0] * 10) and summarize([1.0] * 9)["p90_ms_absent"] == \
        "needs at least 10 samples, have 9"
    assert "p95_ms" in summarize([1.0] * 20) and "p99_ms" in summarize([1.0] * 100)


def test_device_agent_runs_on_python_3_8_syntax():
    vermin = pathlib.Path(sys.executable).parent / "vermin"
    p = subprocess.run([str(vermin), "--no-tips", "--violations", "-t=3.8-",
                        "--backport", "dataclasses", str(ROOT / "device_agent")], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


PY38 = os.environ.get("EDGEOPT_PY38_VENV", str(ROOT / ".cache" / "py38" / "bin" / "python"))


@pytest.mark.skipif(not os.path.exists(PY38), reason="no Python 3.8 venv with numpy+onnxruntime "
                    "(make test builds one at .cache/py38 from pyenv's 3.8.18)")
def test_zipapp_runs_under_python_3_8(bundles, tmp_path):
    agent = agent_zipapp.build(tmp_path / "agent.pyz")
    version = subprocess.run([PY38, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True)
    assert version.stdout.strip() == "(3, 8)"
    probe = subprocess.run([PY38, str(agent), "probe"], capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr
    assert json.loads(probe.stdout)["python"].startswith("3.8")
    bench = subprocess.run([PY38, str(agent), "bench", str(bundles["int8"]), "--min-iterations", "20",
                            "--min-seconds", "0", "--warmup-seconds", "0"], capture_output=True, text=True, timeout=300)
    assert bench.returncode == 0, bench.stderr
    doc = json.loads(bench.stdout)
    assert doc["status"] == "ok" and doc["device"]["python"].startswith("3.8")
    assert doc["accuracy"]["top1"] > 0.95 and doc["latency"]["n"] >= 20


def test_zipapp_is_self_contained_and_cached(tmp_path):
    first = agent_zipapp.build()
    assert agent_zipapp.build() == first and first.name.endswith(".pyz")
    copy = tmp_path / "agent.pyz"
    shutil.copyfile(first, copy)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    p = subprocess.run([sys.executable, "-I", str(copy), "probe"], capture_output=True, text=True, env=env,
                       cwd=tmp_path, timeout=120)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["arch"]


def test_a_cached_agent_cut_short_is_built_again(tmp_path, monkeypatch):
    """A cached agent cut short failed every bench after it ("source code cannot contain null bytes"), each saved
    as the device's failure (a walkthrough)."""
    monkeypatch.setenv("EDGEOPT_CACHE", str(tmp_path / "cache"))
    whole = agent_zipapp.build()
    size = whole.stat().st_size
    with open(whole, "r+b") as f:
        f.truncate(size // 2)
    assert agent_zipapp.build() == whole and whole.stat().st_size == size


def test_every_build_of_the_agent_is_byte_identical(tmp_path):
    """A zip keeps its files' mtimes, which were the build's: a fleet's first run built the agent in every
    device's thread at once, and an upload hashed from one build sent another's bytes (refused on the device as
    corrupt; a security review)."""
    import time
    first = agent_zipapp.build(tmp_path / "a.pyz")
    time.sleep(2.1)   # zip times have a 2 s resolution
    assert agent_zipapp.build(tmp_path / "b.pyz").read_bytes() == first.read_bytes()


def test_a_bundles_own_thread_count_is_credited_to_the_bundle(cli, tmp_path):
    """`package --threads 1` for the Pi (profile: 4) benched as "1 thread (profile)"."""
    bundle = tmp_path / "one.edgepkg"
    assert cli("package", MODEL, "--threads", "1", "-o", bundle, "-q").exit_code == 0
    doc = cli("bench", bundle, "--results-dir", tmp_path, "--json", *FAST_BENCH_ARGS).json()
    assert doc["settings"]["threads"] == 1 and doc["settings"]["threads_source"] == "bundle"


def test_peak_memory_does_not_grow_with_the_eval_data_shipped(cli, tmp_path):
    """The timed loop's first call was a view into every eval array, which kept them alive through the loop: one
    model read peak RSS 69.7 MiB with no eval data and 225.2 MiB with 1500 samples shipped (a user review), and a
    Pi's 256 MiB budget failed on memory the model never uses."""
    rng = np.random.default_rng(0)
    big = tmp_path / "big.npz"   # 80 000 samples: 20 MiB of images, each copy of them would show
    np.savez(big, image=rng.standard_normal((80_000, 1, 8, 8)).astype(np.float32),
             labels=rng.integers(0, 10, 80_000))
    peaks = {}
    for name, data in (("none", []), ("big", ["--eval-data", big])):
        bundle = tmp_path / f"{name}.edgepkg"
        assert cli("package", MODEL, *data, "-o", bundle, "-q").exit_code == 0
        r = cli("bench", bundle, "--results-dir", tmp_path / "r", "--threads", "1", *FAST_BENCH_ARGS, "--json")
        assert r.exit_code == 0, r.stderr
        peaks[name] = r.json()["memory"]["peak_rss_mb"]
    assert peaks["big"] - peaks["none"] < 8, peaks


@contextlib.contextmanager
def _held(make_lock, seconds: float = 60, while_held=lambda: None):
    """A lock held in a thread, as another benchmark holds it, until the event yielded is set."""
    import threading

    held, release = threading.Event(), threading.Event()

    def hold():
        with make_lock():
            while_held()
            held.set()
            release.wait(seconds)
    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(10)
    try:
        yield release
    finally:
        release.set()
        holder.join()


def _local_device_held(seconds: float = 60):
    """This host's `local` device held, as another benchmark holds it, until the event yielded is set."""
    from device_agent.lock import DeviceLock
    from edgeopt.transport.local import LocalTransport
    return _held(lambda: DeviceLock(LocalTransport("local").lock_path(), 10), seconds)


def test_a_result_is_stamped_when_it_was_measured_not_when_it_began_to_wait(bundles, tmp_path):
    """Two benches on one host: the second waits for the lock, and its `created` said when it started waiting."""
    import datetime
    import threading

    with _local_device_held(10) as release:
        threading.Timer(3.0, release.set).start()
        started = datetime.datetime.now(datetime.timezone.utc)
        doc = api.bench(bundles["fp32"], "local", tmp_path / "results", loop=FAST_LOOP)
    assert (datetime.datetime.fromisoformat(doc["created"]) - started).total_seconds() >= 2.5


def test_a_bench_of_another_workdir_or_login_on_the_machine_waits_for_the_one_measuring(bundles, tmp_path,
                                                                                         monkeypatch):
    """Each workdir had its own lock: two inventory entries of one board (two venvs, two workdirs), two logins, or
    `local` under two HOMEs measured at once, each reading the other's load. Every agent also takes the machine's
    lock, after its own: held here as another workdir's agent holds it, the bench waits, then measures."""
    import datetime
    import threading

    from device_agent.lock import MACHINE_LOCK, MachineLock

    monkeypatch.delenv("EDGEOPT_MACHINE_LOCK", raising=False)   # the agent's own default, /tmp's
    with _held(lambda: MachineLock(MACHINE_LOCK, 10)) as release:   # another workdir's agent measuring
        threading.Timer(3.0, release.set).start()
        started = datetime.datetime.now(datetime.timezone.utc)
        doc = api.bench(bundles["fp32"], "local", tmp_path / "results", loop=FAST_LOOP)
    assert doc["status"] == "ok"
    assert (datetime.datetime.fromisoformat(doc["created"]) - started).total_seconds() >= 2.5
    assert not any("not serialised" in w for w in doc["warnings"])


def test_the_machine_lock_is_waited_for_within_what_is_left_of_the_wait(bundles, tmp_path, monkeypatch):
    """The host gives up on the agent just after --lock-wait (transport.base.lock_wait): the workdir's lock and
    then the machine's each waited that long, and the host gave up first, unsaid."""
    import threading

    from device_agent import bench
    from device_agent.lock import DeviceLock, MachineLock
    from device_agent.measure.latency import LoopSettings

    machine, workdir = str(tmp_path / "machine.lock"), str(tmp_path / "workdir.lock")
    held, release = threading.Event(), threading.Event()

    def other():   # another login holds the machine; a bench of this workdir holds ours for 3 s
        with MachineLock(machine, 1):
            with DeviceLock(workdir, 1):
                held.set()
                time.sleep(3.0)
            release.wait(60)
    monkeypatch.setattr(bench, "probe", lambda: {})   # the refusal's document, at once
    holder = threading.Thread(target=other)
    holder.start()
    try:
        assert held.wait(10)
        began = time.monotonic()
        doc, code = bench.run(str(bundles["fp32"]), LoopSettings(), lock=workdir, lock_wait=6.0,
                              machine_lock=machine, workdir=str(tmp_path / "runs"))
        waited = time.monotonic() - began
    finally:
        release.set()
        holder.join()
    assert code != 0 and "another edgeopt benchmark on this machine" in doc["error"]["message"], doc.get("error")
    assert 5.8 <= waited < 7.5, waited   # each lock its own 6 s: 9 s


def test_the_machine_lock_is_a_plain_file_others_can_lock_and_never_a_link(tmp_path):
    """The machine's lock lies in /tmp, which every login writes: a link planted there is not followed (its
    target would be truncated for the holder line), a hard link to another file is not used, and a new lock file
    is writable by every login whatever the umask. The run goes on, unserialised, and says why."""
    from device_agent.lock import MachineLock

    victim = tmp_path / "victim"
    victim.write_text("keep me")
    (tmp_path / "symlink.lock").symlink_to(victim)
    os.link(victim, tmp_path / "hardlink.lock")
    os.mkfifo(tmp_path / "fifo.lock")   # its open blocked for good, past --lock-wait (a review)
    for planted in ("symlink.lock", "hardlink.lock", "fifo.lock"):
        with MachineLock(str(tmp_path / planted), 1) as machine:
            assert machine.fd is None
            assert len(machine.warnings) == 1 and "not serialised" in machine.warnings[0], machine.warnings
    assert victim.read_text() == "keep me"
    old = os.umask(0o077)
    try:
        with MachineLock(str(tmp_path / "new.lock"), 1) as machine:
            assert machine.fd is not None and not machine.warnings
    finally:
        os.umask(old)
    assert (tmp_path / "new.lock").stat().st_mode & 0o777 == 0o666
    assert re.fullmatch(rf"pid {os.getpid()} since \d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\dZ",   # UTC, said so
                        (tmp_path / "new.lock").read_text())
    from device_agent.lock import DeviceBusy
    any_login_writes = lambda: (tmp_path / "new.lock").write_text("x" * 1_000_000)   # a 20 MB holder line was said
    with _held(lambda: MachineLock(str(tmp_path / "new.lock"), 1), 30, any_login_writes):
        with pytest.raises(DeviceBusy) as busy:
            with MachineLock(str(tmp_path / "new.lock"), 0.5, 4.0):
                pass
    assert len(str(busy.value)) < 500 and "what the workdir's lock left of --lock-wait 4 s" in str(busy.value)


def test_a_measured_result_says_that_the_machines_lock_could_not_be_used(bundles, tmp_path):
    """The lock's warning was dropped from every result that measured (a review): the run writes its warnings
    anew."""
    from device_agent import bench
    from device_agent.measure.latency import LoopSettings

    (tmp_path / "planted.lock").symlink_to(tmp_path / "elsewhere")
    doc, code = bench.run(str(bundles["fp32"]), LoopSettings(min_iterations=20, min_seconds=0.0, max_iterations=50),
                          lock=str(tmp_path / "workdir.lock"), lock_wait=5.0,
                          machine_lock=str(tmp_path / "planted.lock"), workdir=str(tmp_path / "runs"))
    assert code == 0 and doc["status"] == "ok", doc.get("error")
    assert any(w.startswith("not serialised with edgeopt benchmarks of other workdirs") for w in doc["warnings"])


def test_a_bundle_rebuilt_while_its_bench_waits_for_the_device_is_measured_as_it_began(bundles, tmp_path):
    """A bench waiting for `local` while `package` rewrote its bundle failed "changed in transit, refused" (exit 2)
    and saved that as its result (a walkthrough): it measures the bundle as it was when it began."""
    import threading

    import glob
    import tempfile

    from edgeopt import bundle as bundles_

    ours = tmp_path / "x.edgepkg"
    shutil.copy(bundles["int8"], ours)
    began = bundles_.manifest_sha256(ours)
    pins = os.path.join(tempfile.gettempdir(), f"edgeopt-pin-{os.getpid()}-*", "x.edgepkg")
    with _local_device_held() as release:
        def rebuild():   # as `package` writes: a new file renamed over the old one, once the bench has begun
            deadline = time.monotonic() + 60
            while not glob.glob(pins) and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)
            shutil.copy(bundles["fp32"], tmp_path / "new.edgepkg")
            os.replace(tmp_path / "new.edgepkg", ours)
            release.set()
        threading.Thread(target=rebuild).start()
        doc = api.bench(ours, "local", tmp_path / "results", loop=FAST_LOOP)
    assert doc["status"] == "ok" and doc["bundle"]["manifest_sha256"] == began
    assert bundles_.manifest_sha256(ours) != began   # the rebuilt one is there for the next bench
    assert not glob.glob(os.path.join(tempfile.gettempdir(), f"edgeopt-pin-{os.getpid()}-*"))   # its copy went


def test_an_agent_waiting_for_the_device_ends_once_its_host_is_gone(bundles, tmp_path):
    """A host killed while its agent waited for the device's lock (kill -9, the OOM killer; over SSH, a session
    sshd does not end) left the agent waiting for nobody, then taking the device and measuring (a walkthrough).
    Its heartbeat finds the host's end of its stderr closed and the agent ends."""
    import signal

    import psutil

    with _local_device_held():
        host = subprocess.Popen([sys.executable, "-m", "edgeopt", "bench", str(bundles["fp32"]), "--results-dir",
                                 str(tmp_path / "results"), "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        agent = []
        while not agent and time.monotonic() < deadline:
            agent = [p for p in psutil.Process(host.pid).children(recursive=True) if "bench" in p.cmdline()]
            time.sleep(0.2)
        assert agent, "no agent ever waited"
        time.sleep(1.0)
        host.send_signal(signal.SIGKILL)   # its agent has a session of its own: no signal reaches it
        host.wait()
        _, alive = psutil.wait_procs(agent, timeout=15)   # a heartbeat every 2 s
        assert not alive, [p.cmdline() for p in alive]


def test_a_disk_that_fills_up_while_measuring_is_said_as_such(monkeypatch, tmp_path):
    """The measuring process's save failed with ENOSPC and the agent said "failed with exit code 1 (its error is
    above)" of an error the host shows only under --debug (a walkthrough): it exits NO_SPACE_EXIT, which the agent
    words as a full disk, keeping any figures saved before."""
    import errno
    from device_agent import AgentError, bench
    from device_agent.bundle import NO_SPACE_EXIT
    from device_agent.measure import run

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "measure.json.tmp"))
    monkeypatch.setattr(run, "_main", full)
    with pytest.raises(SystemExit) as e:
        run.main("root", "out", "1", "{}", "0", "{}")
    assert e.value.code == NO_SPACE_EXIT
    said = "no space left on this device while measuring: the measuring process could not save its figures in"
    with pytest.raises(AgentError, match=said):
        bench._kept({}, bench._describe_exit(NO_SPACE_EXIT, str(tmp_path)))
    partial = bench._kept({"pending": ["accuracy"], "latency": {"p50_ms": 1.0}},
                          bench._describe_exit(NO_SPACE_EXIT, str(tmp_path)))
    assert partial["latency"] == {"p50_ms": 1.0} and said in partial["accuracy"]["reason"]


def test_a_device_error_naming_the_stored_bundle_names_the_users_file(bundles):
    """"no space left on this device to unpack bundle 1082f84d….edgepkg" named the device store's hash, not the
    user's file (a walkthrough). A transport whose agent answers that, as a full disk's agent does."""
    from edgeopt.transport.base import Transport

    class Answers(Transport):
        device = "pi"

        def put(self, local, kind):
            return f"/home/pi/.cache/edgeopt/store/{'ab' * 32}.{'edgepkg' if kind == 'bundle' else 'pyz'}"

        def run(self, argv, on_line, timeout):
            message = f"no space left on this device to unpack bundle {'ab' * 32}.edgepkg into /w/runs/x"
            return 3, json.dumps({"schema": "edgeopt.result/1", "status": "failed",
                                  "error": {"message": message, "exit_code": 3, "kind": "device"}})

        def workdir(self):
            return "/home/pi/.cache/edgeopt"

        def python(self):
            return "python3"

    doc, code = Answers().bench(bundles["fp32"], [], timeout=60)
    assert code == 3 and doc["error"]["message"].startswith(
        f"no space left on this device to unpack bundle {bundles['fp32'].name} (on the device {'ab' * 32}.edgepkg)")
