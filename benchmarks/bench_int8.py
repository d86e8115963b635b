"""INT8 vs FP32 on ONNX Runtime: edgeopt's INT8 against ONNX Runtime's documented recipe by hand,
on the same exported file.

Models: ResNet-18 (resnet.py) and MobileNetV2-size (cnn_models.py), seeded random weights, each
exported three ways (cnn_models.EXPORTS: torch.onnx.export's default dynamo exporter, the same
with optimize=False, which leaves BatchNorm unfused and Conv biases computed at run time, and
dynamo=False). Five models per exported file:
  fp32      edgeopt package, FP32 (the graph simplified: edgeopt/simplify.py)
  fp32_raw  edgeopt package --no-simplify, FP32 (the file as exported)
  int8      edgeopt package --quantize int8
  int8_v0   U8S8 QDQ per-channel MinMax on the file as exported: edgeopt's recipe before issue 12
  hand      ONNX Runtime's documented recipe by hand: quant_pre_process, then quantize_static
            U8S8 QDQ per-channel MinMax; same calibration samples
Measurement: the five models of one file are timed in one fresh process, call by call in turn
(round robin) for --seconds, each an ONNX Runtime session made by the agent's own adapter (the
session options a device gets) with --threads threads, so a neighbour's load hits all five alike.
Each repeat is a new process; ratios are medians of the per-repeat ratios. The machine is shared:
only ratios measured in the same run are compared.

    python benchmarks/bench_int8.py [--repeats 3] [--seconds 8] [--threads 1] [--reuse]
"""
from __future__ import annotations

import argparse
import json
import logging
import pathlib
import subprocess
import sys
import time

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

import cnn_models
import common
import resnet

VARIANTS = ("fp32", "fp32_raw", "int8", "int8_v0", "hand")
MODELS = {"resnet18": resnet.resnet18, "mobilenet_v2": cnn_models.mobilenet_v2}


class _Reader(CalibrationDataReader):
    """Calibration samples one at a time, as edgeopt's own reader feeds them."""

    def __init__(self, samples):
        self.samples, self.i = samples, 0

    def get_next(self):
        if self.i >= len(self.samples):
            return None
        self.i += 1
        return {cnn_models.INPUT_NAME: self.samples[self.i - 1:self.i]}


def _quiet(fn, *args, **kwargs):
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # ORT logs a pre-processing tip on the root logger on every call
    try:
        return fn(*args, **kwargs)
    finally:
        root.setLevel(level)


def quantize_u8s8(src, calib_npz, out):
    """QDQ, QUInt8 activations, QInt8 per-channel weights, MinMax: edgeopt's scheme, on `src` as it is."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    with np.load(calib_npz) as f:
        samples = f[cnn_models.INPUT_NAME]
    _quiet(quantize_static, str(src), str(out), _Reader(samples), quant_format=QuantFormat.QDQ, per_channel=True,
           activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
    return out


def documented_recipe(src, calib_npz, out) -> dict:
    """quant_pre_process then U8S8 QDQ. Its symbolic shape inference fails on some dynamo graphs
    (a Constant holding value_ints); the documented way round is skip_symbolic_shape=True."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = out.with_name(out.stem + "-pre.onnx")
    how = {"quant_pre_process": "default"}
    try:
        _quiet(quant_pre_process, str(src), str(pre))
    except Exception as e:  # whatever symbolic shape inference raises; the retry is the documented option
        how = {"quant_pre_process": "skip_symbolic_shape=True", "default_failed": f"{type(e).__name__}: {e}"[:200]}
        _quiet(quant_pre_process, str(src), str(pre), skip_symbolic_shape=True)
    quantize_u8s8(pre, calib_npz, out)
    return how


def same_model(a, b) -> bool:
    """Same op counts and byte-identical initializers (weights, scales, zero points)."""
    import collections

    import onnx

    ma, mb = onnx.load(str(a)), onnx.load(str(b))
    ops = [collections.Counter(n.op_type for n in m.graph.node) for m in (ma, mb)]
    inits = [{t.name: t.SerializeToString() for t in m.graph.initializer} for m in (ma, mb)]
    return ops[0] == ops[1] and sorted(inits[0].values()) == sorted(inits[1].values())


def prepare(name, export, src, calib, reuse=False) -> dict:
    """The five model files of one exported file, and what packaging recorded (kept beside them,
    so that --reuse measures again without packaging again)."""
    tag = f"int8-{name}-{export}"
    record = common.CACHE / f"{tag}.json"
    if reuse and record.is_file():
        prepared = json.loads(record.read_text())
        if all(pathlib.Path(f).is_file() for f in prepared["files"].values()):
            return prepared
    prepared = _package_all(tag, src, calib)
    record.write_text(json.dumps(prepared, indent=1))
    return prepared


def _package_all(tag, src, calib) -> dict:
    fp32 = common.package(src, f"{tag}-fp32")
    fp32_raw = common.package(src, f"{tag}-fp32-raw", simplify=False)
    # Random weights make 1000 logits nearly tied, so INT8 flips argmaxes and the profile's top-1
    # agreement check would refuse it: speed is what is measured here.
    start = time.perf_counter()
    int8 = common.package(src, f"{tag}-int8", quantize="int8", calib=calib, allow_mismatch=True)
    package_s = time.perf_counter() - start
    files = {v: common.extract_model(m["path"], common.CACHE / f"{tag}-{v}.onnx")
             for v, m in (("fp32", fp32), ("fp32_raw", fp32_raw), ("int8", int8))}
    files["int8_v0"] = quantize_u8s8(src, calib, common.CACHE / f"{tag}-int8_v0.onnx")
    hand = documented_recipe(src, calib, common.CACHE / f"{tag}-hand.onnx")
    files["hand"] = common.CACHE / f"{tag}-hand.onnx"
    return {"files": {k: str(v) for k, v in files.items()}, "simplification": fp32["simplification"],
            "int8_same_model_as_hand": same_model(files["int8"], files["hand"]),
            "host_hint": int8["compression"]["host_hint"], "preprocess": int8["compression"]["preprocess"],
            "hand": hand, "int8_package_seconds": round(package_s, 1)}


def interleaved(files: dict, threads: int, seconds: float) -> dict:
    """In this process: {variant: p50 ms} of every file, timed in turn, call by call."""
    from device_agent.runtimes.onnxruntime import OnnxRuntimeAdapter

    x = np.random.default_rng(0).standard_normal(cnn_models.INPUT_SHAPE).astype(np.float32)
    calls = {}
    for variant, path in files.items():
        adapter = OnnxRuntimeAdapter(threads, {"providers": ["CPUExecutionProvider"]})
        adapter.load(path)
        calls[variant] = adapter.bind({cnn_models.INPUT_NAME: x})
    for _ in range(3):
        for call in calls.values():
            call()
    order, samples, start = list(calls), {v: [] for v in calls}, time.perf_counter()
    while time.perf_counter() - start < seconds or len(samples[order[0]]) < 10:
        order = order[1:] + order[:1]  # rotate: no model always follows the same one (cache state)
        for variant in order:
            t0 = time.perf_counter()
            calls[variant]()
            samples[variant].append(time.perf_counter() - t0)
    return {v: {"p50_ms": float(np.median(s)) * 1e3, "n": len(s)} for v, s in samples.items()}


def measure(files, threads, seconds) -> dict:
    """interleaved() in a fresh process (clean memory, one set of sessions per process)."""
    out = subprocess.run([sys.executable, __file__, "_interleaved", json.dumps(files), str(threads), str(seconds)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def run(repeats=3, threads=1, seconds=8.0, reuse=False) -> dict:
    prepared = {}
    for name, build in MODELS.items():
        paths = cnn_models.export_variants(name, build)
        calib = common.CACHE / f"{name}_calib.npz"
        for export, src in paths.items():
            print(f"packaging {name} ({export})...", file=sys.stderr)
            prepared[(name, export)] = prepare(name, export, src, calib, reuse)
    runs = {key: [] for key in prepared}
    for r in range(repeats):
        for key, p in prepared.items():
            print(f"measuring {key[0]} ({key[1]}), repeat {r + 1}/{repeats}...", file=sys.stderr)
            runs[key].append(measure(p["files"], threads, seconds))
    cases = [summarize(name, export, prepared[(name, export)], runs[(name, export)]) for name, export in prepared]
    return {"repeats": repeats, "threads": threads, "seconds": seconds, "cases": cases}


def summarize(name, export, prepared, runs) -> dict:
    def ratio(num, den):
        return round(common.median(r[num]["p50_ms"] / r[den]["p50_ms"] for r in runs), 3)

    s = prepared["simplification"]
    return {"model": name, "export": export,
            "p50_ms": {v: round(common.median(r[v]["p50_ms"] for r in runs), 3) for v in VARIANTS},
            "int8_vs_fp32": ratio("int8", "fp32"), "hand_vs_fp32": ratio("hand", "fp32"),
            "int8_vs_hand": ratio("int8", "hand"), "int8_v0_vs_fp32": ratio("int8_v0", "fp32"),
            "fp32_vs_fp32_raw": ratio("fp32", "fp32_raw"),
            "per_repeat_int8_vs_fp32": [round(r["int8"]["p50_ms"] / r["fp32"]["p50_ms"], 3) for r in runs],
            "per_repeat_int8_vs_hand": [round(r["int8"]["p50_ms"] / r["hand"]["p50_ms"], 3) for r in runs],
            "samples": [{v: r[v]["n"] for v in VARIANTS} for r in runs],
            "nodes": [s.get("nodes_before"), s.get("nodes_after")], "host_hint": prepared["host_hint"]["ratio"],
            "int8_same_model_as_hand": prepared["int8_same_model_as_hand"],
            "hand_recipe": prepared["hand"], "int8_package_seconds": prepared["int8_package_seconds"]}


def markdown(result) -> str:
    rows = []
    for c in result["cases"]:
        p = c["p50_ms"]
        rows.append([c["model"], c["export"], f"{c['nodes'][0]} → {c['nodes'][1]}", f"{p['fp32_raw']:.3g}",
                     f"{p['fp32']:.3g}", f"{p['int8']:.3g}", f"{p['hand']:.3g}", f"{p['int8_v0']:.3g}",
                     f"**{c['int8_vs_fp32']:.2f}x**", f"{c['hand_vs_fp32']:.2f}x", f"**{c['int8_vs_hand']:.2f}x**",
                     f"{c['int8_v0_vs_fp32']:.2f}x", f"{c['fp32_vs_fp32_raw']:.2f}x", f"{c['host_hint']:.2f}x",
                     "yes" if c["int8_same_model_as_hand"] else "no"])
    table = common.md_table(["model", "export", "nodes (simplified)", "FP32 as exported ms", "FP32 ms",
                             "edgeopt INT8 ms", "ORT recipe INT8 ms", "before (INT8 as exported) ms",
                             "INT8/FP32", "ORT recipe/FP32", "edgeopt/ORT recipe", "before/FP32",
                             "FP32 simplified/as exported", "package host hint INT8/FP32",
                             "edgeopt INT8 = ORT recipe's model"], rows)
    return (f"{table}\n\np50 medians of {result['repeats']} repeats, {result['threads']} thread(s), "
            f"{result['seconds']:g} s of interleaved calls per repeat; ratios are medians of per-repeat ratios.")


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "_interleaved":
        print(json.dumps(interleaved(json.loads(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=8.0, help="interleaved timing per model file and repeat")
    parser.add_argument("--reuse", action="store_true", help="measure the models packaged by an earlier run again")
    args = parser.parse_args()
    result = run(args.repeats, args.threads, args.seconds, args.reuse)
    common.save("int8", result)
    print(markdown(result))


if __name__ == "__main__":
    main()
