"""Trials to the first feasible configuration, TPE / GP / random / grid, on a *measured* landscape (issue 14).

The real comparison packages and measures every trial of every study, so a few seeds of 16 trials took 1.5 hours
and could not separate the samplers (docs/benchmarks.md); the modelled landscape (sampler_landscape.py) could,
with 40-80 trials and 30 seeds, but its figures were a model. Here the figures are measured, once per
configuration, and the searches are replayed on them:

1. --measure: `edgeopt optimize --sampler grid --no-screening` on the trained sample packages and measures every
   configuration of a stepped space (SPACE: 150 of them when measured, 100 now) on `local`, each latency paired
   with the baseline measured right before it (a budget relative to the float model), each accuracy drop on the
   eval data. Trials with the
   same transforms reuse the trained module, so each pruning and distillation is trained once. A second
   --measure (another grid seed, so another order) adds a second reading of every configuration.
2. The replay: every sampler, seed by seed, runs edgeopt's own search (sampler_landscape.first_feasible: the same
   space built by edgeopt.search.space, the samplers of samplers.make, the enqueued baseline and INT8 alone,
   the screening rule, the constraints and the cache) with each configuration's figures read from the table: one
   of its readings, drawn per seed. What a replay leaves out is the host's noise beyond those readings.

    PYTHONPATH=. .venv/bin/python benchmarks/sampler_measured.py --measure [--grid-seed 0]   # ~30 min, quiet host
    PYTHONPATH=. .venv/bin/python benchmarks/sampler_measured.py [--seeds 30] [--trials 16 40 80] [--limit 0.30]

3. --real: real studies beside the replay, to check it. Each `edgeopt optimize` over SPACE, with the sampler and
   --seed N (which seeds the training too, so it meets landscape N), stops after --trials; the trials to its first
   feasible configuration go to sampler_measured_real.{json,md}, beside what the replay gave on that landscape.

    PYTHONPATH=. .venv/bin/python benchmarks/sampler_measured.py --real --samplers gp,tpe --seeds 2 --trials 30 \
        --limit 0.25
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
from bench_optimize import OBJECTIVE, SAMPLE, study  # noqa: E402
from common import RESULTS, environment, md_table  # noqa: E402
from sampler_landscape import ACCURACY_LIMIT, first_feasible  # noqa: E402

# bench_optimize.SPACE in steps: quantization, precision, channel pruning 0.1-0.7 and distillation of 2-8 epochs
# (at its default learning rate), each on or off: 3 x 2 x 5 x 5 = 150 configurations, as measured. A search now
# offers 100 of them: ONNX Runtime's precision only with quantize none (INT8 or dynamic at fp16 were twins).
SPACE = """quantize = ["none", "dynamic", "int8"]
precision = ["fp32", "fp16"]
keep_float = [""]
lowrank = false
qat = false
"prune.channels" = {low = 0.1, high = 0.7, step = 0.2}
"prune.criterion" = ["l2"]
"prune.scope" = ["layer"]
"prune.round_to" = [1]
"distill.epochs" = {low = 2, high = 8, step = 2}
"distill.lr" = 0.001
"""
SAMPLERS = ("tpe", "gp", "random", "grid")
# The real studies' thread count, fixed: the table was measured before `optimize` searched threads on a profile
# that leaves the core count to the device (generic), so its configurations ran at the device's 2 cores, and the
# replay's space has no threads dimension. A real study left to search them would search twice the space.
REAL_THREADS = "threads = [2]\n"
TABLE = RESULTS / "sampler_measured_table.json"
MEASURE_LIMIT = "0.30x"   # the measuring study's budget: it decides nothing there (every point is measured fully)


def dims():
    from sampler_landscape import dimensions
    return dimensions(SPACE, cores=None)   # the generic profile declares no core count: no threads dimension


def describe(dimensions, config: dict) -> str:
    """The trial's configuration as `optimize` writes it (Candidate.describe): the table's key."""
    from edgeopt.search import space, trial

    return trial.Candidate(*space.options(dimensions, config)).describe()


def measure(grid_seed: int) -> None:
    """One grid study over SPACE; its readings are added to TABLE."""
    from edgeopt.search import space

    table = json.loads(TABLE.read_text()) if TABLE.is_file() else {"space": SPACE, "studies": [], "readings": {}}
    assert table["space"] == SPACE, "the table was measured over another space"
    points = len(space.grid_points(dims()))
    with tempfile.TemporaryDirectory(prefix="sampler-measured-") as tmp:
        work = pathlib.Path(tmp)
        (work / "space.toml").write_text(SPACE)
        run = study(work, SAMPLE, work / "space.toml", f"grid-{grid_seed}", "grid", grid_seed, points + 2,
                    {OBJECTIVE: MEASURE_LIMIT, "accuracy_drop": ACCURACY_LIMIT}, screening=False)
    for t in run["trials"]:   # a twin (the same bundle as an earlier trial: ORT's INT8 ignores --precision) is
        if t["state"] != "complete" or t["cached"]:   # answered by that trial's reading, as the study answers it
            continue
        ratio = 1.0 if t["baseline"] else (t.get("paired") or {}).get(OBJECTIVE)
        table["readings"].setdefault(t["config"], []).append(
            {"ratio": ratio, "accuracy_drop": t["figures"].get("accuracy_drop"),
             "p50_ms": t["figures"].get(OBJECTIVE), "grid_seed": grid_seed, "trial": t["trial"],
             "twin_of": t.get("twin_of")})
    failed = [t for t in run["trials"] if t["state"] != "complete"]
    table["studies"].append({"grid_seed": grid_seed, "seconds": run["seconds"], "trials": len(run["trials"]),
                             "failed": [(t["config"], t["error"]) for t in failed], "environment": environment()})
    TABLE.write_text(json.dumps(table, indent=1))
    print(f"grid study {grid_seed}: {len(run['trials'])} trials in {run['seconds']} s, {len(failed)} failed; "
          f"{len(table['readings'])} configurations in the table", flush=True)


def real(limit: float, seeds: int, trials: int, samplers: list) -> None:
    """Real studies, one per sampler and seed, each added to sampler_measured_real.json as it ends."""
    from edgeopt.search import space

    saved = RESULTS / "sampler_measured_real.json"
    doc = json.loads(saved.read_text()) if saved.is_file() else {"space": SPACE, "studies": []}
    assert doc["space"] == SPACE, "earlier real studies searched another space"
    assert len(space.grid_points(dims())) >= trials
    for seed in range(seeds):
        for sampler in samplers:
            with tempfile.TemporaryDirectory(prefix="sampler-real-") as tmp:
                work = pathlib.Path(tmp)
                (work / "space.toml").write_text(SPACE + REAL_THREADS)
                run = study(work, SAMPLE, work / "space.toml", f"{sampler}-{seed}", sampler, seed, trials,
                            {OBJECTIVE: f"{limit}x", "accuracy_drop": ACCURACY_LIMIT})
            first = run["first_feasible"]
            doc["studies"].append({
                "sampler": sampler, "seed": seed, "limit": limit, "trials": trials,
                "first_feasible": None if first is None else first + 1, "seconds": run["seconds"],
                "chosen": (run["best"] or {}).get("config"), "environment": environment(),
                "trials_seen": [{k: t.get(k) for k in ("trial", "config", "cached", "feasible", "measurement")}
                                | {"ratio": (t.get("paired") or {}).get(OBJECTIVE),
                                   "accuracy_drop": (t.get("figures") or {}).get("accuracy_drop")}
                                for t in run["trials"]]})
            saved.write_text(json.dumps(doc, indent=1, default=str))
            print(f"real {sampler} seed {seed}, {limit}x: first feasible at trial "
                  f"{doc['studies'][-1]['first_feasible']} of {trials} in {run['seconds']} s", flush=True)
    (RESULTS / "sampler_measured_real.md").write_text(real_summary(doc) + "\n")
    print(real_summary(doc))


def real_summary(doc: dict) -> str:
    """The real studies against the replay's median on the same landscape (sampler_measured_seedN.json)."""
    rows = []
    for s in doc["studies"]:
        replayed = RESULTS / f"sampler_measured_seed{s['seed']}.json"
        median = "—"
        if replayed.is_file():
            result = next((r for r in json.loads(replayed.read_text())["replays"] if r["limit"] == s["limit"]), {})
            row = max((r for r in result.get("rows", []) if r["sampler"] == s["sampler"]),
                      key=lambda r: r["trials"], default=None)
            median = "—" if row is None else f"{row['median']} ({row['seeds']} seeds)"
        rows.append([s["sampler"], s["seed"], f"{s['limit']}x", s["first_feasible"] or f">{s['trials']}",
                     median, s["seconds"], s["chosen"] or "none"])
    return md_table(["sampler", "seed (sampler and training)", "latency budget", "real study: trials to first "
                     "feasible", "replay on that landscape: median", "study seconds", "chosen"], rows)


def replay(limit: float, seeds: int, trial_counts: list, samplers: list, landscape: int | None = None) -> dict:
    """landscape: None draws one of a configuration's readings per seed; N takes the readings of the study with
    --seed N (which seeded its training too), so that every configuration was trained with one seed, as in a
    real study."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    table = json.loads(TABLE.read_text())
    dimensions = dims()

    def figures_of(config, rng):
        config = {k: v for k, v in config.items() if k != "threads"}   # the baseline's; no dimension here
        config.setdefault("precision", "fp32")   # a quantized one has none (package's default): the table's key
        readings = of_landscape(table["readings"][describe(dimensions, config)], landscape)
        reading = readings[int(rng.integers(len(readings)))]
        unmeasured = reading["ratio"] is None or reading["accuracy_drop"] is None
        return (math.inf, math.inf) if unmeasured else (reading["ratio"], reading["accuracy_drop"])

    rows = []
    for trials in trial_counts:
        for sampler in samplers:
            found = [first_feasible(dimensions, sampler, s, trials, limit, figures_of) for s in range(seeds)]
            median = statistics.median([f if f is not None else math.inf for f in found])
            rows.append({"trials": trials, "sampler": sampler, "per_seed": found, "median": median,
                         "found": sum(f is not None for f in found), "seeds": seeds})
            print(f"limit {limit}x, landscape {landscape}, {trials} trials, {sampler}: found in {rows[-1]['found']}/{seeds} seeds, "
                  f"median {median}", flush=True)
    return {"limit": limit, "rows": rows, "feasible": feasible(table, limit, landscape)}


def of_landscape(readings: list, landscape: int | None) -> list:
    """A configuration's readings on one training seed's landscape (the grid study with that seed), or all."""
    return readings if landscape is None else [r for r in readings if r["grid_seed"] == landscape]


def feasible(table: dict, limit: float, landscape: int | None = None) -> list:
    """The configurations whose every reading meets both budgets, and those only some readings meet."""
    out = []
    for config, readings in table["readings"].items():
        readings = of_landscape(readings, landscape)
        met = [r["ratio"] is not None and r["accuracy_drop"] is not None and r["ratio"] <= limit
               and r["accuracy_drop"] <= ACCURACY_LIMIT for r in readings]
        if any(met):
            out.append({"config": config, "readings_met": f"{sum(met)}/{len(met)}",
                        "ratios": [r["ratio"] for r in readings],
                        "accuracy_drops": [r["accuracy_drop"] for r in readings]})
    return out


def summary(doc: dict, table: dict) -> str:
    text = (f"Measured landscape: {len(table['readings'])} configurations of a stepped space, "
            f"{sum(map(len, table['readings'].values()))} readings from {len(table['studies'])} grid "
            f"stud{'y' if len(table['studies']) == 1 else 'ies'} on `local` (benchmarks/sampler_measured.py).\n")
    if doc.get("landscape") is not None:
        text += (f"Replayed on the readings of the grid study with `--seed {doc['landscape']}` alone: every "
                 "configuration trained with that one seed, as in a real study.\n")
    for result in doc["replays"]:
        text += (f"\n**Latency budget {result['limit']}x the float model (paired), accuracy drop <= "
                 f"{ACCURACY_LIMIT}**: {len(result['feasible'])} configurations feasible in at least one reading.\n\n")
        text += md_table(["trials a study", "sampler", "reached feasible in", "median trials to first feasible"],
                         [[r["trials"], r["sampler"], f"{r['found']}/{r['seeds']} seeds",
                           f">{r['trials']}" if r["median"] in (math.inf, "inf", "Infinity") else r["median"]]
                          for r in result["rows"]])
        text += "\n\n" + md_table(["feasible configuration", "readings that meet both", "latency / paired baseline",
                                   "accuracy drop"],
                                  [[f["config"], f["readings_met"], ", ".join(f"{x:.3f}" for x in f["ratios"]),
                                    ", ".join(f"{x:.4f}" for x in f["accuracy_drops"])] for f in result["feasible"]])
        text += "\n"
    return text


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measure", action="store_true", help="run one grid study and add its readings")
    parser.add_argument("--real", action="store_true",
                        help="real studies (--samplers, --seeds, the first --trials, the first --limit)")
    parser.add_argument("--grid-seed", type=int, default=0)
    parser.add_argument("--limit", type=float, nargs="+", default=[0.30], help="latency budgets to replay")
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--trials", type=int, nargs="+", default=[16, 40, 80])
    parser.add_argument("--samplers", default=",".join(SAMPLERS))
    parser.add_argument("--landscape", type=int, choices=(0, 1),
                        help="replay on one training seed's readings (the grid study with that seed) instead of "
                             "drawing per configuration; results in sampler_measured_seedN.{json,md}")
    args = parser.parse_args()
    if args.measure:
        return measure(args.grid_seed)
    if args.real:
        return real(args.limit[0], args.seeds, args.trials[0], args.samplers.split(","))
    doc = {"replays": [replay(limit, args.seeds, args.trials, args.samplers.split(","), args.landscape)
                       for limit in args.limit]}
    doc["landscape"] = args.landscape
    name = "sampler_measured" if args.landscape is None else f"sampler_measured_seed{args.landscape}"
    saved = RESULTS / f"{name}.json"
    kept = json.loads(saved.read_text())["replays"] if saved.is_file() else []
    for result in doc["replays"]:   # the other samplers' rows of an earlier run stay
        earlier = next((r for r in kept if r["limit"] == result["limit"]), None)
        ran = {(r["trials"], r["sampler"]) for r in result["rows"]}
        result["rows"] = sorted([r for r in (earlier or {}).get("rows", []) if (r["trials"], r["sampler"]) not in ran]
                                + result["rows"], key=lambda r: (r["trials"], SAMPLERS.index(r["sampler"])))
    ran = {r["limit"] for r in doc["replays"]}   # and so do the other budgets' replays
    doc["replays"] = sorted(doc["replays"] + [r for r in kept if r["limit"] not in ran], key=lambda r: r["limit"])
    saved.write_text(json.dumps(doc, indent=1, default=str))
    text = summary(doc, json.loads(TABLE.read_text()))
    (RESULTS / f"{name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
