"""Shared helpers for the bench_litert_*.py scripts: the models, edgeopt packaging for a Raspberry Pi
profile, LiteRT's own `litert-benchmark`, and the litert-torch + ai-edge-quantizer recipe as a user
writes it by hand from the libraries' docs.

Subcommands, each run in a fresh process and printing one JSON line:
  python litert_common.py reference --model M.tflite --num_runs N ...   litert-benchmark, unrounded
  python litert_common.py calls M.tflite THREADS BLOCKS CALLS          invoke() vs run_by_name()
  python litert_common.py hand int8|fp32 OUT_DIR                        the recipe by hand
  python litert_common.py edgeopt int8|fp32 OUT_DIR                     `edgeopt package`
"""
from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import tempfile
import time

import common

PROFILE = "raspberry-pi-5"
LITERT_BENCHMARK = pathlib.Path(sys.executable).parent / "litert-benchmark"
TFLITE_MEMBER = "model/model.tflite"


def models(names=("digits_cnn", "mobilenet_v2")) -> dict:
    """{name: {"model": .onnx, "calib": .npz, "eval": .npz or None}} (the CNN export is cached)."""
    out = {}
    for name in names:
        if name == "digits_cnn":
            from edgeopt.api import sample_paths
            s = sample_paths()
            out[name] = {"model": s["model"], "calib": s["calib"], "eval": s["eval"]}
        else:
            import cnn_models
            out[name] = dict(cnn_models.mobilenet_v2_onnx(), eval=None)
    return out


def package(name, info, quantize="none", precision="fp32", int8_io="", eval_data=True, profile=PROFILE) -> dict:
    """edgeopt.api.package for a Raspberry Pi profile into the cache. The random-weight CNN has no
    eval data and near-tied logits, so its INT8 parity (top-1 agreement) says nothing: allowed
    there (as bench_int8.py does); the digits model must pass it."""
    extra = {"calib": info["calib"]} if quantize in ("int8", "dynamic") else {}
    if eval_data and info["eval"]:
        extra["eval_data"] = info["eval"]
    return common.package(info["model"], name, profile=profile, precision=precision, quantize=quantize,
                          int8_io=int8_io, allow_mismatch=info["eval"] is None, **extra)


def extract_tflite(bundle, dest) -> pathlib.Path:
    """The bundle's model/model.tflite (the exact file the agent runs)."""
    return common.extract_model(bundle, dest, TFLITE_MEMBER)


def versions() -> dict:
    """The LiteRT-side tool versions (common.save records python, numpy, onnxruntime, torch)."""
    from importlib.metadata import version

    return {d: version(d) for d in ("ai-edge-litert", "litert-torch", "ai-edge-quantizer")}


def calib_samples(calib):
    import numpy as np
    with np.load(calib) as f:
        return f[f.files[0]]


# --- litert-benchmark -----------------------------------------------------------------------------

def litert_benchmark(tflite, threads, runs, warmup) -> dict:
    """LiteRT's own benchmark (the `litert-benchmark` console script of ai-edge-litert) in a fresh
    process: {"median_ms", "avg_ms", "min_ms", "num_runs", "fully_accelerated", "command"}."""
    args = ["--model", str(tflite), "--num_runs", str(runs), "--warmup_runs", str(warmup),
            "--num_threads", str(threads)]
    with tempfile.TemporaryDirectory(prefix="litert-benchmark-") as tmp:
        out = pathlib.Path(tmp) / "out.json"
        subprocess.run([sys.executable, __file__, "reference", *args, "--result_json", str(out)],
                       check=True, capture_output=True, text=True)
        doc = json.loads(out.read_text())
    lat = doc["latency"]
    return {"median_ms": lat["median_ms"], "avg_ms": lat["avg_ms"], "min_ms": lat["min_ms"],
            "num_runs": lat["num_runs"], "fully_accelerated": doc["fully_accelerated"],
            "accelerators": doc["accelerators"], "command": " ".join(["litert-benchmark", *args])}


def _reference_main(argv):
    """litert-benchmark's own main(), unchanged but for one thing: its JSON rounds every latency
    to 0.01 ms, which is 50-100 % of a 10-20 us digits-CNN run, so `round` is made the identity
    in its module for this process. The timed loop (CompiledModel.run_by_name with buffers
    created and filled once, time.perf_counter around each call, statistics.median) is its own."""
    from ai_edge_litert.tools import benchmark_litert_model as tool

    tool.round = lambda value, ndigits=None: value
    sys.argv = ["litert-benchmark", *argv]
    tool.main()


def call_overhead(tflite, threads, blocks=20, calls=None) -> dict:
    """The two timed calls side by side in one fresh process: the agent's `Interpreter.invoke()`
    (inputs set once) and litert-benchmark's `CompiledModel.run_by_name(signature, inputs, outputs)`
    (buffers created and filled once), in alternating blocks. {"invoke_p50_ms", "run_by_name_p50_ms"}."""
    args = [str(tflite), str(threads), str(blocks), str(calls or 0)]
    out = subprocess.run([sys.executable, __file__, "calls", *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _calls_main(tflite, threads, blocks, calls):
    import argparse
    import statistics

    import numpy as np
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_litert.tools import benchmark_litert_model as tool

    threads, blocks, calls = int(threads), int(blocks), int(calls)
    interpreter = Interpreter(model_path=tflite, num_threads=threads)  # XNNPACK by default, as the agent
    interpreter.allocate_tensors()
    for d in interpreter.get_input_details():
        interpreter.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
    # The CompiledModel built exactly as litert-benchmark builds it (its own helpers).
    args = argparse.Namespace(model=tflite, num_threads=threads, use_npu=False, use_gpu=False, no_cpu=False,
                              require_full_delegation=False, runtime_path="", compiler_plugin_path="",
                              dispatch_library_path="")
    cm_cls, ha_cls, env_cls, env_opts_cls, opts_cls, cpu_opts_cls = tool._import_litert()
    env = tool.create_environment(args, env_cls, env_opts_cls)
    model = cm_cls.from_file(tflite, environment=env, options=tool.create_model_options(
        args, opts_cls, cpu_opts_cls, tool.build_hardware_accelerators(args, ha_cls)))
    sig = list(model.get_signature_list())[0]
    inputs = {n: model.create_input_buffer_by_name(sig, n) for n in model.get_input_tensor_details(sig)}
    outputs = {n: model.create_output_buffer_by_name(sig, n) for n in model.get_output_tensor_details(sig)}
    for n, buf in inputs.items():
        tool.fill_random_input(buf, model.get_input_tensor_details(sig)[n])
    invoke = interpreter.invoke

    def run_by_name():
        model.run_by_name(sig, inputs, outputs)

    clock = time.perf_counter_ns
    if not calls:  # about 0.1 s a block
        t0 = clock()
        for _ in range(20):
            invoke()
        calls = max(5, int(0.1e9 / max((clock() - t0) / 20, 1)))
    samples = {"invoke": [], "run_by_name": []}
    for fn in (invoke, run_by_name):  # warm both
        for _ in range(calls):
            fn()
    for b in range(blocks):
        for name, fn in ((("invoke", invoke), ("run_by_name", run_by_name)) if b % 2 == 0
                         else (("run_by_name", run_by_name), ("invoke", invoke))):
            out = samples[name]
            for _ in range(calls):
                t0 = clock()
                fn()
                out.append(clock() - t0)
    print(json.dumps({"invoke_p50_ms": statistics.median(samples["invoke"]) / 1e6,
                      "run_by_name_p50_ms": statistics.median(samples["run_by_name"]) / 1e6,
                      "calls_per_block": calls, "blocks": blocks}))


# --- packaging: by hand and with edgeopt (fresh processes) -------------------------------------------

def _run_json(args) -> dict:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{' '.join(args)} failed:\n{out.stderr[-3000:]}")
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    doc["process_s"] = time.perf_counter() - start
    return doc


def hand_recipe(mode, out_dir) -> dict:
    """{"seconds": convert + export (+ calibrate + quantize + write), "process_s", ...}."""
    return _run_json(["hand", mode, str(out_dir)])


def edgeopt_recipe(mode, out_dir) -> dict:
    """{"package_s": the whole `edgeopt package` command, "conversion_s": its backend's own clock,
    "process_s"}."""
    return _run_json(["edgeopt", mode, str(out_dir)])


def _imports():
    """What both sides import before their clock starts: torch, litert-torch, the quantizer."""
    import warnings

    warnings.filterwarnings("ignore")
    import ai_edge_quantizer  # noqa: F401
    import litert_torch  # noqa: F401
    import torch  # noqa: F401


def _hand_main(mode, out_dir):
    """What a user following litert-torch's and ai-edge-quantizer's READMEs writes: convert the torch
    module with a sample input, export, then the static_wi8_ai8 recipe, `calibrate` on a list of
    {input name: sample} dicts for the signature (the quantizer's default calibration), quantize, write."""
    import_start = time.perf_counter()
    _imports()
    import litert_torch
    import torch
    from ai_edge_quantizer import quantizer, recipe

    import cnn_models

    imports_s = time.perf_counter() - import_start
    model = cnn_models.mobilenet_v2(settle=False)  # the user's torch module, loaded outside the clock
    model.load_state_dict(torch.load(cnn_models.mobilenet_v2_state_dict()))
    samples = calib_samples(cnn_models.mobilenet_v2_onnx()["calib"])
    out = pathlib.Path(out_dir)
    start = time.perf_counter()
    float_path = out / f"hand-{mode}-float.tflite"
    litert_torch.convert(model.eval(), (torch.randn(*cnn_models.INPUT_SHAPE),)).export(str(float_path))
    convert_s = time.perf_counter() - start
    if mode == "int8":
        qt = quantizer.Quantizer(str(float_path))
        qt.load_quantization_recipe(recipe.static_wi8_ai8())
        calibration = {"serving_default": [{"args_0": samples[i:i + 1]} for i in range(len(samples))]}
        result = qt.quantize(qt.calibrate(calibration))
        result.export_model(str(out / "hand-int8.tflite"), overwrite=True)
    print(json.dumps({"seconds": time.perf_counter() - start, "convert_s": convert_s, "imports_s": imports_s}))


def _edgeopt_main(mode, out_dir):
    """`edgeopt package MODEL.onnx --profile raspberry-pi-5 [--quantize int8 --calib C.npz]`: the CLI
    itself, called in-process after the same imports as the hand recipe."""
    import_start = time.perf_counter()
    _imports()
    from edgeopt.bundle import read_manifest
    from edgeopt.cli import main

    import cnn_models

    imports_s = time.perf_counter() - import_start
    info = cnn_models.mobilenet_v2_onnx()
    bundle = pathlib.Path(out_dir) / f"edgeopt-{mode}.edgepkg"
    args = ["package", str(info["model"]), "--profile", PROFILE, "-o", str(bundle), "--quiet"]
    if mode == "int8":
        args += ["--quantize", "int8", "--calib", str(info["calib"]), "--allow-mismatch"]
    start = time.perf_counter()
    try:
        main.main(args, standalone_mode=False)
    except SystemExit as e:  # the CLI ends with sys.exit(code)
        if e.code:
            raise
    package_s = time.perf_counter() - start
    manifest = read_manifest(bundle)
    print(json.dumps({"package_s": package_s, "conversion_s": manifest["tools"]["conversion_seconds"],
                      "imports_s": imports_s, "command": "edgeopt " + " ".join(args)}))


if __name__ == "__main__" and sys.argv[1:2] == ["reference"]:
    _reference_main(sys.argv[2:])
elif __name__ == "__main__" and sys.argv[1:2] == ["calls"]:
    _calls_main(*sys.argv[2:6])
elif __name__ == "__main__" and sys.argv[1:2] == ["hand"]:
    _hand_main(*sys.argv[2:4])
elif __name__ == "__main__" and sys.argv[1:2] == ["edgeopt"]:
    _edgeopt_main(*sys.argv[2:4])
