"""ONNX Runtime backend: the portable path. FP32 as is, FP16 weights and compute with float32
I/O, INT8 static (QDQ) or dynamic quantization through onnxruntime.quantization.

A quantized bundle carries a host-side hint (`compression.host_hint`): the INT8/FP32 latency
ratio of the artifact and its float twin, timed briefly on this host through the agent's own
ONNX Runtime adapter. It is a hint, not a measurement of the device: it exists so that an INT8
bundle that is no faster than FP32 is noticed at package time, not after shipping.
"""
from __future__ import annotations

import shutil
import time

from .base import Backend, Conversion

HINT_THREADS = 1          # the steadiest figure on a shared host; the device's thread count may differ
HINT_SECONDS = 1.0        # timing budget for both models together, after warm-up
HINT_MIN_ROUNDS, HINT_MAX_ROUNDS = 5, 500


def ort_session(model_path, threads=0):
    """A host-side session for parity checks: all cores (0), since nothing is timed here."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    return ort.InferenceSession(str(model_path), sess_options=so, providers=["CPUExecutionProvider"])


def ort_runner(model_path, threads=0):
    session = ort_session(model_path, threads)
    return lambda feed: session.run(None, feed)


def host_hint(float_path, quantized_path, feed, threads=HINT_THREADS, seconds=HINT_SECONDS) -> dict:
    """Median latency of the float and the quantized model on this host, timed in alternation
    (so that a neighbour's load hits both alike), and their ratio (< 1: INT8 is faster)."""
    (fp32_ms, int8_ms), rounds = time_alternating([float_path, quantized_path], feed, threads, seconds)
    return {"ratio": round(int8_ms / fp32_ms, 3), "fp32_ms": round(fp32_ms, 4), "int8_ms": round(int8_ms, 4),
            "threads": threads, "rounds": rounds, "runtime": "onnxruntime",
            "note": "INT8/FP32 latency on the packaging host, timed briefly; the device's number is the one that counts"}


def time_alternating(paths, feed, threads=HINT_THREADS, seconds=HINT_SECONDS) -> tuple:
    """([median ms per model], rounds): ONNX models timed on this host in alternation, through the agent's
    own ONNX Runtime adapter, after two warm-up rounds (first-run allocations and kernel selection)."""
    import numpy as np

    from device_agent.runtimes.onnxruntime import OnnxRuntimeAdapter

    calls = []
    for path in paths:
        adapter = OnnxRuntimeAdapter(threads, {"providers": ["CPUExecutionProvider"]})
        adapter.load(str(path))
        calls.append(adapter.bind(feed))
    for call in calls * 2:
        call()
    samples, start = [[] for _ in calls], time.perf_counter()
    while len(samples[0]) < HINT_MAX_ROUNDS:
        for call, out in zip(calls, samples):
            t0 = time.perf_counter()
            call()
            out.append(time.perf_counter() - t0)
        if len(samples[0]) >= HINT_MIN_ROUNDS and time.perf_counter() - start >= seconds:
            break
    return [float(np.median(s)) * 1e3 for s in samples], len(samples[0])


def _hint_feed(source, calibration):
    """One model call's feed of real calibration samples when there are some, else of seeded random inputs
    (the first call of the sample set, padded to the model's batch: stacked inputs and scalars included)."""
    from ..data import feeds, random_samples

    samples = calibration if calibration is not None else random_samples(source.inputs, 1)
    return next(feeds(samples, source.inputs, pad=True))[2]


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    runtime = "onnxruntime"
    precisions = ("fp32", "fp16")
    quantizations = ("none", "dynamic", "int8")

    def _convert(self, source, request, workdir, progress):
        import onnx
        import onnxruntime

        out = workdir / "model.onnx"
        notes, compression = [], {"quantize": request.quantize, "precision": request.precision}
        if request.quantize != "none":
            from ..compress import ort_quantize
            compression.update(ort_quantize.quantize(source, request, out, progress, workdir))
            notes += compression.pop("notes", [])
            progress.status("timing INT8 against FP32 on this host (a hint)")
            hint = host_hint(source.onnx_path, out, _hint_feed(source, request.calibration))
            compression["host_hint"] = hint
            if hint["ratio"] >= 1.0:
                notes.append(f"warning: INT8 ran {hint['ratio']:.2f}x the FP32 latency on this host; "
                             "benchmark both on the device before choosing INT8")
        elif request.precision == "fp16":
            progress.status("converting weights and compute to FP16")
            from onnxruntime.transformers.float16 import convert_float_to_float16
            model = convert_float_to_float16(onnx.load(str(source.onnx_path)), keep_io_types=True)
            onnx.save(model, str(out))
            compression["fp16"] = {"keep_io_types": True, "tool": "onnxruntime.transformers.float16"}
        else:
            shutil.copyfile(source.onnx_path, out)
        tools = {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}
        return Conversion(out, [], {"name": self.runtime, "options": {"providers": ["CPUExecutionProvider"]}},
                          compression, tools, notes)

    def host_runner(self, model_path, options=None):
        return ort_runner(model_path)
