"""`edgeopt optimize`: an Optuna study over the search space (space.py), every trial packaged through the
pipeline and measured on the user's devices (trial.py), the budgets as hard constraints.

The study lives in Optuna's RDB storage on the results store's database (SQLite by default, PostgreSQL for a
team), so several `edgeopt optimize --study NAME` processes on several hosts, each driving its own devices,
work on one study; `--resume` continues one after a crash or Ctrl-C. A trial's outcome is kept in its
user attributes (configuration, content key, figures, budget excess, result files), so that an identical
candidate is answered from the study instead of being rebuilt and re-measured.
"""
from __future__ import annotations

import dataclasses
import pathlib
import time
import warnings

from .. import scratch
from ..atomic import check_writable
from ..budgets import KINDS
from ..errors import BadInput, DeviceFailure
from ..progress import SILENT
from ..transform import TORCH_FORMATS, TransformCache
from . import judging, outcome, rdb, space as spaces
from .judging import DEFAULT_OBJECTIVE
from .runner import Runner

@dataclasses.dataclass
class Job:
    model: str
    profile: str
    devices: list
    budgets: dict
    objective: str = DEFAULT_OBJECTIVE
    calib: str | None = None
    eval_data: str | None = None
    train_data: str | None = None
    input_shapes: dict = dataclasses.field(default_factory=dict)
    seed: int = 0
    results_dir: str = "results"
    store_url: object = None
    inventory: object = None
    ssh_options: object = None
    timeout: float = 900.0
    output_dir: pathlib.Path = pathlib.Path("optimize")
    # {budget: ratio}: a limit of ratio x the baseline's figure, set once the baseline is measured (KEY=0.5x)
    relative_budgets: dict = dataclasses.field(default_factory=dict)
    # what the study decided for the user and says in its answer (a part of the space left out, and why)
    notes: list = dataclasses.field(default_factory=list)
    # with relative budgets: the baseline measured again right before each candidate, the ratio judged per trial
    # (trial.Reference); False: every candidate against the baseline's one run at the study's start
    paired_baseline: bool = True
    # transformed modules kept between this worker's trials (transform.TransformCache; optimize() makes one)
    transforms: object = None
    # the Pareto front's figures (judging.pareto_figures): energy among them where every device measures it (_prepare),
    # and why energy is not, where it is not
    pareto_figures: tuple = ()
    energy_absent: str = ""
    # the backend the baseline and every candidate package with where the devices lack the profile's own runtime
    # (_usable_backends); None: the profile's own
    backend: str | None = None
    # every candidate's bundle kept in OUTPUT_DIR/STUDY/bundles; False: only those the answer names or measures again
    # (outcome._remove_spare_bundles)
    keep_bundles: bool = False

    def profile_precision(self) -> str:
        from ..profiles import load_profile
        return load_profile(self.profile).default_precision

    def profile_backend(self) -> str:
        from ..profiles import load_profile
        return load_profile(self.profile).backend


def optimize(job: Job, study_name: str, n_trials: int, sampler: str | None = None, space_file=None, resume: bool = False,
             screening: bool = True, multi_objective: bool = False, progress=SILENT) -> dict:
    """Run the study to n_trials trials (counting those of every worker and of earlier runs) and return the
    outcome: best bundle, every trial, the Pareto front, the closest misses and the exit code.
    screening: a short run without the accuracy pass first, and a full measurement only for a candidate that can
    still win (single objective only); False: every candidate measured fully."""
    import optuna

    started = time.monotonic()
    rdb.check_study_name(study_name)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # TPE's `group` (conditional spaces) is marked experimental; the warning would reach every user's terminal.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    missing = _missing_folders(job.output_dir, job.results_dir)
    storage = None
    try:
        dims, identity = _prepare(job, space_file, progress, multi_objective)
        storage = _storage(job, resume, study_name)
        study = rdb.open_study(storage, study_name, identity, resume, multi_objective, job, dims, sampler)
    except BaseException as e:
        if storage is not None:   # a refused resume left its connection pooled, for a caller in-process
            storage.remove_session()
            storage.engine.dispose()
        if isinstance(e, (BadInput, DeviceFailure)):   # refused before any trial: no empty folders left behind
            _remove_if_empty(missing)
        if isinstance(e, KeyboardInterrupt):   # "the same command with --resume continues it": no study to resume
            _remove_if_empty(missing)
            raise KeyboardInterrupt(f"stopped before study {study_name!r} " + (
                "went on: the same command continues it" if resume else
                "began: nothing was measured; the same command starts it (with --resume where it says the "
                "study exists: a Ctrl-C just after the study was made)")) from None
        raise
    if multi_objective:   # the front as the study keeps it: a resumed one keeps the figures it began with
        job.notes.append("energy_mj in the Pareto front: every device reads the power sensor the profile's "
                         "bundles use" if "energy_mj" in job.pareto_figures else
                         f"energy_mj not in the Pareto front: {job.energy_absent}")
        if job.objective in job.relative_budgets and job.paired_baseline:
            job.notes.append(f"the front compares {job.objective} as the study ranks it, by each trial's ratio to the "
                             "baseline measured beside it: the milliseconds shown are single runs at other moments, on a host "
                             "whose speed drifts")
        job.notes.append("with --pareto nothing is measured again at the end: each trial's figures are its own "
                         "run's, and the chosen one may lead by less than the device's noise (without --pareto the "
                         "best and those near it are measured again, and compared with INT8 by hand)")
    # what the space left out and why, for `report --study`; a resumed run adds its own to the earlier runs' (a
    # switch of sampler was lost at the next plain --resume)
    earlier = [n for n in study.user_attrs.get("notes") or [] if isinstance(n, str)]
    study.set_user_attr("notes", earlier + [n for n in job.notes if n not in earlier])
    runner = Runner(job, study, dims, identity, screening, multi_objective, progress, storage)
    own_cache = job.transforms is None   # a caller's cache is the caller's to close
    if own_cache:
        job.transforms = TransformCache()
    try:
        try:
            looped = time.monotonic()
            began_with = runner.started()
            if resume and began_with >= n_trials:   # said: the table came back as it was, with no word why
                job.notes.append(f"--resume: the study already has {began_with} trials (--trials {n_trials} counts "
                                 "every trial, earlier runs' too), so no new trial ran; give a larger --trials to "
                                 "continue it")
            runner.loop(n_trials)
        except (BadInput, DeviceFailure):   # the baseline: fix the input or the device, and run the same command
            rdb.remove_if_unmeasured(study, storage, resume)
            _remove_if_empty([runner.bundles, runner.bundles.parent])
            raise
        except KeyboardInterrupt:   # "the finished trials are kept" read oddly where none had finished
            if judging.complete(study):
                raise
            raise KeyboardInterrupt(f"study {study_name!r} has no finished trial yet; the same command with --resume "
                                    "continues it (the trial that was running goes first)") from None
        confirming = time.monotonic()
        if not multi_objective:
            runner.confirm()
        answered = time.monotonic()
        out = outcome.answer(job, study, study_name, multi_objective, runner)
        # where the wall time went beyond the trials' own phases (the table's "where the time went" summed
        # 8 of a study's 18.7 s: the measurements again at the end and the setup were nowhere)
        ended = time.monotonic()
        out["seconds"] = {"total": ended - started, "setup": looped - started, "trials": confirming - looped,
                          "at_the_end": answered - confirming, "answer": ended - answered}
        return out
    except rdb.store_errors() as e:   # the database went away: a device-side failure (3), not "none met" (1)
        raise DeviceFailure(rdb.store_lost(storage, study_name, e)) from None
    finally:
        if own_cache:   # closed, and not left on the job for a later optimize() to reuse
            job.transforms.close()
            job.transforms = None
        storage.remove_session()
        storage.engine.dispose()


def _remove_if_empty(folders) -> None:
    """Folders a study that built nothing made (OUTPUT_DIR/STUDY/bundles and its study folder; the output and
    results folders of a run refused before its first trial), innermost first: an empty folder per failed try was
    left behind. Anything in them keeps them."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:   # not empty (another worker's bundles, or files of the user's), or gone
            continue


def _missing_folders(*targets) -> list:
    """The folders `check_writable` would make for `targets`, innermost first."""
    missing = []
    for target in targets:
        folder = pathlib.Path(target).absolute()
        chain = []
        while not folder.exists() and folder != folder.parent:
            chain.append(folder)
            folder = folder.parent
        missing += [f for f in chain if f not in missing]
    return sorted(missing, key=lambda f: len(f.parts), reverse=True)


def _prepare(job: Job, space_file, progress=SILENT, pareto: bool = False) -> tuple:
    """(dimensions, the study's identity): everything checked before anything is measured."""
    from ..budgets import merged, validate_budgets, validate_ratios
    from ..convert import backend_for
    from ..models import detect_format, sha256_of
    from ..pipeline import EVAL_BUDGETS
    from ..recipe import check_seed
    from ..profiles import load_profile
    from ..transport import check_timeout, resolve_device

    check_timeout(job.timeout)
    check_seed(job.seed)
    kind = KINDS.get(job.objective)
    if kind is None or kind.higher_is_better:
        raise BadInput(f"--objective {job.objective}: expected a figure to minimise: "
                       f"{', '.join(k for k, v in KINDS.items() if not v.higher_is_better)}")
    prof = load_profile(job.profile)
    labelled = _labelled(job.eval_data)
    _check_eval_budgets(job.budgets, job.eval_data, labelled, job.objective, pareto)
    validate_budgets(job.budgets, field="--budget", dropping=True)
    job.budgets = validate_budgets(merged(_profile_budgets(prof, labelled), job.budgets), field="--budget")
    job.relative_budgets = validate_ratios(job.relative_budgets)
    for key in job.relative_budgets:   # a relative budget replaces the profile's absolute one
        job.budgets.pop(key, None)
    backend_for(prof)   # the profile's own backend: an unavailable one is refused before anything else
    fmt = detect_format(job.model)
    specs = [resolve_device(device, _inventory(job.inventory)) for device in job.devices]
    check_writable(job.output_dir, "bundles to", folder=True)   # before the study exists: not "study exists" next
    check_writable(job.results_dir, "results to", folder=True)
    facts = {device: _device_facts(device, job, prof.runtime.power_sensor) for device in job.devices}
    energy, job.energy_absent = _energy_measured(prof, facts)
    asked = [k for k in ("power_w", "energy_mj")
             if k == job.objective or k in job.budgets or k in job.relative_budgets]
    if asked and not energy:   # every trial would be packaged and measured, then fail on it (a user review)
        raise BadInput(f"{' and '.join(asked)} (the study's objective or a budget, the profile's included) cannot be "
                       f"measured: {job.energy_absent}; every trial would fail on it (--budget KEY=none drops a "
                       "profile's)")
    job.pareto_figures = judging.pareto_figures(job.budgets, job.objective, energy)
    backends = _usable_backends(prof, fmt, facts)
    for spec in specs:   # the baseline's backend: the profile's own, unless the devices lack its runtime
        backends = _profile_of_the_device(spec, prof, backends, job.notes)
    if backends[0].name != prof.backend:
        job.backend = backends[0].name
        job.notes.append(f"backend {prof.backend} not searched: {_lacking(prof.backend, facts)} has no runtime for "
                         f"it; the baseline and the candidates use {', '.join(b.name for b in backends)}")
    accuracy = any(k in job.budgets for k in EVAL_BUDGETS)
    calib_samples = _sample_count(job.calib)
    dims = spaces.build(backends, fmt, bool(job.calib), bool(job.train_data), _search_cores(prof, facts, job.notes),
                        space_file, measures_accuracy=accuracy, calib_samples=calib_samples,
                        profile_backends=prof.backends)
    for b in backends:   # the backends whose INT8 the space kept with all the samples
        name = b.calibration_size_option
        if spaces.small_calibration(b, calib_samples) and any(d.name in (name, f"{b.name}.{name}") for d in dims):
            job.notes.append(f"{b.name} INT8 calibrates on all {calib_samples} --calib samples "
                             f"({b.calibration_size_option}={calib_samples}; `package` asks for at least "
                             f"{b.min_calibration_samples} unless told): " + (
                                 "the accuracy budget judges what that costs" if accuracy else
                                 "no accuracy budget judges what that costs"))
    left_out = [] if accuracy else spaces.transforms_left_out(dims, backends, fmt, bool(job.train_data))
    dims = _without_inapplicable_transforms(job, fmt, dims, progress)
    if left_out:
        job.notes.append(f"{', '.join(left_out)} not searched: no accuracy budget would see what they cost (give "
                         "labelled --eval-data and --max-accuracy-drop, or name them in --space to search them "
                         "anyway)")
    path = pathlib.Path(job.model)
    identity = {"model": job.model, "model_sha256": sha256_of(path) if path.is_file() else None,
                "profile": prof.name, "budgets": dict(job.budgets), "objective": job.objective,
                "data": {k: _file_sha(v) for k, v in (("calib", job.calib), ("eval", job.eval_data),
                                                     ("train", job.train_data)) if v},
                "input_shapes": job.input_shapes, "seed": job.seed}
    content = _source_content(job.model)
    if content != identity["model_sha256"]:   # only then: a plain model file's content keys stay as they were
        identity["source_sha256"] = content
    if job.backend:   # only then: the content keys of studies on the profile's own backend stay as they were
        identity["backend"] = job.backend
    if job.relative_budgets:   # only then: the content keys of studies without them stay as they were
        identity["relative_budgets"] = dict(job.relative_budgets)
        identity["paired_baseline"] = job.paired_baseline
    return dims, identity


def _without_inapplicable_transforms(job: Job, fmt: str, dims: list, progress) -> list:
    """`dims` without the transforms that cannot change this model whatever their options, each in the notes:
    Torch-Pruning cannot trace a ShuffleNet's channel shuffle, and every pruning trial of a Pi study failed
    alike, each one a trial lost."""
    from ..compress import base as transforms
    from ..torch_export import load

    toggles = [d.name for d in dims if d.toggle]
    if job.train_data and fmt not in TORCH_FORMATS:   # taken without a word: the user expected training
        job.notes.append(f"--train-data not used: no transform trains the {fmt} model given (pruning, distillation and "
                         "QAT change a PyTorch module: give the model.py:build it came from)")
    if not toggles and not (job.train_data and fmt in TORCH_FORMATS):
        return dims
    progress.status("checking which transforms can change the model")
    source = load(job.model, fmt, job.input_shapes)
    for name in toggles:
        reason = transforms.get(name).unsupported(source.torch_module, source.torch_examples)
        if reason:
            dims = [d for d in dims if name not in (d.name, d.parent)]
            job.notes.append(f"{name} not searched: {reason}")
    if job.train_data:   # a file given is read even where no transform is left to train: a corrupt one was exit 0
        _check_training_data(job.train_data, source, progress)
        if not _reads_training_data(dims):
            job.notes.append("--train-data not used: no candidate of this space trains (distill and qat are not "
                             "searched, nor prune's taylor criterion)")
    return dims


def _source_content(model: str) -> str | None:
    """What of the model a resumed study must find unchanged beyond its file's bytes: an ONNX model's external
    data, an IR's weights (.bin), a `file.py:callable`'s code file (None for an installed module's callable). The
    file's sha256 alone missed them, so a study resumed after retraining answered every configuration it had
    measured with the old model's figures."""
    from ..models import source_sha256
    from ..pipeline import _file_of
    path = _file_of(model)   # itself, or file.py of file.py:fn
    return source_sha256(path) if path.is_file() else None


def _reads_training_data(dims: list) -> bool:
    """Whether some candidate of the space reads --train-data: a training transform searched (on), or prune's
    taylor criterion among its choices."""
    from ..compress import base as transforms

    trains = any(d.toggle and True in d.choices and transforms.get(d.name).needs_training_data for d in dims)
    return trains or any(d.name.endswith("prune.criterion") and "taylor" in d.choices for d in dims)


def _check_training_data(train_data, source, progress) -> None:
    """--train-data read once, as a trial reads it, before anything is measured: a bad file or `module:callable`
    failed every trial that trains, one by one, while the others went on (exit 0 on INT8 alone)."""

    from ..pipeline import training_samples

    progress.status(f"reading --train-data {train_data}")
    with scratch.folder("train") as work:
        training_samples(train_data, source, pathlib.Path(work))


def _profile_of_the_device(spec, prof, backends: list, notes: list) -> list:
    """A device whose inventory entry names another profile than --profile: refused before any trial where the
    baseline's backend (the first) does not run there, as `bench` refuses such a bundle mid-study (a Raspberry Pi
    bundle on an intel-cpu box measures nothing anyone ships), else said in the notes. A study over such a device
    ran to its end, or chose a LiteRT bundle from x86 figures, with no word of it outside the result files (a fleet
    walkthrough). The backends kept: another searched backend that `bench` would refuse there is left out, with a
    note (its every trial failed, suggesting a flag optimize lacks)."""
    from ..api import backend_refused, inventory_profile

    if not spec.profile or spec.profile == prof.name:
        return backends
    theirs = inventory_profile(spec)
    said = (f"device {spec.name} is {theirs.name} ({', '.join(theirs.backends)}) in the inventory, and the study "
            f"packages for --profile {prof.name} ({', '.join(prof.backends)})")
    if backend_refused(backends[0].name, prof.device.arch, theirs):
        raise BadInput(f"{said}: its {backends[0].name} bundles measure nothing anyone ships there; give --profile "
                       f"{theirs.name}, or leave the device out")
    refused = [b.name for b in backends[1:] if backend_refused(b.name, prof.device.arch, theirs)]
    notes.append(f"{said}: its figures are of {prof.name}'s bundles on that device"
                 + (f"; {', '.join(refused)} not searched, since {theirs.name} runs none" if refused else ""))
    return [b for b in backends if b.name not in refused]


def _usable_backends(prof, fmt: str, facts: dict) -> list:
    """The profile's backends (its own first) that this version implements, that read the model's format, and,
    where that leaves several, whose runtime every device has (its agent's probe, `facts`): the search's
    choices."""
    from ..convert import BACKENDS, backend_for
    from ..doctor import installed

    own = backend_for(prof)
    others = [backend_for(prof, name) for name in prof.backends[1:] if BACKENDS.get(name)]
    others = [b for b in others if fmt in b.source_formats]
    if not others:
        return [own]
    runtimes = [f.get("runtimes") or {} for f in facts.values()]
    usable = [b for b in others if all(installed(r, b.name) for r in runtimes)]
    # The profile's own too, where every device reported its runtimes and one lacks it (a Jetson profile on a
    # host without TensorRT: every TensorRT candidate failed on the device), and another backend is left to search.
    # Otherwise it stays: the device's own error says what it lacks.
    lacks_own = all(runtimes) and not all(installed(r, own.name) for r in runtimes)
    return usable if lacks_own and usable else [own] + usable


def _lacking(backend: str, facts: dict) -> str:
    """The first device whose probe found no runtime for the backend."""
    from ..doctor import installed
    return next(d for d, f in facts.items() if not installed(f.get("runtimes") or {}, backend))


def _device_facts(device: str, job: Job, power_sensor: str = "auto") -> dict:
    """What the device's agent probes (runtimes, logical_cpus, whether it reads `power_sensor`...); DeviceFailure
    where it cannot be reached."""
    from ..transport import for_spec, resolve_device

    transport = for_spec(resolve_device(device, _inventory(job.inventory)), job.ssh_options)
    try:
        return transport.probe(power_sensor=power_sensor)
    finally:
        transport.close()


def _energy_measured(prof, facts: dict) -> tuple:
    """(whether every device measures energy per inference, why not): its agent's probe found the power sensor
    the profile's bundles ask for (or, for `auto`, any)."""
    from ..doctor import power_reader_for

    for device, f in facts.items():
        found, why = power_reader_for(f.get("power"), prof.runtime.power_sensor)
        if found is None:
            return False, f"{device}: {why}"
    return bool(facts), "no device"


def _search_cores(prof, facts: dict, notes: list) -> int | None:
    """The thread counts' ceiling: the profile's cores, capped by the fewest any device has (more threads than
    cores only oversubscribes it: threads=4 read 81x its baseline on a 2-core host standing in for a Pi); a
    profile that leaves the cores to the device (0) takes the devices' own: those the agent may run on where the
    device pins it (taskset, a cpuset: a device pinned to one CPU of two was searched at 2 threads, a fleet
    walkthrough)."""
    counts = {d: min(c for c in (f.get("logical_cpus"), f.get("usable_cpus")) if isinstance(c, int))
              for d, f in facts.items() if isinstance(f.get("logical_cpus"), int)}
    fewest = min(counts.values(), default=None)
    if not prof.device.cores or fewest is None:
        return prof.device.cores or fewest
    if fewest < prof.device.cores:
        device = min(counts, key=counts.get)
        notes.append(f"threads: up to {fewest}, the cores of {device} (profile {prof.name} has "
                     f"{prof.device.cores}): more threads than a device has cores only oversubscribes it")
    return min(prof.device.cores, fewest)


def _profile_budgets(prof, labelled: bool) -> dict:
    """The profile's default budgets, as `check` applies them to the chosen bundle; its accuracy budgets only
    with labelled eval data to measure them (without, every candidate would miss them unmeasured)."""
    from ..pipeline import EVAL_BUDGETS

    return {k: v for k, v in prof.budgets.items() if labelled or k not in EVAL_BUDGETS}


def _check_eval_budgets(budgets: dict, eval_data, labelled: bool, objective: str = "", pareto: bool = False) -> None:
    """An accuracy budget or objective the user asked for needs labelled eval data: refused before anything is
    measured (every candidate would miss the budget unmeasured, and the study could only end with exit 1; an
    objective no trial measures failed every trial, the baseline included). So does --pareto, whose front ranks the
    accuracy drop: every trial failed on it, exit 1 (a walkthrough)."""
    from ..data import LABELS
    from ..pipeline import EVAL_BUDGETS

    asked = next((f"--budget {k}" for k in EVAL_BUDGETS if budgets.get(k) is not None), None)
    if objective in EVAL_BUDGETS:
        asked = f"--objective {objective}"
    if pareto:
        asked = "--pareto (its front ranks the accuracy drop)"
    if asked is None or labelled:
        return
    why = (f"--eval-data {eval_data} has no {LABELS!r} array" if eval_data
           else "no --eval-data was given")
    raise BadInput(f"{asked}: accuracy is measured on labelled eval data, and {why}")


def _sample_count(path) -> int | None:
    """The samples in a data file (its first array's length); None where it cannot be read here."""
    peeked = _peek(path)
    return peeked[1] if peeked else None


def _labelled(eval_data) -> bool:
    """Whether the eval data holds labels. A file that cannot be read counts as labelled here."""
    from ..data import LABELS

    if not eval_data:
        return False
    peeked = _peek(eval_data)
    return peeked is None or LABELS in peeked[0]


def _peek(path) -> tuple | None:
    """(the .npz's member names, its first array's length or None); None where it cannot be read here: it is
    refused, with its name and the reason, where it is read."""
    import zipfile

    import numpy as np

    if not path or not pathlib.Path(path).is_file():
        return None
    try:
        with np.load(path) as arrays:
            first = arrays[arrays.files[0]] if arrays.files else None
            return arrays.files, len(first) if first is not None and first.ndim else None
    except (OSError, ValueError, EOFError, TypeError, IndexError, zipfile.BadZipFile):   # TypeError: a .npy
        return None


def _file_sha(path) -> str:
    """sha256 of a data file; of the reference itself for a `module:callable` (a DataLoader's source)."""
    import hashlib

    from ..models import callable_reference, sha256_of

    if callable_reference(path):
        return hashlib.sha256(str(path).encode()).hexdigest()
    if not pathlib.Path(path).is_file():
        raise BadInput(f"data file not found: {path}")
    return sha256_of(pathlib.Path(path))


def _inventory(inventory):
    from ..api import _inventory as load
    return load(inventory)


def _storage(job: Job, resume: bool = False, study_name: str = ""):
    """The study's storage; --resume of an SQLite file that is not there is refused before it is made."""
    import sqlalchemy as sa

    from ..store import default_url
    given = job.store_url or default_url(job.results_dir)
    try:
        url = sa.engine.make_url(given)
    except (sa.exc.ArgumentError, ValueError):
        url = None   # the store says what is wrong with it, in its own words
    if resume and url is not None and url.get_backend_name().lower() == "sqlite" and url.database and \
            not pathlib.Path(url.database).exists():
        raise BadInput(f"--resume: no study {study_name!r}: there is no store at {url.database}")
    return rdb.open_storage(given, writing=True)
