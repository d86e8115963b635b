"""ONNX Runtime adapter (CPU execution provider unless the bundle asks for another).

Throughput: N threads call `run` on one session at once (ORT releases the GIL while it computes), the
thread budget split between them: N = the `throughput_streams` runtime option, else one run per thread of
the budget, each with threads // N intra-op threads (at least one).
Layer profile: a second session with ORT's profiler on (SessionOptions.enable_profiling), its Chrome-trace
JSON read back: each node's `_kernel_time` events, after the warm-up runs' `model_run` events.
"""
import functools
import json
import os

from .. import AgentError, bounded
from ..measure import layers, throughput
from .base import RuntimeAdapter


# --runtime-option execution_provider=NAME -> the providers asked for, in ORT's order of preference (a node the
# first cannot run falls to the next).
EXECUTION_PROVIDERS = {
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "cpu": ["CPUExecutionProvider"],
}


def wanted_providers(options):
    """Provider names from runtime options: execution_provider (a short name) wins over a providers list."""
    if options.get("execution_provider"):
        return list(EXECUTION_PROVIDERS[options["execution_provider"]])
    return list(options.get("providers") or ["CPUExecutionProvider"])


def missing_providers(wanted, available):
    """None, or the one-line error naming what is missing and what this onnxruntime has."""
    missing = [p for p in wanted if p not in available]
    if not missing:
        return None
    return ("onnxruntime on this device lacks execution provider(s) %s (available: %s); the GPU providers come "
            "with onnxruntime-gpu (on a Jetson: NVIDIA's JetPack wheel)" % (", ".join(missing), ", ".join(available)))


def provider_options(name):
    """ORT's TensorRT provider keeps its engines in the agent's cache dir, so a repeat run does not rebuild."""
    if name != "TensorrtExecutionProvider":
        return name
    from .tensorrt import engine_dir
    return (name, {"trt_engine_cache_enable": True, "trt_engine_cache_path": os.path.join(engine_dir(), "onnxruntime")})


class OnnxRuntimeAdapter(RuntimeAdapter):
    name = "onnxruntime"
    module = "onnxruntime"
    distributions = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml")
    install_hint = "pip install onnxruntime"
    options = {"providers": "text-list", "throughput_streams": "count",
               "execution_provider": tuple(EXECUTION_PROVIDERS)}

    def new_session(self, threads, profile_prefix=None):
        import onnxruntime as ort

        so = ort.SessionOptions()
        # Set explicitly, never left to the runtime's default: recorded in the result.
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        if profile_prefix:
            so.enable_profiling = True
            so.profile_file_prefix = profile_prefix
        try:
            return ort.InferenceSession(self.model_path, sess_options=so,
                                        providers=[provider_options(p) for p in self.wanted_providers])
        except Exception as e:  # ORT raises its own Fail/InvalidGraph/NotImplemented types
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise AgentError("onnxruntime %s cannot load the model: %s" % (ort.__version__, bounded(first)))

    def load(self, model_path):
        import onnxruntime as ort

        self.model_path = model_path
        self.wanted_providers = wanted_providers(self.options)
        problem = missing_providers(self.wanted_providers, ort.get_available_providers())
        if problem:
            raise AgentError(problem)
        self.session = self.new_session(self.threads)
        self.providers = self.session.get_providers()

    def infer(self, feed):
        return self.session.run(None, feed)

    def bind(self, feed):
        return functools.partial(self.session.run, None, feed)

    def close(self):
        self.session = None

    def throughput(self, feed, settings):
        streams, intra = throughput.split_threads(self.threads, self.options.get("throughput_streams"))
        shared = self.new_session(intra)
        run = functools.partial(shared.run, None, feed)
        completed, duration, stopped_by, warm = throughput.concurrent_runs([run] * streams, settings)
        return throughput.figures(completed, duration, stopped_by, warm, method="concurrent session.run calls "
                                  "from threads on one session", concurrency=streams, threads_per_run=intra)

    def profile_layers(self, feed, runs, scratch_dir):
        session = self.new_session(self.threads, os.path.join(scratch_dir, "ort-profile"))
        for _ in range(layers.WARMUP_RUNS + runs):
            session.run(None, feed)
        path = session.end_profiling()
        try:
            with open(path) as f:
                events = json.load(f)
        finally:
            os.unlink(path)
        return layers.summarize(node_totals(events, layers.WARMUP_RUNS), runs,
                                "onnxruntime profiler (enable_profiling), node kernel times")

    def describe(self):
        import onnxruntime as ort

        return {"threads": self.threads, "inter_op_threads": 1, "execution_mode": "sequential",
                "graph_optimization": "all", "providers": self.providers, "version": ort.__version__,
                # what one timed call is: runtimes time different calls, and a comparison across them should say
                "timed_call": "InferenceSession.run(None, feed): inputs copied in and outputs returned each call"}


def node_totals(events, skip_runs):
    """{node name: (op type, total ms)} from an ORT trace, leaving out the first `skip_runs` model runs."""
    runs = sorted(e["ts"] for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    after = runs[skip_runs] if len(runs) > skip_runs else float("inf")
    totals = {}
    for e in events:
        name = e.get("name", "")
        if e.get("cat") == "Node" and name.endswith("_kernel_time") and e.get("ts", 0) >= after:
            layers.add(totals, name[:-len("_kernel_time")], e.get("args", {}).get("op_name", "?"), e["dur"] / 1e3)
    return totals
