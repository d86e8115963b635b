"""The rules of `optimize` that decide what is measured and what is chosen (which screened candidates earn a full
measurement, which are measured again before one is chosen, the objective), on studies made in memory: the
end-to-end runs in test_optimize.py cannot choose the figures a host reads."""
from __future__ import annotations

import optuna
import pytest

from edgeopt.search import study as studies

OBJECTIVE = "latency_p90_ms"


def _runner(tmp_path, relative: bool, trials: list):
    """A worker's runner over a study holding `trials`: [(absolute p90 in ms, paired ratio or None, feasible)]."""
    job = studies.Job(model="m.onnx", profile="generic", devices=["local"], budgets={OBJECTIVE: 10.0},
                      output_dir=tmp_path, relative_budgets={OBJECTIVE: 0.5} if relative else {})
    study = optuna.create_study(study_name="s", storage=optuna.storages.InMemoryStorage())
    study.set_user_attr("identity", {"relative_budgets": dict(job.relative_budgets), "paired_baseline": True})
    for n, (ms, ratio, feasible) in enumerate(trials):
        attrs = {"figures": {OBJECTIVE: ms}, "measurement": "full", "constraints": [-1.0 if feasible else 1.0],
                 "paired": {OBJECTIVE: ratio} if ratio is not None else None, "key": f"k{n}"}
        study.add_trial(optuna.trial.create_trial(value=ms, user_attrs=attrs))
    return studies._Runner(job, study, [], {}, True, False, studies.SILENT)


def test_a_paired_study_screens_by_the_ratio_to_the_baseline_beside_each_candidate(tmp_path):
    # the feasible best ran at 0.40x of its baseline on a slow moment of the host (2.0 ms); the candidate reads
    # 1.5 ms on a quick moment, but 0.60x of the baseline measured beside it: it cannot win
    runner = _runner(tmp_path, True, [(2.0, 0.40, True), (1.0, 0.30, False)])
    assert not runner._can_still_win({OBJECTIVE: 1.5}, {OBJECTIVE: -0.1}, {OBJECTIVE: 0.60})
    # and the other way round: slower in ms (the host slowed down), within reach in ratio
    assert runner._can_still_win({OBJECTIVE: 3.0}, {OBJECTIVE: -0.1}, {OBJECTIVE: 0.45})


@pytest.mark.parametrize("ms, earns", [(2.4, True), (2.6, False)])
def test_an_absolute_study_screens_by_the_figure(tmp_path, ms, earns):
    runner = _runner(tmp_path, False, [(2.0, None, True), (1.0, None, False)])   # the infeasible 1.0 is no best
    assert runner._can_still_win({OBJECTIVE: ms}, {OBJECTIVE: -0.1}, {}) is earns


def test_a_budget_missed_by_far_ends_the_candidate_before_any_best_exists(tmp_path):
    runner = _runner(tmp_path, False, [])
    assert runner._can_still_win({OBJECTIVE: 5.0}, {OBJECTIVE: 0.2}, {})
    assert not runner._can_still_win({OBJECTIVE: 5.0}, {OBJECTIVE: 0.3}, {})


@pytest.mark.parametrize("budgets, relative, expected", [
    ({}, {}, "latency_p90_ms"),
    ({"size_mb": 2.0}, {"size_mb": 0.5}, "latency_p90_ms"),
    ({"latency_p50_ms": 5.0, "size_mb": 2.0}, {}, "latency_p50_ms"),
    ({"latency_p90_ms": 5.0}, {"latency_p50_ms": 0.9}, "latency_p50_ms"),   # the paired one first
])
def test_the_objective_by_default_is_the_latency_budgeted(budgets, relative, expected):
    assert studies.default_objective(budgets, relative) == expected


def test_a_best_demoted_by_its_second_run_hands_the_recheck_to_the_new_best(tmp_path, monkeypatch):
    # trial 0 read 0.48x beside one slow baseline run and 1.05x when measured again; trial 1 (0.65x) is then the
    # best, and is measured again in turn; trial 2 (0.83x) is never within 10 % of the best
    runner = _runner(tmp_path, True, [(1.0, 0.48, True), (1.1, 0.65, True), (1.2, 0.83, True)])
    second_runs = {0: 1.05, 1: 0.66, 2: 0.80}
    measured = []
    monkeypatch.setattr(runner, "_measure_again", lambda t, paired: measured.append(t.number) or second_runs[t.number])
    runner.recheck_best()
    assert measured == [0, 1]
    assert runner.study.user_attrs["rechecked"] == {"k0": [0.48, 1.05], "k1": [0.65, 0.66]}
    assert studies._ranked_feasible(runner.study, OBJECTIVE)[0].number == 1
    runner.recheck_best()   # a resumed study: nothing is measured a third time
    assert measured == [0, 1]


def test_a_lone_best_is_measured_again(tmp_path, monkeypatch):
    runner = _runner(tmp_path, False, [(2.0, None, True), (1.0, None, False)])
    monkeypatch.setattr(runner, "_measure_again", lambda t, paired: 2.2)
    runner.recheck_best()
    assert runner.study.user_attrs["rechecked"] == {"k0": [2.0, 2.2]}
