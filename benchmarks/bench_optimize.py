"""`edgeopt optimize` on the trained sample, on `local` (issue 14). A real board would give other numbers;
what is compared here is the search itself, every trial really packaged and measured.

1. Trials to the first feasible configuration, TPE vs random vs grid over the same space, several seeds.
2. The best feasible latency (p50) found vs single techniques applied by hand with default settings.
3. Wall time of one trial vs `edgeopt package` + `edgeopt bench` by hand for the same configuration.
4. Screening + caching: a study's wall time with and without screening.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_optimize.py [--seeds 3] [--trials 12]
"""
from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import RESULTS, environment, md_table  # noqa: E402

SAMPLES = HERE.parent / "edgeopt" / "samples"
MODEL = str(SAMPLES / "digits_resnet.py") + ":build"
DATA = ["--calib", str(SAMPLES / "digits32_calib.npz"), "--eval-data", str(SAMPLES / "digits32_eval.npz")]
SHAPE = ["--input-shape", "input=1,1,32,32"]
# The space every sampler searches: quantization (with per-layer float fallback) and channel pruning. No
# training transforms: on this 2-core host one distillation costs minutes, which would make the comparison of
# samplers (several studies per seed) hours long. Pruning without fine-tuning loses accuracy here, so the
# feasible region is small: that is what the samplers must find.
SPACE = """quantize = ["none", "dynamic", "int8"]
precision = ["fp32", "fp16"]
lowrank = false
"prune.channels" = [0.05, 0.7]
"""
OBJECTIVE = "latency_p50_ms"   # the median: p90 on a shared 2-core host is mostly the neighbours' load


def edgeopt(*args, home) -> tuple:
    start = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "edgeopt", *map(str, args)], capture_output=True, text=True,
                       env={"HOME": str(home), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(HERE.parent)})
    return p, time.perf_counter() - start


def baseline_p50(work) -> tuple:
    """FP32 p50 of the untouched model, and the wall time of `package` + `bench` by hand for it (the same
    configuration as an optimize study's baseline trial)."""
    p, t_pkg = edgeopt("package", MODEL, *SHAPE, "-o", work / "fp32.edgepkg", "--force", home=work)
    assert p.returncode == 0, p.stderr
    p, t_bench = edgeopt("bench", work / "fp32.edgepkg", "--results-dir", work / "r", "--json", home=work)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)["latency"]["p50_ms"], t_pkg + t_bench


def study(work, name, sampler, seed, trials, budgets, screening=True) -> dict:
    args = ["optimize", MODEL, *SHAPE, *DATA, "--space", work / "space.toml", "--sampler", sampler, "--seed", seed,
            "--trials", trials, "--study", name, "--results-dir", work / "r", "--output-dir", work / "o", "--json",
            "--objective", OBJECTIVE]
    args += [a for k, v in budgets.items() for a in ("--budget", f"{k}={v}")]
    if not screening:
        args.append("--no-screening")
    p, seconds = edgeopt(*args, home=work)
    assert p.returncode in (0, 1), p.stderr[-2000:]
    outcome = json.loads(p.stdout)
    first = next((i for i, t in enumerate(outcome["trials"]) if t["feasible"]), None)
    return {"sampler": sampler, "seed": seed, "first_feasible": first, "seconds": round(seconds, 1),
            "best_p50": (outcome["best"] or {}).get("figures", {}).get(OBJECTIVE),
            "best_config": (outcome["best"] or {}).get("config"),
            "cached": sum(t["cached"] for t in outcome["trials"]),
            "screened_only": sum(t["measurement"] == "screening" for t in outcome["trials"])}


def by_hand(work, budgets) -> list:
    """Single techniques with default settings, packaged and benched by hand (the user's alternative)."""
    rows = []
    for label, flags in (("INT8 alone", ["--quantize", "int8"]), ("prune 0.5 alone", ["--prune", "channels=0.5"])):
        bundle = work / f"{label.split()[0]}-{len(rows)}.edgepkg"
        p, t_pkg = edgeopt("package", MODEL, *SHAPE, *DATA, *flags, "-o", bundle, "--force", home=work)
        assert p.returncode == 0, p.stderr
        p, t_bench = edgeopt("bench", bundle, "--results-dir", work / "r", "--json", home=work)
        doc = json.loads(p.stdout)
        drop = doc["accuracy"].get("drop")
        rows.append({"technique": label, "p50_ms": doc["latency"]["p50_ms"], "accuracy_drop": drop,
                     "feasible": drop is not None and drop <= budgets["accuracy_drop"]
                     and doc["latency"]["p50_ms"] <= budgets[OBJECTIVE],
                     "package_plus_bench_s": round(t_pkg + t_bench, 1)})
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--trials", type=int, default=12)
    args = ap.parse_args()
    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-optimize-"))
    (work / "space.toml").write_text(SPACE)
    p50, by_hand_s = baseline_p50(work)
    budgets = {OBJECTIVE: round(0.5 * p50, 4), "accuracy_drop": 0.01}
    runs = [study(work, f"{s}-{seed}", s, seed, args.trials, budgets)
            for seed in range(args.seeds) for s in ("tpe", "random", "grid")]
    hand = by_hand(work, budgets)
    # One trial vs package + bench by hand: a study of one trial (the baseline, measured fully).
    one = study(work, "one-trial", "tpe", 0, 1, budgets, screening=False)
    plain = study(work, "no-screening", "tpe", 0, args.trials, budgets, screening=False)
    doc = {"environment": environment(), "budgets": budgets, "fp32_p50_ms": p50, "studies": runs, "by_hand": hand,
           "one_trial_s": one["seconds"], "package_plus_bench_by_hand_s": round(by_hand_s, 1), "no_screening": plain}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "optimize.json").write_text(json.dumps(doc, indent=1))
    summary = []
    for s in ("tpe", "random", "grid"):
        firsts = [r["first_feasible"] for r in runs if r["sampler"] == s]
        found = [f + 1 for f in firsts if f is not None]
        summary.append([s, f"{len(found)}/{len(firsts)}", statistics.median(found) if found else "—",
                        statistics.median([r["seconds"] for r in runs if r["sampler"] == s]),
                        min((r["best_p50"] for r in runs if r["sampler"] == s and r["best_p50"]), default="—")])
    text = f"budgets {budgets} (FP32 p50 {p50:.3f} ms)\n\n"
    text += md_table(["sampler", "found", "median trials to first feasible", "median study s", "best p50 ms"], summary)
    text += "\n\n" + md_table(["by hand", "p50 ms", "accuracy drop", "meets budgets", "package+bench s"],
                              [[h["technique"], h["p50_ms"], h["accuracy_drop"], h["feasible"], h["package_plus_bench_s"]]
                               for h in hand])
    text += (f"\n\none trial (baseline, full measurement) {one['seconds']} s vs package + bench by hand "
             f"{by_hand_s:.1f} s; "
             f"study of {args.trials} with screening (tpe seed 0) "
             f"{next(r['seconds'] for r in runs if r['sampler'] == 'tpe' and r['seed'] == 0)} s, "
             f"without {plain['seconds']} s\n")
    (RESULTS / "optimize.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
