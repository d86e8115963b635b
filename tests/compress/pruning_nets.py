"""Small real torch models for the transform tests (imported by tests/compress/test_*.py), and the ONNX
measurements the tests compare: parameters and FLOPs of the exported graph, and an ONNX Runtime run."""
import itertools

import numpy as np


def resnetish(width=32, classes=10, seed=0):
    """A small ResNet-like CNN: stem, a residual block (conv-BN-ReLU-conv-BN + skip add), a strided
    conv, a second residual block, global average pool, a Linear head. BatchNorm scales and statistics
    are spread out so that channel magnitudes differ as they do in a trained model."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
            self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

        def forward(self, x):
            y = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(x + self.bn2(self.conv2(y)))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
            self.b1 = Block(width)
            self.down = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False),
                                      nn.BatchNorm2d(2 * width), nn.ReLU())
            self.b2 = Block(2 * width)
            self.head = nn.Linear(2 * width, classes)

        def forward(self, x):
            return self.head(self.b2(self.down(self.b1(self.stem(x)))).mean((2, 3)))

    torch.manual_seed(seed)
    net = Net()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.uniform_(0.1, 1.5)
            m.running_mean.data.uniform_(-0.2, 0.2)
            m.running_var.data.uniform_(0.5, 2.0)
    return net.eval()


def mlp(sizes=(64, 128, 64, 10), seed=0):
    import torch
    from torch import nn

    torch.manual_seed(seed)
    layers = [nn.Flatten()]
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1]).eval()


def context(example, train=None):
    from edgeopt.compress.base import TransformContext
    from edgeopt.source import TensorSpec

    return TransformContext(examples=(example,), inputs=[TensorSpec("input", list(example.shape), "float32")],
                            train=train)


def export(model, example, path):
    """The module as an ONNX graph (the legacy exporter, opset 17, as the pipeline exports)."""
    import warnings

    import onnx
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)   # the legacy exporter is what we mean to use
        torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["output"])
    return onnx.load(str(path))


def graph_size(model, example, path) -> tuple:
    """(parameters, FLOPs) of the exported graph."""
    from edgeopt.models import count_parameters, estimate_flops

    graph = export(model, example, path)
    return count_parameters(graph), estimate_flops(graph)


def run_onnx(path, example) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": example.numpy()})[0]
