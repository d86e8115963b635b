"""A small real ONNX model with the inputs the old sample format could not express (Silero VAD's shape of
problem): an image-like input [1, 1, 8, 8], a recurrent state [2, 1, 16] whose first axis is not the batch,
and a scalar int64 `sr`. Outputs: logits [1, 10] and the next state [2, 1, 16]."""
import numpy as np

INPUTS = {"image": ((1, 1, 8, 8), np.float32), "state": ((2, 1, 16), np.float32), "sr": ((), np.int64)}
SR = 16000


def weights():
    return np.random.default_rng(0).standard_normal((64, 10)).astype(np.float32)


def write_model(path):
    import onnx
    from onnx import TensorProto as T, helper as h, numpy_helper as nh

    nodes = [
        h.make_node("Flatten", ["image"], ["flat"]),
        h.make_node("MatMul", ["flat", "W"], ["h"]),
        h.make_node("ReduceSum", ["state"], ["s"], keepdims=0),
        h.make_node("Cast", ["sr"], ["srf"], to=T.FLOAT),
        h.make_node("Mul", ["srf", "k_sr"], ["srs"]),
        h.make_node("Mul", ["s", "k_s"], ["ss"]),
        h.make_node("Add", ["ss", "srs"], ["bias"]),
        h.make_node("Add", ["h", "bias"], ["logits"]),
        h.make_node("Add", ["state", "srs"], ["next"]),
        h.make_node("Tanh", ["next"], ["new_state"]),
    ]
    inits = [nh.from_array(weights(), "W"), nh.from_array(np.array(1e-5, np.float32), "k_sr"),
             nh.from_array(np.array(1e-3, np.float32), "k_s")]
    graph = h.make_graph(
        nodes, "state_model",
        [h.make_tensor_value_info("image", T.FLOAT, [1, 1, 8, 8]),
         h.make_tensor_value_info("state", T.FLOAT, [2, 1, 16]),
         h.make_tensor_value_info("sr", T.INT64, [])],
        [h.make_tensor_value_info("logits", T.FLOAT, [1, 10]),
         h.make_tensor_value_info("new_state", T.FLOAT, [2, 1, 16])], inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def stacked_samples(n, seed=1, labels=True):
    """A valid sample set in the stacked form (every input one axis more than the model input); float64
    images on purpose (cast to float32 on reading). Labels are the model's own top-1 on each sample."""
    rng = np.random.default_rng(seed)
    image = rng.standard_normal((n, 1, 1, 8, 8))
    out = {"image": image, "state": rng.standard_normal((n, 2, 1, 16)).astype(np.float32),
           "sr": np.full(n, SR, np.int64)}
    if labels:
        out["labels"] = (image.reshape(n, 64).astype(np.float32) @ weights()).argmax(1)
    return out
