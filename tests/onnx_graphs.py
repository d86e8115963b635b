"""Small ONNX graphs written with onnx.helper, shaped like what exporters leave behind.

- `resnet_style`: a ResNet-style CNN (stem conv, basic blocks with a residual Add, global pool,
  Gemm) whose BatchNormalization nodes are NOT folded into the convs, and optionally with the
  dynamo exporter's run-time zero bias (Expand(CastLike(0, input), Shape(W)[:1])): what
  `torch.onnx.export(..., do_constant_folding=False)` / `training=PRESERVE` / `optimize=False` give.
- `flatten_chain`: Conv then the TorchScript exporter's `x.view(x.size(0), -1)`:
  Shape -> Gather -> Unsqueeze -> Concat -> Reshape, with a dynamic batch dim.
- `boxes_and_scores`: a detector head's output in one tensor: 4 channels of hundreds (boxes) beside 3 of
  hundredths (scores), made by one 1x1 Conv or by a Concat of two (YOLOv8's decoded head joins them so).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


class _Graph:
    def __init__(self, seed=0):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits, self.n = [], [], 0

    def name(self, prefix):
        self.n += 1
        return f"{prefix}_{self.n}"

    def const(self, array, prefix="c"):
        name = self.name(prefix)
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def op(self, op_type, inputs, **attrs):
        out = self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def conv_bn(self, x, cin, cout, k, stride, relu, runtime_bias, input_name):
        w = self.const((self.rng.standard_normal((cout, cin, k, k)) * np.sqrt(2 / (cin * k * k))).astype(np.float32), "w")
        inputs = [x, w]
        if runtime_bias:  # the dynamo exporter's zero bias, built at run time (torch 2.x, optimize=False)
            size = self.op("Shape", [w], start=0, end=1)
            zero = self.op("CastLike", [self.const(np.array(0.0, np.float64), "zero"), input_name])
            inputs.append(self.op("Expand", [zero, size]))
        y = self.op("Conv", inputs, kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4)
        gamma, beta = 1 + 0.1 * self.rng.standard_normal(cout), 0.1 * self.rng.standard_normal(cout)
        mean, var = 0.1 * self.rng.standard_normal(cout), 1 + 0.1 * self.rng.random(cout)
        y = self.op("BatchNormalization", [y] + [self.const(a.astype(np.float32), "bn") for a in (gamma, beta, mean, var)],
                    epsilon=1e-5)
        return self.op("Relu", [y]) if relu else y

    def model(self, inputs, outputs, opset=OPSET):
        graph = helper.make_graph(self.nodes, "g", inputs, outputs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="edgeopt-tests")
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model


def resnet_style(size=64, widths=(32, 64, 128), classes=10, runtime_bias=False, seed=0):
    """A ResNet-style CNN on 1x3xSIZExSIZE with unfused BatchNormalization; input `input`, output `logits`."""
    g = _Graph(seed)
    opset = 20 if runtime_bias else OPSET  # CastLike needs 15+; the dynamo exporter writes 18+
    x = g.conv_bn("input", 3, widths[0], 3, 2, True, runtime_bias, "input")
    cin = widths[0]
    for i, width in enumerate(widths):
        stride = 1 if i == 0 else 2
        y = g.conv_bn(x, cin, width, 3, stride, True, runtime_bias, "input")
        y = g.conv_bn(y, width, width, 3, 1, False, runtime_bias, "input")
        skip = x if stride == 1 and cin == width else g.conv_bn(x, cin, width, 1, stride, False, runtime_bias, "input")
        x, cin = g.op("Relu", [g.op("Add", [y, skip])]), width
    pooled = g.op("Flatten", [g.op("GlobalAveragePool", [x])], axis=1)
    w = g.const((g.rng.standard_normal((classes, cin)) / np.sqrt(cin)).astype(np.float32), "fc")
    g.nodes.append(helper.make_node("Gemm", [pooled, w, g.const(np.zeros(classes, np.float32), "fcb")], ["logits"],
                                    transB=1))
    return g.model([helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])],
                   [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, classes])], opset)


def flatten_chain(channels=4, size=8, classes=3, seed=0):
    """Conv -> view(batch, -1) as the TorchScript exporter writes it for a dynamic batch -> Gemm."""
    g = _Graph(seed)
    w = g.const(g.rng.standard_normal((channels, 1, 3, 3)).astype(np.float32), "w")
    y = g.op("Conv", ["input", w], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    batch = g.op("Gather", [g.op("Shape", [y]), g.const(np.array(0, np.int64), "zero")], axis=0)
    shape = g.op("Concat", [g.op("Unsqueeze", [batch, g.const(np.array([0], np.int64), "axes")]),
                            g.const(np.array([-1], np.int64), "minus_one")], axis=0)
    flat = g.op("Reshape", [y, shape])
    fc = g.const(g.rng.standard_normal((classes, channels * size * size)).astype(np.float32), "fc")
    g.nodes.append(helper.make_node("Gemm", [flat, fc], ["logits"], transB=1))
    return g.model([helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, size, size])],
                   [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])])


def boxes_and_scores(joined: bool = True, permuted: bool = False):
    """x [1, 3, 8, 8] -> [1, 7, 8, 8]: channels 0-3 near 300 +- 200 (boxes), 4-6 near 0 +- 0.01 (scores); made by
    a Concat of two 1x1 Convs ("/boxes/Conv", "/scores/Conv", "/head/Concat"), or by one ("/head/Conv").
    `permuted` (joined): YOLOv5's layout, the Concat reshaped and transposed to [1, 64 anchors, 7]."""
    boxes, scores = np.full((4, 3, 1, 1), 200.0, np.float32), np.full((3, 3, 1, 1), 0.01, np.float32)
    if joined:
        nodes = [helper.make_node("Conv", ["x", "wb"], ["boxes"], name="/boxes/Conv"),
                 helper.make_node("Conv", ["x", "ws"], ["scores"], name="/scores/Conv"),
                 helper.make_node("Concat", ["boxes", "scores"], ["y"], name="/head/Concat", axis=1)]
        weights = [numpy_helper.from_array(boxes, "wb"), numpy_helper.from_array(scores, "ws")]
    else:
        nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="/head/Conv")]
        weights = [numpy_helper.from_array(np.concatenate([boxes, scores]), "w")]
    shape = [1, 7, 8, 8]
    if permuted:
        nodes[-1].output[0] = "joined"
        nodes += [helper.make_node("Reshape", ["joined", "rows"], ["flat"], name="/head/Reshape"),
                  helper.make_node("Transpose", ["flat"], ["y"], name="/head/Transpose", perm=[0, 2, 1])]
        weights.append(numpy_helper.from_array(np.array([1, 7, 64], np.int64), "rows"))
        shape = [1, 64, 7]
    graph = helper.make_graph(nodes, "head", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)], weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
