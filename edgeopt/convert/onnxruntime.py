"""ONNX Runtime backend: the portable path. FP32 as is, FP16 weights and compute with float32
I/O, INT8 static (QDQ) or dynamic quantization through onnxruntime.quantization.

A quantized bundle carries a host-side hint (`compression.host_hint`, edgeopt/convert/host_hint.py).
"""
from __future__ import annotations

import dataclasses

from ..compress.mixed_quantize import budget_option, keep_float_option
from ..models import INT8_METHODS
from ..options import option
from ..errors import BadInput
from .base import Backend, Conversion, as_artifact


def ort_session(model_path, threads=0):
    """A host-side session for parity checks: all cores (0), since nothing is timed here."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 4   # fatal only: an error reaches the caller as an exception, said once
    return ort.InferenceSession(str(model_path), sess_options=so, providers=["CPUExecutionProvider"])


def ort_runner(model_path, threads=0):
    session = ort_session(model_path, threads)
    return lambda feed: session.run(None, feed)


def _host_hint(source, request, out, compression, progress, what: str = "quantized") -> list:
    """Time the quantized (or fp16) model against FP32 here into compression["host_hint"]; a warning when not
    faster. Its `int8_ms` is the compressed model's, whichever compression it is."""
    from . import host_hint

    hint = host_hint.measure(source.onnx_path, out, host_hint.feed_of(source, request.calibration), "onnxruntime",
                             {"providers": ["CPUExecutionProvider"]}, progress, what,
                             from_calibration=request.calibration is not None)
    compression["host_hint"] = hint
    return host_hint.warnings(hint, what)


def _quantized_graph(path) -> bool:
    """Whether the graph holds QuantizeLinear/DequantizeLinear nodes (a QAT export)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in graph.node)


def fp16(source, request, out, workdir, progress) -> dict:
    """FP16 weights and compute with float32 I/O; --keep-float leaves nodes in float32 (Casts around them)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from ..compress import mixed_quantize
    from ..compress.mixed_quantize import float_region

    def convert(path, block=()):
        model = onnx.load(str(source.onnx_path))
        block = float_region(model.graph, list(block)) if block else None
        model = convert_float_to_float16(model, keep_io_types=True, node_block_list=block)
        onnx.save(_without_cast_round_trips(model) if block else model, str(path))
        return path

    details, block = {"keep_io_types": True, "tool": "onnxruntime.transformers.float16"}, []
    if request.options.keep_float:
        block, details["keep_float"] = _fp16_keep_float(convert, source, request, workdir, progress)
        if block:
            graph = onnx.load(str(source.onnx_path), load_external_data=False).graph
            details["keep_float"]["float_nodes"] = float_region(graph, block)
        details["notes"] = mixed_quantize.notes(details["keep_float"])
    progress.status("converting weights and compute to FP16")
    convert(out, block)
    return details


def _without_cast_round_trips(model):
    """The model without the Cast(float16) -> Cast(float) pairs that convert_float_to_float16 puts on every
    tensor between two float32 nodes: through them a float32 layer's output still rounded, and overflowed
    past 65504, on its way to the next float32 node."""
    import collections

    from onnx import TensorProto

    graph, outputs = model.graph, {o.name for o in model.graph.output}
    consumers = collections.defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)

    def cast_to(node, kind):
        return node.op_type == "Cast" and any(a.name == "to" and a.i == kind for a in node.attribute)

    dropped = set()
    for down in [n for n in graph.node if cast_to(n, TensorProto.FLOAT16)]:
        users = consumers[down.output[0]]
        backs = [u for u in users if cast_to(u, TensorProto.FLOAT) and u.output[0] not in outputs]
        for back in backs:
            for user in consumers[back.output[0]]:
                user.input[:] = [down.input[0] if i == back.output[0] else i for i in user.input]
            dropped.add(back.name)
        if len(backs) == len(users) and down.output[0] not in outputs:
            dropped.add(down.name)
    kept = [n for n in graph.node if n.name not in dropped]
    del graph.node[:]
    graph.node.extend(kept)
    return model


def _fp16_keep_float(convert, source, request, workdir, progress) -> tuple:
    """([nodes left float32], the manifest's record): the named nodes, or mixed_quantize's measured choice."""
    import onnx

    from ..compress import mixed_quantize

    graph = onnx.load(str(source.onnx_path), load_external_data=False).graph
    ops = dict(mixed_quantize.compute_layers(graph))
    nodes = list(ops) + [n.name for n in graph.node if n.name and n.name not in ops]  # layers listed first
    if request.options.keep_float != mixed_quantize.AUTO:
        names = mixed_quantize.requested(request.options.keep_float)
        kept = mixed_quantize.resolve(names, nodes, "nodes")
        return kept, {"mode": "named", "requested": names, "layers": kept}
    trial = workdir / "trial-fp16.onnx"
    trials = mixed_quantize.Trials(
        reference=ort_runner(source.onnx_path),
        isolated=lambda layer: ort_runner(convert(trial, [n for n in nodes if n != layer])),
        excluding=lambda layers: ort_runner(convert(trial, layers)))
    record = mixed_quantize.choose(list(ops), ops, trials, request, source.inputs, progress, what="FP16",
                                   negligible=mixed_quantize.FP16_NEGLIGIBLE)
    return record["layers"], record


@dataclasses.dataclass(frozen=True)
class OnnxRuntimeOptions:
    keep_float: str = keep_float_option()            # with --quantize int8 or --precision fp16
    max_accuracy_drop: float | None = budget_option()  # the budget of --keep-float auto's choice
    # Not searched: a search tries --quantize dynamic itself.
    int8_method: str = option("auto", "--quantize int8 as static (calibrated activation ranges, QDQ) or dynamic "
                              "(ranges computed at run time, MatMul/Gemm only); auto = dynamic when MatMul/Gemm "
                              "with weights hold most of the MACs (transformers), else static",
                              choices=INT8_METHODS)
    # Not searched either: a device's accuracy figures show what its kernels made of the weights
    int8_weight_bits: int = option(7, "static INT8's weight range: 7 (ONNX Runtime's reduce_range) keeps an x86 CPU "
                                   "without VNNI (AVX2 only) from saturating its 8-bit products (the sample's logits "
                                   "were off by 3.3 there, by 0.67 with 7); 8 for devices with VNNI (AVX-512 VNNI, "
                                   "AVX-VNNI) or ARM, at one bit more of precision", low=7, high=8)


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    runtime = "onnxruntime"
    precisions = ("fp32", "fp16")
    quantizations = ("none", "dynamic", "int8")
    precision_unquantized_only = True   # a quantized graph computes in its own types: --precision is noted, unused
    Options = OnnxRuntimeOptions
    # keep_float applies to fp16 too; a search tries it with int8
    int8_options = ("keep_float", "int8_method", "int8_weight_bits")

    def _validate(self, request):
        """Mixed precision applies to static INT8 (and FP16); its top-1 budget to the measured choice."""
        super()._validate(request)

        if request.options.keep_float and request.quantize != "int8" and not (
                request.quantize == "none" and request.precision == "fp16"):
            raise BadInput("--keep-float applies to --quantize int8 or --precision fp16 on backend onnxruntime")
        if request.options.int8_method != "auto" and request.quantize != "int8":
            raise BadInput(f"int8_method applies to --quantize int8, not --quantize {request.quantize}")
        if request.options.int8_weight_bits != 7 and request.quantize != "int8":
            raise BadInput(f"int8_weight_bits applies to --quantize int8, not --quantize {request.quantize}")
        from ..compress.mixed_quantize import check_budget
        check_budget(request, self.name)

    def calibrates(self, source, request):
        """Static INT8 calibrates; auto's dynamic choice for a transformer-like model does not (it asked for --calib,
        then said it was not used), unless --keep-float auto judges layers on it with no eval data to judge on (it
        takes the eval data first: a bundle so made asked for --calib, did not read it, and its recipe could not be
        rebuilt without it; named layers need no data)."""
        from ..compress import mixed_quantize
        from ..compress.ort_quantize import choose_method

        if choose_method(source.onnx_path, request.options.int8_method)["used"] == "static":
            return True
        return request.options.keep_float == mixed_quantize.AUTO and request.evaluation is None

    def _convert(self, source, request, workdir, progress):
        import onnx
        import onnxruntime

        out = workdir / "model.onnx"
        notes, compression = [], {"quantize": request.quantize, "precision": request.precision}
        if request.quantize != "none":
            from ..compress import ort_quantize
            if _quantized_graph(source.onnx_path):   # ORT's quantizer made an invalid model of it (a traceback)
                raise BadInput(f"{source.reference}: the model is quantized already (QuantizeLinear/DequantizeLinear "
                               "nodes): package it with --quantize none, or quantize its float source",
                               option="quantize")
            compression.update(ort_quantize.quantize(source, request, out, progress, workdir,
                                                     method=request.options.int8_method))
            notes += compression.pop("notes", [])
            if compression.get("method") == "dynamic" and request.options.int8_weight_bits != 7:   # auto's choice
                notes.append(f"int8_weight_bits={request.options.int8_weight_bits} is static INT8's: dynamic "
                             "quantization (chosen here) keeps ONNX Runtime's own weight range")
            if request.precision != "fp32":   # the bundle records what it computes in, not what was asked
                compression["precision"] = "fp32"
                notes.append(f"--precision {request.precision} with --quantize {request.quantize}: ONNX Runtime's "
                             "quantizer keeps the operators it leaves unquantized in fp32, and the bundle records fp32")
            if request.host_timing:
                notes += _host_hint(source, request, out, compression, progress)
        elif request.precision == "fp16" and _quantized_graph(source.onnx_path):
            as_artifact(source.onnx_path, out, workdir)
            compression["precision"] = "fp32"
            notes.append("--precision fp16 on a graph quantized already (QAT's QuantizeLinear/DequantizeLinear): "
                         "converted to float16, its DequantizeLinear scales made the model invalid for ONNX "
                         "Runtime; it runs as it is, INT8 where quantized and fp32 elsewhere, and the bundle records fp32")
        elif request.precision == "fp16":
            compression["fp16"] = fp16(source, request, out, workdir, progress)
            notes += compression["fp16"].pop("notes", [])
            if request.host_timing:   # ONNX Runtime's CPU provider lacks fp16 kernels for most ops: casts around them
                notes += _host_hint(source, request, out, compression, progress, what="fp16")
        else:
            as_artifact(source.onnx_path, out, workdir)
        tools = {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}
        return Conversion(out, [], {"name": self.runtime, "options": {"providers": ["CPUExecutionProvider"]}},
                          compression, tools, notes)

    def float_output_hint(self, request, node, op_type):
        return "" if request.options.keep_float or not node else f"--keep-float {node}"   # as named in the graph

    def host_runner(self, model_path, options=None):
        return ort_runner(model_path)
