"""Shared helpers for the benchmark scripts: packaging, measuring, bare loops, tables, results."""
from __future__ import annotations

import datetime
import json
import os
import pathlib
import platform
import random
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
CACHE = HERE / ".cache"
RESULTS = HERE / "results"
PYTHON = sys.executable
MAX_FOREIGN = 0.05  # share of all CPUs other processes may take during a kept measurement
MAX_TRIES = 4


def package(model, name, profile="generic", **kwargs) -> dict:
    """edgeopt.api.package for `profile` into the cache; the manifest (with its `path`)."""
    from edgeopt import api

    return api.package(str(model), profile, output=CACHE / "bundles" / f"{name}.edgepkg", name=name, **kwargs)


def agent_bench(bundle, threads, loop) -> dict:
    """One agent measurement through the public API (agent zipapp -> fresh measuring process)."""
    from edgeopt import api

    with tempfile.TemporaryDirectory(prefix="edgeopt-bench-results-") as results:  # full docs: not kept
        return api.bench(bundle, "local", results, threads=threads, loop=loop)


def model_bytes(manifest) -> int:
    return sum(f["bytes"] for f in manifest["files"] if f["role"] == "model")


def extract_model(bundle, dest, member="model/model.onnx") -> pathlib.Path:
    """The bundle's `member` (model/model.onnx, model/model.tflite), written to `dest` (the exact
    file the agent measures)."""
    dest = pathlib.Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(bundle) as tar:
        dest.write_bytes(tar.extractfile(member).read())
    return dest


def bare_loop(model, threads, loop) -> dict:
    """bare_loop.py in a fresh process: {"p50_ms", "mean_ms", "n"}."""
    out = subprocess.run([PYTHON, str(HERE / "bare_loop.py"), str(model), str(threads), json.dumps(loop)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def _cpu_jiffies():
    """(busy, total) CPU time of the whole machine, in seconds, from /proc/stat's first line."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(fields) - fields[3] - fields[4]) / hz, sum(fields) / hz


def _own_cpu():
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def wait_for_quiet(max_busy=0.10, windows=3, timeout=60.0):
    """Wait until the machine is at most `max_busy` busy for `windows` half-seconds in a row;
    False on timeout (the measurement then goes ahead and `checked` judges it)."""
    deadline, quiet = time.monotonic() + timeout, 0
    while time.monotonic() < deadline and quiet < windows:
        busy0, total0 = _cpu_jiffies()
        time.sleep(0.5)
        busy1, total1 = _cpu_jiffies()
        quiet = quiet + 1 if (busy1 - busy0) / max(total1 - total0, 1e-9) <= max_busy else 0
    return quiet >= windows


def checked(fn, max_foreign=None, tries=None):
    """Run fn() until the CPU share used by processes other than ours (and our children, which
    include the agent and its measuring process) stays under `max_foreign` during it.

    Returns (fn's value, the foreign share of the kept try, the number of tries)."""
    max_foreign, tries = max_foreign or MAX_FOREIGN, tries or MAX_TRIES
    for attempt in range(1, tries + 1):
        wait_for_quiet()
        busy0, total0 = _cpu_jiffies()
        own0 = _own_cpu()
        value = fn()
        busy1, total1 = _cpu_jiffies()
        foreign = max(0.0, (busy1 - busy0) - (_own_cpu() - own0)) / max(total1 - total0, 1e-9)
        if foreign <= max_foreign or attempt == tries:
            break
        print(f"  (other load took {foreign:.0%} of the CPUs during a measurement: repeating it)", file=sys.stderr)
        time.sleep(random.uniform(0, 3))  # out of step with another benchmark that also waits for quiet
    return value, foreign, attempt


def disturbed_note(shares, limit=MAX_FOREIGN) -> str:
    """A line for the tables: how many kept measurements still ran beside other load."""
    bad = sum(1 for s in shares if s > limit)
    if not bad:
        return f"All {len(shares)} measurements ran with other processes under {limit:.0%} of the CPUs."
    return (f"**{bad} of {len(shares)} measurements ran beside other load (over {limit:.0%} of the CPUs, "
            f"up to {max(shares):.0%}) after {MAX_TRIES} tries: those figures are less trustworthy.**")


def interleaved(calls: dict, seconds: float) -> dict:
    """{name: [seconds of each call]}: every callable of `calls` called in turn, round after round, for
    `seconds`, so that a neighbour's load or the host's drift hits them alike."""
    times = {name: [] for name in calls}
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return times


def median(values):
    return statistics.median(values)


def md_table(headers, rows) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def environment() -> dict:
    """Date, CPU, versions: what every results file records."""
    import numpy
    import onnxruntime

    import edgeopt

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    versions = {"python": platform.python_version(), "numpy": numpy.__version__,
                "onnxruntime": onnxruntime.__version__, "edgeopt": edgeopt.__version__}
    try:
        import torch
        versions["torch"] = torch.__version__
    except ImportError:
        pass
    return {"date": datetime.date.today().isoformat(), "commit": _commit(), "cpu": cpu,
            "logical_cpus": len(os.sched_getaffinity(0)), "machine": platform.machine(), "versions": versions}


def _commit() -> str:
    """The checkout's commit, with "+local changes" when the working tree differs (read-only git)."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=HERE, capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + (" +local changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def save(name, data, markdown: str | None = None) -> pathlib.Path:
    """benchmarks/results/NAME.json: summary figures only (no raw samples), small enough to commit; and
    NAME.md beside it when the script renders its table."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(dict(data, environment=environment()), indent=1) + "\n")
    if markdown is not None:
        (RESULTS / f"{name}.md").write_text(markdown + "\n")
    return path
