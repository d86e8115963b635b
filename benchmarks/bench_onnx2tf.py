"""The LiteRT route against onnx2tf where both convert: edgeopt's ONNX -> PyTorch -> litert-torch chain
(`package --profile raspberry-pi-5`, FP32) and onnx2tf 2.x's direct flatbuffer writer (`-tb
flatbuffer_direct`, no TensorFlow) on the zoo's legacy exports (benchmarks/zoo_matrix.py writes them).

onnx2tf cannot live in edgeopt's environment (docs/architecture.md, "The Raspberry Pi path"): 2.x needs
Python >= 3.12 and pins onnx, onnxruntime and ai-edge-litert. It runs from its own venv, and so does this
script; edgeopt is called as a subprocess of its own venv:

    /root/.pyenv/versions/3.12.1/bin/python -m venv /work/venvs/onnx2tf
    /work/venvs/onnx2tf/bin/pip install onnx2tf          # 2.6.9: onnx 1.20.1, onnxruntime 1.26, ai-edge-litert 2.1.2
    /work/venvs/onnx2tf/bin/python benchmarks/bench_onnx2tf.py [--models a,b] [--seconds 3]

Per model: each converter's wall time (onnx2tf's process; edgeopt's `conversion_seconds`, the conversion
alone, and its whole `package` with parity), whether the .tflite loads with LiteRT's default XNNPACK delegate
(what a Pi runs), the max abs error of each against ONNX Runtime on the first eval sample, and both files'
p50 on this host's LiteRT (1 thread, XNNPACK, timed call by call in turn for --seconds). Same runtime for
both files; an x86 host, so a hint for the Pi, not its figure.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import tarfile
import tempfile
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
ZOO = HERE / ".cache" / "zoo"
EDGEOPT = HERE.parent / ".venv" / "bin" / "edgeopt"
MODELS = ("mobilenet_v2", "mobilenet_v3_small", "resnet18", "efficientnet_b0", "shufflenet_v2", "deit_tiny",
          "convnext", "yolov8n", "ssdlite_nms", "deeplabv3", "kws_gru", "silero_vad")


def onnx2tf(src, out_dir) -> dict:
    start = time.perf_counter()
    done = subprocess.run([str(pathlib.Path(sys.executable).parent / "onnx2tf"), "-i", str(src), "-o", str(out_dir),
                           "-tb", "flatbuffer_direct", "-n"], capture_output=True, text=True, timeout=900)
    result = {"seconds": round(time.perf_counter() - start, 1)}
    files = sorted(pathlib.Path(out_dir).glob("*_float32.tflite"))
    if done.returncode != 0 or not files:
        lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        return dict(result, error=" | ".join(lines[-2:])[-300:])
    return dict(result, tflite=str(files[0]))


def edgeopt(src, out_dir) -> dict:
    bundle = pathlib.Path(out_dir) / "pi.edgepkg"
    start = time.perf_counter()
    done = subprocess.run([str(EDGEOPT), "package", str(src), "--profile", "raspberry-pi-5", "-o", str(bundle),
                           "--json", "--quiet"], capture_output=True, text=True, timeout=900)
    result = {"package_seconds": round(time.perf_counter() - start, 1)}
    if done.returncode != 0:
        return dict(result, error=done.stderr.strip()[-300:])
    result["conversion_seconds"] = round(json.loads(done.stdout)["conversion_seconds"], 1)
    with tarfile.open(bundle) as tar:
        (pathlib.Path(out_dir) / "edgeopt.tflite").write_bytes(tar.extractfile("model/model.tflite").read())
    return dict(result, tflite=str(pathlib.Path(out_dir) / "edgeopt.tflite"))


def source_feed(model) -> tuple:
    """({input: first eval sample in the model's shape}, ONNX Runtime's outputs on it)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(ZOO / f"{model}-legacy.onnx"), providers=["CPUExecutionProvider"])
    data = np.load(ZOO / f"{model}_eval.npz")
    feed = {}
    for spec in session.get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in spec.shape]
        array = data[spec.name]
        first = array[0] if array.ndim == len(shape) + 1 else array[:max(1, shape[0] if shape else 1)]
        feed[spec.name] = np.asarray(first).reshape(shape).astype(array.dtype)
    return feed, session.run(None, feed)


def interpreter(path, feed):
    """A LiteRT interpreter (default XNNPACK delegate, 1 thread) with `feed` set; inputs matched by name,
    or by order, in NCHW or NHWC."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(str(path), num_threads=1)
    it.allocate_tensors()
    arrays = list(feed.items())
    for k, spec in enumerate(it.get_input_details()):
        name = next((n for n, _ in arrays if n in spec["name"]), arrays[min(k, len(arrays) - 1)][0])
        x = np.asarray(feed[name])
        if x.ndim >= 3 and tuple(spec["shape"]) != x.shape:
            x = np.moveaxis(x, 1, -1)
        it.set_tensor(spec["index"], np.asarray(x, dtype=spec["dtype"]).reshape(spec["shape"]))
    return it


def max_error(it, reference) -> list:
    """Per source output: the least max abs error over the .tflite's outputs of its shape (NCHW or NHWC)."""
    it.invoke()
    outs = [it.get_tensor(d["index"]) for d in it.get_output_details()]
    errors = []
    for ref in reference:
        found = [o for out in outs for o in (out, np.moveaxis(out, -1, 1) if out.ndim >= 3 else out)
                 if o.shape == ref.shape]
        errors.append(min((float(np.max(np.abs(o.astype(np.float64) - ref), initial=0.0)) for o in found),
                          default=None))
    return errors


def timed(interpreters: dict, seconds: float) -> dict:
    samples = {k: [] for k in interpreters}
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or min(len(s) for s in samples.values()) < 20:
        for k, it in interpreters.items():
            t0 = time.perf_counter()
            it.invoke()
            samples[k].append(time.perf_counter() - t0)
    return {k: round(float(np.median(s)) * 1e3, 4) for k, s in samples.items()}


def run_model(model, seconds, work) -> dict:
    src = ZOO / f"{model}-legacy.onnx"
    row = {"model": model, "onnx2tf": onnx2tf(src, work / "onnx2tf"), "edgeopt": edgeopt(src, work)}
    feed, reference = source_feed(model)
    loaded = {}
    for who in ("onnx2tf", "edgeopt"):
        if "tflite" not in row[who]:
            continue
        try:
            it = interpreter(row[who]["tflite"], feed)
            row[who]["max_abs_error"] = max_error(it, reference)
            loaded[who] = it
        except Exception as e:  # noqa: BLE001 - a converter's file that LiteRT cannot run is the finding
            row[who]["runtime_error"] = f"{type(e).__name__}: {e}"[:200]
    if len(loaded) == 2:
        row["p50_ms"] = timed(loaded, seconds)
        row["onnx2tf_vs_edgeopt"] = round(row["p50_ms"]["onnx2tf"] / row["p50_ms"]["edgeopt"], 3)
    for who in ("onnx2tf", "edgeopt"):
        row[who].pop("tflite", None)
    return row


def markdown(rows) -> str:
    def verdict(r):
        if "error" in r:
            return "conversion failed"
        if "runtime_error" in r:
            return "runs nowhere here: " + r["runtime_error"][:60]
        worst = max((e for e in r["max_abs_error"] if e is not None), default=None)
        return "no output matched" if worst is None else f"ok, max err {worst:.1e}"
    lines = ["| model | onnx2tf s | edgeopt conversion s (package s) | onnx2tf .tflite | edgeopt .tflite | "
             "p50 ms onnx2tf / edgeopt |", "|---|---|---|---|---|---|"]
    for r in rows:
        o, e = r["onnx2tf"], r["edgeopt"]
        p50 = (f"{r['p50_ms']['onnx2tf']:.3f} / {r['p50_ms']['edgeopt']:.3f} ({r['onnx2tf_vs_edgeopt']:.2f}x)"
               if "p50_ms" in r else "-")
        lines.append(f"| {r['model']} | {o['seconds']} | {e.get('conversion_seconds', '-')} ({e['package_seconds']}) | "
                     f"{verdict(o)} | {verdict(e)} | {p50} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    rows = []
    for model in args.models.split(","):
        print(f"{model}...", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(prefix=f"onnx2tf-{model}-") as work:
            rows.append(run_model(model, args.seconds, pathlib.Path(work)))
    import onnx2tf as tool

    doc = {"onnx2tf": tool.__version__, "python": sys.version.split()[0], "seconds": args.seconds, "rows": rows}
    (HERE / "results" / "onnx2tf.json").write_text(json.dumps(doc, indent=1) + "\n")
    (HERE / "results" / "onnx2tf.md").write_text(markdown(rows) + "\n")
    print(markdown(rows))


if __name__ == "__main__":
    main()
