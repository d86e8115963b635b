"""The trial loop of one worker process: ask the sampler, package and measure the candidate (trial.py), tell the
study; at the end, measure the finalists and near misses again and the answer beside INT8 by hand."""
from __future__ import annotations

import dataclasses
import math
import pathlib
import statistics
from typing import TYPE_CHECKING

from ..budgets import KINDS, SAME_EVERY_RUN, with_unit
from ..errors import HOST_DISK_ERRNOS, BadInput, CannotWrite, DeviceFailure, StoreUnreachable, first_line, in_chain
from . import judging, rdb, samplers, space as spaces, trial as trials_

if TYPE_CHECKING:
    from .study import Job

DEVICE_FAILURES_TO_STOP = 3     # consecutive trials failed by the device: the device is down, not the candidate
RECHECK_WITHIN = 0.10           # best candidates within 10% of each other are measured again before choosing
RECHECK_TOP = 3
# A trial that missed only the objective's budget, and by at most this share, on one run is measured until it has
# JUDGED_RUNS runs and judged by their median (Runner.measure_near_misses): a YOLOv8n Pi study ruled out INT8 by
# hand on one run at 0.57x of its baseline against 0.5x, and five runs in turn at the end made it 1.43x faster than
# the answer it chose.
NEAR_MISS = 0.25
JUDGED_RUNS = 3
NEAR_MISSES_MEASURED = 3        # at most this many such trials a round, nearest to being the answer first
# A finalist's two runs this far apart (the larger over the smaller) get a third, whose median then ranks it: the
# median of two is their mean, and one 2x run on a loaded host made a finalist's figure 1.5x and decided the choice.
RUNS_APART = 1.25
WAIT_POLL_S = 1.0   # how often a worker looks whether another's trial of the same configuration has ended
# Objectives one bundle reads alike on every run (its files; its predictions on the same eval data): measuring a
# trial again settles nothing.
# At the end, the best and INT8 by hand (the textbook trial) measured in turn this many times each, when the
# objective is a latency: what the search gained over the first step by hand, judged on readings made together.
VERSUS_TEXTBOOK_PAIRS = 5
# A trial answered from the cache costs nothing and does not count towards --trials; this many in a row from one
# worker means the sampler has little left to propose (a small space, all of it measured): the worker stops.
CACHED_IN_A_ROW_TO_STOP = 10
# After this many cached answers in a row, a configuration nobody measured is enqueued (Runner._explore): in a
# small or stepped space TPE re-proposed measured candidates until the stop above ended studies that had not
# reached the feasible region (8 of 30 replays on a measured landscape: docs/benchmarks.md).
EXPLORE_AFTER_CACHED = 3
# After screening, a candidate over a budget, or slower than the feasible best, by more than this share gets no
# full measurement (and so no accuracy figure).
SCREEN_MARGIN = 0.25
BASELINE_POLL_SECONDS = 2.0     # how often a worker looks whether another has measured the baseline yet


class Runner:
    """The trial loop of one worker process."""

    def __init__(self, job, study, dims, identity, screening, multi, progress, storage=None):
        self.job, self.study, self.dims, self.identity = job, study, dims, identity
        self.storage = storage   # the RDB storage, for rdb.runs_locked (None: a study in memory)
        self.screening, self.multi, self.progress = screening, multi, progress
        self.stopped_by_device = None
        self.ruled_out = None    # why _can_still_win last left a screened candidate without a full measurement
        self.end_failed = None   # why measuring again at the study's end stopped: the device failed there
        self.exhausted = None
        self.n_trials = None   # --trials, once loop() runs
        self.exploration = None   # space.Exploration, made when the sampler first repeats itself
        self.rebuilt_differs = []   # trial numbers whose bundle, rebuilt on this host, differs from the one measured
        self.bundles = job.output_dir / study.study_name / "bundles"
        self.bundles.mkdir(parents=True, exist_ok=True)
        self.watch = rdb.StaleWatch()   # other workers' running trials, whose worker may have died
        if job.relative_budgets:   # resumed, or joined: the baseline may have set them already
            job.budgets.update(study.user_attrs.get("resolved_budgets") or {})

    def loop(self, n_trials: int) -> None:
        self.n_trials = n_trials
        device_failed, cached = [], 0
        grid = hasattr(self.study.sampler, "points")   # samplers._grid: never repeats, done when every point is taken
        self.progress.start("optimize: trials", total=n_trials)
        self.progress.advance(min(n_trials, self.started()))
        while self.started() < n_trials:
            self._fail_dead_workers_trials()
            trial = self.study.ask()
            failure = self._run_trial(trial)
            answered = trial.user_attrs.get("cached", False)
            cached = cached + 1 if answered else 0
            if not answered:
                self.progress.advance()
            device_failed = device_failed + [trial] if failure == "device" else []
            if len(device_failed) >= DEVICE_FAILURES_TO_STOP:
                self.stopped_by_device = trial.user_attrs.get("error")
                rdb.uncount_device_lost(self.study, device_failed)
                break
            if cached >= CACHED_IN_A_ROW_TO_STOP:
                self.exhausted = f"the last {cached} candidates the sampler proposed had all been measured"
                break
            if answered and cached % EXPLORE_AFTER_CACHED == 0 and not grid:
                self._explore()
            if grid and self._grid_done():
                if self.started() < n_trials:   # it ended at 4 of --trials 5 without a word
                    self.exhausted = (f"the grid's {len(self.study.sampler.points)} distinct configurations were "
                                      f"all measured, before --trials {n_trials}")
                break
        self.progress.finish()

    def _explore(self) -> None:
        """Enqueue a configuration no trial has measured (space.Exploration), if one is left: the sampler keeps
        proposing measured ones, which teach it nothing."""
        trials = self.study.get_trials(deepcopy=False)
        measured = {t.user_attrs.get("key") for t in trials}
        every = samplers.models_every_dimension(self.study.sampler)
        self.exploration = self.exploration or spaces.Exploration(self.dims, self.job.seed)
        for point in self.exploration.candidates(len(trials)):
            if trials_.Candidate(*spaces.options(self.dims, point)).key(self.identity) not in measured:
                self.study.enqueue_trial(spaces.params(self.dims, point, every),
                                         user_attrs={"explore": True})
                return

    def started(self, up_to: int | None = None) -> int:
        """Trials that count towards --trials: every worker's, of every state, except those the cache answered,
        those a Ctrl-C or a dead worker stopped (rdb.fail_unfinished), and the measurements again at the end
        (again_of: beyond --trials, as the answer says), and those whose failing devices stopped the study
        (rdb.DEVICE_LOST). up_to: only those numbered up to it, a trial's own place
        in the count (two workers' trials both read "8 of 8", counted as each ended)."""
        import optuna

        states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL,
                  optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.PRUNED)
        lost = set(self.study.user_attrs.get(rdb.DEVICE_LOST) or ())
        return sum(not (t.user_attrs.get("cached") or t.user_attrs.get("unfinished")
                        or t.user_attrs.get("again_of") is not None or t.number in lost)
                   for t in self.study.get_trials(deepcopy=False, states=states)
                   if up_to is None or t.number <= up_to)

    def _grid_done(self) -> bool:
        """Every grid point proposed (by any worker). Enqueued trials (the baseline, INT8 alone) are no grid
        points; where their configuration is one, the grid proposes it again and the cache answers."""
        taken = {t.system_attrs.get(samplers.GRID_POINT) for t in self.study.get_trials(deepcopy=False)} - {None}
        return len(taken) >= len(self.study.sampler.points)

    def _run_trial(self, trial) -> str | None:
        """Run one asked trial and tell the study; the failure kind ("input", "device") or None. Ctrl-C anywhere in
        it ends the trial (_interrupted): one left running is counted, and waited for, by every later run."""
        import optuna

        try:
            with rdb.beating(self.study, trial):
                return self._run_asked(trial)
        except KeyboardInterrupt:
            self._interrupted(trial)
            raise
        except optuna.exceptions.UpdateFinishedTrialError:   # another worker judged this one dead (its beats lost)
            self.progress.status(f"trial {trial.number}: another worker failed it as its worker's beat stood still "
                                 "(the store out of reach?): not counted, its configuration measured again")
            return None

    def _fail_dead_workers_trials(self) -> None:
        for number in self.watch.fail_dead(self.study):
            self.progress.status(f"trial {number}: its worker on another host gave no sign of life for "
                                 f"{rdb.STALE_S:.0f} s: not counted, its configuration measured again")

    def _interrupted(self, trial, why: str = "interrupted (Ctrl-C or SIGTERM)") -> None:
        """The trial Ctrl-C (or the host's disk) stopped, unless it was told already: back in the queue if the study
        enqueued it (the baseline, INT8 by hand: rdb.requeue), else failed as unfinished, its configuration queued
        again."""
        if next(t for t in self.study.get_trials(deepcopy=False) if t.number == trial.number).state.is_finished():
            return
        if rdb.enqueued(trial):
            rdb.requeue(self.study, trial)
            return
        rdb.fail_unfinished(self.study, trial, why)

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
        trial.set_user_attr("worker", rdb.WORKER)
        config = candidate.describe()
        trial.set_user_attr("config", config)
        full = trial.user_attrs.get("again_of") is not None   # not answered by a screening run again
        cached = self._cached(key, trial.number, full) or self._answer_of_another_worker(key, trial, full)
        self.progress.status(f"trial {trial.number}{self._counted(trial, cached)}: {config}")
        try:
            if not trial.user_attrs.get("baseline") and any(k not in self.job.budgets for k in
                                                            self.job.relative_budgets):
                self.job.budgets.update(self._await_baseline())   # before measuring: a trial failed without them
            screen = self._screen(trial)
            outcome = cached or trials_.run(candidate, self.job, self.bundles / f"{key[:16]}.edgepkg",
                                            screen, self._can_still_win, self.progress, self._reference(trial),
                                            twin=lambda artifact: self._twin(artifact, trial.number, full),
                                            name=self.bundle_name(trial.number))
            # inside: a baseline not measured in time (--baseline-once) left a measured trial running for good,
            # counted by every worker and waited for by any that proposed it
            self._resolve_relative(trial, outcome)
        except Exception as e:  # a failed trial is recorded with its reason; the study goes on
            if in_chain(e, lambda cause: isinstance(cause, KeyboardInterrupt)):   # a library's retry hid a Ctrl-C
                raise KeyboardInterrupt from e
            if host_cannot_write(e):
                self._stop_for_the_host(trial, e)
            if isinstance(e, StoreUnreachable):
                self._stop_for_the_store(trial, e)
            if trial.user_attrs.get("baseline"):
                self._baseline_failed(trial, e)
            kind = "input" if isinstance(e, BadInput) else "device" if isinstance(e, DeviceFailure) else "error"
            trial.set_user_attr("error", f"{kind}: {first_line(e)}")
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            self.progress.status(f"trial {trial.number} failed: {kind}: {first_line(e)}")
            return kind
        if cached is None and outcome["measurement"] == "screening" and "twin_of" not in outcome:
            outcome["ruled_out"] = self.ruled_out
        self._record(trial, outcome, candidate, key, cached is not None)
        if cached is None:
            self.progress.status(self._result_line(trial.number, outcome))
        return None

    def _stop_for_the_host(self, trial, e: Exception) -> None:
        """A full or read-only disk on this host (the trial's bundle, its result, a temporary file) fails every
        trial after it alike: recorded as the candidate's failure, it used up --trials, and a later --resume never
        measured those configurations (INT8 by hand among them; a walkthrough). The study stops instead, the trial
        is run again by the next run, as a Ctrl-C's is."""
        self._interrupted(trial, why=f"this host could not write its files ({first_line(e)})")
        again = ("run the same command with --resume to continue it (this trial first)" if judging.complete(self.study)
                 else "run the same command again")
        raise BadInput(f"{first_line(e)}; study {self.study.study_name!r} stopped with every finished trial kept: make "
                       f"room, then {again}") from None

    def _stop_for_the_store(self, trial, e: StoreUnreachable) -> None:
        """The results store's server that stopped answering while a trial saved its result (a StoreUnreachable is
        a BadInput) was recorded as the candidate's bad input: it used up --trials, and --resume never measured that
        configuration again. The study stops, exit 3 as a store lost elsewhere in it, and the trial runs again first
        on --resume (telling the study so may fail too, on a store that shares the server: then that says it)."""
        self._interrupted(trial, why=f"the results store did not answer ({first_line(e)})")
        again = ("the same command with --resume continues it (this trial first)" if judging.complete(self.study)
                 else "the same command runs it again")
        raise StoreUnreachable(f"{first_line(e)}; study {self.study.study_name!r} stopped with every finished trial "
                               f"kept: once the store answers again, {again}") from None

    def _result_line(self, number: int, outcome: dict) -> str:
        """What a trial measured, as it ends: a 5-minute study showed no figure before its table (a user
        walkthrough). The objective (its ratio to the baseline beside it, where paired) and the verdict."""
        objective, figures = self.job.objective, outcome["figures"]
        shown = (f"{objective} {with_unit(figures[objective], objective)}" if figures.get(objective) is not None
                 else f"{objective} not measured")
        ratio = (outcome.get("paired") or {}).get(objective)
        shown += f" ({ratio:.2f}x the baseline beside it)" if ratio is not None else ""
        missed = ", ".join(f"{k} by {v:.0%}" for k, v in outcome["violations"].items() if v > 0 and k in figures)
        if outcome["measurement"] == "screening":
            verdict = f"screened only{': missed ' + missed if missed else ''}"
        else:
            verdict = f"missed {missed}" if missed else "meets every budget"
        return f"trial {number}: {shown}; {verdict}"

    def _counted(self, trial, cached: dict | None) -> str:
        """Where the trial stands against --trials, for a log's line (a terminal's bar counts them too): a trial
        number counts cached answers, and a measurement again at the study's end is beyond --trials."""
        if cached is not None:
            return " (measured before: answered from the study, not counted)"
        if trial.user_attrs.get("again_of") is not None:
            return f" (trial {trial.user_attrs['again_of']} measured fully)"
        return f" ({self.started(up_to=trial.number)} of {self.n_trials})" if self.n_trials else ""

    def _baseline_failed(self, trial, e: Exception) -> None:
        """Raise for the baseline that failed: nothing can be judged without it (a relative budget has no limit,
        the answer no reference), so the study stops, and the baseline goes back to the queue for the next run
        (--resume, another worker) to measure first. Bad input stays itself (exit 2); the device's failure is exit
        3 with its reason, where the study went on to fail every candidate and exit 1."""
        rdb.requeue(self.study, trial)
        if isinstance(e, DeviceFailure):
            raise DeviceFailure(f"the baseline (the untouched model) could not be measured, and no candidate can be "
                                f"judged without it: {first_line(e)}") from e
        raise e

    def _candidate(self, trial):
        """The trial's candidate: the baseline (enqueued), or what the sampler proposes."""
        every = samplers.models_every_dimension(self.study.sampler)
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
        baseline = next(t for t in judging.complete(self.study) if t.user_attrs.get("baseline"))
        return trials_.Reference(self.local_bundle(baseline), baseline.user_attrs["candidate"]["threads"],
                                 dict(self.job.relative_budgets), self.study.user_attrs.get("baseline_figures"))

    def _resolve_relative(self, trial, outcome: dict) -> None:
        """Turn the relative budgets into limits from the baseline's outcome, once it is measured; its own excess
        for them is added to it, so every trial carries every constraint. Every other trial has the limits
        before it is measured (_run_asked waits for them: _await_baseline)."""
        missing = [k for k in self.job.relative_budgets if k not in self.job.budgets]
        if not missing or not trial.user_attrs.get("baseline"):
            return
        measured = outcome["figures"]
        unmeasured = [k for k in missing if k not in measured]
        if unmeasured:
            raise BadInput(f"relative budget {unmeasured[0]}: the baseline did not measure it")
        limits = {k: self.job.relative_budgets[k] * measured[k] for k in missing}
        self.study.set_user_attr("resolved_budgets", limits)
        self.study.set_user_attr("baseline_figures", {k: measured[k] for k in missing})
        self.job.budgets.update(limits)
        outcome["violations"] = dict(outcome["violations"], **{
            k: trials_.excess(outcome["figures"].get(k), limits[k], KINDS[k].higher_is_better) for k in limits})

    def _await_baseline(self) -> dict:
        import time

        import optuna

        deadline = time.monotonic() + self.job.timeout
        while True:
            limits = self.study.user_attrs.get("resolved_budgets")
            if limits and any(t.user_attrs.get("baseline") for t in judging.complete(self.study)):
                return limits
            if time.monotonic() > deadline:
                raise DeviceFailure(f"the relative budgets cannot be set: the baseline trial was not measured "
                                    f"within --timeout {self.job.timeout:g} s")
            baseline = [t for t in self.study.get_trials(deepcopy=False) if t.user_attrs.get("baseline")]
            if baseline and all(t.state == optuna.trial.TrialState.FAIL for t in baseline):
                raise DeviceFailure("the relative budgets cannot be set: the baseline trial failed "
                               f"({baseline[-1].user_attrs.get('error', 'no reason recorded')})")
            self.progress.status("waiting for the baseline (another worker measures it) to set the relative budgets")
            self._fail_dead_workers_trials()   # the baseline's worker may have died: back to the queue in STALE_S
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
        return None if t is None else self._beside_itself(t, {k: t.user_attrs[k] for k in (
            "figures", "violations", "measurement", "results", "transforms", "paired", "artifact",
            "twin_of", "untrained", "ruled_out", "devices", "worst_devices") if t.user_attrs.get(k) is not None})

    def _beside_itself(self, t, answer: dict) -> dict:
        """An answer taken from the baseline, with its ratio to itself: 1 for every paired relative budget. The
        baseline records none (it is the reference), so a trial it answered ranked at inf, first or last."""
        if t.user_attrs.get("baseline") and self.job.relative_budgets and self.job.paired_baseline:
            answer["paired"] = {k: 1.0 for k in self.job.relative_budgets}
        return answer

    def _answer_of_another_worker(self, key: str, trial, full: bool) -> dict | None:
        """Where another worker is running a trial of this very configuration, its answer once it has one (as
        _cached's); None where none is, or it ended without one. Two workers on one study packaged and measured
        one configuration at once, and both trials counted towards --trials. A worker that died leaves its
        trial running: the wait ends after the longest a trial's measurement may take."""
        import time

        other = self._running_elsewhere(key, trial)
        if other is None:
            return None
        self.progress.status(f"trial {trial.number}: another worker ({other.user_attrs.get('worker', '?')}, trial "
                             f"{other.number}) is measuring this configuration; waiting for its answer")
        deadline = time.monotonic() + 2 * self.job.timeout
        while time.monotonic() < deadline and self._running_elsewhere(key, trial) is not None:
            self._fail_dead_workers_trials()   # a worker that died: its trial fails in STALE_S, not 2 x --timeout
            time.sleep(WAIT_POLL_S)
        return self._cached(key, trial.number, full)

    def _running_elsewhere(self, key: str, trial):
        """Another worker's running trial of this configuration, begun before this one (by its start, then its
        number: an enqueued trial's number is older than its start): only the later of two waits (both waited on
        each other, then measured it anyway)."""
        import optuna

        mine = (trial.datetime_start, trial.number)
        return next((t for t in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
                     if t.number != trial.number and t.user_attrs.get("key") == key
                     and t.user_attrs.get("worker") != rdb.WORKER and t.datetime_start is not None
                     and mine[0] is not None and (t.datetime_start, t.number) < mine), None)

    def _twin(self, artifact: str, number: int, full: bool = False) -> dict | None:
        """The outcome of a finished trial whose configuration packaged to the same artifact (trial.artifact_key),
        with "twin_of": the trial first measured; None when there is none."""
        t = self._finished("artifact", artifact, number, full)
        return None if t is None else self._beside_itself(t, dict({k: t.user_attrs[k] for k in (
            "figures", "violations", "measurement", "results", "paired", "ruled_out", "devices", "worst_devices")
            if k in t.user_attrs},
            twin_of=t.user_attrs.get("twin_of") or t.number))

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
                     "devices", "worst_devices", "transforms_reused", "parity", "baseline_beside", "untrained", "noisy",
                     "ruled_out"):
            trial.set_user_attr(name, outcome.get(name))
        trial.set_user_attr("stages", [{"stage": s["stage"], **s["figures"]} for s in outcome.get("transforms", [])])
        constraints = [outcome["violations"][k] for k in self.job.budgets] or [0.0]
        trial.set_user_attr("constraints", constraints)
        screened_only = outcome["measurement"] == "screening"
        for budget, excess in zip(self.job.budgets or ["none"], constraints):  # <= 0: the budget is met
            # accuracy is left to the full run: a candidate ruled out on speed says nothing about it
            unknown = screened_only and budget not in outcome["figures"]
            trial.set_constraint(budget, 0.0 if unknown else _for_sampler(excess))
        bundle = self.bundles / f"{key[:16]}.edgepkg"   # none where it was ruled out before training
        trial.set_user_attr("bundle", str(bundle) if bundle.is_file() else None)
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
        judge = judging.Judge.of(self.study, self.job.objective)
        best = min(((judge.value(t), t.number) for t in judging.complete(self.study) if judge.feasible(t)
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

    def _measure_latency(self, t, threads: int) -> list:
        """A measured trial's bundle measured again at the study's end, its latency alone; rebuilt, once, where
        another worker's end removed it between the check for it and the measurement (a review)."""
        for last in (False, True):
            path = self.local_bundle(t)
            try:
                return trials_.measure(path, threads, self.job, {"no_accuracy": True}, self.progress)
            except BadInput:
                if last or path.is_file():
                    raise

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
            self.end_failed = first_line(e)
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
                runs = judging.Judge.of(self.study, self.job.objective).runs(t) or []
                if judging.spread(runs) > RUNS_APART:
                    self.progress.status(f"measuring trial {t.number} a third time: its two runs "
                                         f"({runs[0]:.4g}, {runs[1]:.4g}) are {judging.spread(runs):.2f}x apart")
                    self._measure_runs(t, JUDGED_RUNS)

    def measure_near_misses(self) -> bool:
        """Each trial of _near_misses measured until it has JUDGED_RUNS runs, which then judge it by their median
        (judging.Judge); whether any was measured. DeviceFailure: the runs so far are kept."""
        judge = judging.Judge.of(self.study, self.job.objective)
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
        measured = False
        for t in self._ruled_out_to_reconsider():
            figures = t.user_attrs["figures"]
            paired = {k: v for k, v in (t.user_attrs.get("paired") or {}).items() if v is not None}
            # the budgets its screening run measured: an unmeasured one (accuracy, which screening leaves out)
            # is recorded as missed by 1, which read as a far miss, and no such trial was ever reconsidered
            screened = {k: v for k, v in (t.user_attrs.get("violations") or {}).items() if k in figures or k in paired}
            if t.user_attrs.get("key") in self._measured_again_keys() \
                    or not self._can_still_win(figures, screened, paired):
                continue
            self.progress.status(f"measuring trial {t.number} fully: its screening run was ruled out against trial "
                                 f"{t.user_attrs['ruled_out']['trial']}, no longer the best")
            # its key at once: another worker at the study's end reads it before this one runs
            self.study.enqueue_trial(t.params, user_attrs={"again_of": t.number, "key": t.user_attrs.get("key")})
            trial = self.study.ask()
            if self._run_trial(trial) == "device":   # confirm() stops measuring, as on any device failure at the end
                raise DeviceFailure(next(u for u in self.study.get_trials(deepcopy=False)
                                         if u.number == trial.number).user_attrs.get("error"))
            measured = True
        return measured

    def _measured_again_keys(self) -> set:
        """The configurations a trial measures fully again (again_of), by any worker: read again before each is
        enqueued, since two workers reach the study's end together."""
        return {t.user_attrs.get("key") for t in self.study.get_trials(deepcopy=False)
                if t.user_attrs.get("again_of") is not None}

    def _ruled_out_to_reconsider(self) -> list:
        """Screened-only trials ruled out against a best that is not the best now, or against the best's first run
        where it has been measured again since (its first run read 0.0745 ms, its median 0.110: a candidate
        screened at 0.0944 had been left out for good), one per configuration; _can_still_win judges them again."""
        judge = judging.Judge.of(self.study, self.job.objective)
        ranked = judging.ranked_feasible(self.study, self.job.objective)
        best = ranked[0].number if ranked else None
        revised = bool(ranked) and bool(judge.runs(ranked[0]))
        out = {}
        for t in judging.complete(self.study):
            why = t.user_attrs.get("ruled_out") or {}
            if why.get("by") == "best" and (why.get("trial") != best or revised) \
                    and t.user_attrs.get("measurement") == "screening":
                out.setdefault(t.user_attrs.get("key"), t)
        return list(out.values())

    def _measure_runs(self, t, runs: int) -> bool:
        """Measure `t` again until it has `runs` runs of the objective, each stored as it is read (for its twins
        too: the same bundle), with its absolute figure (what the bundle's carried limit is checked against);
        whether a run was added."""
        judge = judging.Judge.of(self.study, self.job.objective)
        values = list(judge.runs(t) or [judging.objective_value(t, self.job.objective, judge.paired)])
        figures = list(judge.run_figures(t) or [t.user_attrs["figures"].get(self.job.objective)])
        figures += [None] * (len(values) - len(figures))   # runs from before the figures were kept
        added = False
        while len(values) < runs:
            again = self._measure_again(t, judge.paired)
            if again is None:
                break
            values, figures = self._add_run(t, values, figures, again)
            added = True
        return added

    def _add_run(self, t, values: list, figures: list, run: tuple) -> tuple:
        """Store one more run (value, figure) of `t`'s bundle for it and its twins, and return the runs stored
        now. Read again before writing: another worker may have stored runs meanwhile, of other bundles or of
        this one (both measure the best again at their end); theirs are kept, this one added after them (the
        last writer's list had replaced the other's, and the two workers' tables judged trial 0 by different
        medians)."""
        keys = self._same_bundle(t)
        with rdb.runs_locked(self.storage):
            return self._add_run_locked(t, keys, values, figures, run)

    def _add_run_locked(self, t, keys: set, values: list, figures: list, run: tuple) -> tuple:
        attrs = self.study.user_attrs   # one read of the storage, for both
        rechecked = dict(attrs.get("rechecked", {}))
        stored_figures = dict(attrs.get("rechecked_figures", {}))
        now = rechecked.get(t.user_attrs["key"])
        if now and len(now) > len(values) and now[:len(values)] == values:   # another worker's runs, after ours
            figures = list(stored_figures.get(t.user_attrs["key"]) or figures)
            figures += [None] * (len(now) - len(figures))
            values = list(now)
        values, figures = values + [run[0]], figures + [run[1]]
        for attr, stored, readings in (("rechecked", rechecked, values), ("rechecked_figures", stored_figures,
                                                                          figures)):
            stored.update(dict.fromkeys(keys, list(readings)))
            self.study.set_user_attr(attr, stored)
        return values, figures

    def _near_misses(self, judge) -> list:
        """The trials, one per bundle, that missed only the objective's budget by at most NEAR_MISS, or whose runs
        disagree on it (0.30x and 0.40x against 0.36x), on a full measurement of fewer than JUDGED_RUNS runs; the
        NEAR_MISSES_MEASURED first in rank order. The baseline too, against an absolute budget (against a paired
        one its ratio is 1 by definition)."""
        if judge.limit is None:
            return []
        distinct = {}
        for t in judging.complete(self.study):
            missed = {k: v for k, v in judge.violations(t).items() if v > 0}
            near = set(missed) == {judge.objective} and missed[judge.objective] <= NEAR_MISS
            # runs that disagree, by any margin: one outlier second run (2.4x) must not rule a trial out alone
            if ((near or (set(missed) <= {judge.objective} and judge.disagree(t)))
                    and t.user_attrs.get("measurement") == "full"
                    and not (judge.paired and t.user_attrs.get("baseline"))
                    and len(judge.runs(t) or [None]) < JUDGED_RUNS
                    and math.isfinite(judging.objective_value(t, judge.objective, judge.paired))):
                distinct.setdefault(t.user_attrs.get("artifact") or t.user_attrs["key"], t)
        # in rank order: those nearest to being the answer first
        return sorted(distinct.values(), key=judge.value)[:NEAR_MISSES_MEASURED]

    def _share_rechecks(self) -> None:
        """A twin or cached trial that finished after its bundle was measured again (on --resume, or another
        worker's) takes those readings: one bundle, one set of runs, never a measurement more."""
        keys_by_bundle = {}   # one pass over the trials (each _same_bundle call reads them all)
        for t in judging.complete(self.study):
            if t.user_attrs.get("artifact") and t.user_attrs.get("key"):
                keys_by_bundle.setdefault(t.user_attrs["artifact"], []).append(t.user_attrs["key"])
        with rdb.runs_locked(self.storage):
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
        judge = judging.Judge.of(self.study, self.job.objective)
        distinct = {}   # one trial per bundle: a cached answer or a twin is the same bundle and measurement
        for t in judging.ranked_feasible(self.study, self.job.objective):
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
        docs = self._measure_latency(t, threads)
        figure = trials_.figures(docs, self.job.budgets).get(self.job.objective)
        if reference is None:
            return None if figure is None else (figure, figure)
        with rdb.runs_locked(self.storage):   # its runs here count towards the carried limit; read then written
            runs = self.study.user_attrs.get("baseline_again") or []   # under the lock: two workers lost each other's
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
        ranked = judging.ranked_feasible(self.study, self.job.objective)
        textbook = next((t for t in judging.complete(self.study) if t.user_attrs.get("textbook")
                         and self.job.objective in t.user_attrs.get("figures", {})), None)
        if not ranked or textbook is None or ranked[0].user_attrs.get("artifact") == textbook.user_attrs.get(
                "artifact"):
            return
        best, judge = ranked[0], judging.Judge.of(self.study, self.job.objective)
        key = f"{best.user_attrs['key']}:{textbook.user_attrs['key']}"
        if (self.study.user_attrs.get("versus_textbook") or {}).get("key") == key:
            return   # an earlier run of this study compared the same two
        readings = {"textbook": [], "best": []}
        for n in range(VERSUS_TEXTBOOK_PAIRS):
            for name, t in (("textbook", textbook), ("best", best)):
                self.progress.status(f"measuring the best (trial {best.number}) and INT8 by hand (trial "
                                     f"{textbook.number}) in turn: {'INT8 by hand' if name == 'textbook' else name}, "
                                     f"{n + 1}/{VERSUS_TEXTBOOK_PAIRS}")
                try:
                    docs = self._measure_latency(t, t.user_attrs["candidate"]["threads"])
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


def host_cannot_write(error: BaseException) -> bool:
    """Whether `error` is this host's disk refusing a write (edgeopt's own outputs, or a library's temporary file):
    full, over quota or read-only, anywhere in its chain of causes."""
    return in_chain(error, lambda e: isinstance(e, CannotWrite) or (isinstance(e, OSError) and
                                                                     e.errno in HOST_DISK_ERRNOS)) is not None


def _baseline(dims: list, job: Job):
    """The untouched model (no transform, no quantization, the profile's precision, the most threads the space
    allows), measured in the same study on the same devices: the paired reference. Not sampled: a space that
    fixes a transform on must not change what the reference is."""
    threads = next((max(d.choices) for d in dims if d.name == "threads"), None)
    # named where the space has several backends, as a sampled candidate names its own: the untouched model
    # sampled on the profile's backend is then the same candidate, answered from the study, not measured again
    # under another key (a walkthrough: intel-cpu's OpenVINO float trial)
    backend = {"backend": job.backend or job.profile_backend()} if any(d.name == "backend" for d in dims) else {}
    return trials_.Candidate({**backend, "quantize": "none", "precision": job.profile_precision()}, [], threads)


def _for_sampler(excess: float) -> float:
    """A budget's relative excess as the samplers see it. Constrained TPE and NSGA-II rank infeasible trials by
    the sum of their excesses; an accuracy drop of 0.3 against 0.01 (excess 29) would drown a latency 50%
    over its limit (0.5). log1p keeps the order and the sign (met: <= 0) and weighs budgets alike."""
    return excess if excess <= 0 else math.log1p(excess)
