"""Sample data given by the user: calibration and eval `.npz` files, checked against the model's inputs."""
from __future__ import annotations

import pathlib
import zipfile

import numpy as np

from .errors import BadInput

LABELS = "labels"


def load_samples(path, inputs, purpose: str) -> dict:
    """{input name: array [N, *input shape without batch]} (+ `labels` if present), validated.

    A single-input model accepts a file with one non-label array under any name.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise BadInput(f"{purpose} file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise BadInput(f"{purpose} file {path} is not a readable .npz: {e}") from None
    features = {k: v for k, v in arrays.items() if k != LABELS}
    names = [s.name for s in inputs]
    if len(inputs) == 1 and len(features) == 1 and names[0] not in features:
        features = {names[0]: next(iter(features.values()))}
    missing = [n for n in names if n not in features]
    if missing:
        raise BadInput(f"{purpose} file {path}: no array for input(s) {', '.join(missing)}; "
                       f"it has {', '.join(sorted(features)) or 'no arrays'}")
    out = {}
    counts = set()
    for spec in inputs:
        arr = features[spec.name]
        expected = tuple(spec.shape[1:])
        if arr.ndim != len(spec.shape) or tuple(arr.shape[1:]) != expected:
            raise BadInput(f"{purpose} file {path}: array {spec.name!r} has shape {tuple(arr.shape)}; "
                           f"model input {spec.name!r} expects (N, {', '.join(map(str, expected))})"
                           + _layout_hint(arr.shape, expected))
        if not np.can_cast(arr.dtype, np.dtype(spec.dtype), casting="same_kind"):
            raise BadInput(f"{purpose} file {path}: array {spec.name!r} is {arr.dtype}, input expects {spec.dtype}")
        out[spec.name] = np.ascontiguousarray(arr.astype(spec.dtype))
        counts.add(len(arr))
    if LABELS in arrays:
        counts.add(len(arrays[LABELS]))
        out[LABELS] = arrays[LABELS].astype(np.int64)
    if len(counts) != 1 or 0 in counts:
        raise BadInput(f"{purpose} file {path}: arrays disagree on the sample count or are empty ({sorted(counts)})")
    return out


def _layout_hint(shape, expected) -> str:
    """A channels-last array for a channels-first input (or the reverse) is a common slip: say so."""
    if len(expected) != 3 or len(shape) != 4:
        return ""
    c, h, w = expected   # named for a channels-first input
    if tuple(shape[1:]) == (h, w, c):
        return " - it looks channels-last (NHWC); give data in the source model's layout (NCHW), edgeopt converts it"
    if tuple(shape[1:]) == (w, c, h):
        return " - it looks channels-first (NCHW); give data in the source model's layout (NHWC)"
    return ""


def to_layouts(arrays: dict, layouts: dict) -> dict:
    """Sample arrays ({name: [N, ...]}, in the source model's layout) in an artifact's layout:
    `layouts` is {input name: {"perm": axes, ...}} for the inputs whose layout changed."""
    return {name: (np.ascontiguousarray(a.transpose(layouts[name]["perm"])) if name in layouts else a)
            for name, a in arrays.items()}


def sample_count(samples: dict) -> int:
    return len(next(iter(samples.values())))


def random_samples(inputs, n: int, seed: int = 0) -> dict:
    """Seeded random inputs for a parity check when the user gave no data."""
    rng = np.random.default_rng(seed)
    out = {}
    for spec in inputs:
        shape = (n, *spec.shape[1:])
        if np.issubdtype(np.dtype(spec.dtype), np.integer):
            out[spec.name] = rng.integers(0, 10, size=shape).astype(spec.dtype)
        else:
            out[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
    return out
