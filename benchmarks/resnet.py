"""A ResNet-18-sized CNN (224x224x3, basic blocks [2, 2, 2, 2], ~11.7M parameters), exported to ONNX.

The architecture is the model zoo's (tests/zoo/models.py; torchvision is not a dependency): random
weights with a fixed seed, BatchNorm statistics settled by a few train-mode passes over random inputs so that
activations have realistic ranges for calibration. Only speed and size are measured on it.
"""
from __future__ import annotations

from cnn_models import CACHE, SETTLE, export_cached, zoo_models


def resnet18(num_classes=1000):
    """The torch module, in eval mode, with seeded weights and settled BatchNorm statistics."""
    return zoo_models.resnet18(num_classes, settle=SETTLE)


def resnet18_onnx(cache=CACHE) -> dict:
    """Export once into the cache: {"model": .onnx path, "calib": .npz path, "parameters": n}."""
    return export_cached("resnet18", resnet18, cache)


if __name__ == "__main__":
    info = resnet18_onnx()
    print({k: str(v) for k, v in info.items()})
