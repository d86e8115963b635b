"""Sample data given by the user: calibration and eval `.npz` files, checked against the model's inputs.

The reader is total: any file yields a sample set that fits the model, or BadInput (one line naming the file
and the array). How an array splits into samples and model calls is device_agent/samples.py, which the
device agent uses on the eval data the bundle ships, so host and device slice alike.
"""
from __future__ import annotations

import lzma
import pathlib
import struct
import zipfile
import zlib

import numpy as np

from device_agent import samples as forms_
from device_agent.samples import SampleError

from .errors import BadInput, first_line

LABELS = "labels"
NPY_MAGIC = b"\x93NUMPY"
# What reading one member of a damaged or hostile zip can raise (numpy's header parser, zipfile, the codecs).
_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, lzma.LZMAError, NotImplementedError,
                RuntimeError, MemoryError, struct.error, KeyError)
_NUMERIC = "biuf"   # bool, signed, unsigned, float: the kinds a model input can take from a file


def _bad(where: str, text: str) -> BadInput:
    return BadInput(" ".join(f"{where}: {text}".split("\n")))


def load_samples(path, inputs, purpose: str, where: str | None = None) -> dict:
    """{input name: array} (+ `labels` if present), every array's first axis the sample, each in a form of
    device_agent/samples.py and cast to its input's dtype. A single-input model accepts one array under
    any name. where: how messages name the data, when the user gave something else than this file (a
    DataLoader read into a work file)."""
    path = pathlib.Path(path)
    where = where or f"{purpose} file {path}"
    arrays = read_npz(path, purpose, where)
    features = _match(arrays, inputs, where)
    try:
        forms_.plan({k: v.shape for k, v in features.items()}, [(s.name, s.shape) for s in inputs])
    except SampleError as e:
        hints = [_layout_hint(features[s.name].shape, tuple(s.shape[1:])) for s in inputs]
        raise _bad(where, _as_in_the_file(str(e), arrays, inputs) + "".join(hints)) from None
    n = _count(features, arrays.get(LABELS), where)
    out = {spec.name: np.ascontiguousarray(_cast(features[spec.name], spec, where)) for spec in inputs}
    if LABELS in arrays:
        out[LABELS] = _labels(arrays[LABELS], n, where)
    return out


def read_npz(path: pathlib.Path, purpose: str, where: str) -> dict:
    """Every array of an .npz, numeric ones only; anything else refused by name."""
    if not path.exists():
        raise BadInput(f"{purpose} file not found: {path}")
    if not path.is_file():
        raise _bad(where, "is not a file")
    try:
        with open(path, "rb") as f:
            magic = f.read(len(NPY_MAGIC))
    except OSError as e:
        raise _bad(where, f"cannot be read: {e.strerror or first_line(e)}") from None
    if magic == NPY_MAGIC:
        raise _bad(where, "is a .npy (one unnamed array), not an .npz: save one array per model input with "
                          "np.savez(file, <input name>=array, ...)")
    if not zipfile.is_zipfile(path):
        raise _bad(where, "is not a readable .npz (not a zip archive); save it with np.savez")
    try:
        npz = np.load(path, allow_pickle=False)
    except _READ_ERRORS as e:
        raise _bad(where, f"is not a readable .npz: {first_line(e)}") from None
    with npz:
        names = list(npz.files)
        if not names:
            raise _bad(where, "holds no arrays")
        return {name: _member(npz, name, where) for name in names}


def _member(npz, name: str, where: str) -> np.ndarray:
    try:
        array = npz[name]
    except _READ_ERRORS as e:
        if "allow_pickle" in str(e):
            raise _bad(where, f"array {name!r} holds Python objects (a pickle), which edgeopt does not load; "
                              "save numeric arrays") from None
        raise _bad(where, f"array {name!r} is unreadable: {first_line(e)}") from None
    if not isinstance(array, np.ndarray):
        raise _bad(where, f"member {name!r} is not a .npy array")
    return array


def _match(arrays: dict, inputs, where: str) -> dict:
    """{input name: array}; missing inputs and arrays that match no input are refused."""
    features = {k: v for k, v in arrays.items() if k != LABELS}
    names = [s.name for s in inputs]
    if len(inputs) == 1 and len(features) == 1 and names[0] not in features:
        features = {names[0]: next(iter(features.values()))}
    missing = [n for n in names if n not in features]
    if missing:
        held = ", ".join(map(repr, sorted(features))) or (f"only {LABELS!r}" if LABELS in arrays else "no arrays")
        raise _bad(where, f"no array for input(s) {', '.join(missing)}; it has {held}")
    extra = sorted(set(features) - set(names))
    if extra:
        raise _bad(where, f"array(s) {', '.join(map(repr, extra))} match no model input (inputs: "
                          f"{', '.join(map(repr, names))}; {LABELS!r} is the only other array allowed)")
    return features


def _as_in_the_file(text: str, arrays: dict, inputs) -> str:
    """A message about the one array of a single-input model names it as the file does, not as the input."""
    features = [k for k in arrays if k != LABELS]
    if len(inputs) == 1 and features and features[0] != inputs[0].name:
        return text.replace(f"array {inputs[0].name!r}", f"array {features[0]!r}")
    return text


def _count(features: dict, labels, where: str) -> int:
    counts = {name: len(a) for name, a in features.items()}
    if labels is not None and labels.ndim >= 1:
        counts[LABELS] = len(labels)
    if len(set(counts.values())) != 1:
        raise _bad(where, "arrays disagree on the sample count (first axis): "
                          + ", ".join(f"{k!r} {v}" for k, v in counts.items()))
    n = next(iter(counts.values()))
    if n == 0:
        raise _bad(where, "holds zero samples")
    return n


def _cast(array: np.ndarray, spec, where: str) -> np.ndarray:
    """The array in its input's dtype when the cast keeps every value (float64 -> float32 short of overflow,
    integers in range, whole-number floats to an integer input); else refused by name. NaN and Inf too."""
    target, kind, name = np.dtype(spec.dtype), array.dtype.kind, spec.name
    if target.kind not in _NUMERIC:
        raise _bad(where, f"model input {name!r} is {target}; edgeopt feeds numeric inputs only")
    if kind not in _NUMERIC or array.dtype.fields is not None or (target.kind == "b" and kind != "b"):
        raise _bad(where, f"array {name!r} is {array.dtype}, input expects {target}; sample arrays must be "
                          "numbers (float, integer or bool)")
    if kind == "f":
        _finite(array, name, where)
    if target.kind in "iu" and array.size:
        _integers_fit(array, target, name, where)
    with np.errstate(over="ignore"):   # an overflow is refused just below, by name
        out = array.astype(target)
    if target.kind == "f" and kind == "f" and not np.isfinite(out).all():
        raise _bad(where, f"array {name!r} has values beyond the range of the input's {target}")
    if target.kind == "f" and kind in "iu" and not np.array_equal(out.astype(array.dtype), array):
        raise _bad(where, f"array {name!r} ({array.dtype}) has integers {target} cannot hold exactly")
    return out


def _integers_fit(array: np.ndarray, target: np.dtype, name: str, where: str) -> None:
    """For an integer input: every value a whole number within the target's range."""
    if array.dtype.kind == "f":
        fraction = array != np.floor(array)
        if fraction.any():
            i = int(np.argwhere(fraction)[0][0])
            raise _bad(where, f"array {name!r} is {array.dtype} with fractions (first at sample {i}), input "
                              f"expects {target}; a cast would drop them")
    lo, hi, info = int(array.min()), int(array.max()), np.iinfo(target)
    if lo < info.min or hi > info.max:
        raise _bad(where, f"array {name!r} holds values {lo}..{hi}, beyond the input's {target}")


def _finite(array: np.ndarray, name: str, where: str) -> None:
    bad = ~np.isfinite(array)
    if bad.any():
        first = tuple(np.argwhere(bad)[0])
        i, what = int(first[0]), ("NaN" if np.isnan(array[first]) else "Inf")
        raise _bad(where, f"array {name!r} has {what} values (first at sample {i}); samples must be finite")


def _labels(labels: np.ndarray, n: int, where: str) -> np.ndarray:
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise _bad(where, f"array {LABELS!r} is {labels.dtype} of shape {tuple(labels.shape)}; labels must be "
                          f"1-D integer class indices, one per sample: shape ({n},)")
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) > np.iinfo(np.int64).max):
        raise _bad(where, f"array {LABELS!r} holds {int(labels.min())}..{int(labels.max())}; labels are class "
                          "indices, 0 or more")
    return labels.astype(np.int64)


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


def plan(samples: dict, inputs):
    """({input: form}, samples per call) of a sample set, by device_agent/samples.py's rule."""
    return forms_.plan({s.name: samples[s.name].shape for s in inputs}, [(s.name, s.shape) for s in inputs])


def feeds(samples: dict, inputs, pad: bool = False):
    """(start, count, {input: array}) per model call over the sample set; a short tail is padded by
    repeating its last sample (pad) or left out."""
    forms, batch = plan(samples, inputs)
    yield from forms_.calls({s.name: samples[s.name] for s in inputs}, forms, batch, pad)


def run(runner, samples: dict, inputs) -> list:
    """Every sample through `runner` ({input: array} -> outputs); one merged array per output."""
    forms, batch = plan(samples, inputs)
    return forms_.run(runner, {s.name: samples[s.name] for s in inputs}, forms, batch)


def head(samples: dict, n: int) -> dict:
    """The first n samples (every array's first axis is the sample)."""
    return {k: v[:n] for k, v in samples.items()}


def to_layouts(arrays: dict, layouts: dict) -> dict:
    """Sample arrays ({name: array}, in the source model's layout) in an artifact's layout: `layouts` is
    {input name: {"perm": axes, ...}} for the inputs whose layout changed. A stacked array's sample axis
    stays first."""
    out = {}
    for name, a in arrays.items():
        if name in layouts:
            perm = list(layouts[name]["perm"])
            if a.ndim == len(perm) + 1:
                perm = [0] + [p + 1 for p in perm]
            a = np.ascontiguousarray(a.transpose(perm))
        out[name] = a
    return out


def sample_count(samples: dict) -> int:
    return len(next(iter(samples.values())))


def random_samples(inputs, n: int, seed: int = 0) -> dict:
    """Seeded random inputs for a parity check when the user gave no data: rows along the batch axis when
    every input has the same first dim, else whole inputs stacked."""
    rng = np.random.default_rng(seed)
    firsts = {tuple(s.shape[:1]) for s in inputs}
    rows = len(firsts) == 1 and firsts != {()}
    out = {}
    for spec in inputs:
        shape = (n, *spec.shape[1:]) if rows else (n, *spec.shape)
        if np.issubdtype(np.dtype(spec.dtype), np.integer):
            out[spec.name] = rng.integers(0, 10, size=shape).astype(spec.dtype)
        else:
            out[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
    return out
