"""A MobileNetV2-size model for `edgeopt optimize` to work on: the MobileNetV2 architecture (width 1.0, 2.2M
parameters; tests/zoo/models.py) trained briefly on the shipped digits splits, upsampled to 3x96x96.

Nothing is downloaded: the data are edgeopt/samples/digits32_*.npz (scikit-learn's digits, split by
scripts/train_digits_resnet.py). `train(workdir)` writes the splits at 96x96, the weights, and a
`model.py:build` that loads them, and returns their paths. Seeded, 2 threads: a rerun gives the same weights.
"""
from __future__ import annotations

import pathlib
import sys
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
SAMPLES = HERE.parent / "edgeopt" / "samples"
ZOO = HERE.parent / "tests"
SIDE, EPOCHS, BATCH, LR = 96, 4, 64, 2e-3

BUILD = """import sys
sys.path.insert(0, {zoo!r})
import torch
from zoo.models import mobilenet_v2


def build():
    model = mobilenet_v2(num_classes=10, settle=None)
    model.load_state_dict(torch.load({weights!r}, weights_only=True))
    return model.eval()
"""


def to_rgb96(images: np.ndarray) -> np.ndarray:
    """N,1,32,32 -> N,3,96,96 (nearest-neighbour upsampling, the grey channel repeated)."""
    big = images.repeat(SIDE // 32, axis=2).repeat(SIDE // 32, axis=3)
    return np.ascontiguousarray(np.repeat(big, 3, axis=1), dtype=np.float32)


def train(workdir: pathlib.Path) -> dict:
    import torch

    sys.path.insert(0, str(ZOO))
    from zoo.models import mobilenet_v2

    torch.manual_seed(0)
    torch.set_num_threads(2)
    files = {}
    for split in ("train", "calib", "eval"):
        data = dict(np.load(SAMPLES / f"digits32_{split}.npz"))
        data["input"] = to_rgb96(data["input"])
        files[split] = workdir / f"digits96_{split}.npz"
        np.savez(files[split], **data)
    train_set = np.load(files["train"])
    x, y = torch.from_numpy(train_set["input"]), torch.from_numpy(train_set["labels"])
    model = mobilenet_v2(num_classes=10, settle=None)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    start = time.perf_counter()
    rng = np.random.default_rng(0)
    for _ in range(EPOCHS):
        model.train()
        for idx in np.array_split(rng.permutation(len(y)), max(1, len(y) // BATCH)):
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            optimizer.step()
    model.eval()
    held = np.load(files["eval"])
    with torch.no_grad():
        top1 = float((model(torch.from_numpy(held["input"])).argmax(1).numpy() == held["labels"]).mean())
    weights = workdir / "mobilenet_v2_digits96.pt"
    torch.save(model.state_dict(), weights)
    files["model"] = workdir / "mobilenet_v2_digits96.py"
    files["model"].write_text(BUILD.format(zoo=str(ZOO), weights=str(weights)))
    return {"files": files, "top1": top1, "train_s": round(time.perf_counter() - start, 1),
            "parameters": int(sum(p.numel() for p in model.parameters()))}
