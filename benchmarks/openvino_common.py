"""Shared helpers for the bench_openvino_*.py scripts: the models, edgeopt packaging for any
profile, OpenVINO's own benchmark_app, and the NNCF recipe as an OpenVINO user writes it by hand.

The hand recipe (`python openvino_common.py hand MODEL.onnx CALIB.npz OUT_DIR [int8]`) runs in a
fresh process so its timing includes nothing of edgeopt's, and prints one JSON line.
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import resource
import subprocess
import sys
import tarfile
import tempfile
import time

import common

BENCHMARK_APP = pathlib.Path(sys.executable).parent / "benchmark_app"
THREADS = 1


def models(names=("digits_cnn", "mobilenet_v2", "resnet18")) -> dict:
    """{name: {"model": .onnx, "calib": .npz, "eval": .npz or None}} (CNN exports are cached)."""
    out = {}
    for name in names:
        if name == "digits_cnn":
            from edgeopt.api import sample_paths
            s = sample_paths()
            out[name] = {"model": s["model"], "calib": s["calib"], "eval": s["eval"]}
        elif name == "mobilenet_v2":
            import cnn_models
            out[name] = dict(cnn_models.mobilenet_v2_onnx(), eval=None)
        else:
            import resnet
            out[name] = dict(resnet.resnet18_onnx(), eval=None)
    return out


class BackgroundLoad:
    """CPU the rest of the machine used while a block ran: all cores' busy time from /proc/stat minus
    what this process's children used, as a fraction of the cores' capacity (0 = quiet machine)."""

    def __enter__(self):
        self.start = self._snapshot()
        return self

    def __exit__(self, *exc):
        (busy0, ours0, wall0), (busy1, ours1, wall1) = self.start, self._snapshot()
        cores = os.cpu_count() or 1
        self.fraction = max(0.0, ((busy1 - busy0) - (ours1 - ours0)) / ((wall1 - wall0) * cores))
        return False

    @staticmethod
    def _snapshot():
        ticks = os.sysconf("SC_CLK_TCK")
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        busy = (sum(fields) - fields[3] - fields[4]) / ticks  # all but idle and iowait
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        own = resource.getrusage(resource.RUSAGE_SELF)
        return busy, usage.ru_utime + usage.ru_stime + own.ru_utime + own.ru_stime, time.perf_counter()


def versions() -> dict:
    """The OpenVINO-side tool versions (common.save records python, numpy, onnxruntime, torch)."""
    import nncf
    import openvino

    return {"openvino": openvino.__version__.split("-")[0], "nncf": nncf.__version__}


def calib_samples(calib) -> int:
    import numpy as np
    with np.load(calib) as f:
        return len(f[f.files[0]])


def package(name, info, profile, quantize="none", precision="fp32", **kwargs) -> dict:
    """edgeopt.api.package into the cache. The random-weight CNNs have no eval data and near-tied
    logits on random inputs, so their INT8 parity (top-1 agreement) says nothing: allowed there."""
    from edgeopt import api

    extra = dict(kwargs)
    if quantize == "int8":
        extra.setdefault("calib", info["calib"])
        if profile == "intel-cpu":  # the same samples as the hand recipe, all of them
            extra.setdefault("subset_size", min(300, calib_samples(info["calib"])))
    out = common.CACHE / "bundles" / f"{name}.edgepkg"
    return api.package(str(info["model"]), profile, output=out, name=name, precision=precision, quantize=quantize,
                       eval_data=info["eval"], allow_mismatch=info["eval"] is None, **extra)


def extract_ir(bundle, dest_dir) -> pathlib.Path:
    """The bundle's model/model.xml and .bin, written to dest_dir (the exact files the agent runs)."""
    dest_dir = pathlib.Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(bundle) as tar:
        for member in ("model/model.xml", "model/model.bin"):
            (dest_dir / pathlib.Path(member).name).write_bytes(tar.extractfile(member).read())
    return dest_dir / "model.xml"


def ir_bytes(xml) -> int:
    xml = pathlib.Path(xml)
    return xml.stat().st_size + xml.with_suffix(".bin").stat().st_size


def benchmark_app(xml, threads=THREADS, seconds=3, precision="f32") -> dict:
    """OpenVINO's benchmark_app, latency hint, sync API, with threads and precision set through
    -load_config (it refuses -nthreads together with -hint). Returns its median/average (ms)."""
    config = {"CPU": {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": str(threads),
                      "INFERENCE_PRECISION_HINT": precision}}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(config, f)
    cmd = [str(BENCHMARK_APP), "-m", str(xml), "-d", "CPU", "-hint", "latency", "-load_config", f.name,
           "-t", str(max(1, round(seconds)))]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    pathlib.Path(f.name).unlink()
    return {"median_ms": _latency(out, "Median"), "average_ms": _latency(out, "Average"), "min_ms": _latency(out, "Min"),
            "count": int(re.search(r"Count:\s+(\d+)", out).group(1)), "command": " ".join(cmd[1:])}


def _latency(text, label) -> float:
    value, unit = re.search(rf"{label}:\s+([\d.]+) (ms|us)", text).groups()
    return float(value) / (1000.0 if unit == "us" else 1.0)


def top1(xml, eval_npz, precision="f32") -> float:
    """Top-1 of an IR on labelled eval data, run with OpenVINO on this host."""
    import numpy as np
    import openvino as ov

    compiled = ov.Core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": precision})
    with np.load(eval_npz) as f:
        images, labels = f["image"], f["labels"]
    logits = np.concatenate([compiled(images[i:i + 1])[0] for i in range(len(images))])
    return float(np.mean(logits.argmax(1) == labels))


def hand_recipe(model, calib, out_dir, int8=True, mode=None) -> dict:
    """The recipe by hand in a fresh process: {"seconds": convert+quantize+save, "process_s", "xml"}; mode
    "int8-transformer" is NNCF's documented setting for transformers (model_type=TRANSFORMER)."""
    start = time.perf_counter()
    mode = mode or ("int8" if int8 else "fp32")
    out = subprocess.run([sys.executable, __file__, "hand", str(model), str(calib), str(out_dir), mode],
                         capture_output=True, text=True, check=True).stdout
    doc = json.loads(out.strip().splitlines()[-1])
    doc["process_s"] = time.perf_counter() - start
    return doc


def _hand_main(model, calib, out_dir, mode):
    """What an OpenVINO user writes: convert_model, nncf.quantize on the calibration set, save_model."""
    import numpy as np
    import openvino as ov
    import nncf  # noqa: F401  (imported before the clock starts, like edgeopt's timed conversion)

    with np.load(calib) as f:
        samples = f[f.files[0]]
    start = time.perf_counter()
    model = ov.convert_model(model)
    model.reshape([1, *samples.shape[1:]])
    if mode.startswith("int8"):
        dataset = nncf.Dataset([samples[i:i + 1] for i in range(len(samples))])
        # NNCF's defaults: preset, subset 300 (all samples here); its transformer scheme where asked
        kind = {"model_type": nncf.ModelType.TRANSFORMER} if mode == "int8-transformer" else {}
        model = nncf.quantize(model, dataset, **kind)
    xml = pathlib.Path(out_dir) / f"hand-{mode}.xml"
    ov.save_model(model, str(xml), compress_to_fp16=False)
    print(json.dumps({"seconds": time.perf_counter() - start, "xml": str(xml)}))


def edgeopt_recipe(model, calib, out_dir, int8=True) -> dict:
    """edgeopt's packaging of the same model in a fresh process: {"conversion_s" (convert + quantize
    + save, edgeopt's own clock without the host hint), "hint_s" (the host-side INT8/FP32 timing hint),
    "package_s" (the whole api.package), "process_s"}."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, "edgeopt", str(model), str(calib), str(out_dir),
                          "int8" if int8 else "fp32"], capture_output=True, text=True, check=True).stdout
    doc = json.loads(out.strip().splitlines()[-1])
    doc["process_s"] = time.perf_counter() - start
    return doc


def _edgeopt_main(model, calib, out_dir, mode):
    import openvino  # noqa: F401  (imported before the clock starts, as in the hand recipe)
    import nncf  # noqa: F401

    from edgeopt import api

    start = time.perf_counter()
    m = api.package(model, "intel-cpu", pathlib.Path(out_dir) / f"edgeopt-{mode}.edgepkg", "fp32",
                    "int8" if mode == "int8" else "none", calib=calib if mode == "int8" else None,
                    subset_size=min(300, calib_samples(calib)) if mode == "int8" else None, allow_mismatch=True)
    # the host-side INT8/FP32 hint is timed inside the conversion's clock: it is work the hand recipe does not do
    hint_s = (m["compression"].get("host_hint") or {}).get("seconds", 0.0)
    print(json.dumps({"package_s": time.perf_counter() - start, "conversion_s": m["conversion_seconds"] - hint_s,
                      "hint_s": hint_s}))


if __name__ == "__main__" and sys.argv[1:2] == ["hand"]:
    _hand_main(*sys.argv[2:6])
elif __name__ == "__main__" and sys.argv[1:2] == ["edgeopt"]:
    _edgeopt_main(*sys.argv[2:6])
