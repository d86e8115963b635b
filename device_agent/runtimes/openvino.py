"""OpenVINO adapter (CPU plugin by default): one compiled model, one infer request.

Settings are explicit and read back: the performance hint, threads and the inference precision
hint are set at compile time (left unset, the CPU plugin runs "FP32" models in bf16 on CPUs
that have it), and describe() reports what the compiled model says it uses, not what was asked.

The timed call matches what OpenVINO's benchmark_app times with `-hint latency` (sync API):
`request.infer()` on input tensors filled once beforehand, outputs left in the request's own
buffers. Passing the feed on each call instead adds a copy in and out (0.2-0.4 ms on a
MobileNetV2-sized model, RUNTIME-NOTES).

A model cache directory (CACHE_DIR) is on by default, so every run after the first imports the
compiled blob instead of compiling again: load times of repeat runs compare like with like, and
the result says whether this run hit the cache (compile_ms is then the blob's import time).

Throughput is measured as benchmark_app measures it: the model compiled with the THROUGHPUT hint (the
bundle's compiled model itself when its hint is a throughput one), an AsyncInferQueue of the compiled
model's OPTIMAL_NUMBER_OF_INFER_REQUESTS requests on inputs filled once, kept busy; a request counts as
completed when it is reused or at the final wait_all. The layer profile is the CPU plugin's performance
counters (PERF_COUNT) of a separately compiled model, read after every profiled inference (they hold the
last inference's times).
"""
import functools
import os
import statistics
import time

from .. import AgentError
from ..measure import layers, throughput
from .base import RuntimeAdapter

THROUGHPUT_HINTS = ("THROUGHPUT", "CUMULATIVE_THROUGHPUT")

CACHE_ENV = "EDGEOPT_AGENT_CACHE"
READ_BACK = ("PERFORMANCE_HINT", "NUM_STREAMS", "INFERENCE_NUM_THREADS", "INFERENCE_PRECISION_HINT",
             "EXECUTION_MODE_HINT", "ENABLE_CPU_PINNING", "ENABLE_HYPER_THREADING", "SCHEDULING_CORE_TYPE")


def model_cache_dir():
    """Where compiled blobs are kept on this device: $EDGEOPT_AGENT_CACHE or ~/.cache/edgeopt-agent."""
    root = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "edgeopt-agent")
    return os.path.join(root, "openvino-model-cache")


def _fill(request, feed):
    """The request's own copy of every input: filled once, reused by every inference it runs."""
    import openvino as ov
    import numpy as np

    for name, array in feed.items():
        request.set_tensor(name, ov.Tensor(np.array(array)))


def _copy_into(tensor, name, array):
    """Copy a feed into an input's own buffer. The shapes must be equal: numpy would broadcast a (1,) feed
    into a scalar input, or one value over a whole tensor, and the run would time other data than the
    accuracy pass, where infer() refuses that shape."""
    import numpy as np

    if np.shape(array) != tuple(tensor.shape):
        raise AgentError("input %r: the feed has shape %s, the compiled model takes %s"
                         % (name, list(np.shape(array)), list(tensor.shape)))
    tensor.data[...] = array


def _async_phase(queue, until):
    """Keep every request of `queue` busy until `until(completed, elapsed_s)` names a stopping rule; then wait
    for the requests in flight. Returns (completed, seconds to the last completion, stopped_by, latencies ms)."""
    latencies, in_flight, stopped_by = [], set(), None
    start = time.perf_counter()
    while stopped_by is None:
        idle = queue.get_idle_request_id()  # waits for a request to finish when all are busy
        if idle in in_flight:  # reused: its previous inference completed
            latencies.append(queue[idle].latency)
        else:
            in_flight.add(idle)
        queue.start_async()
        stopped_by = until(len(latencies), time.perf_counter() - start)
    queue.wait_all()
    duration = time.perf_counter() - start
    latencies += [queue[i].latency for i in in_flight]
    return len(latencies), duration, stopped_by, latencies


def _plain(value):
    """A property value as JSON: ov.Type -> 'f32', enums -> their name, numbers and strings as they are."""
    if hasattr(value, "to_string"):
        return value.to_string()
    if isinstance(value, (bool, int, float, str)):
        return value
    return getattr(value, "name", None) or str(value)


class OpenVinoAdapter(RuntimeAdapter):
    name = "openvino"
    module = "openvino"
    distributions = ("openvino",)  # version from metadata: importing openvino costs the agent ~0.3 s and ~40 MiB
    install_hint = "pip install openvino"
    options = {"device": "text", "performance_hint": ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT"),
               "inference_precision": ("f32", "f16", "bf16"), "num_streams": "count", "model_cache": "bool"}

    def compile_config(self):
        options = self.options
        config = {"PERFORMANCE_HINT": options.get("performance_hint", "LATENCY"),
                  "INFERENCE_PRECISION_HINT": options.get("inference_precision", "f32"),
                  "INFERENCE_NUM_THREADS": str(self.threads)}
        if options.get("num_streams"):
            config["NUM_STREAMS"] = str(options["num_streams"])
        return config

    def load(self, model_path):
        import openvino as ov

        self.core = core = ov.Core()
        self.model_path = model_path
        self.device = self.options.get("device", "CPU")
        if self.device not in core.available_devices:
            raise AgentError("openvino on this device has no %s device (available: %s)"
                             % (self.device, ", ".join(core.available_devices)))
        before = self._use_cache(core)
        start = time.perf_counter()
        # Compiled from a read Model, not from the path: OpenVINO keys a path's cache entry on the
        # path, and every run unpacks the bundle to a fresh directory; a Model is keyed on content.
        model = core.read_model(model_path)
        self.read_ms = (time.perf_counter() - start) * 1e3
        start = time.perf_counter()
        self.compiled = core.compile_model(model, self.device, self.compile_config())
        self.compile_ms = (time.perf_counter() - start) * 1e3
        if before is not None:
            self.cache["hit"] = not (set(os.listdir(self.cache["dir"])) - before)
        self.request = self.compiled.create_infer_request()
        self.outputs = list(self.compiled.outputs)

    def _use_cache(self, core):
        """Turn on the model cache; returns the cache's file names before compiling (None: no cache)."""
        self.cache = {"enabled": False}
        if not self.options.get("model_cache", True):
            self.cache["reason"] = "turned off in the bundle"
            return None
        path = model_cache_dir()
        try:
            os.makedirs(path, exist_ok=True)
            before = set(os.listdir(path))
        except OSError as e:
            self.cache["reason"] = "cannot use %s: %s" % (path, e)
            return None
        core.set_property({"CACHE_DIR": path})
        self.cache = {"enabled": True, "dir": path}
        return before

    def infer(self, feed):
        result = self.request.infer(feed)
        return [result[port] for port in self.outputs]

    def bind(self, feed):
        for name, array in feed.items():
            _copy_into(self.request.get_tensor(name), name, array)
        # No inputs to copy in, outputs left as views of the request's buffers: only the inference.
        return functools.partial(self.request.infer, None, False, True)

    def close(self):
        self.request = None
        self.compiled = None

    def throughput_hint(self):
        return self.options.get("performance_hint", "LATENCY") in THROUGHPUT_HINTS

    def _compile(self, extra):
        """Another compiled model of the same file, with the bundle's settings plus `extra`."""
        config = dict(self.compile_config(), **extra)
        return self.core.compile_model(self.core.read_model(self.model_path), self.device, config)

    def throughput(self, feed, settings):
        import openvino as ov

        compiled = self.compiled if self.throughput_hint() else self._compile({"PERFORMANCE_HINT": "THROUGHPUT"})
        jobs = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        queue = ov.AsyncInferQueue(compiled, jobs)
        for request in queue:
            _fill(request, feed)
        warm_n, warm_s, _, _ = _async_phase(queue, lambda n, s: throughput.warmup_done(n, s, settings) or None)
        completed, duration, stopped_by, latencies = _async_phase(queue, lambda n, s: throughput.stop_rule(n, s, settings))
        return throughput.figures(
            completed, duration, stopped_by, (warm_n, warm_s), method="AsyncInferQueue (as benchmark_app)",
            concurrency=jobs, performance_hint=_plain(compiled.get_property("PERFORMANCE_HINT")),
            num_streams=_plain(compiled.get_property("NUM_STREAMS")),
            request_latency_median_ms=statistics.median(latencies) if latencies else None)

    def profile_layers(self, feed, runs, scratch_dir):
        import openvino as ov

        request = self._compile({"PERF_COUNT": True}).create_infer_request()
        _fill(request, feed)
        for _ in range(layers.WARMUP_RUNS):
            request.infer()
        totals = {}
        for _ in range(runs):
            request.infer()
            for info in request.get_profiling_info():  # the last inference's per-node times
                if info.status == ov.ProfilingInfo.Status.EXECUTED:
                    layers.add(totals, info.node_name, info.node_type, info.real_time.total_seconds() * 1e3)
        return layers.summarize(totals, runs, "OpenVINO performance counters (PERF_COUNT), executed nodes' real time")

    def execution_precisions(self):
        """{precision: count} of the executed graph's layers: what really ran in bf16, i8 or f32."""
        counts = {}
        for op in self.compiled.get_runtime_model().get_ops():
            info = op.get_rt_info()
            if "runtimePrecision" not in info or info["layerType"].astype(str) in ("Input", "Output", "Const"):
                continue
            precision = info["runtimePrecision"].astype(str)
            counts[precision] = counts.get(precision, 0) + 1
        return counts

    def describe(self):
        props = {}
        for key in READ_BACK:
            try:
                props[key] = _plain(self.compiled.get_property(key))
            except RuntimeError:  # a property this plugin or version does not have: left out
                continue
        return {"threads": self.threads, "device": self.device, "options": self.options,
                "performance_hint": props.get("PERFORMANCE_HINT"), "num_streams": props.get("NUM_STREAMS"),
                "inference_num_threads": props.get("INFERENCE_NUM_THREADS"),
                "inference_precision": props.get("INFERENCE_PRECISION_HINT"), "properties": props,
                "read_ms": self.read_ms, "compile_ms": self.compile_ms, "model_cache": self.cache,
                "execution_precisions": self.execution_precisions(), "timed_call": "InferRequest.infer() on pre-filled inputs"}
