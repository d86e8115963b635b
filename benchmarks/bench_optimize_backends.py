"""`edgeopt optimize` choosing the backend (issue 14): on `intel-cpu` hardware, which runs OpenVINO and ONNX
Runtime, a grid study over both backends' quantizations and INT8 options on the MobileNetV2-size model of
bench_optimize.py (trained briefly on the digits at 96x96: mobilenet_digits.py), every trial packaged and
measured on `local`. Then the chosen bundle and the best of the other backend are benched in turn by `edgeopt
bench`, IN_TURN_PAIRS times each. A real board would give other numbers; what is shown is that the choice of
backend is measured, not assumed.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_optimize_backends.py [--work DIR_WITH_A_TRAINED_MODEL]
"""
from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_optimize import edgeopt  # noqa: E402
from common import RESULTS, environment, md_table  # noqa: E402

# Both backends' quantizations and searched INT8 options; no transform, so that the backend and its INT8 recipe
# are what differ (a grid of 7 configurations: OpenVINO none, INT8 x preset x activation range; ORT none, INT8).
SPACE = """quantize = ["none", "int8"]
precision = ["fp32"]
keep_float = [""]
prune = false
lowrank = false
"""
BUDGETS = {"latency_p50_ms": "0.8x", "accuracy_drop": 0.01}
IN_TURN_PAIRS = 6


def trained(work: pathlib.Path) -> dict:
    """The trained MobileNetV2 in `work` (a bench_optimize workspace), else trained there now."""
    import mobilenet_digits

    weights = work / "mobilenet_v2_digits96.py"
    if not weights.is_file():
        mobilenet_digits.train(work)
    return {"model": f"{weights}:build", "calib": work / "digits96_calib.npz", "eval": work / "digits96_eval.npz"}


def study(work: pathlib.Path, model: dict) -> dict:
    (work / "backends-space.toml").write_text(SPACE)
    args = ["optimize", model["model"], "--input-shape", "input=1,3,96,96", "--profile", "intel-cpu",
            "--calib", model["calib"], "--eval-data", model["eval"], "--space", work / "backends-space.toml",
            "--sampler", "grid", "--trials", 20, "--study", "backends", "--objective", "latency_p50_ms",
            "--results-dir", work / "rb", "--output-dir", work / "ob", "--keep-bundles", "--json"]   # benched below
    args += [a for k, v in BUDGETS.items() for a in ("--budget", f"{k}={v}")]
    p, seconds = edgeopt(*args, home=work)
    assert p.returncode in (0, 1), p.stderr[-2000:]
    return dict(json.loads(p.stdout), seconds=round(seconds, 1))


def backend_of(row: dict) -> str:
    return row["config"].split("backend=")[1].split()[0] if "backend=" in row["config"] else "openvino (baseline)"


def in_turn(work: pathlib.Path, bundles: dict) -> dict:
    readings = {name: [] for name in bundles}
    for _ in range(IN_TURN_PAIRS):
        for name, bundle in bundles.items():
            p, _ = edgeopt("bench", bundle, "--results-dir", work / "rb", "--json", home=work)
            assert p.returncode == 0, p.stderr[-2000:]
            readings[name].append(json.loads(p.stdout)["latency"]["p50_ms"])
    other, chosen = readings["other backend's best"], readings["chosen"]
    ratios = [round(a / b, 3) for a, b in zip(other, chosen)]
    return {"readings_ms": readings, "ratios": ratios, "median_ratio": statistics.median(ratios)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=pathlib.Path, help="a folder holding the trained MobileNetV2 (else trained anew)")
    args = ap.parse_args()
    work = args.work or pathlib.Path(tempfile.mkdtemp(prefix="bench-optimize-backends-"))
    outcome = study(work, trained(work))
    rows = [t for t in outcome["trials"] if not t["cached"]]
    best = outcome["best"]
    doc = {"environment": environment(), "space": SPACE, "budgets": BUDGETS, "seconds": outcome["seconds"],
           "trials": [{k: t[k] for k in ("trial", "config", "figures", "paired", "feasible", "twin_of", "error")}
                      for t in rows], "best": best and {k: best[k] for k in ("trial", "config", "figures", "paired")}}
    if best:
        # the other backend's fastest trial by its paired ratio, whether or not it met the latency budget
        others = [t for t in rows if t["state"] == "complete" and (t["paired"] or {}).get("latency_p50_ms")
                  and backend_of(t).split()[0] != backend_of(best).split()[0]]
        other = min(others, key=lambda t: t["paired"]["latency_p50_ms"], default=None)
        if other:
            doc["other_backend_best"] = {k: other[k] for k in ("trial", "config", "figures", "paired")}
            doc["in_turn"] = in_turn(work, {"other backend's best": other["bundle"], "chosen": best["bundle"]})
    (RESULTS / "optimize_backends.json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
    text = summary(doc)
    (RESULTS / "optimize_backends.md").write_text(text)
    print(text)


def summary(doc: dict) -> str:
    text = (f"MobileNetV2 on intel-cpu (`local`), budgets {doc['budgets']}, grid over both backends, "
            f"{doc['seconds']} s. Space:\n\n```toml\n{doc['space']}```\n\n")
    text += md_table(["trial", "configuration", "p50 ms", "/ paired baseline", "accuracy drop", "feasible"],
                     [[t["trial"], t["config"] + (f" (same bundle as trial {t['twin_of']})" if t["twin_of"] is not None
                                                  else ""),
                       t["figures"].get("latency_p50_ms"), (t["paired"] or {}).get("latency_p50_ms"),
                       t["figures"].get("accuracy_drop"),
                       "yes" if t["feasible"] else f"failed: {t['error']}" if t["error"] else ""] for t in doc["trials"]])
    best, other, turn = doc.get("best"), doc.get("other_backend_best"), doc.get("in_turn")
    text += f"\n\nChosen: {best['config'] if best else 'none'}"
    if other and turn:
        text += (f"; the other backend's best: {other['config']}. Benched in turn, {len(turn['ratios'])} pairs: "
                 f"{turn['readings_ms']}; ratios (other / chosen) {turn['ratios']}, median "
                 f"**{turn['median_ratio']}x**")
    return text + ".\n"


if __name__ == "__main__":
    main()
