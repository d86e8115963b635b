"""How a study judges and ranks its trials, and what it minimises: the objective by the median of a trial's runs where
it was measured again, each budget against its limit, the Pareto front's figures. The answer, the table and
`report --study` all judge this way."""
from __future__ import annotations

import dataclasses
import math
import statistics

from ..budgets import KINDS
from . import trial as trials_

# Multi-objective figures besides the latency (all lower is better); energy joins them where the devices measure it.
PARETO_FIGURES = ("accuracy_drop", "size_mb")
DEFAULT_OBJECTIVE = "latency_p90_ms"   # without a latency budget asked (default_objective)


def default_objective(budgets: dict, relative_budgets: dict) -> str:
    """The figure minimised when --objective is not given: the latency the user budgeted (a relative budget
    first: its candidates are ranked by their ratio to the baseline measured beside them), else p90. Asked for
    `latency_p50_ms=0.9x`, a user expects the search to make p50 small, not p90."""
    asked = [k for k in (*relative_budgets, *(k for k, v in budgets.items() if v is not None))
             if k.startswith("latency_")]
    return asked[0] if asked else DEFAULT_OBJECTIVE


def pareto_figures(budgets: dict, objective: str, energy: bool = False) -> tuple:
    """The front's figures: the latency the study minimises (a front over p90 beside a p50 objective compared
    what the user did not ask about), accuracy drop, size, and energy where every device measures it (`energy`)
    or it is budgeted."""
    latency = objective if objective.startswith("latency_") else DEFAULT_OBJECTIVE
    return (latency, *PARETO_FIGURES) + (("energy_mj",) if energy or "energy_mj" in budgets else ())


def complete(study) -> list:
    import optuna
    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))


def _feasible(t) -> bool:
    """Every budget met by the trial's own run (the samplers' view; a study's end judges by Judge)."""
    return all(c <= 0 for c in t.user_attrs.get("constraints", [1.0]))


@dataclasses.dataclass(frozen=True)
class Judge:
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
    measured_fully: frozenset = frozenset()   # the content keys of the trials measured fully

    @classmethod
    def of(cls, study, objective: str | None = None) -> "Judge":
        identity = study.user_attrs.get("identity") or {}
        objective = objective or identity.get("objective", DEFAULT_OBJECTIVE)
        paired = _paired_objective(study, objective)
        budgets = dict(identity.get("budgets") or {}, **(study.user_attrs.get("resolved_budgets") or {}))
        limit = identity["relative_budgets"][objective] if paired else budgets.get(objective)
        full = frozenset(t.user_attrs.get("key") for t in complete(study) if t.user_attrs.get("measurement") == "full")
        return cls(objective, paired, limit, study.user_attrs.get("rechecked") or {},
                   study.user_attrs.get("rechecked_figures") or {}, full)

    def runs(self, t) -> list | None:
        """The objective's paired ratio (or figure) in each run of the trial's configuration, where it was
        measured again; None for a trial measured once, and for one that did not finish (Ctrl-C, a failure):
        another trial of that configuration's runs are not its figures. Nor are they a screening run's where the
        configuration was then measured fully, in a trial of its own ("trial 2 measured fully"): the runs are
        that trial's."""
        return self.rechecked.get(t.user_attrs.get("key")) if self._its_runs(t) else None

    def run_figures(self, t) -> list | None:
        """The objective's figure in each run (None where a run measured none: a paired baseline's ratio to
        itself); None for a trial measured once, or measured again before the figures were kept."""
        return self.figures.get(t.user_attrs.get("key")) if self._its_runs(t) else None

    def superseded(self, t) -> bool:
        """A screening run of a configuration measured fully later, in a trial of its own: that trial stands for
        it (its runs, its rank)."""
        return t.user_attrs.get("measurement") == "screening" and t.user_attrs.get("key") in self.measured_fully

    def _its_runs(self, t) -> bool:
        return _finished(t) and not self.superseded(t)

    def value(self, t) -> float:
        runs = self.runs(t)
        return statistics.median(runs) if runs else objective_value(t, self.objective, self.paired)

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


def spread(runs) -> float:
    """How far apart a trial's runs are: the largest over the smallest (1.0 for fewer than two, or a zero)."""
    runs = [r for r in runs or [] if r is not None and math.isfinite(r)]
    return max(runs) / min(runs) if len(runs) > 1 and min(runs) > 0 else 1.0


def objective_value(t, objective: str, paired: bool) -> float:
    """What trials are ranked by: with a paired objective, the ratio to the baseline measured right before the
    trial (the baseline's own: 1), which the host's drift between trials minutes apart leaves alone; else the
    figure."""
    if not paired:
        return t.user_attrs["figures"][objective]
    if t.user_attrs.get("baseline"):
        return 1.0
    ratio = (t.user_attrs.get("paired") or {}).get(objective)
    return ratio if ratio is not None else math.inf


def ranked_feasible(study, objective: str) -> list:
    judge = Judge.of(study, objective)
    full = [t for t in complete(study) if judge.feasible(t) and objective in t.user_attrs.get("figures", {})
            and not judge.superseded(t)]
    # a screening-only figure is less certain: full measurements rank first at equal value
    return sorted(full, key=lambda t: (judge.value(t), t.user_attrs.get("measurement") != "full"))


# --- on the answer's rows (optimize's outcome, or a study as `report` loads it) -----------------------------

def objective_limit(outcome: dict) -> tuple:
    """(the objective's limit, whether it is a ratio to the baseline beside each candidate); (None, _) without
    a budget on the objective."""
    objective, relative = outcome["objective"], outcome.get("relative_budgets") or {}
    if objective in relative and outcome.get("paired_baseline"):
        return relative[objective], True
    return (outcome.get("budgets") or {}).get(objective), False


def median_of_runs(row: dict) -> float | None:
    """The objective's figure as the study judged a trial it measured again: the median of its runs' figures
    (runs that measured none left out); None for a trial measured once, or before the figures were kept."""
    figures = [f for f in row.get("rechecked_figures") or [] if f is not None]
    return statistics.median(figures) if len(figures) > 1 else None


def runs_disagree(outcome: dict, best: dict) -> str | None:
    """Why the best's figure is not to be relied on, when one of its runs missed the objective's budget that the
    median of its runs met."""
    limit, ratio = objective_limit(outcome)
    readings = best.get("rechecked") or []
    if limit is None or all(r <= limit for r in readings):
        return None
    return (f"the best met {outcome['objective']} ≤ {limit:g}{'x' if ratio else ''} by the median of its "
            f"{len(readings)} runs, not on each of them: this device's noise is as large as the margin; measure "
            "the bundle again with `edgeopt bench` before relying on it")


def best_warnings(outcome: dict, best: dict) -> list:
    """Why the best's figures are not to be relied on as they stand: one of its runs missed the objective's
    budget, or its own figure (the median of its runs', where it was measured again) misses the absolute limit
    its bundle carries."""
    missed = runs_disagree(outcome, best)
    return ([missed] if missed else []) + carried_misses(outcome, best)


def carried_misses(outcome: dict, best: dict, who: str = "the best") -> list:
    """A paired relative budget turns into an absolute limit in the chosen bundle (the ratio times the median of
    the baseline's runs in the study; the first run's alone in a study before that), which `edgeopt check`
    applies. Where the best's own figure misses it, check would refuse what the study chose by its ratio to the
    baseline beside it: say so. For the objective of a best measured again, its figure is the median of its
    runs' (a near miss chosen by its runs would be warned of by the very run that missed); a study from before
    the runs' figures were kept does not say."""
    out = []
    for key, ratio in (outcome.get("relative_budgets") or {}).items():
        carried = (outcome.get("carried_limits") or {}).get(key)
        limit = carried["limit"] if carried else (outcome.get("budgets") or {}).get(key)
        which = f"the median of the baseline's {carried['runs']} runs" if carried else "the baseline's first run"
        value, paired, runs = best["figures"].get(key), (best.get("paired") or {}).get(key), ""
        if key == outcome.get("objective") and best.get("rechecked"):
            value, paired = median_of_runs(best), statistics.median(best["rechecked"])
            if value is None:
                continue
            runs = f" (the median of its {len(best['rechecked'])} runs)"
        if outcome.get("paired_baseline") and None not in (limit, value, paired) and value > limit:
            out.append(f"the bundle carries {key} ≤ {limit:.4g} ({ratio:g}x {which}), which "
                       f"`edgeopt check` applies, and {who} read {value:.4g}{runs}: {paired:.2f}x of the baseline "
                       f"measured beside it, which ran slower than {'their median' if carried else 'the first run'}; "
                       "measure both on the device again, or give an absolute budget")
    return out


def _finished(t) -> bool:
    """A trial that measured its configuration (or was answered from the cache): COMPLETE with figures."""
    return t.state.name == "COMPLETE" and bool(t.user_attrs.get("figures"))
