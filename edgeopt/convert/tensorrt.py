"""TensorRT backend (the jetson-orin-nano profile): a TensorRT-ready ONNX plus the engine's build settings.

A TensorRT engine is specific to the GPU, the TensorRT version and the build settings, so it cannot be built
here for the device: the bundle carries the ONNX the device's TensorRT parses and the settings the agent's
`tensorrt` adapter builds it with (device_agent/runtimes/tensorrt.py), caching the engine on the device.

- The ONNX has static input shapes (intake fixes them) and is simplified (the pipeline's simplify step), in an
  opset every TensorRT version of the profile's [software] parses: onnx-tensorrt's operators.md says TensorRT
  8.5 "supports operators up to Opset 17" (release/8.5-GA) and TensorRT 10.0 "in the inclusive range of opset
  9 to opset 20" (main). A model outside the range is converted with onnx.version_converter, or refused.
- FP16 is a builder flag: the bundle's ONNX stays FP32 and parity runs it on ONNX Runtime (CPU), judged with
  the profile's fp16 tolerance: the FP16 engine itself can only be checked on the device.
- INT8 is explicit quantization, as TensorRT documents it: a QDQ graph with symmetric INT8 (zero point 0),
  per-channel weights and per-tensor activations, made by edgeopt/compress/ort_quantize.py (scheme
  s8s8-symmetric) from the calibration data; no calibration cache, no implicit (PTQ calibrator) INT8.
  Q/DQ go on the inputs of the weighted ops only (QDQ_OPS), as TensorRT's guide places them ("Q/DQ layer
  placement recommendations"); TensorRT picks the precision of everything between. Measured on a GPU
  (docs/benchmarks.md): with ONNX Runtime's default, which quantizes every op it can, TensorRT 8.5.3 built no
  engine for YOLOv8n ("Could not find any implementation for node PWN(Sigmoid, Mul)"; trtexec alike).
"""
from __future__ import annotations

import dataclasses
import shutil

from ..compress.mixed_quantize import budget_option, keep_float_option
from ..errors import BadInput
from ..options import option
from .base import Backend, Conversion

# TensorRT major.minor -> (lowest, highest) ONNX opset its parser takes (onnx-tensorrt docs/operators.md).
PARSER_OPSETS = {"8.5": (9, 17), "8.6": (9, 17), "10": (9, 20)}
DEFAULT_VERSIONS = ("8.5", "10.3")   # a profile without [software] tensorrt: JetPack 5 and 6
INT8_SCHEME = "s8s8-symmetric"       # ort_quantize.SCHEMES: TensorRT's explicit-quantization requirement
QDQ_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")   # the weighted ops, whose inputs TensorRT wants quantized
PARITY_NOTE = ("parity ran the bundle's FP32 ONNX on ONNX Runtime (CPU) and judged it with the profile's fp16 "
               "tolerance; the FP16 engine is built on the device and not checked here")


def opset_range(version: str) -> tuple:
    """(lowest, highest) opset of TensorRT `version` ("8.5", "10.3.0"); BadInput for one this table lacks."""
    parts = version.split(".")
    for key in (".".join(parts[:2]), parts[0]):
        if key in PARSER_OPSETS:
            return PARSER_OPSETS[key]
    raise BadInput(f"TensorRT {version}: edgeopt does not know which ONNX opsets its parser takes "
                   f"(known: {', '.join(sorted(PARSER_OPSETS))}); fix the profile's [software] tensorrt")


def target_opset(versions) -> tuple:
    """(lowest, highest) opset that every TensorRT version in `versions` parses."""
    ranges = [opset_range(v) for v in versions]
    return max(r[0] for r in ranges), min(r[1] for r in ranges)


def onnx_opset(model) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def fit_opset(path, out, versions) -> dict:
    """Write the model at `path` to `out` in an opset every TensorRT of `versions` parses; what was done.
    A model the version converter cannot bring into range is refused in one line."""
    import onnx
    from onnx import version_converter

    model = onnx.load(str(path))
    have, (low, high) = onnx_opset(model), target_opset(versions)
    record = {"source_opset": have, "accepted": [low, high], "tensorrt": list(versions)}
    if low <= have <= high:
        shutil.copyfile(path, out)
        return dict(record, opset=have, converted=False)
    want = high if have > high else low
    try:
        converted = version_converter.convert_version(model, want)
        onnx.checker.check_model(converted)
    except Exception as e:  # the converter raises RuntimeError/ValidationError/bare C++ errors
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise BadInput(f"model opset {have} is outside {low}-{high}, the range TensorRT {', '.join(versions)} "
                       f"parses, and onnx.version_converter cannot convert it to {want}: {first}") from None
    onnx.save(converted, str(out))
    return dict(record, opset=want, converted=True)


@dataclasses.dataclass(frozen=True)
class TensorRtOptions:
    workspace_mib: int = option(1024, "TensorRT builder workspace (memory pool) limit, MiB", low=16, high=65536)
    builder_optimization_level: int = option(
        3, "TensorRT builder optimization level 0-5 (TensorRT >= 8.6; 8.5 has none and the result says so)",
        low=0, high=5)
    dla_core: int = option(-1, "DLA core to build for (-1: the GPU); only on a profile with dla_cores", low=-1, high=7)
    gpu_fallback: bool = option(True, "with dla_core 0 or more: layers the DLA cannot run go to the GPU")
    library_tactics: str = option(
        "default", "whether the builder times cuBLAS/cuBLASLt/cuDNN kernels: on, off, or default (TensorRT 8.5 "
        "does, 8.6 and later do not; loading cuDNN costs hundreds of MiB on a Jetson)",
        choices=("default", "on", "off"))
    tf32: bool = option(True, "let FP32 layers run in TF32 on Ampere and newer GPUs, as TensorRT does by default; "
                              "false keeps them in full FP32 (closer to ONNX Runtime, slower)")
    keep_float: str = keep_float_option()               # with --quantize int8: nodes left out of the QDQ graph
    max_accuracy_drop: float | None = budget_option()   # the budget of --keep-float auto's choice


class TensorRtBackend(Backend):
    name = "tensorrt"
    runtime = "tensorrt"
    precisions = ("fp32", "fp16")
    quantizations = ("none", "int8")
    Options = TensorRtOptions
    int8_options = ("keep_float",)

    def check_profile(self, options, profile) -> None:
        """Before any work: a DLA core the profile's device has, and TensorRT versions this table knows."""
        if 0 <= profile.device.dla_cores <= options.dla_core:
            raise BadInput(f"--backend-option dla_core={options.dla_core}: profile {profile.name} has "
                           f"{profile.device.dla_cores} DLA cores (device.dla_cores); dla_core=-1 builds for the GPU")
        target_opset(versions_of(profile))

    def _validate(self, request):
        super()._validate(request)
        if request.options.keep_float and request.quantize != "int8":
            raise BadInput("--keep-float applies to --quantize int8 on backend tensorrt")
        if not request.options.gpu_fallback and request.options.dla_core < 0:
            raise BadInput("--backend-option gpu_fallback=false applies to a DLA build (dla_core=0 or more)")
        from ..compress.mixed_quantize import check_budget
        check_budget(request, self.name)

    def _convert(self, source, request, workdir, progress):
        import onnx
        import onnxruntime

        versions = versions_of(request.profile)
        progress.status(f"fitting the ONNX opset to TensorRT {', '.join(versions)}")
        fitted = workdir / "trt-opset.onnx"
        opset = fit_opset(source.onnx_path, fitted, versions)
        out = workdir / "model.onnx"
        compression = {"quantize": request.quantize, "precision": request.precision, "opset": opset}
        notes = [f"ONNX opset {opset['source_opset']} converted to {opset['opset']} for TensorRT "
                 f"{', '.join(versions)}"] if opset["converted"] else []
        if request.quantize == "int8":
            notes += self._int8(source, request, fitted, out, workdir, progress, compression)
        else:
            shutil.copyfile(fitted, out)
        if request.precision == "fp16":
            compression["parity_note"] = PARITY_NOTE
            notes.append(PARITY_NOTE)
        tools = {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}
        runtime = {"name": self.runtime, "options": runtime_options(request, versions)}
        return Conversion(out, [], runtime, compression, tools, notes)

    @staticmethod
    def _int8(source, request, fitted, out, workdir, progress, compression) -> list:
        """The symmetric INT8 QDQ graph of the opset-fitted model, by ort_quantize (no quantizer of our own)."""
        from ..compress import ort_quantize

        # A converted model is pre-processed again for quantization; an unconverted one was simplified at intake.
        simplified = None if compression["opset"]["converted"] else source.simplification
        fitted_source = dataclasses.replace(source, onnx_path=fitted, simplification=simplified)
        qrequest = dataclasses.replace(request, int8_scheme=INT8_SCHEME)
        details = ort_quantize.quantize(fitted_source, qrequest, out, progress, workdir, op_types=QDQ_OPS)
        details["explicit_quantization"] = "QDQ, symmetric INT8, per-channel weights, per-tensor activations"
        notes = details.pop("notes", [])
        compression.update(details)
        return notes

    def host_runner(self, model_path, options=None):
        from .onnxruntime import ort_runner
        return ort_runner(model_path)


def versions_of(profile) -> tuple:
    software = getattr(profile, "software", None) or {}
    return tuple(software.get("tensorrt") or DEFAULT_VERSIONS)


def runtime_options(request, versions) -> dict:
    """The build settings the agent's tensorrt adapter reads (device_agent/runtimes/tensorrt.py OPTIONS)."""
    opts = request.options
    return {"fp16": request.precision == "fp16", "int8": request.quantize == "int8",
            "workspace_mib": opts.workspace_mib, "builder_optimization_level": opts.builder_optimization_level,
            "dla_core": opts.dla_core, "gpu_fallback": opts.gpu_fallback, "library_tactics": opts.library_tactics,
            "tf32": opts.tf32, "tensorrt_versions": list(versions)}
