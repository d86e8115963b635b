"""LiteRT INT8 of models with depthwise convolutions wider than 5x5 (ConvNeXt's 7x7, the Silero-like model's
256-tap STFT filter): every variant `edgeopt package --profile raspberry-pi-5` can make, against float.

  full INT8    int8_method=static int8_ops=all: every op int8 (LiteRT's full-integer recipe)
  compute      int8_method=static int8_ops=compute: convolutions and fully connected layers int8
  static auto  int8_method=static: int8_ops=auto, which keeps wide depthwise convolutions float
  dynamic      int8_method=dynamic: int8 weights, activations at run time (LiteRT's dynamic-range recipe)
  default      plain --quantize int8 (int8_method=auto, int8_ops=auto)

All with float I/O, from the zoo's legacy ONNX export (tests/zoo) and its calibration data; the .tflite files of
one model are timed in one process, call by call in turn for --seconds (1 thread, XNNPACK), medians; each input
is fed a fixed random array (an int64 input, the sample rate, 16000). x86 host: a hint for the Pi.

    PYTHONPATH=. python benchmarks/bench_litert_wide_depthwise.py [--models convnext,silero_vad] [--seconds 10]
"""
from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import common  # noqa: E402
import zoo_matrix  # noqa: E402

VARIANTS = {"full INT8": {"int8_method": "static", "int8_ops": "all"},
            "compute": {"int8_method": "static", "int8_ops": "compute"},
            "static auto": {"int8_method": "static"}, "dynamic": {"int8_method": "dynamic"}, "default": {}}


def _tflite_files(model: str, work) -> dict:
    """{variant: (.tflite path, manifest)}, float first."""
    from edgeopt import api

    files = zoo_matrix._files(model, "legacy")
    made = {}
    for variant, options in {"float": None, **VARIANTS}.items():
        bundle = work / f"{model}-{variant.replace(' ', '_')}.edgepkg"
        int8 = {} if options is None else {"quantize": "int8", "calib": str(files["calib"]), "int8_io": "float",
                                           "backend_options": options}
        manifest = api.package(str(files["onnx"]), "raspberry-pi-5", bundle, force=True, **int8)
        made[variant] = (common.extract_model(bundle, bundle.with_suffix(".tflite"), manifest["model"]), manifest)
    return made


def _feed(runner) -> dict:
    rng = np.random.default_rng(0)
    return {name: rng.standard_normal(d["shape"]).astype(d["dtype"]) if np.dtype(d["dtype"]).kind == "f"
            else np.full(d["shape"], 16000, d["dtype"]) for name, d in runner.get_input_details().items()}


def run_model(model: str, seconds: float, work) -> dict:
    from ai_edge_litert.interpreter import Interpreter

    made = _tflite_files(model, work)
    runners = {}
    for variant, (path, _) in made.items():
        interpreter = Interpreter(str(path), num_threads=1)
        interpreter.allocate_tensors()
        runner = interpreter.get_signature_runner()
        runners[variant] = (runner, _feed(runner))
        runner(**runners[variant][1])
    times = common.interleaved({variant: lambda runner=runner, feed=feed: runner(**feed)
                                for variant, (runner, feed) in runners.items()}, seconds)
    fp32 = float(np.median(times["float"]))
    default = made["default"][1]["compression"]
    return {"model": model, "float_ms": round(fp32 * 1e3, 4), "rounds": len(times["float"]),
            "vs_float": {k: round(float(np.median(v)) / fp32, 3) for k, v in times.items() if k != "float"},
            "default_chose": default["int8_method"]["used"] + (
                f", int8_ops {default['int8_ops']['used']}" if "int8_ops" in default else ""),
            "float_depthwise": made["static auto"][1]["compression"]["int8_ops"].get("float_depthwise", 0),
            "parity": {k: m["parity"]["passed"] for k, (_, m) in made.items()}}


def markdown(rows: list) -> str:
    headers = ["model", "float ms"] + [f"{k} / float" for k in VARIANTS] + ["default chose", "wide depthwise"]
    return common.md_table(headers, [[r["model"], r["float_ms"]] + [f"{r['vs_float'][k]:.2f}x" for k in VARIANTS]
                                     + [r["default_chose"], r["float_depthwise"]] for r in rows])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="convnext,silero_vad")
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args(argv)
    work = common.CACHE / "litert_wide_depthwise"
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for model in args.models.split(","):
        rows.append(run_model(model, args.seconds, work))
        print(rows[-1], flush=True)
    text = markdown(rows)
    print(text)
    common.save("litert_wide_depthwise", {"rows": rows, "seconds": args.seconds}, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
