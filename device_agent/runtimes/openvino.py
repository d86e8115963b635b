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
"""
import functools
import os
import time

from .. import AgentError
from .base import RuntimeAdapter

CACHE_ENV = "EDGEOPT_AGENT_CACHE"
READ_BACK = ("PERFORMANCE_HINT", "NUM_STREAMS", "INFERENCE_NUM_THREADS", "INFERENCE_PRECISION_HINT",
             "EXECUTION_MODE_HINT", "ENABLE_CPU_PINNING", "ENABLE_HYPER_THREADING", "SCHEDULING_CORE_TYPE")


def model_cache_dir():
    """Where compiled blobs are kept on this device: $EDGEOPT_AGENT_CACHE or ~/.cache/edgeopt-agent."""
    root = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "edgeopt-agent")
    return os.path.join(root, "openvino-model-cache")


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

        core = ov.Core()
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
            self.request.get_tensor(name).data[...] = array
        # No inputs to copy in, outputs left as views of the request's buffers: only the inference.
        return functools.partial(self.request.infer, None, False, True)

    def close(self):
        self.request = None
        self.compiled = None

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
