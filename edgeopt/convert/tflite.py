"""LiteRT (TFLite) backend, for ARM boards such as the Raspberry Pi. TensorFlow-free:

    PyTorch module / ExportedProgram ----------------------------.
    ONNX (or TorchScript, exported) -> torch module (onnx_torch) -> litert-torch -> float .tflite,
    images NHWC -> ai-edge-quantizer: FP16 weights | dynamic-range INT8 | full-integer INT8

Image inputs (rank 4) take NHWC, LiteRT's native layout: the graph then has no transposes on
the input side, and users feed what a camera gives. The manifest records each input's layout
and its source layout; edgeopt converts calibration and eval data given in the source layout.
Full-integer models take int8 input/output unless --int8-io float keeps float I/O.
A user's .tflite is packaged as it is.
"""
from __future__ import annotations

import dataclasses
import shutil

from ..compress.mixed_quantize import budget_option, keep_float_option
from ..data import feeds, head, to_layouts
from ..errors import BadInput, first_line
from ..models import INT8_METHODS
from ..options import option
from .base import ONNX_FORMATS, Backend, Conversion, calibration_needed

NCHW_TO_NHWC = (0, 2, 3, 1)
SIGNATURE = "serving_default"
# Calibration samples used at most: min/max ranges settle long before this on CNNs.
MAX_CALIBRATION_SAMPLES = 256
CALIBRATION_CHUNK = 16   # samples per captured calibration call (see edgeopt/capture.py)
INT8_OPS = ("auto", "all", "compute")
NHWC_INPUTS = ("auto", "all", "none")
# ops whose 4-D input is channels-first in ONNX: an input they read is NCHW whatever its dims say
NCHW_OPS = {"Conv", "ConvTranspose", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
            "BatchNormalization", "InstanceNormalization", "LRN", "SpaceToDepth", "DepthToSpace", "Resize"}
# ops that keep their input's layout: the op after them says what it is
ELEMENTWISE_OPS = {"Mul", "Add", "Sub", "Div", "Cast", "Identity", "Relu", "Clip", "Sigmoid", "Tanh", "Neg", "Abs",
                   "Sqrt", "Pow", "Max", "Min", "QuantizeLinear", "DequantizeLinear"}
# The ops `int8_ops=compute` quantizes: those XNNPACK runs in int8 on every CPU it supports. Elementwise
# int8 ops of a LayerNorm, GELU or attention (RSQRT, DIV, SQUARED_DIFFERENCE, BATCH_MATMUL of two activations)
# have no XNNPACK kernel: full INT8 of DeiT and ConvNeXt ran 6x slower than float, split into 34-37 delegate
# partitions with reference kernels between them (docs/architecture.md, "LiteRT INT8 on transformers").
COMPUTE_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D_TRANSPOSE", "FULLY_CONNECTED")
# XNNPACK partitions full INT8 may add over float's before int8_ops=auto quantizes the compute ops alone: one
# boundary costs little (YOLOv8n: 4 partitions against float's 3, full INT8 0.31x float, compute alone 0.35x;
# benchmarks/results/litert_int8_ops.md).
SPLIT_TOLERANCE = 1
# int8_ops=auto keeps a depthwise convolution with more kernel taps than this float: XNNPACK's int8 kernel for
# ConvNeXt's 7x7 (49 taps) and a 256-tap STFT filter ran 3-4x slower than float on this x86 host, while 3x3
# (MobileNetV2) and 5x5 (EfficientNet-B0) ran fast. Float there took the Silero-like model's INT8 from 1.65x to
# 0.65x float, ConvNeXt's compute-only INT8 from 3.1x to 0.77x (benchmarks/results/litert_wide_depthwise.md).
WIDE_DEPTHWISE_TAPS = 25


@dataclasses.dataclass(frozen=True)
class LiteRtOptions:
    # Not searched: int8 I/O changes what the application feeds the model, an interface decision.
    int8_io: str = option("", "full-integer INT8 model input/output; \"\" = the profile's int8_scheme "
                          "(full-integer = int8)", choices=("int8", "float"))
    keep_float: str = keep_float_option()
    max_accuracy_drop: float | None = budget_option()   # the budget of --keep-float auto's choice
    # Searched: whether an op's int8 kernel beats its float one is the device's to say. Not "all": auto is the
    # same bundle wherever XNNPACK runs full INT8 whole (every CNN of the zoo), which a study would measure twice;
    # a space file can add it.
    int8_ops: str = option("auto", "ops full-integer INT8 quantizes: all = every op the quantizer supports; "
                           "compute = convolutions and fully connected layers, the rest float; auto = all, or "
                           "compute when full INT8 splits the model into more XNNPACK partitions than float does "
                           "(LiteRT runs the int8 ops between them on its slow reference kernels), and depthwise "
                           "convolutions wider than 5x5 float",
                           choices=INT8_OPS, search=("auto", "compute"))
    # Not searched: what the application feeds the model is an interface decision.
    nhwc_inputs: str = option("auto", "the 4-D float inputs the .tflite takes channels-last (NHWC, LiteRT's own; "
                              "edgeopt converts calibration and eval data given in the source's layout): auto = "
                              "those the source takes channels-first (one it takes channels-last already, whose "
                              "first op transposes it to NCHW, or whose last dim holds 1-4 channels beside a wider "
                              "second one, is kept as it is); all = every 4-D float input; none = every input as "
                              "the source takes it", choices=NHWC_INPUTS)
    # Not searched: a search tries --quantize dynamic itself.
    int8_method: str = option("auto", "--quantize int8 as static (full-integer, calibrated activation ranges; "
                              "int8_ops says which ops) or dynamic (int8 weights, activations quantized at run time, "
                              "float I/O); auto = dynamic when fully connected layers with weights hold most of the "
                              "MACs (transformers, ConvNeXt), else static; int8_io=int8, keep_float or "
                              "int8_ops=all|compute ask for static", choices=INT8_METHODS)


class LiteRtBackend(Backend):
    name = "tflite"
    runtime = "litert"
    precisions = ("fp32", "fp16")
    quantizations = ("none", "dynamic", "int8")
    precision_unquantized_only = True   # fp16 weights or int8 ones: _validate refuses both
    source_formats = ONNX_FORMATS + ("tflite",)
    Options = LiteRtOptions
    int8_options = ("int8_io", "keep_float", "max_accuracy_drop", "int8_ops", "int8_method")
    takes_torch = True   # litert-torch converts the module itself: no ONNX detour for PyTorch input

    def _convert(self, source, request, workdir, progress):
        if source.format == "tflite":
            return self._as_is(source, request, workdir)
        tools = _tool_versions()
        float_path = workdir / "model-float.tflite"
        layouts, padded = _export_float(source, float_path, progress, request.options.nhwc_inputs)
        compression = {"quantize": request.quantize, "precision": request.precision,
                       "converter": "pytorch -> litert-torch" if source.torch_module is not None
                       else "onnx -> torch -> litert-torch"}
        out = workdir / "model.tflite"
        if request.quantize == "none" and request.precision == "fp32":
            float_path.rename(out)
        else:
            compression.update(_quantize_or_explain(float_path, out, source, request, layouts, progress))
        runtime = {"name": self.runtime, "options": _io_options(source, padded)}
        notes = [_padding_note(source, padded)] if padded else []
        notes += _kept_layout_note(source, layouts, request.options.nhwc_inputs)
        if request.quantize != "none" and request.host_timing:
            compression.setdefault("notes", []).extend(
                _host_hint(float_path, out, source, request, layouts, runtime["options"], compression, progress))
        return Conversion(out, [], runtime, compression, tools, notes + compression.pop("notes", []), layouts=layouts,
                          float_model=float_path if float_path.exists() else None)

    def check_source(self, fmt, reference, precision, quantize):
        if fmt == "tflite" and (quantize != "none" or precision != "fp32"):
            raise BadInput(f"{reference}: a .tflite is packaged as it is; --precision and --quantize apply to ONNX "
                           "or PyTorch input")
        super().check_source(fmt, reference, precision, quantize)

    def _as_is(self, source, request, workdir):
        self.check_source("tflite", source.reference, request.precision, request.quantize)
        out = workdir / "model.tflite"
        shutil.copyfile(source.tflite_path, out)
        compression = {"quantize": "none", "precision": "as-is", "converter": "none (a .tflite input)"}
        return Conversion(out, [], {"name": self.runtime, "options": {"xnnpack": True}}, compression,
                          _tool_versions(), [])

    def _validate(self, request):
        super()._validate(request)
        if request.options.int8_io and request.quantize != "int8":
            raise BadInput("--int8-io applies to --quantize int8 only")
        if request.options.keep_float and request.quantize != "int8":
            raise BadInput("--keep-float applies to --quantize int8 on backend tflite")
        if request.options.int8_method != "auto" and request.quantize != "int8":
            raise BadInput(f"int8_method applies to --quantize int8, not --quantize {request.quantize}")
        if request.options.int8_method == "dynamic" and _static_settings(request.options):
            raise BadInput(f"{', '.join(_static_settings(request.options))} apply to static INT8, not "
                           "int8_method=dynamic")
        from ..compress.mixed_quantize import check_budget
        check_budget(request, self.name)
        if request.precision == "fp16" and request.quantize != "none":
            raise BadInput("--precision fp16 makes float16 weights; with --quantize the weights are int8 already: "
                           "give one or the other")

    def calibrates(self, source, request):
        """Static INT8 calibrates; auto's dynamic choice (most MACs in fully connected layers) does not. The choice
        is made on the float .tflite (_int8_method); an ONNX source's graph tells it before conversion by the same
        rule, a PyTorch source's only after it (_quantize then asks for --calib)."""
        options = request.options
        if options.int8_method != "auto" or _static_settings(options):
            return options.int8_method != "dynamic"
        if source.onnx_path is None:
            return False
        from ..models import transformer_like
        return not transformer_like(source.onnx_path)[0]

    def float_output_hint(self, request, node, op_type):
        io = request.options.int8_io or ("int8" if request.int8_scheme == "full-integer" else "float")
        if io == "int8":   # one int8 output tensor, one scale: only a float output keeps every channel
            return ("--int8-io float (the output, and a Concat that makes it, then stay float; the "
                    "application then feeds and reads float)")
        from .tflite_mixed import ONNX_KINDS
        return f"--keep-float {node}" if op_type in ONNX_KINDS and not request.options.keep_float else ""

    def host_runner(self, model_path, options=None):
        from ..litert_model import host_runner
        return host_runner(model_path, options)

    def describe_io(self, model_path, options=None):
        from ..litert_model import describe
        return describe(model_path, options)


def _host_hint(float_path, out, source, request, layouts, options, compression, progress) -> list:
    """The quantized .tflite against the float one it was made from, fed in the artifact's layout."""
    from ..data import to_layouts
    from . import host_hint

    feed = to_layouts(host_hint.feed_of(source, request.calibration), layouts or {})
    hint = host_hint.measure(float_path, out, feed, "litert", options, progress,
                             from_calibration=request.calibration is not None)
    compression["host_hint"] = hint
    notes = host_hint.warnings(hint)
    # dynamic range pays where fully connected layers hold the MACs; on a CNN's convolutions it ran 3.7-4.6x float
    # under XNNPACK, and the hint had pointed there (a walkthrough)
    share = (compression.get("int8_method") or {}).get("matmul_mac_share") or 0
    if notes and request.quantize == "int8" and compression["int8_method"]["used"] == "static" and share >= 0.25:
        notes.append("--quantize dynamic (int8 weights, activations quantized at run time) may be faster; "
                     "`edgeopt optimize` measures both on the device")
    return notes


def _tool_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("litert-torch", "ai-edge-quantizer", "ai-edge-litert", "torch"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return out


def _require_converter():
    """litert-torch, imported quietly: at import it logs torchao and oneDNN chatter on stderr."""
    from ..capture import captured_output
    try:
        with captured_output():
            import ai_edge_quantizer  # noqa: F401
            import litert_torch
    except ImportError:
        raise BadInput("the LiteRT backend needs the tflite extra: pip install 'edgeopt[tflite]'") from None
    return litert_torch


def _tensor_names(source) -> dict:
    """Bundle (source) tensor name -> the .tflite signature's name (litert-torch names them
    args_<i> and output_<i> in order)."""
    names = {spec.name: f"args_{i}" for i, spec in enumerate(source.inputs)}
    names.update({spec.name: f"output_{i}" for i, spec in enumerate(source.outputs)})
    return names


def _io_options(source, padded=()) -> dict:
    """The LiteRT runtime options of the bundle: XNNPACK, tensor names, and for each output padded to a
    static length (detections after NMS, onnx_ops_nms.py) the artifact output that counts its valid rows:
    the module's last output."""
    options = {"xnnpack": True, "tensor_names": _tensor_names(source)}
    if padded:
        options["valid_rows"] = {name: _count_output(source) for name in padded}
    return options


def _count_output(source) -> str:
    """The .tflite output counting a padded output's valid rows: the module's last (onnx_torch.VALID_ROWS)."""
    return f"output_{len(source.outputs)}"


def _padding_note(source, padded) -> str:
    return (f"{', '.join(padded)}: a static number of rows in the .tflite (LiteRT cannot size an output by the "
            f"data), the valid ones first; its output {_count_output(source)} counts them, and the device agent "
            "trims to it")


def _image_inputs(source, which: str = "auto") -> list:
    """The inputs the .tflite takes NHWC (nhwc_inputs): 4-D float ones, auto leaving out those the source takes
    channels-last already: a [1, 16, 16, 3] input was permuted to [1, 16, 3, 16], its data with it, so parity
    passed and an application's camera frames were scrambled (a walkthrough)."""
    four = [i for i, spec in enumerate(source.inputs) if len(spec.shape) == 4 and spec.dtype.startswith("float")]
    if which != "auto":
        return four if which == "all" else []
    consumers = _onnx_consumers(source)
    return [i for i in four if not _channels_last(source.inputs[i], consumers.get(source.inputs[i].name, []))]


def _kept_layout_note(source, layouts: dict, nhwc_inputs: str) -> list:
    kept = [source.inputs[i].name for i in _image_inputs(source, "all") if source.inputs[i].name not in layouts]
    if not kept or nhwc_inputs != "auto":
        return []
    return [f"{', '.join(kept)}: channels-last in the source already, so the .tflite takes "
            f"{'it' if len(kept) == 1 else 'them'} as the source does (--backend-option nhwc_inputs=all permutes "
            "every 4-D float input)"]


def _channels_last(spec, consumers: list) -> bool:
    """Whether a 4-D input is NHWC in the source: the first op that reads it for its layout says so (a Transpose to
    NCHW) or denies it (a Conv, a pool), past elementwise ops such as a scaling Mul; else its dims: 1-4 channels
    last beside two spatial dims of 8 or more."""
    from .onnx_torch import _attributes

    if consumers and all(node.op_type == "Transpose" and list(_attributes(node).get("perm", [])) == [0, 3, 1, 2]
                         for node in consumers):
        return True
    if any(node.op_type in NCHW_OPS for node in consumers):
        return False
    dims = spec.shape
    return all(isinstance(d, int) for d in dims) and dims[3] <= 4 and min(dims[1], dims[2]) >= 8


def _onnx_consumers(source) -> dict:
    """{graph input name: the first nodes that read it for its layout, past elementwise ones} of an ONNX source
    (a PyTorch module has no graph to read)."""
    if source.torch_module is not None or source.onnx_path is None:
        return {}
    import onnx

    graph = onnx.load(str(source.onnx_path), load_external_data=False).graph
    readers = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    out = {}
    for spec in graph.input:
        found, tensors, seen = [], [spec.name], set()
        while tensors:
            for node in readers.get(tensors.pop(), []):
                if id(node) in seen:
                    continue
                seen.add(id(node))
                if node.op_type in ELEMENTWISE_OPS:
                    tensors.extend(node.output)
                else:
                    found.append(node)
        out[spec.name] = found
    return out


def _export_float(source, out, progress, nhwc_inputs: str = "auto") -> tuple:
    """The float .tflite; returns ({input name: {"layout", "source_layout", "perm"}} of converted inputs,
    [outputs padded to a static length])."""
    litert_torch = _require_converter()
    import torch

    from ..capture import captured_output

    module, examples = _torch_module(source, progress)
    images = _image_inputs(source, nhwc_inputs)
    examples = [x.permute(*NCHW_TO_NHWC).contiguous() if i in images else x for i, x in enumerate(examples)]
    log = None
    try:   # the capture outside: its text is read once it has ended, for an error that says nothing itself
        with captured_output() as log:
            from litert_torch._convert.to_channel_last_io import to_channel_last_io

            wrapped = to_channel_last_io(module, args=images).eval() if images else module
            with torch.no_grad():
                litert_torch.convert(wrapped, tuple(examples)).export(str(out))
    except Exception as e:  # torch.export and the MLIR converter raise many types
        # the converter's words rarely name the operator ("Number of input tokens (1) does not match output tokens
        # (0)"): what still runs the model on this profile is said
        raise BadInput(f"{source.reference}: LiteRT conversion failed: {_converter_said(e, log)} (litert-torch "
                       "could not convert one of its operations; where the profile lists onnxruntime among its "
                       "backends, as the Raspberry Pi ones do, --backend onnxruntime tries the ONNX path instead)") from None
    layouts = {source.inputs[i].name: {"layout": "NHWC", "source_layout": "NCHW", "perm": list(NCHW_TO_NHWC)}
               for i in images}
    return layouts, list(getattr(module, "padded_outputs", []))


def _torch_module(source, progress):
    """(module, example inputs in the source layout): a PyTorch source's own, or the ONNX graph mapped
    to torch (every unmapped op refused in one message first)."""
    import onnx
    import torch

    from ..models import refuse_passthrough
    from .onnx_torch import to_torch

    if source.torch_module is not None:
        progress.status("converting PyTorch -> LiteRT (litert-torch)")
        return source.torch_module, list(source.torch_examples)
    progress.status("converting ONNX -> PyTorch -> LiteRT (litert-torch)")
    model = onnx.load(str(source.onnx_path))
    refuse_passthrough(model, source.reference, "tflite")
    module = to_torch(model, source.reference)
    return module, [torch.zeros(spec.shape, dtype=getattr(torch, spec.dtype)) for spec in source.inputs]


def _converter_said(error, log) -> str:
    """The first line of the converter's error, or of its captured output where the error says nothing; at most
    300 characters (a converter's one line can hold a whole op with its operands)."""
    text = str(error) if str(error).strip() or not log else log.text
    return first_line(error, text)[:300]


def _quantize_or_explain(float_path, out, source, request, layouts, progress) -> dict:
    """_quantize, with any failure of the quantizer (calibration included) as one line that says what
    still works for this model."""
    try:
        return _quantize(float_path, out, source, request, layouts, progress)
    except BadInput:
        raise
    except Exception as e:  # the quantizer raises ValueError/RuntimeError/KeyError/NotImplementedError by case
        if request.quantize == "int8" and request.calibration is not None:
            _source_takes(source, request.calibration, progress)
        what = {"int8": "full-integer INT8", "dynamic": "dynamic-range INT8"}.get(request.quantize, "FP16 weights")
        raise BadInput(f"{source.reference}: ai-edge-quantizer cannot make {what} of this model: "
                       f"{_converter_said(e, None)}; the float model converts (--precision fp32 or fp16"
                       f"{', or --quantize dynamic' if request.quantize == 'int8' else ''})") from None


def _source_takes(source, calibration, progress) -> None:
    """BadInput naming the calibration data where the source model itself fails on it: token ids past an
    embedding's vocabulary failed in the quantizer's calibration ("gather_nd index out of bounds"), and the
    refusal blamed the model and sent the user to another precision; ONNX Runtime's path says the data (a
    walkthrough)."""
    from ..data import run as run_samples
    from ..parity import source_on

    progress.status("running the source model on the calibration data (the quantizer failed)")
    with source_on("the calibration data"):
        run_samples(source.reference_runner(), calibration, source.inputs)


def _quantize(float_path, out, source, request, layouts, progress) -> dict:
    from ai_edge_quantizer import qtyping, quantizer, recipe
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    q = quantizer.Quantizer(str(float_path))
    details = {"tool": "ai-edge-quantizer"}
    if request.quantize == "int8":
        details["int8_method"] = method = _int8_method(float_path, request.options)
        if method["used"] == "static":
            if request.calibration is None:
                raise calibration_needed()
            return dict(details, **_full_integer(q, float_path, out, source, request, layouts, progress))
        details.update(io="float", notes=[f"INT8 dynamic: {method['reason']}"] if "reason" in method else [])
    if request.quantize != "none":   # dynamic range: --quantize dynamic, or int8 as int8_method says
        progress.status("dynamic-range INT8 weights (ai-edge-quantizer)")
        q.load_quantization_recipe(recipe.dynamic_wi8_afp32())
        details["recipe"] = "dynamic_wi8_afp32: int8 per-channel weights, activations quantized at run time"
    else:  # fp16 without quantization: float16 weights, float compute (XNNPACK may use fp16 where the CPU has it)
        progress.status("FP16 weights (ai-edge-quantizer)")
        q.add_weight_only_config(".*", qtyping.TFLOperationName.ALL_SUPPORTED, 16,
                                 algorithm_key=AlgorithmName.FLOAT_CASTING)
        details["recipe"] = "float16 weights, float32 I/O"
    out.write_bytes(_run_quantizer(q, None))
    return details


def _static_settings(options) -> list:
    """The options given that only static (full-integer) INT8 has."""
    return [name for name, given in (("int8_io=int8", options.int8_io == "int8"), ("keep_float", options.keep_float),
                                     ("int8_ops", options.int8_ops != "auto")) if given]


def _int8_method(float_path, options) -> dict:
    """The manifest's record of static or dynamic INT8: int8_method, or for auto the rule ONNX Runtime and OpenVINO
    follow (models.TRANSFORMER_MAC_SHARE), counted on the float .tflite, since PyTorch input has no ONNX here.
    Full-integer INT8 of ConvNeXt ran 3.0x float on XNNPACK even with only its convolutions and fully connected
    layers int8 (its int8 7x7 depthwise kernel), dynamic range 0.5-0.6x (benchmarks/results/litert_int8_ops.md)."""
    from ..litert_model import matmul_mac_share
    from ..models import TRANSFORMER_MAC_SHARE

    if options.int8_method != "auto":
        return {"requested": options.int8_method, "used": options.int8_method}
    if _static_settings(options):
        return {"requested": "auto", "used": "static", "because": _static_settings(options)}
    share = matmul_mac_share(float_path)
    record = {"requested": "auto", "used": "dynamic" if (share or 0) >= TRANSFORMER_MAC_SHARE else "static",
              "matmul_mac_share": share}
    if record["used"] == "dynamic":
        record["reason"] = (f"fully connected layers hold {share:.0%} of the MACs (as in transformers, which LiteRT's "
                            "transformer tooling quantizes this way; full-integer ConvNeXt ran 3-8x float under "
                            "XNNPACK); float I/O; --backend-option int8_method=static makes full-integer INT8")
    return record


def _run_quantizer(q, calibration) -> bytes:
    from ..capture import captured_output

    log = None
    try:   # the capture outside, as in _export_float
        with captured_output() as log:
            return q.quantize(calibration, enable_progress_report=False).quantized_model
    except Exception as e:  # the quantizer raises ValueError/RuntimeError/KeyError by case
        raise RuntimeError(_converter_said(e, log)) from None


def _full_integer(q, float_path, out, source, request, layouts, progress) -> dict:
    """Static INT8 of every supported op, or of the compute ops only (int8_ops): one calibration serves both."""
    io = request.options.int8_io or ("int8" if request.int8_scheme == "full-integer" else "float")
    _static_recipe(q, io)
    calibration, used = _calibrate(q, float_path, source, request, layouts, progress)
    details = {"recipe": "static_wi8_ai8: int8 per-channel weights, int8 per-tensor activations", "io": io,
               "calibration": {"samples": used, "method": "min/max over every sample"}}
    from .tflite_bias import widen_for_bias
    widened = widen_for_bias(float_path, calibration)   # every build below quantizes from these ranges
    if widened:
        details["calibration"]["widened_for_bias"] = len(widened)
        details["notes"] = [
            f"the calibrated input range of {len(widened)} biased layer(s) was widened so that their int32 biases "
            "fit: their inputs span a tiny range (near zero, as untrained BatchNorm statistics leave them), at "
            "which the quantizer's int32 bias overflowed"]
    from . import tflite_mixed
    joins = tflite_mixed.output_joins(float_path) if io == "float" else []
    if joins:
        details["float_output_ops"] = len(joins)
        details["notes"] = details.get("notes", []) + [
            "the CONCATENATION making a model output left float: quantized, the tensors it joins would share one "
            "INT8 scale (a detector's boxes in hundreds of pixels and its scores in 0-1: the scores round to 0), "
            "and with float I/O the output is float anyway"]
    scopes = joins
    if request.options.keep_float:
        from ..compress import mixed_quantize
        kept, details["keep_float"] = _keep_float(float_path, out, source, request, layouts, io, calibration,
                                                  progress, joins)
        details["keep_float"]["float_ops"] = len(kept)
        details["notes"] = details.get("notes", []) + mixed_quantize.notes(details["keep_float"])
        scopes = kept + [s for s in joins if s not in kept]
    chosen, details["int8_ops"] = _int8_ops(float_path, out, io, scopes, calibration, request.options.int8_ops,
                                            progress)
    if details["int8_ops"]["used"] == "compute":
        details["recipe"] = "static_wi8_ai8 on " + ", ".join(COMPUTE_OPS) + "; every other op float"
        if "reason" in details["int8_ops"]:
            details.setdefault("notes", []).append(
                f"INT8 on the convolutions and fully connected layers only: {details['int8_ops']['reason']}; "
                "--backend-option int8_ops=all keeps every op int8")
    if "float_depthwise" in details["int8_ops"]:
        details.setdefault("notes", []).append(
            f"{details['int8_ops']['float_depthwise']} depthwise convolution(s) wider than 5x5 stay float (XNNPACK's "
            "int8 kernel for them ran 3-4x slower than float; LiteRT makes a convolution of one input channel, such "
            "as a Conv1d(1, N, k) of raw audio, a depthwise one); --backend-option int8_ops=all quantizes them")
    out.write_bytes(chosen)
    return details


def _int8_ops(float_path, out, io, scopes, calibration, wanted, progress) -> tuple:
    """(the quantized model, the manifest's record) for int8_ops. auto keeps every op int8 unless full INT8
    splits the model into more XNNPACK partitions than float does by more than SPLIT_TOLERANCE (int8 ops XNNPACK
    has no kernel for, recurring in every block), and the compute ops alone split it less: the partition
    counts are a property of the model and the XNNPACK delegate, the same on the packaging host and the board.
    auto also leaves depthwise convolutions wider than WIDE_DEPTHWISE_TAPS float."""
    from ai_edge_quantizer import quantizer

    from . import tflite_mixed

    def build(ops):
        q = quantizer.Quantizer(str(float_path))
        _static_recipe(q, io, ops)
        tflite_mixed.keep(q, scopes)
        return _run_quantizer(q, calibration)

    record = {"requested": wanted}
    if wanted != "auto":
        return build(wanted), dict(record, used=wanted)
    wide = tflite_mixed.wide_depthwise(float_path, WIDE_DEPTHWISE_TAPS)
    if wide:
        scopes = scopes + [s for s in tflite_mixed.float_region(float_path, wide) if s not in scopes]
        record["float_depthwise"] = len(wide)
    progress.status("quantizing every op to INT8, and checking that XNNPACK runs them all")
    every = build("all")
    partitions = {"float": _xnnpack_partitions(float_path), "all": _xnnpack_partitions(every, out)}
    if None in partitions.values() or partitions["all"] <= partitions["float"] + SPLIT_TOLERANCE:
        return every, dict(record, used="all", xnnpack_partitions=partitions)
    compute = build("compute")
    partitions["compute"] = _xnnpack_partitions(compute, out)
    used = "compute" if (partitions["compute"] or 0) < partitions["all"] else "all"
    reason = (f"full INT8 split into {partitions['all']} XNNPACK partitions, float into {partitions['float']} "
              "(int8 ops without an XNNPACK kernel run on LiteRT's reference kernels between them)")
    return (compute if used == "compute" else every), dict(record, used=used, xnnpack_partitions=partitions,
                                                           reason=reason)


def _xnnpack_partitions(model, out=None) -> int | None:
    """How many XNNPACK partitions LiteRT makes of a .tflite, a path or its bytes (written beside `out` for
    the interpreter; 1: XNNPACK runs it whole); None when the interpreter cannot list its plan."""
    from device_agent.runtimes.litert import delegate_partitions

    from ..litert_model import adapter

    if not isinstance(model, (bytes, bytearray)):   # the quantizer returns a bytearray
        return delegate_partitions(adapter(model, {"xnnpack": True}, threads=1).interpreter)
    probe = out.with_name("probe.tflite")
    probe.write_bytes(model)
    try:
        return _xnnpack_partitions(probe)
    finally:
        probe.unlink()


def _static_recipe(q, io, ops: str = "all") -> None:
    """Static INT8 of every supported op (ops="all") or of COMPUTE_OPS only; with float I/O, the input
    quantized and the output dequantized inside the model."""
    from ai_edge_quantizer import qtyping, recipe
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    if ops == "all":
        q.load_quantization_recipe(recipe.static_wi8_ai8())
    else:
        for name in COMPUTE_OPS + (() if io == "float" else ("INPUT", "OUTPUT")):
            q.add_static_config(".*", getattr(qtyping.TFLOperationName, name), 8, 8,
                                algorithm_key=AlgorithmName.MIN_MAX_UNIFORM_QUANT)
    if io == "float" and ops == "all":
        for op in (qtyping.TFLOperationName.INPUT, qtyping.TFLOperationName.OUTPUT):
            q.update_quantization_recipe(".*", op, None, algorithm_key=AlgorithmName.NO_QUANTIZE)


def _keep_float(float_path, out, source, request, layouts, io, calibration, progress, float_always=()) -> tuple:
    """([scopes of the ops left float], the manifest's record) for --keep-float: the named layers
    (edgeopt/convert/tflite_mixed.py names them), or those mixed_quantize chooses by measuring quantized
    trials, made from the one calibration, against the float .tflite (`float_always` float in each, as in the
    model it chooses for)."""
    from ..compress import mixed_quantize
    from . import tflite_mixed

    by_name = tflite_mixed.layers(float_path, source)
    if request.options.keep_float != mixed_quantize.AUTO:
        names = mixed_quantize.requested(request.options.keep_float)
        kept = mixed_quantize.resolve(names, list(by_name))
        return _region(float_path, by_name, kept), {"mode": "named", "requested": names, "layers": kept}
    trial = out.with_name("trial.tflite")

    def quantized(recipe_of):
        from ai_edge_quantizer import quantizer

        from ..capture import captured_output

        q = quantizer.Quantizer(str(float_path))
        recipe_of(q)
        with captured_output():
            trial.write_bytes(q.quantize(calibration, enable_progress_report=False).quantized_model)
        return _runner(trial, source, layouts)

    def excluding(names):
        return quantized(lambda q: (_static_recipe(q, io),
                                    tflite_mixed.keep(q, [*_region(float_path, by_name, names), *float_always])))

    trials = mixed_quantize.Trials(
        reference=_runner(float_path, source, layouts), excluding=excluding,
        isolated=lambda name: quantized(lambda q: tflite_mixed.only(q, by_name[name][1])))
    ops = {name: op for name, (op, _) in by_name.items()}
    record = mixed_quantize.choose(list(by_name), ops, trials, request, source.inputs, progress)
    return _region(float_path, by_name, record["layers"]), record


def _region(float_path, by_name, names) -> list:
    from . import tflite_mixed

    return tflite_mixed.float_region(float_path, [by_name[n][1] for n in names]) if names else []


def _runner(path, source, layouts):
    """{input: array in the source layout} -> [float outputs] of a .tflite, as parity runs it."""
    from ..litert_model import host_runner

    run = host_runner(path, _io_options(source))
    return lambda feed: run(to_layouts(feed, layouts))


def _narrowed(array):
    """litert-torch makes an int64 input int32 (LiteRT's integer type); the calibrator feeds it as is."""
    import numpy as np

    return array.astype(np.int32) if array.dtype == np.int64 else array


def _calibrate(q, float_path, source, request, layouts, progress):
    """Min/max ranges over the calibration samples. Plain min/max, not the quantizer's default
    moving average, which clipped the input range of the shipped model (RUNTIME-NOTES)."""
    from ai_edge_quantizer import calibrator
    from ai_edge_quantizer.utils import qsv_utils

    from ..capture import captured_output

    names = _tensor_names(source)
    calls = list(feeds(head(request.calibration, MAX_CALIBRATION_SAMPLES), source.inputs))
    steps = [{names[k]: _narrowed(v) for k, v in to_layouts(feed, layouts).items()} for _, _, feed in calls]
    n = sum(size for _, size, _ in calls)
    batch = max((size for _, size, _ in calls), default=1)
    chunks = [steps[i:i + CALIBRATION_CHUNK] for i in range(0, len(steps), CALIBRATION_CHUNK)]
    progress.start("INT8 calibration samples", total=n)
    try:
        with captured_output():
            calib = calibrator.Calibrator(str(float_path), qsv_update_func=qsv_utils.min_max_update)
        for chunk in chunks:  # min/max ranges merge across calls; progress advances between them
            with captured_output():
                # The quantizer's own recipe manager: its public calibrate() offers no min/max update.
                calib.calibrate({SIGNATURE: chunk}, q._recipe_manager)
            progress.advance(len(chunk) * batch)
    finally:   # a failed calibration fails one trial of a study, whose bar goes on
        progress.finish()
    return calib.get_model_qsvs(), n
