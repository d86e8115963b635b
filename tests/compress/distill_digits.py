"""Shared by the training-transform tests: sklearn's 8x8 digits as (N, 1, 8, 8) float rows split into
train and held-out sets, a small CNN, and a teacher trained on them in a few seconds."""
import numpy as np

from edgeopt.compress.base import TransformContext
from edgeopt.models import TensorSpec

INPUTS = [TensorSpec("image", [1, 1, 8, 8], "float32")]


def digits(n_train=1000):
    """(train, held-out) sample sets {"image": (N, 1, 8, 8) float32, "labels": (N,) int64}."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[:, None]
    y = data.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    train, held = order[:n_train], order[n_train:]
    return {"image": x[train], "labels": y[train]}, {"image": x[held], "labels": y[held]}


def cnn(width=16, seed=0):
    import torch

    torch.manual_seed(seed)

    class CNN(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(1, width, 3, padding=1)
            self.bn1 = torch.nn.BatchNorm2d(width)
            self.conv2 = torch.nn.Conv2d(width, 2 * width, 3, padding=1)
            self.bn2 = torch.nn.BatchNorm2d(2 * width)
            self.fc = torch.nn.Linear(2 * width * 16, 10)

        def forward(self, x):
            x = torch.relu(self.bn1(self.conv1(x)))
            x = torch.nn.functional.max_pool2d(torch.relu(self.bn2(self.conv2(x))), 2)
            return self.fc(x.flatten(1))

    return CNN().eval()


def train(module, samples, epochs=6, lr=1e-2, seed=0):
    """Plain supervised training (the teacher), independent of the code under test."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.Adam(module.parameters(), lr=lr)
    x, y = torch.from_numpy(samples["image"]), torch.from_numpy(samples["labels"])
    module.train()
    for _ in range(epochs):
        order = torch.from_numpy(rng.permutation(len(x)))
        for start in range(0, len(x), 64):
            idx = order[start:start + 64]
            loss = torch.nn.functional.cross_entropy(module(x[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return module.eval()


def accuracy(module, samples) -> float:
    import torch

    with torch.no_grad():
        logits = module(torch.from_numpy(samples["image"]))
    return float((logits.argmax(1).numpy() == samples["labels"]).mean())


def context(train_samples, held, teacher=None, seed=0, **kw):
    import torch

    return TransformContext(examples=(torch.zeros(1, 1, 8, 8),), inputs=INPUTS, teacher=teacher,
                            train=train_samples, evaluation=held, seed=seed, **kw)


def export_onnx(module, path):
    """The pipeline's export of a transformed module: the TorchScript exporter at opset 17."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter's notice
        torch.onnx.export(module, (torch.zeros(1, 1, 8, 8),), str(path), input_names=["image"],
                          output_names=["output"], opset_version=17, dynamo=False)
    return path


def ptq_onnx(float_path, out_path, calibration):
    """Post-training INT8 as the ONNX Runtime backend does it (edgeopt/compress/ort_quantize.py): QDQ,
    uint8 activations, int8 per-channel weights, MinMax calibration, one sample per call."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.rows = iter(calibration)

        def get_next(self):
            row = next(self.rows, None)
            return None if row is None else {"image": row[None]}

    quantize_static(str(float_path), str(out_path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax)
    return out_path


def onnx_accuracy(path, samples) -> float:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = np.concatenate([session.run(None, {"image": row[None]})[0] for row in samples["image"]])
    return float((logits.argmax(1) == samples["labels"]).mean())
