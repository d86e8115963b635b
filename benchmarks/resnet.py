"""A ResNet-18-sized CNN (224x224x3, basic blocks [2, 2, 2, 2], ~11.7M parameters) defined here,
exported to ONNX.

Written out by hand like cnn_models.py (torchvision is not a dependency): random weights with a
fixed seed, BatchNorm statistics settled by a few train-mode passes over random inputs so that
activations have realistic ranges for calibration. Only speed and size are measured on it.
"""
from __future__ import annotations

from cnn_models import CACHE, SEED, _settle_batchnorm, export_cached

LAYERS = (2, 2, 2, 2)
WIDTHS = (64, 128, 256, 512)


def _basic_block(nn, cin, cout, stride):
    """conv3x3-BN-ReLU-conv3x3-BN plus an identity (or 1x1 projection) skip, then ReLU."""
    body = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
    skip = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout else nn.Identity())

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.skip, self.relu = body, skip, nn.ReLU(inplace=True)

        def forward(self, x):
            return self.relu(self.body(x) + self.skip(x))

    return Block()


def resnet18(num_classes=1000):
    """The torch module, in eval mode, with seeded weights and settled BatchNorm statistics."""
    import torch
    from torch import nn

    torch.manual_seed(SEED)
    layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for i, (n, width) in enumerate(zip(LAYERS, WIDTHS)):
        for j in range(n):
            layers.append(_basic_block(nn, cin, width, 2 if j == 0 and i > 0 else 1))
            cin = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes)]
    model = nn.Sequential(*layers)
    _settle_batchnorm(torch, model)
    return model.eval()


def resnet18_onnx(cache=CACHE) -> dict:
    """Export once into the cache: {"model": .onnx path, "calib": .npz path, "parameters": n}."""
    return export_cached("resnet18", resnet18, cache)


if __name__ == "__main__":
    info = resnet18_onnx()
    print({k: str(v) for k, v in info.items()})
