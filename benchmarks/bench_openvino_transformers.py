"""INT8 vs FP32 on OpenVINO for transformer-like models: edgeopt's `--quantize int8 --profile intel-cpu`
(model_type auto: NNCF's transformer scheme where MatMul/Gemm hold most of the MACs) against NNCF by hand,
with its defaults and with `model_type=nncf.ModelType.TRANSFORMER` (NNCF's documented setting for
transformer models), on the same file.

Models: those of bench_int8_transformers.py (DeiT-Ti and ConvNeXt-T at 224, random weights, legacy export,
64 calibration samples). Every IR is timed by OpenVINO's benchmark_app (latency hint, 1 thread, f32
inference precision), the four of a model in turn, over the repeats; output SQNR against the FP32 IR on
one seeded input.

    python benchmarks/bench_openvino_transformers.py [--repeats 3] [--seconds 5]
"""
from __future__ import annotations

import argparse

import bench_int8_transformers as bit
import cnn_models
import common
import numpy as np
import openvino_common as ovc

VARIANTS = ("edgeopt-fp32", "edgeopt-int8", "hand-int8", "hand-int8-transformer")


def prepare(name, exported) -> dict:
    info = {"model": exported["model"], "calib": exported["calib"], "eval": None}
    irs, manifests = {}, {}
    for quantize in ("none", "int8"):
        label = "int8" if quantize == "int8" else "fp32"
        manifests[label] = ovc.package(f"ov-transformers-{name}-{label}", info, "intel-cpu", quantize)
        irs[f"edgeopt-{label}"] = ovc.extract_ir(manifests[label]["path"], common.CACHE / "ir" / f"transformers-{name}-{label}")
    for mode in ("int8", "int8-transformer"):
        irs[f"hand-{mode}"] = ovc.hand_recipe(info["model"], info["calib"], common.CACHE / "ir" / f"transformers-{name}-hand",
                                              mode=mode)["xml"]
    return {"irs": irs, "model_type": manifests["int8"]["compression"]["model_type"],
            "sqnr_db": {v: _sqnr(irs["edgeopt-fp32"], irs[v]) for v in VARIANTS[1:]}}


def _sqnr(reference_xml, xml) -> float:
    import openvino as ov

    from edgeopt.parity import sqnr_db

    x = np.random.default_rng(1).standard_normal(cnn_models.INPUT_SHAPE).astype(np.float32)
    core = ov.Core()
    ref, out = (core.compile_model(str(p), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})(x)[0] for p in (reference_xml, xml))
    return round(sqnr_db(ref, out), 1)


def run(repeats, seconds) -> dict:
    prepared = {name: prepare(name, cnn_models.export_cached(name, build)) for name, build in bit.MODELS.items()}
    latency = {(name, v): [] for name in prepared for v in VARIANTS}
    for r in range(repeats):
        for name, p in prepared.items():
            for v in (VARIANTS if r % 2 == 0 else tuple(reversed(VARIANTS))):
                latency[(name, v)].append(ovc.benchmark_app(p["irs"][v], ovc.THREADS, seconds)["median_ms"])
    rows = []
    for name, p in prepared.items():
        fp32 = latency[(name, "edgeopt-fp32")]
        rows.append({"model": name, "model_type": p["model_type"], "sqnr_db": p["sqnr_db"],
                     "fp32_ms": common.median(fp32),
                     "vs_fp32": {v: round(common.median(i / f for i, f in zip(latency[(name, v)], fp32)), 3)
                                 for v in VARIANTS[1:]}})
    return {"repeats": repeats, "seconds": seconds, "threads": ovc.THREADS, "rows": rows, "versions": ovc.versions()}


def markdown(result) -> str:
    rows = [[r["model"], f"{r['fp32_ms']:.3g}", f"{r['model_type']['used']} ({r['model_type']['matmul_mac_share']:.0%})",
             f"**{r['vs_fp32']['edgeopt-int8']:.2f}x**", f"{r['vs_fp32']['hand-int8']:.2f}x",
             f"{r['vs_fp32']['hand-int8-transformer']:.2f}x",
             " / ".join(f"{r['sqnr_db'][v]:.1f}" for v in VARIANTS[1:])] for r in result["rows"]]
    table = common.md_table(["model", "FP32 ms", "auto chose (MatMul/Gemm MACs)", "edgeopt INT8/FP32",
                             "NNCF defaults by hand/FP32", "NNCF transformer scheme by hand/FP32",
                             "SQNR dB: edgeopt, NNCF defaults, NNCF transformer"], rows)
    return (f"{table}\n\nbenchmark_app medians, {result['repeats']} repeats of {result['seconds']:g} s, "
            f"{result['threads']} thread; ratios are medians of per-repeat ratios.")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    result = run(args.repeats, args.seconds)
    table = markdown(result)
    common.save("openvino_transformers", result, table)
    print(table)


if __name__ == "__main__":
    main()
