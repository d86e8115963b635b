"""LiteRT precisions on this x86 CPU: FP32, FP16, dynamic-range INT8, full INT8 (int8 I/O) and full
INT8 with float I/O, packaged for raspberry-pi-5, plus FP32 with XNNPACK turned off, on the
shipped digits CNN and a MobileNetV2-sized CNN, at 1 and 2 threads.

Per model, bundles (`edgeopt.api.package(model, "raspberry-pi-5", ...)`):
  fp32       --precision fp32                      float weights and compute
  fp16       --precision fp16                      float16 weights (ai-edge-quantizer float casting)
  dynamic    --quantize dynamic                    int8 weights, activations quantized at run time
  int8       --quantize int8                       full integer, int8 input/output (the profile's default)
  int8-fio   --quantize int8 --int8-io float       full integer inside, float input/output
  fp32-ref   the fp32 bundle run with `--runtime-option xnnpack=false` (LiteRT's builtin kernels)
Each repeat measures the six with the agent, back to back in rotating order. Reported: latency
ratio vs FP32 (median of per-repeat ratios), artifact size vs FP32, and top-1 on the digits eval
split from the agent's result (accuracy.top1) with its drop against the source model's top-1.

    python benchmarks/bench_litert_precisions.py [--repeats 5] [--threads 1 2]
"""
from __future__ import annotations

import argparse

import common
import litert_common as lc

WARMUP = {"warmup_iterations": 10, "warmup_seconds": 0.5, "max_iterations": 1000000, "max_seconds": 60.0}
LOOPS = {"digits_cnn": dict(WARMUP, min_iterations=20000, min_seconds=1.0),
         "mobilenet_v2": dict(WARMUP, min_iterations=50, min_seconds=1.0)}
BUNDLES = {  # variant: (precision, quantize, int8_io)
    "fp32": ("fp32", "none", ""), "fp16": ("fp16", "none", ""), "dynamic": ("fp32", "dynamic", ""),
    "int8": ("fp32", "int8", ""), "int8-fio": ("fp32", "int8", "float")}
NO_XNNPACK = "fp32-no-xnnpack"
VARIANTS = tuple(BUNDLES) + (NO_XNNPACK,)


def prepare(name, info) -> dict:
    """{variant: manifest} for one model (the no-XNNPACK variant is the fp32 bundle)."""
    out = {v: lc.package(f"litert-prec-{name}-{v}", info, quantize, precision, int8_io)
           for v, (precision, quantize, int8_io) in BUNDLES.items()}
    out[NO_XNNPACK] = out["fp32"]
    return out


def measure_all(bundles, threads, loop, rotation) -> dict:
    """p50, accuracy and XNNPACK use of every variant, in rotated order; repeated if disturbed."""
    k = rotation % len(VARIANTS)
    order = VARIANTS[k:] + VARIANTS[:k]

    def bench(v):
        extra = {"runtime_option": ["xnnpack=false"]} if v == NO_XNNPACK else {}
        return common.agent_bench(bundles[v]["path"], threads, dict(loop, **extra))

    def once():
        return {v: bench(v) for v in order}

    docs, foreign, tries = common.checked(once)
    return {v: {"p50_ms": d["latency"]["p50_ms"], "accuracy": d.get("accuracy", {}),
                "xnnpack": d["runtime"]["xnnpack"]["applied"]} for v, d in docs.items()} | {
        "foreign_cpu": round(foreign, 3), "tries": tries}


def run(repeats=5, threads=(1, 2)) -> dict:
    infos = lc.models()
    prepared = {name: prepare(name, info) for name, info in infos.items()}
    runs = {(name, t): [] for name in prepared for t in threads}
    for r in range(repeats):
        for (name, t), out in runs.items():
            out.append(measure_all(prepared[name], t, LOOPS[name], r))
    cases = [summarize(name, t, prepared[name], out) for (name, t), out in runs.items()]
    return {"repeats": repeats, "loops": LOOPS, "cases": cases, "schemes": {
        name: {v: m["compression"] for v, m in p.items() if v in BUNDLES} for name, p in prepared.items()},
        "parity": {name: {v: m["parity"] for v, m in p.items() if v in BUNDLES} for name, p in prepared.items()}}


def summarize(name, threads, bundles, runs) -> dict:
    def ratio(v):
        return common.median(r[v]["p50_ms"] / r["fp32"]["p50_ms"] for r in runs)

    size = {v: common.model_bytes(bundles[v]) for v in BUNDLES}
    out = {"model": name, "threads": threads,
           "p50_ms": {v: common.median(r[v]["p50_ms"] for r in runs) for v in VARIANTS},
           "latency_vs_fp32": {v: ratio(v) for v in VARIANTS},
           "per_repeat_latency_vs_fp32": {v: [round(r[v]["p50_ms"] / r["fp32"]["p50_ms"], 3) for r in runs]
                                          for v in VARIANTS},
           "xnnpack_applied": {v: runs[0][v]["xnnpack"] for v in VARIANTS},
           "model_bytes": size, "size_vs_fp32": {v: size[v] / size["fp32"] for v in BUNDLES},
           "tries": [r["tries"] for r in runs], "foreign_cpu": [r["foreign_cpu"] for r in runs]}
    source = ((bundles["fp32"].get("source") or {}).get("accuracy") or {}).get("top1")
    accuracy = {v: runs[0][v]["accuracy"].get("top1") for v in VARIANTS}
    if source is not None and accuracy["fp32"] is not None:
        out["source_top1"] = source
        out["top1"] = accuracy
        out["drop_points"] = {v: 100 * (source - accuracy[v]) for v in VARIANTS}
    return out


LABELS = {"fp32": "FP32", "fp16": "FP16", "dynamic": "dynamic", "int8": "INT8 (int8 I/O)",
          "int8-fio": "INT8 (float I/O)", NO_XNNPACK: "FP32, XNNPACK off"}


def markdown(result) -> str:
    rows = []
    for c in result["cases"]:
        p, ratio = c["p50_ms"], c["latency_vs_fp32"]
        rows.append([c["model"], c["threads"], f"{p['fp32']:.4g}"] +
                    [f"{p[v]:.4g} ({ratio[v]:.2f}x)" for v in VARIANTS if v != "fp32"])
    speed = common.md_table(["model", "threads", "FP32 p50 ms"] +
                            [f"{LABELS[v]} p50 ms (vs FP32)" for v in VARIANTS if v != "fp32"], rows)
    note = common.disturbed_note([s for c in result["cases"] for s in c["foreign_cpu"]])
    return f"{speed}\n\n{note}\n\n{markdown_size_accuracy(result)}"


def markdown_size_accuracy(result) -> str:
    rows = []
    for c in (c for c in result["cases"] if c["threads"] == result["cases"][0]["threads"]):
        b, size = c["model_bytes"], c["size_vs_fp32"]
        for v in VARIANTS:
            top1, drop = c.get("top1"), c.get("drop_points")
            acc = ([f"{100 * top1[v]:.2f}%", f"{drop[v]:+.2f}"] if top1 else ["n/a (random weights)", ""])
            kb = f"{b[v] / 1e6:.3f} ({size[v]:.2f}x)" if v in b else "(the FP32 file)"
            rows.append([c["model"], LABELS[v], kb] + acc)
    return common.md_table(["model", "bundle", "artifact MB (vs FP32)", "top-1 (agent)",
                            "drop vs source (points)"], rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    result = run(args.repeats, tuple(args.threads))
    common.save("litert_precisions", dict(result, tool_versions=lc.versions()))
    print(markdown(result))


if __name__ == "__main__":
    main()
