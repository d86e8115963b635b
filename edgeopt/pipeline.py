"""`package`: model -> verified bundle, as one explicit pipeline:

    intake -> transforms (on the PyTorch module: edgeopt/transform.py) -> export -> simplify
           -> backend conversion (+ quantization) -> parity -> bundle

Each stage lives in its own module; this one strings them together and writes the manifest.
"""
from __future__ import annotations

import dataclasses
import datetime
import os
import pathlib
import time

import numpy as np

from . import __version__, bundle as bundles, recipe, scratch, transform
from .atomic import Taken, check_writable
from .budgets import merged, validate_budgets
from .compress.base import get as transform_named
from .convert import backend_for, backends_reading
from .convert.base import PackageRequest
from .data import LABELS, load_samples, random_samples, run as run_samples, sample_count, to_layouts
from .errors import BadInput, ParityMismatch
from .models import callable_reference, detect_format, load_model, onnx_source
from .parity import (blank_source_note, compare as parity_compare, data_files, describe_failure, only_top1_failed,
                     source_on)
from .profiles import list_profiles, load_profile, shadows_builtin
from .progress import SILENT

PARITY_RANDOM_SAMPLES = 64
MIN_EVAL_SAMPLES = 100   # labelled eval samples below which top-1 moves a percent per sample
# A runtime's name for the precision it computed in -> the --precision whose tolerance applies.
EFFECTIVE_PRECISIONS = {"f32": "fp32", "f16": "fp16", "bf16": "bf16"}


def _check_bundle_suffix(output) -> None:
    """A bundle's file name ends in .edgepkg: inspect and --recipe know a bundle by it, and `-o out/b` wrote one
    that `inspect` called an unknown model format and --recipe a TOML file it could not decode."""
    path = pathlib.Path(output)
    if path.suffix != bundles.SUFFIX:
        raise BadInput(f"-o {output}: a bundle's file name ends in {bundles.SUFFIX} (inspect, bench and --recipe "
                       f"know it by that): give {output}{bundles.SUFFIX}")


def _check_name(name: str | None) -> None:
    """--name as the manifest will hold it, judged before any work: a path was refused only after packaging, by
    the manifest's own check (which named no flag); a blank name was taken, and the empty one left to the
    default without a word."""
    if name is None:
        return
    if not name.strip():
        raise BadInput(f"--name {name!r}: give a name with something in it, or leave --name out for the default")
    if name in (".", "..") or "/" in name or "\\" in name:
        raise BadInput(f"--name {name!r}: a bundle name is not a path (no '/' or '\\')")
    if any(ord(c) < 32 for c in name) or len(name) > 200:   # the manifest's rule, said after packaging, no flag named
        raise BadInput(f"--name {name!r}: a bundle name is at most 200 characters, no control characters")


def _check_derived_name(name: str, where: str) -> None:
    """A name taken from -o or the model (no --name) is held to the manifest's rule as --name is: a 240-character
    file name was refused only after the conversion, by the manifest's check, naming no flag (a walkthrough)."""
    if any(ord(c) < 32 for c in name) or len(name) > 200:
        raise BadInput(f"the bundle's name, taken from {where}, is {len(name)} characters: at most 200, no control "
                       "characters; give --name")


def model_reference(value, name: str) -> str:
    """A model reference (a file, module:callable) as text, from a str or a path: the manifest and a study record
    it, and JSON has no Path; else one BadInput naming the argument (an int reached os.fspath deep inside)."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value:
        raise BadInput(f"{name}: expected a file path or module:callable, got {value!r}")
    return value


def package(model: str, profile: str = "generic", output=None, precision: str | None = None,
            quantize: str = "none", calib=None, eval_data=None, input_shapes: dict | None = None,
            budgets: dict | None = None, allow_mismatch: bool = False, name: str | None = None,
            progress=SILENT, preset: str | None = None, subset_size: int | None = None,
            max_accuracy_drop: float | None = None, performance_hint: str = "latency", int8_io: str = "",
            sign_key=None, simplify: bool = True, force: bool = False, steps=(), train_data=None,
            teacher: str | None = None, seed: int = 0, keep_float: str = "",
            backend_options: dict | None = None, host_timing: bool = True, transform_cache=None,
            backend: str | None = None, profile_budgets: bool = True, top1_judged_by: str | None = None,
            threads: int | None = None) -> dict:
    """Model -> verified .edgepkg. Returns the manifest with `path` (where it was written) added.
    sign_key: an SSH key that signs the manifest (the agent's --allowed-signers then accepts it).

    simplify=False skips graph simplification (edgeopt/simplify.py) of an ONNX or PyTorch source.
    force=True overwrites an existing output that is a bundle for another profile, or not a bundle at all.

    steps: model transforms (edgeopt/recipe.py Steps: recipe.from_flags or recipe.load) applied in order to
    a PyTorch source before export; train_data (.npz) feeds the training ones, teacher (a model reference)
    replaces the source as distillation's teacher, seed makes them repeatable.

    backend_options: {option: value} of the profile's backend's own Options (edgeopt/convert/: openvino's
    preset, subset_size, performance_hint; tflite's int8_io; keep_float and max_accuracy_drop where declared),
    validated before any work and handed to the backend unopened; a backend refuses an option it lacks.
    The keywords preset, subset_size, max_accuracy_drop, performance_hint, int8_io and keep_float are the
    same options, kept for callers of older versions; each counts only when set (not its default).

    host_timing=False skips the host-side latency hints (each transform stage's, INT8 vs FP32): a caller
    that measures the bundle on its device anyway (optimize) saves their seconds.

    transform_cache: a transform.TransformCache that keeps transformed modules between calls (optimize's
    trials): steps already run on the same source, seed and data are not run again. The returned manifest then
    says "transforms_reused": True (outside the bundle: its manifest is the same either way).

    backend: another of the backends the profile's hardware runs (profile.backends; default: its own).

    top1_judged_by: what judges a classifier's top-1 instead of parity's top-1 agreement (optimize's accuracy
    budget, measured on the device): an artifact whose only parity failure is that agreement is packaged, its
    parity report saying by what ("allowed_by"). Other parity failures (SQNR, elementwise) still refuse it.

    threads: the thread count the bundle's runtime runs by default [default: the profile's]; `bench --threads`
    still overrides it for one run.

    profile_budgets=False: `budgets` are all the bundle carries, not added to the profile's (optimize passes its
    study's, which leave out what the study cannot measure: an accuracy budget without labelled eval data)."""
    model = model_reference(model, "model")
    teacher = model_reference(teacher, "teacher") if teacher else None
    prof = load_profile(profile)
    asked = backend
    backend = backend_for(prof, asked)          # fail on an unavailable backend before any work
    given = _backend_values(backend_options, preset=preset, subset_size=subset_size,
                            max_accuracy_drop=max_accuracy_drop, performance_hint=performance_hint,
                            int8_io=int8_io, keep_float=keep_float)
    options = backend.options(given)
    backend.check_profile(options, prof)
    validate_budgets(budgets or {}, field="package budgets", dropping=True)
    merged_budgets = validate_budgets(merged(prof.budgets if profile_budgets else {}, budgets),
                                      field="package budgets")
    precision = precision or prof.default_precision
    _check_name(name)
    recipe.check_seed(seed)
    if output is not None:
        name = name or pathlib.Path(output).name.removesuffix(bundles.SUFFIX)
    # QAT trains INT8 into the model with quantize none: its bundle is an INT8 one, not "-fp32"
    name = name or _default_name(model, precision, "int8" if any(s.name == "qat" for s in steps) else quantize)
    _check_derived_name(name, "-o's file name" if output is not None else f"the model's, {model}")
    output = pathlib.Path(output or f"{name}{bundles.SUFFIX}")
    _check_not_an_input(output, model, calib=calib, eval_data=eval_data, train_data=train_data, teacher=teacher,
                        sign_key=sign_key)
    _check_bundle_suffix(output)
    _check_format(model, backend, prof)
    backend.check_source(detect_format(model), model, precision, quantize)   # before the data it would not use
    _check_transform_inputs(model, list(steps), train_data, teacher, quantize, backend)
    if not force:   # after the inputs are judged: "exists" hid what was wrong with the command itself
        _check_overwrite(output, prof.name)
    fresh = not force and not output.exists()   # and still not there at the end (another package meanwhile)
    check_writable(output, "the bundle", file_only=True)   # now, not after the conversion
    if sign_key:
        bundles.check_sign_key(sign_key)
    backend_record = dict(UNSET, **{k: getattr(options, k) for k in given})   # typed, as the backend got them
    other_backend = {"backend": asked} if asked and asked != prof.backend else {}   # recorded when not the default
    _check_threads(threads)
    chosen_threads = {"threads": threads} if threads else {}   # recorded when given: older content keys stay
    recipe_doc = recipe.to_dict({"precision": precision, "quantize": quantize, **other_backend, **backend_record,
                                 "simplify": simplify, "seed": seed, **chosen_threads}, list(steps))
    named = {"the calibration data": calib, "the eval data": eval_data}
    with scratch.folder("package") as tmp, data_files(named):
        work = pathlib.Path(tmp)
        progress.status(f"loading {model}")
        shapes = dict(input_shapes or {})
        started = time.perf_counter()
        if steps:
            source, calibration, evaluation, stages, reused = _transformed_source(
                model, shapes, work, simplify, backend, list(steps), calib, eval_data, train_data, teacher,
                seed, progress, host_timing, transform_cache)
        else:
            source = load_model(model, shapes, work, simplify, backend.takes_torch, progress)
            calibration, evaluation = _samples(calib, eval_data, source)
            stages, reused = [], False
        intake_seconds = time.perf_counter() - started
        # the profile's INT8 scheme is its own backend's; another backend takes its own default ("")
        scheme = prof.int8_scheme if backend.name == prof.backend else ""
        request = PackageRequest(precision, quantize, calibration, scheme, evaluation, options, host_timing, prof,
                                 agreement_waived=bool(allow_mismatch or top1_judged_by),
                                 accuracy_budget=merged_budgets.get("accuracy_drop"))
        conversion = backend.convert(source, request, work, progress)
        if any(s.name == "qat" for s in steps):
            conversion.compression.update(quantize="int8", method="qat", note="INT8 trained into the model by the "
                                          "qat transform (QDQ graph); the backend converted it as it is")
            if host_timing:
                conversion.notes += _qat_host_hint(stages, source, conversion, calibration, progress)
        progress.status("checking parity with the source model")
        parity, source_accuracy, eval_file = _verify(source, conversion, backend, prof, request,
                                                     calibration, evaluation, work,
                                                     "--allow-mismatch" if allow_mismatch else top1_judged_by)
        if stages:
            source_accuracy = _original_accuracy(stages, evaluation, teacher) or source_accuracy
        manifest = _manifest(name, source, prof, conversion, backend, parity, source_accuracy, merged_budgets)
        manifest["runtime"].update(chosen_threads)
        manifest["notes"] += _unmeasurable_budget_notes(merged_budgets, evaluation, source_accuracy,
                                                        source.outputs[0] if source.outputs else None)
        manifest["notes"] += _missed_accuracy_budget_notes(merged_budgets, source_accuracy, parity)
        manifest["notes"] += _coarse_accuracy_notes(merged_budgets, evaluation, source_accuracy)
        manifest["notes"] += chance_accuracy_notes(evaluation, source_accuracy)
        manifest["notes"] += _calibration_unused(calib, request, steps)
        manifest["notes"] += _scales_apart(calibration, evaluation, source.inputs,
                                           request.quantize == "int8" or any(s.name == "qat" for s in steps))
        blank = blank_source_note(parity, parity.get("samples_source"))
        manifest["notes"] += [f"warning: {blank}"] if blank else []
        if shadows_builtin(prof):   # the same name on another machine is the built-in, with its own budgets
            manifest["notes"].append(f"profile {prof.name} is {prof.path} ($EDGEOPT_PROFILES), in place of the "
                                     "built-in one of that name")
        manifest["recipe"] = recipe_doc
        _record_calibration_file(manifest["compression"], calib)
        if stages:
            manifest["transforms"] = [s.to_dict() for s in stages]
            manifest["notes"] += [n for s in stages for n in s.notes]
            _record_training_file(manifest["transforms"], steps, train_data)
            _record_teacher(manifest["transforms"], teacher)
            for stage in manifest["transforms"]:   # QAT calibrates its quantizers from --calib where given
                _record_calibration_file(stage.get("details") or {}, calib, "calibration")
        try:
            manifest = _write(output, manifest, conversion, eval_file, evaluation, sign_key, fresh)
        except Taken:   # written meanwhile: judged as if it had been there at the start
            _check_overwrite(output, prof.name, meanwhile=True)
            manifest = _write(output, manifest, conversion, eval_file, evaluation, sign_key)
    manifest["path"] = str(output)
    manifest["signature"] = bundles.signature(output)   # package said nothing of it: only a tar listing showed it
    manifest["signed"] = manifest["signature"] is not None
    manifest["conversion_seconds"] = conversion.seconds
    # reading the source (a PyTorch module exported to ONNX, transforms trained): "conversion 0.01 s" of a 9 s run
    manifest["intake_seconds"] = intake_seconds
    if reused:
        manifest["transforms_reused"] = True
    return manifest


SCALES_APART = 10.0   # calibration and eval data of one input whose spreads differ this much were scaled apart
SCALE_ROWS = 64       # samples of each file the spread is read from


def _scales_apart(calibration, evaluation, inputs, calibrates: bool) -> list:
    """A `warning:` note for each float input whose --calib values spread 10x wider or narrower than its
    --eval-data's, where the bundle calibrates on them (static INT8, QAT): raw 0-255 images calibrated INT8 beside
    normalised eval data, packaged without a word while SQNR halved (a walkthrough); an application feeds one of
    the two, and the other misleads."""
    if calibration is None or evaluation is None or not calibrates:
        return []
    notes = []
    for spec in inputs:
        if np.dtype(spec.dtype).kind != "f" or spec.name not in calibration or spec.name not in evaluation:
            continue
        calib, judged = (np.asarray(d[spec.name][:SCALE_ROWS], np.float32) for d in (calibration, evaluation))
        spreads = float(np.std(calib)), float(np.std(judged))
        if min(spreads) > 0 and max(spreads) / min(spreads) >= SCALES_APART:
            notes.append(f"warning: input {spec.name!r} spans {calib.min():.3g}..{calib.max():.3g} in --calib and "
                         f"{judged.min():.3g}..{judged.max():.3g} in --eval-data ({max(spreads) / min(spreads):.0f}x "
                         "apart in spread): INT8 calibrated on one scale is judged on the other; give both in the "
                         "scale the application feeds (raw 0-255 images beside normalised ones?)")
    return notes


def _calibration_unused(calib, request, steps) -> list:
    """A float bundle calibrates nothing, and with eval data parity judges on that: --calib then went unread, as
    dynamic INT8 says it does (ort_quantize), where `--precision fp16 --calib` said nothing (a walkthrough). QAT
    and --keep-float auto read it. Without eval data parity runs on it, which was said nowhere either."""
    if not calib or request.quantize != "none" or any(s.name == "qat" for s in steps) \
            or getattr(request.options, "keep_float", ""):
        return []
    if request.evaluation is None:
        return [f"--calib is read only as parity's inputs: a float bundle ({request.precision}) calibrates nothing"]
    return [f"--calib is not used: a float bundle ({request.precision}) calibrates nothing, and parity judged on the "
            "eval data"]


def _record_calibration_file(compression: dict, calib, read_from: str | None = None) -> None:
    """The calibration file's path and sha256 beside what the backend (or a transform's stage: QAT's quantizers)
    recorded of it, so `package --recipe BUNDLE` can take the same file again (recipe.bundle_calibration) and tell
    a changed one. read_from: record only where the stage says it read that ("calibration", not "train"): a QAT
    rebuild calibrated from the training data, another model, unsaid (a walkthrough)."""
    from .models import sha256_of

    recorded = compression.get("calibration")
    if calib and isinstance(recorded, dict) and (read_from is None or recorded.get("from") == read_from):
        path = pathlib.Path(calib)
        recorded.update(file=str(path.resolve()), sha256=sha256_of(path))


# the runtimes a QAT bundle is timed with on the packaging host, as their post-training INT8 is
HOST_TIMED_RUNTIMES = ("onnxruntime", "openvino")

def _qat_host_hint(stages: list, source, conversion, calibration, progress) -> list:
    """The QAT bundle timed against the float model it was trained from (the stage before qat), as a post-training
    INT8 bundle is against its float twin (compression.host_hint): a QAT bundle 1.16x slower than float on the
    host had no hint and no warning. Absent where that stage did not export."""
    from .convert import host_hint

    names = [s.name for s in stages]
    at = names.index("qat") if "qat" in names else 0
    before = stages[at - 1] if at > 0 else None   # the model QAT was trained from
    # only where this host runs the bundle's runtime as packaging does anyway: TensorRT's engine is the device's
    # (packaging for a Jetson never needed TensorRT here)
    if before is None or before.onnx_path is None or conversion.runtime["name"] not in HOST_TIMED_RUNTIMES:
        return []
    hint = host_hint.measure(before.onnx_path, conversion.model_path, host_hint.feed_of(source, calibration),
                             conversion.runtime["name"], conversion.runtime.get("options") or {}, progress, "QAT INT8")
    conversion.compression["host_hint"] = hint
    return host_hint.warnings(hint, "QAT INT8")


def _record_teacher(stages: list, teacher) -> None:
    """--teacher as given, and its file's path and sha256, in the teacher stage's details, so `package --recipe
    BUNDLE` distills from the same teacher (recipe.bundle_teacher): a rebuild without it distilled from the source,
    another model, unsaid. An importable `module:callable` has no file to check: it is named."""
    from .models import sha256_of

    if not teacher or not stages or stages[0].get("stage") != "teacher":
        return
    reference = str(teacher)
    path = _file_of(reference)
    record = {"reference": reference}
    if path.is_file():
        record.update(file=str(path.resolve()), sha256=sha256_of(path))
    stages[0]["details"] = dict(stages[0].get("details") or {}, model=record)


def _record_training_file(stages: list, steps: list, train_data) -> None:
    """The training data file's path and sha256 in the details of each stage that read it, so `package --recipe
    BUNDLE` can take the same file again (recipe.bundle_train_data). A DataLoader callable has no content to
    check: it is named, not taken again."""
    from .models import sha256_of

    if not train_data:
        return
    path = pathlib.Path(str(train_data))
    record = ({"file": str(path.resolve()), "sha256": sha256_of(path)} if path.is_file()
              else {"reference": str(train_data)})
    readers = transform.training_readers(steps)
    for stage in stages:
        if stage["stage"] in readers:
            stage["details"] = dict(stage.get("details") or {}, train_data=record)


# package()'s compatibility keywords for backend options, each with the value that means "not set" (the
# recipe records these keys, as it always has: recipe.package_keys()).
UNSET = {"preset": "", "subset_size": None, "max_accuracy_drop": None, "performance_hint": "latency",
         "int8_io": "", "keep_float": ""}


def _backend_values(backend_options: dict | None, **keywords) -> dict:
    """{option: value} the caller set, from backend_options and the compatibility keywords; None or "" (a
    CLI flag not given, a recipe's empty value) and a keyword's own default mean not set. One option given
    twice must agree."""
    given = {k: v for k, v in keywords.items() if v is not None and v != "" and v != UNSET[k]}
    for key, value in (backend_options or {}).items():
        if value is None or value == "":
            continue
        if key in given and given[key] != value:
            flag = f"--{key.replace('_', '-')}"   # the CLI's name of the keyword; a recipe's [package] key
            raise BadInput(f"{flag} {given[key]} and --backend-option {key}={value} disagree: give one")
        given[key] = value
    return given


def _samples(calib, eval_data, source) -> tuple:
    calibration = load_samples(calib, source.inputs, "calibration") if calib else None
    evaluation = load_samples(eval_data, source.inputs, "eval data") if eval_data else None
    if evaluation is not None and LABELS in evaluation:
        _refuse_labels_without_classes(evaluation[LABELS], source.outputs[0], f"eval data file {eval_data}")
    # Calibration labels count too: without eval data, parity's top-1 (and --keep-float auto's) reads them.
    for samples, where in ((calibration, f"calibration file {calib}"), (evaluation, f"eval data file {eval_data}")):
        if samples is not None and LABELS in samples:
            _check_label_range(samples[LABELS], source.outputs[0], where)
    return calibration, evaluation


def _wide_dims(output) -> int:
    """How many of an output's dims after the batch are above 1: one for a classifier ([batch, classes], also
    exported as [batch, classes, 1, 1]), more for a detector's or a segmentation map's."""
    return sum(isinstance(d, int) and d > 1 for d in output.shape[1:])


def _no_classifier(output) -> bool:
    """Whether an output's known dims rule out [batch, classes]: a detector's, a segmentation map's, and a
    regression's [batch, 1] or [batch] (told to add labels, then refused for them: a walkthrough)."""
    known = all(isinstance(d, int) and d > 0 for d in output.shape[1:])
    return known and _wide_dims(output) != 1


def _classes(labels, output) -> int | None:
    """The class count top-1 ranks over: the first output's values per sample, where its dims are known."""
    dims = output.shape[1:]
    if not labels.size or not all(isinstance(d, int) and d > 0 for d in dims):
        return None
    return int(np.prod(dims))


def _refuse_labels_without_classes(labels, output, where: str) -> None:
    """Eval labels on a detector's [1, 84, 8400] or a segmentation map: there are no classes to rank, and an
    accuracy budget would pass on a top-1 that means nothing."""
    if _classes(labels, output) is not None and _wide_dims(output) != 1:
        raise BadInput(f"{where}: array {LABELS!r} is for a classifier, but the first output "
                       f"{output.name!r} is {list(output.shape)}, not [batch, classes]: its top-1 means nothing, and "
                       "an accuracy budget would pass on it; leave the labels out (the budget then reads NOT MEASURED)")


def _check_label_range(labels, output, where: str) -> None:
    """Top-1 takes the argmax over the first output's values per sample: a label past them can never be right,
    and would read as an accuracy of 0 instead of as the wrong file (another dataset's, or 1-based labels).
    An output that is no classifier's has no class count to check against."""
    classes = _classes(labels, output)
    if classes is None or _wide_dims(output) != 1:
        return
    if int(labels.max()) >= classes:
        raise BadInput(f"{where}: array {LABELS!r} goes up to {int(labels.max())}, but the first output "
                       f"{output.name!r} has {classes} classes (labels are 0..{classes - 1})")


def _write(output, manifest, conversion, eval_file, evaluation, sign_key, new: bool = False) -> dict:
    files = [(conversion.model_path, f"model/{conversion.model_path.name}", "model")]
    files += [(p, f"model/{p.name}", "model") for p in conversion.extra_artifacts]
    if eval_file:
        files.append((eval_file, "data/eval.npz", "eval-data"))
        manifest["data"] = {"eval": {"path": "data/eval.npz", "samples": sample_count(evaluation),
                                     "labels": LABELS in evaluation}}
    return bundles.write(output, manifest, files, sign_key, new)


def _check_qdq_graph(name: str, quantize: str, backend) -> None:
    """A transform that makes a QDQ graph (QAT) trains INT8 into the model: the backend runs the export as it is
    (ONNX Runtime forms QLinear kernels, OpenVINO reads FakeQuantize). A second quantization on top, or a backend
    that converts the torch module itself (its fake-quantize ops would stay float), would not give that INT8."""
    if quantize != "none":
        raise BadInput(f"--{name} trains INT8 into the model (a QDQ graph): leave --quantize at none, not {quantize}")
    if backend.takes_torch:
        raise BadInput(f"--{name} makes a QDQ ONNX graph; backend {backend.name} converts the PyTorch module itself "
                       "and would run it in float: use --quantize int8 on this profile")


def _check_transform_inputs(model: str, steps: list, train_data, teacher, quantize: str, backend) -> None:
    """Refuse, before any work: transforms on a source that is not PyTorch, and training inputs that no
    transform would read (a forgotten --distill is likelier than a wish to ignore the data)."""
    transform.refuse_non_torch(detect_format(model), steps)
    for name in {s.name for s in steps if transform_named(s.name).makes_qdq_graph}:
        _check_qdq_graph(name, quantize, backend)
    if train_data and not steps:
        raise BadInput("--train-data is read by model transforms (--distill, --qat, ...); none was asked for")
    if train_data and not transform.reads_training_data(steps):   # taken without a word, as if it had trained
        raise BadInput(f"--train-data is read by --distill, --qat and --prune criterion=taylor; "
                       f"{', '.join(s.name for s in steps)} read{'s' if len(steps) == 1 else ''} none of it "
                       "(add --distill to fine-tune after them, or leave --train-data out)")
    if teacher and not any(s.name == "distill" for s in steps):
        raise BadInput("--teacher is distillation's teacher; add --distill")
    if teacher:
        try:
            detect_format(teacher)   # a missing teacher found before any training, and named as the teacher
        except BadInput as e:
            raise BadInput(f"--teacher: {e}") from None


def _transformed_source(model, shapes, work, simplify, backend, steps, calib, eval_data, train_data, teacher,
                        seed, progress, host_timing=True, cache=None) -> tuple:
    """(SourceModel of the transformed module, calibration, evaluation, [Stage], reused from the cache): the
    PyTorch source loaded as a module, changed by each step, then exported (or kept as a module for a backend
    that converts PyTorch itself)."""
    from . import torch_export

    source = torch_export.load(model, detect_format(model), shapes)
    calibration, evaluation = _samples(calib, eval_data, source)
    key = None if cache is None else transform.cache_key(
        source, steps, shapes, seed, {"train": train_data, "calib": calib, "eval": eval_data}, teacher)
    kept = None if cache is None else cache.get(key)
    if kept:
        progress.status("transforms: the same steps as an earlier trial, reused")
        module, stages = kept
    else:
        module, stages = _run_transforms(source, steps, calibration, evaluation, train_data, teacher, seed, work,
                                         progress, host_timing)
        if cache is not None:
            cache.put(key, module, stages)
    if backend.takes_torch:
        return dataclasses.replace(source, torch_module=module), calibration, evaluation, stages, bool(kept)
    final = stages[-1].onnx_path
    if final is None:
        raise BadInput(f"{model}: {stages[-1].figures['absent']}")
    exported = onnx_source(final, model, source.format, source.sha256, {}, work, simplify)
    return exported, calibration, evaluation, stages, bool(kept)


def _run_transforms(source, steps, calibration, evaluation, train_data, teacher, seed, work, progress,
                    host_timing) -> tuple:
    """(module, [Stage]) of the steps applied to the source module."""
    import copy

    from .compress.base import TransformContext

    train = training_samples(train_data, source, work) if train_data else None
    teacher_module = (_teacher(teacher, source) if teacher else copy.deepcopy(source.torch_module)).eval()
    context = TransformContext(source.torch_examples, source.inputs, teacher_module, train, evaluation,
                               calibration, progress, seed, work)
    return transform.run(source, steps, context, work, progress, measure_teacher=bool(teacher),
                         host_timing=host_timing)


def training_samples(train_data: str, source, work: pathlib.Path) -> dict:
    """--train-data: an .npz (as --calib, plus optional labels), or a `module:callable` / `file.py:callable`
    returning a DataLoader (any iterable of batches), read once into memory and checked like an .npz. Messages
    name what the user gave, not the work file a DataLoader is read into."""
    where = f"training data file {train_data}"
    if callable_reference(train_data):
        from .torch_export import loader_to_npz
        where = f"--train-data {train_data}"
        train_data = loader_to_npz(str(train_data), [s.name for s in source.inputs], work / "train.npz")
    train = load_samples(train_data, source.inputs, "training data", where)
    if LABELS in train:   # before any training: the loss would fail on them mid-epoch, naming no file
        _check_label_range(train[LABELS], source.outputs[0], where)
    return train


def _teacher(reference: str, source):
    """The --teacher module: any PyTorch reference whose outputs have the source's shapes on its inputs."""
    from . import torch_export

    fmt = detect_format(reference)
    if fmt not in transform.TORCH_FORMATS:
        raise BadInput(f"--teacher {reference}: needs a PyTorch model (module:callable, or an ExportedProgram .pt2), got {fmt}")
    shapes = {s.name: list(s.shape) for s in source.inputs} if fmt == "pytorch-module" else {}
    try:
        teacher = torch_export.load(reference, fmt, shapes).torch_module
    except BadInput as e:   # "nets.py:mlp: the module failed ... (check --input-shape)" named no teacher
        raise BadInput(f"--teacher {reference}: {str(e).removeprefix(f'{reference}: ')}; the teacher is fed the "
                       "model's inputs, at its --input-shape") from None
    if fmt == "exported-program":   # its own example may have another batch size: compare on the source's
        torch_export.refuse_fixed_batch(teacher, source.torch_examples, f"--teacher {reference}")
    got = torch_export.output_shapes(teacher, source.torch_examples, f"--teacher {reference}")
    want = [o.shape for o in source.outputs]
    if got != want:
        raise BadInput(f"--teacher {reference}: outputs {got} do not match the model's {want}")
    return teacher


def _original_accuracy(stages: list, evaluation, teacher) -> dict | None:
    """The source's top-1 before any transform (or the teacher's, which the user means to replace): the
    figure the device's accuracy drop is measured from, so a transform's loss counts against the budget."""
    reference = stages[0]
    top1 = reference.figures.get("top1")
    if top1 is None:
        return None
    what = f"the teacher {teacher}" if teacher else "the source before transforms"
    return {"top1": top1, "n": sample_count(evaluation), "model": what}


def _check_threads(threads) -> None:
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise BadInput(f"threads {threads!r}: expected a whole number of at least 1", option="threads")


def _file_of(reference) -> pathlib.Path:
    """The file a model reference names: itself, or file.py of file.py:fn."""
    reference = os.fspath(reference)
    return pathlib.Path(reference if os.path.exists(reference) or ":" not in reference else reference.rsplit(":", 1)[0])


def _check_not_an_input(output: pathlib.Path, model: str, **inputs) -> None:
    """Refused whatever --force says: `package m.onnx -o m.onnx --force` replaced the source model with the bundle
    (and `-o eval.npz` the eval data), which the refusal of a non-bundle output named as its way out."""
    if not output.exists():   # a new file replaces nothing
        return

    source = _file_of(model)
    named = {"the model": source,
             "the model's weights": source.with_suffix(".bin") if source.suffix.lower() == ".xml" else None,
             **{f"--{k.replace('_', '-')}": _file_of(v) for k, v in inputs.items() if v is not None}}
    for what, path in named.items():
        if path is not None and os.path.exists(path) and os.path.samefile(path, output):
            raise BadInput(f"-o {output}: is {what}, an input of this package; write the bundle to another file")


def _check_overwrite(output: pathlib.Path, profile: str, meanwhile: bool = False) -> None:
    """Refuse to replace a bundle made for another profile, or a file that is not a bundle (--force does).
    Rebuilding a bundle of the same profile is allowed. meanwhile: the file appeared while this one packaged."""
    if not output.exists():
        return
    if meanwhile:
        try:
            _check_overwrite(output, profile)
        except BadInput as e:
            raise BadInput(f"{e}; another process wrote it while this one packaged") from None
        return
    if not output.is_file():   # a pipe or a device: "pass --force to replace it" offered to replace /dev/null
        raise BadInput(f"-o {output}: is not a regular file (a directory, pipe or device): a bundle is written to a "
                       "file of its own; give -o FILE.edgepkg")
    existing = _existing_profile(output)
    if existing is None:
        raise BadInput(f"{output}: exists and is not a readable edgeopt bundle; refusing to overwrite it "
                       f"(pass --force to replace it, or -o another file)")
    if existing != profile:
        raise BadInput(f"{output}: exists and is a bundle for profile {existing!r}, not {profile!r}; "
                       f"refusing to overwrite it (pass --force to replace it, or -o another file)")


def _existing_profile(path: pathlib.Path):
    """The profile name in an existing bundle's manifest, or None when the file is not a readable bundle."""
    manifest = bundles.existing_manifest(path)
    if manifest is None:
        return None
    name = (manifest.get("profile") or {}).get("name")
    return name if isinstance(name, str) else None


# The budgets a bundle's eval data must serve; power_w and energy_mj depend on the device, not the bundle.
EVAL_BUDGETS = ("accuracy_drop", "min_top1")


def _unmeasurable_budget_notes(budgets: dict, evaluation, source_accuracy, first_output=None) -> list:
    """A `warning:` note for each accuracy budget `edgeopt check` cannot measure on this bundle. The agent
    measures top-1 (and the drop from the source's top-1 recorded here) only from labelled eval data whose
    model gives one row per sample: exactly when the host recorded the source's accuracy."""
    keys = [k for k in EVAL_BUDGETS if k in budgets]
    if not keys or source_accuracy:
        return []
    if first_output is not None and _no_classifier(first_output):   # no labels can help: say so, not "add labels"
        why = (f"its first output {first_output.name!r} is {list(first_output.shape)}, not a classifier's "
               "[batch, classes]")
        fix = "top-1 budgets fit classifiers; judge this model's accuracy with your own eval"
    elif evaluation is None:
        why, fix = "the bundle carries no eval data", "package with --eval-data FILE.npz holding labels"
    elif LABELS not in evaluation:
        why, fix = "the eval data has no labels", f"add a {LABELS!r} array to the --eval-data file"
    else:
        why, fix = "the model's first output is not one row per sample", "no eval data can measure top-1 here"
    shown = ", ".join(f"{k}={budgets[k]:g}" for k in keys)
    drop = " ".join(f"--budget {k}=none" for k in keys)
    return [f"warning: budget {shown} cannot be measured from this bundle ({why}): `edgeopt check` will "
            f"report it NOT MEASURED and fail; {fix}, or package with {drop} to drop it"]


def _coarse_accuracy_notes(budgets: dict, evaluation, source_accuracy) -> list:
    """A `warning:` note where the labelled eval data is too small for the accuracy it measures: one sample moves
    top-1 by 1/N, and an accuracy_drop budget below that means "no sample may change" (a user review packaged
    with one eval sample and was told nothing)."""
    if not source_accuracy or evaluation is None or LABELS not in evaluation:
        return []
    n = sample_count(evaluation)
    drop, samples = budgets.get("accuracy_drop"), f"{n} labelled eval sample{'s' if n != 1 else ''}"
    if isinstance(drop, (int, float)) and 0 < drop < 1 / n:
        return [f"warning: top-1 is measured on {samples}, so one sample moves it by {1 / n:.3g}, "
                f"more than the accuracy_drop budget {drop:g}: any changed prediction fails it; "
                f"{int(10 / drop)} or more samples let the budget mean what it says"]
    if n < MIN_EVAL_SAMPLES:
        return [f"warning: top-1 is measured on {samples}: one sample moves it by {1 / n:.3g}; "
                f"{MIN_EVAL_SAMPLES} or more recommended"]
    return []


def chance_accuracy_notes(evaluation, source_accuracy) -> list:
    """A `warning:` note where the source model's top-1 is no better than always answering the eval data's most
    common label: an accuracy_drop budget then measures the drop from a model that does not work (a pruned and
    low-rank model "met" a 0.01 budget at 0 % against the source's 0 %, in a user review)."""
    if not source_accuracy or evaluation is None or LABELS not in evaluation:
        return []
    labels = np.asarray(evaluation[LABELS]).reshape(-1)
    if labels.size == 0:
        return []
    majority = np.unique(labels, return_counts=True)[1].max() / labels.size
    if majority >= 1.0:   # one label only: a perfect model and a constant answer score alike
        return ["warning: the eval data holds one label only, so top-1 cannot tell a working model from one that "
                "always answers it; an accuracy budget judges little here"]
    if source_accuracy["top1"] > majority:
        return []
    model = source_accuracy.get("model", "the source model")
    return [f"warning: {model} scores top-1 {source_accuracy['top1']:.4g} on the eval data, no better than always "
            f"answering its most common label ({majority:.4g}): the model or the labels are not "
            "what they should be (untrained weights? labels of another task?), and an accuracy budget judges nothing"]


def _missed_accuracy_budget_notes(budgets: dict, source_accuracy, parity: dict) -> list:
    """A `warning:` note for an accuracy budget the artifact already misses on the host's eval run (a transform
    or a quantization that lost too much): packaging succeeds, since the device's figure is the one `check`
    judges, but nobody should learn it only there."""
    if not source_accuracy or "artifact_top1" not in parity:
        return []
    before, after = source_accuracy["top1"], parity["artifact_top1"]
    missed = []
    if "accuracy_drop" in budgets and before - after > budgets["accuracy_drop"]:
        missed.append(f"a drop of {before - after:.4f} is over accuracy_drop={budgets['accuracy_drop']:g}")
    if "min_top1" in budgets and after < budgets["min_top1"]:
        missed.append(f"under min_top1={budgets['min_top1']:g}")
    if not missed:
        return []
    what = source_accuracy.get("model", "the source")
    # parity runs the artifact on the first MAX_SAMPLES eval samples; the source's top-1 is over all of them
    samples = (f"{parity['samples']} samples" if parity["samples"] == source_accuracy.get("n") else
               f"the artifact on the first {parity['samples']} of {source_accuracy.get('n')} samples")
    return [f"warning: top-1 on the eval data is {after:.4f} for the artifact on this host against {before:.4f} for "
            f"{what} ({samples}): {' and '.join(missed)}; `edgeopt check` will fail this bundle "
            "unless the device reads otherwise"]


def _check_format(model: str, backend, prof) -> None:
    """Refuse a model format the profile's backend cannot take, before the model is read."""
    fmt = detect_format(model)
    if fmt in backend.source_formats:
        return
    readers = backends_reading(fmt)
    if prof.backend in readers:   # --backend chose another: "profiles whose backend can: intel-cpu" of intel-cpu
        raise BadInput(f"{model}: backend {backend.name} cannot package {fmt} models; profile {prof.name}'s own "
                       f"backend {prof.backend} can (leave --backend out)")
    fits = [p.name for p in list_profiles() if p.backend in readers]
    raise BadInput(f"{model}: backend {backend.name} cannot package {fmt} models; "
                   f"profiles whose backend can: {', '.join(fits) or 'none'}")


def _default_name(model: str, precision: str, quantize: str) -> str:
    """The model's file stem (`net.py:build` is net: every `file.py:build` was "build", and their results
    replaced each other's) with any other callable after it (`nets.py:lstm` is nets-lstm: two callables of one
    file made one bundle name, the second bundle replaced the first, and the regression gate compared the two
    models), or a module's callable (`torchvision.models:mobilenet_v2`), then what it became."""
    path, sep, attribute = model.rpartition(":")
    if sep and path.endswith(".py"):
        stem = pathlib.Path(path).stem + ("" if attribute == "build" else f"-{attribute}")
    else:
        stem = pathlib.Path(model.split(":")[-1] if sep and not model.endswith(".onnx") else model).stem
    return f"{stem}-{quantize if quantize != 'none' else precision}"


def _verify(source, conversion, backend, prof, request, calibration, evaluation, work, allowed_by):
    """Parity report, the source's eval accuracy, and the eval file to ship (with reference outputs).
    allowed_by: "--allow-mismatch" (any failure packages), another name (only a failed top-1 agreement), or None."""
    if evaluation is not None:
        samples, where = evaluation, "eval data"
    elif calibration is not None:
        samples, where = calibration, "calibration data"
    else:
        samples, where = random_samples(source.inputs, PARITY_RANDOM_SAMPLES), "random inputs (seed 0)"
    source_runner = source.reference_runner()
    artifact_runner = _in_artifact_layout(backend.host_runner(conversion.model_path, conversion.runtime.get("options")),
                                          conversion.layouts)
    # Judge float error by the precision the host's runtime really used (OpenVINO may run "f16" as bf16).
    host_precision = getattr(artifact_runner, "inference_precision", None)
    precision = EFFECTIVE_PRECISIONS.get(host_precision, request.precision)
    quantized = request.quantize != "none" or conversion.compression.get("method") == "qat"
    float_report = _float_model_parity(source_runner, conversion, backend, prof, samples, source, where, allowed_by)
    report, ref = parity_compare(source_runner, artifact_runner, samples, source.inputs, quantized,
                                 precision, prof.parity, where, [o.name for o in source.outputs],
                                 f"the source model ({source.reference})")
    if host_precision:
        report["host_inference_precision"] = host_precision
    if float_report is not None:
        report["float_model"] = float_report
        if not float_report["passed"]:   # packaged by --allow-mismatch: the artifact's own pass hid the converter's
            report.update(passed=False, allowed_by=allowed_by)
    if not report["passed"]:
        if not (allowed_by == "--allow-mismatch" or (allowed_by and only_top1_failed(report))):
            # a source whose outputs judge nothing is said instead of the float layers' hint (an SQNR of 0 dB on
            # outputs of 1e-14 advised --keep-float auto)
            blank = blank_source_note(report, report.get("samples_source"))
            raise ParityMismatch(describe_failure(report) + (f"; {blank}" if blank else _float_layers_said(
                conversion, backend, request, quantized, report, source)))
        report["allowed_by"] = allowed_by
    if evaluation is None:
        return report, None, None
    from device_agent.measure.accuracy import REF_PREFIX, top1

    n = sample_count(evaluation)
    if report["samples"] != n:  # parity looked at a subset: the shipped references cover every sample
        with source_on("the eval data"):
            ref = run_samples(source_runner, evaluation, source.inputs)
    arrays = to_layouts(evaluation, conversion.layouts)   # the device feeds the artifact as it is
    # under the artifact's output names, which the agent reads them by: by name where the source's are the
    # artifact's (LiteRT lists output_0, output_1, output_10, output_2 ...: a review), else by position as parity
    # paired them (a dict-returning module's LiteRT outputs are its keys, its ONNX export's output_0, output_1, and
    # the agent's max abs error was left out unsaid: a walkthrough)
    named = [t.name for t in backend.describe_io(conversion.model_path, conversion.runtime.get("options"))[1]]
    names = [o.name for o in source.outputs]
    names = named if len(named) == len(names) and not set(names) <= set(named) else names
    arrays.update({REF_PREFIX + name: r for name, r in zip(names, ref)})
    eval_file = work / "eval.npz"
    np.savez(eval_file, **arrays)
    accuracy = ({"top1": top1(ref[0], evaluation[LABELS]), "n": n}
                if LABELS in evaluation and len(ref[0]) == n else None)
    return report, accuracy, eval_file


def _float_model_parity(source_runner, conversion, backend, prof, samples, source, where, allowed_by) -> dict | None:
    """The float model a quantized (or fp16) artifact was made from, judged against the source at fp32's limit
    first (Conversion.float_model): {"passed", "max_abs_error"} for the manifest's parity, None where the backend
    keeps none. Refused unless --allow-mismatch: a conversion defect is not quantization noise, and an INT8 SQNR
    limit let one pass (a UNet on LiteRT: 12 dB INT8 "pass", its fp32 bundle refused at max_abs_error 0.34)."""
    if conversion.float_model is None:
        return None
    runner = _in_artifact_layout(backend.host_runner(conversion.float_model, conversion.runtime.get("options")),
                                 conversion.layouts)
    report, _ = parity_compare(source_runner, runner, samples, source.inputs, False, "fp32", prof.parity, where,
                               [o.name for o in source.outputs], f"the source model ({source.reference})")
    found = {"passed": report["passed"], "max_abs_error": report.get("max_abs_error"),
             "tolerance": report.get("tolerance"), "samples": report.get("samples")}
    if not report["passed"] and allowed_by != "--allow-mismatch":
        raise ParityMismatch("the float model the artifact was made from already disagrees with the source, "
                             "so the converter, not quantization, lost it: " + describe_failure(report)
                             .removeprefix("packaged artifact disagrees with its source model: "))
    return found


def _float_layers_said(conversion, backend, request, quantized: bool, report: dict, source) -> str:
    """For a quantized model's refusal: what --keep-float did (auto keeping no layer reads otherwise as not tried),
    or how to keep float what lost: for an output that lost channels, the backend's way to keep it float (auto
    judges the whole output's error, which its large channels hide), else --keep-float auto."""
    if not quantized:
        return ""
    said = [n for n in conversion.notes + list(conversion.compression.get("notes") or [])
            if n.startswith("--keep-float")]
    if said:
        return f"; {said[0]}"
    if request.quantize != "int8":
        return ""
    lost = next((o for o in report.get("outputs", []) if o.get("lost_channels")), None)
    if lost:
        # an unnamed or unknown producer still gets the backend's way that needs no node (LiteRT's --int8-io float)
        hint = backend.float_output_hint(request, *(_producer(source.onnx_path, lost.get("name")) or ("", "")))
        return f"; or keep it float: {hint}" if hint else ""
    if hasattr(request.options, "keep_float") and not request.options.keep_float:
        return "; --keep-float auto keeps the layers that lose most in float"
    return ""


def _producer(onnx_path, output: str | None) -> tuple | None:
    """(name, op type) of the ONNX node that makes `output`."""
    import onnx
    if onnx_path is None or not output:
        return None
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return next(((n.name, n.op_type) for n in graph.node if output in n.output and n.name), None)


def _in_artifact_layout(runner, layouts: dict):
    """An artifact runner that takes feeds in the source model's layout, as parity gives them."""
    return (lambda feed: runner(to_layouts(feed, layouts))) if layouts else runner


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"   # "a openvino-ir source"


def _manifest(name, source, prof, conversion, backend, parity, source_accuracy, budgets) -> dict:
    inputs, outputs = backend.describe_io(conversion.model_path, conversion.runtime.get("options"))
    for spec in inputs:
        layout = conversion.layouts.get(spec.name)
        if layout:
            spec.layout, spec.source_layout = layout["layout"], layout["source_layout"]
    # a type the conversion changed (LiteRT's int32 for the source's int64 ids or argmax) is said beside the tensor,
    # as a layout is: code calling the artifact itself needs it; an int8-I/O tensor's own dtype says it already
    for made, given in ((inputs, source.inputs), (outputs, source.outputs)):
        for spec, own in zip(made, given):
            if own.dtype != spec.dtype and not spec.quantization:
                spec.source_dtype = own.dtype
    source_doc = {"format": source.format, "reference": source.reference, "sha256": source.sha256}
    # the shapes it was packaged at: `package --recipe BUNDLE` rebuilds at them (a .tflite and an ExportedProgram
    # keep their own, and refuse --input-shape)
    if source.format not in ("tflite", "exported-program"):
        source_doc["input_shapes"] = {spec.name: list(spec.shape) for spec in source.inputs}
    if source_accuracy:
        source_doc["accuracy"] = source_accuracy
    return {
        "name": name, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "source": source_doc,
        "profile": {"name": prof.name, "backend": backend.name, "precision": conversion.compression["precision"]},
        "runtime": dict(conversion.runtime, threads=prof.runtime.threads, power_sensor=prof.runtime.power_sensor),
        "compression": conversion.compression, "model": f"model/{conversion.model_path.name}",
        "inputs": [t.to_dict() for t in inputs], "outputs": [t.to_dict() for t in outputs],
        "simplification": source.simplification or {"applied": False, "reason": f"{_article(source.format)} {source.format} source is converted as given"},
        "parity": parity, "budgets": budgets, "notes": source.notes + conversion.notes,
        "tools": dict(conversion.tools, edgeopt=__version__, conversion_seconds=round(conversion.seconds, 3)),
    }
