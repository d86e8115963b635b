"""Compression techniques and their combinations, packaged by edgeopt and measured on `local` (issue 13).

For the trained sample (edgeopt/samples/digits_resnet.py) and a MobileNetV2 (width 1.0, 224x224, random weights:
its accuracy means nothing and is not reported), on ONNX Runtime (generic) and OpenVINO (intel-cpu): latency
ratio vs FP32 (device agent's p50 on this host, every variant measured in turns, median of rounds), size ratio
and top-1 drop on the sample's held-out eval split. Also Torch-Pruning's own example recipe by hand at the
same ratio (MetaPruner, L2 magnitude, then plain cross-entropy fine-tuning for the same epochs) against edgeopt's
prune + distill, on the same data.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_compress.py [--rounds 3] [--models sample,mobilenet]
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from common import RESULTS, environment, md_table, median  # noqa: E402

SAMPLES = HERE.parent / "edgeopt" / "samples"
DATA = {"calib": SAMPLES / "digits32_calib.npz", "eval_data": SAMPLES / "digits32_eval.npz"}
TRAIN = SAMPLES / "digits32_train.npz"
EPOCHS = 5
FAST_LOOP = {"min_iterations": 200, "min_seconds": 1.0, "warmup_iterations": 20, "warmup_seconds": 0.2}

# name -> (package options, steps as (transform, options))
VARIANTS = {
    "fp32": ({}, []),
    "int8": ({"quantize": "int8"}, []),
    "prune50": ({}, [("prune", {"channels": 0.5})]),
    "prune50+distill": ({}, [("prune", {"channels": 0.5}), ("distill", {"epochs": EPOCHS})]),
    "prune50+distill+int8": ({"quantize": "int8"}, [("prune", {"channels": 0.5}), ("distill", {"epochs": EPOCHS})]),
    "lowrank0.9+distill": ({}, [("lowrank", {"energy": 0.9}), ("distill", {"epochs": EPOCHS})]),
    "qat": ({}, [("qat", {"epochs": 2})]),
    "int8+keep-float-auto": ({"quantize": "int8", "keep_float": "auto"}, []),
}
MOBILENET_VARIANTS = ("fp32", "int8", "prune50")
PROFILES = ("generic", "intel-cpu")


def mobilenet_file(tmp: pathlib.Path) -> str:
    path = tmp / "mnv2.py"
    path.write_text("import sys\nsys.path.insert(0, %r)\nfrom zoo.models import mobilenet_v2\n\n"
                    "def build():\n    return mobilenet_v2(width=1.0, input_shape=(1, 3, 224, 224)).eval()\n"
                    % str(HERE.parent / "tests"))
    return f"{path}:build"


def package(model, shape, profile, name, options, steps, out, data):
    from edgeopt import api, recipe

    built = [recipe.step(n, v, name) for n, v in steps]
    train = TRAIN if any(n in ("distill", "qat") for n, _ in steps) else None
    return api.package(model, profile, out / f"{name}-{profile}.edgepkg", input_shapes={"input": shape},
                       steps=built, train_data=train, force=True, **data, **options)


def random_calibration(out: pathlib.Path, shape) -> dict:
    """Seeded random calibration inputs for a random-weight model (its latency is what is measured)."""
    import numpy as np

    path = out / "mnv2-calib.npz"
    np.savez(path, input=np.random.default_rng(0).standard_normal((32, *shape[1:])).astype(np.float32))
    return {"calib": path}


def measure(bundles: dict, rounds: int) -> dict:
    from edgeopt import api

    p50 = {k: [] for k in bundles}
    top1 = {}
    for _ in range(rounds):
        for key, manifest in bundles.items():
            with tempfile.TemporaryDirectory() as results:
                doc = api.bench(manifest["path"], "local", results, loop=FAST_LOOP)
            p50[key].append(doc["latency"]["p50_ms"])
            top1[key] = (doc.get("accuracy") or {}).get("top1")
    return {k: {"p50_ms": median(v), "top1": top1[k]} for k, v in p50.items()}


def model_mb(manifest) -> float:
    return sum(f["bytes"] for f in manifest["files"] if f["role"] == "model") / 1048576


def run_model(label, model, shape, variants, data, rounds, out) -> list:
    with_data = "eval_data" in data
    rows = []
    for profile in PROFILES:
        bundles = {}
        for name in variants:
            options, steps = VARIANTS[name]
            print(f"[{label} {profile}] packaging {name}", file=sys.stderr, flush=True)
            try:
                m = package(model, shape, profile, name, options, steps, out, data)
            except Exception as e:  # a variant a backend cannot build is reported, not fatal
                rows.append({"model": label, "profile": profile, "variant": name, "error": str(e).splitlines()[0]})
                continue
            bundles[name] = m
        figures = measure(bundles, rounds)
        base = figures["fp32"]
        for name, m in bundles.items():
            f = figures[name]
            rows.append({"model": label, "profile": profile, "variant": name,
                         "latency_ratio": round(f["p50_ms"] / base["p50_ms"], 3), "p50_ms": f["p50_ms"],
                         "size_ratio": round(model_mb(m) / model_mb(bundles["fp32"]), 3),
                         "top1": f["top1"] if with_data else None,
                         "top1_drop": round(base["top1"] - f["top1"], 4) if with_data and f["top1"] is not None else None})
    return rows


def torch_pruning_by_hand(ratio=0.5) -> dict:
    """Torch-Pruning's example recipe on the sample: MetaPruner + L2 magnitude (global off), then fine-tuning
    with cross-entropy (Adam, lr 1e-3, same epochs and batch size as edgeopt's distill), top-1 on the eval split."""
    import numpy as np
    import torch
    import torch_pruning as tp

    sys.path.insert(0, str(SAMPLES))
    from edgeopt.samples.digits_resnet import build

    torch.manual_seed(0)
    model = build().train()
    example = torch.randn(1, 1, 32, 32)
    head = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    pruner = tp.pruner.MetaPruner(model, example, importance=tp.importance.MagnitudeImportance(p=2),
                                  pruning_ratio=ratio, ignored_layers=[head])
    pruner.step()
    train, ev = np.load(TRAIN), np.load(DATA["eval_data"])
    x, y = torch.from_numpy(train["input"]), torch.from_numpy(train["labels"])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    for _ in range(EPOCHS):
        model.train()
        for idx in np.array_split(rng.permutation(len(x)), max(1, len(x) // 64)):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        pred = model(torch.from_numpy(ev["input"])).argmax(1).numpy()
    return {"recipe": "Torch-Pruning MetaPruner L2 0.5 + CE fine-tune", "epochs": EPOCHS,
            "top1": float((pred == ev["labels"]).mean()),
            "parameters": sum(p.numel() for p in model.parameters())}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--models", default="sample,mobilenet")
    args = ap.parse_args()
    out = pathlib.Path(tempfile.mkdtemp(prefix="bench-compress-"))
    rows = []
    if "sample" in args.models:
        rows += run_model("digits_resnet (trained)", str(SAMPLES / "digits_resnet.py") + ":build", [1, 1, 32, 32],
                          list(VARIANTS), dict(DATA), args.rounds, out)
    if "mobilenet" in args.models:
        rows += run_model("MobileNetV2 1.0 224 (random)", mobilenet_file(out), [1, 3, 224, 224],
                          MOBILENET_VARIANTS, random_calibration(out, [1, 3, 224, 224]), args.rounds, out)
    by_hand = torch_pruning_by_hand() if "sample" in args.models else None
    doc = {"environment": environment(), "rows": rows, "torch_pruning_by_hand": by_hand}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "compress.json").write_text(json.dumps(doc, indent=1))
    table = md_table(["model", "profile", "variant", "latency vs FP32", "size vs FP32", "top-1", "top-1 drop"],
                     [[r["model"], r["profile"], r["variant"], r.get("latency_ratio", r.get("error")),
                       r.get("size_ratio", ""), r.get("top1", ""), r.get("top1_drop", "")] for r in rows])
    text = table + (f"\n\nTorch-Pruning by hand: {json.dumps(by_hand)}\n" if by_hand else "\n")
    (RESULTS / "compress.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
