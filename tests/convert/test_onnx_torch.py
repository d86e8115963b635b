"""The ONNX -> torch mapping behind the LiteRT path, op by op, against ONNX Runtime itself."""
import numpy as np
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

N = helper.make_node
I64 = lambda *v: np.array(v, np.int64)  # noqa: E731

CASES.update({
    "shape-chain-is-folded": (   # what the legacy exporter writes for x.view(x.size(0), -1)
        [N("Shape", ["x"], ["s"]), N("Gather", ["s", "zero"], ["b"], axis=0), N("Unsqueeze", ["b", "ax0"], ["bu"]),
         N("Concat", ["bu", "minus1"], ["shape"], axis=0), N("Reshape", ["x", "shape"], ["r"]),
         N("Size", ["x"], ["n"]), N("Cast", ["n"], ["nf"], to=TensorProto.FLOAT), N("Div", ["r", "nf"], ["y"])],
        [_const("zero", np.int64(0)), _const("ax0", I64(0)), _const("minus1", I64(-1))], [2, 3, 4], "y", 13),
    "slice-with-steps-and-negative-steps": (
        [N("Slice", ["x", "st", "en", "ax", "sp"], ["a"]), N("Slice", ["a", "st2", "en2", "ax2"], ["y"])],
        [_const("st", I64(-1, 0)), _const("en", I64(-(2 ** 62), 9)), _const("ax", I64(1, 2)), _const("sp", I64(-2, 3)),
         _const("st2", I64(1)), _const("en2", I64(2 ** 62)), _const("ax2", I64(0))], [3, 5, 9]),
    "split-by-sizes-and-into-equal-parts": (
        [N("Split", ["x", "sizes"], ["a", "b"], axis=1), N("Split", ["a"], ["c", "d", "e"], axis=2, num_outputs=3),
         N("Concat", ["e", "d", "c"], ["f"], axis=2), N("Mul", ["f", "b"], ["y"])],
        [_const("sizes", I64(2, 2))], [1, 4, 6], "y", 18),
    "resize-nearest-by-scales": (
        [N("Resize", ["x", "", "sc"], ["y"], mode="nearest", coordinate_transformation_mode="asymmetric",
           nearest_mode="floor")],
        [_const("sc", np.array([1, 1, 2, 2], np.float32))], [1, 2, 3, 4]),
    "resize-nearest-with-onnx-defaults-at-whole-factors": (   # half_pixel, round_prefer_floor: tf2onnx leaves them
        [N("Resize", ["x", "", "sc"], ["y"])],
        [_const("sc", np.array([1, 1, 2, 3], np.float32))], [1, 2, 3, 4]),
    "resize-linear-by-sizes-half-pixel": (
        [N("Resize", ["x", "", "", "sz"], ["y"], mode="linear", coordinate_transformation_mode="half_pixel")],
        [_const("sz", I64(1, 2, 7, 5))], [1, 2, 3, 4]),
    "resize-linear-align-corners-and-nearest-exact": (
        [N("Resize", ["x", "", "sc"], ["a"], mode="linear", coordinate_transformation_mode="align_corners"),
         N("Resize", ["a", "", "sc"], ["y"], mode="nearest", coordinate_transformation_mode="half_pixel",
           nearest_mode="round_prefer_ceil")],
        [_const("sc", np.array([1, 1, 2, 2], np.float32))], [1, 2, 3, 3]),
    "attention-layernorm-gelu": (
        [N("LayerNormalization", ["x", "g", "bt"], ["n"], axis=-1, epsilon=1e-6), N("MatMul", ["n", "wq"], ["q"]),
         N("Transpose", ["q"], ["kt"], perm=[0, 2, 1]), N("MatMul", ["q", "kt"], ["s"]),
         N("Softmax", ["s"], ["p"], axis=-1), N("MatMul", ["p", "q"], ["o"]), N("Gelu", ["o"], ["g1"]),
         N("Gelu", ["o"], ["g2"], approximate="tanh"), N("Add", ["g1", "g2"], ["y"])],
        [_const("g", W(8) + 1), _const("bt", W(8)), _const("wq", W(8, 8))], [1, 5, 8], "y", 20),
    "reductions-with-axes-inputs": (
        [N("ReduceSum", ["x", "a1"], ["s"], keepdims=1), N("ReduceMax", ["x", "a1"], ["mx"], keepdims=1),
         N("ReduceMin", ["x", "a1"], ["mn"], keepdims=1), N("ReduceProd", ["x", "a1"], ["pr"], keepdims=1),
         N("ReduceL2", ["x", "a1"], ["l2"], keepdims=1), N("ReduceSumSquare", ["x", "a1"], ["ss"], keepdims=1),
         N("ReduceLogSumExp", ["x", "a1"], ["ls"], keepdims=1), N("ReduceMean", ["x"], ["all"], keepdims=0),
         N("Concat", ["s", "mx", "mn", "pr", "l2", "ss", "ls"], ["c"], axis=1), N("Add", ["c", "all"], ["y"])],
        [_const("a1", I64(1))], [2, 3, 4], "y", 18),
    "range-expand-where-compare": (
        [N("Range", ["r0", "r4", "r1"], ["r"]), N("Cast", ["r"], ["rf"], to=TensorProto.FLOAT),
         N("ConstantOfShape", ["shape"], ["ones"], value=_const("v", np.array([1.0], np.float32))),
         N("Expand", ["rf", "shape"], ["e"]), N("Mul", ["e", "ones"], ["e1"]), N("Less", ["x", "e1"], ["lt"]),
         N("Greater", ["x", "zero"], ["gt"]), N("LessOrEqual", ["x", "e1"], ["le"]),
         N("GreaterOrEqual", ["x", "zero"], ["ge"]), N("And", ["lt", "gt"], ["a"]), N("Or", ["a", "le"], ["o"]),
         N("Xor", ["o", "ge"], ["xo"]), N("Not", ["xo"], ["nt"]), N("Equal", ["rf", "rf"], ["eq"]),
         N("And", ["nt", "eq"], ["c0"]), N("IsNaN", ["x"], ["nan"]), N("Xor", ["c0", "nan"], ["cond"]),
         N("Where", ["cond", "x", "e1"], ["y"])],
        [_const("r0", np.int64(0)), _const("r4", np.int64(4)), _const("r1", np.int64(1)), _const("shape", I64(3, 4)),
         _const("zero", np.float32(0.0))], [3, 4]),
    "elementwise-extended": (
        [N("Abs", ["x"], ["ab"]), N("Add", ["ab", "one"], ["one_plus"]), N("Reciprocal", ["one_plus"], ["rc"]),
         N("Log", ["one_plus"], ["lg"]), N("Floor", ["x"], ["fl"]), N("Ceil", ["x"], ["ce"]), N("Sin", ["x"], ["si"]),
         N("Cos", ["x"], ["co"]), N("Sign", ["x"], ["sg"]), N("Round", ["x"], ["ro"]), N("Softplus", ["x"], ["sp"]),
         N("Softsign", ["x"], ["ss"]), N("Elu", ["x"], ["el"], alpha=0.7), N("Selu", ["x"], ["se"]),
         N("Celu", ["x"], ["cl"], alpha=1.3), N("PRelu", ["x", "slope"], ["pr"]), N("Mish", ["x"], ["mi"]),
         N("LogSoftmax", ["x"], ["lsm"], axis=1), N("Max", ["rc", "lg", "fl"], ["mx"]), N("Min", ["ce", "si"], ["mn"]),
         N("Sum", ["co", "sg", "ro"], ["sm"]), N("Mean", ["sp", "ss", "el"], ["me"]), N("Mod", ["x", "m"], ["md"], fmod=1),
         N("Sum", ["mx", "mn", "sm", "me", "se", "cl", "pr", "mi", "lsm", "md"], ["y"])],
        [_const("one", np.float32(1.0)), _const("slope", W(6)), _const("m", np.float32(0.7))], [3, 6], "y", 18),
    "norms-per-instance-and-group": (
        [N("InstanceNormalization", ["x", "s4", "b4"], ["i"], epsilon=1e-4),
         N("GroupNormalization", ["i", "s4", "b4"], ["y"], num_groups=2, epsilon=1e-5)],
        [_const("s4", W(4) + 1), _const("b4", W(4))], [2, 4, 3, 3], "y", 21),
    "indexing-and-rearranging": (
        [N("Gather", ["x", "idx"], ["g"], axis=1), N("GatherElements", ["x", "gidx"], ["ge"], axis=2),
         N("Tile", ["ge", "reps"], ["t"]), N("CumSum", ["t", "ax2"], ["cs"]), N("Trilu", ["cs"], ["tu"], upper=1),
         N("Trilu", ["cs", "k1"], ["tl"], upper=0), N("ArgMax", ["g"], ["am"], axis=2, keepdims=1),
         N("ArgMin", ["g"], ["an"], axis=2, keepdims=1), N("Add", ["am", "an"], ["ai"]),
         N("CastLike", ["ai", "x"], ["af"]), N("Einsum", ["tu", "tl"], ["es"], equation="bij,bkj->bik"),
         N("ReduceSum", ["es", "ax12"], ["r1"], keepdims=1), N("ReduceSum", ["af", "ax12"], ["r2"], keepdims=1),
         N("ReduceSum", ["g", "ax12"], ["r3"], keepdims=1), N("Sum", ["r1", "r2", "r3"], ["y"])],
        [_const("idx", I64([2, -1], [0, 0])), _const("gidx", np.array(RNG.integers(-4, 4, (2, 4, 3)), np.int64)),
         _const("reps", I64(1, 1, 2)), _const("ax2", np.int64(2)), _const("k1", np.int64(1)), _const("ax12", I64(1, 2))],
        [2, 4, 4], "y", 18),
    "depth-to-space-and-back": (
        [N("DepthToSpace", ["x"], ["d"], blocksize=2, mode="DCR"), N("SpaceToDepth", ["d"], ["s"], blocksize=2),
         N("DepthToSpace", ["s"], ["c"], blocksize=2, mode="CRD"), N("SpaceToDepth", ["c"], ["y"], blocksize=2)],
        [], [1, 8, 2, 3]),
    "pad-reflect-edge-and-axes": (
        [N("Pad", ["x", "p1"], ["a"], mode="reflect"), N("Pad", ["a", "p2"], ["b"], mode="edge"),
         N("Pad", ["b", "p3", "v", "axes"], ["y"])],
        [_const("p1", I64(0, 0, 2, 0, 0, 1)), _const("p2", I64(0, 1, 1, 0, 2, 0)), _const("p3", I64(1, 2)),
         _const("v", np.float32(0.5)), _const("axes", I64(-1))], [1, 3, 5], "y", 18),
    "gather-nd-and-flatten-at-rank": (   # Flatten's axis may equal the rank: [all, 1]
        [N("GatherND", ["x", "nd"], ["g"]), N("Flatten", ["g"], ["f"], axis=2), N("Flatten", ["x"], ["fx"], axis=-1),
         N("ReduceSum", ["fx", "ax0"], ["s"], keepdims=0), N("Mul", ["f", "s"], ["y"])],
        [_const("nd", I64([1, -1], [0, 2], [1, 0])), _const("ax0", I64(0))], [2, 3, 4], "y", 18),
    "gather-elements-of-constants": (   # a BERT's token_type_ids buffer: its data a constant, as a list
        [N("GatherElements", ["cdata", "cidx"], ["g"], axis=1), N("Add", ["x", "g"], ["y"])],
        [_const("cdata", np.array([[0.5, 1.5, 2.5, 3.5]], np.float32)), _const("cidx", I64([3, 0, 1, 1]))],
        [1, 4]),
    "constants-in-every-form": (
        [N("Constant", [], ["ci"], value_ints=[1, -1]), N("Constant", [], ["cf"], value_float=1.5),
         N("Reshape", ["x", "ci"], ["r"]), N("Mul", ["r", "cf"], ["y"])], [], [2, 3, 2]),
})


@pytest.mark.parametrize("case", sorted(CASES))
def test_mapped_ops_agree_with_onnx_runtime(case):
    nodes, inits, shape, *rest = CASES[case]
    out = rest[0] if rest else "y"
    model = _model(nodes, inits, shape, out, *(rest[1:] or []))
    _agree(model, shape)


def test_every_mapped_op_is_exercised_here():
    used = {n.op_type for nodes, *_ in CASES.values() for n in nodes} | {"LSTM", "GRU", "Upsample",
                                                                         "NonMaxSuppression"}  # tests below
    untested = set(OPS) - used - {"Relu", "Exp", "Neg", "Add", "Pow", "Identity", "Dropout"}  # covered by the models
    assert not untested, f"ops without a test case: {sorted(untested)}"


def _flat_concat(names):
    """Nodes joining several outputs of any shape into one `y` (Flatten axis 0 -> [1, n], Concat)."""
    nodes = [N("Flatten", [n], [f"{n}_flat"], axis=0) for n in names]
    return nodes + [N("Concat", [f"{n}_flat" for n in names], ["y"], axis=1)]


@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_lstm_agrees_with_onnx_runtime(direction):
    dirs, hidden, inp = (2 if direction == "bidirectional" else 1), 5, 3
    nodes = [N("LSTM", ["x", "w", "r", "b", "", "h0", "c0"], ["Y", "Yh", "Yc"], hidden_size=hidden,
               direction=direction)] + _flat_concat(["Y", "Yh", "Yc"])
    inits = [_const("w", W(dirs, 4 * hidden, inp)), _const("r", W(dirs, 4 * hidden, hidden)),
             _const("b", W(dirs, 8 * hidden)), _const("h0", W(dirs, 2, hidden)), _const("c0", W(dirs, 2, hidden))]
    _agree(_model(nodes, inits, [4, 2, inp]), [4, 2, inp])


@pytest.mark.parametrize("linear_before_reset", [0, 1])
def test_gru_agrees_with_onnx_runtime(linear_before_reset):
    hidden, inp = 4, 3
    nodes = [N("GRU", ["x", "w", "r", "b"], ["Y", "Yh"], hidden_size=hidden, direction="reverse",
               linear_before_reset=linear_before_reset)] + _flat_concat(["Y", "Yh"])
    inits = [_const("w", W(1, 3 * hidden, inp)), _const("r", W(1, 3 * hidden, hidden)), _const("b", W(1, 6 * hidden))]
    _agree(_model(nodes, inits, [5, 1, inp]), [5, 1, inp])


def test_deprecated_upsample_agrees_with_onnx_runtime():
    model = _model([N("Upsample", ["x", "sc"], ["y"], mode="nearest")],
                   [_const("sc", np.array([1, 1, 2, 3], np.float32))], [1, 2, 3, 3], "y", 9)
    _agree(model, [1, 2, 3, 3])


def test_shape_computations_are_folded_out_of_the_traced_graph():
    nodes, inits, shape, *rest = CASES["shape-chain-is-folded"]
    module = to_torch(_model(nodes, inits, shape, "y", 13))
    assert [n[0] for n in module.nodes] == ["Reshape", "Div"]   # Shape, Gather, Unsqueeze, Concat, Size, Cast folded


def test_every_unsupported_op_is_listed_once_with_counts_before_anything_runs():
    nodes = [N("TopK", ["x", "k"], ["v1", "i1"], name="topk_a"), N("TopK", ["v1", "k"], ["v2", "i2"], name="topk_b"),
             N("NonZero", ["v2"], ["n"], name="nz"), N("Relu", ["v2"], ["r"]),
             N("Fancy", ["r"], ["y"], name="f", domain="com.example")]
    model = _model(nodes, [_const("k", I64(2))], [1, 4])
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    with pytest.raises(BadInput) as e:
        to_torch(model, "m.onnx")
    assert str(e.value).startswith("m.onnx: 4 ONNX ops have no LiteRT mapping: NonZero x1, TopK x2, "
                                   "com.example.Fancy x1 (first nodes: 'nz', 'topk_a', 'f')")
    assert "\n" not in str(e.value)


def test_an_unsupported_attribute_names_the_node_and_op():
    model = _model([N("Resize", ["x", "", "sc"], ["y"], name="up", mode="cubic",
                      coordinate_transformation_mode="tf_crop_and_resize")],
                   [_const("sc", np.array([1, 1, 2, 2], np.float32))], [1, 1, 2, 2])
    with pytest.raises(BadInput, match=r"^m.onnx: node 'up' \(Resize\): Resize mode=cubic coordinate_transformation_"):
        to_torch(model, "m.onnx")


def test_resize_with_onnx_defaults_at_a_fractional_factor_is_refused_naming_the_sizes():
    """The default half_pixel / round_prefer_floor picks torch's pixels only at a whole upscale factor."""
    model = _model([N("Resize", ["x", "", "sc"], ["y"], name="up")], [_const("sc", np.array([1, 1, 1.5, 2], np.float32))],
                   [1, 1, 4, 4])
    with pytest.raises(BadInput, match=r"round_prefer_floor from \[4, 4\] to \[6, 8\] is not supported \(mapped: "):
        to_torch(model, "m.onnx")


def _nms_model(boxes_shape, scores_shape, per_class, iou, score, center_point_box=0):
    """boxes and scores as inputs -> NonMaxSuppression -> selected [detections, 3]."""
    inputs = [_const("max_out", I64(per_class)), _const("iou", np.array([iou], np.float32))]
    names = ["boxes", "scores", "max_out", "iou"]
    if score is not None:
        inputs.append(_const("score", np.array([score], np.float32)))
        names.append("score")
    graph = helper.make_graph(
        [N("NonMaxSuppression", names, ["selected"], center_point_box=center_point_box)], "nms",
        [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, boxes_shape),
         helper.make_tensor_value_info("scores", TensorProto.FLOAT, scores_shape)],
        [helper.make_tensor_value_info("selected", TensorProto.INT64, ["detections", 3])], inputs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _boxes(rng, batches, count, center):
    """Pixel boxes, some overlapping heavily (copies moved by a pixel), some empty (zero width)."""
    corner = rng.uniform(0, 48, (batches, count, 2))
    size = rng.uniform(0, 24, (batches, count, 2))
    size[:, ::7, 0] = 0                                   # empty boxes never suppress or get suppressed
    boxes = np.concatenate([corner + size / 2, size] if center else [corner + size, corner], -1)   # corners swapped
    boxes[:, 1::5] = boxes[:, 0:-1:5] + rng.uniform(-1, 1, boxes[:, 1::5].shape)
    return boxes.astype(np.float32)


NMS_CASES = {   # (batches, classes, boxes, max per class, iou, score threshold, center_point_box)
    "corners-with-threshold": (1, 3, 40, 6, 0.5, 0.3, 0),
    "centre-size-two-batches": (2, 2, 30, 10, 0.3, 0.1, 1),
    "no-score-threshold-more-rounds-than-boxes": (1, 2, 5, 9, 0.5, None, 0),
    "keeps-none": (1, 2, 12, 0, 0.5, 0.1, 0),
}


@pytest.mark.parametrize("case", sorted(NMS_CASES))
def test_nms_pads_onnx_runtimes_selection_and_counts_it(case):
    """The selected rows, in ONNX Runtime's order, then padding; the module's last output counts them."""
    batches, classes, count, per_class, iou, score, center = NMS_CASES[case]
    model = _nms_model([batches, count, 4], [batches, classes, count], per_class, iou, score, center)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    module = to_torch(model)
    assert module.padded_outputs == ["selected"]
    rng = np.random.default_rng(len(case))
    for _ in range(5):
        feed = {"boxes": _boxes(rng, batches, count, center),
                "scores": rng.uniform(0, 1, (batches, classes, count)).astype(np.float32)}
        ref = session.run(None, feed)[0]
        with torch.no_grad():
            selected, valid = module(*(torch.from_numpy(feed[k]) for k in ("boxes", "scores")))
        rows = batches * classes * min(per_class, count)
        assert selected.shape == (rows, 3) and int(valid[0]) == len(ref)
        np.testing.assert_array_equal(selected[:len(ref)].numpy(), ref)
        assert not selected[len(ref):].any()   # padding points at box 0 of batch 0, class 0


def test_a_second_nms_or_outputs_not_made_of_its_rows_are_refused():
    model = _nms_model([1, 8, 4], [1, 2, 8], 3, 0.5, 0.1)
    twice = helper.make_graph(list(model.graph.node) + [N("NonMaxSuppression", ["boxes", "scores"], ["other"],
                                                          name="nms2")],
                              "g", list(model.graph.input), list(model.graph.output), list(model.graph.initializer))
    with pytest.raises(BadInput, match=r"m.onnx: 2 NonMaxSuppression nodes .*pads the detections of one"):
        to_torch(helper.make_model(twice, opset_imports=model.opset_import), "m.onnx")
    fixed = helper.make_graph(list(model.graph.node) + [N("ReduceSum", ["selected"], ["total"], keepdims=1)], "g",
                              list(model.graph.input), [helper.make_tensor_value_info("total", TensorProto.INT64, None)],
                              list(model.graph.initializer))
    with pytest.raises(BadInput, match="no output has the rows of NonMaxSuppression"):
        to_torch(helper.make_model(fixed, opset_imports=model.opset_import), "m.onnx")


def test_a_half_precision_graph_is_refused_with_the_way_to_a_half_precision_artifact():
    """float16 inputs and weights mixed half and float tensors in the mapped ops: "expected m1 and m2 to have the same
    dtype", blamed on the user's node (a walkthrough)."""
    w = numpy_helper.from_array(np.ones((16, 8), np.float16), "w")
    graph = helper.make_graph([N("MatMul", ["x", "w"], ["y"])], "half",
                                   [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [1, 16])],
                                   [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [1, 8])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(BadInput, match=r"^m.onnx: 'x' is float16 \(2 float16 inputs and weights in all\); .* "
                                       "--precision fp16"):
        to_torch(model, "m.onnx")
