"""Which backend for an Intel CPU: OpenVINO (intel-cpu profile) vs ONNX Runtime (generic profile),
FP32 and INT8 each, on the same models and the same thread count, all measured by the edgeopt
agent (fresh process per run, p50 of the timed loop).

ONNX Runtime's INT8 is its fastest scheme on this CPU (U8S8: uint8 activations, int8 per-channel
weights, QDQ; the generic profile's int8_scheme); OpenVINO's is NNCF's PERFORMANCE preset. Both
FP32 runs are real float32 (OpenVINO with INFERENCE_PRECISION_HINT f32). Runs interleave over
the repeats so all four see the same machine load.

    python benchmarks/bench_openvino_vs_ort.py [--repeats 3] [--seconds 2] [--threads 1]
"""
from __future__ import annotations

import argparse

import common
import openvino_common as ovc

VARIANTS = (("onnxruntime", "generic", "none"), ("onnxruntime", "generic", "int8"),
            ("openvino", "intel-cpu", "none"), ("openvino", "intel-cpu", "int8"))


def prepare() -> dict:
    bundles = {}
    for name, info in ovc.models().items():
        for backend, profile, quantize in VARIANTS:
            label = f"{backend}-{'int8' if quantize == 'int8' else 'fp32'}"
            bundles[(name, label)] = ovc.package(f"vs-{name}-{label}", info, profile, quantize)["path"]
    return bundles


def run(repeats, seconds, threads) -> dict:
    bundles = prepare()
    loop = {"warmup_iterations": 10, "warmup_seconds": 0.5, "min_iterations": 50, "min_seconds": seconds,
            "max_iterations": 1000000, "max_seconds": 60.0}
    p50 = {key: [] for key in bundles}
    for r in range(repeats):
        keys = list(bundles) if r % 2 == 0 else list(reversed(list(bundles)))
        for key in keys:
            p50[key].append(common.agent_bench(bundles[key], threads, loop)["latency"]["p50_ms"])
    rows = []
    for name in dict.fromkeys(k[0] for k in bundles):
        row = {"model": name, "p50_ms": {label: common.median(p50[(name, label)]) for n, label in bundles if n == name},
               "runs_ms": {label: p50[(name, label)] for n, label in bundles if n == name}}
        row["ov_int8_over_ort_int8"] = common.median(
            o / e for o, e in zip(p50[(name, "openvino-int8")], p50[(name, "onnxruntime-int8")]))
        row["ov_fp32_over_ort_fp32"] = common.median(
            o / e for o, e in zip(p50[(name, "openvino-fp32")], p50[(name, "onnxruntime-fp32")]))
        rows.append(row)
    return {"repeats": repeats, "seconds": seconds, "threads": threads, "rows": rows}


def markdown(result) -> str:
    rows = []
    for r in result["rows"]:
        p = r["p50_ms"]
        faster = "OpenVINO" if r["ov_int8_over_ort_int8"] < 1 else "ONNX Runtime"
        rows.append([r["model"], f"{p['onnxruntime-fp32']:.4g}", f"{p['onnxruntime-int8']:.4g}", f"{p['openvino-fp32']:.4g}",
                     f"{p['openvino-int8']:.4g}", f"**{r['ov_int8_over_ort_int8']:.3f}**", f"{r['ov_fp32_over_ort_fp32']:.3f}",
                     faster])
    return common.md_table(["model", "ORT FP32 p50 ms", "ORT INT8 (U8S8) p50 ms", "OV FP32 (f32) p50 ms",
                            "OV INT8 (NNCF) p50 ms", "OV INT8 / ORT INT8", "OV FP32 / ORT FP32", "faster INT8"], rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=ovc.THREADS)
    args = parser.parse_args()
    result = run(args.repeats, args.seconds, args.threads)
    common.save(f"openvino_vs_ort_{args.threads}t", dict(result, tool_versions=ovc.versions()))
    print(markdown(result))


if __name__ == "__main__":
    main()
