"""The host-side hint every quantizing backend records (`compression.host_hint`): the latency of the quantized
artifact against its float twin, timed briefly on this host in alternation through the agent's own adapter for
the bundle's runtime (ONNX Runtime, OpenVINO, LiteRT). It is a hint, not a measurement of the device: it exists
so that a quantized bundle no faster than float is noticed at package time, not after shipping.
"""
from __future__ import annotations

import time

from ..errors import BadInput, first_line

THREADS = 1          # the steadiest figure on a shared host; the device's thread count may differ
SECONDS = 1.0        # timing budget for both models together, after warm-up
MIN_ROUNDS, MAX_ROUNDS = 5, 500
NOTE = "quantized/float latency on the packaging host, timed briefly; the device's number is the one that counts"


def measure(float_path, quantized_path, feed: dict, runtime: str, options: dict, progress,
            what: str = "quantized", from_calibration: bool = True) -> dict:
    """{"ratio" (< 1: the quantized model is faster), "fp32_ms", "int8_ms", ...} for the two models.
    from_calibration: whether `feed` is of the calibration data (feed_of), else of random inputs."""
    from device_agent import AgentError

    from ..parity import source_on

    progress.status(f"timing the {what} model against float on this host (a hint)")
    started = time.perf_counter()
    if runtime == "openvino":   # its compiled blobs of models this host compiles once stayed in ~/.cache for good
        options = dict(options or {}, model_cache=False)   # (125 MB for one ResNet-50 bundle, PTQ or QAT)
    try:
        (fp32_ms, int8_ms), rounds = time_alternating([float_path, quantized_path], feed, runtime=runtime,
                                                      options=options)
    except AgentError as e:   # the model made does not load (it was a traceback, exit 1): no bundle of it
        raise BadInput(f"the {what} model does not run on this host's {runtime}: {e}") from None
    except ModelFailed as e:   # the feed is the calibration data: token ids past the vocabulary were a traceback
        data = "the calibration data" if from_calibration else "random inputs"
        if e.index == 0 and from_calibration:
            with source_on(data):
                raise e.error from None
        model = "source" if e.index == 0 else what
        raise BadInput(f"the {model} model fails on this host's {runtime} on {data}: {first_line(e.error)}") from None
    # the ratio from the figures as recorded, so that a reader who divides them gets the same ratio
    fp32_ms, int8_ms = round(fp32_ms, 4), round(int8_ms, 4)
    return {"ratio": round(int8_ms / fp32_ms, 3), "fp32_ms": fp32_ms, "int8_ms": int8_ms,
            "threads": THREADS, "rounds": rounds, "runtime": runtime, "note": NOTE,
            "seconds": round(time.perf_counter() - started, 3)}   # loading, warming and timing both: in the conversion


HARDLY_FASTER = 0.95   # a quantized MobileNetV3 at 0.99x here was 1.25x float on the device, and said nothing


def warnings(hint: dict, what: str = "quantized") -> list:
    """The package note when the quantized (or fp16) model was not faster here, or within 5 % of float: what
    quantization is for is gone, and a brief timing's noise decides the sign."""
    if hint["ratio"] < HARDLY_FASTER:
        return []
    how = "not faster" if hint["ratio"] >= 1.0 else "hardly faster"
    return [f"warning: the {what} model was {how} than float on this host ({hint['ratio']:.2f}x the float "
            "latency): measure both on the device (edgeopt bench) before shipping it"]


class ModelFailed(Exception):
    """The runtime's error running the model at `index` of time_alternating's paths on the feed."""

    def __init__(self, index: int, error: Exception):
        super().__init__(str(error))
        self.index, self.error = index, error


def time_alternating(paths, feed: dict, threads: int = THREADS, seconds: float = SECONDS, runtime: str = "onnxruntime",
                     options: dict | None = None) -> tuple:
    """([median ms per model], rounds): models timed on this host in alternation (a neighbour's load hits
    them alike), through the agent's adapter for `runtime`, after two warm-up rounds (first-run allocations,
    kernel selection)."""
    import numpy as np

    from device_agent.runtimes import adapter_class

    from ..capture import captured_output

    calls = []
    with captured_output():   # LiteRT's native "Created TensorFlow Lite XNNPACK delegate" must not reach stderr
        for path in paths:
            adapter = adapter_class(runtime)(threads, dict(options or {}))
            adapter.import_module()
            adapter.load(str(path))
            calls.append(adapter.bind(feed))
        for _ in range(2):
            for index, call in enumerate(calls):
                try:
                    call()
                except Exception as e:  # noqa: BLE001 - the runtime's own error on this feed, told by its model
                    raise ModelFailed(index, e) from None
    samples, start = [[] for _ in calls], time.perf_counter()
    while len(samples[0]) < MAX_ROUNDS:
        for call, out in zip(calls, samples):
            t0 = time.perf_counter()
            call()
            out.append(time.perf_counter() - t0)
        if len(samples[0]) >= MIN_ROUNDS and time.perf_counter() - start >= seconds:
            break
    return [float(np.median(s)) * 1e3 for s in samples], len(samples[0])


def feed_of(source, calibration) -> dict:
    """One model call's feed of real calibration samples when there are some, else of seeded random inputs
    (the first call of the sample set, padded to the model's batch: stacked inputs and scalars included)."""
    from ..data import feeds, random_samples

    samples = calibration if calibration is not None else random_samples(source.inputs, 1)
    return next(feeds(samples, source.inputs, pad=True))[2]
