"""Small ONNX graphs written with onnx.helper for what torch does not export without torchvision:
a detector head with NonMaxSuppression inside the graph (variable-length and index outputs), and
If nodes (a condition on an input, one on a shape)."""
from __future__ import annotations

import pathlib

import numpy as np

NMS_INPUT = ("x", (1, 16, 8, 8))
NMS_OUTPUTS = ("selected", "boxes", "scores")
NMS_CLASSES, NMS_MAX_PER_CLASS = 3, 20


def _const(name, value):
    from onnx import helper, numpy_helper

    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value), name + "_value"))


def nms_detector(path, iou_threshold: float = 0.5, score_threshold: float = 0.7, seed: int = 0) -> pathlib.Path:
    """An SSD-like head on a [1, 16, 8, 8] feature map: a 1x1 Conv gives, per cell, a box (pixel scale,
    corners) and class scores; ONNX NonMaxSuppression keeps up to NMS_MAX_PER_CLASS boxes per class.
    Outputs: selected [K, 3] int64 (batch, class, box index), boxes [K, 4] and scores [K], K varying
    with the input."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    channels, cells = 4 + NMS_CLASSES, 64
    weight = numpy_helper.from_array((rng.standard_normal((channels, 16, 1, 1)) * 0.5).astype(np.float32), "w")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["head"], name="head"),
        _const("flat_shape", np.array([1, channels, cells], np.int64)),
        helper.make_node("Reshape", ["head", "flat_shape"], ["flat"]),
        helper.make_node("Transpose", ["flat"], ["cells"], perm=[0, 2, 1]),            # [1, 64, 4 + C]
        _const("split", np.array([4, NMS_CLASSES], np.int64)),
        helper.make_node("Split", ["cells", "split"], ["raw_boxes", "logits"], axis=2),
        helper.make_node("Sigmoid", ["raw_boxes"], ["unit_boxes"]),
        _const("pixels", np.array(64.0, np.float32)),
        helper.make_node("Mul", ["unit_boxes", "pixels"], ["all_boxes"]),               # [1, 64, 4] in pixels
        helper.make_node("Sigmoid", ["logits"], ["probs"]),
        helper.make_node("Transpose", ["probs"], ["all_scores"], perm=[0, 2, 1]),       # [1, C, 64]
        _const("max_out", np.array([NMS_MAX_PER_CLASS], np.int64)),
        _const("iou", np.array([iou_threshold], np.float32)),
        _const("score", np.array([score_threshold], np.float32)),
        helper.make_node("NonMaxSuppression", ["all_boxes", "all_scores", "max_out", "iou", "score"], ["selected"],
                         name="nms"),
        _const("box_cols", np.array([0, 2], np.int64)),
        helper.make_node("Gather", ["selected", "box_cols"], ["box_index"], axis=1),   # [K, 2]: batch, box
        helper.make_node("GatherND", ["all_boxes", "box_index"], ["boxes"]),
        helper.make_node("GatherND", ["all_scores", "selected"], ["scores"]),
    ]
    x = helper.make_tensor_value_info(NMS_INPUT[0], TensorProto.FLOAT, list(NMS_INPUT[1]))
    outputs = [helper.make_tensor_value_info("selected", TensorProto.INT64, ["detections", 3]),
               helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["detections", 4]),
               helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["detections"])]
    graph = helper.make_graph(nodes, "nms_detector", [x], outputs, initializer=[weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    path = pathlib.Path(path)
    onnx.save(model, str(path))
    return path


def if_on_input(path) -> pathlib.Path:
    """x [1, 64] and a scalar int64 `sr`: If sr == 16000 then Unsqueeze(x) [1, 1, 64] else x [1, 64] (the
    branches differ in rank, as TorchScript leaves them in Silero VAD), then a Conv that needs rank 3.
    ONNX Runtime runs it for sr 16000; OpenVINO cannot know the If's output rank."""
    return _if_graph(path, on_input=True)


def if_on_shape(path) -> pathlib.Path:
    """The same branches under a condition on x's rank: a constant once input shapes are static."""
    return _if_graph(path, on_input=False)


def _if_graph(path, on_input: bool) -> pathlib.Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    then = helper.make_graph([_const("axis", np.array([1], np.int64)), helper.make_node("Unsqueeze", ["x", "axis"], ["t"])],
                             "then", [], [helper.make_tensor_value_info("t", TensorProto.FLOAT, [1, 1, 64])])
    other = helper.make_graph([helper.make_node("Identity", ["x"], ["e"])], "else", [],
                              [helper.make_tensor_value_info("e", TensorProto.FLOAT, [1, 64])])
    if on_input:
        condition = [_const("rate", np.array(16000, np.int64)), helper.make_node("Equal", ["sr", "rate"], ["cond"])]
    else:
        condition = [helper.make_node("Shape", ["x"], ["shape"]), helper.make_node("Size", ["shape"], ["rank"]),
                     _const("two", np.array(2, np.int64)), helper.make_node("Equal", ["rank", "two"], ["cond"])]
    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 1, 3)).astype(np.float32), "w")
    nodes = condition + [helper.make_node("If", ["cond"], ["u"], name="pick", then_branch=then, else_branch=other),
                         helper.make_node("Conv", ["u", "w"], ["y"], name="conv", pads=[1, 1])]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])]
    if on_input:
        inputs.append(helper.make_tensor_value_info("sr", TensorProto.INT64, []))
    graph = helper.make_graph(nodes, "if_graph", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 64])],
                              initializer=[weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    path = pathlib.Path(path)
    onnx.save(model, str(path))
    return path
