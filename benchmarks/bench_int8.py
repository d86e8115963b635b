"""INT8 vs FP32 on ONNX Runtime, and edgeopt's INT8 vs `quantize_static` called by hand.

For the shipped digits CNN and the MobileNetV2-sized CNN of cnn_models.py, three bundles:
  fp32   edgeopt package, FP32
  int8   edgeopt package --quantize int8 (QDQ, U8S8, per-channel weights, MinMax)
  hand   onnxruntime.quantization.quantize_static(fp32 model, out, reader) with ORT's defaults
         (QDQ, S8S8, per-tensor, MinMax) on the same calibration data, then packaged by edgeopt
         as an FP32 bundle with no further conversion, only so the same agent can measure it.
Each repeat measures the three with the agent, back to back in rotating order. Reported:
latency ratios (medians of per-repeat ratios), model size ratios, top-1 on the digits eval split.

    python benchmarks/bench_int8.py [--repeats 5] [--threads 1 2]
"""
from __future__ import annotations

import argparse
import logging

import numpy as np

import cnn_models
import common
from edgeopt.api import sample_paths

WARMUP = {"warmup_iterations": 10, "warmup_seconds": 0.5, "max_iterations": 1000000, "max_seconds": 60.0}
LOOPS = {"digits_cnn": dict(WARMUP, min_iterations=20000, min_seconds=1.0),
         "mobilenet_v2": dict(WARMUP, min_iterations=150, min_seconds=1.0)}
VARIANTS = ("fp32", "int8", "hand")


def quantize_by_hand(fp32_onnx, calib_npz, out):
    """ORT's quantize_static with every default, fed one calibration sample at a time."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, quantize_static

    name = onnx.load(str(fp32_onnx)).graph.input[0].name
    with np.load(calib_npz) as f:
        samples = next(f[k] for k in f.files if k != "labels")

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(samples[i:i + 1] for i in range(len(samples)))

        def get_next(self):
            x = next(self.items, None)
            return None if x is None else {name: x}

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # ORT logs a pre-processing tip on the root logger on every call
    try:
        quantize_static(str(fp32_onnx), str(out), Reader())
    finally:
        root.setLevel(level)
    return out


def prepare(name, source, calib, eval_data=None) -> dict:
    """The three bundles of one model: {variant: manifest}."""
    extra = {"eval_data": eval_data} if eval_data else {}
    fp32 = common.package(source, f"int8-{name}-fp32", **extra)
    # Random weights make the MobileNet's 1000 logits nearly tied, so INT8 flips many argmaxes
    # and the profile's 97% top-1 agreement check would refuse it: speed is what is measured there.
    int8 = common.package(source, f"int8-{name}-int8", quantize="int8", calib=calib,
                          allow_mismatch=eval_data is None, **extra)
    fp32_onnx = common.extract_model(fp32["path"], common.CACHE / f"int8-{name}-fp32.onnx")
    hand_onnx = quantize_by_hand(fp32_onnx, calib, common.CACHE / f"int8-{name}-hand.onnx")
    hand = common.package(hand_onnx, f"int8-{name}-hand", **extra)
    return {"fp32": fp32, "int8": int8, "hand": hand}


def measure_all(bundles, threads, loop, rotation) -> dict:
    """p50 (and the result's accuracy) of the three variants, in rotated order; repeated if disturbed."""
    order = VARIANTS[rotation % 3:] + VARIANTS[:rotation % 3]

    def once():
        return {v: common.agent_bench(bundles[v]["path"], threads, loop) for v in order}

    docs, foreign, tries = common.checked(once)
    return {v: {"p50_ms": d["latency"]["p50_ms"], "accuracy": d.get("accuracy", {})} for v, d in docs.items()} | {
        "foreign_cpu": round(foreign, 3), "tries": tries}


def models() -> dict:
    digits, mnv2 = sample_paths(), cnn_models.mobilenet_v2_onnx()
    return {"digits_cnn": (digits["model"], digits["calib"], digits["eval"]),
            "mobilenet_v2": (mnv2["model"], mnv2["calib"], None)}


def run(repeats=5, threads=(1, 2)) -> dict:
    prepared = {name: prepare(name, *args) for name, args in models().items()}
    runs = {(name, t): [] for name in prepared for t in threads}
    for r in range(repeats):
        for (name, t), out in runs.items():
            out.append(measure_all(prepared[name], t, LOOPS[name], r))
    cases = [summarize(name, t, prepared[name], out) for (name, t), out in runs.items()]
    return {"repeats": repeats, "loops": LOOPS, "cases": cases, "schemes": {
        name: {v: m["compression"] for v, m in p.items()} for name, p in prepared.items()},
        "parity": {name: p["int8"]["parity"] for name, p in prepared.items()}}


def summarize(name, threads, bundles, runs) -> dict:
    def ratio(num, den):
        return common.median(r[num]["p50_ms"] / r[den]["p50_ms"] for r in runs)

    size = {v: common.model_bytes(bundles[v]) for v in VARIANTS}
    out = {"model": name, "threads": threads,
           "p50_ms": {v: common.median(r[v]["p50_ms"] for r in runs) for v in VARIANTS},
           "speedup_int8": ratio("fp32", "int8"), "speedup_hand": ratio("fp32", "hand"),
           "int8_vs_hand": ratio("hand", "int8"),
           "per_repeat_speedup_int8": [round(r["fp32"]["p50_ms"] / r["int8"]["p50_ms"], 3) for r in runs],
           "model_bytes": size, "size_ratio_int8": size["fp32"] / size["int8"],
           "size_ratio_hand": size["fp32"] / size["hand"], "tries": [r["tries"] for r in runs],
           "foreign_cpu": [r["foreign_cpu"] for r in runs]}
    accuracy = {v: runs[0][v]["accuracy"].get("top1") for v in VARIANTS}
    if accuracy["fp32"] is not None:
        out["top1"] = accuracy
        out["drop_points"] = {v: 100 * (accuracy["fp32"] - accuracy[v]) for v in ("int8", "hand")}
    return out


def markdown(result) -> str:
    rows = []
    for c in result["cases"]:
        p = c["p50_ms"]
        rows.append([c["model"], c["threads"], f"{p['fp32']:.4g}", f"{p['int8']:.4g}", f"{p['hand']:.4g}",
                     f"**{c['speedup_int8']:.2f}x**", f"{c['speedup_hand']:.2f}x", f"{c['int8_vs_hand']:.2f}x",
                     " ".join(f"{x:.2f}" for x in c["per_repeat_speedup_int8"])])
    speed = common.md_table(["model", "threads", "FP32 p50 ms", "edgeopt INT8 p50 ms", "hand INT8 p50 ms",
                             "FP32/INT8 (edgeopt)", "FP32/INT8 (hand)", "hand/edgeopt", "FP32/INT8 per repeat"],
                            rows)
    note = common.disturbed_note([s for c in result["cases"] for s in c["foreign_cpu"]])
    return f"{speed}\n\n{note}\n\n{markdown_size_accuracy(result)}"


def markdown_size_accuracy(result) -> str:
    rows = []
    for c in (c for c in result["cases"] if c["threads"] == result["cases"][0]["threads"]):
        b, top1, drop = c["model_bytes"], c.get("top1"), c.get("drop_points")
        acc = ([f"{100 * top1[v]:.2f}%" for v in VARIANTS] + [f"{drop['int8']:+.2f}", f"{drop['hand']:+.2f}"]
               if top1 else ["n/a (random weights)"] * 3 + ["", ""])
        rows.append([c["model"], f"{b['fp32'] / 1e6:.3f}", f"{b['int8'] / 1e6:.3f}", f"{b['hand'] / 1e6:.3f}",
                     f"{c['size_ratio_int8']:.2f}x", f"{c['size_ratio_hand']:.2f}x"] + acc)
    return common.md_table(["model", "FP32 MB", "edgeopt INT8 MB", "hand INT8 MB", "size FP32/INT8",
                            "size FP32/hand", "top-1 FP32", "top-1 edgeopt INT8", "top-1 hand INT8",
                            "drop edgeopt (points)", "drop hand (points)"], rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    result = run(args.repeats, tuple(args.threads))
    common.save("int8", result)
    print(markdown(result))


if __name__ == "__main__":
    main()
