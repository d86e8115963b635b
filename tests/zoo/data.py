"""The zoo's files: ONNX exports (both torch exporters users bring) and seeded calibration/eval
`.npz` data in edgeopt's layout (arrays [N * batch, ...] per input, a state input stacked [N, *shape];
no labels: with random weights
the float argmax says nothing about accuracy).
"""
from __future__ import annotations

import pathlib
import warnings

import numpy as np

EXPORTERS = ("legacy", "dynamo")   # dynamo=False opset 17, and torch.onnx.export's default (dynamo)
LEGACY_OPSET = 17
CALIB_SAMPLES, EVAL_SAMPLES = 128, 16   # NNCF (intel-cpu) refuses fewer than 100 calibration samples
CALIB_SEED, EVAL_SEED = 1, 2
SAMPLE_RATE = 16000


def _one(rng, spec, count):
    if spec.kind == "sample_rate":
        return np.full(count, SAMPLE_RATE, np.int64) if count else np.array(SAMPLE_RATE, np.int64)
    if not count:
        shape = spec.shape
    elif spec.kind == "state":  # its first axis is not a batch: whole inputs stacked, (N, *shape)
        shape = (count, *spec.shape)
    else:
        shape = (count * spec.shape[0], *spec.shape[1:])
    scale = 0.1 if spec.kind in ("audio", "state") else 1.0
    return (rng.standard_normal(shape) * scale).astype(spec.dtype)


def samples(entry, n: int, seed: int, stacked: bool = True) -> dict:
    """{input name: array}: `n` samples stacked along axis 0 (edgeopt's calibration layout; a scalar
    input gets one value per sample), or with stacked=False one sample in the input's own shape."""
    rng = np.random.default_rng(seed)
    return {spec.name: _one(rng, spec, n if stacked else 0) for spec in entry.inputs_spec}


def export(entry, path, exporter: str = "legacy", model=None) -> pathlib.Path:
    """Write `entry`'s ONNX file with torch.onnx.export: "legacy" (dynamo=False, opset 17) or
    "dynamo" (the default exporter, one file: external_data=False)."""
    import torch

    if exporter not in EXPORTERS:
        raise ValueError(f"exporter {exporter!r}: expected one of {', '.join(EXPORTERS)}")
    if exporter not in entry.exporters:
        raise ValueError(f"{entry.name} cannot be exported with the {exporter} exporter (only {', '.join(entry.exporters)})")
    model = model if model is not None else entry.build()
    args = tuple(torch.from_numpy(np.asarray(v)) for v in entry.inputs().values())
    names = dict(input_names=[s.name for s in entry.inputs_spec], output_names=list(entry.outputs))
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the legacy exporter's DeprecationWarning, tracer warnings
        if exporter == "legacy":
            dynamic = {name: {0: "detections"} for name in entry.variable_outputs}
            torch.onnx.export(model, args, str(path), opset_version=LEGACY_OPSET, dynamo=False,
                              dynamic_axes=dynamic or None, **names)
        else:
            torch.onnx.export(model, args, str(path), dynamo=True, external_data=False, verbose=False, **names)
    return path


def write_files(entry, directory, exporters=EXPORTERS) -> dict:
    """Export and write data into `directory` where missing: {"onnx": {exporter: path}, "calib", "eval"}."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out = {"onnx": {}, "calib": directory / f"{entry.name}_calib.npz", "eval": directory / f"{entry.name}_eval.npz"}
    model = None
    for exporter in exporters:
        path = directory / f"{entry.name}-{exporter}.onnx"
        if not path.is_file():
            model = model if model is not None else entry.build()
            export(entry, path.with_suffix(".tmp"), exporter, model).rename(path)
        out["onnx"][exporter] = path
    for key, n, seed in (("calib", CALIB_SAMPLES, CALIB_SEED), ("eval", EVAL_SAMPLES, EVAL_SEED)):
        if not out[key].is_file():
            np.savez(out[key], **samples(entry, n, seed))
    return out
