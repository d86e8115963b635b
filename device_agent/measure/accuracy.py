"""Accuracy on the bundle's eval data: top-1 against labels, and max abs error against the
source model's reference outputs (`ref:<output name>` arrays, computed on the host)."""
import os

import numpy as np

from .. import BundleError, samples
from ..progress import report

REF_PREFIX = "ref:"


# The reason a latency-only run gives (edgeopt optimize's screening and repeat runs): a result with it never
# replaces a result of the same bundle that measured the accuracy (edgeopt/results.py)
SKIPPED = "skipped: a latency-only run (--no-accuracy)"

def eval_path(manifest, root):
    """The bundle's eval data file, its arrays' sizes checked (check_npz_sizes); None where it carries none."""
    data = manifest.get("data") or {}
    entry = data.get("eval")
    if not entry:
        return None
    path = os.path.join(root, *entry["path"].split("/"))
    check_npz_sizes(path, "the bundle's eval data %s" % entry["path"])
    return path


def check_npz_sizes(path, what):
    """BundleError unless every array of the .npz is stored (not compressed) and holds the bytes its header
    declares. edgeopt writes it so (np.savez); a 1 MB bundle whose compressed eval data unpacked to 6 GB, its
    digests all in order, ran a device out of memory (a security review). Read from the headers, not the arrays."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
                    raise BundleError("%s: array %s is compressed; edgeopt stores eval data uncompressed (np.savez), "
                                      "so its size is the file's: refused" % (what, info.filename))
                with archive.open(info) as member:
                    declared = _declared_bytes(member)
                    held = info.file_size - member.tell()
                if declared is None or declared > held:
                    raise BundleError("%s: array %s declares %s bytes where it holds %d: refused"
                                      % (what, info.filename, "unreadable" if declared is None else declared, held))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise BundleError("%s is not a readable .npz: %s" % (what, e))


def _declared_bytes(member):
    """The bytes a .npy member's header says its array holds; None for a header this reader does not know."""
    version = np.lib.format.read_magic(member)
    read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    if version not in read_header:
        return None
    shape, _, dtype = read_header[version](member)
    if dtype.hasobject:
        return None
    count = 1
    for n in shape:
        count *= int(n)
    return count * dtype.itemsize


def feed_dtype(spec):
    """What callers feed an input: float32 for an int8-I/O tensor (the adapter quantizes it with the
    tensor's scale and zero point), else the tensor's own dtype."""
    return np.dtype("float32") if spec.get("quantization") else np.dtype(spec["dtype"])


def run_batched(infer, inputs, specs):
    """Run `infer` over every sample of {name: array} for inputs `specs` ([(name, shape)]); merged outputs.
    How arrays split into samples and calls is device_agent/samples.py's rule, shared with the host."""
    forms, batch = samples.plan({k: v.shape for k, v in inputs.items()}, specs)
    return samples.run(infer, inputs, forms, batch)


def top1(logits, labels):
    return float(np.mean(np.argmax(logits.reshape(len(logits), -1), axis=1) == labels))


def _reference_error(merged, names, data):
    """{"max_abs_error"} over the outputs whose merged shape is the reference's, and the outputs left out
    with why: a count of detections that differs from the host's is not an element-wise comparison (the
    host's parity matches such rows one to one)."""
    errors, skipped, unnamed = {}, [], []
    for got, name in zip(merged, names):
        if REF_PREFIX + name not in data.files:
            unnamed.append(name)
            continue
        ref = data[REF_PREFIX + name]
        if got.shape != ref.shape:
            skipped.append("%s (%s here, %s in the reference)" % (name, list(got.shape), list(ref.shape)))
            continue
        errors[name] = float(np.max(np.abs(got.astype(np.float64) - ref), initial=0.0))
    out = {"max_abs_error": max(errors.values())} if errors else {}
    if len(errors) > 1:   # each output's own: a detector's boxes (pixels) hid its scores' (0..1) behind the max
        out["max_abs_error_by_output"] = errors
    if skipped:   # `_absent` when no output was compared: what a budget on it reports (edgeopt/budgets.py)
        why = "shapes differ, not compared element-wise: " + "; ".join(skipped)
        out["max_abs_error_skipped" if errors else "max_abs_error_absent"] = why
    refs = sorted(k[len(REF_PREFIX):] for k in data.files if k.startswith(REF_PREFIX))
    if refs and unnamed and not errors and not skipped:   # an older bundle's references under other names
        out["max_abs_error_absent"] = ("the eval data's reference outputs (%s) name none of the model's outputs "
                                       "(%s)" % (", ".join(refs), ", ".join(unnamed)))
    return out


def evaluate(adapter, manifest, root):
    path = eval_path(manifest, root)
    if path is None:
        return {"available": False, "reason": "the bundle carries no eval data"}
    data = np.load(path, allow_pickle=False)
    specs = manifest["inputs"]
    inputs = {s["name"]: data[s["name"]].astype(feed_dtype(s)) for s in specs}
    report("accuracy", "%d eval samples" % samples.count(inputs))
    try:
        merged = run_batched(adapter.infer, inputs, [(s["name"], s["shape"]) for s in specs])
    except samples.SampleError as e:  # a bundle whose eval data does not fit its own model
        return {"available": False, "reason": "eval data: %s" % e}
    out = {"n": samples.count(inputs)}
    out.update(_reference_error(merged, [o["name"] for o in manifest["outputs"]], data))
    if "labels" in data.files and len(merged[0]) != len(data["labels"]):
        out["top1_absent"] = "the model's first output is not one row per sample (shape %s per call)" % (
            list(merged[0].shape[1:]),)
        out["drop_absent"] = out["top1_absent"]
    elif "labels" in data.files:
        measured = top1(merged[0], data["labels"])
        out["top1"] = measured
        source = (manifest.get("source") or {}).get("accuracy", {}).get("top1")
        if source is not None:
            out["source_top1"] = source
            out["drop"] = source - measured
        else:
            out["drop_absent"] = "the bundle does not record the source model's accuracy"
    else:
        out["top1_absent"] = "the eval data has no labels"
        out["drop_absent"] = "the eval data has no labels"
    return out
