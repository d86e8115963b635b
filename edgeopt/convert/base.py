"""The shared part of every backend: request validation, timing and provenance.
A backend implements `_convert` (and `host_runner` for the parity check), and declares its own knobs as a
frozen `Options` dataclass of option() fields (edgeopt/options.py): the pipeline builds that instance from
the caller's values before any work (`Backend.options`) and hands it over in `PackageRequest.options`
unopened, so no other layer knows one backend's knobs."""
from __future__ import annotations

import dataclasses
import pathlib
import time

from ..errors import BadInput
from ..options import build_options, fields
from ..progress import SILENT


# Source formats every backend takes: intake turns each of them into one ONNX file.
ONNX_FORMATS = ("onnx", "pytorch-module", "torchscript", "exported-program")


@dataclasses.dataclass(frozen=True)
class NoOptions:
    """The options of a backend that has none of its own."""


@dataclasses.dataclass(frozen=True)
class PackageRequest:
    precision: str                 # fp32 | fp16 | bf16
    quantize: str                  # none | dynamic | int8 | int8-weights | int4-weights
    calibration: dict | None       # {input name: array}, required for int8
    int8_scheme: str = ""          # the profile's scheme (a backend's default where its options leave it open)
    evaluation: dict | None = None  # {input name: array, labels: array} from --eval-data
    options: object = NoOptions()  # the backend's own Options instance (Backend.options builds it)
    host_timing: bool = True       # time INT8 against FP32 on this host (a hint; optimize measures the device)
    profile: object = None         # the Profile packaged for (a backend that reads its device or software facts)
    # parity's top-1 agreement is not what refuses the artifact (--allow-mismatch, optimize's accuracy budget):
    # --keep-float auto then keeps no layer float for it
    agreement_waived: bool = False
    # the bundle's accuracy_drop budget: --keep-float auto keeps no layer float where the model with every layer
    # INT8 meets it already (it kept two of four, and lost INT8's speed, for an error it judged large)
    accuracy_budget: float | None = None


@dataclasses.dataclass
class Conversion:
    model_path: pathlib.Path       # the primary artifact
    extra_artifacts: list          # further files the runtime needs next to it
    runtime: dict                  # agent adapter name, threads, options
    compression: dict              # what was applied, with its parameters
    tools: dict                    # versions of the tools that produced it
    notes: list
    seconds: float = 0.0
    # Inputs whose layout the artifact changed: {name: {"layout", "source_layout", "perm"}};
    # sample data in the source layout is transposed by `perm` for the artifact.
    layouts: dict = dataclasses.field(default_factory=dict)
    # The float model of the artifact's own runtime that a quantized or fp16 artifact was made from, where the
    # backend keeps one: parity judges it first at fp32's limit, since quantization noise hides a conversion
    # defect (a UNet's misaligned nearest resize passed as INT8 at 12 dB; its fp32 bundle was refused).
    float_model: pathlib.Path | None = None


class Backend:
    name = ""
    runtime = ""                   # the device_agent adapter that runs this backend's artifacts
    precisions = ("fp32",)
    quantizations = ("none",)
    source_formats = ONNX_FORMATS  # what models.detect_format may return for this backend's input
    Options: type = NoOptions      # a frozen dataclass of this backend's own knobs, option() fields
    # Options that act only with --quantize int8: a search samples them, and passes them on, only then.
    int8_options: tuple = ()
    takes_torch = False            # PyTorch sources arrive as a module (source.torch_module), not exported to ONNX
    # --precision picks the float type of an unquantized model only: with --quantize LiteRT refuses it and ONNX
    # Runtime ignores it (and says so). A search then samples precision with quantize none only: INT8 at fp16 was
    # the INT8 fp32 bundle again, packaged for nothing (a third of the measured landscape's 150 configurations).
    precision_unquantized_only = False
    # INT8 refuses a calibration set smaller than this unless the option named here is set to use all of it
    min_calibration_samples = 0
    calibration_size_option = ""

    def convert(self, source, request: PackageRequest, workdir: pathlib.Path, progress=SILENT) -> Conversion:
        self._validate(request)
        if request.quantize == "int8" and request.calibration is None and self.calibrates(source, request):
            raise calibration_needed()
        start = time.perf_counter()
        result = self._convert(source, request, workdir, progress)
        result.seconds = time.perf_counter() - start
        result.notes = list(result.notes) + small_calibration_notes(result.compression)
        return result

    def options(self, given: dict | None = None):
        """This backend's Options from {name: value} (typed values, or text as a flag gives them); an option
        it does not have is refused as the flag the user typed."""
        given = dict(given or {})
        known = {f.name for f in fields(self.Options)}
        for key in given:
            if key not in known:
                named, close = _option_named(key, known)
                raise BadInput(f"backend {self.name} has no {named}; its options: {', '.join(sorted(known)) or 'none'}"
                               + (f" (did you mean {close}?)" if close else ""), option=key)
        return build_options(self.Options, given, f"backend {self.name}")

    def check_profile(self, options, profile) -> None:
        """Refuse, before any work, options the profile's device or software cannot take (a DLA core it lacks)."""

    def check_source(self, fmt: str, reference: str, precision: str, quantize: str) -> None:
        """Refuse, before the model or any data is read, a compression this backend cannot apply to a source of
        this format (a .tflite packaged as it is), or at all (--quantize int4-weights on onnxruntime): said
        first, not after the calibration or eval data was judged against the model."""
        if precision not in self.precisions:
            raise BadInput(f"backend {self.name} supports --precision {', '.join(self.precisions)}, not {precision}",
                           option="precision")
        if quantize not in self.quantizations:
            raise BadInput(f"backend {self.name} supports --quantize {', '.join(self.quantizations)}, not {quantize}",
                           option="quantize")

    def _validate(self, request: PackageRequest) -> None:
        if not isinstance(request.options, self.Options):
            raise TypeError(f"backend {self.name} takes {self.Options.__name__}, not {type(request.options).__name__}")
        self.check_source("", "", request.precision, request.quantize)

    def calibrates(self, source, request: PackageRequest) -> bool:
        """Whether --quantize int8 of this source reads calibration data (a backend that quantizes some models
        dynamically, with ranges computed at run time, reads none for them)."""
        return True

    def _convert(self, source, request, workdir, progress) -> Conversion:
        raise NotImplementedError

    def host_runner(self, model_path: pathlib.Path, options: dict | None = None):
        """A callable {input: array} -> [outputs] running the artifact on this host, for parity,
        with the runtime options the device will get (the manifest's runtime.options)."""
        raise NotImplementedError

    def float_output_hint(self, request: PackageRequest, node: str, op_type: str) -> str:
        """For an INT8 output that lost channels to one scale, made by ONNX node `node` (`op_type`): the option
        that keeps it float on this backend, or "" where none does."""
        return ""

    def describe_io(self, model_path: pathlib.Path, options: dict | None = None):
        """(inputs, outputs) TensorSpecs of the artifact, for the manifest, named as the bundle
        names them (options: the manifest's runtime.options)."""
        import onnx

        from ..models import describe_tensors
        return describe_tensors(onnx.load(str(model_path), load_external_data=False))


# Static INT8 calibrated on fewer samples than this gets a warning (OpenVINO's NNCF refuses them outright): its
# activation ranges come from the min and max seen, which a few samples set too narrow or by chance.
RECOMMENDED_CALIBRATION = 100


def _option_named(key: str, known: set) -> tuple:
    """An option this backend lacks, as the user gave it: another backend's option is a package flag (--preset)
    or a --backend-option of that backend, so it is named as the flag; anything else is a mistyped
    --backend-option key, named as typed, with the closest key this backend has ("" if none is close)."""
    import difflib

    from . import BACKENDS, _backend_class

    owners = sorted(name for name, target in BACKENDS.items()
                    if target and key in {f.name for f in fields(_backend_class(target).Options)})
    if owners:   # `--int8-io` on onnxruntime: say whose it is, not only what this one has
        return f"--{key.replace('_', '-')} option ({' and '.join(owners)}'s)", ""
    close = difflib.get_close_matches(key, sorted(known), n=1)
    return f"option {key!r}", (close[0] if close else "")


def small_calibration_notes(compression: dict) -> list:
    calibration = compression.get("calibration") if isinstance(compression.get("calibration"), dict) else {}
    used = calibration.get("samples")
    if isinstance(used, int) and 0 < used < RECOMMENDED_CALIBRATION:
        return [f"warning: INT8 calibrated on {used} samples ({RECOMMENDED_CALIBRATION} or more recommended): "
                "activation ranges from a few samples clip the inputs they never saw, and parity then judges "
                "on those same few"]
    return []


def calibration_needed() -> BadInput:
    """The error of static INT8 without --calib: said before conversion where a backend can tell, after it where
    only the converted model says (LiteRT's choice for a PyTorch source)."""
    return BadInput("--quantize int8 needs calibration data: --calib samples.npz "
                    f"(an array per model input, shape [N, ...], N >= {RECOMMENDED_CALIBRATION} recommended)")


def as_artifact(model_file, out: pathlib.Path, workdir: pathlib.Path) -> None:
    """`out` holding the bytes of `model_file`, the model packaged as it is: a hard link where the file is this
    package's own work (one copy fewer of a large model in the temporary folder: three of a 97 MB ResNet-50
    were there at once), a copy where it is the user's file (nothing may ever write to it through a link) or the
    file system refuses links."""
    import os
    import shutil

    model_file = pathlib.Path(model_file)
    if model_file.resolve().is_relative_to(pathlib.Path(workdir).resolve()):
        try:
            os.link(model_file, out)
            return
        except OSError:
            pass
    shutil.copyfile(model_file, out)
