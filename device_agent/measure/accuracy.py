"""Accuracy on the bundle's eval data: top-1 against labels, and max abs error against the
source model's reference outputs (`ref:<output name>` arrays, computed on the host)."""
import os

import numpy as np

from ..progress import report

REF_PREFIX = "ref:"


def eval_path(manifest, root):
    data = manifest.get("data") or {}
    entry = data.get("eval")
    if not entry:
        return None
    return os.path.join(root, *entry["path"].split("/"))


def feed_dtype(spec):
    """What callers feed an input: float32 for an int8-I/O tensor (the adapter quantizes it with the
    tensor's scale and zero point), else the tensor's own dtype."""
    return np.dtype("float32") if spec.get("quantization") else np.dtype(spec["dtype"])


def run_batched(infer, inputs, batch):
    """Run `infer` over {name: [N, ...]} in chunks of the model's fixed batch; merged outputs."""
    n = len(next(iter(inputs.values())))
    outputs = []
    for start in range(0, n, batch):
        chunk = {k: v[start:start + batch] for k, v in inputs.items()}
        size = len(next(iter(chunk.values())))
        if size < batch:  # pad a short last batch for fixed-batch models, trim outputs after
            chunk = {k: np.concatenate([v, np.repeat(v[-1:], batch - size, axis=0)]) for k, v in chunk.items()}
        outputs.append([np.asarray(o)[:size] for o in infer(chunk)])
    return [np.concatenate([o[i] for o in outputs]) for i in range(len(outputs[0]))]


def top1(logits, labels):
    return float(np.mean(np.argmax(logits.reshape(len(logits), -1), axis=1) == labels))


def evaluate(adapter, manifest, root):
    path = eval_path(manifest, root)
    if path is None:
        return {"available": False, "reason": "the bundle carries no eval data"}
    data = np.load(path)
    specs = manifest["inputs"]
    batch = specs[0]["shape"][0] if isinstance(specs[0]["shape"][0], int) and specs[0]["shape"][0] > 0 else 1
    inputs = {s["name"]: data[s["name"]].astype(feed_dtype(s)) for s in specs}
    report("accuracy", "%d eval samples" % len(next(iter(inputs.values()))))
    merged = run_batched(adapter.infer, inputs, batch)
    out = {"n": int(len(merged[0]))}
    out_names = [o["name"] for o in manifest["outputs"]]
    errors = [float(np.max(np.abs(merged[i].astype(np.float64) - data[REF_PREFIX + name])))
              for i, name in enumerate(out_names) if REF_PREFIX + name in data.files]
    if errors:
        out["max_abs_error"] = max(errors)
    if "labels" in data.files:
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
