"""Coverage matrix: every zoo model (tests/zoo) x profile x precision through `edgeopt package`
(edgeopt.api), then a short `bench` on local. Records per cell: packaged or not, the first error
line and its cause, packaging seconds, p50 ms.

    python benchmarks/zoo_matrix.py [--models a,b] [--profiles generic,intel-cpu,raspberry-pi-5]
                                    [--precisions fp32,int8] [--exporter legacy|dynamo] [--jobs 1]
                                    [--timeout 600] [--name zoo_matrix]

Each cell runs in its own process (its own process group, killed whole on timeout), so one
crash or hang costs one cell. Writes benchmarks/results/<name>.json and .md; exported models,
data and bundles go to benchmarks/.cache/zoo/.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))   # the zoo lives with the tests

import common  # noqa: E402

ZOO_CACHE = common.CACHE / "zoo"
PROFILES = ("generic", "intel-cpu", "raspberry-pi-5")
PRECISIONS = ("fp32", "int8")
# A short measuring loop: the matrix is about coverage; p50 is a sanity figure, not a benchmark.
LOOP = {"min_iterations": 20, "min_seconds": 0.2, "max_iterations": 200, "warmup_iterations": 3,
        "warmup_seconds": 0.0, "max_seconds": 10.0}
SENSING = {"no_power": True, "idle_seconds": 0.0}
BENCH_TIMEOUT = 180.0


def _first_line(text: str) -> str:
    return next((line.strip() for line in str(text).splitlines() if line.strip()), "")


def _where(exc) -> str:
    """The deepest frame inside edgeopt/ (or the last frame): where an unexpected exception came from."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/edgeopt/" in f.filename]
    frame = (ours or frames)[-1]
    path = frame.filename.split("/site-packages/")[-1].split(str(HERE.parent) + "/")[-1]
    return f"{path}:{frame.lineno} ({frame.name})"


def _error(stage, exc) -> dict:
    return {"stage": stage, "type": type(exc).__name__, "message": _first_line(exc) or type(exc).__name__,
            "where": _where(exc)}


def run_cell(model: str, profile: str, precision: str, exporter: str, strict: bool = False) -> dict:
    """One cell in this process: package (timed), then bench on local. Never raises.

    A parity mismatch is recorded (parity_passed false, parity_message) and, unless `strict`, the
    bundle is still measured: with random weights the logits of a classifier are close together,
    so INT8 top-1 agreement says little, and the cell still shows whether conversion works."""
    from edgeopt import api
    from edgeopt.parity import describe_failure

    paths = _files(model, exporter)
    cell = {"model": model, "profile": profile, "precision": precision, "exporter": exporter,
            "packaged": False, "benched": False}
    bundle = ZOO_CACHE / "bundles" / f"{model}-{exporter}-{profile}-{precision}.edgepkg"
    bundle.parent.mkdir(parents=True, exist_ok=True)
    quantize = "int8" if precision == "int8" else "none"
    start = time.perf_counter()
    try:
        manifest = api.package(str(paths["onnx"]), profile, output=bundle, quantize=quantize,
                               calib=str(paths["calib"]) if quantize != "none" else None,
                               name=bundle.name.removesuffix(".edgepkg"), allow_mismatch=not strict)
    except Exception as e:  # every failure is a finding: record it, whatever raised it
        cell.update(package_seconds=round(time.perf_counter() - start, 2), error=_error("package", e))
        return cell
    parity = manifest.get("parity") or {}
    cell.update(packaged=True, package_seconds=round(time.perf_counter() - start, 2), parity=_parity_summary(parity),
                parity_passed=bool(parity.get("passed")), bundle_bytes=bundle.stat().st_size)
    if not parity.get("passed"):
        cell["parity_message"] = describe_failure(parity).split(" (--allow-mismatch")[0]
    names = [t["name"] for t in manifest.get("outputs", [])]   # the artifact's outputs, in the source's order
    comparisons = {o.get("name") or (names[o["output"]] if o["output"] < len(names) else str(o["output"])):
                   o["comparison"] for o in parity.get("outputs", [])}
    if set(comparisons.values()) - {"elementwise", "top1_agreement", "relative_error", "sqnr"}:
        cell["parity_comparisons"] = comparisons   # set-like outputs (detections): how each was compared
    hint = (manifest.get("compression") or {}).get("host_hint") or {}
    if "ratio" in hint:
        cell["host_hint_ratio"] = hint["ratio"]
    with tempfile.TemporaryDirectory(prefix="zoo-bench-") as results:
        try:
            doc = api.bench(bundle, "local", results, threads=1, loop=LOOP, timeout=BENCH_TIMEOUT, sensing=SENSING)
        except Exception as e:
            cell["error"] = _error("bench", e)
            return cell
    cell.update(benched=True, p50_ms=(doc.get("latency") or {}).get("p50_ms"))
    return cell


def _parity_summary(parity: dict) -> dict:
    """The parity report's scalars (its metric, figures, tolerance, sample count), no per-output lists."""
    return {k: v for k, v in parity.items() if isinstance(v, (str, int, float, bool))}


def _files(model: str, exporter: str) -> dict:
    from zoo import ZOO
    from zoo.data import write_files

    files = write_files(ZOO[model], ZOO_CACHE, (exporter,))
    return {"onnx": files["onnx"][exporter], "calib": files["calib"], "eval": files["eval"]}


# --- causes ---------------------------------------------------------------------------------------

CAUSES = [  # (cause, pattern on "Type: message where"), first match wins
    ("timeout", r"^Timeout"),
    ("missing op in edgeopt/convert/onnx_torch.py", r"not supported by the ONNX -> LiteRT converter"),
    ("onnx_torch limitation", r"onnx_torch\.py"),
    ("parity failure", r"^ParityMismatch"),
    ("parity feed: input whose first dim is not a batch (state)",
     r"invalid dimensions for input|invalid rank for input"),
    ("calibration layout (scalar or state input)", r"calibration file|eval data file|expects \(N"),
    ("quantizer error", r"ort_quantize|nncf|quantiz|ai_edge_quantizer"),
    ("LiteRT conversion (litert-torch) error", r"litert|torch/_export|torch/export|tflite"),
    ("OpenVINO error", r"openvino"),
    ("bench on local failed", r"^bench "),
]


def cause(cell: dict) -> str:
    err = cell.get("error")
    if not err:
        return ""
    text = f"{'bench ' if err['stage'] == 'bench' else ''}{err['type']}: {err['message']} {err['where']}"
    return next((name for name, pattern in CAUSES if re.search(pattern, text, re.IGNORECASE)), f"other ({err['type']})")


def missing_op(cell: dict) -> str:
    m = re.search(r"op (\S+) \(node", (cell.get("error") or {}).get("message", ""))
    return m.group(1) if m else ""


# --- running --------------------------------------------------------------------------------------

def spawn_cell(model, profile, precision, exporter, timeout, strict=False) -> dict:
    """run_cell in a fresh process group; the whole group is killed when `timeout` passes."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = pathlib.Path(f.name)
    cmd = [sys.executable, str(pathlib.Path(__file__).resolve()), "--cell", model, profile, precision,
           "--exporter", exporter, "--cell-out", str(out)] + (["--strict"] if strict else [])
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        cell = {"model": model, "profile": profile, "precision": precision, "exporter": exporter,
                "packaged": False, "benched": False,
                "error": {"stage": "cell", "type": "Timeout", "message": f"no result after {timeout:.0f} s",
                          "where": ""}}
    else:
        text = out.read_text() if out.stat().st_size else ""
        cell = json.loads(text) if text else {
            "model": model, "profile": profile, "precision": precision, "exporter": exporter, "packaged": False,
            "benched": False, "error": {"stage": "cell", "type": f"exit {proc.returncode}",
                                        "message": _first_line(stderr.strip().splitlines()[-1] if stderr.strip()
                                                               else "no output"), "where": ""}}
    out.unlink(missing_ok=True)
    cell["cell_seconds"] = round(time.perf_counter() - start, 1)
    cell["cause"] = cause(cell)
    if missing_op(cell):
        cell["missing_op"] = missing_op(cell)
    return cell


def litert_gaps(models, exporter) -> dict:
    """{model: [ONNX op types its export uses that edgeopt/convert/onnx_torch.py does not map]}: all
    of them at once (the converter names only the first it meets)."""
    import onnx

    from edgeopt.convert.onnx_torch import OPS

    gaps = {}
    for model in models:
        graph = onnx.load(str(_files(model, exporter)["onnx"])).graph
        gaps[model] = sorted({n.op_type for n in graph.node} - set(OPS) - {"Constant"})
    return gaps


def run_matrix(models, profiles, precisions, exporter, jobs, timeout, strict=False) -> list:
    for model in models:   # export and write data once, before any clock runs
        _files(model, exporter)
    cells = [(m, p, q) for m in models for p in profiles for q in precisions]
    results = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(spawn_cell, m, p, q, exporter, timeout, strict): (m, p, q) for m, p, q in cells}
        for future in concurrent.futures.as_completed(futures):
            cell = future.result()
            results.append(cell)
            status = (f"p50 {cell['p50_ms']:.2f} ms" + ("" if cell.get("parity_passed") else " (parity mismatch)")
                      if cell.get("benched") else
                      f"FAILED [{cell['cause']}] {cell['error']['message'][:160]}")
            print(f"[{len(results)}/{len(cells)}] {cell['model']} {cell['profile']} {cell['precision']}: "
                  f"{status} ({cell['cell_seconds']} s)", file=sys.stderr, flush=True)
    order = {c: i for i, c in enumerate(cells)}
    return sorted(results, key=lambda c: order[(c["model"], c["profile"], c["precision"])])


# --- tables ---------------------------------------------------------------------------------------

def _cell_text(cell: dict) -> str:
    mismatch = "" if cell.get("parity_passed", True) else f"mismatch ({_parity_figure(cell)}), "
    if cell.get("benched"):
        return f"{mismatch or 'ok '}{cell['p50_ms']:.2f} ms ({cell['package_seconds']:.0f} s)"
    if cell.get("packaged"):
        return f"{mismatch}packaged, bench failed ({cell['package_seconds']:.0f} s)"
    op = cell.get("missing_op")
    return f"FAIL: onnx_torch lacks {op}" if op else f"FAIL: {cell['cause']}"


def _parity_figure(cell: dict) -> str:
    """"top1_agreement 0.27", "relative_error 0.56": the metric the profile judged, from the message."""
    m = re.search(r"source model: (\S+) (\S+)", cell.get("parity_message", ""))
    names = {"top1_agreement": "top-1", "relative_error": "rel err", "sqnr_db": "SQNR dB", "max_abs_error": "max err",
             "agreement": "set agreement"}
    return f"{names.get(m.group(1), m.group(1))} {m.group(2)}" if m else "?"


def _short(message: str) -> str:
    return message.split("; supported:")[0][:300]


def summary_rows(doc: dict) -> list:
    """Per profile and precision: cells packaged and measured, of them within parity, median packaging seconds."""
    rows = []
    for profile in doc["profiles"]:
        for precision in doc["precisions"]:
            group = [c for c in doc["cells"] if c["profile"] == profile and c["precision"] == precision]
            benched = [c for c in group if c.get("benched")]
            clean = [c for c in benched if c.get("parity_passed")]
            seconds = sorted(c["package_seconds"] for c in group if c.get("packaged"))
            median = f"{seconds[len(seconds) // 2]:.0f} s" if seconds else "-"
            rows.append([profile, precision, f"{len(benched)}/{len(group)}", f"{len(clean)}/{len(group)}", median])
    return rows


def ratio_rows(doc: dict) -> list:
    """INT8/FP32 p50 on local per model and profile (< 1: INT8 faster), and the packaging host's hint."""
    by_key = {(c["model"], c["profile"], c["precision"]): c for c in doc["cells"]}
    rows = []
    for model in doc["models"]:
        row = [model]
        for profile in doc["profiles"]:
            fp32, int8 = by_key.get((model, profile, "fp32"), {}), by_key.get((model, profile, "int8"), {})
            text = f"{int8['p50_ms'] / fp32['p50_ms']:.2f}" if fp32.get("p50_ms") and int8.get("p50_ms") else "-"
            if "host_hint_ratio" in int8:
                text += f" (hint {int8['host_hint_ratio']:.2f})"
            row.append(text)
        rows.append(row)
    return rows


def markdown(doc: dict) -> str:
    cells = doc["cells"]
    columns = [(p, q) for p in doc["profiles"] for q in doc["precisions"]]
    by_key = {(c["model"], c["profile"], c["precision"]): c for c in cells}
    rows = [[m] + [_cell_text(by_key[(m, p, q)]) if (m, p, q) in by_key else "" for p, q in columns]
            for m in doc["models"]]
    ok = sum(1 for c in cells if c.get("benched"))
    clean = sum(1 for c in cells if c.get("benched") and c.get("parity_passed"))
    lines = [f"# Zoo coverage matrix ({doc['exporter']} export)", "",
             f"{ok} of {len(cells)} cells packaged and measured, {clean} of them within the profile's parity "
             "tolerance. Cell: p50 on local at 1 thread (packaging seconds), a parity mismatch with the "
             "figure the profile judged (packaged anyway, as --allow-mismatch does), or the failure's cause. "
             "Command: `"
             + doc["command"] + "`", "",
             common.md_table(["model"] + [f"{p} {q}" for p, q in columns], rows), "",
             "## Per profile", "",
             common.md_table(["profile", "precision", "packaged and measured", "within parity", "median packaging"],
                             summary_rows(doc)), "",
             "## INT8/FP32 latency ratio (p50 on local, 1 thread; < 1: INT8 faster)", "",
             "The hint is the packaging host's own alternating timing that `package` prints (cells packaged "
             "before the OpenVINO hint existed have none).", "",
             common.md_table(["model"] + list(doc["profiles"]), ratio_rows(doc)), "",
             "## Failures by cause", ""]
    groups = {}
    for c in cells:
        if c.get("error"):
            groups.setdefault(c["cause"], []).append(c)
    for name, members in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        lines.append(f"### {name} ({len(members)} cells)")
        for c in members:
            err = c["error"]
            where = f" [{err['where']}]" if err.get("where") else ""
            lines.append(f"- {c['model']} / {c['profile']} / {c['precision']}: {err['type']}: "
                         f"{_short(err['message'])}{where}")
        lines.append("")
    compared = [c for c in cells if c.get("parity_comparisons")]
    if compared:
        lines += ["## Outputs compared as sets (detections)", ""]
        lines += [f"- {c['model']} / {c['profile']} / {c['precision']}: "
                  + ", ".join(f"{k} {v}" for k, v in c["parity_comparisons"].items()) for c in compared]
        lines.append("")
    mismatched = [c for c in cells if c.get("packaged") and not c.get("parity_passed")]
    if mismatched:
        lines += [f"## Parity mismatches (packaged anyway) ({len(mismatched)} cells)", ""]
        untied = [c for c in cells if (c.get("parity") or {}).get("top1_why_not")]
        if untied:
            lines += [f"{len(untied)} INT8 classifier cells are judged by SQNR per output, not top-1 agreement: on most "
                      "samples their source's top-1 leads by less than twice the INT8 error (random weights give "
                      "near-tied logits; `parity.top1_robust_share`): each output's SQNR judges them.", ""]
        lines += [f"- {c['model']} / {c['profile']} / {c['precision']}: {c['parity_message']}" for c in mismatched]
        lines.append("")
    lines += ["## ONNX ops of each export that edgeopt/convert/onnx_torch.py does not map (LiteRT path)", ""]
    lines += [f"- {m}: {', '.join(ops) or 'none'}" for m, ops in doc["litert_unmapped_ops"].items()] + [""]
    if doc.get("skipped"):
        lines += [f"Not run: {', '.join(f'{m} ({why})' for m, why in doc['skipped'].items())}.", ""]
    if doc.get("updates"):
        lines += ["Cells re-run since (replacing theirs): " + "; ".join(f"`{u}`" for u in doc["updates"]), ""]
    lines.append(f"Total {doc['seconds'] / 60:.1f} min, timeout {doc['timeout_s']} s per cell, jobs {doc['jobs']}.")
    return "\n".join(lines) + "\n"


def merge(old: dict, new: dict, order: list) -> dict:
    """`old` results with the cells of `new` in place of theirs (same model, profile, precision)."""
    keys = {(c["model"], c["profile"], c["precision"]) for c in new["cells"]}
    cells = [c for c in old["cells"] if (c["model"], c["profile"], c["precision"]) not in keys] + new["cells"]
    models = [m for m in order if m in set(old["models"]) | set(new["models"])]
    profiles = [p for p in PROFILES if p in set(old["profiles"]) | set(new["profiles"])]
    cells.sort(key=lambda c: (models.index(c["model"]), profiles.index(c["profile"]), PRECISIONS.index(c["precision"])))
    return dict(old, models=models, profiles=profiles, cells=cells, seconds=old["seconds"] + new["seconds"],
                zoo=dict(old.get("zoo", {}), **new["zoo"]),
                litert_unmapped_ops=dict(old.get("litert_unmapped_ops", {}), **new["litert_unmapped_ops"]),
                updates=old.get("updates", []) + [new["command"]])


def _csv(value: str, allowed, what: str) -> list:
    items = [v for v in value.split(",") if v]
    unknown = [v for v in items if v not in allowed]
    if unknown or not items:
        raise SystemExit(f"--{what}: unknown {', '.join(unknown) or '(empty)'}; choose from {', '.join(allowed)}")
    return items


def main(argv=None) -> int:
    from edgeopt import api
    from zoo import ZOO
    from zoo.data import EXPORTERS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(ZOO))
    ap.add_argument("--profiles", default=",".join(PROFILES))
    ap.add_argument("--precisions", default=",".join(PRECISIONS))
    ap.add_argument("--exporter", default="legacy", choices=EXPORTERS,
                    help="legacy: torch.onnx.export(dynamo=False, opset 17); dynamo: torch's default exporter")
    ap.add_argument("--jobs", type=int, default=1, help="cells at once (1: clean timings on a small machine)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per cell (package + bench)")
    ap.add_argument("--name", default="zoo_matrix", help="results file stem under benchmarks/results/")
    ap.add_argument("--strict", action="store_true", help="a parity mismatch fails the cell (no --allow-mismatch)")
    ap.add_argument("--update", action="store_true",
                    help="replace only the cells run now in the existing results file (re-run a few models)")
    ap.add_argument("--cell", nargs=3, metavar=("MODEL", "PROFILE", "PRECISION"), help=argparse.SUPPRESS)
    ap.add_argument("--cell-out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.cell:
        cell = run_cell(*args.cell, args.exporter, args.strict)
        pathlib.Path(args.cell_out).write_text(json.dumps(cell))
        return 0
    models = _csv(args.models, list(ZOO), "models")
    profiles = _csv(args.profiles, [p["name"] for p in api.profiles()], "profiles")
    precisions = _csv(args.precisions, PRECISIONS, "precisions")
    skipped = {m: f"no {args.exporter} export" for m in models if args.exporter not in ZOO[m].exporters}
    models = [m for m in models if m not in skipped]
    start = time.perf_counter()
    cells = run_matrix(models, profiles, precisions, args.exporter, max(1, args.jobs), args.timeout, args.strict)
    command = "python benchmarks/zoo_matrix.py " + " ".join(argv if argv is not None else sys.argv[1:])
    doc = {"command": command, "exporter": args.exporter, "models": models, "profiles": profiles,
           "precisions": precisions, "jobs": args.jobs, "timeout_s": args.timeout, "loop": LOOP,
           "seconds": round(time.perf_counter() - start, 1), "zoo": {m: ZOO[m].follows for m in models},
           "litert_unmapped_ops": litert_gaps(models, args.exporter), "cells": cells, "skipped": skipped}
    if args.update:
        doc = merge(json.loads((common.RESULTS / f"{args.name}.json").read_text()), doc, list(ZOO))
    path = common.save(args.name, doc)
    md = path.with_suffix(".md")
    md.write_text(markdown(doc))
    print(md.read_text())
    print(f"wrote {path} and {md}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
