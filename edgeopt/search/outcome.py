"""A study's answer: the chosen bundle, every trial judged as the study judges it (judging.py), the Pareto front and,
where nothing met every budget, the closest miss per budget; read back from the storage for `report --study`."""
from __future__ import annotations

import math
import os
import pathlib
import statistics
from typing import TYPE_CHECKING

from ..budgets import KINDS, lookup
from ..errors import BadInput, CannotWrite, first_line
from . import judging, rdb
from .runner import DEVICE_FAILURES_TO_STOP, RUNS_APART

if TYPE_CHECKING:
    from .study import Job

def _ssh_flags(options) -> list:
    """The --known-hosts and --ssh-config the study reached its devices with: `bench` of the chosen bundle needs
    them too (its "to verify it" line, run as printed, found no known_hosts and failed)."""
    flags = []
    for flag, value in (("--known-hosts", getattr(options, "known_hosts", None)),
                        ("--ssh-config", getattr(options, "ssh_config", None))):
        flags += [flag, str(value)] if value else []
    return flags


def _store_flags(job: Job) -> list:
    """--results-dir and --store as the study was given them, for the command that verifies its answer: without
    them its result went to ./results and another store, which the team's `--baseline store` never read (a team
    walkthrough). Without its password (no secret in a message; `***` in its place was a login that fails):
    libpq then reads it from PGPASSWORD or ~/.pgpass."""
    import sqlalchemy as sa

    from ..store import masked, parse_url

    flags = ["--results-dir", str(job.results_dir)] if str(job.results_dir) != "results" else []
    if not job.store_url:
        return flags
    url = parse_url(job.store_url)   # URL.set(password=None) keeps the password: None there means "unchanged"
    url = sa.engine.URL.create(url.drivername, url.username, None, url.host, url.port, url.database, url.query)
    return flags + ["--store", masked(url)]


def answer(job: Job, study, name: str, multi: bool, runner) -> dict:
    ranked = judging.ranked_feasible(study, job.objective)
    front_figures = job.pareto_figures
    # the devices, and the inventory file that names them (`bench` of the chosen bundle needs it too)
    inventory = str(job.inventory) if isinstance(job.inventory, (str, os.PathLike)) else None
    out = {"study": name, "objective": job.objective, "budgets": job.budgets, "devices": list(job.devices),
           "inventory": inventory, "ssh_flags": _ssh_flags(job.ssh_options), "store_flags": _store_flags(job),
           "trials": _rows(study),
           **_relative(study), "pareto": _pareto(judging.complete(study), front_figures,
                                                 judging.Judge.of(study, job.objective)),
           "pareto_figures": list(front_figures), "multi_objective": multi, "best": None,
           "closest": None if ranked else _closest(study, job.budgets),
           "notes": list(job.notes) + _worst_devices_note(study)}
    carried = _carried_limits(study, job)
    if carried:
        out["carried_limits"] = carried
    best = _choose(study, ranked, out)
    if best is None:   # no bundle is written, so none carries them (the text said "the chosen bundle carries")
        out.pop("carried_limits", None)
    else:
        from ..bundle import rewrite

        chosen = job.output_dir / f"{name}-best.edgepkg"
        # named after the study: its results and history read "NAME-best@device", not a trial's content key; at
        # the threads the study chose (a DeiT study chose 1, and `bench` of its bundle ran the profile's 4)
        try:
            rewrite(runner.local_bundle(best), chosen, chosen.stem, {key: c["limit"] for key, c in carried.items()},
                    best.user_attrs["candidate"]["threads"])
        except CannotWrite as e:   # a disk full at the very end: the measured study stays, and says how to finish
            raise BadInput(f"{e}; study {name!r} keeps every trial: make room and run the same command with "
                           "--resume to write it") from None
        if carried:
            study.set_user_attr("carried_limits", carried)
        out["best"] = dict(_best_answer(out, _best_row(study, best)), bundle=str(chosen))
    stopped = runner.stopped_by_device
    # 0 promises what `check` of the chosen bundle will say on the study's own figures: a best that misses a limit
    # its bundle carries (a paired budget met beside a slow baseline run) is written and shown, but is no success
    out["exit_code"] = 3 if stopped and not best else (0 if best and out["best"]["confirmed"] else 1)
    if stopped:
        out["stopped"] = (f"{DEVICE_FAILURES_TO_STOP} trials in a row failed on the device: {stopped} (not counted "
                          "towards --trials: --resume measures their configurations first)")
    lost = [row for row in out["trials"] if row["state"] == "fail" and (row.get("error") or "").startswith("device: ")
            and row.get("again_of") is None]   # a measurement again at the end is beyond --trials
    if lost and not stopped:   # fewer in a row than stop the study: a device that died near its end said nothing
        out["notes"].append(f"{len(lost)} trial(s) failed on the device (trial {', '.join(str(r['trial']) for r in lost)}"
                            f"; the last: {lost[-1]['error'][len('device: '):]}): they count towards --trials, and the "
                            f"answer rests on the {sum(r['state'] == 'complete' for r in out['trials'])} trials that "
                            "were measured")
    if runner.exhausted:
        out["exhausted"] = runner.exhausted
    noisy = [str(row["trial"]) for row in out["trials"] if row["noisy"] and not row["cached"] and row["twin_of"] is None]
    if noisy:   # the agent's warning, in each result file, said here too: the study's figures rest on those runs
        out["notes"].append(f"noisy runs (the agent's warning: a wide spread of latencies, or a share of runs over "
                            f"twice the median, which p90 reads) in trial(s) {', '.join(noisy)}: their figures are "
                            "less certain than the others'")
    if "0" in noisy and job.relative_budgets:   # the figures every relative limit and ratio was set from
        out["notes"].append(f"the baseline (trial 0) itself ran noisy, and the relative budgets "
                            f"({', '.join(f'{k}={v:g}x' for k, v in job.relative_budgets.items())}) take their "
                            "limits from it: on a quiet device, or with absolute budgets, the answer may differ")
    if best is not None:
        _note_spread(out["notes"], judging.Judge.of(study, job.objective), best)
        _note_threads_alone(out["notes"], study, best, job.backend or job.profile_backend())
    _note_baseline_meets_itself(out, job)
    _note_baseline_at_chance(out, study, job)
    if runner.end_failed:
        out["notes"].append(f"measuring again at the study's end stopped: the device failed ({runner.end_failed}); "
                            "the answer rests on the runs made before")
    out.update(_versus(study, best))
    if runner.rebuilt_differs:
        out["rebuilt_differs"] = sorted(set(runner.rebuilt_differs))
    removed = _remove_spare_bundles(job, study, runner, out)
    out["trial_bundles"] = dict(_trial_bundles(runner.bundles), **removed)
    return out


def _trial_bundles(folder) -> dict:
    """Where the candidates' bundles stay, and how much they hold: 313 MB after three trials of a ResNet-50, with
    only the chosen bundle named (a walkthrough)."""
    files = [p for p in folder.glob("*.edgepkg") if p.is_file()] if folder.is_dir() else []
    return {"folder": str(folder), "count": len(files), "bytes": sum(p.stat().st_size for p in files)}


def _remove_spare_bundles(job: Job, study, runner, out: dict) -> dict:
    """At the study's end, the bundles of finished trials that nothing names or measures again are removed: the
    folder grew by a bundle per configuration (a 40-trial ResNet-50 study, some 4 GB) and the user was told to
    remove it by hand. Kept: the baseline's, INT8 by hand's, the chosen one's, the Pareto front's, those measured
    again at the end and the closest misses; a later --resume or another worker rebuilds any other it needs from
    its configuration (Runner.local_bundle). Nothing is removed with --keep-bundles, after a stop by the device
    (--resume measures those configurations first), or while another worker still runs a trial (it may be
    reading one). Returns what was done, for the table and --json; rows of removed bundles name none."""
    import optuna

    if job.keep_bundles:
        return {"kept_all": "--keep-bundles"}
    if runner.stopped_by_device:
        return {"kept_all": "the study stopped on its device, and --resume measures those configurations first"}
    trials = study.get_trials(deepcopy=False)
    if any(t.state in (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING) for t in trials):
        return {"kept_all": "another worker is still running a trial"}
    named = set(out["pareto"]) | ({out["best"]["trial"]} if out["best"] else set())
    closest = out["closest"] or {}
    named |= {c["trial"] for c in (closest.get("per_budget") or {}).values()}
    named |= {closest["overall"]["trial"]} if closest.get("overall") else set()
    keep = {t.user_attrs.get("key") for t in trials if t.number in named or t.user_attrs.get("baseline")
            or t.user_attrs.get("textbook") or t.user_attrs.get("again_of") is not None}
    removed = {"removed": 0, "removed_bytes": 0}
    for key in {t.user_attrs.get("key") for t in trials if t.state.is_finished()} - keep - {None}:
        path = runner.bundles / f"{key[:16]}.edgepkg"
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:   # screened out before it was built, or removed by an earlier run's end
            continue
        except OSError as e:   # the answer and STUDY-best are written: a bundle that stays is said, not fatal
            out["notes"].append(f"trial bundle {path} not removed: {e.strerror or e}")
            continue
        removed["removed"] += 1
        removed["removed_bytes"] += size
    for row in out["trials"]:   # this host's bundles that are gone, an earlier run's end's too: no path to them
        if row["bundle"] and pathlib.Path(row["bundle"]).parent == runner.bundles \
                and not pathlib.Path(row["bundle"]).is_file():
            row["bundle"] = None
    return removed


def _note_threads_alone(notes: list, study, best, own_backend: str | None = None) -> None:
    """Where the chosen configuration is the untouched model at another thread count, say that the gain is the
    thread setting's: a 6-trial study on a loaded 2-core host chose fp32 at 1 thread over 2 (0.48x), read as a
    compression result (a walkthrough)."""
    baseline = next((t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("baseline")
                     and t.user_attrs.get("candidate")), None)
    mine, theirs = best.user_attrs.get("candidate") or {}, (baseline.user_attrs["candidate"] if baseline else {})
    # the profile's own backend, named or not: a baseline from before it named its backend left it implicit
    def package(candidate):
        return {k: v for k, v in (candidate.get("package") or {}).items() if not (k == "backend" and v == own_backend)}
    if not theirs or best.user_attrs.get("baseline") or mine.get("steps") or theirs.get("steps") \
            or package(mine) != package(theirs) or mine.get("threads") == theirs.get("threads"):
        return
    notes.append(f"the chosen configuration compresses nothing: it is the untouched model at threads="
                 f"{mine.get('threads')}, where the baseline ran at {theirs.get('threads') or 'the default'}, so its "
                 f"gain is the thread setting's (under the load the device had while measured); `edgeopt bench "
                 f"BUNDLE --threads {mine.get('threads')}` applies it to the original bundle")


def _note_baseline_meets_itself(out: dict, job: Job) -> None:
    """With --baseline-once, a limit under 1x is set from the baseline's first run; where the baseline's own runs
    then met it (a cold first run: 0.0312 ms, then 0.0214 and 0.0211), the device's speed moved, and so does any
    candidate's margin: said, not left for the user to find in the table."""
    under_one = [k for k, ratio in (job.relative_budgets or {}).items() if ratio < 1]
    baseline = next((r for r in out["trials"] if r["baseline"] and r["state"] == "complete"), None)
    # met on the relative budgets themselves, whatever an absolute one (peak_rss_mb=10) says
    if job.paired_baseline or not under_one or baseline is None or any(
            (baseline["violations"].get(k) or 0) > 0 or k not in baseline["violations"] for k in under_one):
        return
    out["notes"].append(f"the baseline (the untouched model) meets its own relative limit on {', '.join(under_one)}, "
                        "set from its first run: the device ran faster after it, and a candidate's margin over the "
                        "limit is not to be trusted; without --baseline-once each candidate is judged against a "
                        "baseline run beside it")


def _choose(study, ranked: list, outcome: dict):
    """The chosen trial: the first ranked that also meets the absolute limits its bundle would carry (a paired
    relative budget as `check` applies it: outcome's carried_limits), else the first ranked (then unconfirmed);
    None where nothing met every budget. A trial passed over for that is noted in the outcome."""
    passed_over = []
    for t in ranked:
        misses = judging.carried_misses(outcome, _best_row(study, t), f"trial {t.number}")
        if not misses:
            outcome["notes"] += [f"trial {n} ranked above the chosen trial {t.number} by its ratio to the baseline "
                                 f"beside it, and was passed over: {why}" for n, why in passed_over]
            return t
        passed_over.append((t.number, misses[0]))
    return ranked[0] if ranked else None   # none confirmed: the first ranked, its warnings saying why


def _best_answer(outcome: dict, row: dict) -> dict:
    """The chosen trial's row with why its figures are not to be relied on as they stand (`warnings`), and whether
    they meet every limit its bundle carries (`confirmed`: what `check` of the bundle will apply)."""
    return dict(row, warnings=judging.best_warnings(outcome, row), confirmed=not judging.carried_misses(outcome, row))


def _carried_limits(study, job) -> dict:
    """{budget: {"limit", "median", "runs"}}: each paired relative budget as the chosen bundle carries it, the
    ratio times the median of the baseline's runs in the study (its first, each one beside a candidate and each
    one beside a measurement again at the end).
    Trials carry the ratio times the first run alone, which `check` would then apply with that one run's noise
    (0.096 to 0.226 ms within one study on a busy host: docs/architecture.md). Empty without a paired budget."""
    if not (job.relative_budgets and job.paired_baseline):
        return {}
    first = study.user_attrs.get("baseline_figures") or {}
    measured = [t.user_attrs.get("baseline_beside") or {} for t in judging.complete(study)
                if not t.user_attrs.get("cached") and t.user_attrs.get("twin_of") is None]
    measured += study.user_attrs.get("baseline_again") or []
    out = {}
    base = next((t for t in judging.complete(study) if t.user_attrs.get("baseline")), None)
    for key, ratio in job.relative_budgets.items():
        runs = ([first[key]] if key in first else []) + [m[key] for m in measured if key in m]
        if runs:
            median = statistics.median(runs)
            out[key] = {"limit": ratio * median, "median": median, "runs": len(runs)}
            by_device = by_device_of(base, key) if base is not None else {}
            if len(by_device) > 1:
                out[key]["devices"] = by_device
    return out


def _worst_devices_note(study) -> list:
    """Over several devices, the device that read each figure worst in most trials: the table shows each trial's
    worst device's figures, unnamed, and one slow board (throttling, another image) decided them all unsaid."""
    import collections

    counts = collections.defaultdict(collections.Counter)
    for t in judging.complete(study):
        if not t.user_attrs.get("cached"):
            for key, device in (t.user_attrs.get("worst_devices") or {}).items():
                counts[key][device] += 1
    said = []
    for key, devices in counts.items():
        (device, n), total = devices.most_common(1)[0], sum(devices.values())
        said.append(f"{key} on {device} in {n} of {total} trials")
    return [f"the trials' figures are each one's worst device's; the worst was: {'; '.join(said)}"] if said else []


def by_device_of(trial, key: str) -> dict:
    """{device: the trial's first-run figure there} from its result files on this host (a study over several
    devices keeps each figure's worst device, unnamed): the limit a study carries is set by the baseline's slowest
    device, looser than the ratio on the others (check passed the untouched model on the two faster devices), and
    a closest miss was "12.74 ms against 8 ms" of no device (a fleet walkthrough)."""
    from ..results import load

    out = {}
    for path in trial.user_attrs.get("results") or []:
        try:
            doc = load(path)
        except BadInput:   # another worker's host holds it
            continue
        value, _ = lookup(doc, KINDS[key].path)
        if value is not None:
            out[doc["device"]["name"]] = value
    return out


def _versus(study, best) -> dict:
    """{"versus_textbook": the comparison of compare_with_textbook} when it was of the chosen trial; else empty."""
    versus = study.user_attrs.get("versus_textbook")
    return {"versus_textbook": versus} if best and versus and versus["best"] == best.number else {}


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


def _note_baseline_at_chance(out: dict, study, job) -> None:
    """Said where the baseline's top-1 is no better than answering the eval data's commonest label: every
    candidate's accuracy drop is then measured from a model that does not work (a pruned one "met" 0.01 at 0 %
    against the source's 0 %, in a user review)."""
    import pathlib

    from ..data import LABELS, read_npz
    from ..errors import BadInput
    from ..pipeline import chance_accuracy_notes

    baseline = next((t for t in study.trials if t.number == 0), None)
    top1 = ((baseline.user_attrs.get("figures") or {}).get("min_top1") if baseline is not None else None)
    if top1 is None or not job.eval_data:
        return
    try:   # the reader every verb uses: a file changed since the study read it is no traceback here
        labels = read_npz(pathlib.Path(job.eval_data), "eval data", str(job.eval_data)).get(LABELS)
    except BadInput:
        return
    if labels is not None:
        out["notes"] += [n.removeprefix("warning: ") for n in chance_accuracy_notes(
            {LABELS: labels}, {"top1": top1, "model": "the baseline (trial 0)"})]


def _note_spread(notes: list, judge, best) -> None:
    """Said where the chosen trial's runs stay far apart even after a third (runner.RUNS_APART): its figure is
    their median, and the device was noisy while it was measured."""
    runs = judge.runs(best) or []
    if judging.spread(runs) > RUNS_APART:
        # paired: each run's ratio to the baseline beside it, not milliseconds (they read as ms once)
        shown = ", ".join(f"{r:.4g}x" if judge.paired else f"{r:.4g}" for r in runs)
        what = " (each its ratio to the baseline measured beside it)" if judge.paired else ""
        notes.append(f"the chosen trial {best.number}'s runs of {judge.objective} are {judging.spread(runs):.2f}x "
                     f"apart ({shown}){what}: it is judged by their median, on a device that was noisy while they "
                     "ran; `bench` it again to be sure")


def load(url: str, name: str) -> dict:
    """A finished (or running) study read back from its storage, for `edgeopt report --study`: its objective,
    budgets, every trial, the Pareto front, and the best trial that meets every budget (None when none does).
    BadInput when the store has no such study."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = rdb.open_storage(url)
    try:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
        if name not in names:
            known = ", ".join(sorted(names)) or "none"
            raise BadInput(f"--study {name}: no such study in the store (studies: {known})")
        study = optuna.load_study(study_name=name, storage=storage)
        return _read(study, name)
    except (TypeError, ValueError, KeyError, AttributeError) as e:   # what edgeopt wrote, edited by hand: not a
        # traceback, exit 1 (a fuzzing audit: `figures` 5); --debug shows where
        raise BadInput(f"--study {name}: the store holds an attribute of it that does not read ({type(e).__name__}: "
                       f"{first_line(e)}): a row edited by hand?") from e
    finally:
        storage.remove_session()
        storage.engine.dispose()


def _read(study, name: str) -> dict:
    """The study's answer as `load` returns it."""
    identity = study.user_attrs.get("identity") or {}
    objective = identity.get("objective", judging.DEFAULT_OBJECTIVE)
    budgets = dict(identity.get("budgets", {}), **(study.user_attrs.get("resolved_budgets") or {}))
    ranked = judging.ranked_feasible(study, objective)
    # recorded at its start; a study from before that: energy only where budgeted
    figures = tuple(study.user_attrs.get("pareto_figures") or judging.pareto_figures(budgets, objective))
    out = {"study": name, "objective": objective, "budgets": budgets, "model": identity.get("model"),
           "profile": identity.get("profile"), "trials": _rows(study), "pareto_figures": list(figures),
           "pareto": _pareto(judging.complete(study), figures, judging.Judge.of(study, objective)),
           "multi_objective": len(study.directions) > 1,
           **_relative(study), "closest": None if ranked else _closest(study, budgets),
           "notes": list(study.user_attrs.get("notes", [])) + _not_over(study)}
    best = _choose(study, ranked, out)   # as the study chose it at its end
    out["best"] = _best_answer(out, _best_row(study, best)) if best else None
    return dict(out, **_versus(study, best))


def _not_over(study) -> list:
    """A note where trials are running (a worker at work, or one killed): a report of a study in progress read
    as its final answer (a walkthrough). Trials waiting in the queue are a later --resume's, not a sign of it."""
    import optuna

    running = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)))
    if not running:
        return []
    return [f"the study is not over: {running} trial{'' if running == 1 else 's'} running (a worker at work, or "
            "one killed, whose trial its next --resume fails); this is its answer so far"]


def _rows(study, trials=None) -> list:
    """Rows of `trials` (default: every finished or failed trial), each judged as the study judges (judging.Judge), with
    its repeated measurements."""
    import optuna

    judge = judging.Judge.of(study)
    ended = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL)
    trials = trials if trials is not None else [t for t in study.get_trials(deepcopy=False) if t.state in ended]
    return [_judged_row(t, judge) for t in trials]


def _best_row(study, t) -> dict:
    return _judged_row(t, judging.Judge.of(study))


def _judged_row(t, judge: judging.Judge) -> dict:
    """A trial's row, its objective as the study judged it where it was measured again: the median of its runs'
    figures, and of their ratios to the baseline beside each where paired (its first run alone read 2.4x the others
    once; `--json`'s trials gave the first run beside a table and a best judged by the median). Its first run's
    figures are kept as "first_run"; the other figures are its full run's (only the objective is measured again)."""
    row = _row(t, judge)
    figures = [f for f in judge.run_figures(t) or [] if f is not None]
    if not judge.runs(t) or len(figures) < 2:   # measured once, or before the runs' figures were kept
        return row
    row["first_run"] = {"figures": row["figures"], "paired": row["paired"]}
    row["figures"] = dict(row["figures"], **{judge.objective: statistics.median(figures)})
    if judge.paired and row["paired"]:
        row["paired"] = dict(row["paired"], **{judge.objective: statistics.median(judge.runs(t))})
    return row


def _row(t, judge: judging.Judge) -> dict:
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
            "results": attrs.get("results") or [], "devices": attrs.get("devices") or [],
            "worst_devices": attrs.get("worst_devices") or {},
            "parity": attrs.get("parity"), "untrained": attrs.get("untrained"), "noisy": attrs.get("noisy") or [],
            "ruled_out": attrs.get("ruled_out"), "again_of": attrs.get("again_of")}


def _pareto(trials: list, names: tuple, judge) -> list:
    """Trial numbers not dominated (lower is better) on the figures any trial measured, the objective as the study
    judges it (judge.value: a paired objective by the ratio to the baseline beside each trial, so the chosen trial,
    ranked that way, is on the front; by the figures a trial that read 0.93x was left off beside one that read
    0.98x on a quicker moment of the host). A trial without one of them (a screening run has no accuracy) is left
    off: its place is unknown, and comparing every trial on the figures all of them have would drop accuracy from
    the front for one screened trial. A trial the cache or a twin answered is its first trial's point, listed
    once. An objective measured again is its runs' median, as every table shows it and the study judged it (the
    first run's figure put a dominated trial on the front and left the chosen one off: a walkthrough)."""
    def point(t):
        return [_finite(judge.value(t)) if n == judge.objective and (judge.paired or judge.runs(t))
                else t.user_attrs["figures"].get(n) for n in names]
    points = [(t.number, point(t)) for t in trials
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


def _finite(value: float):
    """None for a paired trial without its ratio (judging.objective_value's inf): off the front, as a trial
    without a figure is, not placed there by its other figures."""
    return value if math.isfinite(value) else None


def _closest(study, budgets: dict) -> dict:
    """Per budget, the trial that came closest to meeting it and the other budgets that trial missed, and the
    trial that missed the fewest budgets by the least (what dominated the search when nothing met every budget);
    judged as the study judges (judging.Judge: a near miss measured again, by the median of its runs)."""
    judge = judging.Judge.of(study)
    identity = study.user_attrs.get("identity") or {}
    relative = (identity.get("relative_budgets") or {}) if identity.get("paired_baseline") else {}
    measured = [(t, judge.violations(t)) for t in judging.complete(study) if t.user_attrs.get("violations")]
    if not measured:
        return {}
    per_budget = {}
    for key in budgets:
        # of the trials that meet it, the one that misses the others by the least: the float
        # baseline (first) said "met accuracy_drop, but missed the latency by 100%" beside INT8 at 54%
        t, violations = min(measured, key=lambda m: (max(m[1].get(key, math.inf), 0), _missed_by(m[1], key)))
        figures = t.user_attrs["figures"]
        runs = judge.runs(t) if key == judge.objective else None
        figure, paired = _as_judged(judge, t, figures.get(key), (t.user_attrs.get("paired") or {}).get(key), runs)
        if t.user_attrs.get("baseline") and key in relative and paired is None:
            paired = 1.0   # its own ratio: nothing came closer to a relative budget than the model as given
        devices = by_device_of(t, key) if key in KINDS else {}   # a key no budget kind has no figure in a file
        per_budget[key] = {"trial": t.number, "config": t.user_attrs.get("config"),
                           # where several devices measured it, the one whose figure is the trial's (the worst)
                           "device": _worst(devices, key) if len(devices) > 1 else None,
                           "baseline": bool(t.user_attrs.get("baseline")),
                           "measured": figure, "limit": budgets[key], "excess": violations.get(key),
                           "paired": paired, "runs": runs,
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


def _worst(devices: dict, key: str) -> str:
    pick = min if KINDS[key].higher_is_better else max
    return pick(devices, key=devices.get)


def _as_judged(judge, t, measured, paired, runs) -> tuple:
    """(figure, ratio to its paired baseline) of a near miss as the study judged it: measured again, by the median
    of its runs (its first run's ratio read 0.754 beside a miss judged by the median of 0.754, 0.986, 1.041)."""
    if not runs:
        return measured, paired
    figures = [f for f in judge.run_figures(t) or [] if f is not None]
    if len(figures) > 1:
        measured = statistics.median(figures)
    elif not judge.paired:
        measured = statistics.median(runs)
    return measured, statistics.median(runs) if judge.paired and paired is not None else paired


def _missed_by(violations: dict, besides: str) -> float:
    """The summed excess of the budgets other than `besides` that a trial missed."""
    return sum(v for k, v in violations.items() if k != besides and v > 0)
