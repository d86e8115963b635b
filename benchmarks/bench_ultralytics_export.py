"""Packaging time against Ultralytics' own `export` on YOLOv8n, per format both tools produce: ONNX
(edgeopt `generic`), OpenVINO FP32 (`intel-cpu`) and OpenVINO INT8 (`intel-cpu --quantize int8`;
Ultralytics `format=openvino quantize=8`, the `int8=True` of older releases). Target: edgeopt at
most 1.5x Ultralytics' time, its parity check included.

Both start from PyTorch with the same architecture at the same input size: edgeopt from the zoo's
`tests/zoo/models2.py::yolov8n` (ultralytics' yolov8n.yaml, scale n, 3,157,200 parameters; image
96, nc 80) through `edgeopt package FILE.py:yolov8n --input-shape input=1,3,96,96`, Ultralytics
from `YOLO("yolov8n.yaml")` (random weights, nothing downloaded) through `model.export(imgsz=96)`.
Each run is the whole command in a fresh process (interpreter start, imports, model build,
conversion; for edgeopt also the parity run of source and artifact and the bundle with its
sha256s), timed from outside; the cells alternate which tool goes first. INT8 calibrates on the
same 32 synthetic 96x96 images on both sides: PNGs in a YOLO folder layout (empty labels) with a
dataset YAML for Ultralytics' `data=`, and the same pixels (RGB / 255, NCHW) as the `--calib` .npz
with `--subset-size 32` for edgeopt.

Ultralytics cannot be imported beside the project's torch: it runs from its own virtual
environment outside the repository (`--ultra-python`), made with

    python3.11 -m venv /work/venvs/ultra
    /work/venvs/ultra/bin/pip install torch==2.14.1 torchvision==0.29.1
    /work/venvs/ultra/bin/pip install ultralytics==8.4.190 onnx onnxslim onnxruntime openvino nncf

(onnxruntime too: Ultralytics' ONNX export checks for it and would otherwise try to pip-install it).
It runs with YOLO_OFFLINE=1, YOLO_AUTOINSTALL=0 and its own YOLO_CONFIG_DIR under benchmarks/.cache
(settings sync off, a local font in place of the Arial.ttf it would otherwise try to fetch when it
reads a dataset YAML). Without that environment the benchmark says so and exits 0.

    PYTHONPATH=. nice -n 10 .venv/bin/python benchmarks/bench_ultralytics_export.py
        [--repeats 3] [--warmup 1] [--ultra-python /work/venvs/ultra/bin/python] [--no-latency]

Writes benchmarks/results/ultralytics_export.json and .md; data, artifacts and bundles go to
benchmarks/.cache/ultralytics_export/.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import common  # noqa: E402

CACHE = common.CACHE / "ultralytics_export"
DEFAULT_ULTRA_PYTHON = "/work/venvs/ultra/bin/python"
IMAGE = 96
CALIB_IMAGES = 32
CALIB_SEED = 1
TARGET_RATIO = 1.5
FORMATS = {  # name -> (edgeopt profile, edgeopt quantize, ultralytics format, ultralytics quantize)
    "onnx": ("generic", "none", "onnx", None),
    "openvino-fp32": ("intel-cpu", "none", "openvino", None),
    "openvino-int8": ("intel-cpu", "int8", "openvino", 8),
}
ULTRA_ENV = {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "0"}
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

# Runs in the Ultralytics environment, from a fresh empty folder (export writes beside the model's
# yaml name, i.e. there). Times its import and export on its own clock; the last stdout line is JSON.
DRIVER = r"""
import json, sys, time
t0 = time.perf_counter()
from ultralytics import YOLO
from ultralytics.engine import exporter as _exporter
t1 = time.perf_counter()
fmt, quantize, data, imgsz = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
seen = {}
_loader = _exporter.Exporter.get_int8_calibration_dataloader
def _counted(self, prefix=""):  # records how many images calibration gets; changes nothing
    loader = _loader(self, prefix)
    seen.update(calibration_images=len(loader.dataset), calibration_batch=loader.batch_size,
                calibration_batches=len(loader))
    return loader
_exporter.Exporter.get_int8_calibration_dataloader = _counted
kwargs = {"format": fmt, "imgsz": imgsz, "device": "cpu"}
if quantize != "none":
    kwargs.update(quantize=int(quantize), data=data)
model = YOLO("yolov8n.yaml")
# BatchNorm statistics settled as the zoo settles its yolov8n (tests/zoo/models.py settle_batchnorm): left at their
# initial values, fusing BN gives every convolution a zero bias, which OpenVINO folds away, and the IR
# Ultralytics quantizes would be smaller than any trained model's (307 ops against 416).
import torch
torch.manual_seed(0)
for m in model.model.modules():
    if isinstance(m, torch.nn.BatchNorm2d):
        m.momentum = None
model.model.train()
with torch.no_grad():
    for _ in range(2):
        model.model(torch.randn(4, 3, imgsz, imgsz))
model.model.eval()
def _args(exporter):
    a = exporter.args
    seen["args"] = {k: getattr(a, k, None) for k in ("format", "imgsz", "batch", "quantize", "dynamic", "simplify",
                                                    "opset", "nms", "fraction", "split", "device")}
model.add_callback("on_export_end", _args)
t2 = time.perf_counter()
artifact = model.export(**kwargs)
t3 = time.perf_counter()
print(json.dumps(dict(seen, import_s=t1 - t0, build_s=t2 - t1, export_s=t3 - t2, artifact=str(artifact))))
"""

# Runs once in the Ultralytics environment before any clock: versions, settings, the font.
SETUP = r"""
import json, pathlib, shutil, sys
import matplotlib
config = pathlib.Path(sys.argv[1])
font = config / "Ultralytics" / "Arial.ttf"
if not font.is_file():  # check_font() would fetch Arial.ttf (a 3 s time-out offline) on every dataset YAML
    font.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(pathlib.Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf", font)
from importlib import metadata
from ultralytics.utils import SETTINGS
SETTINGS.update(sync=False)
names = ("ultralytics", "torch", "torchvision", "onnx", "onnxslim", "onnxruntime", "openvino", "nncf", "numpy")
versions = {}
for n in names:
    try:
        versions[n] = metadata.version(n)
    except metadata.PackageNotFoundError:
        pass
print(json.dumps({"python": sys.version.split()[0], "versions": versions}))
"""


# --- inputs ------------------------------------------------------------------------------------

def _synthetic_images(n: int, seed: int):
    """n seeded 96x96 RGB uint8 images: a two-colour gradient, a few filled rectangles and
    ellipses, mild noise (something like a picture, for calibration statistics)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:IMAGE, 0:IMAGE].astype(np.float32) / (IMAGE - 1)
    images = []
    for _ in range(n):
        a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        t = (xx if rng.random() < 0.5 else yy)[..., None]
        img = a * (1 - t) + b * t
        for _ in range(int(rng.integers(1, 5))):
            x0, y0 = rng.integers(0, IMAGE - 16, 2)
            w, h = rng.integers(12, IMAGE // 2, 2)
            colour = rng.uniform(0, 255, 3)
            if rng.random() < 0.5:
                img[y0:y0 + h, x0:x0 + w] = colour
            else:
                cy, cx = y0 + h / 2, x0 + w / 2
                inside = ((yy * (IMAGE - 1) - cy) / (h / 2)) ** 2 + ((xx * (IMAGE - 1) - cx) / (w / 2)) ** 2 <= 1
                img[inside] = colour
        img += rng.normal(0, 6, img.shape)
        images.append(np.clip(img, 0, 255).astype(np.uint8))
    return np.stack(images)


def prepare(n_images: int) -> dict:
    """The edgeopt PyTorch source, the image folder + dataset YAML (Ultralytics) and the same
    images as a calibration .npz (edgeopt). Written once, outside every clock."""
    import numpy as np
    from PIL import Image

    CACHE.mkdir(parents=True, exist_ok=True)
    source = CACHE / "yolov8n_zoo.py"
    source.write_text(f"import sys\nsys.path.insert(0, {str(HERE.parent / 'tests')!r})\nfrom zoo import ZOO\n\n\n"
                      "def yolov8n():\n    return ZOO['yolov8n'].build()\n")
    data = CACHE / f"calib{n_images}"
    images_dir, labels_dir = data / "images" / "calib", data / "labels" / "calib"
    calib = data / "calib.npz"
    yaml = data / "data.yaml"
    if not (calib.is_file() and yaml.is_file() and len(list(images_dir.glob("*.png"))) == n_images):
        shutil.rmtree(data, ignore_errors=True)
        images_dir.mkdir(parents=True)
        labels_dir.mkdir(parents=True)
        images = _synthetic_images(n_images, CALIB_SEED)
        for i, img in enumerate(images):
            Image.fromarray(img).save(images_dir / f"img{i:04d}.png")
            (labels_dir / f"img{i:04d}.txt").write_text("")   # no objects: a background image
        # Ultralytics feeds uint8 RGB CHW (its LetterBox is the identity at 96 -> 96) and divides by 255
        np.savez(calib, input=(images.transpose(0, 3, 1, 2).astype(np.float32) / 255.0))
        names = "".join(f"  {i}: class{i}\n" for i in range(80))
        yaml.write_text(f"path: {data}\ntrain: images/calib\nval: images/calib\nnames:\n{names}")
    return {"source": f"{source}:yolov8n", "calib": calib, "data_yaml": yaml, "images": n_images}


# --- runs --------------------------------------------------------------------------------------

def _run(cmd, cwd, env, timeout) -> dict:
    """The whole command in a fresh process group, wall-timed: rc, seconds, stdout, stderr's tail."""
    cwd.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        rc = "timeout"
    seconds = time.perf_counter() - start
    return {"rc": rc, "seconds": seconds, "stdout": out, "stderr": err}


def _last_json(text: str) -> dict:
    """The JSON document on stdout: all of it (edgeopt --json), else its last line (the driver)."""
    try:
        doc = json.loads(text)
        return doc if isinstance(doc, dict) else {}
    except ValueError:
        pass
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                break
    return {}


def _tail(text: str, lines=3) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])[:600]


def edgeopt_command(fmt: str, inputs: dict, output: pathlib.Path) -> list:
    profile, quantize, _, _ = FORMATS[fmt]
    cmd = [str(pathlib.Path(sys.executable).parent / "edgeopt"), "package", inputs["source"],
           "--input-shape", f"input=1,3,{IMAGE},{IMAGE}", "-p", profile, "-o", str(output), "--force", "--json"]
    if quantize != "none":
        cmd += ["--quantize", quantize, "--calib", str(inputs["calib"]), "--subset-size", str(inputs["images"])]
    return cmd


def ultralytics_command(python: str, fmt: str, inputs: dict) -> list:
    _, _, ufmt, quantize = FORMATS[fmt]
    return [python, "-c", DRIVER, ufmt, str(quantize or "none"), str(inputs["data_yaml"]), str(IMAGE)]


def ultra_env() -> dict:
    return dict(os.environ, **ULTRA_ENV, YOLO_CONFIG_DIR=str(CACHE / "ultralytics-config"))


def run_edgeopt(fmt, inputs, run_dir, timeout) -> dict:
    shutil.rmtree(run_dir, ignore_errors=True)
    bundle = run_dir / f"yolov8n-{fmt}.edgepkg"
    res = _run(edgeopt_command(fmt, inputs, bundle), run_dir, dict(os.environ), timeout)
    manifest = _last_json(res["stdout"]) if res["rc"] == 0 else {}
    parity = manifest.get("parity") or {}
    run = {"seconds": res["seconds"], "rc": res["rc"], "parity_passed": bool(res["rc"] == 0 and parity.get("passed")),
           "conversion_s": manifest.get("conversion_seconds"), "bundle": str(bundle)}
    if parity:
        run["parity"] = {k: v for k, v in parity.items() if isinstance(v, (str, int, float, bool))}
    if res["rc"] != 0:
        run["error"] = _tail(res["stderr"] or res["stdout"])
    return run


def run_ultralytics(python, fmt, inputs, run_dir, timeout) -> dict:
    shutil.rmtree(run_dir, ignore_errors=True)
    res = _run(ultralytics_command(python, fmt, inputs), run_dir, ultra_env(), timeout)
    doc = _last_json(res["stdout"])
    run = {"seconds": res["seconds"], "rc": res["rc"], "import_s": doc.get("import_s"), "build_s": doc.get("build_s"),
           "export_s": doc.get("export_s"),
           "artifact": str(run_dir / doc["artifact"]) if doc.get("artifact") else None}
    for key in ("calibration_images", "calibration_batch", "calibration_batches", "args"):
        if key in doc:
            run[key] = doc[key]
    if res["rc"] != 0 or not doc.get("artifact"):
        run["error"] = _tail(res["stderr"] or res["stdout"])
    log = ANSI.sub("", res["stderr"] + res["stdout"])
    run["log"] = [line.strip() for line in log.splitlines() if not line.startswith("{")
                  and re.search(r"export with|slimming|simplif|Scanning|calibration|opset|WARNING", line)][:12]
    return run


def run_pair(python, fmt, inputs, index, timeout, edgeopt_first) -> tuple:
    def edge():
        return run_edgeopt(fmt, inputs, CACHE / "runs" / f"edgeopt-{fmt}-{index}", timeout)

    def ultra():
        return run_ultralytics(python, fmt, inputs, CACHE / "runs" / f"ultralytics-{fmt}-{index}", timeout)

    if edgeopt_first:
        e = edge()
        return e, ultra()
    u = ultra()
    return edge(), u


# --- artifacts ---------------------------------------------------------------------------------

def _onnx_facts(path) -> dict:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    ops = collections.Counter(n.op_type for n in model.graph.node)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)

    def dims(vi):
        return [d.dim_value or d.dim_param for d in vi.type.tensor_type.shape.dim]

    return {"opset": opset, "ir_version": model.ir_version, "nodes": len(model.graph.node),
            "ops": dict(sorted(ops.items())), "inputs": {i.name: dims(i) for i in model.graph.input},
            "outputs": {o.name: dims(o) for o in model.graph.output},
            "producer": f"{model.producer_name} {model.producer_version}".strip()}


def _ir_facts(xml) -> dict:
    text = pathlib.Path(xml).read_text()
    ops = collections.Counter(re.findall(r'<layer [^>]*type="([A-Za-z0-9_]+)"', text))
    weights = pathlib.Path(xml).with_suffix(".bin")
    return {"layers": sum(ops.values()), "fake_quantize": ops.get("FakeQuantize", 0),
            "convolutions": ops.get("Convolution", 0) + ops.get("GroupConvolution", 0),
            "weights_bytes": weights.stat().st_size if weights.is_file() else None}


def artifacts(fmt, edge_run, ultra_run) -> dict:
    """The last runs' artifacts, both as the runtime loads them: paths, sizes, graph facts."""
    out = {}
    bundle = pathlib.Path(edge_run["bundle"])
    if edge_run["rc"] == 0 and bundle.is_file():
        dest = bundle.parent / "extracted"
        with tarfile.open(bundle) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith("model/")]
            tar.extractall(dest, members=members, filter="data")
        model = dest / ("model/model.onnx" if fmt == "onnx" else "model/model.xml")
        out["edgeopt"] = {"path": str(model), "bundle_bytes": bundle.stat().st_size,
                          **(_onnx_facts(model) if fmt == "onnx" else _ir_facts(model))}
    artifact = ultra_run.get("artifact")
    if artifact and ultra_run["rc"] == 0:
        path = pathlib.Path(artifact)
        if path.is_dir():
            path = next(path.glob("*.xml"))
        files = [path] if path.suffix == ".onnx" else [path, path.with_suffix(".bin")]
        out["ultralytics"] = {"path": str(path), "bytes": sum(f.stat().st_size for f in files),
                              **(_onnx_facts(path) if fmt == "onnx" else _ir_facts(path))}
    return out


def latency(fmt, facts, rounds=5, iterations=100) -> dict:
    """p50 ms of each tool's artifact at one thread on this host, the two measured in turns (a
    sanity check that the two artifacts are comparable; `edgeopt bench` is the real measurement)."""
    import numpy as np

    if set(facts) != {"edgeopt", "ultralytics"}:
        return {}
    x = np.random.default_rng(0).random((1, 3, IMAGE, IMAGE), dtype=np.float32)
    runners = {}
    for tool, info in facts.items():
        if fmt == "onnx":
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
            sess = ort.InferenceSession(info["path"], opts, providers=["CPUExecutionProvider"])
            feed = {sess.get_inputs()[0].name: x}
            runners[tool] = lambda sess=sess, feed=feed: sess.run(None, feed)
        else:
            import openvino as ov

            compiled = ov.Core().compile_model(info["path"], "CPU",
                                               {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": 1})
            request = compiled.create_infer_request()
            runners[tool] = lambda request=request: request.infer([x])
    per_round = {tool: [] for tool in runners}
    for r in range(rounds):
        for tool in (list(runners) if r % 2 == 0 else list(runners)[::-1]):
            run = runners[tool]
            for _ in range(10):
                run()
            times = []
            for _ in range(iterations):
                t = time.perf_counter()
                run()
                times.append((time.perf_counter() - t) * 1000)
            per_round[tool].append(common.median(times))
    result = {f"{tool}_p50_ms": round(common.median(v), 3) for tool, v in per_round.items()}
    result["ratio"] = round(result["edgeopt_p50_ms"] / result["ultralytics_p50_ms"], 3)
    return result


# --- the benchmark -----------------------------------------------------------------------------

def ultra_setup(python) -> dict | None:
    """Versions in the Ultralytics environment (and its font and settings); None when it is unusable."""
    if not pathlib.Path(python).is_file():
        print(f"skipped: no Ultralytics environment at {python} (--ultra-python; this script's docstring says "
              "how to make it)", file=sys.stderr)
        return None
    res = _run([python, "-c", SETUP, str(CACHE / "ultralytics-config")], CACHE, ultra_env(), 300)
    doc = _last_json(res["stdout"])
    if res["rc"] != 0 or not doc:
        print(f"skipped: {python} is not a usable Ultralytics environment: "
              f"{_tail(res['stderr'] or res['stdout'])}", file=sys.stderr)
        return None
    return doc


def edgeopt_versions() -> dict:
    import nncf
    import onnx
    import openvino

    return {"openvino": openvino.__version__.split("-")[0], "nncf": nncf.__version__, "onnx": onnx.__version__}


def run(python, repeats=3, warmup=1, formats=tuple(FORMATS), measure_latency=True, timeout=900.0,
        tries=None, n_images=CALIB_IMAGES) -> dict:
    inputs = prepare(n_images)
    for w in range(warmup):   # imports, .pyc files, Ultralytics' label cache: none of it timed
        for fmt in formats:
            e, u = run_pair(python, fmt, inputs, "warmup", timeout, edgeopt_first=True)
            print(f"warm-up {fmt}: edgeopt {e['seconds']:.1f} s (rc {e['rc']}), ultralytics {u['seconds']:.1f} s "
                  f"(rc {u['rc']})", file=sys.stderr, flush=True)
    runs = {fmt: [] for fmt in formats}
    for r in range(repeats):
        for i, fmt in enumerate(formats):
            edgeopt_first = (r + i) % 2 == 0
            (e, u), foreign, n_tries = common.checked(
                lambda fmt=fmt, r=r, first=edgeopt_first: run_pair(python, fmt, inputs, r, timeout, first),
                tries=tries)
            runs[fmt].append({"edgeopt": e, "ultralytics": u, "edgeopt_first": edgeopt_first,
                              "ratio": e["seconds"] / u["seconds"], "foreign_cpu": round(foreign, 3), "tries": n_tries})
            print(f"[{r + 1}/{repeats}] {fmt}: edgeopt {e['seconds']:.1f} s (rc {e['rc']}, parity "
                  f"{'pass' if e['parity_passed'] else 'FAIL'}), ultralytics {u['seconds']:.1f} s (rc {u['rc']}), "
                  f"ratio {e['seconds'] / u['seconds']:.2f}", file=sys.stderr, flush=True)
    rows = []
    for fmt in formats:
        fr = runs[fmt]
        last = fr[-1]
        facts = artifacts(fmt, last["edgeopt"], last["ultralytics"])
        row = {"format": fmt, "edgeopt_profile": FORMATS[fmt][0], "edgeopt_quantize": FORMATS[fmt][1],
               "edgeopt_s": common.median(x["edgeopt"]["seconds"] for x in fr),
               "ultralytics_s": common.median(x["ultralytics"]["seconds"] for x in fr),
               "ratio": common.median(x["ratio"] for x in fr),
               "edgeopt_conversion_s": _median_of(x["edgeopt"].get("conversion_s") for x in fr),
               "ultralytics_import_s": _median_of(x["ultralytics"].get("import_s") for x in fr),
               "ultralytics_export_s": _median_of(x["ultralytics"].get("export_s") for x in fr),
               "parity_passed_runs": sum(1 for x in fr if x["edgeopt"]["parity_passed"]),
               "failed_runs": {tool: sum(1 for x in fr if x[tool]["rc"] != 0) for tool in ("edgeopt", "ultralytics")},
               "artifacts": facts, "runs": fr}
        row["within_target"] = row["ratio"] <= TARGET_RATIO
        calib = [x["ultralytics"].get("calibration_images") for x in fr if x["ultralytics"].get("calibration_images")]
        if calib:
            row["ultralytics_calibration_images"] = max(calib)
        if measure_latency:
            try:
                row["latency"] = latency(fmt, facts)
            except Exception as exc:   # optional figure: say why it is missing
                row["latency"] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        rows.append(row)
    python_cmds = {fmt: _relative(" ".join(ultralytics_command("ULTRA_PYTHON", fmt, inputs)[3:])) for fmt in formats}
    return {"repeats": repeats, "warmup": warmup, "image": IMAGE, "calibration_images": n_images,
            "target_ratio": TARGET_RATIO, "rows": rows,
            "commands": {"edgeopt": {fmt: _relative(" ".join(edgeopt_command(fmt, inputs, OUT)[1:]))
                                     for fmt in formats},
                         "ultralytics": {fmt: "YOLO('yolov8n.yaml').export(" + _export_kwargs(fmt) + ")"
                                         for fmt in formats},
                         "ultralytics_driver_args": python_cmds},
            "ultralytics_env": ULTRA_ENV, "tries": tries or common.MAX_TRIES}


OUT = pathlib.Path("OUT.edgepkg")


def _relative(text: str) -> str:
    return text.replace(str(HERE.parent) + "/", "")


def _export_kwargs(fmt) -> str:
    _, _, ufmt, quantize = FORMATS[fmt]
    kw = f"format='{ufmt}', imgsz={IMAGE}, device='cpu'"
    return kw + (f", quantize={quantize}, data='data.yaml'" if quantize else "")


def _median_of(values):
    values = [v for v in values if v is not None]
    return common.median(values) if values else None


def markdown(result) -> str:
    rows = []
    for r in result["rows"]:
        lat = r.get("latency") or {}
        lat_text = (f"{lat['edgeopt_p50_ms']:.2f} / {lat['ultralytics_p50_ms']:.2f}" if "ratio" in lat else "-")
        conv = f"{r['edgeopt_conversion_s']:.1f}" if r["edgeopt_conversion_s"] is not None else "-"
        uexp = f"{r['ultralytics_export_s']:.1f}" if r["ultralytics_export_s"] is not None else "-"
        failed = ", ".join(f"{t} {n}" for t, n in r["failed_runs"].items() if n)
        rows.append([r["format"], f"{r['edgeopt_profile']}" + (" int8" if r["edgeopt_quantize"] != "none" else ""),
                     f"{r['edgeopt_s']:.1f}", f"{r['ultralytics_s']:.1f}", f"**{r['ratio']:.2f}**",
                     "yes" if r["within_target"] else "**no**",
                     f"{r['parity_passed_runs']}/{len(r['runs'])}", conv, uexp, lat_text, failed or "-"])
    shares = [x["foreign_cpu"] for r in result["rows"] for x in r["runs"]]
    table = common.md_table(["format", "edgeopt profile", "edgeopt s (whole command)", "Ultralytics s (whole command)",
                             "edgeopt / Ultralytics (median of per-run ratios)",
                             f"<= {result['target_ratio']}x", "edgeopt parity passed", "edgeopt conversion s",
                             "Ultralytics export() s", "p50 ms edgeopt / Ultralytics artifact (1 thread)",
                             "failed runs"], rows)
    notes = [f"YOLOv8n at {result['image']}x{result['image']} (same architecture on both sides), "
             f"{result['repeats']} repeats after {result['warmup']} untimed warm-up per cell, the tool going first "
             f"alternating; INT8 calibrates on the same {result['calibration_images']} images on both sides"
             + "".join(f" (Ultralytics used {r['ultralytics_calibration_images']})" for r in result["rows"]
                       if r.get("ultralytics_calibration_images")) + ".",
             ("Whole command: a fresh process, interpreter start and imports included; edgeopt's includes its "
              "parity check and the bundle, Ultralytics' has no output check."),
             common.disturbed_note(shares).replace(f"after {common.MAX_TRIES} tries",
                                                   f"after {result.get('tries', common.MAX_TRIES)} tries")]
    for r in result["rows"]:
        a = r["artifacts"]
        if r["format"] == "onnx" and set(a) == {"edgeopt", "ultralytics"}:
            e, u = a["edgeopt"], a["ultralytics"]
            notes.append(f"ONNX graphs: edgeopt opset {e['opset']}, {e['nodes']} nodes; Ultralytics opset "
                         f"{u['opset']}, {u['nodes']} nodes (onnxslim).")
        if r["format"] == "openvino-int8" and set(a) == {"edgeopt", "ultralytics"}:
            notes.append(f"OpenVINO INT8: FakeQuantize nodes edgeopt {a['edgeopt']['fake_quantize']}, Ultralytics "
                         f"{a['ultralytics']['fake_quantize']} (Ultralytics: NNCF preset MIXED with the Detect "
                         "head's box/DFL and Sigmoid ops left in float; edgeopt intel-cpu: preset PERFORMANCE).")
    return table + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs of each cell first")
    parser.add_argument("--ultra-python", default=DEFAULT_ULTRA_PYTHON,
                        help="python of the virtual environment with ultralytics (default: %(default)s)")
    parser.add_argument("--formats", default=",".join(FORMATS), help="comma-separated: " + ", ".join(FORMATS))
    parser.add_argument("--no-latency", action="store_true", help="skip the artifacts' p50 check")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per run")
    parser.add_argument("--tries", type=int, default=None,
                        help=f"measurements of a pair under other load before keeping it (default {common.MAX_TRIES})")
    parser.add_argument("--name", default="ultralytics_export", help="results file stem under benchmarks/results/")
    args = parser.parse_args(argv)
    formats = [f for f in args.formats.split(",") if f]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        parser.error(f"--formats: unknown {', '.join(unknown) or '(empty)'}; choose from {', '.join(FORMATS)}")
    CACHE.mkdir(parents=True, exist_ok=True)
    ultra = ultra_setup(args.ultra_python)
    if ultra is None:
        return 0
    result = run(args.ultra_python, args.repeats, args.warmup, formats, not args.no_latency, args.timeout, args.tries)
    result["ultralytics_python"] = args.ultra_python
    result["tool_versions"] = {"ultralytics_env": ultra, "edgeopt_env": edgeopt_versions()}
    path = common.save(args.name, json.loads(_relative(json.dumps(result))))   # paths from the repository root
    md = path.with_suffix(".md")
    md.write_text(f"# Packaging time: edgeopt vs Ultralytics export (YOLOv8n)\n\n{markdown(result)}")
    print(md.read_text())
    print(f"wrote {path} and {md}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
