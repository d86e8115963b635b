"""Shared helpers for the benchmark scripts: packaging, measuring, bare loops, tables, results."""
from __future__ import annotations

import datetime
import json
import pathlib
import platform
import statistics
import subprocess
import sys
import tarfile

HERE = pathlib.Path(__file__).resolve().parent
CACHE = HERE / ".cache"
RESULTS = HERE / "results"
PYTHON = sys.executable


def package(model, name, **kwargs) -> dict:
    """edgeopt.api.package into the cache; the manifest (with its `path`)."""
    from edgeopt import api

    return api.package(str(model), "generic", output=CACHE / "bundles" / f"{name}.edgepkg", name=name, **kwargs)


def agent_bench(bundle, threads, loop) -> dict:
    """One agent measurement through the public API (agent zipapp -> fresh measuring process)."""
    from edgeopt import api

    return api.bench(bundle, "local", CACHE / "agent-results", threads=threads, loop=loop)


def model_bytes(manifest) -> int:
    return sum(f["bytes"] for f in manifest["files"] if f["role"] == "model")


def extract_model(bundle, dest) -> pathlib.Path:
    """The bundle's model/model.onnx, written to `dest` (the exact file the agent measures)."""
    dest = pathlib.Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(bundle) as tar:
        dest.write_bytes(tar.extractfile("model/model.onnx").read())
    return dest


def bare_loop(model, threads, loop) -> dict:
    """bare_loop.py in a fresh process: {"p50_ms", "mean_ms", "n"}."""
    out = subprocess.run([PYTHON, str(HERE / "bare_loop.py"), str(model), str(threads), json.dumps(loop)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


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
    return {"date": datetime.date.today().isoformat(), "cpu": cpu, "logical_cpus": len(_affinity()),
            "machine": platform.machine(), "versions": versions}


def _affinity():
    import os
    return os.sched_getaffinity(0)


def save(name, data) -> pathlib.Path:
    """benchmarks/results/NAME.json: summary figures only (no raw samples), small enough to commit."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(dict(data, environment=environment()), indent=1) + "\n")
    return path
