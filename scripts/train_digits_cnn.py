"""Train the embedded sample model: a small CNN on scikit-learn's bundled digits set.

Reproduces edgeopt/samples/digits_cnn.onnx, digits_calib.npz and digits_eval.npz:

    python scripts/train_digits_cnn.py            # needs the `torch` extra

Everything comes from data that ships inside scikit-learn (no download). The split is
fixed (random_state=0): 80% train, 20% held-out eval. Calibration samples are drawn
from the train split only, so INT8 calibration never sees the eval images.
"""
import pathlib

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

OUT = pathlib.Path(__file__).resolve().parent.parent / "edgeopt" / "samples"
SEED = 0


class DigitsCNN(nn.Module):
    """Two conv blocks and a linear head: 1x8x8 grey image -> 10 logits."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
            nn.MaxPool2d(2),
        )
        # No Dropout before the Linear: it broke INT8 bias scales in one converter
        # (see RUNTIME-NOTES), and the model does not need it to generalise here.
        self.head = nn.Linear(64 * 2 * 2, 10)

    def forward(self, x):
        return self.head(torch.flatten(self.features(x), 1))


def load_split():
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None, :, :]  # N,1,8,8 in [0,1]
    return train_test_split(images, digits.target.astype(np.int64), test_size=0.2,
                            random_state=SEED, stratify=digits.target)


def train(model, x, y, epochs=40):
    torch.manual_seed(SEED)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(epochs):
        perm = torch.randperm(len(xs))
        for i in range(0, len(xs), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(model(xs[idx]), ys[idx]).backward()
            opt.step()
    return model.eval()


def main():
    torch.manual_seed(SEED)
    x_train, x_eval, y_train, y_eval = load_split()
    model = train(DigitsCNN(), x_train, y_train)
    with torch.no_grad():
        acc = (model(torch.from_numpy(x_eval)).argmax(1).numpy() == y_eval).mean()
    print("eval top-1: %.4f on %d images" % (acc, len(y_eval)))
    OUT.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(model, torch.zeros(1, 1, 8, 8), str(OUT / "digits_cnn.onnx"),
                      input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
                      opset_version=17, dynamo=False)
    rng = np.random.default_rng(SEED)
    calib = x_train[rng.choice(len(x_train), 200, replace=False)]
    np.savez_compressed(OUT / "digits_calib.npz", image=calib)
    np.savez_compressed(OUT / "digits_eval.npz", image=x_eval, labels=y_eval)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
