"""TensorRT on an NVIDIA GPU: the agent's `tensorrt` adapter against `trtexec` on the same engine, FP16 and INT8
against FP32, engine build time against a cache hit, NVML board power idle and under load, and the engine's
outputs against ONNX Runtime's on the host.

A data-centre GPU stands in for a Jetson here (issue 16): the figures say what the agent measures and how it
compares with NVIDIA's own tool on one engine; a Jetson gives other latencies, and its power comes from the
INA3221 rails, not NVML.

Three steps, because the GPU machine has no network and no edgeopt install:

    PYTHONPATH=. .venv/bin/python benchmarks/bench_tensorrt.py prepare DIR
        # host: the zoo models of MODELS (tests/zoo: MobileNetV2 224x224 at batch 1 and 32, YOLOv8n 320x320,
        # random weights) packaged for jetson-orin-nano as FP32 and INT8 (QDQ) bundles, and ONNX Runtime's
        # outputs for 2 random inputs
    python3 benchmarks/bench_tensorrt.py device DIR OUT --trtexec PATH [--cells MODEL:PRECISION,...]
        # GPU machine (Python 3.8+ with numpy, tensorrt, cuda-python, nvidia-ml-py and this repository):
        # per cell, `python -m device_agent bench` (it builds the engine), trtexec --loadEngine on the engine the
        # agent cached, the agent again (a cache hit), trtexec again with --useSpinWait, and the outputs against
        # the host's; OUT/tensorrt.json
    PYTHONPATH=. .venv/bin/python benchmarks/bench_tensorrt.py report OUT/tensorrt.json [--name NAME]
        # host: benchmarks/results/NAME.json and .md (default tensorrt)

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
# name: (module, function, kwargs, input shape, bundles made, outputs checked against ONNX Runtime's).
# mobilenet_v2_b32 is the GPU-bound case: batch 1 networks of 0.2-0.9 ms leave an H200 waiting for launches,
# where the agent and trtexec time the launching CPU as much as the GPU. Its reference inputs would add 38 MB to
# the payload, and mobilenet_v2 checks the same network's outputs, so it has none.
MODELS = {"mobilenet_v2": ("tests/zoo/models.py", "mobilenet_v2", {}, (1, 3, 224, 224), ("fp32", "int8"), True),
          "yolov8n": ("tests/zoo/models2.py", "yolov8n", {"image": 320}, (1, 3, 320, 320), ("fp32", "int8"), True),
          "mobilenet_v2_b32": ("tests/zoo/models.py", "mobilenet_v2", {}, (32, 3, 224, 224), ("fp32",), False)}
# The models whose output is class scores: top-1 agreement means something there, not on a detection head's.
CLASS_SCORES = ("mobilenet_v2", "mobilenet_v2_b32")
# precision: (bundle, runtime options at bench time). fp32-tf32off: FP32 with TF32 convolutions off (TensorRT
# allows TF32 for FP32 layers by default on Ampere and newer), to see how close FP32 then comes to ONNX Runtime.
# fp32-ws2g: FP32 with a 2 GiB workspace, another engine of the same layers, so its build after fp32's shows what
# the timing cache saves.
PRECISIONS = {"fp32": ("fp32", {}), "fp16": ("fp32", {"fp16": True}), "int8": ("int8", {}),
              "fp32-tf32off": ("fp32", {"tf32": False}), "fp32-ws2g": ("fp32", {"workspace_mib": 2048})}
# The second lease's cells, most wanted first (a run cut at its time limit keeps the cells it finished).
SECOND_LEASE = ("mobilenet_v2_b32:fp32,yolov8n:int8,yolov8n:fp16,mobilenet_v2:fp32-tf32off,mobilenet_v2_b32:fp16,"
                "mobilenet_v2:fp32")
REFERENCE_INPUTS = 2
LOOP = ["--min-seconds", "3", "--max-seconds", "4", "--warmup-seconds", "0.5", "--idle-seconds", "3"]
TRTEXEC_ARGS = ["--duration=3", "--warmUp=500"]
# trtexec again with its spin wait (TensorRT 11 made it the default): a blocking sync lets the CPU sleep and wake
# late, which a launch-bound loop feels. Run after the agent's cache hit, so the tools alternate on the GPU.
TRTEXEC_SPIN_ARGS = TRTEXEC_ARGS + ["--useSpinWait"]


# --- host: bundles and reference outputs -------------------------------------------------------------------

def prepare(out):
    import numpy as np
    import torch

    from edgeopt import api
    from edgeopt.convert.onnxruntime import ort_runner

    sys.path.insert(0, os.path.join(HERE, "..", "tests"))
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(0)
    for name, (path, fn, kwargs, shape, kinds, reference) in MODELS.items():
        module = __import__("zoo." + os.path.basename(path)[:-3], fromlist=[fn])
        model = getattr(module, fn)(**kwargs).eval()
        onnx_path = os.path.join(out, name + ".onnx")
        torch.onnx.export(model, torch.zeros(shape), onnx_path, input_names=["input"], opset_version=17,
                          dynamo=False)
        calib = os.path.join(out, name + "-calib.npz")   # random calibration: these weights are random too
        np.savez(calib, input=rng.standard_normal((32,) + shape[1:]).astype(np.float32))
        for kind in kinds:
            bundle = os.path.join(out, "%s-%s.edgepkg" % (name, kind))
            api.package(onnx_path, PROFILE, output=bundle, name=name, precision="fp32",
                        quantize="int8" if kind == "int8" else "none", calib=calib if kind == "int8" else None)
        os.remove(calib)
        if not reference:
            os.remove(onnx_path)
            print("prepared", name, flush=True)
            continue
        inputs = rng.standard_normal((REFERENCE_INPUTS,) + shape).astype(np.float32)
        run = ort_runner(onnx_path)
        outputs = np.stack([run({"input": x})[0] for x in inputs])
        np.savez(os.path.join(out, name + "-reference.npz"), inputs=inputs, outputs=outputs)
        os.remove(onnx_path)
        print("prepared", name, flush=True)


# --- GPU machine: the agent, its engine against the host's outputs, and trtexec on that engine ---------------

def device(bundles, out, trtexec, cells, runs=None):
    """OUT/tensorrt.json, rewritten after each engine; each agent result in full to RUNS (default OUT)."""
    runs = runs or out
    for d in (out, runs):
        os.makedirs(d, exist_ok=True)
    doc = {"gpu": _nvidia_smi(), "trtexec_args": TRTEXEC_ARGS, "trtexec_spin_args": TRTEXEC_SPIN_ARGS,
           "agent_loop": LOOP, "cells": []}
    save = os.path.join(out, "tensorrt.json")
    for name, precision in cells:
        cell = {"model": name, "precision": precision, "started": time.strftime("%H:%M:%S", time.gmtime())}
        doc["cells"].append(cell)
        try:
            _cell(cell, bundles, runs, trtexec)
        except Exception as e:  # noqa: BLE001 - one cell's failure is recorded; the others still run
            cell["error"] = "%s: %s" % (type(e).__name__, e)
        with open(save, "w") as f:
            json.dump(doc, f, indent=1)
        print(json.dumps({k: cell.get(k) for k in ("model", "precision", "started", "error")}), flush=True)
    return doc


def _cell(cell, bundles, out, trtexec):
    """The agent builds the engine and times it, trtexec times that engine, the agent times it again (a cache hit),
    trtexec again with its spin wait: the two tools alternate on the GPU. Then the outputs against the host's."""
    bundle_kind, options = PRECISIONS[cell["precision"]]
    bundle = os.path.join(bundles, "%s-%s.edgepkg" % (cell["model"], bundle_kind))
    runs = []

    def agent(attempt):
        runs.append(_agent_bench(bundle, options, os.path.join(out, "%s-%s-%s.json" % (
            cell["model"], cell["precision"], attempt.replace(" ", "-")))))
        return runs[-1]["runtime"]["engine"]["path"]

    try:
        engine = agent("build")
    except Exception:   # no engine: does TensorRT itself build this ONNX? (the answer goes beside the error)
        cell["trtexec_from_onnx"] = _trtexec_from_onnx(trtexec, bundle, dict(options, int8=bundle_kind == "int8"))
        raise
    cell["trtexec"] = _trtexec(trtexec, engine, TRTEXEC_ARGS)
    agent("cache hit")
    cell["trtexec_spin"] = _trtexec(trtexec, engine, TRTEXEC_SPIN_ARGS)
    cell["agent"] = [_agent_figures(r) for r in runs]
    cell["engine_mb"] = os.path.getsize(engine) / 1048576.0
    reference = os.path.join(bundles, cell["model"] + "-reference.npz")
    cell["outputs"] = (_against_reference(bundle, options, reference) if os.path.isfile(reference) else
                       {"skipped": "no reference outputs for this model (see MODELS)"})


def _cells(text):
    """[(model, precision)] of "MODEL:PRECISION,...", or every model at fp32, fp16 and int8 where it has the bundle."""
    if not text:
        return [(m, p) for m in MODELS for p in ("fp32", "fp16", "int8") if PRECISIONS[p][0] in MODELS[m][4]]
    cells = [tuple(item.split(":", 1)) for item in text.split(",")]
    for model, precision in cells:
        if model not in MODELS or precision not in PRECISIONS or PRECISIONS[precision][0] not in MODELS[model][4]:
            raise SystemExit("--cells: no bundle for %s:%s (models %s, precisions %s)"
                             % (model, precision, ", ".join(MODELS), ", ".join(PRECISIONS)))
    return cells


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
    difference relative to the reference's range, and top-1 agreement over the first output (meaningful where it
    is class scores: CLASS_SCORES)."""
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


def _trtexec(trtexec, engine, args):
    cmd = [trtexec, "--loadEngine=" + engine] + args
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

def report(path, name="tensorrt"):
    """The table of one device run: the agent's cache-hit run against trtexec (default flags, then --useSpinWait
    where the run has it; "a / b" in a cell), the agent's first run beside it."""
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
        tools = [c["trtexec"]] + ([c["trtexec_spin"]] if "trtexec_spin" in c else [])
        t_gpu = [t.get("GPU Compute Time", {}).get("median_ms") for t in tools]
        t_e2e = [t.get("Latency", {}).get("median_ms") for t in tools]
        base = fp32.get(c["model"])
        speed = base["agent"][1]["gpu_compute"]["median_ms"] / gpu if base else None
        p = hit["power"]
        rows.append([c["model"], c["precision"], "%.3f (%.3f)" % (gpu, build["gpu_compute"]["median_ms"]),
                     _slash(_f(t, 3) for t in t_gpu), _slash(_ratio(gpu, t) for t in t_gpu),
                     "%.3f (%.3f)" % (e2e, build["latency_median_ms"]), _slash(_f(t, 3) for t in t_e2e),
                     _slash(_ratio(e2e, t) for t in t_e2e), _f(speed, 2) + "x" if speed else "",
                     "%.1f s / %.2f s" % (build["engine"]["build_s"] + build["engine"]["deserialize_s"],
                                          hit["engine"]["deserialize_s"]),
                     "%s / %s W, %s mJ" % (_f(p.get("idle_w"), 0), _f(p.get("mean_w"), 0),
                                           _f(p.get("energy_mj_per_inference"), 3)), _outputs(c)])
    table = md_table(["model", "precision", "agent GPU ms (first run)", "trtexec GPU ms", "ratio",
                      "agent e2e ms (first run)", "trtexec e2e ms", "ratio", "vs FP32", "build / cache hit",
                      "NVML idle / load, per inference", "outputs vs ORT"], rows)
    save(name, doc, table)
    print(table)


def _outputs(cell):
    outputs = cell["outputs"]
    if "skipped" in outputs:
        return "not checked"
    if cell["model"] not in CLASS_SCORES:
        return "%.1f dB" % outputs["sqnr_db"]
    return "%.1f dB, top-1 %.0f%%" % (outputs["sqnr_db"], 100 * outputs["top1_agreement"])


def _slash(texts):
    return " / ".join(texts)


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
    d.add_argument("--cells", help="MODEL:PRECISION,... in this order (default: every model at fp32, fp16 and "
                   "int8 where it has the bundle; the second lease ran %s)" % SECOND_LEASE)
    r = sub.add_parser("report")
    r.add_argument("json")
    r.add_argument("--name", default="tensorrt", help="benchmarks/results/NAME.json and .md")
    args = ap.parse_args(argv)
    if args.step == "prepare":
        prepare(args.dir)
    elif args.step == "device":
        device(args.dir, args.out, args.trtexec, _cells(args.cells), args.runs)
    else:
        report(args.json, args.name)


if __name__ == "__main__":
    main()
