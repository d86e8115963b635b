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
import math
import os
import pathlib
import socket
import statistics
import warnings

from ..budgets import KINDS
from ..errors import BadInput, DeviceFailure
from ..progress import SILENT
from ..transform import TransformCache
from . import space as spaces, trial as trials_

SAMPLERS = ("tpe", "gp", "random", "grid", "nsga2")
GP_STARTUP_TRIALS = 5           # as TPE's: the baseline and INT8 alone, then three at random
# Multi-objective figures besides the latency (all lower is better); energy joins them where the devices measure it.
PARETO_FIGURES = ("accuracy_drop", "size_mb")
DEFAULT_OBJECTIVE = "latency_p90_ms"   # without a latency budget asked (default_objective)
DEVICE_FAILURES_TO_STOP = 3     # consecutive trials failed by the device: the device is down, not the candidate
RECHECK_WITHIN = 0.10           # best candidates within 10% of each other are measured again before choosing
RECHECK_TOP = 3
# A trial that missed only the objective's budget, and by at most this share, on one run is measured until it has
# JUDGED_RUNS runs and judged by their median (_Runner.measure_near_misses): a YOLOv8n Pi study ruled out INT8 by
# hand on one run at 0.57x of its baseline against 0.5x, and five runs in turn at the end made it 1.43x faster than
# the answer it chose.
NEAR_MISS = 0.25
JUDGED_RUNS = 3
NEAR_MISSES_MEASURED = 3        # at most this many such trials a round, nearest to being the answer first
# Objectives one bundle reads alike on every run (its files; its predictions on the same eval data): measuring a
# trial again settles nothing.
SAME_EVERY_RUN = ("size_mb", "accuracy_drop")
# At the end, the best and INT8 by hand (the textbook trial) measured in turn this many times each, when the
# objective is a latency: what the search gained over the first step by hand, judged on readings made together.
VERSUS_TEXTBOOK_PAIRS = 5
# A trial answered from the cache costs nothing and does not count towards --trials; this many in a row from one
# worker means the sampler has little left to propose (a small space, all of it measured): the worker stops.
CACHED_IN_A_ROW_TO_STOP = 10
# After this many cached answers in a row, a configuration nobody measured is enqueued (_Runner._explore): in a
# small or stepped space TPE re-proposed measured candidates until the stop above ended studies that had not
# reached the feasible region (8 of 30 replays on a measured landscape: docs/benchmarks.md).
EXPLORE_AFTER_CACHED = 3
# After screening, a candidate over a budget, or slower than the feasible best, by more than this share gets no
# full measurement (and so no accuracy figure).
SCREEN_MARGIN = 0.25
GRID_POINT = "edgeopt:grid_point"   # a trial's system attribute: the index of its grid point
BASELINE_POLL_SECONDS = 2.0     # how often a worker looks whether another has measured the baseline yet
WORKER = f"{socket.gethostname()}:{os.getpid()}"
# The shortest --timeout: one run of the agent takes its idle baseline (1 s), warm-up (0.2 s) and timed loop (1 s) by
# default, besides starting it and loading the bundle; 0 or 0.01 s failed every trial on the device (exit 3).
MIN_TIMEOUT = 10.0


def default_objective(budgets: dict, relative_budgets: dict) -> str:
    """The figure minimised when --objective is not given: the latency the user budgeted (a relative budget
    first: its candidates are ranked by their ratio to the baseline measured beside them), else p90. Asked for
    `latency_p50_ms=0.9x`, a user expects the search to make p50 small, not p90."""
    asked = [k for k in (*relative_budgets, *budgets) if k.startswith("latency_")]
    return asked[0] if asked else DEFAULT_OBJECTIVE


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
    # the Pareto front's figures (_pareto_figures): energy among them where every device measures it (_prepare),
    # and why energy is not, where it is not
    pareto_figures: tuple = ()
    energy_absent: str = ""
    # the backend the baseline and every candidate package with where the devices lack the profile's own runtime
    # (_usable_backends); None: the profile's own
    backend: str | None = None


def optimize(job: Job, study_name: str, n_trials: int, sampler: str = "tpe", space_file=None, resume: bool = False,
             screening: bool = True, multi_objective: bool = False, progress=SILENT) -> dict:
    """Run the study to n_trials trials (counting those of every worker and of earlier runs) and return the
    outcome: best bundle, every trial, the Pareto front, the closest misses and the exit code.
    screening: a short run without the accuracy pass first, and a full measurement only for a candidate that can
    still win (single objective only); False: every candidate measured fully."""
    import optuna

    _check_study_name(study_name)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # TPE's `group` (conditional spaces) is marked experimental; the warning would reach every user's terminal.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    dims, identity = _prepare(job, space_file, progress)
    storage = _storage(job)
    study = _study(storage, study_name, identity, resume, multi_objective, job, dims, sampler)
    if multi_objective:   # the front as the study keeps it: a resumed one keeps the figures it began with
        job.notes.append("energy_mj in the Pareto front: every device reads the power sensor the profile's "
                         "bundles use" if "energy_mj" in job.pareto_figures else
                         f"energy_mj not in the Pareto front: {job.energy_absent}")
    study.set_user_attr("notes", list(job.notes))   # what the space left out and why, for `report --study`
    runner = _Runner(job, study, dims, identity, screening, multi_objective, progress)
    own_cache = job.transforms is None   # a caller's cache is the caller's to close
    if own_cache:
        job.transforms = TransformCache()
    try:
        try:
            runner.loop(n_trials)
        except (BadInput, DeviceFailure):   # the baseline: fix the input or the device, and run the same command
            _remove_if_unmeasured(study, storage, resume)
            raise
        if not multi_objective:
            runner.confirm()
        return _outcome(job, study, study_name, multi_objective, runner)
    finally:
        if own_cache:   # closed, and not left on the job for a later optimize() to reuse
            job.transforms.close()
            job.transforms = None
        storage.remove_session()
        storage.engine.dispose()


def _remove_if_unmeasured(study, storage, resume: bool) -> None:
    """A study this worker began whose baseline cannot be built (bad input) or measured (the device failed)
    measured nothing: removed, so the same command runs again once the input or device is fixed (it read "study
    exists"). Kept where a trial completed or another worker has started one (it would lose its trial), and where
    the removal itself fails (the error is what the user needs to read)."""
    import optuna

    started = [t for t in study.get_trials(deepcopy=False) if t.state != optuna.trial.TrialState.WAITING]
    if resume or _complete(study) or any(t.user_attrs.get("worker") != WORKER for t in started):
        return
    try:
        optuna.delete_study(study_name=study.study_name, storage=storage)
    except Exception:  # noqa: BLE001  (storage errors of any kind: the error is raised either way)
        pass


def _prepare(job: Job, space_file, progress=SILENT) -> tuple:
    """(dimensions, the study's identity): everything checked before anything is measured."""
    from ..budgets import validate_budgets, validate_ratios
    from ..convert import backend_for
    from ..models import detect_format, sha256_of
    from ..pipeline import EVAL_BUDGETS
    from ..profiles import load_profile
    from ..transport import resolve_device

    _check_timeout(job.timeout)
    kind = KINDS.get(job.objective)
    if kind is None or kind.higher_is_better:
        raise BadInput(f"--objective {job.objective}: expected a figure to minimise: "
                       f"{', '.join(k for k, v in KINDS.items() if not v.higher_is_better)}")
    prof = load_profile(job.profile)
    labelled = _labelled(job.eval_data)
    _check_eval_budgets(job.budgets, job.eval_data, labelled, job.objective)
    job.budgets = validate_budgets({**_profile_budgets(prof, labelled), **job.budgets}, field="--budget")
    job.relative_budgets = validate_ratios(job.relative_budgets)
    for key in job.relative_budgets:   # a relative budget replaces the profile's absolute one
        job.budgets.pop(key, None)
    backend_for(prof)   # the profile's own backend: an unavailable one is refused before anything else
    fmt = detect_format(job.model)
    for device in job.devices:
        resolve_device(device, _inventory(job.inventory))
    facts = {device: _device_facts(device, job, prof.runtime.power_sensor) for device in job.devices}
    energy, job.energy_absent = _energy_measured(prof, facts)
    job.pareto_figures = _pareto_figures(job.budgets, job.objective, energy)
    backends = _usable_backends(prof, fmt, facts)
    if backends[0].name != prof.backend:
        job.backend = backends[0].name
        job.notes.append(f"backend {prof.backend} not searched: {_lacking(prof.backend, facts)} has no runtime for "
                         f"it; the baseline and the candidates use {', '.join(b.name for b in backends)}")
    accuracy = any(k in job.budgets for k in EVAL_BUDGETS)
    calib_samples = _sample_count(job.calib)
    dims = spaces.build(backends, fmt, bool(job.calib), bool(job.train_data), _search_cores(prof, facts, job.notes),
                        space_file, measures_accuracy=accuracy, calib_samples=calib_samples)
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
    if job.backend:   # only then: the content keys of studies on the profile's own backend stay as they were
        identity["backend"] = job.backend
    if job.relative_budgets:   # only then: the content keys of studies without them stay as they were
        identity["relative_budgets"] = dict(job.relative_budgets)
        identity["paired_baseline"] = job.paired_baseline
    return dims, identity


def _check_timeout(timeout) -> None:
    if not (isinstance(timeout, (int, float)) and MIN_TIMEOUT <= timeout < math.inf):
        raise BadInput(f"--timeout {timeout:g}: expected a number of seconds of at least {MIN_TIMEOUT:g} (one "
                       "measurement starts the agent, loads the bundle, warms up and times it)")


def _without_inapplicable_transforms(job: Job, fmt: str, dims: list, progress) -> list:
    """`dims` without the transforms that cannot change this model whatever their options, each in the notes:
    Torch-Pruning cannot trace a ShuffleNet's channel shuffle, and every pruning trial of a Pi study failed
    alike, each one a trial lost."""
    from ..compress import base as transforms
    from ..torch_export import load

    toggles = [d.name for d in dims if d.toggle]
    if not toggles:
        return dims
    progress.status("checking which transforms can change the model")
    source = load(job.model, fmt, job.input_shapes)
    for name in toggles:
        reason = transforms.get(name).unsupported(source.torch_module, source.torch_examples)
        if reason:
            dims = [d for d in dims if name not in (d.name, d.parent)]
            job.notes.append(f"{name} not searched: {reason}")
    return dims


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
    profile that leaves the cores to the device (0) takes the devices' own."""
    counts = {d: f.get("logical_cpus") for d, f in facts.items() if isinstance(f.get("logical_cpus"), int)}
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


def _check_eval_budgets(budgets: dict, eval_data, labelled: bool, objective: str = "") -> None:
    """An accuracy budget or objective the user asked for needs labelled eval data: refused before anything is
    measured (every candidate would miss the budget unmeasured, and the study could only end with exit 1; an
    objective no trial measures failed every trial, the baseline included)."""
    from ..data import LABELS
    from ..pipeline import EVAL_BUDGETS

    asked = next((f"--budget {k}" for k in EVAL_BUDGETS if k in budgets), None)
    if objective in EVAL_BUDGETS:
        asked = f"--objective {objective}"
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

    from ..models import sha256_of

    if ":" in str(path) and not pathlib.Path(path).exists():
        return hashlib.sha256(str(path).encode()).hexdigest()
    if not pathlib.Path(path).is_file():
        raise BadInput(f"data file not found: {path}")
    return sha256_of(pathlib.Path(path))


def _inventory(inventory):
    from ..api import _inventory as load
    return load(inventory)


OPTUNA_SCHEMA_LOCK = 0x6F7074756E61  # "optuna": the advisory lock key under which its tables are made


def _storage(job: Job):
    from ..store import default_url
    return open_storage(job.store_url or default_url(job.results_dir))


def open_storage(store_url):
    """Optuna's RDB storage on the results store's database (the store opened first: its URL checked, its
    own schema in place, a bad URL one line with the password masked). Made under the store's lock: Optuna
    creates its tables on first use, and two workers started at once on a new database would race."""
    import optuna

    from ..store import Store

    with Store(store_url) as store, store.exclusive(OPTUNA_SCHEMA_LOCK, "cannot make the study tables"):
        return optuna.storages.RDBStorage(store.url.render_as_string(hide_password=False))


def _study(storage, name: str, identity: dict, resume: bool, multi: bool, job: Job, dims: list, sampler: str):
    import optuna

    existing = {s.study_name: s for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    if name in existing and not resume:
        raise BadInput(f"study {name!r} exists in the store; --resume continues it, or name another --study")
    if resume and name not in existing:
        raise BadInput(f"--resume: no study {name!r} in the store")
    if name in existing:   # its front as it began (the number of directions is fixed); before it was recorded,
        began = optuna.load_study(study_name=name, storage=storage)
        _check_pareto(began, multi)
        recorded = began.user_attrs.get("pareto_figures")
        front = tuple(recorded or _pareto_figures(job.budgets, job.objective))   # energy only where budgeted
        if multi and "energy_mj" in front and "energy_mj" not in job.pareto_figures:   # every trial would fail
            raise BadInput(f"--resume: study {name!r} searches a Pareto front with energy_mj, and "
                           f"{job.energy_absent}; resume it on devices that measure energy, or start a new --study")
        job.pareto_figures = front
    directions = ["minimize"] * (len(job.pareto_figures) if multi else 1)
    study = optuna.create_study(study_name=name, storage=storage, directions=directions, load_if_exists=True,
                                sampler=_sampler(sampler, dims, job.seed, multi))
    if name in existing:
        _check_identity(study, identity)
        _check_space(study, dims)
        _fail_orphans(study)
    else:
        study.set_user_attr("identity", identity)
        study.set_user_attr("space", _space_record(dims))
        study.set_user_attr("pareto_figures", list(job.pareto_figures))
        every = _models_every_dimension(study.sampler)
        precision = _profile_precision(job)
        study.enqueue_trial(spaces.untouched(dims, precision) if every else {}, user_attrs={"baseline": True})
        first = spaces.textbook(dims, precision)
        if first is not None:   # the first step by hand is measured early: the answer is never worse than it
            study.enqueue_trial(spaces.params(dims, first, every),
                                user_attrs={"textbook": "INT8 alone, the backend's defaults"})
    return study


def _profile_precision(job: Job) -> str:
    from ..profiles import load_profile
    return load_profile(job.profile).default_precision


def _profile_backend(job: Job) -> str:
    from ..profiles import load_profile
    return load_profile(job.profile).backend


# What of the command line each part of a study's identity is, for a --resume that differs in it
_IDENTITY_FLAGS = {"model": "MODEL", "model_sha256": "MODEL (its contents)", "profile": "--profile",
                   "budgets": "--budget (the profile's included)", "relative_budgets": "--budget KEY=Nx",
                   "paired_baseline": "--baseline-once", "objective": "--objective", "input_shapes": "--input-shape",
                   # the profile's own backend is searched only where every device has its runtime
                   "backend": "backend (the devices' runtimes)",
                   # the sampler's and the training transforms' seed: another one proposes and trains other models
                   "seed": "--seed"}
_DATA_FLAGS = {"calib": "--calib", "eval": "--eval-data", "train": "--train-data"}


def _check_pareto(study, multi: bool) -> None:
    """--pareto or not is fixed when a study begins: Optuna keeps the number of objectives it was made with, and
    a resumed run that differs would tell every trial the wrong number of values."""
    began = len(study.directions) > 1
    if began != multi:
        then, now = ("given", "not given") if began else ("not given", "given")
        raise BadInput(f"--resume: study {study.study_name!r} was started with another --pareto ({then}; now {now}): "
                       "give the flags it was started with, or start a new --study")


def _check_identity(study, identity: dict) -> None:
    """A resumed study must be the one that was started: the same model, budgets, data and way of judging (the
    other flags, such as --trials or --sampler, may change). Refused naming the flag and both values."""
    recorded = study.user_attrs.get("identity") or {}
    # the data before the budgets: without --eval-data the profile's accuracy budget drops out too
    for key in ("model", "model_sha256", "profile", "data", "input_shapes", "budgets", "relative_budgets",
                "paired_baseline", "objective", "seed", "backend"):
        then, now = recorded.get(key), identity.get(key)
        if then == now:
            continue
        if key == "data":   # which data file, not two dictionaries of sha256s
            name = next(k for k in _DATA_FLAGS if (then or {}).get(k) != (now or {}).get(k))
            flag, then, now = _DATA_FLAGS[name], _given((then or {}).get(name)), _given((now or {}).get(name))
        else:
            flag, then, now = _IDENTITY_FLAGS[key], _shown_identity(then), _shown_identity(now)
        raise BadInput(f"--resume: study {study.study_name!r} was started with another {flag} ({then}; now {now}): "
                       "give the flags it was started with, or start a new --study")


def _space_record(dims: list) -> dict:
    """{dimension: its values}: what the study's samplers were given. Not part of the identity (the content
    keys): the same candidate in a narrower space is the same bundle and measurement."""
    return {d.name: d.describe() for d in dims}


def _check_space(study, dims: list) -> None:
    """A resumed study must search the space it began with: Optuna refuses a categorical parameter whose choices
    changed (a traceback, and the trial it was sampling left running), and the grid sampler's points are
    numbered in that space. A study from before the space was recorded is not checked."""
    recorded, now = study.user_attrs.get("space"), _space_record(dims)
    if recorded is None or recorded == now:
        return
    name = next(k for k in (*recorded, *now) if recorded.get(k) != now.get(k))
    then, current = (_shown_identity(v.get(name)) for v in (recorded, now))
    raise BadInput(f"--resume: study {study.study_name!r} was started with another search space ({name}: {then}; "
                   f"now {current}): give the --space file it was started with (the devices' backends and cores "
                   "shape the space too), or start a new --study")


def _given(sha: str | None) -> str:
    return "not given" if sha is None else f"a file of sha256 {sha[:12]}…"


def _shown_identity(value) -> str:
    if value is None or value == {}:
        return "not given"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_shown_identity(v)}" for k, v in value.items())
    if isinstance(value, str) and len(value) == 64:
        return value[:12] + "…"
    return str(value)


def _fail_orphans(study) -> None:
    """Trials left running by a worker of this host that is gone (a crash, a kill): failed with that reason,
    so the study does not wait for them. Another host's running trials may be alive and are left alone."""
    import optuna

    host = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        worker_host, _, pid = (t.user_attrs.get("worker") or "").rpartition(":")
        if worker_host == host and pid.isdigit() and not _alive(int(pid)):
            if _enqueued(t):
                _requeue(study, t)
                continue
            optuna.trial.Trial(study, t._trial_id).set_user_attr("error", f"its worker {worker_host}:{pid} stopped")
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)


def _enqueued(t) -> bool:
    """Whether the study enqueued this trial itself: the baseline, or INT8 by hand."""
    return bool(t.user_attrs.get("baseline") or t.user_attrs.get("textbook"))


def _requeue(study, t) -> None:
    """Return a trial that did not finish (Ctrl-C, its worker gone) to the queue, where it keeps its place: the
    next run, --resume or another worker, measures it first. For the baseline and INT8 by hand, which the study
    enqueues once: failed, the baseline was never measured again, every trial against a relative budget failed
    with it, and nothing could be judged. Optuna has no public call for it; its storage allows it for a trial that
    has not finished."""
    import optuna

    study._storage.set_trial_state_values(t._trial_id, state=optuna.trial.TrialState.WAITING)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _baseline(dims: list, job: Job):
    """The untouched model (no transform, no quantization, the profile's precision, the most threads the space
    allows), measured in the same study on the same devices: the paired reference. Not sampled: a space that
    fixes a transform on must not change what the reference is."""
    threads = next((max(d.choices) for d in dims if d.name == "threads"), None)
    return trials_.Candidate({"quantize": "none", "precision": _profile_precision(job)}, [], threads)


def _grid_sampler(dims: list, seed: int):
    """A grid over the space's distinct configurations (space.grid_points), in an order shuffled by the seed.
    Not Optuna's GridSampler: its grid is the product of every dimension, where a transform's options while it is
    off and an INT8-only option without INT8 repeat one configuration many times (benchmarks/sampler_measured.py's
    150 configurations were 24,576 points); its after_trial also calls Study.stop(), which raises outside
    study.optimize(), and a study here asks and tells. The loop detects the end (_Runner._grid_done)."""
    import numpy as np
    import optuna

    class Grid(optuna.samplers.BaseSampler):
        def __init__(self):
            self.points = spaces.grid_points(dims)
            self.rng = np.random.default_rng(seed)
            self.rng.shuffle(self.points)
            self.params = {}   # a point's trial parameters (space.params), made when a trial first takes it
            self.fallback = optuna.samplers.RandomSampler(seed=seed)   # what no point sets (an enqueued trial)

        def infer_relative_search_space(self, study, trial):
            return {}

        def sample_relative(self, study, trial, search_space):
            return {}

        def before_trial(self, study, trial) -> None:
            if "fixed_params" in trial.system_attrs:   # enqueued (the baseline, INT8 alone): not a grid point
                return
            taken = {t.system_attrs.get(GRID_POINT) for t in study.get_trials(deepcopy=False)}
            free = [i for i in range(len(self.points)) if i not in taken]
            # every point taken: the grid is done (the loop stops); a proposal past it repeats a point
            point = free[0] if free else int(self.rng.integers(len(self.points)))
            study._storage.set_trial_system_attr(trial._trial_id, GRID_POINT, point)

        def sample_independent(self, study, trial, param_name, param_distribution):
            point = trial.system_attrs.get(GRID_POINT)
            if point is not None and point not in self.params:
                self.params[point] = spaces.params(dims, self.points[point])
            if point is None or param_name not in self.params[point]:
                return self.fallback.sample_independent(study, trial, param_name, param_distribution)
            return self.params[point][param_name]

    return Grid()


def _sampler(name: str, dims: list, seed: int, multi: bool):
    import optuna

    if name not in SAMPLERS:
        raise BadInput(f"--sampler {name}: expected one of {', '.join(SAMPLERS)}")
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        return _grid_sampler(dims, seed)
    if name == "nsga2" or multi:
        return optuna.samplers.NSGAIISampler(seed=seed)
    if name == "gp":
        # A Gaussian process per budget as well as for the objective: before anything is feasible it proposes
        # what is likeliest to meet every budget, where constrained TPE ranks by summed excess and keeps to the
        # least-violating corner (docs/benchmarks.md, "a modelled landscape"). Needs torch and scipy.
        try:
            import scipy  # noqa: F401
            import torch  # noqa: F401
        except ImportError:
            raise BadInput("--sampler gp needs PyTorch and SciPy: pip install 'edgeopt[torch]'") from None
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=GP_STARTUP_TRIALS)
    # The budgets reach the samplers as the trials' constraints (Trial.set_constraint in _record).
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True,
                                      n_startup_trials=5)


def _check_study_name(name: str) -> None:
    """The study's name names its output directory and its bundles (NAME-t3, NAME-best), whose manifests refuse a
    path: refused here, before any work, rather than at the baseline's packaging with empty directories left."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or not name.isprintable() or len(name) > 150:
        raise BadInput(f"--study {name!r}: a study's name names its directory and bundles: printable, at most 150 "
                       "characters, no '/' or '\\', not '.' or '..'")


def _models_every_dimension(sampler) -> bool:
    """Optuna's GPSampler searches only the dimensions every finished trial has (its intersection search
    space): the baseline and a transform that is off must still suggest them."""
    import optuna
    return isinstance(sampler, optuna.samplers.GPSampler)


def _pareto_figures(budgets: dict, objective: str, energy: bool = False) -> tuple:
    """The front's figures: the latency the study minimises (a front over p90 beside a p50 objective compared
    what the user did not ask about), accuracy drop, size, and energy where every device measures it (`energy`)
    or it is budgeted."""
    latency = objective if objective.startswith("latency_") else DEFAULT_OBJECTIVE
    return (latency, *PARETO_FIGURES) + (("energy_mj",) if energy or "energy_mj" in budgets else ())


class _Runner:
    """The trial loop of one worker process."""

    def __init__(self, job, study, dims, identity, screening, multi, progress):
        self.job, self.study, self.dims, self.identity = job, study, dims, identity
        self.screening, self.multi, self.progress = screening, multi, progress
        self.stopped_by_device = None
        self.ruled_out = None    # why _can_still_win last left a screened candidate without a full measurement
        self.end_failed = None   # why measuring again at the study's end stopped: the device failed there
        self.exhausted = None
        self.exploration = None   # space.Exploration, made when the sampler first repeats itself
        self.rebuilt_differs = []   # trial numbers whose bundle, rebuilt on this host, differs from the one measured
        self.bundles = job.output_dir / study.study_name / "bundles"
        self.bundles.mkdir(parents=True, exist_ok=True)
        if job.relative_budgets:   # resumed, or joined: the baseline may have set them already
            job.budgets.update(study.user_attrs.get("resolved_budgets") or {})

    def loop(self, n_trials: int) -> None:
        device_failures = cached = 0
        grid = hasattr(self.study.sampler, "points")   # _grid_sampler: never repeats, done when every point is taken
        self.progress.start("optimize: trials", total=n_trials)
        self.progress.advance(min(n_trials, self._started()))
        while self._started() < n_trials:
            trial = self.study.ask()
            failure = self._run_trial(trial)
            answered = trial.user_attrs.get("cached", False)
            cached = cached + 1 if answered else 0
            if not answered:
                self.progress.advance()
            device_failures = device_failures + 1 if failure == "device" else 0
            if device_failures >= DEVICE_FAILURES_TO_STOP:
                self.stopped_by_device = trial.user_attrs.get("error")
                break
            if cached >= CACHED_IN_A_ROW_TO_STOP:
                self.exhausted = f"the last {cached} candidates the sampler proposed had all been measured"
                break
            if answered and cached % EXPLORE_AFTER_CACHED == 0 and not grid:
                self._explore()
            if grid and self._grid_done():
                break
        self.progress.finish()

    def _explore(self) -> None:
        """Enqueue a configuration no trial has measured (space.Exploration), if one is left: the sampler keeps
        proposing measured ones, which teach it nothing."""
        trials = self.study.get_trials(deepcopy=False)
        measured = {t.user_attrs.get("key") for t in trials}
        every = _models_every_dimension(self.study.sampler)
        self.exploration = self.exploration or spaces.Exploration(self.dims, self.job.seed)
        for point in self.exploration.candidates(len(trials)):
            if trials_.Candidate(*spaces.options(self.dims, point)).key(self.identity) not in measured:
                self.study.enqueue_trial(spaces.params(self.dims, point, every),
                                         user_attrs={"explore": True})
                return

    def _started(self) -> int:
        """Trials that count towards --trials: every worker's, of every state, except those the cache answered."""
        import optuna

        states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL,
                  optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.PRUNED)
        return sum(not t.user_attrs.get("cached") for t in self.study.get_trials(deepcopy=False, states=states))

    def _grid_done(self) -> bool:
        """Every grid point proposed (by any worker). Enqueued trials (the baseline, INT8 alone) are no grid
        points; where their configuration is one, the grid proposes it again and the cache answers."""
        taken = {t.system_attrs.get(GRID_POINT) for t in self.study.get_trials(deepcopy=False)} - {None}
        return len(taken) >= len(self.study.sampler.points)

    def _run_trial(self, trial) -> str | None:
        """Run one asked trial and tell the study; the failure kind ("input", "device") or None. Ctrl-C anywhere in
        it ends the trial (_interrupted): one left running is counted, and waited for, by every later run."""
        try:
            return self._run_asked(trial)
        except KeyboardInterrupt:
            self._interrupted(trial)
            raise

    def _interrupted(self, trial) -> None:
        """The trial Ctrl-C stopped, unless it was told already: back in the queue if the study enqueued it (the
        baseline, INT8 by hand: _requeue), else failed with that reason."""
        import optuna

        if next(t for t in self.study.get_trials(deepcopy=False) if t.number == trial.number).state.is_finished():
            return
        if _enqueued(trial):
            _requeue(self.study, trial)
            return
        trial.set_user_attr("error", "interrupted (Ctrl-C)")
        self.study.tell(trial, state=optuna.trial.TrialState.FAIL)

    def _run_asked(self, trial) -> str | None:
        import optuna

        try:
            candidate = self._candidate(trial)
        except Exception as e:   # never a trial left running: every later worker would count it
            trial.set_user_attr("error", f"sampling its configuration failed: {e or type(e).__name__}")
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            if isinstance(e, ValueError):   # Optuna: a parameter's values changed (a study older than _check_space)
                raise BadInput(f"--resume: study {self.study.study_name!r} was started with another search space "
                               f"({e}): give the --space file it was started with, or start a new --study") from None
            raise
        key = candidate.key(self.identity)
        trial.set_user_attr("key", key)
        trial.set_user_attr("worker", WORKER)
        config = candidate.describe()
        if trial.user_attrs.get("baseline") and any(d.name == "backend" for d in self.dims):
            # beside trials that name theirs: the baseline runs on the profile's own backend, which it leaves implicit
            config = f"backend={self.job.backend or _profile_backend(self.job)} {config}"
        trial.set_user_attr("config", config)
        self.progress.status(f"trial {trial.number}: {config}")
        full = trial.user_attrs.get("again_of") is not None   # not answered by a screening run again
        cached = self._cached(key, trial.number, full)
        try:
            screen = self._screen(trial)
            outcome = cached or trials_.run(candidate, self.job, self.bundles / f"{key[:16]}.edgepkg",
                                            screen, self._can_still_win, self.progress, self._reference(trial),
                                            twin=lambda artifact: self._twin(artifact, trial.number, full),
                                            name=self.bundle_name(trial.number))
        except Exception as e:  # a failed trial is recorded with its reason; the study goes on
            if trial.user_attrs.get("baseline"):
                self._baseline_failed(trial, e)
            kind = "input" if isinstance(e, BadInput) else "device" if isinstance(e, DeviceFailure) else "error"
            trial.set_user_attr("error", f"{kind}: {_first_line(e)}")
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return kind
        if cached is None and outcome["measurement"] == "screening" and "twin_of" not in outcome:
            outcome["ruled_out"] = self.ruled_out
        self._resolve_relative(trial, outcome)
        self._record(trial, outcome, candidate, key, cached is not None)
        return None

    def _baseline_failed(self, trial, e: Exception) -> None:
        """Raise for the baseline that failed: nothing can be judged without it (a relative budget has no limit,
        the answer no reference), so the study stops, and the baseline goes back to the queue for the next run
        (--resume, another worker) to measure first. Bad input stays itself (exit 2); the device's failure is exit
        3 with its reason, where the study went on to fail every candidate and exit 1."""
        _requeue(self.study, trial)
        if isinstance(e, DeviceFailure):
            raise DeviceFailure(f"the baseline (the untouched model) could not be measured, and no candidate can be "
                                f"judged without it: {_first_line(e)}") from e
        raise e

    def _candidate(self, trial):
        """The trial's candidate: the baseline (enqueued), or what the sampler proposes."""
        every = _models_every_dimension(self.study.sampler)
        if trial.user_attrs.get("baseline"):
            if every:   # its enqueued parameters, registered for the sampler's model
                spaces.sample(self.dims, trial, every)
            return _baseline(self.dims, self.job)
        package, steps, threads = spaces.options(self.dims, spaces.sample(self.dims, trial, every))
        return trials_.Candidate(package, steps, threads)

    def _reference(self, trial):
        """The baseline to measure beside this trial (paired relative budgets), or None."""
        if not (self.job.relative_budgets and self.job.paired_baseline) or trial.user_attrs.get("baseline"):
            return None
        self.job.budgets.update(self._await_baseline())
        baseline = next(t for t in _complete(self.study) if t.user_attrs.get("baseline"))
        return trials_.Reference(self.local_bundle(baseline), baseline.user_attrs["candidate"]["threads"],
                                 dict(self.job.relative_budgets), self.study.user_attrs.get("baseline_figures"))

    def _resolve_relative(self, trial, outcome: dict) -> None:
        """Turn the relative budgets into limits once the baseline is measured: from this outcome when it is the
        baseline's, else from the study (another worker measured it), waiting for it while it runs. The
        baseline's own excess for them is added to its outcome, so every trial carries every constraint."""
        missing = [k for k in self.job.relative_budgets if k not in self.job.budgets]
        if not missing:
            return
        if trial.user_attrs.get("baseline"):
            measured = outcome["figures"]
            unmeasured = [k for k in missing if k not in measured]
            if unmeasured:
                raise BadInput(f"relative budget {unmeasured[0]}: the baseline did not measure it")
            limits = {k: self.job.relative_budgets[k] * measured[k] for k in missing}
            self.study.set_user_attr("resolved_budgets", limits)
            self.study.set_user_attr("baseline_figures", {k: measured[k] for k in missing})
        else:
            limits = self._await_baseline()
        self.job.budgets.update(limits)
        if "paired" in outcome:   # judged already, against the baseline measured beside it
            return
        outcome["violations"] = dict(outcome["violations"], **{
            k: trials_.excess(outcome["figures"].get(k), limits[k], KINDS[k].higher_is_better) for k in limits})

    def _await_baseline(self) -> dict:
        import time

        import optuna

        deadline = time.monotonic() + self.job.timeout
        while True:
            limits = self.study.user_attrs.get("resolved_budgets")
            if limits and any(t.user_attrs.get("baseline") for t in _complete(self.study)):
                return limits
            if time.monotonic() > deadline:
                raise DeviceFailure(f"the relative budgets cannot be set: the baseline trial was not measured "
                                    f"within --timeout {self.job.timeout:g} s")
            baseline = [t for t in self.study.get_trials(deepcopy=False) if t.user_attrs.get("baseline")]
            if baseline and all(t.state == optuna.trial.TrialState.FAIL for t in baseline):
                raise BadInput("the relative budgets cannot be set: the baseline trial failed "
                               f"({baseline[-1].user_attrs.get('error', 'no reason recorded')})")
            self.progress.status("waiting for the baseline (another worker measures it) to set the relative budgets")
            time.sleep(BASELINE_POLL_SECONDS)

    def _screen(self, trial) -> bool:
        """Whether this trial gets a screening run first. Never the baseline (the paired reference), nor INT8 by
        hand (the study promises an answer no worse than it, and a short run's noise could rule it out: a
        MobileNetV3 study on a busy host screened it out at 1.07x of its baseline, then read it faster than the
        answer in turn), nor on a Pareto front: a candidate slower than the best may still be on it, by accuracy
        or size."""
        return (self.screening and not self.multi and not trial.user_attrs.get("baseline")
                and not trial.user_attrs.get("textbook") and trial.user_attrs.get("again_of") is None)

    def _finished(self, attr: str, value: str, number: int, full: bool = False):
        """A finished, measured trial other than `number` whose user attribute `attr` is `value`, or None; one
        measured fully first (measure_ruled_out measures again what a screening run left out). full: only such."""
        import optuna

        found = [t for t in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
                 if t.user_attrs.get(attr) == value and t.number != number and "figures" in t.user_attrs]
        found.sort(key=lambda t: t.user_attrs.get("measurement") != "full")
        return next((t for t in found if not full or t.user_attrs.get("measurement") == "full"), None)

    def _cached(self, key: str, number: int, full: bool = False) -> dict | None:
        """The outcome of a finished trial with the same content key (an identical bundle and measurement)."""
        t = self._finished("key", key, number, full)
        return None if t is None else {k: t.user_attrs[k] for k in (
            "figures", "violations", "measurement", "results", "transforms", "paired", "artifact",
            "twin_of", "untrained", "ruled_out") if t.user_attrs.get(k) is not None}

    def _twin(self, artifact: str, number: int, full: bool = False) -> dict | None:
        """The outcome of a finished trial whose configuration packaged to the same artifact (trial.artifact_key),
        with "twin_of": the trial first measured; None when there is none."""
        t = self._finished("artifact", artifact, number, full)
        return None if t is None else dict({k: t.user_attrs[k] for k in (
            "figures", "violations", "measurement", "results", "paired", "ruled_out") if k in t.user_attrs},
            twin_of=t.user_attrs.get("twin_of") or t.number)

    def _record(self, trial, outcome: dict, candidate, key: str, cached: bool) -> None:
        import optuna

        figures = outcome["figures"]
        values = self._values(figures)
        if values is None:
            missing = ", ".join(n for n in self._objectives() if n not in figures)
            trial.set_user_attr("error", f"{missing} not measured on every device (an objective of the study)")
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return
        for name in ("figures", "violations", "measurement", "results", "seconds", "paired", "artifact", "twin_of",
                     "transforms_reused", "parity", "baseline_beside", "untrained", "noisy", "ruled_out"):
            trial.set_user_attr(name, outcome.get(name))
        trial.set_user_attr("stages", [{"stage": s["stage"], **s["figures"]} for s in outcome.get("transforms", [])])
        constraints = [outcome["violations"][k] for k in self.job.budgets] or [0.0]
        trial.set_user_attr("constraints", constraints)
        screened_only = outcome["measurement"] == "screening"
        for budget, excess in zip(self.job.budgets or ["none"], constraints):  # <= 0: the budget is met
            # accuracy is left to the full run: a candidate ruled out on speed says nothing about it
            unknown = screened_only and budget not in outcome["figures"]
            trial.set_constraint(budget, 0.0 if unknown else _for_sampler(excess))
        trial.set_user_attr("bundle", str(self.bundles / f"{key[:16]}.edgepkg"))
        trial.set_user_attr("candidate", dataclasses.asdict(candidate))
        trial.set_user_attr("cached", cached)
        self.study.tell(trial, values)

    def _objectives(self) -> tuple:
        return self.job.pareto_figures if self.multi else (self.job.objective,)

    def _values(self, figures: dict):
        names = self._objectives()
        if any(n not in figures for n in names):
            return None
        return [figures[n] for n in names]

    def _can_still_win(self, figures: dict, violations: dict, ratios: dict) -> bool:
        """After screening: a full measurement only for a candidate no budget rules out by far (> SCREEN_MARGIN)
        and, once a feasible best exists, no slower than it by more than SCREEN_MARGIN on the objective. With a
        paired objective both sides are ratios to the baseline measured beside them (`ratios`: the screening's),
        as trials are ranked: absolute figures minutes apart would carry the host's drift."""
        far = sorted(k for k, v in violations.items() if v > SCREEN_MARGIN)
        # why, for the trial's record: the table says what ruled it out, and confirm() measures it fully once the
        # best it was compared with is demoted (measure_ruled_out)
        self.ruled_out = {"by": "budgets", "budgets": far, "margin": SCREEN_MARGIN} if far else None
        if far:
            return False
        judge = _Judge.of(self.study, self.job.objective)
        best = min(((judge.value(t), t.number) for t in _complete(self.study) if judge.feasible(t)
                    and t.user_attrs.get("measurement") == "full"
                    and self.job.objective in t.user_attrs.get("figures", {})), default=None)
        value = (ratios if judge.paired else figures).get(self.job.objective)
        if best is None or value is None or value <= best[0] * (1 + SCREEN_MARGIN):
            return True
        self.ruled_out = {"by": "best", "trial": best[1], "margin": SCREEN_MARGIN}
        return False

    def bundle_name(self, number: int) -> str:
        """A trial's bundle name, which its result files and history are filed under: "STUDY-tN", as the tables
        and reports number trials (a content key, "d122836c09d9e2e9@local.json", said nothing to a reader)."""
        return f"{self.study.study_name}-t{number}"

    def local_bundle(self, t) -> pathlib.Path:
        """The trial's bundle on this host: built here, or (a trial another worker ran, or answered from the
        study) rebuilt from its recorded candidate. The rebuilt files are compared with those measured (the
        trial's artifact key); training on another host's CPU need not give the same bits, and a bundle that
        differs is recorded in rebuilt_differs: its figures are the measured bundle's, not its own."""
        path = self.bundles / f"{t.user_attrs['key'][:16]}.edgepkg"
        if not path.is_file():
            self.progress.status(f"building trial {t.number}'s bundle on this host")
            candidate = trials_.Candidate(**t.user_attrs["candidate"])
            manifest = trials_.package(candidate, self.job, path, self.progress, self.bundle_name(t.number))
            measured = t.user_attrs.get("artifact")
            if measured is not None and trials_.artifact_key(manifest, candidate.threads) != measured:
                self.rebuilt_differs.append(t.number)
                self.progress.status(f"trial {t.number}'s bundle, rebuilt on this host, differs from the one "
                                     "measured")
        return path

    def confirm(self) -> None:
        """The study's end, single objective: the finalists and the near misses measured again, then the answer
        and INT8 by hand measured in turn; none of it once the device has failed (each try would wait out
        --timeout again)."""
        if self.job.objective in SAME_EVERY_RUN or self.stopped_by_device:
            return
        try:
            for _ in range(RECHECK_TOP):   # a trial measured again may rank among the finalists, or disagree
                self.recheck_best()
                near = self.measure_near_misses()
                if not self.measure_ruled_out() and not near:
                    break
        except DeviceFailure as e:
            self.end_failed = _first_line(e)
            return
        self.compare_with_textbook()

    def recheck_best(self) -> None:
        """The best and the candidates within RECHECK_WITHIN of it are measured again (fully, in turn) and ranked
        by the median of their runs, so the choice between near-ties is not left to one run's noise. A best
        without rivals is measured again too: the answer's figure is then two runs, and the CLI says when one
        missed the budget (one baseline run beside a MobileNetV3 candidate read 2.4x the others, and made it
        "0.58x"). When a second run demotes the best, the new best and its near ties are measured again in turn,
        for at most RECHECK_TOP rounds. DeviceFailure: the runs so far are kept."""
        self._share_rechecks()
        for _ in range(RECHECK_TOP):
            close = self._unconfirmed_finalists()
            if not close:
                return
            for t in close:
                self.progress.status(f"measuring trial {t.number} again (the best, or within "
                                     f"{RECHECK_WITHIN:.0%} of it)")
                self._measure_runs(t, 2)

    def measure_near_misses(self) -> bool:
        """Each trial of _near_misses measured until it has JUDGED_RUNS runs, which then judge it by their median
        (_Judge); whether any was measured. DeviceFailure: the runs so far are kept."""
        judge = _Judge.of(self.study, self.job.objective)
        measured = False
        for t in self._near_misses(judge):
            excess = judge.violations(t)[self.job.objective]
            why = f"missed it by {excess:.0%}" if excess > 0 else "met it on one run, not on the other"
            self.progress.status(f"measuring trial {t.number} again, to {JUDGED_RUNS} runs, on "
                                 f"{self.job.objective} ≤ {judge.limit:g}{'x' if judge.paired else ''} (it {why})")
            measured = self._measure_runs(t, JUDGED_RUNS) or measured
        return measured

    def measure_ruled_out(self) -> bool:
        """Trials a screening run left out as slower than the best of their time, measured fully now that the best
        has changed (measuring again demoted it) and they can win against the best now; whether any was. Each is
        a new trial of the same configuration, asked to be measured fully ("again_of"): a finished trial's record
        cannot change. Ruled out on a budget, a trial stays out: no best decided that."""
        import optuna

        done = {t.user_attrs.get("key") for t in self.study.get_trials(deepcopy=False)
                if t.user_attrs.get("again_of") is not None}
        measured = False
        for t in self._ruled_out_by_another_best():
            if t.user_attrs.get("key") in done or not self._can_still_win(
                    t.user_attrs["figures"], t.user_attrs.get("violations") or {},
                    {k: v for k, v in (t.user_attrs.get("paired") or {}).items() if v is not None}):
                continue
            self.progress.status(f"measuring trial {t.number} fully: its screening run was ruled out against trial "
                                 f"{t.user_attrs['ruled_out']['trial']}, no longer the best")
            self.study.enqueue_trial(t.params, user_attrs={"again_of": t.number})
            trial = self.study.ask()
            if self._run_trial(trial) == "device":   # confirm() stops measuring, as on any device failure at the end
                raise DeviceFailure(next(u for u in self.study.get_trials(deepcopy=False)
                                         if u.number == trial.number).user_attrs.get("error"))
            measured = True
        return measured

    def _ruled_out_by_another_best(self) -> list:
        """Screened-only trials ruled out against a best that is not the best now, one per configuration."""
        ranked = _ranked_feasible(self.study, self.job.objective)
        best = ranked[0].number if ranked else None
        out = {}
        for t in _complete(self.study):
            why = t.user_attrs.get("ruled_out") or {}
            if why.get("by") == "best" and why.get("trial") != best and t.user_attrs.get("measurement") == "screening":
                out.setdefault(t.user_attrs.get("key"), t)
        return list(out.values())

    def _measure_runs(self, t, runs: int) -> bool:
        """Measure `t` again until it has `runs` runs of the objective, each stored as it is read (for its twins
        too: the same bundle), with its absolute figure (what the bundle's carried limit is checked against);
        whether a run was added."""
        judge = _Judge.of(self.study, self.job.objective)
        values = list(judge.runs(t) or [_value(t, self.job.objective, judge.paired)])
        figures = list(judge.run_figures(t) or [t.user_attrs["figures"].get(self.job.objective)])
        figures += [None] * (len(values) - len(figures))   # runs from before the figures were kept
        added = False
        while len(values) < runs:
            again = self._measure_again(t, judge.paired)
            if again is None:
                break
            values.append(again[0])
            figures.append(again[1])
            added = True
            # read again before writing: another worker may have stored other bundles' runs meanwhile (the same
            # bundle's, measured by both at once, are the last writer's)
            keys = self._same_bundle(t)
            for attr, readings in (("rechecked", values), ("rechecked_figures", figures)):
                stored = dict(self.study.user_attrs.get(attr, {}))
                stored.update(dict.fromkeys(keys, list(readings)))
                self.study.set_user_attr(attr, stored)
        return added

    def _near_misses(self, judge) -> list:
        """The trials, one per bundle, that missed only the objective's budget by at most NEAR_MISS, or whose runs
        disagree on it (0.30x and 0.40x against 0.36x), on a full measurement of fewer than JUDGED_RUNS runs; the
        NEAR_MISSES_MEASURED first in rank order. The baseline too, against an absolute budget (against a paired
        one its ratio is 1 by definition)."""
        if judge.limit is None:
            return []
        distinct = {}
        for t in _complete(self.study):
            missed = {k: v for k, v in judge.violations(t).items() if v > 0}
            near = set(missed) == {judge.objective} and missed[judge.objective] <= NEAR_MISS
            # runs that disagree, by any margin: one outlier second run (2.4x) must not rule a trial out alone
            if ((near or (set(missed) <= {judge.objective} and judge.disagree(t)))
                    and t.user_attrs.get("measurement") == "full"
                    and not (judge.paired and t.user_attrs.get("baseline"))
                    and len(judge.runs(t) or [None]) < JUDGED_RUNS
                    and math.isfinite(_value(t, judge.objective, judge.paired))):
                distinct.setdefault(t.user_attrs.get("artifact") or t.user_attrs["key"], t)
        # in rank order: those nearest to being the answer first
        return sorted(distinct.values(), key=judge.value)[:NEAR_MISSES_MEASURED]

    def _share_rechecks(self) -> None:
        """A twin or cached trial that finished after its bundle was measured again (on --resume, or another
        worker's) takes those readings: one bundle, one set of runs, never a measurement more."""
        keys_by_bundle = {}   # one pass over the trials (each _same_bundle call reads them all)
        for t in _complete(self.study):
            if t.user_attrs.get("artifact") and t.user_attrs.get("key"):
                keys_by_bundle.setdefault(t.user_attrs["artifact"], []).append(t.user_attrs["key"])
        for attr in ("rechecked", "rechecked_figures"):
            stored = dict(self.study.user_attrs.get(attr, {}))
            shared = dict(stored)
            for keys in keys_by_bundle.values():
                readings = next((shared[k] for k in keys if k in shared), None)
                if readings is not None:
                    shared.update({k: readings for k in keys if k not in shared})
            if shared != stored:
                self.study.set_user_attr(attr, shared)

    def _same_bundle(self, t) -> set:
        """The content keys of `t` and of every finished trial that packaged to its bundle (its twins)."""
        import optuna

        artifact = t.user_attrs.get("artifact")
        twins = self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)) if artifact else []
        return {t.user_attrs["key"]} | {u.user_attrs["key"] for u in twins if u.user_attrs.get("artifact") == artifact}

    def _unconfirmed_finalists(self) -> list:
        """The best (by the median of its runs) and those within RECHECK_WITHIN of it, if any was measured once."""
        judge = _Judge.of(self.study, self.job.objective)
        distinct = {}   # one trial per bundle: a cached answer or a twin is the same bundle and measurement
        for t in _ranked_feasible(self.study, self.job.objective):
            distinct.setdefault(t.user_attrs.get("artifact") or t.user_attrs["key"], t)
        finalists = list(distinct.values())[:RECHECK_TOP]
        if not finalists:
            return []
        score = {t.number: judge.value(t) for t in finalists}
        best = score[finalists[0].number]
        close = [t for t in finalists if score[t.number] <= best * (1 + RECHECK_WITHIN)]
        return [t for t in close if judge.runs(t) is None]

    def _measure_again(self, t, paired: bool) -> tuple | None:
        """The trial's objective measured again: (what it is ranked by: its ratio to the baseline measured right
        before it where the study pairs the objective, else the figure; the figure), or None where the run did
        not measure it."""
        if paired and t.user_attrs.get("baseline"):
            return 1.0, None   # its ratio to itself; nothing measured
        threads = t.user_attrs["candidate"]["threads"]
        reference = self._reference(t) if paired else None
        reference_docs = reference.measure(self.job, None, self.progress) if reference else None
        # the objective alone: an accuracy pass would be read by nobody (an accuracy objective is never measured
        # again: SAME_EVERY_RUN)
        docs = trials_.measure(self.local_bundle(t), threads, self.job, {"no_accuracy": True}, self.progress)
        figure = trials_.figures(docs, self.job.budgets).get(self.job.objective)
        if reference is None:
            return None if figure is None else (figure, figure)
        runs = self.study.user_attrs.get("baseline_again") or []   # its runs here count towards the carried limit
        self.study.set_user_attr("baseline_again", runs + [reference.figures(reference_docs)])
        ratio = reference.judge(docs, reference_docs)[self.job.objective][0]
        return None if ratio is None else (ratio, figure)

    def compare_with_textbook(self) -> None:
        """The best feasible trial and the textbook trial (INT8 alone, the backend's defaults), measured in turn
        VERSUS_TEXTBOOK_PAIRS times: the study attribute "versus_textbook" holds each pair's ratio (textbook /
        best) and their median. Two trials measured minutes apart are no comparison on a busy host (INT8
        alone read 0.76x to 1.13x of its paired baseline in three MobileNetV2 studies: docs/benchmarks.md)."""
        if not self.job.objective.startswith("latency_"):
            return
        ranked = _ranked_feasible(self.study, self.job.objective)
        textbook = next((t for t in _complete(self.study) if t.user_attrs.get("textbook")
                         and self.job.objective in t.user_attrs.get("figures", {})), None)
        if not ranked or textbook is None or ranked[0].user_attrs.get("artifact") == textbook.user_attrs.get(
                "artifact"):
            return
        best, judge = ranked[0], _Judge.of(self.study, self.job.objective)
        key = f"{best.user_attrs['key']}:{textbook.user_attrs['key']}"
        if (self.study.user_attrs.get("versus_textbook") or {}).get("key") == key:
            return   # an earlier run of this study compared the same two
        readings = {"textbook": [], "best": []}
        for n in range(VERSUS_TEXTBOOK_PAIRS):
            for name, t in (("textbook", textbook), ("best", best)):
                self.progress.status(f"measuring the best (trial {best.number}) and INT8 by hand (trial "
                                     f"{textbook.number}) in turn: {name}, {n + 1}/{VERSUS_TEXTBOOK_PAIRS}")
                try:
                    docs = trials_.measure(self.local_bundle(t), t.user_attrs["candidate"]["threads"], self.job,
                                           {"no_accuracy": True}, self.progress)
                except DeviceFailure:
                    return
                readings[name].append(trials_.figures(docs, self.job.budgets).get(self.job.objective))
        ratios = [round(a / b, 4) for a, b in zip(readings["textbook"], readings["best"]) if a and b]
        if ratios:
            self.study.set_user_attr("versus_textbook", {
                "key": key, "best": best.number, "textbook": textbook.number, "objective": self.job.objective,
                "readings": readings, "ratios": ratios, "median": statistics.median(ratios),
                # why INT8 by hand was not the answer, for when the readings in turn say it was faster
                "textbook_missed": sorted(k for k, v in judge.violations(textbook).items() if v > 0),
                "textbook_measurement": textbook.user_attrs.get("measurement"),
                "textbook_runs": judge.runs(textbook)})


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _for_sampler(excess: float) -> float:
    """A budget's relative excess as the samplers see it. Constrained TPE and NSGA-II rank infeasible trials by
    the sum of their excesses; an accuracy drop of 0.3 against 0.01 (excess 29) would drown a latency 50%
    over its limit (0.5). log1p keeps the order and the sign (met: <= 0) and weighs budgets alike."""
    return excess if excess <= 0 else math.log1p(excess)


def _complete(study) -> list:
    import optuna
    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))


def _feasible(t) -> bool:
    """Every budget met by the trial's own run (the samplers' view; a study's end judges by _Judge)."""
    return all(c <= 0 for c in t.user_attrs.get("constraints", [1.0]))


@dataclasses.dataclass(frozen=True)
class _Judge:
    """How the study ranks and judges a finished trial: the objective by the median of its runs where the trial
    was measured again (the study's "rechecked": {content key: runs}, in the units trials are ranked by: the ratio
    to the baseline beside each run where the objective is paired, else the figure), against its limit in those
    units; every other budget by the trial's own run. One run on a busy device can meet or miss a budget by its
    noise alone; the answer, the table and `report --study` all judge this way."""
    objective: str
    paired: bool
    limit: float | None   # the objective's budget in the units above; None without one
    rechecked: dict
    figures: dict         # the study's "rechecked_figures": {content key: the objective's figure in each run}

    @classmethod
    def of(cls, study, objective: str | None = None) -> "_Judge":
        identity = study.user_attrs.get("identity") or {}
        objective = objective or identity.get("objective", DEFAULT_OBJECTIVE)
        paired = _paired_objective(study, objective)
        budgets = dict(identity.get("budgets") or {}, **(study.user_attrs.get("resolved_budgets") or {}))
        limit = identity["relative_budgets"][objective] if paired else budgets.get(objective)
        return cls(objective, paired, limit, study.user_attrs.get("rechecked") or {},
                   study.user_attrs.get("rechecked_figures") or {})

    def runs(self, t) -> list | None:
        return self.rechecked.get(t.user_attrs.get("key"))

    def run_figures(self, t) -> list | None:
        """The objective's figure in each run (None where a run measured none: a paired baseline's ratio to
        itself); None for a trial measured once, or measured again before the figures were kept."""
        return self.figures.get(t.user_attrs.get("key"))

    def value(self, t) -> float:
        runs = self.runs(t)
        return statistics.median(runs) if runs else _value(t, self.objective, self.paired)

    def violations(self, t) -> dict:
        recorded = t.user_attrs.get("violations") or {}
        if not self.runs(t) or self.limit is None or self.objective not in recorded:
            return recorded
        higher = KINDS[self.objective].higher_is_better
        return dict(recorded, **{self.objective: trials_.excess(self.value(t), self.limit, higher)})

    def disagree(self, t) -> bool:
        """Whether its runs fall on both sides of the objective's limit."""
        runs = self.runs(t) or []
        return self.limit is not None and any(r > self.limit for r in runs) and any(r <= self.limit for r in runs)

    def feasible(self, t) -> bool:
        if not self.runs(t):
            return _feasible(t)
        return t.state.name == "COMPLETE" and all(v <= 0 for v in self.violations(t).values())


def _paired_objective(study, objective: str) -> bool:
    """Whether every candidate's objective was measured beside the baseline (a relative budget on it, paired)."""
    identity = study.user_attrs.get("identity") or {}
    return objective in (identity.get("relative_budgets") or {}) and identity.get("paired_baseline", False)


def _value(t, objective: str, paired: bool) -> float:
    """What trials are ranked by: with a paired objective, the ratio to the baseline measured right before the
    trial (the baseline's own: 1), which the host's drift between trials minutes apart leaves alone; else the
    figure."""
    if not paired:
        return t.user_attrs["figures"][objective]
    if t.user_attrs.get("baseline"):
        return 1.0
    ratio = (t.user_attrs.get("paired") or {}).get(objective)
    return ratio if ratio is not None else math.inf


def _ranked_feasible(study, objective: str) -> list:
    judge = _Judge.of(study, objective)
    full = [t for t in _complete(study) if judge.feasible(t) and objective in t.user_attrs.get("figures", {})]
    # a screening-only figure is less certain: full measurements rank first at equal value
    return sorted(full, key=lambda t: (judge.value(t), t.user_attrs.get("measurement") != "full"))


def _outcome(job: Job, study, name: str, multi: bool, runner) -> dict:
    ranked = _ranked_feasible(study, job.objective)
    best = ranked[0] if ranked else None
    front_figures = job.pareto_figures
    out = {"study": name, "objective": job.objective, "budgets": job.budgets, "trials": _rows(study),
           **_relative(study), "pareto": _pareto(_complete(study), front_figures),
           "pareto_figures": list(front_figures), "multi_objective": multi, "best": None,
           "closest": None if best else _closest(study, job.budgets), "notes": list(job.notes)}
    if best is not None:
        from ..bundle import rewrite

        chosen = job.output_dir / f"{name}-best.edgepkg"
        carried = _carried_limits(study, job)
        # named after the study: its results and history read "NAME-best@device", not a trial's content key; at
        # the threads the study chose (a DeiT study chose 1, and `bench` of its bundle ran the profile's 4)
        rewrite(runner.local_bundle(best), chosen, chosen.stem, {key: c["limit"] for key, c in carried.items()},
                best.user_attrs["candidate"]["threads"])
        if carried:
            study.set_user_attr("carried_limits", carried)
            out["carried_limits"] = carried
        out["best"] = dict(_best_row(study, best), bundle=str(chosen))
    stopped = runner.stopped_by_device
    out["exit_code"] = 3 if stopped and not best else (0 if best else 1)
    if stopped:
        out["stopped"] = f"{DEVICE_FAILURES_TO_STOP} trials in a row failed on the device: {stopped}"
    if runner.exhausted:
        out["exhausted"] = runner.exhausted
    noisy = [str(row["trial"]) for row in out["trials"] if row["noisy"] and not row["cached"] and row["twin_of"] is None]
    if noisy:   # the agent's warning, in each result file, said here too: the study's figures rest on those runs
        out["notes"].append(f"noisy runs (the agent's warning: a wide spread of latencies) in trial(s) "
                            f"{', '.join(noisy)}: their figures are less certain than the others'")
    if runner.end_failed:
        out["notes"].append(f"measuring again at the study's end stopped: the device failed ({runner.end_failed}); "
                            "the answer rests on the runs made before")
    out.update(_versus(study, ranked))
    if runner.rebuilt_differs:
        out["rebuilt_differs"] = sorted(set(runner.rebuilt_differs))
    return out


def _carried_limits(study, job) -> dict:
    """{budget: {"limit", "median", "runs"}}: each paired relative budget as the chosen bundle carries it, the
    ratio times the median of the baseline's runs in the study (its first, each one beside a candidate and each
    one beside a measurement again at the end).
    Trials carry the ratio times the first run alone, which `check` would then apply with that one run's noise
    (0.096 to 0.226 ms within one study on a busy host: docs/architecture.md). Empty without a paired budget."""
    if not (job.relative_budgets and job.paired_baseline):
        return {}
    first = study.user_attrs.get("baseline_figures") or {}
    measured = [t.user_attrs.get("baseline_beside") or {} for t in _complete(study)
                if not t.user_attrs.get("cached") and t.user_attrs.get("twin_of") is None]
    measured += study.user_attrs.get("baseline_again") or []
    out = {}
    for key, ratio in job.relative_budgets.items():
        runs = ([first[key]] if key in first else []) + [m[key] for m in measured if key in m]
        if runs:
            median = statistics.median(runs)
            out[key] = {"limit": ratio * median, "median": median, "runs": len(runs)}
    return out


def _versus(study, ranked: list) -> dict:
    """{"versus_textbook": the comparison of compare_with_textbook} when it was of the best trial; else empty."""
    versus = study.user_attrs.get("versus_textbook")
    return {"versus_textbook": versus} if ranked and versus and versus["best"] == ranked[0].number else {}


def _relative(study) -> dict:
    """The relative budgets as given, the baseline figures that set them, and whether the baseline was measured
    again beside each candidate (empty without any)."""
    identity = study.user_attrs.get("identity") or {}
    if not identity.get("relative_budgets"):
        return {}
    return {"relative_budgets": dict(identity["relative_budgets"]),
            "baseline_figures": study.user_attrs.get("baseline_figures", {}),
            "paired_baseline": identity.get("paired_baseline", False),
            "carried_limits": study.user_attrs.get("carried_limits", {})}


def load(url: str, name: str) -> dict:
    """A finished (or running) study read back from its storage, for `edgeopt report --study`: its objective,
    budgets, every trial, the Pareto front, and the best trial that meets every budget (None when none does).
    BadInput when the store has no such study."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(url)
    try:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
        if name not in names:
            known = ", ".join(sorted(names)) or "none"
            raise BadInput(f"--study {name}: no such study in the store (studies: {known})")
        study = optuna.load_study(study_name=name, storage=storage)
        identity = study.user_attrs.get("identity") or {}
        objective = identity.get("objective", DEFAULT_OBJECTIVE)
        budgets = dict(identity.get("budgets", {}), **(study.user_attrs.get("resolved_budgets") or {}))
        ranked = _ranked_feasible(study, objective)
        # recorded at its start; a study from before that: energy only where budgeted
        figures = tuple(study.user_attrs.get("pareto_figures") or _pareto_figures(budgets, objective))
        return {"study": name, "objective": objective, "budgets": budgets, "model": identity.get("model"),
                "profile": identity.get("profile"), "trials": _rows(study), "pareto_figures": list(figures),
                "pareto": _pareto(_complete(study), figures), "multi_objective": len(study.directions) > 1,
                "best": _best_row(study, ranked[0]) if ranked else None, **_relative(study), **_versus(study, ranked),
                "closest": None if ranked else _closest(study, budgets),
                "notes": list(study.user_attrs.get("notes", []))}
    finally:
        storage.remove_session()
        storage.engine.dispose()


def _rows(study, trials=None) -> list:
    """Rows of `trials` (default: every finished or failed trial), each judged as the study judges (_Judge), with
    its repeated measurements."""
    import optuna

    judge = _Judge.of(study)
    ended = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL)
    trials = trials if trials is not None else [t for t in study.get_trials(deepcopy=False) if t.state in ended]
    return [_row(t, judge) for t in trials]


def _best_row(study, t) -> dict:
    """The chosen trial's row, its objective as the study judged it where it was measured again: the median of its
    runs' figures, and of their ratios to the baseline beside each where paired (its first run alone read 2.4x the
    others once). Its first run's figures are kept as "first_run"; the other figures are its full run's (only the
    objective is measured again)."""
    judge = _Judge.of(study)
    row = _row(t, judge)
    figures = [f for f in judge.run_figures(t) or [] if f is not None]
    if not judge.runs(t) or len(figures) < 2:   # measured once, or before the runs' figures were kept
        return row
    row["first_run"] = {"figures": row["figures"], "paired": row["paired"]}
    row["figures"] = dict(row["figures"], **{judge.objective: statistics.median(figures)})
    if judge.paired and row["paired"]:
        row["paired"] = dict(row["paired"], **{judge.objective: statistics.median(judge.runs(t))})
    return row


def _row(t, judge: _Judge) -> dict:
    attrs = t.user_attrs
    return {"trial": t.number, "state": t.state.name.lower(), "config": attrs.get("config", ""),
            "figures": attrs.get("figures", {}), "violations": judge.violations(t),
            "feasible": judge.feasible(t) if t.state.name == "COMPLETE" else False,
            "rechecked": judge.runs(t), "rechecked_figures": judge.run_figures(t),
            "measurement": attrs.get("measurement"), "cached": attrs.get("cached", False),
            "twin_of": attrs.get("twin_of"), "transforms_reused": attrs.get("transforms_reused", False),
            "baseline": attrs.get("baseline", False), "textbook": attrs.get("textbook"), "error": attrs.get("error"),
            "bundle": attrs.get("bundle"), "stages": attrs.get("stages", []), "paired": attrs.get("paired"),
            "seconds": {} if attrs.get("cached") else attrs.get("seconds") or {},
            "results": attrs.get("results") or [], "parity": attrs.get("parity"), "untrained": attrs.get("untrained"),
            "noisy": attrs.get("noisy") or [], "ruled_out": attrs.get("ruled_out"), "again_of": attrs.get("again_of")}


def _pareto(trials: list, names: tuple) -> list:
    """Trial numbers not dominated (lower is better) on the figures any trial measured. A trial without one of
    them (a screening run has no accuracy) is left off: its place is unknown, and comparing every trial on the
    figures all of them have would drop accuracy from the front for one screened trial. A trial the cache or a
    twin answered is its first trial's point, listed once."""
    points = [(t.number, [t.user_attrs["figures"].get(n) for n in names]) for t in trials
              if "figures" in t.user_attrs and not t.user_attrs.get("cached") and t.user_attrs.get("twin_of") is None]
    present = [i for i in range(len(names)) if any(p[1][i] is not None for p in points)]
    vectors = [(n, [v[i] for i in present]) for n, v in points if all(v[i] is not None for i in present)]
    front = []
    for n, v in vectors:
        dominated = any(all(a <= b for a, b in zip(w, v)) and any(a < b for a, b in zip(w, v))
                        for m, w in vectors if m != n)
        if not dominated:
            front.append(n)
    return front


def _closest(study, budgets: dict) -> dict:
    """Per budget, the trial that came closest to meeting it and the other budgets that trial missed, and the
    trial that missed the fewest budgets by the least (what dominated the search when nothing met every budget);
    judged as the study judges (_Judge: a near miss measured again, by the median of its runs)."""
    judge = _Judge.of(study)
    measured = [(t, judge.violations(t)) for t in _complete(study) if t.user_attrs.get("violations")]
    if not measured:
        return {}
    per_budget = {}
    for key in budgets:
        t, violations = min(measured, key=lambda m: m[1].get(key, math.inf))
        figures = t.user_attrs["figures"]
        per_budget[key] = {"trial": t.number, "config": t.user_attrs.get("config"),
                           "measured": figures.get(key), "limit": budgets[key], "excess": violations.get(key),
                           "paired": (t.user_attrs.get("paired") or {}).get(key),
                           "runs": judge.runs(t) if key == judge.objective else None,
                           "measurement": t.user_attrs.get("measurement"), "ruled_out": t.user_attrs.get("ruled_out"),
                           # what the trade-off cost: the budgets this trial missed besides this one, and
                           # those it never measured (accuracy, after a screening run ruled it out on speed)
                           "others_missed": {k: v for k, v in violations.items()
                                             if k != key and v > 0 and k in figures},
                           "others_unmeasured": [k for k in budgets if k != key and k not in figures],
                           "others_figures": {k: figures[k] for k in budgets if k != key and k in figures},
                           # a budget no measured trial missed did not bind the search: said once, not as a miss
                           "met_by_every_trial": all(v.get(key, math.inf) <= 0 for _, v in measured)}
    overall = min(measured, key=lambda m: max(m[1].values()))[0]
    return {"per_budget": per_budget, "overall": _row(overall, judge)}
