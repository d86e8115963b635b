"""Static INT8 (QDQ, per-channel, calibrated) and dynamic quantization with onnxruntime.quantization.

Scheme choice is measured, not ORT's default: S8S8 ran at 0.78-0.95x of FP32 latency on
x86 while U8S8 (uint8 activations, int8 per-channel weights) ran at 0.3-0.47x (RUNTIME-NOTES).
The profile's int8_scheme picks it and the manifest records which was used.

Static or dynamic. ORT's documentation recommends dynamic quantization (activation ranges computed at run
time) for transformers and RNNs and static for CNNs; `method="auto"` follows it by where the MACs are: in
MatMul/Gemm with weights (transformers, ConvNeXt's pointwise layers) dynamic, else static. Static QDQ
puts quantize/dequantize pairs around every LayerNorm, GELU and residual Add of a transformer: DeiT-Ti
ran at 0.81x of float that way and 0.58x dynamic, ConvNeXt-T 0.57x and 0.44x
(benchmarks/bench_int8_transformers.py).
Dynamic quantization never takes Conv: its ConvInteger ran 3.5-8x slower than float on CPUs.

The graph is quantized after ONNX Runtime's pre-processing (constant folding, Conv+BatchNorm
fusion: edgeopt/simplify.py, the step its documented `quant_pre_process` runs), never as
exported. QDQ pairs inserted around an unfused BatchNormalization, or a Conv whose bias is
computed at run time, keep ORT from fusing Conv+BN and from forming QLinearConv in NHWC: the
"INT8" model then ran 1.3-2.6x slower than FP32 (docs/architecture.md).
"""
from __future__ import annotations

import contextlib
import logging
import tempfile
import threading

from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                      quantize_dynamic, quantize_static)

from ..data import feeds, plan, sample_count
from ..errors import BadInput, first_line
from ..parity import source_on
from . import mixed_quantize

# Dynamic quantization's ops: ONNX Runtime's integer-op registry without Conv (ConvInteger is slow). Its dynamic
# quantizer first rewrites every Gemm as a MatMul named GEMM_AS_MATMUL (and an Add), so Gemms are MatMuls here.
DYNAMIC_OPS = ("MatMul", "Attention", "LSTM", "Gather", "EmbedLayerNormalization")
# What dynamic quantization makes of them (recorded: which ops of this model really run in integer).
INTEGER_OPS = ("MatMulInteger", "DynamicQuantizeLSTM", "DynamicQuantizeMatMul", "QAttention", "QEmbedLayerNormalization")
GEMM_AS_MATMUL = "{}_MatMul"   # onnxruntime.quantization.onnx_model.ONNXModel.replace_gemm_with_matmul
SCHEMES = {"u8s8": ("QUInt8", "QInt8"), "s8s8": ("QInt8", "QInt8"), "s8s8-symmetric": ("QInt8", "QInt8")}
# Schemes whose activations are quantized symmetrically too (zero point 0): TensorRT's explicit quantization
# accepts only symmetric INT8 QDQ (per-channel weights, per-tensor activations), ORT's default is asymmetric.
SYMMETRIC = ("s8s8-symmetric",)
CONV_OPS = {"Conv", "ConvTranspose"}
# model calls whose activations ORT holds at once while calibrating (it held every sample's: a calibration file of
# 2**18 8x8 images reached 4.9 GB, a fuzzing audit); MinMax ranges merge exactly, so the result is the same
CALIBRATION_STRIDE = 32


@contextlib.contextmanager
def _quiet_root_logger():
    """onnxruntime.quantization logs a pre-processing tip on the root logger at WARNING on every call, and numpy
    warns of a division in its zero point where a range is infinite (said by _broken_scales instead, in one line).
    The calibration's own sessions log a failing node to stderr in colour, past --quiet, before the exception
    that source_on says in one line: ONNX Runtime's default logger is held at fatal meanwhile. Its module-level
    logging.warning() also gives the root logger a stderr handler for good (logging.basicConfig), and paramiko's
    tracebacks of a hung device then reached stderr past --json (a fleet walkthrough): it is taken away after."""
    import warnings

    import onnxruntime

    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    root.setLevel(logging.ERROR)
    onnxruntime.set_default_logger_severity(4)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            yield
    finally:
        root.setLevel(level)
        for added in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(added)
        onnxruntime.set_default_logger_severity(2)   # ONNX Runtime's default: warnings


def _broken_scales(path) -> list:
    """The tensors whose QuantizeLinear scale is not a finite number > 0: calibration saw an infinite range (an
    additive attention mask of -inf), and the model made ignores that input (a BERT's logits no longer moved with
    its mask) while its outputs' SQNR still passed parity."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path), load_external_data=False).graph
    constants = {t.name: t for t in graph.initializer}
    broken = []
    for node in graph.node:
        scale = constants.get(node.input[1]) if node.op_type == "QuantizeLinear" and len(node.input) > 1 else None
        if scale is not None:
            values = numpy_helper.to_array(scale).astype(np.float64)
            if not (np.all(np.isfinite(values)) and np.all(values > 0)):
                broken.append(node.input[0])
    return broken


class _Reader(CalibrationDataReader):
    """Feeds calibration samples a model call at a time and advances the progress bar as ORT pulls them, in the
    consecutive ranges of ORT's strided calibration (`CalibStridedMinMax`, a divisor of the calls: stride())."""

    def __init__(self, calibration, inputs, progress):
        self.calibration, self.inputs, self.progress = calibration, inputs, progress
        self.count = sample_count(calibration)
        batch = plan(calibration, inputs)[1]
        self.n_calls = self.count // batch   # whole calls only, as feeds() gives them without padding
        if not self.n_calls:   # fewer samples than a fixed batch: ORT's "No data is collected." traceback
            raise BadInput(f"--calib: the calibration data holds {self.count} sample(s), fewer than one call of "
                           f"the model takes ({batch}, its fixed batch)", option="calib")
        self.rewind()

    def __len__(self):
        return self.n_calls

    def stride(self) -> int:
        """The most calls at most CALIBRATION_STRIDE that divides them (ORT refuses a short last range)."""
        return max(d for d in range(1, min(CALIBRATION_STRIDE, self.n_calls) + 1) if self.n_calls % d == 0)

    def set_range(self, start_index: int, end_index: int):
        if start_index != self.position:   # ORT asks for them in order; anything else read from the start again
            self.rewind()
            for _ in range(start_index):
                next(self.calls, None)
            self.position = start_index
        self.end = end_index

    def get_next(self):
        # Whole model calls only (edgeopt.data.feeds): a fixed-batch model cannot take a short tail.
        if self.position >= self.end:
            return None
        _, size, feed = next(self.calls, (None, 0, None))
        self.position += 1
        self.progress.advance(size)
        return feed

    def rewind(self):
        self.calls, self.position, self.end = feeds(self.calibration, self.inputs), 0, self.n_calls


def preprocess(source, workdir, progress):
    """(the float model to quantize, what was done): the source when intake already simplified it
    with ORT's basic optimizer, else that same pass run now (with --no-simplify too: it is part of
    the quantization recipe, as in ORT's own)."""
    from ..simplify import TOOL, simplify

    done = source.simplification or {}
    if done.get("tool") == TOOL:  # tried at intake: applied, or refused for a reason that still holds
        return source.onnx_path, {"applied": done["applied"], "tool": TOOL, "by": "intake simplification"}
    progress.status("pre-processing the graph for quantization")
    out = workdir / "preprocessed.onnx"
    done = dict(simplify(source.onnx_path, out), by="quantization pre-processing")
    return (out if done["applied"] else source.onnx_path), done


QDQ_MIN_OPSET = 13   # DequantizeLinear's `axis` (per-channel weights) came in opset 13


def _qdq_opset(model_in, workdir, progress):
    """(the model converted to opset 13, what was done) where its default-domain opset is older, else None: static
    INT8 writes per-channel Q/DQ with an `axis`, which opset 11 and 12 lack, and every model of the legacy exporter's
    opset 11 with a Conv or Gemm bias made an artifact onnxruntime refused (a walkthrough). onnx's own version
    converter upgrades it, as ONNX Runtime's documentation advises before quantizing."""
    import onnx
    from onnx import version_converter

    declared = onnx.load(str(model_in), load_external_data=False).opset_import   # the weights only if converted
    opset = next((o.version for o in declared if o.domain in ("", "ai.onnx")), None)
    if opset is None or opset >= QDQ_MIN_OPSET:
        return None
    progress.status(f"converting the graph from opset {opset} to {QDQ_MIN_OPSET} for INT8 Q/DQ")
    try:
        upgraded = version_converter.convert_version(onnx.load(str(model_in)), QDQ_MIN_OPSET)
    except Exception as e:   # onnx raises RuntimeError or its own types, naming the op it cannot convert
        raise BadInput(f"static INT8 writes per-channel Q/DQ, which needs opset {QDQ_MIN_OPSET}; the model's opset "
                       f"{opset} did not convert ({first_line(e)}): export it at opset {QDQ_MIN_OPSET} or later, or "
                       "use --quantize dynamic") from None
    out = workdir / f"opset{QDQ_MIN_OPSET}.onnx"
    onnx.save(upgraded, str(out))
    note = (f"the graph was converted from opset {opset} to {QDQ_MIN_OPSET} (onnx's version converter) for INT8: "
            f"per-channel Q/DQ needs opset {QDQ_MIN_OPSET}")
    return out, {"from": opset, "to": QDQ_MIN_OPSET, "note": note}


_TEMPDIR_SET = threading.Lock()


@contextlib.contextmanager
def _temporary_files_in(workdir):
    """ONNX Runtime's quantizer makes temporary folders of its own (`ort.quant.*`, a copy of the model with its
    weights) in the system's: a package killed meanwhile (kill -9, the out-of-memory killer) left them there for
    good. They go in this run's scratch folder instead, which a later run removes (edgeopt.scratch). The setting is
    the process's: one quantization at a time sets it (two in threads put back each other's, a review)."""
    with _TEMPDIR_SET:
        before = tempfile.tempdir
        tempfile.tempdir = str(workdir)
        try:
            yield
        finally:
            tempfile.tempdir = before


def quantize(source, request, out, progress, workdir, method="static", op_types=None) -> dict:
    """Quantize the pre-processed source to `out`; `method` (models.INT8_METHODS) applies to --quantize int8, and
    --quantize dynamic is dynamic whatever it says. `op_types`: static Q/DQ on these ops' inputs only (None: on
    every op ONNX Runtime quantizes)."""
    with _temporary_files_in(workdir):
        return _quantize(source, request, out, progress, workdir, method, op_types)


def _quantize(source, request, out, progress, workdir, method, op_types) -> dict:
    model_in, pre = preprocess(source, workdir, progress)
    choice = choose_method(model_in, "dynamic" if request.quantize == "dynamic" else method)
    upgraded = None if choice["used"] == "dynamic" else _qdq_opset(model_in, workdir, progress)
    if upgraded is not None:
        model_in, pre["opset"] = upgraded
    quantizer = (_Dynamic(model_in, progress) if choice["used"] == "dynamic"
                 else _Static(model_in, request, source, workdir, progress, op_types))
    exclude, details = [], {"notes": [pre["opset"]["note"]] if upgraded is not None else []}
    if request.options.keep_float:
        exclude, details["keep_float"] = _keep_float(quantizer, model_in, source, request, workdir, progress)
        details["notes"] += mixed_quantize.notes(details["keep_float"])
    quantizer(out, exclude=exclude)
    # auto's own note says why dynamic, and that Conv stays float; the quantizer's, what it left float
    details["notes"][:0] = [] if "reason" in choice else quantizer.notes()
    recurrent = _float_recurrent(out)
    if recurrent:
        details["float_recurrent"] = recurrent
        details["notes"].append(_float_recurrent_note(recurrent, model_in, choice["used"]))
    if request.quantize == "int8":
        details["int8_method"] = choice
        if "reason" in choice:
            details["notes"].append(f"INT8 {choice['used']}: {choice['reason']}")
    record = quantizer.record(out)
    # keep-float auto reads it only without eval data (OnnxRuntimeBackend.calibrates); named layers never do
    reads_it = request.options.keep_float == mixed_quantize.AUTO and request.evaluation is None
    if choice["used"] == "dynamic" and request.calibration is not None and not reads_it:
        # the way to static differs: int8_method is --quantize int8's option, refused beside --quantize dynamic
        static = ("--quantize int8 calibrates with --calib" if request.quantize == "dynamic" else
                  "--backend-option int8_method=static calibrates with --calib")
        details["notes"].append(f"dynamic INT8 calibrates nothing: it computes activation ranges at run time, so "
                                f"--calib is not used ({static})")
    if record.get("integer_ops") == {}:   # a conv-only model: packaged as "INT8 dynamic", it ran float throughout
        details["notes"].append("warning: dynamic quantization found no op it takes (MatMul, Gemm, LSTM, Gather) "
                                "in this model, so the bundle runs in float; --quantize int8 quantizes Conv "
                                "statically")
    return {**record, "preprocess": pre, **details}


def _float_recurrent(model_path) -> dict:
    """{op type: count} of the LSTM/GRU/RNN nodes the quantized model still runs in float: static QDQ quantizes
    none of them, dynamic quantization takes LSTM (as DynamicQuantizeLSTM) but not GRU or RNN. A GRU model's
    "INT8" bundle had quantized one small Gemm and said nothing of the GRUs that do the work."""
    import collections

    import onnx

    from ..models import RECURRENT_OPS

    nodes = onnx.load(str(model_path), load_external_data=False).graph.node
    return dict(sorted(collections.Counter(n.op_type for n in nodes if n.op_type in RECURRENT_OPS).items()))


def _float_recurrent_note(recurrent: dict, model_in, method: str) -> str:
    import onnx

    from ..models import recurrent_share

    share = recurrent_share(onnx.load(str(model_in)))
    held = f"; they hold {share:.0%} of the MACs, so INT8 changes little of the work" if share else ""
    lstm = ("; --backend-option int8_method=dynamic quantizes an LSTM's weights"
            if method == "static" and "LSTM" in recurrent else "")
    return (f"{', '.join(f'{n} {op}' for op, n in recurrent.items())} left float: ONNX Runtime's static INT8 "
            f"quantizes no recurrent op, and its dynamic INT8 takes LSTM only{held}{lstm}")


def choose_method(model_path, wanted: str) -> dict:
    """The manifest's record of static or dynamic: `wanted`, or for auto the MAC share of MatMul/Gemm
    with weights against models.TRANSFORMER_MAC_SHARE (static where MACs cannot be counted)."""
    from ..models import RECURRENT_OPS, transformer_like

    if wanted != "auto":
        return {"requested": wanted, "used": wanted}
    like, share = transformer_like(model_path)
    record = {"requested": "auto", "used": "dynamic" if like else "static", "matmul_mac_share": share}
    if record["used"] == "dynamic":   # the unusual choice is told; static is what --quantize int8 always meant
        import onnx
        ops = {n.op_type for n in onnx.load(str(model_path), load_external_data=False).graph.node}
        conv = "; Conv stays float" if "Conv" in ops else ""   # said of an LSTM or encoder with none, it misled
        # matmul_mac_share leaves recurrent ops out: "100 % of the MACs" was said of a GRU model's one small Gemm
        outside = " outside the recurrent ops" if ops & set(RECURRENT_OPS) else ""
        record["reason"] = (f"MatMul/Gemm with weights hold {share:.0%} of the MACs{outside} (as in transformers, for which "
                            f"ONNX Runtime recommends dynamic quantization){conv}; --backend-option "
                            "int8_method=static quantizes every op with calibrated ranges instead")
    return record


class _Dynamic:
    """quantize_dynamic on DYNAMIC_OPS: int8 weights, activations quantized at run time; no calibration."""

    def __init__(self, model_in, progress):
        self.model_in, self.progress = model_in, progress

    def notes(self) -> list:
        import onnx

        op_types = {n.op_type for n in onnx.load(str(self.model_in), load_external_data=False).graph.node}
        if op_types & CONV_OPS:
            return ["dynamic quantization leaves Conv float (its ConvInteger ran 3.5-8x slower than float on "
                    "CPUs); static INT8 quantizes it (--quantize int8, int8_method=static on a transformer)"]
        return []

    def record(self, out) -> dict:
        import collections

        import onnx

        made = collections.Counter(n.op_type for n in onnx.load(str(out), load_external_data=False).graph.node)
        return {"method": "dynamic", "weights": "int8", "activations": "uint8, ranges computed at run time",
                "op_types": ["Gemm", *DYNAMIC_OPS],
                "integer_ops": {op: n for op, n in sorted(made.items()) if op in INTEGER_OPS},
                "float_conv": sum(made[op] for op in CONV_OPS)}

    def layers(self, graph) -> dict:
        return {name: op for name, op in mixed_quantize.compute_layers(graph) if op in ("MatMul", "Gemm")}

    def __call__(self, out, exclude=(), only=()):
        def as_quantized(names):   # a Gemm is quantized under its MatMul's name
            return [n for name in names for n in (name, GEMM_AS_MATMUL.format(name))]

        self.progress.status("dynamic INT8 quantization")
        with _quiet_root_logger():
            quantize_dynamic(str(self.model_in), str(out), weight_type=QuantType.QInt8,
                             op_types_to_quantize=list(DYNAMIC_OPS), nodes_to_exclude=as_quantized(exclude),
                             nodes_to_quantize=as_quantized(only))
        return out


class _Static:
    """quantize_static with one calibration: the first call collects the tensor ranges into a cache
    file, later calls (mixed-precision trials, the final model) quantize from it in a fraction of the time."""

    def __init__(self, model_in, request, source, workdir, progress, op_types=None):
        import onnx

        self.model_in, self.request, self.source, self.progress = model_in, request, source, progress
        self.op_types = list(op_types) if op_types else None
        self.scheme = request.int8_scheme if request.int8_scheme in SCHEMES else "u8s8"
        self.types = tuple(getattr(QuantType, name) for name in SCHEMES[self.scheme])
        # 7-bit weights where the backend asks (onnxruntime's int8_weight_bits): ONNX Runtime's U8S8 kernels on an
        # x86 CPU without VNNI sum pairs of 8-bit products in 16 bits (VPMADDUBSW), which saturate. Never for
        # TensorRT's symmetric scheme: it computes in INT8 whole
        self.weight_bits = 8 if self.scheme in SYMMETRIC else getattr(request.options, "int8_weight_bits", 8)
        self.samples = sample_count(request.calibration)
        self.cache = workdir / "calibration-ranges.json"
        self.joins = output_joins(onnx.load(str(model_in), load_external_data=False).graph)
        self.unbounded = []   # the ops around tensors of an infinite range, left float (__call__)

    def notes(self) -> list:
        said = [f"{', '.join(self.joins)} left float: a Concat that makes a graph output would give every tensor it "
                "joins one INT8 scale (a detector's boxes in hundreds of pixels and its scores in 0-1: the scores "
                "round to 0), and saves nothing quantized, since the output is float"] if self.joins else []
        if self.unbounded:
            said.append(f"{', '.join(self.unbounded)} left float: calibration saw an infinite range there (an "
                        "additive attention mask of -inf), which no 8-bit scale holds")
        return said

    def record(self, out=None) -> dict:
        act, wt = self.types
        return {"method": "static", "format": "QDQ", "scheme": self.scheme, "activations": str(act),
                "weights": str(wt), "weight_bits": self.weight_bits, "per_channel": True,
                "symmetric": self.scheme in SYMMETRIC,
                "op_types": self.op_types or "every op ONNX Runtime quantizes",
                "calibration": {"method": "MinMax", "samples": self.samples},
                **({"float_output_joins": self.joins} if self.joins else {}),
                **({"float_unbounded": self.unbounded} if self.unbounded else {})}

    def layers(self, graph) -> dict:
        return dict(mixed_quantize.compute_layers(graph))

    def extra_options(self) -> dict:
        out = {}
        if self.scheme in SYMMETRIC:
            # Bias stays float, as NVIDIA's own QDQ exporters (pytorch-quantization, ModelOpt) leave it: TensorRT
            # quantizes weights and activations from the Q/DQ pairs and fuses a float bias into the INT8 kernel.
            out.update(ActivationSymmetric=True, WeightSymmetric=True, QuantizeBias=False)
        if self.op_types:   # their inputs only: ONNX Runtime would also put a Q/DQ pair on their outputs
            out["OpTypesToExcludeOutputQuantization"] = list(self.op_types)
        return out

    def __call__(self, out, exclude=(), only=()):
        """Quantize to `out`: every node but `exclude`, or only the nodes `only`. The ops around a tensor whose
        calibrated range no 8-bit scale holds (_broken_scales) are left float too (`self.unbounded`), and it is
        quantized again from the cached ranges: a BERT's additive mask of -inf made its INT8 model ignore the mask."""
        for _ in range(UNBOUNDED_ROUNDS):
            self._quantize(out, [*exclude, *self.joins, *self.unbounded], only)
            broken = _broken_scales(out)
            around = _ops_around(self.model_in, broken)
            if not broken or not set(around) - set(self.unbounded):
                break
            self.unbounded = list(dict.fromkeys([*self.unbounded, *around]))
        if broken:
            raise BadInput(f"static INT8 calibration gave {broken[0]} a range no 8-bit scale holds (its scale is not "
                           f"a finite number; {len(broken)} tensor(s) so), and leaving the ops around it float did "
                           "not help: quantize it dynamically (--backend-option int8_method=dynamic)",
                           option="quantize")
        return out

    def _quantize(self, out, exclude, only):
        reader = None
        if not self.cache.exists():
            reader = _Reader(self.request.calibration, self.source.inputs, self.progress)
            self.progress.start("calibrating INT8", total=reader.count, unit="samples")
        act, wt = self.types
        strided = {"CalibStridedMinMax": reader.stride()} if reader is not None else {}
        try:
            with _quiet_root_logger(), source_on("the calibration data", python_errors=False):
                quantize_static(str(self.model_in), str(out), reader, quant_format=QuantFormat.QDQ,
                                per_channel=True, reduce_range=self.weight_bits == 7, activation_type=act,
                                weight_type=wt,
                                calibrate_method=CalibrationMethod.MinMax,
                                nodes_to_exclude=list(dict.fromkeys(exclude)),
                                nodes_to_quantize=list(only), op_types_to_quantize=self.op_types,
                                calibration_cache_path=str(self.cache),
                                extra_options=dict(self.extra_options(), **strided))
        finally:
            if reader is not None:
                self.progress.finish()


UNBOUNDED_ROUNDS = 4   # each round leaves float the ops around what the last one found; a mask needs one or two


def _ops_around(model, tensors: list) -> list:
    """The named nodes that make or read `tensors`."""
    import onnx

    wanted = set(tensors)
    return [n.name for n in onnx.load(str(model), load_external_data=False).graph.node
            if n.name and wanted & (set(n.input) | set(n.output))]


# Ops that only move a tensor's elements: a Concat behind them still makes the graph output (YOLOv5's head
# permutes its [N, 4 + classes, anchors] Concat to [N, anchors, 4 + classes], and the scores were lost again)
LAYOUT_OPS = ("Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity")


def output_joins(graph) -> list:
    """The named Concat nodes that produce a graph output, directly or through LAYOUT_OPS (those too), which
    static INT8 leaves float (_Static.notes: why)."""
    producer = {out: n for n in graph.node for out in n.output}
    joins = []
    for output in graph.output:
        chain, node = [], producer.get(output.name)
        while node is not None and node.op_type in LAYOUT_OPS and node.input:
            chain.append(node)
            node = producer.get(node.input[0])
        if node is not None and node.op_type == "Concat":
            joins += [n.name for n in [node, *chain] if n.name and n.name not in joins]
    return joins


def _keep_float(quantizer, model_in, source, request, workdir, progress) -> tuple:
    """([nodes left in float], the manifest's record) for --keep-float: the named nodes, or the
    layers mixed_quantize chooses by measuring quantized trials against the float model."""
    import onnx

    from ..convert.onnxruntime import ort_runner

    graph = onnx.load(str(model_in), load_external_data=False).graph
    ops = quantizer.layers(graph)
    if request.options.keep_float != mixed_quantize.AUTO:
        names = mixed_quantize.requested(request.options.keep_float)
        nodes = list(ops) + [n.name for n in graph.node if n.name and n.name not in ops]  # layers listed first
        kept = mixed_quantize.resolve(names, nodes, "nodes")
        return kept, {"mode": "named", "requested": names, "layers": kept}
    quantizer(workdir / "trial.onnx")   # static: calibrates once, with its progress bar, before the trials
    trials = mixed_quantize.Trials(
        reference=ort_runner(model_in),
        isolated=lambda layer: ort_runner(quantizer(workdir / "trial.onnx", only=[layer])),
        excluding=lambda layers: ort_runner(quantizer(workdir / "trial.onnx", exclude=layers)))
    record = mixed_quantize.choose(list(ops), ops, trials, request, source.inputs, progress)
    return record["layers"], record
