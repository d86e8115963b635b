"""LiteRT INT8 recipes on the same float .tflite: full integer (every op: LiteRT's full-integer recipe), the
compute ops only (edgeopt's int8_ops=compute), dynamic-range INT8 (LiteRT's dynamic-range recipe), and what
edgeopt's default `--quantize int8` (int8_method=auto, int8_ops=auto) chose, against float.

The float .tflite is `edgeopt package --profile raspberry-pi-5`'s (zoo models, tests/zoo, legacy export); the
recipes are ai-edge-quantizer's, calibrated by hand on the same calibration samples (min/max). All models of one
zoo model are timed in one process, call by call in turn for --seconds (1 thread, XNNPACK), so a neighbour's
load hits them alike; medians. Also records each model's XNNPACK partition count.

    python benchmarks/bench_litert_int8_ops.py [--models deit_tiny,convnext] [--seconds 10]
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tarfile

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import common  # noqa: E402
import zoo_matrix  # noqa: E402

RECIPES = ("float", "all", "compute", "dynamic", "edgeopt")
CALIBRATION_STEPS = 32


def _float_tflite(model: str, work: pathlib.Path) -> tuple:
    """(float .tflite, int8 edgeopt bundle's .tflite, what it chose, calibration .npz)."""
    from edgeopt import api

    files = zoo_matrix._files(model, "legacy")
    out = {}
    for quantize in ("none", "int8"):
        bundle = work / f"{model}-{quantize}.edgepkg"
        int8 = {"calib": str(files["calib"]), "int8_io": "float"} if quantize == "int8" else {}
        manifest = api.package(str(files["onnx"]), "raspberry-pi-5", bundle, quantize=quantize, force=True, **int8)
        with tarfile.open(bundle) as tar:
            path = work / f"{model}-{quantize}.tflite"
            path.write_bytes(tar.extractfile(manifest["model"]).read())
        out[quantize] = (path, manifest)
    return out["none"][0], out["int8"][0], _chosen(out["int8"][1]["compression"]), files["calib"]


def _chosen(compression: dict) -> str:
    """"dynamic", or static with int8_ops' choice ("all": every op, "compute")."""
    if compression["int8_method"]["used"] == "dynamic":
        return "dynamic"
    return compression["int8_ops"]["used"]


def _quantized(float_path, kind: str, steps, signature: str) -> bytes:
    from ai_edge_quantizer import calibrator, qtyping, quantizer, recipe
    from ai_edge_quantizer.algorithm_manager import AlgorithmName
    from ai_edge_quantizer.utils import qsv_utils

    from edgeopt.convert.tflite import COMPUTE_OPS

    q = quantizer.Quantizer(str(float_path))
    if kind == "dynamic":
        q.load_quantization_recipe(recipe.dynamic_wi8_afp32())
        return q.quantize(None).quantized_model
    op = qtyping.TFLOperationName
    if kind == "all":
        q.load_quantization_recipe(recipe.static_wi8_ai8())
    else:
        for name in COMPUTE_OPS:
            q.add_static_config(".*", getattr(op, name), 8, 8, algorithm_key=AlgorithmName.MIN_MAX_UNIFORM_QUANT)
    for io in (op.INPUT, op.OUTPUT):   # float I/O, as the float model has
        q.update_quantization_recipe(".*", io, None, algorithm_key=AlgorithmName.NO_QUANTIZE)
    calib = calibrator.Calibrator(str(float_path), qsv_update_func=qsv_utils.min_max_update)
    calib.calibrate({signature: steps}, q._recipe_manager)
    return q.quantize(calib.get_model_qsvs()).quantized_model


def _runner(path):
    from ai_edge_litert.interpreter import Interpreter

    from device_agent.runtimes.litert import delegate_partitions

    interpreter = Interpreter(str(path), num_threads=1)
    interpreter.allocate_tensors()
    return interpreter.get_signature_runner(), delegate_partitions(interpreter)


def run_model(model: str, seconds: float, work: pathlib.Path) -> dict:
    from ai_edge_litert.interpreter import Interpreter

    float_path, edgeopt_path, record, calib_file = _float_tflite(model, work)
    probe = Interpreter(str(float_path))
    signature, spec = next(iter(probe.get_signature_list().items()))
    name = spec["inputs"][0]
    shape = tuple(probe.get_signature_runner().get_input_details()[name]["shape"])
    with np.load(calib_file) as data:
        samples = next(iter(data.values())).astype(np.float32)
    if samples.shape[1:] != shape[1:]:   # image calibration in NCHW, the .tflite takes NHWC
        samples = samples.transpose(0, 2, 3, 1)
    steps = [{name: samples[i:i + 1]} for i in range(min(CALIBRATION_STEPS, len(samples)))]
    paths = {"float": float_path, "edgeopt": edgeopt_path}
    for kind in ("all", "compute", "dynamic"):
        paths[kind] = work / f"{model}-{kind}.tflite"
        paths[kind].write_bytes(_quantized(float_path, kind, steps, signature))
    runners = {k: _runner(paths[k]) for k in RECIPES}
    feed = {name: samples[:1]}
    for run, _ in runners.values():
        run(**feed)
    times = common.interleaved({kind: lambda run=run: run(**feed) for kind, (run, _) in runners.items()}, seconds)
    fp32 = float(np.median(times["float"]))
    return {"model": model, "chosen": record, "rounds": len(times["float"]),
            "ms": {k: round(float(np.median(v)) * 1e3, 4) for k, v in times.items()},
            "vs_float": {k: round(float(np.median(v)) / fp32, 3) for k, v in times.items()},
            "xnnpack_partitions": {k: runners[k][1] for k in RECIPES}}


def markdown(rows: list) -> str:
    lines = ["| model | " + " | ".join(f"{k} / float" for k in RECIPES[1:]) + " | edgeopt chose | XNNPACK "
             "partitions (" + ", ".join(RECIPES) + ") |", "|---" * (len(RECIPES) + 2) + "|"]
    for r in rows:
        lines.append(f"| {r['model']} | " + " | ".join(f"{r['vs_float'][k]:.2f}x" for k in RECIPES[1:])
                     + f" | {r['chosen']} | "
                     + ", ".join(str(r["xnnpack_partitions"][k]) for k in RECIPES) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # single-input models only: the calibration feed here is one array (silero_vad and its state: the zoo matrix)
    ap.add_argument("--models", default="deit_tiny,convnext,mobilenet_v2,resnet18,yolov8n")
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args(argv)
    work = common.CACHE / "litert_int8_ops"
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for model in args.models.split(","):
        rows.append(run_model(model, args.seconds, work))
        print(json.dumps(rows[-1]), flush=True)
    text = markdown(rows)
    print(text)
    (common.RESULTS / "litert_int8_ops.json").write_text(json.dumps(rows, indent=1) + "\n")
    (common.RESULTS / "litert_int8_ops.md").write_text("# LiteRT INT8 recipes against float\n\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
