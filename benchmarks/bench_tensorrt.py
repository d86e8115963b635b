"""TensorRT on an NVIDIA GPU: the agent's `tensorrt` adapter against `trtexec` on the same engine, FP16 and INT8
against FP32, engine build time against a cache hit, NVML board power idle and under load, and the engine's
outputs against ONNX Runtime's on the host.

A data-centre GPU stands in for a Jetson here (issue 16): the figures say what the agent measures and how it
compares with NVIDIA's own tool on one engine; a Jetson gives other latencies, and its power comes from the
INA3221 rails, not NVML.

Three steps, because the GPU machine has no network and no edgeopt install:

    PYTHONPATH=. .venv/bin/python benchmarks/bench_tensorrt.py prepare DIR
        # host: the two zoo models (tests/zoo: MobileNetV2 224x224 and YOLOv8n 320x320, random weights) packaged
        # for jetson-orin-nano as FP32 and INT8 (QDQ) bundles, and ONNX Runtime's outputs for 2 random inputs
    python3 benchmarks/bench_tensorrt.py device DIR OUT --trtexec PATH
        # GPU machine (Python 3.8+ with numpy, tensorrt, cuda-python, nvidia-ml-py and this repository):
        # per model and precision, `python -m device_agent bench` twice (build, then cache hit), the outputs
        # against the host's, and trtexec --loadEngine on the engine the agent cached; OUT/tensorrt.json
    PYTHONPATH=. .venv/bin/python benchmarks/bench_tensorrt.py report OUT/tensorrt.json
        # host: benchmarks/results/tensorrt.json and .md

FP16 uses the FP32 bundle with `--runtime-option fp16=true` (a FP16 bundle holds the same FP32 ONNX and differs
only in that build setting). The device step writes its JSON after each engine, so a run cut short keeps what it
measured.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PROFILE = "jetson-orin-nano"
MODELS = {"mobilenet_v2": ("tests/zoo/models.py", "mobilenet_v2", {}, (1, 3, 224, 224)),
          "yolov8n": ("tests/zoo/models2.py", "yolov8n", {"image": 320}, (1, 3, 320, 320))}
PRECISIONS = {"fp32": ("fp32", {}), "fp16": ("fp32", {"fp16": True}), "int8": ("int8", {})}
REFERENCE_INPUTS = 2
LOOP = ["--min-seconds", "3", "--max-seconds", "4", "--warmup-seconds", "0.5", "--idle-seconds", "3"]
TRTEXEC_ARGS = ["--duration=3", "--warmUp=500"]


# --- host: bundles and reference outputs -------------------------------------------------------------------

def prepare(out):
    import numpy as np
    import torch

    from edgeopt import api
    from edgeopt.convert.onnxruntime import ort_runner

    sys.path.insert(0, os.path.join(HERE, "..", "tests"))
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(0)
    for name, (path, fn, kwargs, shape) in MODELS.items():
        module = __import__("zoo." + os.path.basename(path)[:-3], fromlist=[fn])
        model = getattr(module, fn)(**kwargs).eval()
        onnx_path = os.path.join(out, name + ".onnx")
        torch.onnx.export(model, torch.zeros(shape), onnx_path, input_names=["input"], opset_version=17,
                          dynamo=False)
        calib = os.path.join(out, name + "-calib.npz")   # random calibration: these weights are random too
        np.savez(calib, input=rng.standard_normal((32,) + shape[1:]).astype(np.float32))
        for quantize in ("none", "int8"):
            bundle = os.path.join(out, "%s-%s.edgepkg" % (name, "fp32" if quantize == "none" else "int8"))
            api.package(onnx_path, PROFILE, output=bundle, name=name, precision="fp32", quantize=quantize,
                        calib=calib if quantize == "int8" else None)
        os.remove(calib)
        inputs = rng.standard_normal((REFERENCE_INPUTS,) + shape).astype(np.float32)
        run = ort_runner(onnx_path)
        outputs = np.stack([run({"input": x})[0] for x in inputs])
        np.savez(os.path.join(out, name + "-reference.npz"), inputs=inputs, outputs=outputs)
        os.remove(onnx_path)
        print("prepared", name, flush=True)


# --- GPU machine: the agent, its engine against the host's outputs, and trtexec on that engine ---------------

def device(bundles, out, trtexec, models, precisions, runs=None):
    """OUT/tensorrt.json, rewritten after each engine; each agent result in full to RUNS (default OUT)."""
    runs = runs or out
    for d in (out, runs):
        os.makedirs(d, exist_ok=True)
    doc = {"gpu": _nvidia_smi(), "trtexec_args": TRTEXEC_ARGS, "agent_loop": LOOP, "cells": []}
    save = os.path.join(out, "tensorrt.json")
    for name in models:
        for precision in precisions:
            cell = {"model": name, "precision": precision}
            doc["cells"].append(cell)
            try:
                _cell(cell, bundles, runs, trtexec)
            except Exception as e:  # noqa: BLE001 - one cell's failure is recorded; the others still run
                cell["error"] = "%s: %s" % (type(e).__name__, e)
            with open(save, "w") as f:
                json.dump(doc, f, indent=1)
            print(json.dumps({k: cell.get(k) for k in ("model", "precision", "error")}), flush=True)
    return doc


def _cell(cell, bundles, out, trtexec):
    bundle_kind, options = PRECISIONS[cell["precision"]]
    bundle = os.path.join(bundles, "%s-%s.edgepkg" % (cell["model"], bundle_kind))
    runs = []
    try:
        for attempt in ("build", "cache hit"):
            runs.append(_agent_bench(bundle, options, os.path.join(out, "%s-%s-%s.json" % (
                cell["model"], cell["precision"], attempt.replace(" ", "-")))))
    except Exception:
        if not runs:   # no engine: does TensorRT itself build this ONNX? (the answer goes beside the error)
            cell["trtexec_from_onnx"] = _trtexec_from_onnx(trtexec, bundle, dict(options, int8=bundle_kind == "int8"))
        raise
    cell["agent"] = [_agent_figures(r) for r in runs]
    engine = runs[1]["runtime"]["engine"]["path"]
    cell["engine_mb"] = os.path.getsize(engine) / 1048576.0
    cell["outputs"] = _against_reference(bundle, options, os.path.join(bundles, cell["model"] + "-reference.npz"))
    cell["trtexec"] = _trtexec(trtexec, engine)


def _agent_bench(bundle, options, save):
    cmd = [sys.executable, "-m", "device_agent", "bench", bundle, "--power-sensor", "nvml", "--no-accuracy"] + LOOP
    for key, value in sorted(options.items()):
        cmd += ["--runtime-option", "%s=%s" % (key, json.dumps(value))]
    for key, value in sorted(_extra_options().items()):
        cmd += ["--runtime-option", "%s=%s" % (key, value)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    if proc.returncode != 0:
        raise RuntimeError("agent bench exited %d: %s" % (proc.returncode, proc.stderr.strip()[-600:]))
    doc = json.loads(proc.stdout)
    doc["wall_s"] = time.perf_counter() - t0
    with open(save, "w") as f:
        json.dump(doc, f)
    return doc


def _extra_options():
    """KEY=VALUE runtime options from $BENCH_TRT_OPTIONS (comma-separated), e.g. library_tactics=off where the
    GPU machine has no cuBLAS/cuDNN of the TensorRT's CUDA version."""
    text = os.environ.get("BENCH_TRT_OPTIONS", "")
    return dict(item.split("=", 1) for item in text.split(",") if "=" in item)


def _agent_figures(doc):
    rt, lat, power = doc["runtime"], doc["latency"], doc.get("power") or {}
    return {"wall_s": doc["wall_s"], "load_ms": lat.get("load_ms"), "engine": rt.get("engine"),
            "latency_median_ms": lat.get("p50_ms"), "latency_p99_ms": lat.get("p99_ms"), "n": lat.get("n"),
            "gpu_compute": rt.get("gpu_compute"), "gpu_memory": rt.get("gpu_memory"), "tensorrt": rt.get("version"),
            "gpu": rt.get("gpu"), "api": rt.get("api"), "settings": rt.get("settings"),
            "settings_not_applied": rt.get("settings_not_applied"),
            "power": {k: v for k, v in power.items() if not k.startswith("rails")}}


def _against_reference(bundle, options, reference):
    """The engine's outputs for the host's inputs against ONNX Runtime's on the host: SQNR (dB), the largest
    difference relative to the reference's range, and top-1 agreement over the first output's last axis."""
    import numpy as np

    from device_agent.bundle import load_manifest
    from device_agent.runtimes.tensorrt import TensorRtAdapter

    ref = np.load(reference)
    with _unpacked(bundle) as tmp:
        manifest = load_manifest(tmp)
        adapter = TensorRtAdapter(1, dict(manifest["runtime"]["options"], **dict(options, **_extra_options())))
        adapter.load(os.path.join(tmp, *manifest["model"].split("/")))
        got = np.stack([adapter.infer({"input": x})[0] for x in ref["inputs"]])
        cache_hit = adapter.describe()["engine"]["cache_hit"]
        adapter.close()
    want = ref["outputs"].astype(np.float64)
    noise = float(np.sum((got - want) ** 2))
    sqnr = float("inf") if noise == 0 else 10 * np.log10(float(np.sum(want ** 2)) / noise)
    flat_got, flat_want = got.reshape(len(got), -1), want.reshape(len(want), -1)
    top1 = float(np.mean(np.argmax(flat_got, 1) == np.argmax(flat_want, 1)))
    return {"sqnr_db": sqnr, "max_abs_over_range": float(np.max(np.abs(got - want)) / (np.ptp(want) or 1.0)),
            "top1_agreement": top1, "n": int(len(got)), "engine_from_cache": cache_hit}


@contextlib.contextmanager
def _unpacked(bundle):
    """A temporary directory holding the bundle's files."""
    import tarfile
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(bundle) as tar:
            tar.extractall(tmp)
        yield tmp


TRTEXEC_LINE = re.compile(r"(Latency|GPU Compute Time|H2D Latency|D2H Latency|Enqueue Time): min = ([0-9.]+) ms, "
                          r"max = ([0-9.]+) ms, mean = ([0-9.]+) ms, median = ([0-9.]+) ms")
TRTEXEC_QPS = re.compile(r"Throughput: ([0-9.]+) qps")


def _trtexec(trtexec, engine):
    cmd = [trtexec, "--loadEngine=" + engine] + TRTEXEC_ARGS
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    return dict(parse_trtexec(proc.stdout), command=" ".join(cmd[:1] + ["--loadEngine=ENGINE"] + cmd[2:]),
                exit_code=proc.returncode, tail=proc.stdout.strip().splitlines()[-3:])


def _trtexec_from_onnx(trtexec, bundle, options):
    with _unpacked(bundle) as tmp:
        flags = ["--fp16"] * bool(options.get("fp16")) + ["--int8"] * bool(options.get("int8"))
        model = os.path.join(tmp, "model", "model.onnx")   # tactic sources as library_tactics=off sets them
        cmd = [trtexec, "--onnx=" + model, "--tacticSources=-CUBLAS,-CUBLAS_LT,-CUDNN"]
        proc = subprocess.run(cmd + flags + TRTEXEC_ARGS, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              universal_newlines=True)
    return dict(parse_trtexec(proc.stdout), exit_code=proc.returncode, tail=proc.stdout.strip().splitlines()[-8:])


def parse_trtexec(text):
    """{"Latency": {"min_ms", "max_ms", "mean_ms", "median_ms"}, "GPU Compute Time": ..., "qps": ...} of
    trtexec's performance summary (the last one printed)."""
    out = {}
    for m in TRTEXEC_LINE.finditer(text):
        out[m.group(1)] = dict(zip(("min_ms", "max_ms", "mean_ms", "median_ms"), map(float, m.groups()[1:])))
    qps = TRTEXEC_QPS.findall(text)
    if qps:
        out["qps"] = float(qps[-1])
    return out


def _nvidia_smi():
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,power.limit,clocks.max.sm",
                               "--format=csv,noheader"], stdout=subprocess.PIPE, universal_newlines=True,
                              timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError) as e:
        return "nvidia-smi failed: %s" % e


# --- host: the table --------------------------------------------------------------------------------------

def report(path):
    sys.path.insert(0, HERE)
    from common import md_table, save

    with open(path) as f:
        doc = json.load(f)
    rows = []
    fp32 = {c["model"]: c for c in doc["cells"] if c["precision"] == "fp32" and "error" not in c}
    for c in doc["cells"]:
        if "error" in c:
            rows.append([c["model"], c["precision"], _failure(c)] + [""] * 9)
            continue
        build, hit = c["agent"]
        gpu, e2e = hit["gpu_compute"]["median_ms"], hit["latency_median_ms"]
        t = c["trtexec"]
        t_gpu, t_e2e = t.get("GPU Compute Time", {}).get("median_ms"), t.get("Latency", {}).get("median_ms")
        base = fp32.get(c["model"])
        speed = base["agent"][1]["gpu_compute"]["median_ms"] / gpu if base else None
        p = hit["power"]
        rows.append([c["model"], c["precision"], "%.3f" % gpu, _f(t_gpu, 3), _ratio(gpu, t_gpu), "%.3f" % e2e,
                     _f(t_e2e, 3), _ratio(e2e, t_e2e), _f(speed, 2) + "x" if speed else "",
                     "%.1f s / %.2f s" % (build["engine"]["build_s"] + build["engine"]["deserialize_s"],
                                          hit["engine"]["deserialize_s"]),
                     "%s / %s W, %s mJ" % (_f(p.get("idle_w"), 0), _f(p.get("mean_w"), 0),
                                           _f(p.get("energy_mj_per_inference"), 3)),
                     "%.1f dB, top-1 %.0f%%" % (c["outputs"]["sqnr_db"], 100 * c["outputs"]["top1_agreement"])])
    table = md_table(["model", "precision", "agent GPU ms", "trtexec GPU ms", "ratio", "agent e2e ms",
                      "trtexec e2e ms", "ratio", "vs FP32", "build / cache hit", "NVML idle / load, per inference",
                      "outputs vs ORT"], rows)
    save("tensorrt", doc, table)
    print(table)


def _failure(cell):
    """The first TensorRT error line of a failed cell (or why it did not run), and what trtexec said."""
    lines = [line for line in cell["error"].splitlines() if "Error Code 10" in line] or [cell["error"]]
    text = re.sub(r"\.?\)$", "", lines[0].split("Internal Error (")[-1]) if "Error Code" in lines[0] else lines[0]
    if "trtexec_from_onnx" in cell:
        text += "; trtexec --onnx on the same ONNX: exit %d" % cell["trtexec_from_onnx"]["exit_code"]
    return text


def _f(value, digits):
    return "" if value is None else "%.*f" % (digits, value)


def _ratio(agent, reference):
    return "" if not reference else "%.3f" % (agent / reference)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="step", required=True)
    sub.add_parser("prepare").add_argument("dir")
    d = sub.add_parser("device")
    d.add_argument("dir")
    d.add_argument("out")
    d.add_argument("--trtexec", required=True)
    d.add_argument("--runs", help="where each agent result document goes (default: OUT)")
    d.add_argument("--models", default=",".join(MODELS))
    d.add_argument("--precisions", default=",".join(PRECISIONS))
    sub.add_parser("report").add_argument("json")
    args = ap.parse_args(argv)
    if args.step == "prepare":
        prepare(args.dir)
    elif args.step == "device":
        device(args.dir, args.out, args.trtexec, args.models.split(","), args.precisions.split(","), args.runs)
    else:
        report(args.json)


if __name__ == "__main__":
    main()
