"""INT8 vs FP32 on ONNX Runtime for transformer-like models: edgeopt's `--quantize int8` (which chooses
static or dynamic by where the MACs are) against ONNX Runtime's two documented recipes by hand, on the
same exported file.

ORT's quantization guide recommends dynamic quantization for transformers and RNNs and static for CNNs.
Models, seeded random weights, legacy export at 1x3x224x224 (cnn_models.export_cached): DeiT-Ti (patch
16, dim 192, depth 12, 3 heads; tests/zoo/models2.deit_tiny at timm's deit_tiny_patch16_224 sizes) and
ConvNeXt-T (depths 3,3,9,3, dims 96..768). Six models per file:
  fp32          edgeopt package, FP32
  int8          edgeopt package --quantize int8 (int8_method=auto; the manifest records what it chose)
  int8_static   edgeopt package --quantize int8 --backend-option int8_method=static (QDQ, calibrated)
  int8_dynamic  edgeopt package --quantize int8 --backend-option int8_method=dynamic (MatMul/Gemm only)
  ort_static    ORT's CNN recipe by hand: quant_pre_process, then quantize_static U8S8 QDQ per-channel
  ort_dynamic   ORT's transformer recipe by hand: quant_pre_process, then quantize_dynamic with its defaults
Timing as benchmarks/bench_int8.py: the six models of one file in one fresh process, call by call in turn
for --seconds, through the agent's ONNX Runtime adapter, --threads threads; each repeat a new process;
ratios are medians of per-repeat ratios. A shared machine: only ratios of the same run are compared.

    python benchmarks/bench_int8_transformers.py [--repeats 3] [--seconds 8] [--threads 1]
"""
from __future__ import annotations

import argparse
import sys

import bench_int8
import cnn_models
import common
import numpy as np

VARIANTS = ("fp32", "int8", "int8_static", "int8_dynamic", "ort_static", "ort_dynamic")


def _deit():
    from zoo.models2 import deit_tiny

    return deit_tiny(image=224, patch=16, dim=192, depth=12, heads=3).eval()


def _convnext():
    from zoo.models2 import convnext_tiny

    return convnext_tiny(depths=(3, 3, 9, 3), dims=(96, 192, 384, 768)).eval()


MODELS = {"deit_tiny_224": _deit, "convnext_tiny_224": _convnext}


def ort_dynamic(src, out):
    """quant_pre_process, then quantize_dynamic as ORT's guide shows it (every default)."""
    from onnxruntime.quantization import quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = out.with_name(out.stem + "-pre.onnx")
    bench_int8._quiet(quant_pre_process, str(src), str(pre), skip_symbolic_shape=True)
    bench_int8._quiet(quantize_dynamic, str(pre), str(out))
    return out


def prepare(name, src, calib) -> dict:
    tag = f"int8t-{name}"
    manifests = {"fp32": common.package(src, f"{tag}-fp32")}
    for variant, method in (("int8", "auto"), ("int8_static", "static"), ("int8_dynamic", "dynamic")):
        manifests[variant] = common.package(src, f"{tag}-{variant}", quantize="int8", calib=calib,
                                            allow_mismatch=True, backend_options={"int8_method": method})
    files = {v: str(common.extract_model(m["path"], common.CACHE / f"{tag}-{v}.onnx")) for v, m in manifests.items()}
    bench_int8.documented_recipe(src, calib, common.CACHE / f"{tag}-ort_static.onnx")
    files["ort_static"] = str(common.CACHE / f"{tag}-ort_static.onnx")
    files["ort_dynamic"] = str(ort_dynamic(src, common.CACHE / f"{tag}-ort_dynamic.onnx"))
    chosen = manifests["int8"]["compression"]["int8_method"]
    return {"files": files, "chosen": chosen, "host_hint": manifests["int8"]["compression"]["host_hint"]["ratio"],
            "parity": {v: _parity(m["parity"]) for v, m in manifests.items()},
            "sqnr_db": {v: _sqnr(files["fp32"], files[v]) for v in VARIANTS[1:]}}


def _parity(parity: dict) -> str:
    return f"{'pass' if parity['passed'] else 'FAIL'} ({parity.get('metric')})"


def _sqnr(reference, candidate) -> float:
    """Output SQNR in dB of `candidate` against `reference` on one seeded input."""
    import onnxruntime as ort

    x = np.random.default_rng(1).standard_normal(cnn_models.INPUT_SHAPE).astype(np.float32)
    from edgeopt.parity import sqnr_db

    ref, out = (ort.InferenceSession(p, providers=["CPUExecutionProvider"]).run(None, {cnn_models.INPUT_NAME: x})[0]
                for p in (reference, candidate))
    return round(sqnr_db(ref, out), 1)


def run(repeats, threads, seconds) -> dict:
    cases = []
    for name, build in MODELS.items():
        exported = cnn_models.export_cached(name, build)
        print(f"packaging {name}...", file=sys.stderr)
        prepared = prepare(name, exported["model"], exported["calib"])
        runs = []
        for r in range(repeats):
            print(f"measuring {name}, repeat {r + 1}/{repeats}...", file=sys.stderr)
            runs.append(bench_int8.measure(prepared["files"], threads, seconds))
        cases.append(summarize(name, prepared, runs))
    return {"repeats": repeats, "threads": threads, "seconds": seconds, "cases": cases}


def summarize(name, prepared, runs) -> dict:
    def ratio(num, den):
        return round(common.median(r[num]["p50_ms"] / r[den]["p50_ms"] for r in runs), 3)

    best_recipe = min(("ort_static", "ort_dynamic"), key=lambda v: ratio(v, "fp32"))
    return {"model": name, "chosen": prepared["chosen"], "host_hint": prepared["host_hint"],
            "p50_ms": {v: round(common.median(r[v]["p50_ms"] for r in runs), 3) for v in VARIANTS},
            "vs_fp32": {v: ratio(v, "fp32") for v in VARIANTS[1:]},
            "best_documented_recipe": best_recipe, "int8_vs_best_recipe": ratio("int8", best_recipe),
            "per_repeat_int8_vs_fp32": [round(r["int8"]["p50_ms"] / r["fp32"]["p50_ms"], 3) for r in runs],
            "parity": prepared["parity"], "sqnr_db": prepared["sqnr_db"]}


def markdown(result) -> str:
    rows = []
    for c in result["cases"]:
        r, q = c["vs_fp32"], c["sqnr_db"]
        rows.append([c["model"], f"{c['p50_ms']['fp32']:.3g}", f"{c['chosen']['used']} "
                     f"({c['chosen']['matmul_mac_share']:.0%} MatMul/Gemm)", f"**{r['int8']:.2f}x**",
                     f"{r['int8_static']:.2f}x", f"{r['int8_dynamic']:.2f}x", f"{r['ort_static']:.2f}x",
                     f"{r['ort_dynamic']:.2f}x", f"**{c['int8_vs_best_recipe']:.2f}x** ({c['best_documented_recipe']})",
                     f"{c['host_hint']:.2f}x", " / ".join(f"{q[v]:.1f}" for v in VARIANTS[1:])])
    table = common.md_table(["model", "FP32 ms", "auto chose", "edgeopt INT8/FP32", "static/FP32", "dynamic/FP32",
                             "ORT CNN recipe (static)/FP32", "ORT transformer recipe (dynamic)/FP32",
                             "edgeopt INT8 / best ORT recipe", "package host hint",
                             "SQNR dB: int8, static, dynamic, ORT static, ORT dynamic"], rows)
    return (f"{table}\n\np50 medians of {result['repeats']} repeats, {result['threads']} thread(s), "
            f"{result['seconds']:g} s of interleaved calls per repeat; ratios are medians of per-repeat ratios.")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=8.0, help="interleaved timing per model file and repeat")
    args = parser.parse_args()
    result = run(args.repeats, args.threads, args.seconds)
    table = markdown(result)
    common.save("int8_transformers", result, table)
    print(table)


if __name__ == "__main__":
    main()
