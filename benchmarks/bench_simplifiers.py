"""Graph simplifiers on the zoo's exports: edgeopt's (ONNX Runtime's basic optimizer run offline,
edgeopt/simplify.py) against onnxslim and onnxsim, the field's two tools, on the same shape-fixed ONNX files.

Per model and tool: nodes before and after, wall time, whether the result runs in ONNX Runtime and gives the
same outputs as the export (max abs difference on one fixed random input; outputs whose shapes differ are
not compared), and its FP32 p50 at 1 thread (all variants of a model timed call by call in turn for
--seconds, medians).

onnxslim and onnxsim are not edgeopt dependencies, so this runs from its own venv with edgeopt's pins of onnx,
onnxruntime and numpy (edgeopt itself imported from the checkout):

    /root/.pyenv/versions/3.11.7/bin/python -m venv /work/venvs/slim
    /work/venvs/slim/bin/pip install onnxslim==0.1.98 onnxsim onnx==1.23.2 onnxruntime==1.32.0 numpy==2.4.6
    PYTHONPATH=. /work/venvs/slim/bin/python benchmarks/bench_simplifiers.py [--models a,b] [--seconds 2]

The ONNX files are the zoo matrix's legacy exports (benchmarks/.cache/zoo/MODEL-legacy.onnx, written by
`python benchmarks/zoo_matrix.py` from the dev venv, which has torch).
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import common  # noqa: E402  (stdlib only at import: it runs in the simplifiers' own venv too)
ZOO_CACHE = HERE / ".cache" / "zoo"
RESULTS = HERE / "results"
MODELS = ("mobilenet_v2", "mobilenet_v3_small", "resnet18", "efficientnet_b0", "shufflenet_v2", "deit_tiny",
          "convnext", "yolov8n", "ssdlite_nms", "deeplabv3", "kws_gru", "silero_vad")
TOOLS = ("as exported", "edgeopt (ORT basic)", "onnxslim", "onnxsim")


def _simplified(tool: str, src: pathlib.Path, out: pathlib.Path) -> dict:
    """{"path", "seconds"} of `tool`'s result, or {"error"}."""
    import onnx

    start = time.perf_counter()
    try:
        if tool == "as exported":
            return {"path": src, "seconds": 0.0}
        if tool == "edgeopt (ORT basic)":
            from edgeopt.simplify import simplify
            done = simplify(src, out)
            path = out if done["applied"] else src
        elif tool == "onnxslim":
            import onnxslim
            onnx.save(onnxslim.slim(onnx.load(str(src))), str(out))
            path = out
        else:
            import onnxsim
            model, checked = onnxsim.simplify(onnx.load(str(src)))
            if not checked:
                return {"error": "onnxsim's own check failed"}
            onnx.save(model, str(out))
            path = out
    except Exception as e:   # a tool's failure is a finding, recorded
        return {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"}
    return {"path": path, "seconds": round(time.perf_counter() - start, 2)}


def _feed(session) -> dict:
    rng = np.random.default_rng(0)
    feed = {}
    for i in session.get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in i.shape]
        feed[i.name] = (rng.standard_normal(shape).astype(np.float32) if i.type == "tensor(float)"
                        else np.full(shape, 16000, np.int64))
    return feed


def _session(path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_model(model: str, seconds: float, work: pathlib.Path) -> dict:
    import onnx

    src = ZOO_CACHE / f"{model}-legacy.onnx"
    row = {"model": model, "tools": {}}
    sessions = {}
    for tool in TOOLS:
        made = _simplified(tool, src, work / f"{model}-{tool.split()[0]}.onnx")
        entry = row["tools"][tool] = {k: v for k, v in made.items() if k != "path"}
        if "path" not in made:
            continue
        entry["nodes"] = len(onnx.load(str(made["path"]), load_external_data=False).graph.node)
        try:
            sessions[tool] = _session(made["path"])
        except Exception as e:
            entry["error"] = f"ONNX Runtime cannot load it: {str(e).splitlines()[0][:160]}"
    feed = _feed(sessions["as exported"])
    reference = sessions["as exported"].run(None, feed)
    for tool, session in sessions.items():
        outputs = session.run(None, feed)
        comparable = [(a, b) for a, b in zip(reference, outputs) if np.shape(a) == np.shape(b)]
        row["tools"][tool]["max_abs_diff"] = (float(max(np.max(np.abs(np.asarray(a, np.float64) - b)) if np.size(a)
                                                        else 0.0 for a, b in comparable)) if comparable else None)
    times = common.interleaved({tool: lambda session=session: session.run(None, feed)
                                for tool, session in sessions.items()}, seconds)
    for tool, values in times.items():
        row["tools"][tool]["p50_ms"] = round(float(np.median(values)) * 1e3, 4)
    return row


def markdown(rows: list) -> str:
    lines = ["| model | " + " | ".join(f"{t}: nodes, s, p50 ms" for t in TOOLS) + " |", "|---" * (len(TOOLS) + 1) + "|"]
    for r in rows:
        cells = []
        for tool in TOOLS:
            e = r["tools"][tool]
            if "error" in e:
                cells.append(f"**fails**: {e['error'][:60]}")
                continue
            diff = e.get("max_abs_diff")
            flag = "" if diff is None or diff < 1e-4 else f" (**outputs differ by {diff:.2g}**)"
            cells.append(f"{e['nodes']}, {e['seconds']:.2f} s, {e['p50_ms']:.3f}{flag}")
        lines.append(f"| {r['model']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args(argv)
    import onnxruntime
    import onnxsim
    import onnxslim

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-simplifiers-") as tmp:
        for model in args.models.split(","):
            rows.append(run_model(model, args.seconds, pathlib.Path(tmp)))
            print(json.dumps(rows[-1]), flush=True)
    versions = {"onnxslim": onnxslim.__version__, "onnxsim": onnxsim.__version__, "onnxruntime": onnxruntime.__version__}
    text = markdown(rows)
    print(text)
    (RESULTS / "simplifiers.json").write_text(json.dumps({"versions": versions, "rows": rows}, indent=1) + "\n")
    (RESULTS / "simplifiers.md").write_text(f"# Graph simplifiers on the zoo's exports\n\nVersions: {versions}\n\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
