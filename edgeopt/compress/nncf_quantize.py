"""NNCF post-training compression of an openvino.Model, for the OpenVINO backend.

- `--quantize int8`: nncf.quantize (static INT8, FakeQuantize on activations, INT8 weights) from
  the calibration samples; with `--max-accuracy-drop X` and labelled eval data,
  nncf.quantize_with_accuracy_control, which reverts the most harmful layers to float until the
  top-1 drop on the eval data is at most X (absolute).
- `--quantize int8-weights|int4-weights`: nncf.compress_weights (weight-only, for MatMul-heavy
  models; no calibration needed).

nncf is imported only inside these functions: it imports torch whenever torch is installed (+2 s).

Transformers. NNCF's documented setting for transformer models is `model_type=nncf.ModelType.TRANSFORMER`
(its own ignored patterns around Softmax, LayerNorm and GELU, and SmoothQuant). model_type "auto" takes it
where MatMul/Gemm with weights hold most of the MACs of the ONNX source (the rule ONNX Runtime's dynamic choice
uses, models.TRANSFORMER_MAC_SHARE). On DeiT-Ti at 224 it raised the output SQNR from 18.4 to 33.2 dB at the
same speed (0.40x and 0.43x of float); on ConvNeXt-T it changed neither (benchmarks/bench_openvino_transformers.py).

Calibration-size rule. NNCF calibrates on `subset_size` samples (default 300) and only warns
when it gets fewer. Here: with `--subset-size N` the file must hold at least N samples; without
it, min(300, samples) are used, and fewer than MIN_CALIBRATION_SAMPLES (100) is refused with a
message saying how to go on (more samples, or an explicit, smaller --subset-size). The manifest
records the subset size used.
"""
from __future__ import annotations

import contextlib
import io
import logging

from .. import data
from . import mixed_quantize
from ..data import LABELS, sample_count
from ..errors import BadInput, first_line
from ..parity import named

NNCF_DEFAULT_SUBSET = 300
MIN_CALIBRATION_SAMPLES = 100
PRESETS = ("performance", "mixed")
SCHEME_PRESETS = {"nncf-performance": "performance", "nncf-mixed": "mixed"}
WEIGHT_MODES = {"int8-weights": "INT8_ASYM", "int4-weights": "INT4_SYM"}
COMPUTE_OPS = {"Convolution", "GroupConvolution", "MatMul", "ConvolutionBackpropData",
               "GroupConvolutionBackpropData"}
LOW_BIT = {"i8", "u8", "i4", "u4", "nf4", "f4e2m1", "f8e4m3"}
# Ops a weight passes through between its Constant and the op that uses it (dequantize, layout).
WEIGHT_PATH = {"Convert", "Subtract", "Multiply", "Reshape", "Transpose", "FakeQuantize"}
# Ops an INT8 tensor passes through unchanged: a FakeQuantize before them quantizes what follows.
PASS_THROUGH = {"MaxPool", "Reshape", "Squeeze", "Unsqueeze", "Transpose", "StridedSlice", "Split",
                "VariadicSplit", "Concat", "Pad", "DepthToSpace", "SpaceToDepth", "ShuffleChannels", "Gather"}
MAX_LISTED = 50
# Ops whose activation inputs stay float under INT8, and why (measured on OpenVINO 2026.4 / NNCF 3.4.0).
FLOAT_OPS = {"LSTMSequence": "OpenVINO's CPU plugin runs an LSTMSequence with INT8 inputs and weights through its INT8 "
                             "LSTM kernel once the IR is saved and read back, and that kernel's outputs are wrong "
                             "(a Silero-VAD-like model's state output read -10 dB SQNR from the saved IR, 33 dB from "
                             "the same quantized model in memory); kept float it reads 54 dB"}
# Recurrent ops NNCF leaves float (it puts no FakeQuantize before them): counted as compute ops left float, since
# they hold most of a recurrent model's MACs (a GRU keyword spotter read "1/1 compute ops quantized", its Gemm)
RECURRENT_OPS = {"GRUSequence", "RNNSequence", "GRUCell", "RNNCell", "LSTMCell"}
WITHOUT_BIASES = "/WithoutBiases"
AUTO_RANGE_FIRST = "nncf-default"   # activation_range "" tries NNCF's default first (_auto_range)
AUTO_RANGE_CALLS = 32               # calibration calls its SQNR check runs (in memory; a few seconds at most)


@contextlib.contextmanager
def _nncf():
    """nncf, quiet: its logger and rich progress bars write to stdout, which --json keeps clean."""
    import nncf
    from nncf.common.logging import nncf_logger

    level = nncf_logger.level
    nncf.set_log_level(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield nncf
    finally:
        nncf.set_log_level(level)


def compress(model, source, request, progress):
    """(compressed openvino.Model, what was done) for request.quantize."""
    with _nncf() as nncf:
        try:
            if request.quantize in WEIGHT_MODES:
                model, details = _compress_weights(nncf, model, request, progress)
            else:
                model, details = _quantize(nncf, model, source, request, progress)
        except _user_errors(nncf) as e:
            raise BadInput(f"NNCF cannot {request.quantize}-compress this model: {first_line(e)}") from None
        details["nncf_version"] = nncf.__version__
    details["ops"] = op_summary(model, request.quantize)
    kinds = details["ops"].get("weights_by_type") or {}
    if request.quantize == "int4-weights" and kinds and not kinds.keys() & {"i4", "u4", "nf4", "f4e2m1"}:
        # a CNN: every layer NNCF keeps at its INT8 backup, and the table read "int4_sym weight-only, 4/4 ops"
        details.setdefault("notes", []).append(
            "warning: no layer became 4-bit (NNCF keeps convolutions, embeddings and the last linear layer at "
            f"INT8: {', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}): this is INT8 weight-only, as "
            "--quantize int8-weights makes it")
    return model, details


def _user_errors(nncf) -> tuple:
    """NNCF's exceptions for a model or parameters it cannot take (the set varies by version)."""
    names = ("ValidationError", "InvalidGroupSizeError", "UnsupportedModelError", "ParameterNotSupportedError")
    return tuple(getattr(nncf, n) for n in names if hasattr(nncf, n))


def choose_model_type(source, wanted: str) -> dict:
    """The manifest's record of NNCF's model type: `wanted`, or for auto transformer where MatMul/Gemm with
    weights hold at least models.TRANSFORMER_MAC_SHARE of the ONNX source's MACs (an IR source: default)."""
    from ..models import transformer_like

    if wanted != "auto":
        return {"requested": wanted, "used": wanted}
    if source.ir_path is not None or source.onnx_path is None:
        return {"requested": "auto", "used": "default", "matmul_mac_share": None}
    like, share = transformer_like(source.onnx_path)
    return {"requested": "auto", "used": "transformer" if like else "default", "matmul_mac_share": share}


def subset_size(request, available: int) -> int:
    """How many calibration samples to use (the module's calibration-size rule)."""
    wanted = request.options.subset_size   # at least 1: the backend's Options bound it
    if wanted is not None:
        if available < wanted:
            raise BadInput(f"{named('the calibration data')} has {available} samples, fewer than --subset-size "
                           f"{wanted}")
        return wanted
    if available < MIN_CALIBRATION_SAMPLES:
        raise BadInput(f"{named('the calibration data')} has {available} samples; NNCF INT8 needs at least "
                       f"{MIN_CALIBRATION_SAMPLES} (its default subset is {NNCF_DEFAULT_SUBSET}): give more samples, "
                       f"or pass --subset-size {available} to calibrate on these anyway")
    return min(NNCF_DEFAULT_SUBSET, available)


def preset_name(request) -> str:
    name = request.options.preset or SCHEME_PRESETS.get(request.int8_scheme, "performance")
    if name not in PRESETS:
        raise BadInput(f"--preset {name!r}: NNCF presets are {', '.join(PRESETS)}")
    return name


def feeds(samples: dict, inputs) -> list:
    """One {input: array} per model call (edgeopt.data.feeds); a short tail is dropped."""
    return [feed for _, _, feed in data.feeds(samples, inputs)]


def _quantize(nncf, model, source, request, progress):
    calibration = feeds(request.calibration, source.inputs)
    size = subset_size(request, sample_count(request.calibration))
    preset = preset_name(request)
    float_types = float_op_types(model)
    model_type = choose_model_type(source, request.options.model_type)
    common = dict(preset=getattr(nncf.QuantizationPreset, preset.upper()), subset_size=size,
                  advanced_parameters=_advanced(nncf, request.options.activation_range),
                  ignored_scope=_scope(nncf, {}, [], float_types))
    if model_type["used"] == "transformer":
        common["model_type"] = nncf.ModelType.TRANSFORMER
    details = {"method": "nncf", "preset": preset, "subset_size": size, "fast_bias_correction": True,
               "activation_range": request.options.activation_range or AUTO_RANGE_FIRST, "model_type": model_type,
               "calibration": {"samples": sample_count(request.calibration), "used": size}}
    if float_types:
        details["float_op_types"] = {kind: FLOAT_OPS[kind] for kind in float_types}
        # the short reason here; the measured one in compression.float_op_types (the table shows only notes)
        details["notes"] = [f"{', '.join(float_types)} left in float: OpenVINO's CPU INT8 kernel for it gives wrong "
                            "outputs once the IR is saved (compression.float_op_types has the figures)"]
    if request.options.keep_float:
        scope, details["keep_float"] = _keep_float(nncf, model, calibration, common, source, request, progress)
        common["ignored_scope"] = scope
        details["notes"] = details.get("notes", []) + mixed_quantize.notes(details["keep_float"])
        if request.options.keep_float == mixed_quantize.AUTO:  # the budget, if any, was the choice's
            progress.status(f"INT8 quantization with NNCF, {len(details['keep_float']['layers'])} layers kept float")
            return nncf.quantize(model, nncf.Dataset(calibration), **common), dict(details, algorithm="quantize")
    if request.options.max_accuracy_drop is None:
        progress.status(f"INT8 quantization with NNCF ({preset} preset, {size} calibration samples)")
        quantized = nncf.quantize(model, nncf.Dataset(calibration), **common)
        if not request.options.activation_range:
            quantized = _auto_range(nncf, model, quantized, calibration, common, request, details, progress)
        return quantized, dict(details, algorithm="quantize")
    validation, labels = _validation_set(request, source)
    budget = request.options.max_accuracy_drop
    progress.status(f"accuracy-aware INT8 quantization with NNCF (max top-1 drop {budget:g}, "
                    f"{len(labels)} eval samples)")
    advanced = common.pop("advanced_parameters")   # this function names it otherwise
    model = nncf.quantize_with_accuracy_control(
        model, nncf.Dataset(calibration), nncf.Dataset(validation, lambda item: item[0]), _top1,
        max_drop=budget, drop_type=nncf.DropType.ABSOLUTE, advanced_quantization_parameters=advanced, **common)
    note = ("accuracy control chose layers on the --eval-data it is then judged on; keep a separate "
            "split if you need an unbiased accuracy figure")
    return model, dict(details, algorithm="quantize_with_accuracy_control", max_accuracy_drop=budget,
                       validation={"samples": len(labels), "metric": "top1"},
                       notes=details.get("notes", []) + [note])


def layers(model) -> dict:
    """{layer name: [compute op names]}: OpenVINO names a Conv with bias "<ONNX node>/WithoutBiases" (and
    its Add "<ONNX node>"), so the layer is named as the ONNX node was, which ORT's names match."""
    found = {}
    for op in model.get_ordered_ops():
        if op.get_type_name() in COMPUTE_OPS:
            name = op.get_friendly_name()
            found.setdefault(name.removesuffix(WITHOUT_BIASES), []).append(name)
    return found


def _keep_float(nncf, model, calibration, common, source, request, progress) -> tuple:
    """(nncf.IgnoredScope of the layers left in float, the manifest's record) for --keep-float: the named
    layers, or those mixed_quantize chooses, measuring NNCF-quantized trials against the float model."""
    by_layer = layers(model)
    float_types = float_op_types(model)
    if request.options.keep_float != mixed_quantize.AUTO:
        names = mixed_quantize.requested(request.options.keep_float)
        kept = mixed_quantize.resolve(names, list(by_layer))
        record = {"mode": "named", "requested": names, "layers": kept}
    else:
        ops = {op.get_friendly_name().removesuffix(WITHOUT_BIASES): op.get_type_name()
               for op in model.get_ordered_ops() if op.get_type_name() in COMPUTE_OPS}
        dataset = nncf.Dataset(calibration)

        def excluding(float_layers):
            scope = _scope(nncf, by_layer, float_layers, float_types)
            trial = {**common, "ignored_scope": scope}
            return _runner(nncf.quantize(model, dataset, **trial), request)

        trials = mixed_quantize.Trials(
            reference=_runner(model, request),
            isolated=lambda layer: excluding([other for other in by_layer if other != layer]),
            excluding=excluding)
        record = mixed_quantize.choose(list(by_layer), ops, trials, request, source.inputs, progress)
        kept = record["layers"]
    return _scope(nncf, by_layer, kept, float_types), record


def _scope(nncf, by_layer, float_layers, float_types=()):
    """The IgnoredScope of `float_layers` (layer names) and of every op of `float_types` (FLOAT_OPS present)."""
    return nncf.IgnoredScope(names=[op for layer in float_layers for op in by_layer[layer]], types=list(float_types))


def float_op_types(model) -> list:
    """The FLOAT_OPS types this model has (NNCF refuses an ignored type the model lacks)."""
    present = {op.get_type_name() for op in model.get_ordered_ops()}
    return sorted(present & set(FLOAT_OPS))


def _auto_range(nncf, model, quantized, calibration, common, request, details, progress):
    """activation_range "" (auto): NNCF's default estimator clips rare activation outliers, which on some
    models wrecks an output (random-weight MobileNetV3-Small and EfficientNet-B0: 7.0 and 9.0 dB SQNR, below
    parity's 10 dB; 13.9 and 11.3 dB with minmax). Where the default leaves any float output below
    parity.QUANTIZED_MIN_SQNR_DB on the first AUTO_RANGE_CALLS calibration calls (in memory, against the float
    model), the model is quantized again with minmax and the better of the two kept; both figures recorded."""
    from ..parity import QUANTIZED_MIN_SQNR_DB

    calls = calibration[:AUTO_RANGE_CALLS]
    reference = _outputs(_runner(model, request), calls)
    sqnr = {AUTO_RANGE_FIRST: _min_sqnr(reference, _outputs(_runner(quantized, request), calls))}
    details["activation_range_sqnr_db"] = sqnr
    if sqnr[AUTO_RANGE_FIRST] >= QUANTIZED_MIN_SQNR_DB:
        return quantized
    progress.status(f"INT8 with NNCF's default activation ranges reads {sqnr[AUTO_RANGE_FIRST]:.1f} dB SQNR: "
                    "trying minmax ranges")
    minmax = dict(common, advanced_parameters=_advanced(nncf, "minmax"))
    other = nncf.quantize(model, nncf.Dataset(calibration), **minmax)
    sqnr["minmax"] = _min_sqnr(reference, _outputs(_runner(other, request), calls))
    if sqnr["minmax"] <= sqnr[AUTO_RANGE_FIRST]:
        return quantized
    details["activation_range"] = "minmax"
    details["notes"] = details.get("notes", []) + [
        f"activation ranges: minmax ({sqnr['minmax']:.1f} dB SQNR on the calibration samples) instead of NNCF's "
        f"default ({sqnr[AUTO_RANGE_FIRST]:.1f} dB); --backend-option activation_range=nncf-default keeps NNCF's"]
    return other


def _outputs(run, calls) -> list:
    """Each output's values over the calls: [[array per call] per output]."""
    import numpy as np

    results = [run(feed) for feed in calls]
    return [[np.asarray(r[i]) for r in results] for i in range(len(results[0]))]


def _min_sqnr(reference: list, got: list) -> float:
    """The lowest SQNR (dB) over the float outputs of one fixed shape (integer outputs, such as indices, are
    not noise; detections whose count varies between calls or runtimes are rows to match, not to subtract)."""
    import numpy as np

    from ..parity import SQNR_IDENTICAL_DB, sqnr_db

    values = [sqnr_db(np.concatenate([a.ravel() for a in r]), np.concatenate([a.ravel() for a in g]))
              for r, g in zip(reference, got)
              if r[0].dtype.kind == "f" and len({a.shape for a in r + g}) == 1]
    return round(min(values, default=SQNR_IDENTICAL_DB), 2)


def _advanced(nncf, activation_range: str):
    """NNCF's AdvancedQuantizationParameters for the activation_range option; "" or nncf-default leave NNCF's
    default."""
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    estimators = {"minmax": RangeEstimatorParametersSet.MINMAX}
    # 7-bit weights in every layer (NNCF's default fixes the first only): an Intel CPU without VNNI (AVX2, AVX-512
    # before Cascade Lake) saturates 8-bit products, as ONNX Runtime's kernels do (int8_weight_bits); on an
    # AVX2-only host a zoo model's INT8 logits read 3.1 dB SQNR against its float model
    fix = {"overflow_fix": nncf.OverflowFix.ENABLE}
    if activation_range in ("", AUTO_RANGE_FIRST):
        return nncf.AdvancedQuantizationParameters(**fix)
    return nncf.AdvancedQuantizationParameters(activations_range_estimator_params=estimators[activation_range], **fix)


def _runner(model, request):
    """{input: array} -> [outputs] of an in-memory openvino.Model, compiled as the bundle will be."""
    import openvino as ov

    from ..convert.openvino import DEVICE, compile_config, runtime_options

    compiled = ov.Core().compile_model(model, DEVICE, compile_config(runtime_options(request)))
    infer = compiled.create_infer_request()
    return lambda feed: [infer.infer(feed)[port] for port in compiled.outputs]


def require_labels(evaluation) -> None:
    if evaluation is None or LABELS not in evaluation:
        raise BadInput("--max-accuracy-drop needs labelled eval data: --eval-data eval.npz with a `labels` array")


def _validation_set(request, source):
    evaluation = request.evaluation
    require_labels(evaluation)
    items = [(feed, evaluation[LABELS][start:start + size]) for start, size, feed in
             data.feeds(evaluation, source.inputs)]
    return items, evaluation[LABELS][:sum(len(labels) for _, labels in items)]


def _top1(compiled_model, items) -> float:
    """NNCF's validation_fn: top-1 of the first output over (feed, labels) items."""
    out = compiled_model.output(0)
    correct = total = 0
    for feed, labels in items:
        logits = compiled_model(feed)[out]
        correct += int((logits.reshape(len(labels), -1).argmax(1) == labels).sum())
        total += len(labels)
    return correct / total


def _compress_weights(nncf, model, request, progress):
    mode = WEIGHT_MODES[request.quantize]
    progress.status(f"weight-only compression with NNCF ({mode.lower()})")
    options, notes = {}, []
    if mode.startswith("INT4"):
        # NNCF groups INT4 weights by 128 input channels and refuses the whole model when one layer's channels
        # are not a multiple of 128 (MobileNetV3-small's 576-input Linear failed it). ADJUST groups such a layer
        # by the largest power of two that divides them (down to 32), else keeps it at the backup precision;
        # op_summary then counts what each layer became.
        options["advanced_parameters"] = nncf.AdvancedCompressionParameters(
            group_size_fallback_mode=nncf.GroupSizeFallbackMode.ADJUST)
        notes.append("NNCF's 4-bit modes keep convolutions, embeddings and the last linear layer at INT8 (its "
                     "default; compression.ops.weights_by_type counts what each layer became)")
    model = nncf.compress_weights(model, mode=getattr(nncf.CompressWeightsMode, mode), **options)
    details = {"method": "nncf", "algorithm": "compress_weights", "mode": mode.lower()}
    if mode.startswith("INT4"):
        details.update(group_size=128, ratio=1.0, backup_mode="int8_asym",  # NNCF's defaults, stated
                       group_size_fallback="adjust (largest power of two >= 32 that divides a layer's channels; "
                                           "else the backup mode)")
    if request.calibration is not None:
        notes.append("--calib is not used: weight-only compression here is data-free")
    if notes:
        details["notes"] = notes
    return model, details


def _weight_type(op) -> str:
    """Element type of the Constant behind a compute op's weights input, or 'activation'."""
    node = op.input_value(1).get_node()
    for _ in range(8):
        kind = node.get_type_name()
        if kind == "Constant":
            return node.get_output_element_type(0).get_type_name()
        if kind not in WEIGHT_PATH:
            break
        node = node.input_value(0).get_node()
    return "activation"


def _quantized_input(op) -> bool:
    """Whether a compute op's data input comes from a FakeQuantize (through pass-through ops)."""
    node = op.input_value(0).get_node()
    for _ in range(8):
        kind = node.get_type_name()
        if kind == "FakeQuantize":
            return True
        if kind not in PASS_THROUGH:
            return False
        node = node.input_value(0).get_node()
    return False


def op_summary(model, quantize: str) -> dict:
    """Which compute ops were compressed and which were left in float, from the model itself."""
    compute, int8_inputs, weights, left = 0, 0, {}, []
    fake_quantize = 0
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        fake_quantize += kind == "FakeQuantize"
        if kind in FLOAT_OPS and quantize == "int8":   # kept float by design (FLOAT_OPS): counted, so that an LSTM
            compute += 1                             # read "1/1 compute ops quantized" no more (a user review)
            left.append(f"{kind}:{op.get_friendly_name()}")
            continue
        if kind in RECURRENT_OPS and quantize == "int8":
            compute += 1
            if not _quantized_input(op):
                left.append(f"{kind}:{op.get_friendly_name()}")
            continue
        if kind not in COMPUTE_OPS:
            continue
        compute += 1
        quantized_input = _quantized_input(op)
        int8_inputs += quantized_input
        wtype = _weight_type(op)
        weights[wtype] = weights.get(wtype, 0) + 1
        done = quantized_input if quantize == "int8" else wtype in LOW_BIT
        if not done:
            left.append(f"{kind}:{op.get_friendly_name()}")
    summary = {"compute_ops": compute, "fake_quantize": fake_quantize, "int8_activation_inputs": int8_inputs,
               "weights_by_type": weights, "left_in_float": len(left), "left_in_float_ops": left[:MAX_LISTED]}
    if len(left) > MAX_LISTED:
        summary["left_in_float_ops_truncated"] = True
    return summary
