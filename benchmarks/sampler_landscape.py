"""How many trials the samplers need to a first feasible configuration, on a *modelled* landscape (issue 14).

The real comparison (bench_optimize.py --relative) packages and measures every trial: 16 trials x 3 seeds x 3
samplers take about 1.5 hours on this host, and its verdict at that size is mostly noise. This script asks the
question that decides how large a real run must be: with edgeopt's own search space (bench_optimize.SPACE built
into dimensions by edgeopt.search.space), its own samplers (samplers.make), its enqueued first trials (the
baseline, INT8 alone), its screening rule (a candidate over a budget by more than 25% is not measured for
accuracy) and its cache (a repeated candidate is answered and does not count), how often and how fast does each
sampler reach the feasible region, over many seeds?

The figures of a configuration come from a model fitted to what was measured on digits_resnet (docs/benchmarks.md,
"edgeopt optimize"), not from measurement:
- latency, relative to the float model: 1.0 (none), 0.75 (dynamic), 0.41 (INT8) times (1 - pruned share) ** k,
  k 1.6 / 1.2 / 0.8 (pruning half the channels alone read 0.32x; prune 0.567 + INT8 0.21x); 1 thread of 2
  1.45x slower; lognormal noise of 8% (INT8 alone read 0.345-0.477x of its paired baseline over eight studies);
- accuracy drop: 0 unpruned; pruned without distillation 0.9 * min(1, (p / 0.3) ** 2) (pruning half alone lost
  90 points); with distillation 0.002 + 0.029 * p ** 3 * (8 / epochs) * (1 + |log2(lr / 1e-3)| / 2) (prune 0.567,
  7 epochs: 0.008); INT8 adds 0.002; noise 0.002.

    PYTHONPATH=. .venv/bin/python benchmarks/sampler_landscape.py [--limit 0.30] [--seeds 20] [--trials 16 40]
        [--samplers tpe,gp,random,grid]
"""
from __future__ import annotations

import argparse
import json
import math
import pathlib
import statistics
import sys
import tempfile
import warnings

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_optimize import SPACE  # noqa: E402
from common import RESULTS, md_table  # noqa: E402

SAMPLERS = ("tpe", "gp", "random", "grid")
ACCURACY_LIMIT = 0.01
LATENCY = {"none": (1.0, 1.6), "dynamic": (0.75, 1.2), "int8": (0.41, 0.8)}   # (unpruned ratio, exponent k)


def dimensions(text: str = SPACE, cores: int | None = 2):
    from edgeopt.convert import backend_for
    from edgeopt.profiles import load_profile
    from edgeopt.search import space

    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "space.toml"
        path.write_text(text)
        return space.build(backend_for(load_profile("generic")), "pytorch-module", True, True, cores, path)


def figures(config: dict, rng) -> tuple:
    """(latency relative to the float model, accuracy drop) of one configuration, with noise."""
    base, k = LATENCY[config.get("quantize", "none")]
    pruned = config["prune.channels"] if config.get("prune") else 0.0
    ratio = base * (1 - pruned) ** k * (1.45 if config.get("threads", 2) == 1 else 1.0)
    ratio *= math.exp(rng.normal(0, 0.08))
    if not pruned:
        drop = 0.0
    elif config.get("distill"):
        lr_penalty = 1 + abs(math.log2(config["distill.lr"] / 1e-3)) / 2
        drop = 0.002 + 0.029 * pruned ** 3 * (8 / config["distill.epochs"]) * lr_penalty
    else:
        drop = 0.9 * min(1.0, (pruned / 0.3) ** 2)
    drop += 0.002 if config.get("quantize") == "int8" else 0.0
    return ratio, max(0.0, drop + (rng.normal(0, 0.002) if pruned else 0.0))


def first_feasible(dims, sampler: str, seed: int, trials: int, limit: float, figures_of=None):
    """Trials (counted as `optimize` counts them, the baseline included) to the first feasible one, or None.
    figures_of(config, rng) -> (latency ratio, accuracy drop): the modelled figures() unless given
    (sampler_measured.py reads a measured table)."""
    import numpy as np
    import optuna

    from edgeopt.search import runner, samplers, space

    figures_of = figures_of or figures
    rng = np.random.default_rng(1000 + seed)
    study = optuna.create_study(sampler=samplers.make(sampler, dims, seed, False))
    every = samplers.models_every_dimension(study.sampler)   # as rdb.open_study and Runner._run_trial do
    study.enqueue_trial(space.untouched(dims, "fp32") if every else {}, user_attrs={"baseline": True})
    study.enqueue_trial(space.params(dims, space.textbook(dims, "fp32"), every))
    measured, counted, cached_in_a_row, exploration = {}, 0, 0, None
    while counted < trials and cached_in_a_row < runner.CACHED_IN_A_ROW_TO_STOP:
        trial = study.ask()
        if trial.user_attrs.get("baseline"):
            if every:
                space.sample(dims, trial, every)
            config = {"quantize": "none", "precision": "fp32", "threads": 2}
        else:
            config = space.sample(dims, trial, every)
        key = repr(space.options(dims, config))
        cached = key in measured
        measured.setdefault(key, figures_of(config, rng))
        ratio, drop = measured[key]
        counted += not cached
        cached_in_a_row = cached_in_a_row + 1 if cached else 0
        if cached and cached_in_a_row % runner.EXPLORE_AFTER_CACHED == 0 and sampler != "grid":
            exploration = exploration or space.Exploration(dims, seed)
            explore(study, dims, measured, every, exploration.candidates(len(study.trials)))   # _Runner._explore
        latency_excess, accuracy_excess = ratio / limit - 1, drop / ACCURACY_LIMIT - 1
        # no full run, so no accuracy figure; never the two enqueued trials (the baseline, INT8 by hand)
        screened = trial.number > 1 and latency_excess > runner.SCREEN_MARGIN
        trial.set_constraint("latency_p50_ms", runner._for_sampler(latency_excess))
        trial.set_constraint("accuracy_drop", 0.0 if screened else runner._for_sampler(accuracy_excess))
        study.tell(trial, ratio)
        if latency_excess <= 0 and accuracy_excess <= 0 and not screened:
            return counted
    return None


def explore(study, dims, measured: dict, every: bool, candidates) -> None:
    from edgeopt.search import space

    for point in candidates:
        if repr(space.options(dims, point)) not in measured:
            study.enqueue_trial(space.params(dims, point, every))
            return


def summary(sampler: str, results: list, trials: int) -> dict:
    found = [r for r in results if r is not None]
    median = statistics.median([r if r is not None else math.inf for r in results])
    return {"sampler": sampler, "trials": trials, "found": len(found), "seeds": len(results),
            "median": median, "per_seed": results}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=float, default=0.30, help="latency budget, relative to the float model")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--trials", type=int, nargs="+", default=[16, 40])
    parser.add_argument("--samplers", default=",".join(SAMPLERS), help="comma-separated; rows of the others are "
                        "kept from the results file (GP at 40 trials takes minutes per seed)")
    args = parser.parse_args()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    dims = dimensions()
    saved = RESULTS / "sampler_landscape.json"
    doc = json.loads(saved.read_text()) if saved.is_file() else {}
    if doc.get("limit") != args.limit:
        doc = {"limit": args.limit, "rows": []}
    for trials in args.trials:
        for sampler in args.samplers.split(","):
            row = summary(sampler, [first_feasible(dims, sampler, s, trials, args.limit) for s in range(args.seeds)],
                          trials)
            doc["rows"] = [r for r in doc["rows"] if (r["trials"], r["sampler"]) != (trials, sampler)] + [row]
            print(f"{trials} trials, {sampler}: found in {row['found']}/{row['seeds']} seeds, median {row['median']}",
                  flush=True)
            saved.write_text(json.dumps(doc, indent=1, default=str))
    rows = sorted(doc["rows"], key=lambda r: (r["trials"], SAMPLERS.index(r["sampler"])))
    table = md_table(["trials", "sampler", "found", "median trials to first feasible"],
                     [[r["trials"], r["sampler"], f"{r['found']}/{r['seeds']} seeds",
                       ">" + str(r["trials"]) if r["median"] in (math.inf, "inf") else r["median"]] for r in rows])
    text = (f"Modelled landscape (not measured; see the script's docstring), latency budget {args.limit}x the float "
            f"model, accuracy drop <= {ACCURACY_LIMIT}.\n\n{table}\n")
    (RESULTS / "sampler_landscape.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
