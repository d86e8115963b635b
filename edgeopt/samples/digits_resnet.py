"""The second sample model: a small ResNet for scikit-learn's digits upsampled to 1x32x32 grey images, 10 classes.

It exists because digits_cnn.onnx is too small for structured channel pruning to change its latency: this one
costs a few ms a call at batch 1 on a laptop-class CPU, so a 50% channel prune is clearly faster. Use it as

    edgeopt package edgeopt/samples/digits_resnet.py:build --input-shape input=1,1,32,32 \\
        --calib edgeopt/samples/digits32_calib.npz --eval-data edgeopt/samples/digits32_eval.npz -o d.edgepkg

Trained by scripts/train_digits_resnet.py, which writes the weights (digits_resnet.pt, a state_dict) and the three
disjoint splits beside this file: digits32_train.npz / digits32_eval.npz (`input` N,1,32,32 float32 and `labels` N
int64) and digits32_calib.npz (`input` only). Inputs are already normalised: `to_input` makes them from 8x8 digits.

Only Conv2d, BatchNorm2d, ReLU, residual adds, AdaptiveAvgPool2d and Linear, so Torch-Pruning's dependency graph
can prune it and torch.onnx exports it at opset 17. This file imports torch; nothing imports it unless the sample
is used (edgeopt/samples has no __init__.py and the base install never reads it).
"""
from __future__ import annotations

import pathlib

import torch
from torch import nn

WEIGHTS = pathlib.Path(__file__).resolve().parent / "digits_resnet.pt"
WIDTHS = (48, 96, 192)   # channels of the three stages; the 32x32 stage dominates the cost
CLASSES = 10
SIDE = 32                # input side in pixels (the 8x8 digits upsampled 4x)
# Pixel mean and standard deviation of the upsampled train split in [0, 1]; inputs are (x - MEAN) / STD.
MEAN, STD = 0.3049, 0.3234


class Block(nn.Module):
    """ResNet basic block: two 3x3 conv-BN pairs and a shortcut (a 1x1 conv-BN when shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class DigitsResNet(nn.Module):
    """Stem conv, one basic block a stage (the 2nd and 3rd halve the side), global average pool, linear head."""

    def __init__(self, widths=WIDTHS, classes: int = CLASSES):
        super().__init__()
        w1, w2, w3 = widths
        self.stem = nn.Sequential(nn.Conv2d(1, w1, 3, 1, 1, bias=False), nn.BatchNorm2d(w1), nn.ReLU())
        self.stage1 = Block(w1, w1, 1)   # 32x32
        self.stage2 = Block(w1, w2, 2)   # 16x16
        self.stage3 = Block(w2, w3, 2)   # 8x8
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(w3, classes)

    def forward(self, x):
        x = self.stage3(self.stage2(self.stage1(self.stem(x))))
        return self.head(torch.flatten(self.pool(x), 1))


def build_untrained(seed: int = 0) -> nn.Module:
    """The architecture with seeded random weights, in eval mode (tests, the training script)."""
    torch.manual_seed(seed)
    return DigitsResNet().eval()


def build() -> nn.Module:
    """The trained model in eval mode: the entry point for `edgeopt package ...digits_resnet.py:build`."""
    model = DigitsResNet()
    model.load_state_dict(torch.load(WEIGHTS, map_location="cpu", weights_only=True))
    return model.eval()


def to_input(images) -> torch.Tensor:
    """8x8 digits with values 0..16 (sklearn's load_digits().images, shape N,8,8) -> normalised N,1,32,32 float32.
    Bilinear upsampling keeps the strokes smooth; the model never sees the 8x8 grid."""
    x = torch.as_tensor(images, dtype=torch.float32)[:, None] / 16.0
    x = nn.functional.interpolate(x, size=(SIDE, SIDE), mode="bilinear", align_corners=False)
    return (x - MEAN) / STD
