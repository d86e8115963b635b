"""A MobileNetV2-sized CNN (width 1.0, 224x224x3, ~3.5M parameters), exported to ONNX.

The architecture is the model zoo's (tests/zoo/models.py; torchvision is not a dependency). The
weights are random with a fixed seed; only speed and size are measured on it. BatchNorm running
statistics are set by a few train-mode passes over random inputs, so activations have realistic
ranges for calibration.
"""
from __future__ import annotations

import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests"))   # the zoo lives with the tests
from zoo import models as zoo_models  # noqa: E402

CACHE = pathlib.Path(__file__).resolve().parent / ".cache"
INPUT_NAME = "input"
INPUT_SHAPE = [1, 3, 224, 224]
SEED = 0
CALIB_SAMPLES = 64

# Train-mode BatchNorm passes (batches, batch size) for these full-size models.
SETTLE = (4, 8)


def mobilenet_v2(num_classes=1000, settle=True):
    """The torch module, in eval mode, with seeded weights and calibrated BatchNorm statistics
    (settle=False: the bare architecture, for loading a saved state dict into)."""
    return zoo_models.mobilenet_v2(num_classes, input_shape=INPUT_SHAPE, settle=SETTLE if settle else None)


def mobilenet_v2_state_dict(cache=CACHE) -> pathlib.Path:
    """The module's weights saved once (torch.save of its state dict): what a user loads their model from."""
    path = pathlib.Path(cache) / "mobilenet_v2.pt"
    if not path.is_file():
        import torch

        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(mobilenet_v2().state_dict(), path)
    return path


def parameter_count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def mobilenet_v2_onnx(cache=CACHE) -> dict:
    """Export once into the cache: {"model": .onnx path, "calib": .npz path, "parameters": n}."""
    return export_cached("mobilenet_v2", mobilenet_v2, cache)


def export_cached(name: str, build, cache=CACHE) -> dict:
    """`build()`'s model exported to <cache>/<name>.onnx with seeded random calibration data, once."""
    cache = pathlib.Path(cache)
    onnx_path, calib_path = cache / f"{name}.onnx", cache / f"{name}_calib.npz"
    if not (onnx_path.is_file() and calib_path.is_file()):
        import warnings

        import torch

        warnings.filterwarnings("ignore", category=DeprecationWarning)  # the legacy exporter, on purpose
        cache.mkdir(parents=True, exist_ok=True)
        torch.onnx.export(build(), (torch.randn(*INPUT_SHAPE),), str(onnx_path), input_names=[INPUT_NAME],
                          output_names=["logits"], opset_version=17, dynamo=False)
        rng = np.random.default_rng(SEED)
        np.savez(calib_path, **{INPUT_NAME: rng.standard_normal((CALIB_SAMPLES, *INPUT_SHAPE[1:]), dtype=np.float32)})
    return {"model": onnx_path, "calib": calib_path, "parameters": _onnx_parameters(onnx_path)}


# How a user may export: torch.onnx.export's default (the dynamo exporter, which runs onnxscript's
# optimizer), the same without that optimizer (BatchNorm unfused, Conv biases built at run time with
# Shape/Expand/CastLike: the graphs issue 12's slow INT8 came from), and the TorchScript exporter.
EXPORTS = {"dynamo": {"external_data": False},
           "dynamo-unoptimized": {"external_data": False, "optimize": False},
           "torchscript": {"dynamo": False, "opset_version": 17}}


def export_variants(name: str, build, cache=CACHE) -> dict:
    """`build()`'s model exported each way of EXPORTS, once: {export: .onnx path}; calibration data
    as export_cached writes it (same input, same seed) is at <cache>/<name>_calib.npz."""
    cache = pathlib.Path(cache)
    export_cached(name, build, cache)  # the calibration file (and the historical torchscript export)
    paths = {how: cache / f"{name}-{how}.onnx" for how in EXPORTS}
    missing = [how for how, path in paths.items() if not path.is_file()]
    if missing:
        import contextlib
        import io
        import warnings

        import torch

        warnings.filterwarnings("ignore", category=DeprecationWarning)  # the legacy exporter, on purpose
        model, example = build(), torch.randn(*INPUT_SHAPE)
        for how in missing:
            with contextlib.redirect_stdout(io.StringIO()):  # the dynamo exporter prints its steps
                torch.onnx.export(model, (example,), str(paths[how]), input_names=[INPUT_NAME],
                                  output_names=["logits"], **EXPORTS[how])
    return paths


def _onnx_parameters(path) -> int:
    import onnx

    model = onnx.load(str(path))
    return int(sum(np.prod(t.dims, dtype=np.int64) for t in model.graph.initializer))


if __name__ == "__main__":
    info = mobilenet_v2_onnx()
    print({k: str(v) for k, v in info.items()})
