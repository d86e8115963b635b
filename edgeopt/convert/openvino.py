"""OpenVINO backend (the intel-cpu profile): ONNX, PyTorch (through intake's ONNX export) or an
existing IR -> OpenVINO IR (.xml + .bin) with openvino.convert_model / save_model; INT8 and
weight-only compression with NNCF (edgeopt/compress/nncf_quantize.py).

Precision is two things in OpenVINO, and both follow --precision:
- how the .bin stores float weights: FP32 for fp32, FP16-compressed for fp16 and bf16
  (save_model compresses to FP16 unless told not to);
- what the CPU plugin computes in, the INFERENCE_PRECISION_HINT the device compiles with: f32,
  f16 or bf16. Left unset, the plugin picks bf16 on CPUs that have it, so "fp32" would not be.
The agent reads the effective precision back from the compiled model and records it.
"""
from __future__ import annotations

import dataclasses
import re
import shutil

from ..compress.mixed_quantize import budget_option, keep_float_option
from ..compress.nncf_quantize import MIN_CALIBRATION_SAMPLES
from ..errors import BadInput
from ..options import option
from .base import ONNX_FORMATS, Backend, Conversion

PRECISION_HINTS = {"fp32": "f32", "fp16": "f16", "bf16": "bf16"}
PERFORMANCE_HINTS = {"latency": "LATENCY", "throughput": "THROUGHPUT"}
DEVICE = "CPU"
# edgeopt/compress/nncf_quantize.py maps each to NNCF's estimators; "" (auto) chooses between the two
ACTIVATION_RANGES = ("minmax", "nncf-default")
MODEL_TYPES = ("auto", "transformer", "default")   # NNCF's model_type (compress/nncf_quantize.choose_model_type)


def compile_config(options: dict, threads: int | None = None) -> dict:
    """OpenVINO properties for runtime options as the manifest records them (the agent has its own
    copy of this mapping: device_agent never imports edgeopt)."""
    config = {"PERFORMANCE_HINT": options.get("performance_hint", "LATENCY"),
              "INFERENCE_PRECISION_HINT": options.get("inference_precision", "f32")}
    if threads:
        config["INFERENCE_NUM_THREADS"] = str(threads)
    return config


class _Runner:
    """{input: array} -> [outputs] on one infer request; knows the precision the plugin chose."""

    def __init__(self, model_path, options, threads=None):
        import openvino as ov

        core = ov.Core()
        self.compiled = core.compile_model(str(model_path), options.get("device", DEVICE),
                                           compile_config(options, threads))
        self.request = self.compiled.create_infer_request()
        self.inference_precision = self.compiled.get_property("INFERENCE_PRECISION_HINT").to_string()

    def __call__(self, feed):
        result = self.request.infer(feed)
        return [result[port] for port in self.compiled.outputs]


def ov_runner(model_path, options: dict, threads=None):
    return _Runner(model_path, options, threads)


def openvino_version() -> str:
    import openvino as ov

    return ov.__version__.split("-")[0]


def runtime_options(request) -> dict:
    return {"device": DEVICE, "performance_hint": PERFORMANCE_HINTS[request.options.performance_hint],
            "inference_precision": PRECISION_HINTS[request.precision], "model_cache": True}


def unconvertible_ops(message: str) -> list:
    """[(op, why)] for the ops OpenVINO's frontend names in a failed conversion ("Bernoulli-17")."""
    return [(op, why) for op, _, why in failed_ops(message)]


def failed_ops(message: str) -> list:
    """[(op, node name or "", why)] for each op OpenVINO's frontend names in a failed conversion: an op
    with no conversion rule, or one whose conversion failed, with the first sentence of OpenVINO's
    reason (the line under its "Check ... failed at file.cpp" trail)."""
    found = {}
    rule = re.search(r"No conversion rule found for operations:\s*(.+)", message)
    if rule:
        for op in rule.group(1).split(","):
            found.setdefault(op.strip(), ("", "has no conversion rule"))
    for block in re.split(r"^-- ", message, flags=re.M)[1:]:
        head = re.match(r"(\S+) with a message", block)
        if not head or head.group(1) in found:
            continue
        node = re.search(r"ONNX node '<Node\(\w+\): ([^>]*)>'", block)
        reason = _reason(block.split("\nSummary:")[0].splitlines()[1:])
        found[head.group(1)] = (node.group(1) if node else "",
                                f"failed to convert: {reason}" if reason else "failed to convert")
    return [(op, node, why) for op, (node, why) in found.items() if op]


_TRAIL = re.compile(r"^(\[ONNX Frontend\]|While validating|Check '|FrontEnd API failed|Exception from|"
                    r"Model wasn't fully converted|Failed operations detailed log|Summary:|-- )")


def _reason(lines) -> str:
    """The first sentence of OpenVINO's own words among `lines`, past its source-location trail."""
    words = [line.strip() for line in lines if line.strip() and not _TRAIL.match(line.strip())]
    return first_sentence(" ".join(words)) if words else ""


def first_sentence(text: str) -> str:
    """Up to the first full stop that ends a sentence (not "e.g." or "3.1"), else the whole text, one line."""
    text = " ".join(str(text).split())
    end = re.search(r"(?<![.\d])(?<!\b[a-z])\.(\s|$)", text)
    return text[: end.start() + 1] if end else text


def describe_conversion_failure(error: Exception, onnx_path, model_name=None) -> str:
    """One line: the model, the op(s) OpenVINO could not convert with its reason, and where the reason is
    an unknown rank or shape in a graph with If nodes, those Ifs and the inputs their conditions read."""
    import onnx

    name = model_name or onnx_path
    ops = failed_ops(str(error))
    if not ops:
        reason = _reason(str(error).splitlines()) or type(error).__name__
        return f"{name}: OpenVINO {openvino_version()} cannot convert this model: {reason}"
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    described = []
    for op, node, why in ops:
        op_type = re.sub(r"-\d+$", "", op).rsplit(".", 1)[-1]
        nodes = [node] if node else [n.name or n.output[0] for n in graph.node if n.op_type == op_type]
        where = f" (node{'s' if len(nodes) > 1 else ''} {', '.join(repr(n) for n in nodes[:3])})" if nodes else ""
        described.append(f"{op}{where} {why}")
    shapes = any(re.search(r"\b(rank|shape|static|dynamic)\b", why, re.IGNORECASE) for _, _, why in ops)
    return (f"{name}: OpenVINO {openvino_version()} cannot convert this model: ONNX op {'; '.join(described)}"
            f"{_if_origin(graph) if shapes else ''}; replace the op or package for --profile generic (ONNX Runtime)")


def _if_origin(graph) -> str:
    """Where the graph has If nodes: they are the usual cause of a tensor of unknown rank (branches of
    different ranks, as TorchScript tracing leaves them) that OpenVINO cannot fold unless the condition
    is a constant once input shapes are fixed. Names them and the inputs their conditions read."""
    ifs = [n for n in graph.node if n.op_type == "If"]
    if not ifs:
        return ""
    producers = {out: n for n in graph.node for out in n.output}
    inputs = {i.name for i in graph.input} - {t.name for t in graph.initializer}
    reads = sorted({name for n in ifs for name in _ancestors(n.input[0], producers) if name in inputs})
    names = ", ".join(repr(n.name or n.output[0]) for n in ifs[:3]) + (" ..." if len(ifs) > 3 else "")
    cond = (f"whose condition reads input{'s' if len(reads) > 1 else ''} {', '.join(map(repr, reads))}"
            if reads else "whose condition OpenVINO did not fold")
    return (f" (the model has If node{'s' if len(ifs) > 1 else ''} {names} {cond}; OpenVINO needs each "
            "If's branches to give outputs of one static rank, ONNX Runtime does not)")


def _ancestors(tensor: str, producers: dict) -> set:
    """Every tensor `tensor` is computed from (itself included), through the main graph."""
    seen, todo = set(), [tensor]
    while todo:
        t = todo.pop()
        if t in seen:
            continue
        seen.add(t)
        todo += [i for i in producers[t].input if i] if t in producers else []
    return seen


@dataclasses.dataclass(frozen=True)
class OpenVinoOptions:
    preset: str = option("", "NNCF INT8 preset; \"\" = the profile's int8_scheme decides",
                         choices=("performance", "mixed"), search=("performance", "mixed"))
    # Searched: which estimator suits a model is a property of its activations, measured, not guessed.
    activation_range: str = option("", "NNCF activation range estimator: nncf-default (the mean over "
                                   "calibration batches of each batch's min and max, which clips rare outliers), "
                                   "minmax (the global min and max over all calibration samples), or \"\" = "
                                   "nncf-default unless it leaves an output below 10 dB SQNR on the calibration "
                                   "samples and minmax does better",
                                   choices=ACTIVATION_RANGES, search=("", "minmax"))
    subset_size: int | None = option(None, "calibration samples NNCF uses; None = its rule (300, or all when "
                                     "fewer; fewer than 100 need it set explicitly)", low=1)
    max_accuracy_drop: float | None = budget_option()   # accuracy-aware INT8 (quantize_with_accuracy_control)
    # Not searched: a search times one request at a time, which is what the latency hint is for.
    performance_hint: str = option("latency", "OpenVINO performance hint the device compiles with",
                                   choices=tuple(PERFORMANCE_HINTS))
    keep_float: str = keep_float_option()
    # Not searched: the transformer scheme is NNCF's documented setting for what the rule finds.
    model_type: str = option("auto", "NNCF model type: transformer (NNCF's scheme for transformer models) or "
                             "default; auto = transformer where MatMul/Gemm with weights hold most of the MACs",
                             choices=MODEL_TYPES)


class OpenVinoBackend(Backend):
    name = "openvino"
    runtime = "openvino"
    precisions = ("fp32", "fp16", "bf16")
    quantizations = ("none", "int8", "int8-weights", "int4-weights")
    source_formats = ONNX_FORMATS + ("openvino-ir",)
    Options = OpenVinoOptions
    int8_options = ("preset", "activation_range", "subset_size", "max_accuracy_drop", "keep_float", "model_type")
    min_calibration_samples, calibration_size_option = MIN_CALIBRATION_SAMPLES, "subset_size"

    def _validate(self, request):
        """The NNCF options, checked before any conversion work (nncf itself is not imported)."""
        super()._validate(request)
        from ..compress import nncf_quantize
        from ..data import sample_count

        if request.options.max_accuracy_drop is not None and request.quantize != "int8":
            raise BadInput("--max-accuracy-drop applies to --quantize int8 only")
        if request.options.keep_float and request.quantize != "int8":
            raise BadInput("--keep-float applies to --quantize int8 on backend openvino")
        if request.options.activation_range and request.quantize != "int8":
            raise BadInput("backend option activation_range applies to --quantize int8 on backend openvino")
        if request.options.model_type != "auto" and request.quantize != "int8":
            raise BadInput("backend option model_type applies to --quantize int8 on backend openvino")
        # weight-only compression ignored them, while the recipe recorded them as applied
        if request.options.preset and request.quantize != "int8":
            raise BadInput("--preset applies to --quantize int8 on backend openvino")
        if request.options.subset_size is not None and request.quantize != "int8":
            raise BadInput("--subset-size applies to --quantize int8 on backend openvino")
        if request.quantize == "int8":
            nncf_quantize.preset_name(request)
            nncf_quantize.subset_size(request, sample_count(request.calibration))
            if request.options.max_accuracy_drop is not None:
                nncf_quantize.require_labels(request.evaluation)

    def _convert(self, source, request, workdir, progress):
        import openvino as ov

        model, given = self._read(source, progress)
        compression = {"quantize": request.quantize, "precision": request.precision}
        tools = {"openvino": openvino_version()}
        if request.quantize != "none":
            from ..compress import nncf_quantize
            _refuse_quantized_again(model, source.reference)
            model, details = nncf_quantize.compress(model, source, request, progress)
            compression.update(details)
            tools["nncf"] = details.pop("nncf_version")
        out_dir = workdir / "ir"
        out_dir.mkdir()
        out = out_dir / "model.xml"
        if source.ir_path is not None and request.quantize == "none" and request.precision == "fp32":
            self._copy_ir(source.ir_path, out)  # packaged as given: the user's own .xml and .bin
            reshaped = str(source.ir_path) != source.reference
            compression["ir"] = "as given" + (", reshaped to static input shapes" if reshaped else "")
        else:
            progress.status("saving OpenVINO IR")
            _stable_names(model, given)
            ov.save_model(model, str(out), compress_to_fp16=request.precision != "fp32")
        from ..ir import bin_path, weight_bytes_by_type
        compression["weights_bytes"] = weight_bytes_by_type(out)
        notes = compression.pop("notes", [])
        if "ir" in compression and compression["weights_bytes"].get("f16"):   # fp32, compression none, read as fp32
            notes.append("the IR stores its weights as f16 (ov.save_model compresses them by default), packaged "
                         "as given: they run in fp32, at f16 precision")
        if request.quantize != "none" and request.host_timing:
            notes += self._host_hint(source, request, out, compression, progress)
        extra = [bin_path(out)] if bin_path(out).is_file() else []
        return Conversion(out, extra, {"name": self.runtime, "options": runtime_options(request)},
                          compression, tools, notes)

    @staticmethod
    def _host_hint(source, request, out, compression, progress) -> list:
        """The quantized IR against the float source, both compiled as the device will (the bundle's options)."""
        from . import host_hint

        float_model = source.ir_path if source.ir_path is not None else source.onnx_path
        hint = host_hint.measure(float_model, out, host_hint.feed_of(source, request.calibration), "openvino",
                                 runtime_options(request), progress,
                                 from_calibration=request.calibration is not None)
        compression["host_hint"] = hint
        return host_hint.warnings(hint)

    def _read(self, source, progress) -> tuple:
        """(the model, the names its source gave: _stable_names leaves those alone)."""
        import openvino as ov

        if source.ir_path is not None:
            from ..ir import read_model
            model = read_model(source.ir_path)[0]
            return model, {op.get_friendly_name() for op in model.get_ops()}
        progress.status("converting to OpenVINO IR")
        import onnx

        from ..models import refuse_passthrough
        onnx_model = onnx.load(str(source.onnx_path), load_external_data=False)
        refuse_passthrough(onnx_model, source.reference, self.name)
        graph = onnx_model.graph
        given = ({n.name for n in graph.node} | {o for n in graph.node for o in n.output}
                 | {t.name for t in (*graph.input, *graph.output, *graph.initializer)})
        try:
            return ov.convert_model(str(source.onnx_path)), given
        except Exception as e:  # OpConversionFailure, GeneralFailure, RuntimeError: all one line, op named
            raise BadInput(describe_conversion_failure(e, source.onnx_path, source.reference)) from None

    @staticmethod
    def _copy_ir(xml_path, out):
        from ..ir import bin_path

        shutil.copyfile(xml_path, out)
        if bin_path(xml_path).is_file():
            shutil.copyfile(bin_path(xml_path), bin_path(out))

    def host_runner(self, model_path, options=None):
        return ov_runner(model_path, options or {})

    def describe_io(self, model_path, options=None):
        from ..ir import read_model, tensor_specs

        model = read_model(model_path)[0]
        return tensor_specs(model.inputs), tensor_specs(model.outputs)


# what OpenVINO names an op it made (a folded constant "Reshape_15"): its number comes from a counter global to the
# process, so the second conversion of one model in a process names it "Reshape_2707"
MADE_UP_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]*_\d+")


def _stable_names(model, given: set) -> None:
    """The names OpenVINO and NNCF made up renumbered in graph order, the source's own left alone: one model
    converted twice is then one IR, byte for byte. optimize's content keys and its check of a rebuilt bundle
    compare files, and every OpenVINO rebuild read as "its files differ from those measured" (a walkthrough)."""
    for index, op in enumerate(model.get_ordered_ops()):
        name = op.get_friendly_name()
        if name not in given and MADE_UP_NAME.fullmatch(name):
            op.set_friendly_name(f"{name.rsplit('_', 1)[0]}_n{index}")


def _refuse_quantized_again(model, reference: str) -> None:
    """An IR quantized already (an INT8 bundle's own model.xml: FakeQuantize on every input) went through NNCF again
    without a word, its ranges measured on its own rounding."""
    fake = sum(op.get_type_name() == "FakeQuantize" for op in model.get_ops())
    if fake:
        raise BadInput(f"{reference}: the model is quantized already ({fake} FakeQuantize ops): package it with "
                       "--quantize none, or quantize its float source", option="quantize")
