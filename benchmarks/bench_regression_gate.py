"""The regression gate on real samples from this machine: false alarms and detections, next to a naive rule.

    .venv/bin/python benchmarks/bench_regression_gate.py --record 24 --runs /tmp/gate-runs
    .venv/bin/python benchmarks/bench_regression_gate.py --runs /tmp/gate-runs        # analyse only

--record N packages the shipped digits CNN (fp32, generic profile) and runs `edgeopt bench` on it N times
with the default loop (the agent's real samples, kept in each result). Then every pair of runs (i < j,
the earlier as baseline) is judged three ways: unchanged (run j as it is: a "slower" verdict is a false
alarm), and run j's samples multiplied by 1.05 and by 1.10 (a "slower" verdict is a detection).
The slowdowns are synthesised by scaling real samples; a real slower build would also change the shape.
The same is done with the two halves of each run (one machine state). Counted as flagged: what makes
`check` exit 1, a "slower" verdict; the gate's "inconclusive" verdicts (a quantile's point estimate beyond the
effect that its interval or the rank test does not confirm: exit 0, JUnit skipped) are counted beside it. The naive rule flags a pair when p90 grew by more than 5%. Both
gate rules come from the same call: the "point" rule's direction is recomputed from the returned ratio
and interval.
"""
from __future__ import annotations

import argparse
import itertools
import json
import pathlib
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from edgeopt import api  # noqa: E402
from edgeopt.regression import (EFFECT, FLOOR_RUNS, INCONCLUSIVE, QUANTILES, SAME, SLOWER, _direction,  # noqa: E402
                                _verdict, between_run_floor, compare_samples)

SCALES = (1.0, 1.05, 1.10)
FLOOR_SCALES = (1.0, 1.10, 1.25, 1.5)


def record(n: int, runs: pathlib.Path) -> None:
    samples = api.sample_paths()
    bundle = runs / "digits-fp32.edgepkg"
    api.package(str(samples["model"]), "generic", bundle, "fp32", eval_data=samples["eval"], name="digits-fp32")
    for i in range(n):
        doc = api.bench(bundle, "local", runs / "results")
        print(f"run {i + 1}/{n}: p50 {doc['latency']['p50_ms']:.4f} ms, robust_cv {doc['latency'].get('robust_cv')}")


def load_runs(runs: pathlib.Path) -> list:
    docs = [json.loads(p.read_text()) for p in sorted((runs / "results" / "history").glob("*.json"))]
    docs = [d for d in docs if d.get("status") == "ok" and d["latency"].get("samples_ms")]
    return sorted(docs, key=lambda d: d["created"])


def _point_verdict(r: dict) -> str:
    """The alternative rule (point estimate beyond the effect, interval excluding 1) on the same numbers."""
    if r["p_value"] >= r["alpha"]:
        return SAME
    dirs = [_direction(r[q]["ratio"], *r[q]["ci95"], r["effect"], "point") for q in ("p50", "p90")]
    return SLOWER if SLOWER in dirs else "faster" if "faster" in dirs else SAME


def _judge(tallies: dict, base: np.ndarray, cand: np.ndarray, seconds: list) -> None:
    """One baseline/candidate pair at every scale; "flagged" is what fails `check`: a slower verdict."""
    for scale in SCALES:
        c = cand * scale
        start = time.perf_counter()
        r = compare_samples(base, c)
        seconds.append(time.perf_counter() - start)
        t = tallies[scale]
        t["pairs"] += 1
        t["gate_interval"] += int(r["verdict"] == SLOWER)
        t["gate_inconclusive"] += int(r["verdict"] == INCONCLUSIVE)
        t["gate_point"] += int(_point_verdict(r) == SLOWER)
        t["naive_p90"] += int(np.percentile(c, 90) / np.percentile(base, 90) > 1 + EFFECT)


def analyse(docs: list) -> dict:
    """Pairs of runs (the machine's state may change between them), and the two halves of each run
    (one state: how the statistics behave on real, autocorrelated samples)."""
    empty = lambda: {s: {"pairs": 0, "gate_interval": 0, "gate_inconclusive": 0, "gate_point": 0,
                           "naive_p90": 0} for s in SCALES}
    runs, halves, seconds = empty(), empty(), []
    samples = [np.asarray(d["latency"]["samples_ms"]) for d in docs]
    for s in samples:
        _judge(halves, s[:len(s) // 2], s[len(s) // 2:], seconds)
    for base, cand in itertools.combinations(samples, 2):
        _judge(runs, base, cand, seconds)
    return {"runs": len(docs), "pairs_of_runs": runs, "halves_of_a_run": halves,
            "seconds_per_comparison": float(np.median(seconds)),
            "samples_per_run": [len(s) for s in samples], "p50_ms": [d["latency"]["p50_ms"] for d in docs],
            "cv": [d["latency"]["cv"] for d in docs], "robust_cv": [d["latency"].get("robust_cv") for d in docs],
            "load_1m": [(d.get("environment") or {}).get("load_1m") for d in docs]}


def analyse_floor(docs: list) -> dict:
    """The gate with and without the between-run floor (regression.between_run_floor), as `check --baseline` uses
    it: every pair of runs (i < j) whose baseline i has FLOOR_RUNS runs of the bundle up to it, the floor read from
    those (at most the newest 20), run j as it is and scaled. One comparison per pair and scale: the verdict without
    the floor is recomputed from the same ratios and intervals."""
    tallies = {s: {"pairs": 0, "slower_without": 0, "inconclusive_without": 0, "slower_with": 0,
                   "inconclusive_with": 0} for s in FLOOR_SCALES}
    floors = []
    for i, j in itertools.combinations(range(len(docs)), 2):
        floor = between_run_floor(docs[i], docs[:i + 1], "the runs", docs[j])
        if floor is None:
            continue
        floors.append(floor)
        base = np.asarray(docs[i]["latency"]["samples_ms"])
        for scale in FLOOR_SCALES:
            r = compare_samples(base, np.asarray(docs[j]["latency"]["samples_ms"]) * scale, floor=floor)
            plain = dict(r)
            for name, _ in QUANTILES:
                q = r[name]
                plain[name] = dict(q, direction=_direction(q["ratio"], *q["ci95"], r["effect"], "interval"))
            without = _verdict(plain, r["p_value"], r["alpha"], r["effect"])[0]
            t = tallies[scale]
            t["pairs"] += 1
            t["slower_without"] += int(without == SLOWER)
            t["inconclusive_without"] += int(without == INCONCLUSIVE)
            t["slower_with"] += int(r["verdict"] == SLOWER)
            t["inconclusive_with"] += int(r["verdict"] == INCONCLUSIVE)
    spread = {name: [float(np.percentile([f[name] for f in floors], q)) for q in (0, 50, 100)]
              for name, _ in QUANTILES} if floors else {}
    return {"tallies": tallies, "floor_min_median_max": spread}


def _print_floor(report: dict) -> None:
    print("\npairs of runs with the between-run floor (the baseline's bundle has >= "
          f"{FLOOR_RUNS} runs up to it): slower / inconclusive")
    print(f"{'candidate':<24}{'without the floor':>24}{'with the floor':>24}")
    for scale, t in report["tallies"].items():
        label = "unchanged (alarms)" if scale == 1.0 else f"x{scale:.2f} (detections)"
        cells = [f"{t['slower_' + k]}/{t['pairs']} / {t['inconclusive_' + k]}" for k in ("without", "with")]
        print(f"{label:<24}{cells[0]:>24}{cells[1]:>24}")
    for name, (low, median, high) in report["floor_min_median_max"].items():
        print(f"floor {name}: {low:.1%} min, {median:.1%} median, {high:.1%} max")


def _print(title: str, tallies: dict) -> None:
    print(f"\n{title}")
    print(f"{'candidate':<24}{'gate (interval rule)':>22}{'inconclusive':>18}{'gate (point rule)':>20}"
          f"{'naive p90 > +5%':>18}")
    for scale, t in tallies.items():
        label = "unchanged (alarms)" if scale == 1.0 else f"x{scale:.2f} (detections)"
        cells = [f"{t[k]}/{t['pairs']} ({t[k] / t['pairs']:.0%})"
                 for k in ("gate_interval", "gate_inconclusive", "gate_point", "naive_p90")]
        print(f"{label:<24}{cells[0]:>22}{cells[1]:>18}{cells[2]:>20}{cells[3]:>18}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=pathlib.Path, required=True, help="directory of recorded runs")
    parser.add_argument("--record", type=int, default=0, help="record this many runs first")
    parser.add_argument("--floor-only", action="store_true", help="only the between-run floor's analysis")
    args = parser.parse_args()
    if args.record:
        record(args.record, args.runs)
    docs = load_runs(args.runs)
    if args.floor_only:
        _print_floor(analyse_floor(docs))
        return
    report = analyse(docs)
    report["between_run_floor"] = analyse_floor(docs)
    out = ROOT / "benchmarks" / "results" / "regression_gate.json"
    out.write_text(json.dumps(report, indent=1, default=float))
    print(f"{report['runs']} runs; {report['seconds_per_comparison']:.2f} s per comparison (median)")
    _print("halves of one run (first half baseline, second half candidate)", report["halves_of_a_run"])
    _print("pairs of runs (earlier baseline, later candidate)", report["pairs_of_runs"])
    _print_floor(report["between_run_floor"])


if __name__ == "__main__":
    main()
