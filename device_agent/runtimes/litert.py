"""LiteRT (TFLite) adapter: ai_edge_litert's Interpreter, or tflite_runtime's on boards whose
Python is too old for ai-edge-litert (its last release, 2.14, still runs Python 3.8-3.11).

XNNPACK is LiteRT's default CPU delegate and is on unless the bundle or `--runtime-option
xnnpack=false` turns it off; whether a delegate really took part of the graph is read from the
interpreter's execution plan (a DELEGATE node), not assumed.
Full-integer models take int8 inputs and give int8 outputs: float feeds are quantized and
outputs dequantized with each tensor's scale and zero point, so callers always see floats.
The timed call is `invoke()` alone, with inputs set once, as TFLite's benchmark_model times it.
An output padded to a static length (detections after NMS: LiteRT cannot size an output by the data)
is trimmed to its valid rows, counted by another output of the model that the runtime option
`valid_rows` names; callers see the source model's outputs, not the padding or the count.

Throughput: an interpreter is not safe to share between threads, so each concurrent run has its own
(N = the `throughput_streams` runtime option, else one per thread of the budget, threads // N each);
`invoke()` releases the GIL. The layer profile is absent: the Python interpreters (ai_edge_litert,
tflite_runtime) expose no per-op profiler; TFLite's C++ benchmark_model --enable_op_profiling has one.
"""
import importlib
import sys

from .. import AgentError, bounded
from ..measure import throughput
from .base import RuntimeAdapter, importlib_metadata

NO_PROFILER = ("the LiteRT Python interpreter (%s) has no per-op profiler API; TFLite's C++ benchmark_model "
               "--enable_op_profiling has one")

# Python modules tried in order; the first that imports is used.
INTERPRETER_MODULES = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter")


class LiteRtAdapter(RuntimeAdapter):
    name = "litert"
    module = "ai_edge_litert"
    distributions = ("ai-edge-litert", "ai-edge-litert-nightly", "tflite-runtime")
    install_hint = "pip install ai-edge-litert   (Python 3.8 boards: pip install tflite-runtime)"
    options = {"xnnpack": "bool", "tensor_names": "text-map", "throughput_streams": "count", "valid_rows": "text-map"}

    @classmethod
    def installed_version(cls):
        for dist in cls.distributions:
            try:
                return importlib_metadata.version(dist)
            except importlib_metadata.PackageNotFoundError:
                continue
        return None

    def import_module(self):
        errors = []
        for name in INTERPRETER_MODULES:
            try:
                return importlib.import_module(name)
            except ImportError as e:
                errors.append("%s: %s" % (name, e))
        raise AgentError("this device's Python (%s) has no LiteRT interpreter (%s); install it with `%s -m %s`"
                         % (sys.executable, "; ".join(errors), sys.executable, self.install_hint))

    def new_interpreter(self, threads):
        mod = self.import_module()
        kwargs = {"model_path": self.model_path, "num_threads": threads}
        if not self.xnnpack_requested:
            kwargs["experimental_op_resolver_type"] = mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        try:
            interpreter = mod.Interpreter(**kwargs)
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise AgentError("LiteRT (%s) cannot load the model: %s" % (self.module_name, bounded(first)))
        return interpreter

    def load(self, model_path):
        self.model_path = model_path
        self.module_name = self.import_module().__name__.split(".")[0]
        self.xnnpack_requested = self.options.get("xnnpack", True)
        self.interpreter = self.new_interpreter(self.threads)
        self.xnnpack_applied = delegate_applied(self.interpreter)
        self.inputs, self.outputs = tensor_details(self.interpreter)
        # The bundle may name tensors differently from the artifact (its source model's names).
        to_bundle = dict((artifact, bundle) for bundle, artifact in (self.options.get("tensor_names") or {}).items())
        self.input_index = dict((to_bundle.get(d["name"], d["name"]), d) for d in self.inputs)
        self.outputs, self.row_counts = split_counts(self.outputs, to_bundle, self.options.get("valid_rows") or {})

    def follow_outputs(self, names):
        """The manifest's order where every name resolves: a bundle packaged while the signature's sorted order
        was taken lists its outputs so (output_10 before output_2), and this agent, which takes the subgraph's,
        paired its eval references and top-1 with the wrong tensors (a review). Padded outputs keep theirs."""
        to_bundle = dict((artifact, bundle) for bundle, artifact in (self.options.get("tensor_names") or {}).items())
        shown = [to_bundle.get(d["name"], d["name"]) for d in self.outputs]
        if self.row_counts or shown == list(names) or sorted(shown) != sorted(names):
            return
        self.outputs = [self.outputs[shown.index(name)] for name in names]

    def set_inputs(self, feed, interpreter=None):
        for name, detail in self.input_index.items():
            if name not in feed:
                raise AgentError("no data for the model's input %r (got %s)" % (name, ", ".join(sorted(feed))))
            (interpreter or self.interpreter).set_tensor(detail["index"], quantize(feed[name], detail))

    def infer(self, feed):
        self.set_inputs(feed)
        self.interpreter.invoke()
        outputs = [dequantize(self.interpreter.get_tensor(d["index"]), d) for d in self.outputs]
        for position, count in self.row_counts.items():
            outputs[position] = outputs[position][:int(self.interpreter.get_tensor(count["index"]).reshape(-1)[0])]
        return outputs

    def bind(self, feed):
        self.set_inputs(feed)
        return self.interpreter.invoke

    def close(self):
        self.interpreter = None

    def throughput(self, feed, settings):
        streams, per_run = throughput.split_threads(self.threads, self.options.get("throughput_streams"))
        interpreters = [self.new_interpreter(per_run) for _ in range(streams)]
        for interpreter in interpreters:
            self.set_inputs(feed, interpreter)
        completed, duration, stopped_by, warm = throughput.concurrent_runs([i.invoke for i in interpreters], settings)
        return throughput.figures(completed, duration, stopped_by, warm, method="concurrent invoke() calls from "
                                  "threads, one interpreter each", concurrency=streams, threads_per_run=per_run)

    def profile_layers(self, feed, runs, scratch_dir):
        return {"available": False, "reason": NO_PROFILER % self.module_name}

    def describe(self):
        return {"threads": self.threads, "interpreter": self.module_name, "version": self.installed_version(),
                "xnnpack": {"requested": self.xnnpack_requested, "applied": self.xnnpack_applied},
                "int8_io": any(is_quantized(d) for d in self.inputs + self.outputs),
                "timed_call": "Interpreter.invoke() on inputs set once; outputs not read"}


def tensor_details(interpreter):
    """(inputs, outputs) details in the model's own order, named by their signature names when it
    has one signature (args_0, ... / output_0, ... or a dict's keys); else the plain tensor details.

    The signature lists its names sorted as text (output_10 before output_2, "alpha" before "zeta"),
    while the subgraph keeps the source's order, which parity and the eval data's references pair by
    position: so the names are put in the subgraph's order of their tensors."""
    signatures = interpreter.get_signature_list() if hasattr(interpreter, "get_signature_list") else {}
    plain = {"inputs": interpreter.get_input_details(), "outputs": interpreter.get_output_details()}
    if len(signatures) != 1:
        return plain["inputs"], plain["outputs"]
    key = next(iter(signatures))
    runner = interpreter.get_signature_runner(key)
    found = []
    for kind, details in (("inputs", runner.get_input_details()), ("outputs", runner.get_output_details())):
        position = dict((d["index"], i) for i, d in enumerate(plain[kind]))
        ordered = []
        for name in signatures[key][kind]:
            d = dict(details[name])
            d["name"] = name
            ordered.append(d)
        ordered.sort(key=lambda d: position.get(d["index"], len(position)))   # stable: unknown ones keep theirs
        found.append(ordered)
    return found[0], found[1]


def split_counts(outputs, to_bundle, valid_rows):
    """(the outputs a caller sees, {position among them: the detail of the output counting its valid
    rows}) for valid_rows {bundle output name: artifact name of its count}."""
    by_name = dict((d["name"], d) for d in outputs)
    counters = set(valid_rows.values())
    missing = sorted(counters - set(by_name))
    if missing:
        raise AgentError("the model has no output %s, which runtime option valid_rows names" % ", ".join(missing))
    shown = [d for d in outputs if d["name"] not in counters]
    bundle_names = [to_bundle.get(d["name"], d["name"]) for d in shown]
    counts = dict((i, by_name[valid_rows[name]]) for i, name in enumerate(bundle_names) if name in valid_rows)
    return shown, counts


def delegate_applied(interpreter):
    """Whether a delegate (XNNPACK, the only default one) took over part of the graph: its execution
    plan then holds a DELEGATE node. None when this interpreter cannot list its plan."""
    partitions = delegate_partitions(interpreter)
    return None if partitions is None else partitions > 0


def delegate_partitions(interpreter):
    """How many parts of the graph a delegate took over (one DELEGATE node each; ops between them run on
    LiteRT's own kernels). None when this interpreter cannot list its plan."""
    ops = getattr(interpreter, "_get_ops_details", None)  # both ai_edge_litert and tflite_runtime 2.14 have it
    if ops is None:
        return None
    return sum(op["op_name"] == "DELEGATE" for op in ops())


def is_quantized(detail):
    """An integer tensor with a scale: int8 I/O of a full-integer model."""
    import numpy as np

    return np.dtype(detail["dtype"]).kind in "iu" and bool(detail["quantization"][0])


def quantize(array, detail):
    """A float array as the tensor's integer type (scale, zero point); other arrays as they are."""
    import numpy as np

    dtype = np.dtype(detail["dtype"])
    if not is_quantized(detail) or np.issubdtype(array.dtype, np.integer):
        return np.asarray(array, dtype=dtype, order="C")   # ascontiguousarray makes a scalar 1-D
    scale, zero_point = detail["quantization"]
    info = np.iinfo(dtype)
    q = np.round(array / scale) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(array, detail):
    import numpy as np

    if not is_quantized(detail):
        return array
    scale, zero_point = detail["quantization"]
    return ((array.astype(np.float32) - zero_point) * scale).astype(np.float32)
