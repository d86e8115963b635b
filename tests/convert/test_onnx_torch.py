"""The ONNX -> torch mapping behind the LiteRT path, op by op, against ONNX Runtime itself."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from edgeopt.convert.onnx_torch import OPS, to_torch
from edgeopt.errors import BadInput

RNG = np.random.default_rng(0)


def _const(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def _model(nodes, inits, in_shape, out_name="y", opset=17):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
                              [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return model


def _agree(model, in_shape, atol=1e-5):
    x = RNG.standard_normal(in_shape).astype(np.float32)
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    with torch.no_grad():
        got = to_torch(model)(torch.from_numpy(x)).numpy()
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, atol=atol, rtol=1e-4)


W = lambda *shape: (RNG.standard_normal(shape) * 0.3).astype(np.float32)  # noqa: E731

CASES = {
    "conv-asymmetric-pads-strided-grouped": (
        [helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[0, 1, 1, 0], strides=[2, 2], group=2)],
        [_const("w", W(4, 2, 3, 3)), _const("b", W(4))], [1, 4, 9, 9]),
    "conv-transpose": (
        [helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1])],
        [_const("w", W(4, 3, 3, 3))], [1, 4, 5, 5]),
    "batchnorm-hardswish-global-pools": (
        [helper.make_node("BatchNormalization", ["x", "s", "bb", "m", "v"], ["n"], epsilon=1e-3),
         helper.make_node("HardSwish", ["n"], ["h"]), helper.make_node("GlobalAveragePool", ["h"], ["a"]),
         helper.make_node("GlobalMaxPool", ["h"], ["mx"]), helper.make_node("Concat", ["a", "mx"], ["y"], axis=1)],
        [_const("s", W(3) + 1), _const("bb", W(3)), _const("m", W(3)), _const("v", np.abs(W(3)) + 0.5)], [1, 3, 6, 6]),
    "pools-with-padding": (
        [helper.make_node("MaxPool", ["x"], ["p"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]),
         helper.make_node("AveragePool", ["p"], ["y"], kernel_shape=[2, 2], pads=[0, 0, 1, 1], count_include_pad=1)],
        [], [1, 2, 8, 8]),
    "avgpool-excluding-pads": (
        [helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=0)],
        [], [1, 2, 5, 5]),
    "gemm-softmax-clip": (
        [helper.make_node("Flatten", ["x"], ["f"], axis=1),
         helper.make_node("Gemm", ["f", "w", "c"], ["g"], transB=1, alpha=0.5, beta=2.0),
         helper.make_node("Clip", ["g", "lo", "hi"], ["k"]), helper.make_node("Softmax", ["k"], ["y"], axis=-1)],
        [_const("w", W(5, 12)), _const("c", W(5)), _const("lo", np.float32(-0.5)), _const("hi", np.float32(0.5))],
        [2, 3, 2, 2]),
    "reshape-transpose-reduce-squeeze": (
        [helper.make_node("Reshape", ["x", "shape"], ["r"]), helper.make_node("Transpose", ["r"], ["t"], perm=[0, 2, 1]),
         helper.make_node("ReduceMean", ["t", "axes"], ["m"], keepdims=1),
         helper.make_node("Squeeze", ["m", "sq"], ["s"]), helper.make_node("Unsqueeze", ["s", "sq"], ["y"])],
        [_const("shape", np.array([0, 4, -1], np.int64)), _const("axes", np.array([2], np.int64)),
         _const("sq", np.array([2], np.int64))], [1, 2, 2, 3], "y", 18),
    "elementwise-and-activations": (
        [helper.make_node("Mul", ["x", "k"], ["a"]), helper.make_node("Sigmoid", ["a"], ["b"]),
         helper.make_node("Tanh", ["x"], ["c"]), helper.make_node("Sub", ["b", "c"], ["d"]),
         helper.make_node("LeakyRelu", ["d"], ["e"], alpha=0.2), helper.make_node("Erf", ["e"], ["f"]),
         helper.make_node("Abs", ["f"], ["g"]), helper.make_node("Sqrt", ["g"], ["h"]),
         helper.make_node("Div", ["h", "two"], ["i"]), helper.make_node("HardSigmoid", ["i"], ["y"], alpha=0.3)],
        [_const("k", W(1, 6)), _const("two", np.float32(2.0))], [3, 6]),
    "pad-then-matmul": (
        [helper.make_node("Pad", ["x", "pads", "val"], ["p"]), helper.make_node("MatMul", ["p", "w"], ["y"])],
        [_const("pads", np.array([0, 1, 0, 1], np.int64)), _const("val", np.float32(0.25)), _const("w", W(6, 3))],
        [2, 4]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_mapped_ops_agree_with_onnx_runtime(case):
    nodes, inits, shape, *rest = CASES[case]
    out = rest[0] if rest else "y"
    model = _model(nodes, inits, shape, out, *(rest[1:] or []))
    _agree(model, shape)


def test_every_mapped_op_is_exercised_here():
    used = {n.op_type for nodes, *_ in CASES.values() for n in nodes}
    untested = set(OPS) - used - {"Relu", "Exp", "Neg", "Add", "Pow", "Identity", "Dropout"}  # covered by the models
    assert not untested, f"ops without a test case: {sorted(untested)}"


def test_an_unmapped_or_custom_op_is_refused_before_tracing():
    model = _model([helper.make_node("NonMaxSuppression", ["x", "x"], ["y"], name="nms")], [], [1, 4])
    with pytest.raises(BadInput, match=r"op NonMaxSuppression \(node 'nms'\) is not supported"):
        to_torch(model)
    custom = _model([helper.make_node("Fancy", ["x"], ["y"], name="f", domain="com.example")], [], [1, 4])
    custom.opset_import.append(helper.make_opsetid("com.example", 1))
    with pytest.raises(BadInput, match=r"op com.example.Fancy \(node 'f'\) is a custom op"):
        to_torch(custom)
