"""A study in Optuna's RDB storage on the results store's database: opening the storage, making a study or resuming
one (refused where it is not the one that was started), and the trials a stopped worker left behind."""
from __future__ import annotations

import contextlib
import os
import socket
import zlib
from typing import TYPE_CHECKING

from .. import scratch
from ..errors import BadInput
from . import judging, samplers, space as spaces

if TYPE_CHECKING:
    from .study import Job

WORKER = f"{socket.gethostname()}:{os.getpid()}"
OPTUNA_SCHEMA_LOCK = 0x6F7074756E61  # "optuna": the advisory lock key under which its tables are made
STUDY_RUNS_LOCK = 0x72756E73  # "runs": the lock under which a worker reads and writes a study's runs measured again


def open_storage(store_url, writing: bool = False):
    """Optuna's RDB storage on the results store's database (the store opened first: its URL checked, its
    own schema in place, a bad URL one line with the password masked). Made under the store's lock: Optuna
    creates its tables on first use, and two workers started at once on a new database would race.
    writing (a study to run): a store that cannot be written is refused before anything is measured."""
    import optuna

    from ..store import Store

    with Store(store_url) as store:
        if writing:   # before the lock, whose errors it would wrap in a second "results store ...:"
            store.refuse_unwritable()
        with store.exclusive(OPTUNA_SCHEMA_LOCK, "cannot make the study tables"):
            return optuna.storages.RDBStorage(store.url.render_as_string(hide_password=False),
                                              engine_kwargs=None if store.sqlite else store.server_engine_options())


def store_errors() -> tuple:
    """What the study's storage raises when its database goes away or fails mid-study (a server stopped, a
    network cut, an SQLite lock held past the busy timeout, a full disk): Optuna wraps a failed commit as
    StorageInternalError, and a failed query is SQLAlchemy's own."""
    import optuna
    import sqlalchemy as sa
    return optuna.exceptions.StorageInternalError, sa.exc.OperationalError, sa.exc.InterfaceError


def store_lost(storage, name: str, error: BaseException) -> str:
    """One line for a study whose store went away: which store (password masked), what the database said, the
    result a trial could not store and where it was saved (the store's own error, where one came first), and how
    to go on. It ended in three chained tracebacks and exit 1 ("no configuration met the budgets")."""
    import sqlalchemy as sa

    from ..errors import DeviceFailure
    from ..store import _database_said, _without, masked
    chain, seen = [], error
    while seen is not None and seen not in chain:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    url = sa.engine.make_url(storage.url)
    said = next((e for e in chain if isinstance(e, sa.exc.SQLAlchemyError)), error)
    saved = next((str(e) for e in chain if isinstance(e, DeviceFailure)), None)
    failed = saved or f"results store {masked(url)}: failed during study {name!r}: {_database_said(said)}"
    message = (f"{failed}; study {name!r} stopped, its finished trials in the store: once the store works again "
               "(a server back, a lock released, room on its disk), the same command with --resume continues it")
    return _without(message, url.password)


@contextlib.contextmanager
def runs_locked(storage):
    """One worker at a time reading then writing the study's runs measured again (its "rechecked" attributes:
    one value each, so two workers' writes at one moment kept only the last writer's). None: a study in memory."""
    if storage is None:
        yield
        return
    from ..store import exclusive
    with exclusive(storage.engine, STUDY_RUNS_LOCK):
        yield


def open_study(storage, name: str, identity: dict, resume: bool, multi: bool, job: Job, dims: list, sampler: str):
    """The study `name`: made, with the baseline and INT8 by hand enqueued first, or (resume) the one that was
    started, refused where its identity, space or front differ, its orphaned trials failed or requeued."""
    import optuna

    existing = {s.study_name: s for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    if name in existing and not resume:
        raise BadInput(f"study {name!r} exists in the store; --resume continues it, or name another --study")
    if resume and name not in existing:
        raise BadInput(f"--resume: no study {name!r} in the store")
    if name not in existing:
        _refuse_another_studys_files(name, job.output_dir)
    if name in existing:   # its front as it began (the number of directions is fixed); before it was recorded,
        began = optuna.load_study(study_name=name, storage=storage)
        _check_pareto(began, multi)
        recorded = began.user_attrs.get("pareto_figures")
        front = tuple(recorded or judging.pareto_figures(job.budgets, job.objective))   # energy only where budgeted
        if multi and "energy_mj" in front and "energy_mj" not in job.pareto_figures:   # every trial would fail
            raise BadInput(f"--resume: study {name!r} searches a Pareto front with energy_mj, and "
                           f"{job.energy_absent}; resume it on devices that measure energy, or start a new --study")
        job.pareto_figures = front
        sampler = _resumed_sampler(began, sampler, multi, job)
    directions = ["minimize"] * (len(job.pareto_figures) if multi else 1)
    study = optuna.create_study(study_name=name, storage=storage, directions=directions, load_if_exists=True,
                                sampler=samplers.make(sampler, dims, _sampler_seed(job.seed, began if name in
                                                                                  existing else None, sampler), multi))
    if name in existing:
        _check_identity(study, identity)
        _check_space(study, dims)
        _fail_orphans(study)
        _fill_textbook(study, dims, job.profile_precision())
        _check_baseline(study)
        _said_other_devices(study, job)
    else:
        study.set_user_attr("identity", identity)
        study.set_user_attr("space", _space_record(dims))
        study.set_user_attr("pareto_figures", list(job.pareto_figures))
        study.set_user_attr("sampler", samplers.named(sampler, multi))
        every = samplers.models_every_dimension(study.sampler)
        precision = job.profile_precision()
        study.enqueue_trial(spaces.untouched(dims, precision) if every else {}, user_attrs={"baseline": True})
        first = spaces.textbook(dims, precision)
        if first is not None:   # the first step by hand is measured early: the answer is never worse than it
            study.enqueue_trial(spaces.params(dims, first, every),
                                user_attrs={"textbook": "INT8 alone, the backend's defaults"})
    return study


def _resumed_sampler(began, sampler: str | None, multi: bool, job: Job) -> str | None:
    """The sampler a resumed or joined study goes on with: the one it began with where --sampler is not given (a
    grid study resumed without it went on with TPE, proposing measured points again); another one named is taken,
    and said (Optuna samplers share a study's trials; the grid then proposes the points it has not itself)."""
    recorded = began.user_attrs.get("sampler")   # None: a study made before the sampler was recorded
    if sampler is None or recorded is None or samplers.named(sampler, multi) == recorded:
        return sampler or recorded
    job.notes.append(f"--sampler {sampler}: study {began.study_name!r} began with {recorded}, and goes on with "
                     f"{sampler} from its {len(began.get_trials(deepcopy=False))} trials")
    return sampler


def _sampler_seed(seed: int, began, sampler: str | None) -> int:
    """--seed for a new study; for one resumed or joined, --seed mixed with the trials it holds and this worker
    (host and process): the same seed made a second worker propose the first one's configurations in the same
    order (two workers on one study measured each configuration twice), and a resumed study its first run's
    start-up trials again; two workers joining at once see the same trials. A resumed study's proposals are
    therefore not those of another resume: the study's trials, not its sampler's draws, are its record. The grid
    keeps the seed: its points are indices into the order it shuffles, which every worker must share."""
    if began is None or sampler == "grid":
        return seed
    return (seed + len(began.get_trials(deepcopy=False)) + zlib.crc32(WORKER.encode())) % 2**32


# What of the command line each part of a study's identity is, for a --resume that differs in it
_IDENTITY_FLAGS = {"model": "MODEL", "model_sha256": "MODEL (its contents)",
                   "source_sha256": "MODEL (its weights file or its code)", "profile": "--profile",
                   "budgets": "--budget (the profile's included)", "relative_budgets": "--budget KEY=Nx",
                   "paired_baseline": "--baseline-once", "objective": "--objective", "input_shapes": "--input-shape",
                   # the profile's own backend is searched only where every device has its runtime
                   "backend": "backend (the devices' runtimes)",
                   # the sampler's and the training transforms' seed: another one proposes and trains other models
                   "seed": "--seed"}
_DATA_FLAGS = {"calib": "--calib", "eval": "--eval-data", "train": "--train-data"}


def check_study_name(name: str) -> None:
    """The study's name names its output directory and its bundles (NAME-t3, NAME-best), whose manifests refuse a
    path: refused here, before any work, rather than at the baseline's packaging with empty directories left."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or not name.isprintable() or len(name) > 150:
        raise BadInput(f"--study {name!r}: a study's name names its directory and bundles: printable, at most 150 "
                       "characters, no '/' or '\\', not '.' or '..'")


def _refuse_another_studys_files(name: str, output_dir) -> None:
    """A new study whose name another study (in another store) has used and answered: its chosen NAME-best would be
    overwritten without a word, and that study's report would describe a bundle no longer on disk. Its trial
    bundles alone are no answer: a study whose baseline could not be measured leaves them, and is run again."""
    import pathlib
    best = pathlib.Path(output_dir) / f"{name}-best.edgepkg"
    if best.exists():
        raise BadInput(f"--study {name}: {best} is another study's chosen bundle (a study of that name in another "
                       "store, or one whose store was removed), which this one would overwrite: name another "
                       "--study, give another --output-dir, or remove it")


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
    if "model_sha256" in recorded and "source_sha256" not in recorded:   # a study from before it was recorded:
        identity.pop("source_sha256", None)   # its trials' content keys were made without it, and stay so
    contents = [k for k in ("model_sha256", "source_sha256") if identity.get(k) is not None]   # file.py:fn: source
    if contents and all(recorded.get(k) == identity.get(k) for k in ("model_sha256", "source_sha256")):
        # the same contents by another path (a worker on another host, its own checkout): the study's own name
        # for it, which its trials' content keys were made with; the model is read from where it is given
        identity["model"] = recorded.get("model", identity["model"])
    # the data before the budgets: without --eval-data the profile's accuracy budget drops out too
    for key in ("model", "model_sha256", "source_sha256", "profile", "data", "input_shapes", "budgets",
                "relative_budgets", "paired_baseline", "objective", "seed", "backend"):
        then, now = recorded.get(key), identity.get(key)
        if then == now:
            continue
        if key == "data":   # which data file, not two dictionaries of sha256s
            name = next(k for k in _DATA_FLAGS if (then or {}).get(k) != (now or {}).get(k))
            flag, then, now = _DATA_FLAGS[name], _given((then or {}).get(name)), _given((now or {}).get(name))
        elif key == "relative_budgets":   # as they were typed: KEY=0.9x, not KEY=0.9
            flag, then, now = _IDENTITY_FLAGS[key], _shown_ratios(then), _shown_ratios(now)
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


def _check_baseline(study) -> None:
    """A study with relative budgets whose baseline failed for good (versions before the baseline went back to the
    queue failed it) has no limits to judge against: every trial of a --resume failed, and it ended with exit 1.
    Refused instead; a study with absolute budgets judges without it and goes on."""
    import optuna

    if not (study.user_attrs.get("identity") or {}).get("relative_budgets"):
        return
    baselines = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("baseline")]
    if baselines and all(t.state == optuna.trial.TrialState.FAIL for t in baselines):
        why = baselines[-1].user_attrs.get("error") or "no reason recorded"
        raise BadInput(f"--resume: study {study.study_name!r} lost its baseline in an earlier run ({why}), and its "
                       "relative budgets have no limit without it: start a new --study")


def _given(sha: str | None) -> str:
    return "not given" if sha is None else f"a file of sha256 {sha[:12]}…"


def _shown_ratios(ratios) -> str:
    return ", ".join(f"{k}={v:g}x" for k, v in ratios.items()) if ratios else "not given"


def _shown_identity(value) -> str:
    if value is None or value == {}:
        return "not given"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_shown_identity(v)}" for k, v in value.items())
    if isinstance(value, str) and len(value) == 64:
        return value[:12] + "…"
    return str(value)


BEAT_S = 30.0    # how often a worker marks its running trial alive (user attr "beat": a count, no host's clock)
STALE_S = 150.0  # another host's running trial whose beat this worker has seen stand still this long: its worker died


@contextlib.contextmanager
def beating(study, trial):
    """While this worker runs `trial`, its "beat" counts up every BEAT_S: another host's worker can tell a trial
    that is being measured from one whose worker died (a kill, a power cut), which was waited for up to twice
    --timeout and counted towards --trials for good (a team walkthrough). A count, not a time: the hosts' clocks
    need not agree."""
    import threading

    stop = threading.Event()
    study._storage.set_trial_user_attr(trial._trial_id, "beat", 0)   # it beats: only such trials are judged

    def beat():
        import optuna

        count = 0
        while not stop.wait(BEAT_S):
            count += 1
            try:
                study._storage.set_trial_user_attr(trial._trial_id, "beat", count)
            except optuna.exceptions.UpdateFinishedTrialError:   # told meanwhile
                return
            except Exception:   # noqa: BLE001 - the store briefly away: the next beat tries again
                continue
    thread = threading.Thread(target=beat, name=f"trial {trial.number} beat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


class StaleWatch:
    """Other workers' running trials, by the beat last seen and when (this host's monotonic clock)."""

    def __init__(self):
        self.seen = {}

    def stale(self, t, now: float) -> bool:
        """Whether another worker's running trial has given no beat for STALE_S of this worker's watching. A trial
        that never beat (an older edgeopt's worker) is never judged: its worker may be alive."""
        beat = t.user_attrs.get("beat")
        if beat is None:
            return False
        last = self.seen.get(t.number)
        if last is None or last[0] != beat:
            self.seen[t.number] = (beat, now)
            return False
        return now - last[1] > STALE_S

    def fail_dead(self, study) -> list:
        """Fail (or, the baseline and INT8 by hand, requeue) other workers' running trials gone stale; their
        numbers."""
        import time

        import optuna

        now, dead = time.monotonic(), []
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            if t.user_attrs.get("worker") in (None, WORKER) or not self.stale(t, now):
                continue
            again = study._storage.get_trial(t._trial_id)   # another survivor may have acted on it meanwhile
            if again.state != optuna.trial.TrialState.RUNNING or again.user_attrs.get("worker") != t.user_attrs[
                    "worker"] or again.user_attrs.get("beat") != t.user_attrs.get("beat"):
                continue
            try:
                if enqueued(t):
                    requeue(study, t)
                else:
                    fail_unfinished(study, t, f"its worker ({t.user_attrs['worker']}) gave no sign of life for "
                                              f"{STALE_S:.0f} s")
            except optuna.exceptions.UpdateFinishedTrialError:   # told meanwhile: by its worker, or another survivor
                continue
            dead.append(t.number)
        return dead


def _said_other_devices(study, job: Job) -> None:
    """A note where the study holds trials measured on other devices than this run's (a --resume with another
    device set, a team's worker driving its own boards): each trial is judged by the devices it ran on, and the
    chosen one is ranked among them all; a resume on a faster board passed without a word (a fleet walkthrough)."""
    from .trial import device_label

    mine = [device_label({"name": d, "hostname": socket.gethostname()}) for d in job.devices]
    other = {}
    for t in study.get_trials(deepcopy=False):
        devices = t.user_attrs.get("devices")   # none in trials an older edgeopt measured
        if devices and sorted(devices) != sorted(mine):
            other.setdefault(", ".join(devices), []).append(t.number)
    if other:
        said = "; ".join(f"{devices} (trial{'s' if len(n) > 1 else ''} {_ranges(n)})"
                         for devices, n in other.items())
        job.notes.append(f"study {study.study_name!r} holds trials measured on other devices than this run's "
                         f"({', '.join(mine)}): {said}; each trial is judged by the devices it ran on, and the "
                         "chosen one is ranked among them all")


def _ranges(numbers: list) -> str:
    """0-7, 9: trial numbers, in order, runs of them shortened."""
    runs = []
    for n in sorted(numbers):
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def _fail_orphans(study) -> None:
    """Trials left running by a worker of this host that is gone (a crash, a kill): failed with that reason,
    so the study does not wait for them. Another host's running trials may be alive and are left alone."""
    import optuna

    host = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        worker_host, _, pid = (t.user_attrs.get("worker") or "").rpartition(":")
        # this very process id: an earlier process's (a container's PID 1 restarted under one hostname), since
        # this one asks nothing before the study is open; it read as alive and was counted for ever
        if worker_host == host and pid.isdigit() and (int(pid) == os.getpid() or not scratch.alive(int(pid))):
            if enqueued(t):
                requeue(study, t)
                continue
            fail_unfinished(study, t, f"its worker (process {pid} on {worker_host}) stopped before it ended")


def _fill_textbook(study, dims: list, precision: str) -> None:
    """INT8 by hand still queued in a study an earlier edgeopt began, whose space lacked a dimension of today's
    (threads): measured, the sampler drew that dimension, so "the backend's defaults" ran at 1 thread where a new
    study's run at the device's cores (an upgrade walkthrough). Today's defaults fill what it does not fix."""
    import optuna

    first = spaces.textbook(dims, precision)
    if first is None:
        return
    whole = spaces.params(dims, first, samplers.models_every_dimension(study.sampler))
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)):
        fixed = t.system_attrs.get("fixed_params") or {}
        if t.user_attrs.get("textbook") and set(whole) - set(fixed) - set(t.params):
            # Optuna has no public call to change a queued trial's parameters; its storage allows it while waiting
            study._storage.set_trial_system_attr(t._trial_id, "fixed_params", {**whole, **fixed})


def fail_unfinished(study, t, why: str) -> None:
    """Fail a trial that a Ctrl-C or a dead worker stopped, not its configuration: marked `unfinished`, so it
    does not count towards --trials, and its configuration enqueued to be measured by the next run (--resume,
    another worker). Not put back itself as requeue() does: the grid sampler has already taken its point."""
    import optuna

    trial = optuna.trial.Trial(study, t._trial_id)
    trial.set_user_attr("error", f"{why}: not counted; measured again by the next run")
    trial.set_user_attr("unfinished", True)
    study.tell(t.number, state=optuna.trial.TrialState.FAIL)
    if t.user_attrs.get("again_of") is None:   # a measurement again at the end is the end's own to repeat
        study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})


DEVICE_LOST = "device_lost"   # study attr: the trials whose device failures in a row stopped the study


def uncount_device_lost(study, trials: list) -> None:
    """The trials that failed on the device in a row until the study stopped: the device's failure, not their
    candidates', so not counted towards --trials, and their configurations queued to be measured first by the
    next run (--resume, once the device is back). They used up --trials, and the sampler proposed one of them
    again straight away (a fleet walkthrough). A finished trial's attributes cannot change: the study lists them.
    Once: a configuration lost again on its retry counts (one that kills the agent, an out-of-memory or a hang,
    would otherwise stop every --resume first)."""
    lost = list(study.user_attrs.get(DEVICE_LOST) or [])
    first = [t for t in trials if t.user_attrs.get("retry_of") not in lost and t.number not in lost]
    study.set_user_attr(DEVICE_LOST, lost + [t.number for t in first])
    for t in first:
        if t.user_attrs.get("again_of") is None:   # a measurement again at the end is the end's own to repeat
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})


def enqueued(t) -> bool:
    """Whether the study enqueued this trial itself: the baseline, or INT8 by hand."""
    return bool(t.user_attrs.get("baseline") or t.user_attrs.get("textbook"))


def requeue(study, t) -> None:
    """Return a trial that did not finish (Ctrl-C, its worker gone) to the queue, where it keeps its place: the
    next run, --resume or another worker, measures it first. For the baseline and INT8 by hand, which the study
    enqueues once: failed, the baseline was never measured again, every trial against a relative budget failed
    with it, and nothing could be judged. Optuna has no public call for it; its storage allows it for a trial that
    has not finished."""
    import optuna

    study._storage.set_trial_state_values(t._trial_id, state=optuna.trial.TrialState.WAITING)


def remove_if_unmeasured(study, storage, resume: bool) -> None:
    """A study this worker began whose baseline cannot be built (bad input) or measured (the device failed)
    measured nothing: removed, so the same command runs again once the input or device is fixed (it read "study
    exists"). Kept where a trial completed or another worker has started one (it would lose its trial), and where
    the removal itself fails (the error is what the user needs to read)."""
    import optuna

    started = [t for t in study.get_trials(deepcopy=False) if t.state != optuna.trial.TrialState.WAITING]
    if resume or judging.complete(study) or any(t.user_attrs.get("worker") != WORKER for t in started):
        return
    try:
        optuna.delete_study(study_name=study.study_name, storage=storage)
    except Exception:  # noqa: BLE001  (storage errors of any kind: the error is raised either way)
        pass
