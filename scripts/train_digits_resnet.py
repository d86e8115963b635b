"""Train the second sample model: edgeopt/samples/digits_resnet.py on scikit-learn's digits upsampled to 32x32.

Reproduces edgeopt/samples/digits_resnet.pt and the three disjoint splits beside it:

    nice -n 5 python scripts/train_digits_resnet.py     # needs the `torch` extra; ~3 min on 2 idle cores

Everything comes from data that ships inside scikit-learn (no download). The split is fixed (random_state=0,
stratified by class): 360 held-out eval images, 200 calibration images, the other 1237 train. The model trains
on the train split only, so neither INT8 calibration nor accuracy ever sees a training image. Files written:
digits32_{train,eval}.npz (`input` N,1,32,32 float32, normalised; `labels` N int64) and digits32_calib.npz
(`input` only). Training is seeded and runs at a fixed 2 threads, so a rerun writes the same weights.
"""
import pathlib
import sys
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))   # run from a checkout without installing it
from edgeopt.samples import digits_resnet  # after the path insert

OUT = ROOT / "edgeopt" / "samples"
SEED = 0
EVAL_N, CALIB_N = 360, 200
EPOCHS, BATCH, LR, WEIGHT_DECAY = 15, 64, 0.05, 5e-4
SHIFT = 2   # augmentation: random translations of up to this many pixels (half an original 8x8 pixel)


def splits():
    """{"train"|"calib"|"eval": (inputs N,1,32,32 float32, labels N int64)}, stratified, disjoint by index."""
    digits = load_digits()
    labels = digits.target.astype(np.int64)
    rest, eval_idx = train_test_split(np.arange(len(labels)), test_size=EVAL_N, random_state=SEED, stratify=labels)
    train_idx, calib_idx = train_test_split(rest, test_size=CALIB_N, random_state=SEED, stratify=labels[rest])
    inputs = digits_resnet.to_input(digits.images).numpy()
    return {name: (inputs[idx], labels[idx])
            for name, idx in (("train", train_idx), ("calib", calib_idx), ("eval", eval_idx))}


def shifted(x, generator):
    """Each image moved by a random whole-pixel offset in [-SHIFT, SHIFT]; the border filled with background
    (0 before normalisation), so a shifted digit looks like one written off-centre."""
    background = -digits_resnet.MEAN / digits_resnet.STD
    padded = nn.functional.pad(x, (SHIFT,) * 4, value=background)
    offsets = torch.randint(0, 2 * SHIFT + 1, (len(x), 2), generator=generator).tolist()
    side = x.shape[-1]
    return torch.stack([padded[i, :, dy:dy + side, dx:dx + side] for i, (dy, dx) in enumerate(offsets)])


def accuracy(model, x, y) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def train(model, data):
    """SGD with Nesterov momentum and a one-cycle schedule. Prints, each epoch, the loss and accuracy on the
    shifted train batches as they went by (no second pass over the train split: it would cost a third of an
    epoch) and the accuracy on the held-out eval split."""
    generator = torch.Generator().manual_seed(SEED)
    x, y = (torch.from_numpy(a) for a in data["train"])
    x_eval, y_eval = (torch.from_numpy(a) for a in data["eval"])
    steps = EPOCHS * -(-len(x) // BATCH)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9, nesterov=True, weight_decay=WEIGHT_DECAY)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=steps, pct_start=0.15)
    start = time.perf_counter()
    for epoch in range(1, EPOCHS + 1):
        model.train()
        perm, loss_sum, right = torch.randperm(len(x), generator=generator), 0.0, 0
        for i in range(0, len(x), BATCH):
            idx = perm[i:i + BATCH]
            opt.zero_grad()
            logits = model(shifted(x[idx], generator))
            loss = nn.functional.cross_entropy(logits, y[idx])
            loss.backward()
            opt.step()
            schedule.step()
            loss_sum += loss.item() * len(idx)
            right += int((logits.argmax(1) == y[idx]).sum())
        print(f"epoch {epoch:2d}  loss {loss_sum / len(x):.4f}  train {right / len(x):.4f}  "
              f"eval {accuracy(model, x_eval, y_eval):.4f}  ({time.perf_counter() - start:.0f} s)", flush=True)
    return model.eval()


def main():
    torch.set_num_threads(2)   # fixed: float sums differ with the thread count, and the weights should not
    torch.use_deterministic_algorithms(True)
    data = splits()
    model = train(digits_resnet.build_untrained(SEED).train(), data)
    x_eval, y_eval = (torch.from_numpy(a) for a in data["eval"])
    print(f"eval top-1: {accuracy(model, x_eval, y_eval):.4f} on {len(y_eval)} images")
    torch.save(model.state_dict(), digits_resnet.WEIGHTS)
    for name, (inputs, labels) in data.items():
        arrays = {"input": inputs} if name == "calib" else {"input": inputs, "labels": labels}
        np.savez_compressed(OUT / f"digits32_{name}.npz", **arrays)
    print("wrote", digits_resnet.WEIGHTS, "and", OUT / "digits32_{train,calib,eval}.npz")


if __name__ == "__main__":
    main()
