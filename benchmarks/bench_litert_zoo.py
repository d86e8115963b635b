"""Raspberry Pi (LiteRT) coverage of the model zoo (tests/zoo): every model from three sources
(ONNX legacy export, ONNX dynamo export, PyTorch: module:callable, or an ExportedProgram .pt2 for
multi-input models) x FP32 and full-integer INT8, through `edgeopt.api.package --profile
raspberry-pi-5`. A cell counts when the bundle is written and parity passes.

    PYTHONPATH=. python benchmarks/bench_litert_zoo.py [--models a,b] [--sources onnx-legacy,onnx-dynamo,torch]
                                                        [--precisions fp32,int8] [--cells torch:fp32,...]
                                                        [--name litert_zoo]

Writes benchmarks/results/<name>.json and .md (incrementally: a cell at a time). Exports, data and
bundles go to benchmarks/.cache/litert_zoo/. Each cell runs in this process, one after another.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))   # the zoo lives with the tests

import common  # noqa: E402

CACHE = common.CACHE / "litert_zoo"
SOURCES = ("onnx-legacy", "onnx-dynamo", "torch")
PRECISIONS = ("fp32", "int8")
PROFILE = "raspberry-pi-5"


def _torch_source(entry) -> tuple:
    """(model reference, input shapes): module:callable for one input, else a saved ExportedProgram."""
    import numpy as np
    import torch

    if len(entry.inputs_spec) == 1:
        path = CACHE / "zoo_modules.py"
        path.write_text(f"import sys\nsys.path.insert(0, {str(HERE.parent / 'tests')!r})\nfrom zoo import ZOO\n\n\n"
                        "def build(name):\n    return ZOO[name].build()\n\n\n"
                        + "".join(f"def {name}():\n    return build({name!r})\n\n\n" for name in _all_models()))
        spec = entry.inputs_spec[0]
        return f"{path}:{entry.name}", {spec.name: list(spec.shape)}
    pt2 = CACHE / f"{entry.name}.pt2"
    if not pt2.is_file():
        args = tuple(torch.from_numpy(np.asarray(v)) for v in entry.inputs().values())
        torch.export.save(torch.export.export(entry.build(), args), str(pt2))
    return str(pt2), {}


def _stacked_data(entry, model: str, source: str) -> dict:
    """Calibration and eval .npz in the stacked form ([N, *shape] per input), under the source's input
    names (an ExportedProgram names them after forward()'s arguments)."""
    import numpy as np
    import torch
    from zoo.data import CALIB_SAMPLES, CALIB_SEED, EVAL_SAMPLES, EVAL_SEED

    names = [s.name for s in entry.inputs_spec]
    if source == "torch":
        program = torch.export.load(model)
        names = [s.arg.name for s in program.graph_signature.input_specs
                 if s.kind == torch.export.graph_signature.InputKind.USER_INPUT]
    out = {}
    for key, n, seed in (("calib", CALIB_SAMPLES, CALIB_SEED), ("eval", EVAL_SAMPLES, EVAL_SEED)):
        arrays = [entry.inputs(seed + 100 * i) for i in range(n)]
        path = CACHE / f"{entry.name}-{source}-{key}-stacked.npz"
        np.savez(path, **{name: np.stack([np.asarray(a[spec.name]) for a in arrays])
                          for name, spec in zip(names, entry.inputs_spec)})
        out[key] = path
    return out


def _all_models():
    from zoo import ZOO
    return list(ZOO)


def cell(entry, source: str, precision: str) -> dict:
    from edgeopt import api
    from zoo.data import write_files

    out = {"model": entry.name, "source": source, "precision": precision}
    start = time.perf_counter()
    try:
        files = write_files(entry, CACHE, ("legacy", "dynamo"))
        if source == "torch":
            model, shapes = _torch_source(entry)
        else:
            model, shapes = str(files["onnx"][source.split("-")[1]]), {}
        if len(entry.inputs_spec) > 1:   # state/scalar inputs: edgeopt's stacked form, named as the source names them
            files = _stacked_data(entry, model, source)
        kwargs = {"quantize": "int8", "calib": str(files["calib"])} if precision == "int8" else {}
        manifest = api.package(model, PROFILE, output=CACHE / "bundles" / f"{entry.name}-{source}-{precision}.edgepkg",
                               input_shapes=shapes, eval_data=str(files["eval"]), allow_mismatch=True, **kwargs)
        parity = manifest["parity"]
        out.update(packaged=True, parity_passed=not parity.get("allowed_by_user"),
                   parity=_figure(parity), converter=manifest["compression"].get("converter"),
                   relative_error=relative_error(manifest["path"], parity))
    except Exception as e:  # a cell records any failure and the run goes on
        out.update(packaged=False, error=f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:300]}")
    out["seconds"] = round(time.perf_counter() - start, 1)
    return out


def relative_error(bundle, parity: dict):
    """max_abs_error over the largest |reference output| in the bundle's eval data: a scale-free figure
    for outputs in pixels or logits of random weights, where top-1 agreement says little."""
    import io
    import tarfile

    import numpy as np

    with tarfile.open(bundle) as tar:
        member = next((n for n in tar.getnames() if n.endswith("data/eval.npz")), None)
        if member is None:
            return None
        data = np.load(io.BytesIO(tar.extractfile(member).read()))
        scale = max(float(np.abs(data[k]).max()) for k in data.files if k.startswith("ref:"))
    return float(f"{parity['max_abs_error'] / scale:.3g}") if scale else None


def _figure(parity: dict) -> str:
    metric = parity.get("metric", "max_abs_error")
    value = parity.get(metric, parity.get("max_abs_error"))
    return f"{metric} {value:.3g}" if isinstance(value, (int, float)) else metric


def markdown(doc: dict) -> str:
    cells = doc["cells"]
    by_key = {(c["model"], c["source"], c["precision"]): c for c in cells}
    columns = [(s, p) for s in doc["sources"] for p in doc["precisions"]]

    def text(c):
        if c is None:
            return ""
        if not c["packaged"]:
            return "FAIL"
        rel = f", rel {c['relative_error']:.2g}" if c.get("relative_error") is not None else ""
        return ("ok " if c["parity_passed"] else "MISMATCH ") + c["parity"] + rel
    rows = [[m] + [text(by_key.get((m, s, p))) for s, p in columns] for m in doc["models"]]
    lines = [f"# Raspberry Pi (LiteRT) coverage of the zoo ({PROFILE})", "", f"Command: `{doc['command']}`", ""]
    for s, p in columns:
        ok = sum(1 for c in cells if c["source"] == s and c["precision"] == p and c.get("parity_passed"))
        n = sum(1 for c in cells if c["source"] == s and c["precision"] == p)
        lines.append(f"- {s} {p}: {ok}/{n} packaged with parity")
    lines += ["", common.md_table(["model"] + [f"{s} {p}" for s, p in columns], rows), "", "## Failures", ""]
    lines += [f"- {c['model']} / {c['source']} / {c['precision']}: {c['error']}" for c in cells if c.get("error")]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    from zoo import ZOO

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(ZOO))
    ap.add_argument("--sources", default=",".join(SOURCES))
    ap.add_argument("--precisions", default=",".join(PRECISIONS))
    ap.add_argument("--cells", default="", help="source:precision pairs to run per model, in this order "
                    "(default: every source x precision)")
    ap.add_argument("--name", default="litert_zoo")
    args = ap.parse_args(argv)
    CACHE.mkdir(parents=True, exist_ok=True)
    doc = {"models": args.models.split(","), "sources": args.sources.split(","),
           "precisions": args.precisions.split(","), "cells": [],
           "command": "python benchmarks/bench_litert_zoo.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    common.RESULTS.mkdir(parents=True, exist_ok=True)
    pairs = ([tuple(c.split(":")) for c in args.cells.split(",")] if args.cells
             else [(s, p) for s in doc["sources"] for p in doc["precisions"]])
    doc["sources"] = list(dict.fromkeys(s for s, _ in pairs))
    doc["precisions"] = list(dict.fromkeys(p for _, p in pairs))
    for model in doc["models"]:
        for source, precision in pairs:
            doc["cells"].append(cell(ZOO[model], source, precision))
            print(json.dumps(doc["cells"][-1]), flush=True)
            (common.RESULTS / f"{args.name}.json").write_text(json.dumps(doc, indent=1))
            (common.RESULTS / f"{args.name}.md").write_text(markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
