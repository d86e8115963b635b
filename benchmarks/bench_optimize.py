"""`edgeopt optimize` on `local` (issue 14). A real board would give other numbers; what is compared here is
the search itself, every trial really packaged and measured.

1. Trials to the first feasible configuration, TPE vs random vs grid over the same space, several seeds, on the
   trained sample (edgeopt/samples/digits_resnet.py) with a latency budget of 0.3x the float model's (INT8
   alone: 0.34x): only pruning, recovered by distillation, and INT8 together reach it within one point of accuracy.
2. The best feasible latency (p50) found vs single techniques applied by hand with default settings.
3. Wall time of a trial (packaging + measuring, recorded by the study) vs `edgeopt package` + `edgeopt bench`
   by hand for the same configuration (the best trial's, rebuilt with `package --recipe BEST.edgepkg`).
4. What screening and caching save: the screened TPE study's measuring seconds against measuring each of its
   trials fully, and a `--no-screening` study of the same seed beside it; trials answered from the cache.
5. A MobileNetV2-size model (2.2M parameters, trained briefly on the digits at 96x96: mobilenet_digits.py).

6. --relative: the sampler comparison of 1 alone, with the latency budget relative to each study's own baseline
   (--budget latency_p50_ms=0.35x), so the host's drift between studies cancels; the other sections are kept.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_optimize.py [--seeds 3] [--trials 16] [--mobilenet-trials 10]
    PYTHONPATH=. .venv/bin/python benchmarks/bench_optimize.py --relative [--seeds 3] [--trials 12] [--samplers gp]
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
SAMPLE = {"model": str(SAMPLES / "digits_resnet.py") + ":build", "shape": "input=1,1,32,32",
          "calib": SAMPLES / "digits32_calib.npz", "eval": SAMPLES / "digits32_eval.npz",
          "train": SAMPLES / "digits32_train.npz"}
# The space every sampler searches: quantization, precision, channel pruning and distillation (three to eight
# epochs at a learning rate around its default of 1e-3: pruning half the channels needs about five epochs to come
# back within a point, docs/benchmarks.md, compression). Low-rank and QAT are left out: they did not make this
# model faster there.
SPACE = """quantize = ["none", "dynamic", "int8"]
precision = ["fp32", "fp16"]
keep_float = [""]
lowrank = false
qat = false
"prune.channels" = [0.1, 0.7]
"prune.criterion" = ["l2"]
"prune.scope" = ["layer"]
"prune.round_to" = [1]
"distill.epochs" = [3, 8]
"distill.lr" = [0.0005, 0.002]
"""
# MobileNetV2: quantization, channel pruning in steps of 0.1 (widths rounded to multiples of 1, 8 or 16) and
# distillation of one to four epochs (an epoch takes about 20 s here; a first study without training transforms
# found nothing past INT8 alone, a second without round_to found pruned INT8 slower than INT8 alone).
MOBILENET_SPACE = """quantize = ["none", "int8"]
precision = ["fp32"]
keep_float = [""]
lowrank = false
qat = false
"prune.channels" = {low = 0.1, high = 0.5, step = 0.1}
"prune.criterion" = ["l2"]
"prune.scope" = ["layer"]
"prune.round_to" = [1, 8, 16]
"distill.epochs" = {low = 1, high = 4, step = 1}
"distill.lr" = 0.001
"""
# The MobileNetV2 study's latency budget, relative to the float model measured beside each candidate: below
# INT8 alone (0.83x by hand), so that only a combination meets it; 0.64x is INT8 alone's 0.83x / 1.3.
MOBILENET_LIMIT = "0.6x"
IN_TURN_PAIRS = 6   # the MobileNetV2 best and INT8 alone benched in turn after the study, this many times each
OBJECTIVE = "latency_p50_ms"   # the median: p90 on a shared 2-core host is mostly the neighbours' load
SAMPLERS = ("tpe", "gp", "random", "grid")
RELATIVE_LIMIT = 0.35   # --relative: the latency budget as a fraction of each study's own baseline


def edgeopt(*args, home) -> tuple:
    start = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "edgeopt", *map(str, args)], capture_output=True, text=True,
                       env={"HOME": str(home), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(HERE.parent)})
    return p, time.perf_counter() - start


def by_hand(work, model, flags, label, repeats=1) -> dict:
    """`package` + `bench` of one configuration, as a user types them: p50, accuracy drop, wall seconds. With
    repeats, the bundle is benched that many times and the lowest p50 kept: a neighbour's load only ever slows a
    run, and a budget set from one slowed run would be one every candidate meets."""
    bundle = work / f"hand-{label.replace(' ', '_')}.edgepkg"
    p, t_pkg = edgeopt("package", model["model"], "--input-shape", model["shape"], *flags, "-o", bundle, "--force",
                       home=work)
    assert p.returncode == 0, p.stderr[-2000:]
    docs, times = [], []
    for _ in range(repeats):
        p, t_bench = edgeopt("bench", bundle, "--results-dir", work / "r", "--json", home=work)
        assert p.returncode == 0, p.stderr[-2000:]
        docs.append(json.loads(p.stdout))
        times.append(t_bench)
    doc = min(docs, key=lambda d: d["latency"]["p50_ms"])
    return {"technique": label, "p50_ms": doc["latency"]["p50_ms"], "accuracy_drop": doc["accuracy"].get("drop"),
            "package_s": round(t_pkg, 1), "bench_s": round(times[0], 1),
            "p50_runs_ms": [d["latency"]["p50_ms"] for d in docs]}


def study(work, model, space, name, sampler, seed, trials, budgets, screening=True) -> dict:
    args = ["optimize", model["model"], "--input-shape", model["shape"], "--calib", model["calib"], "--eval-data",
            model["eval"], "--space", space, "--sampler", sampler, "--seed", seed, "--trials", trials,
            "--study", name, "--results-dir", work / "r", "--output-dir", work / "o", "--json",
            "--objective", OBJECTIVE] + ([] if screening else ["--no-screening"])
    args += ["--train-data", model["train"]] if "distill" in space.read_text() and "distill = false" not in \
        space.read_text() else []
    args += [a for k, v in budgets.items() for a in ("--budget", f"{k}={v}")]
    p, seconds = edgeopt(*args, home=work)
    assert p.returncode in (0, 1), p.stderr[-2000:]
    outcome = json.loads(p.stdout)
    counted = [t for t in outcome["trials"] if not t["cached"]]   # cached answers do not count as trials
    first = next((i for i, t in enumerate(counted) if t["feasible"]), None)
    measured = [t for t in outcome["trials"] if t["seconds"]]
    return {"sampler": sampler, "seed": seed, "first_feasible": first, "seconds": round(seconds, 1),
            "trial_seconds": round(sum(sum(t["seconds"].get(k, 0) for k in ("package", "screen", "measure", "reference"))
                                       for t in measured), 1),
            "best": outcome["best"], "exhausted": outcome.get("exhausted"), "trials": outcome["trials"],
            "versus_textbook": outcome.get("versus_textbook"),
            "cached": sum(t["cached"] for t in outcome["trials"]),
            "screened_only": sum(t["measurement"] == "screening" for t in outcome["trials"])}


def p50(study_doc):
    return (study_doc["best"] or {}).get("figures", {}).get(OBJECTIVE)


def sampler_rows(runs, trials) -> list:
    rows = []
    for s in SAMPLERS:
        mine = [r for r in runs if r["sampler"] == s]
        if not mine:
            continue
        # a study that found none within `trials` counts as trials + 1 (a lower bound: the median is then one too)
        firsts = [r["first_feasible"] + 1 if r["first_feasible"] is not None else trials + 1 for r in mine]
        rows.append([s, f"{sum(r['first_feasible'] is not None for r in mine)}/{len(mine)}",
                     " ".join(str(f) if f <= trials else f">{trials}" for f in firsts), statistics.median(firsts),
                     statistics.median(r["seconds"] for r in mine),
                     min((p50(r) for r in mine if p50(r)), default="—")])
    return rows


def overhead(work, model, run) -> dict:
    """The best trial of `run` against `package --recipe` of its bundle + `bench`, and the baseline trial against
    FP32 packaged and benched by hand: the study's seconds per trial vs a user's."""
    best = run["best"]
    base = next(t for t in run["trials"] if t["baseline"])
    hand_best = by_hand(work, model, ["--recipe", best["bundle"], "--calib", model["calib"], "--eval-data",
                                      model["eval"], "--train-data", model["train"]]
                        if best["stages"] else ["--recipe", best["bundle"], "--calib", model["calib"],
                                                "--eval-data", model["eval"]], "best again")
    hand_base = by_hand(work, model, ["--eval-data", model["eval"]], "fp32 again")
    trial = lambda t: sum(t["seconds"].get(k, 0) for k in ("package", "screen", "measure"))  # noqa: E731
    return {"best_trial_s": round(trial(best), 1), "best_by_hand_s": hand_best["package_s"] + hand_best["bench_s"],
            "best_config": best["config"],
            "baseline_trial_s": round(trial(base), 1),
            "baseline_by_hand_s": hand_base["package_s"] + hand_base["bench_s"],
            "study_s": run["seconds"], "sum_of_trials_s": run["trial_seconds"]}


def screening_cost(run) -> dict:
    """Measuring seconds of a study that screened every candidate, against measuring each fully: a screened-only
    trial would have cost the median full measurement instead of its screening run."""
    measured = [t for t in run["trials"] if t["seconds"] and not t["baseline"]]
    full = [t["seconds"]["measure"] for t in measured if "measure" in t["seconds"]]
    spent = sum(t["seconds"].get("screen", 0) + t["seconds"].get("measure", 0) for t in measured)
    typical = statistics.median(full) if full else 0.0
    every_fully = sum(t["seconds"].get("measure", typical) for t in measured)
    return {"trials": len(measured), "screened_only": run["screened_only"], "measuring_s": round(spent, 1),
            "measuring_every_trial_fully_s": round(every_fully, 1), "median_full_measurement_s": round(typical, 2)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--mobilenet-trials", type=int, default=10, help="0: keep the last results file's section")
    ap.add_argument("--more-samplers", action="store_true",
                    help="keep every section of the last results file and run only the sampler studies it lacks")
    ap.add_argument("--samplers", help="--relative: only these (comma-separated), keeping the last results file's "
                                       "studies of the others, marked as from an earlier run")
    ap.add_argument("--relative", action="store_true",
                    help="only the sampler comparison, its latency budget relative to each study's baseline")
    ap.add_argument("--mobilenet", action="store_true", help="only the MobileNetV2 section (--mobilenet-trials)")
    ap.add_argument("--in-turn-again", type=int, metavar="PAIRS",
                    help="bench the last MobileNetV2 study's best and INT8-alone bundles in turn PAIRS more times "
                         "(--work: that run's folder, printed by it); the rest of the results is kept")
    ap.add_argument("--work", type=pathlib.Path, help="with --in-turn-again: the MobileNetV2 run's folder")
    args = ap.parse_args()
    if args.in_turn_again:
        return in_turn_again(args)
    if args.mobilenet:
        return mobilenet_only(args)
    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-optimize-"))
    (work / "space.toml").write_text(SPACE)
    (work / "mobilenet-space.toml").write_text(MOBILENET_SPACE)
    if args.relative:
        return relative(work, json.loads((RESULTS / "optimize.json").read_text()), args)
    if args.more_samplers:
        return more_samplers(work, json.loads((RESULTS / "optimize.json").read_text()), args)
    # read before the first save() below replaces the file: --mobilenet-trials 0 keeps its section, and the relative
    # comparison (run on its own, --relative) is kept too (a smoke check found both dropped)
    kept = {"mobilenet": previous("mobilenet") if not args.mobilenet_trials else None, "relative": previous("relative")}
    doc = {"environment": environment(), "space": SPACE, "mobilenet_space": MOBILENET_SPACE}
    if kept["relative"]:
        doc["relative"] = kept["relative"]

    fp32 = by_hand(work, SAMPLE, ["--eval-data", SAMPLE["eval"]], "FP32", repeats=3)
    budgets = {OBJECTIVE: round(0.3 * fp32["p50_ms"], 4), "accuracy_drop": 0.01}
    hand = [fp32] + [by_hand(work, SAMPLE, flags + ["--calib", SAMPLE["calib"], "--eval-data", SAMPLE["eval"]], label)
                     for label, flags in (("INT8 alone", ["--quantize", "int8"]),
                                          ("prune 0.5 alone", ["--prune", "channels=0.5"]))]
    doc.update(budgets=budgets, by_hand=hand)
    # The most telling study first, each section saved as it ends (a late failure or a stop loses nothing):
    # TPE seed 0 (best vs by hand, overhead, screening), MobileNetV2, --no-screening, then the other samplers.
    first = study(work, SAMPLE, work / "space.toml", "tpe-0", "tpe", 0, args.trials, budgets)
    runs = [first]
    doc["studies"] = [brief(first)]
    doc["overhead"] = overhead(work, SAMPLE, first) if first["best"] else None
    save(doc)
    doc["mobilenet"] = mobilenet(work, args.mobilenet_trials) if args.mobilenet_trials else kept["mobilenet"]
    save(doc)
    plain = study(work, SAMPLE, work / "space.toml", "no-screening", "tpe", 0, args.trials, budgets, screening=False)
    doc["screening"] = {"screened": screening_cost(first), "screened_study_s": first["seconds"],
                        "no_screening": screening_cost(plain), "no_screening_study_s": plain["seconds"],
                        "no_screening_best_p50": p50(plain), "cached": {"tpe-0": first["cached"]}}
    save(doc)
    write_summary(doc, runs, hand, args.trials)
    for seed in range(args.seeds):
        for sampler in SAMPLERS:
            if (sampler, seed) != ("tpe", 0):
                runs.append(study(work, SAMPLE, work / "space.toml", f"{sampler}-{seed}", sampler, seed, args.trials,
                                  budgets))
                doc["studies"] = [brief(r) for r in runs]
                doc["screening"]["cached"] = {r["sampler"] + "-" + str(r["seed"]): r["cached"] for r in runs}
                save(doc)
                write_summary(doc, runs, hand, args.trials)


def more_samplers(work, doc, args) -> None:
    """The sampler studies the last results file lacks, added to it (same budgets, same space)."""
    runs = list(doc["studies"])
    done = {(r["sampler"], r["seed"]) for r in runs}
    for seed in range(args.seeds):
        for sampler in SAMPLERS:
            if (sampler, seed) not in done:
                runs.append(brief(study(work, SAMPLE, work / "space.toml", f"{sampler}-{seed}", sampler, seed,
                                        args.trials, doc["budgets"])))
                doc["studies"] = runs
                doc["screening"]["cached"] = {r["sampler"] + "-" + str(r["seed"]): r["cached"] for r in runs}
                save(doc)
                write_summary(doc, runs, doc["by_hand"], args.trials)


def relative(work, doc, args) -> None:
    """The sampler comparison with budgets relative to each study's own baseline, every seed and sampler in one
    run (doc["relative"]); the file's other sections are kept as they were measured."""
    # 0.35x: below INT8 alone (0.53x of the baseline in the same study), above what prune + distill + INT8
    # reached (0.32x at a 0.8-point drop); 0.3x, the absolute runs' ratio, was met by no trial of a first study.
    budgets = {OBJECTIVE: f"{RELATIVE_LIMIT}x", "accuracy_drop": 0.01}
    wanted = tuple(args.samplers.split(",")) if args.samplers else SAMPLERS
    earlier = doc.get("relative") or {}
    runs = []
    if args.samplers:   # the same budgets and trials, or the studies would not compare
        if earlier.get("trials") != args.trials or earlier.get("budgets") != budgets:
            raise SystemExit(f"--relative --samplers {args.samplers}: the saved comparison ran --trials "
                             f"{earlier.get('trials')} at {earlier.get('budgets')}; these studies would not compare "
                             f"(--trials {args.trials}, {budgets}): give its --trials, or run every sampler")
        runs = [dict(r, earlier_run=r.get("earlier_run", True)) for r in earlier.get("studies", [])
                if r["sampler"] not in wanted]
    for seed in range(args.seeds):
        for sampler in wanted:
            run = study(work, SAMPLE, work / "space.toml", f"rel-{sampler}-{seed}", sampler, seed, args.trials,
                        budgets)
            base = next(t for t in run["trials"] if t["baseline"])
            textbook = next((t for t in run["trials"] if t.get("textbook")), {})
            runs.append(dict(brief(run), baseline_p50_ms=base["figures"].get(OBJECTIVE),
                             int8_alone_paired=_rounded((textbook.get("paired") or {}).get(OBJECTIVE)),
                             best_paired=_rounded(((run["best"] or {}).get("paired") or {}).get(OBJECTIVE)),
                             reference_s=round(sum(t["seconds"].get("reference", 0) for t in run["trials"]), 1)))
            doc["relative"] = {"budgets": budgets, "trials": args.trials, "studies": runs}
            save(doc)
            text = relative_summary(doc["relative"])
            (RESULTS / "optimize-relative.md").write_text(text)
            print(text, flush=True)


def _rounded(value, digits=3):
    return None if value is None else round(value, digits)


def relative_summary(rel) -> str:
    rows = sampler_rows(rel["studies"], rel["trials"])
    text = (f"Samplers with budgets relative to each study's baseline: {rel['budgets']} (latency {RELATIVE_LIMIT}x "
            f"the float model's p50, measured again right before each candidate; {rel['trials']} trials a "
            "study).\n\n")
    text += md_table(["sampler", "found", "trials to first feasible, per seed", "median", "median study s",
                      "best p50 ms"], rows)
    text += "\n\n" + md_table(["study", "baseline p50 ms (trial 0)", "INT8 alone / its paired baseline",
                                "first feasible", "best p50 ms", "best / its paired baseline", "cached",
                                "screened only", "study s", "baseline runs beside candidates s"],
                               [[f"{r['sampler']}-{r['seed']}" + (" (earlier run)" if r.get("earlier_run") else ""),
                                 r["baseline_p50_ms"], r.get("int8_alone_paired") or "—",
                                 r["first_feasible"], p50(r) or "—", r.get("best_paired") or "—", r["cached"],
                                 r["screened_only"], r["seconds"], r.get("reference_s", "—")]
                                for r in rel["studies"]])
    return text + "\n"


def brief(run) -> dict:
    return {k: v for k, v in run.items() if k != "trials"}


def write_summary(doc, runs, hand, trials) -> None:
    text = summary(doc, runs, hand, trials)
    (RESULTS / "optimize.md").write_text(text)
    print(text, flush=True)


def previous(section: str):
    """A section of the last results file, kept as it was measured (--mobilenet-trials 0 re-runs the rest)."""
    old = RESULTS / "optimize.json"
    found = json.loads(old.read_text()).get(section) if old.is_file() else None
    return dict(found, kept_from="an earlier run of this script") if found else None


def save(doc) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "optimize.json").write_text(json.dumps(doc, indent=1, default=str))


def mobilenet(work, trials) -> dict:
    """The MobileNetV2 section: FP32, INT8 alone and pruning alone by hand, then a TPE study whose best feasible
    configuration is compared with INT8 alone measured in the same study (both paired with the baseline)."""
    import mobilenet_digits

    trained = mobilenet_digits.train(work)
    files = trained.pop("files")
    model = {"model": str(files["model"]) + ":build", "shape": f"input=1,3,{mobilenet_digits.SIDE},"
             f"{mobilenet_digits.SIDE}", "calib": files["calib"], "eval": files["eval"], "train": files["train"]}
    data = ["--calib", model["calib"], "--eval-data", model["eval"]]
    hand = [by_hand(work, model, ["--eval-data", model["eval"]], "MobileNetV2 FP32", repeats=3),
            by_hand(work, model, ["--quantize", "int8"] + data, "MobileNetV2 INT8 alone"),
            by_hand(work, model, ["--prune", "channels=0.5"] + data, "MobileNetV2 prune 0.5 alone")]
    budgets = {OBJECTIVE: MOBILENET_LIMIT, "accuracy_drop": 0.01}
    (work / "mobilenet-space.toml").write_text(MOBILENET_SPACE)
    run = study(work, model, work / "mobilenet-space.toml", "mobilenet", "tpe", 0, trials, budgets)
    textbook = next((t for t in run["trials"] if t.get("textbook")), {})
    best = run["best"] or {}
    alone, found = (textbook.get("paired") or {}).get(OBJECTIVE), (best.get("paired") or {}).get(OBJECTIVE)
    in_turn = (in_turn_by_hand(work, run, textbook) if best and textbook and best["trial"] != textbook["trial"]
               else None)
    return {"model": trained, "budgets": budgets, "space": MOBILENET_SPACE, "by_hand": hand, "study": run,
            "screening": screening_cost(run), "int8_alone_paired": alone, "best_paired": found,
            "best_vs_int8_alone": round(alone / found, 3) if alone and found else None,
            "versus_textbook": run["versus_textbook"], "in_turn_by_hand": in_turn}


def in_turn_by_hand(work, run, textbook, pairs=IN_TURN_PAIRS) -> dict:
    """The study's chosen bundle and its INT8-alone bundle benched in turn by `edgeopt bench`, `pairs` times each
    after the study: more readings made together than the study's own end comparison."""
    bundles = {"textbook": textbook["bundle"], "best": str(work / "o" / "mobilenet-best.edgepkg")}
    readings = {"textbook": [], "best": []}
    for _ in range(pairs):
        for name, bundle in bundles.items():
            p, _ = edgeopt("bench", bundle, "--results-dir", work / "r", "--json", home=work)
            assert p.returncode == 0, p.stderr[-2000:]
            readings[name].append(json.loads(p.stdout)["latency"]["p50_ms"])
    ratios = [round(a / b, 3) for a, b in zip(readings["textbook"], readings["best"])]
    return {"readings_ms": readings, "ratios": ratios, "median_ratio": statistics.median(ratios),
            "ratio_of_medians": round(statistics.median(readings["textbook"]) / statistics.median(readings["best"]), 3)}


def mobilenet_only(args) -> None:
    """--mobilenet: the MobileNetV2 section alone; the file's other sections are kept as they were measured."""
    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-optimize-mobilenet-"))
    print(f"working in {work}", flush=True)
    doc = json.loads((RESULTS / "optimize.json").read_text())
    doc["mobilenet"] = dict(mobilenet(work, args.mobilenet_trials), environment=environment())
    save(doc)
    text = mobilenet_summary(doc["mobilenet"])
    (RESULTS / "optimize-mobilenet.md").write_text(text)
    print(text, flush=True)


def in_turn_again(args) -> None:
    """More readings in turn of the last MobileNetV2 study's two bundles, kept beside its first ones."""
    doc = json.loads((RESULTS / "optimize.json").read_text())
    m = doc["mobilenet"]
    best = pathlib.Path(args.work) / "o" / "mobilenet-best.edgepkg"
    if not m or not best.is_file():
        raise SystemExit(f"--in-turn-again: no chosen bundle {best}: the last MobileNetV2 study found no configuration "
                         "that met both budgets, or --work is not its folder")
    textbook = next(t for t in m["study"]["trials"] if t.get("textbook"))
    m["in_turn_again"] = dict(in_turn_by_hand(args.work, m["study"], textbook, args.in_turn_again),
                              environment=environment())
    save(doc)
    text = mobilenet_summary(m)
    (RESULTS / "optimize-mobilenet.md").write_text(text)
    print(text, flush=True)


def mobilenet_summary(m) -> str:
    run = m["study"]
    text = (f"MobileNetV2 ({m['model']['parameters']:,} parameters, top-1 {m['model']['top1']:.4f} after "
            f"{m['model']['train_s']} s of training), budgets {m['budgets']} (latency relative to the float "
            f"model measured beside each candidate). Space:\n\n```toml\n{m['space']}```\n\n")
    text += md_table(["by hand", "p50 ms", "accuracy drop", "package s", "bench s"],
                     [[h["technique"], h["p50_ms"], h["accuracy_drop"], h["package_s"], h["bench_s"]]
                      for h in m["by_hand"]])
    text += "\n\n" + md_table(
        ["trial", "configuration", "p50 ms", "/ paired baseline", "accuracy drop", "feasible", "package s"],
        [[t["trial"], t["config"] + (" (cached)" if t["cached"] else ""), _rounded(t["figures"].get(OBJECTIVE)),
          _rounded((t.get("paired") or {}).get(OBJECTIVE)), _rounded(t["figures"].get("accuracy_drop"), 4),
          "yes" if t["feasible"] else "", (t["seconds"] or {}).get("package", "")] for t in run["trials"]])
    text += (f"\n\nTPE: {len(run['trials'])} trials in {run['seconds']} s; first feasible at trial "
             f"{run['first_feasible']}; best {(run['best'] or {}).get('config')} at {m['best_paired']} of its paired "
             f"baseline, against {m['int8_alone_paired']} for INT8 alone in the same study: "
             f"{m['best_vs_int8_alone']}x faster on those two readings.\n")
    v, hand = m.get("versus_textbook"), m.get("in_turn_by_hand")
    if v:
        text += (f"\nThe study's end comparison (best and INT8 alone measured in turn, {len(v['ratios'])} pairs): "
                 f"ratios {v['ratios']}, median **{v['median']}x**.\n")
    if hand:
        text += (f"\nAfter the study, `edgeopt bench` of both bundles in turn, {len(hand['ratios'])} pairs: INT8 alone "
                 f"{hand['readings_ms']['textbook']} ms, best {hand['readings_ms']['best']} ms; ratios "
                 f"{hand['ratios']}, median **{hand['median_ratio']}x** (ratio of medians {hand['ratio_of_medians']}x; "
                 "target >= 1.3x).\n")
    again = m.get("in_turn_again")
    if again:
        text += (f"\nAgain later (`--in-turn-again`), {len(again['ratios'])} pairs: ratios {again['ratios']}, median "
                 f"**{again['median_ratio']}x** (ratio of medians {again['ratio_of_medians']}x).\n")
    return text


def summary(doc, runs, hand, trials) -> str:
    b = doc["budgets"]
    text = (f"Sample (digits_resnet, trained): budgets {b} (0.3x FP32's p50 {hand[0]['p50_ms']:.3f} ms; "
            f"accuracy within one point). Space:\n\n```toml\n{doc['space']}```\n\n")
    text += md_table(["sampler", "found", "trials to first feasible, per seed", "median", "median study s",
                      "best p50 ms"], sampler_rows(runs, trials))
    text += "\n\n" + md_table(["by hand", "p50 ms", "accuracy drop", "package s", "bench s"],
                                [[h["technique"], h["p50_ms"], h["accuracy_drop"], h["package_s"], h["bench_s"]]
                                 for h in hand])
    o = doc["overhead"]
    if o:
        text += (f"\n\nPer trial: best trial ({o['best_config']}) {o['best_trial_s']} s in the study vs "
                 f"{o['best_by_hand_s']:.1f} s by hand (package --recipe + bench); baseline trial "
                 f"{o['baseline_trial_s']} s vs {o['baseline_by_hand_s']:.1f} s by hand. The study ran "
                 f"{o['study_s']} s, of which its trials {o['sum_of_trials_s']} s.")
    s = doc["screening"]
    sc, ns = s["screened"], s["no_screening"]
    text += (f"\n\nScreening (TPE, seed 0): {sc['screened_only']} of {sc['trials']} trials screened only; measuring "
             f"took {sc['measuring_s']} s against {sc['measuring_every_trial_fully_s']} s had each been measured fully "
             f"(median full measurement {sc['median_full_measurement_s']} s). The same study with --no-screening: "
             f"measuring {ns['measuring_s']} s, study {s['no_screening_study_s']} s (screened: "
             f"{s['screened_study_s']} s). Cached answers per study: {s['cached']}.")
    m = doc["mobilenet"]
    if not m:
        return text + "\n"
    run = m["study"]
    text += (f"\n\nMobileNetV2{' (kept from ' + m['kept_from'] + ')' if m.get('kept_from') else ''} "
             f"({m['model']['parameters']:,} parameters, top-1 {m['model']['top1']:.4f} after "
             f"{m['model']['train_s']} s of training): budgets {m['budgets']}; by hand FP32 "
             f"{m['by_hand'][0]['p50_ms']:.3f} ms, INT8 alone {m['by_hand'][1]['p50_ms']:.3f} ms (drop "
             f"{m['by_hand'][1]['accuracy_drop']}); TPE {len(run['trials'])} trials in {run['seconds']} s, first "
             f"feasible at trial {run['first_feasible']}, best p50 {p50(run)} ms "
             f"({(run['best'] or {}).get('config')}); {run['screened_only']} screened only, measuring "
             f"{m['screening']['measuring_s']} s vs {m['screening']['measuring_every_trial_fully_s']} s fully.\n")
    return text


if __name__ == "__main__":
    main()
