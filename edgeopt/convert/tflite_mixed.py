"""Mixed precision for the LiteRT backend: which .tflite ops `--keep-float` names, and the
ai-edge-quantizer recipe entries that leave them float (NO_QUANTIZE on the op's scope).

Names. litert-torch names a tensor by the Python classes of the modules it came from
("...OnnxGraph_wrapped;4"), not by layer, so a .tflite says nothing of the ONNX node an op came
from. The compute ops (CONV_2D, DEPTHWISE_CONV_2D, TRANSPOSE_CONV, FULLY_CONNECTED, BATCH_MATMUL)
are matched to the ONNX graph's compute nodes (Conv, ConvTranspose, Gemm, MatMul) in order, and the
match is accepted only when every pair agrees on kind and output channels; then a layer is named
as in ONNX, as the other backends name it. Otherwise (a PyTorch source, which has no ONNX graph,
or a converter that reordered or fused ops) a layer is named by its op and rank: "CONV_2D:0".

The quantizer's recipe selects ops by a regex on their scope (their output tensor names joined by
";", with a trailing ";"), so one op is selected by its own, escaped and anchored.
"""
from __future__ import annotations

import re

KINDS = {"CONV_2D": "conv", "DEPTHWISE_CONV_2D": "conv", "TRANSPOSE_CONV": "deconv",
         "FULLY_CONNECTED": "dense", "BATCH_MATMUL": "dense"}
ONNX_KINDS = {"Conv": "conv", "ConvTranspose": "deconv", "Gemm": "dense", "MatMul": "dense"}


def _ops(path) -> list:
    """[(op name, scope, input tensors, output tensors, output channels)] of the main graph, in order."""
    from ..litert_model import _flatbuffer

    return _ops_of(*_flatbuffer(path))


def _ops_of(schema, model) -> list:
    from ..litert_model import op_name

    graph, found = model.subgraphs[0], []
    for op in graph.operators:
        name = op_name(schema, model, op) or ""
        outputs = [i for i in op.outputs if i >= 0]
        scope = "".join(graph.tensors[i].name.decode() + ";" for i in outputs if graph.tensors[i].name)
        shape = graph.tensors[outputs[0]].shape if outputs else None
        channels = int(shape[-1]) if shape is not None and len(shape) else None
        found.append((name, scope, [i for i in op.inputs if i >= 0], outputs, channels))
    return found


def compute_ops(path) -> list:
    """[(op name, scope, output channels)] of the main graph's compute ops, in order."""
    return [(name, scope, channels) for name, scope, _, _, channels in _ops(path) if name in KINDS]


def float_region(path, scopes) -> list:
    """The scopes of the ops to leave float: `scopes`, and every op after them whose computed inputs all
    come from float ops (the pools, reshapes and adds up to the next quantized layer). The quantizer
    quantizes those too, so a tensor between two float layers would stay int8 behind a MAX_POOL_2D."""
    ops = _ops(path)
    produced = {i for _, _, _, outputs, _ in ops for i in outputs}
    float_tensors, region = set(), list(scopes)
    for name, scope, inputs, outputs, _ in ops:
        computed = [i for i in inputs if i in produced]   # not constants, not the model's inputs
        follows = name not in KINDS and computed and all(i in float_tensors for i in computed)
        if scope in scopes or follows:
            float_tensors.update(outputs)
            if scope not in region:
                region.append(scope)
    return region


LAYOUT_OPS = ("TRANSPOSE", "RESHAPE", "SQUEEZE", "EXPAND_DIMS")


def output_joins(path) -> list:
    """The scopes of each CONCATENATION that makes a model output, with the layout ops between it and the output
    (litert-torch's transpose back to channels-first), to leave float with float I/O: one INT8 scale for a
    detector's boxes and scores rounds the scores to 0 (compress/ort_quantize.output_joins)."""
    from ..litert_model import _flatbuffer

    schema, model = _flatbuffer(path)
    ops = _ops_of(schema, model)
    maker = {int(t): op for op in ops for t in op[3]}
    found = []
    for tensor in model.subgraphs[0].outputs:
        chain, op = [], maker.get(int(tensor))
        while op is not None and op[0] in LAYOUT_OPS and op[2]:
            chain.append(op[1])
            op = maker.get(int(op[2][0]))
        if op is not None and op[0] == "CONCATENATION" and op[1]:
            found += [scope for scope in [op[1], *chain] if scope and scope not in found]
    return found


def wide_depthwise(path, taps: int) -> list:
    """The scopes of the DEPTHWISE_CONV_2D ops whose kernel (weights [1, kh, kw, C]) has more than `taps` taps."""
    from ..litert_model import _flatbuffer

    schema, model = _flatbuffer(path)
    graph = model.subgraphs[0]
    found = []
    for name, scope, inputs, _, _ in _ops_of(schema, model):
        shape = graph.tensors[inputs[1]].shape if name == "DEPTHWISE_CONV_2D" and len(inputs) > 1 else None
        if shape is not None and len(shape) == 4 and int(shape[1]) * int(shape[2]) > taps:
            found.append(scope)
    return found


def _onnx_signature(onnx_path) -> list:
    """[(node name, kind, output channels or None)] of the ONNX graph's compute nodes, in order."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    weights = {i.name: numpy_helper.to_array(i).shape for i in graph.initializer}
    found = []
    for node in graph.node:
        if node.op_type not in ONNX_KINDS or not node.name:
            continue
        shape = weights.get(node.input[1]) if len(node.input) > 1 else None
        found.append((node.name, ONNX_KINDS[node.op_type], _channels(node, shape)))
    return found


def _channels(node, shape):
    if shape is None:
        return None
    if node.op_type == "Conv":
        return shape[0]
    if node.op_type == "ConvTranspose":
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        return shape[1] * group
    trans_b = any(a.name == "transB" and a.i for a in node.attribute)
    return shape[0] if trans_b else shape[-1]


def layers(float_path, source) -> dict:
    """{layer name: (op name, scope)}: ONNX node names when the ops match the ONNX graph's compute nodes
    one to one, else "<op>:<rank>"."""
    ops = compute_ops(float_path)
    if source.torch_module is None and source.onnx_path is not None:
        nodes = _onnx_signature(source.onnx_path)
        if len(nodes) == len(ops) and all(kind == KINDS[op] and channels in (None, out)
                                          for (_, kind, channels), (op, _, out) in zip(nodes, ops)):
            return {name: (op, scope) for (name, _, _), (op, scope, _) in zip(nodes, ops)}
    return {f"{op}:{rank}": (op, scope) for rank, (op, scope, _) in enumerate(ops)}


def scope_regex(scope: str) -> str:
    return "^" + re.escape(scope) + "$"


def keep(quantizer, scopes) -> None:
    """Recipe entries, added after the model's own, that leave these ops float (the latest match wins)."""
    from ai_edge_quantizer import qtyping
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    for scope in scopes:
        quantizer.update_quantization_recipe(scope_regex(scope), qtyping.TFLOperationName.ALL_SUPPORTED, None,
                                             algorithm_key=AlgorithmName.NO_QUANTIZE)


def only(quantizer, scope) -> None:
    """A recipe that quantizes this one op (static INT8) and nothing else."""
    from ai_edge_quantizer import qtyping

    quantizer.add_static_config(scope_regex(scope), qtyping.TFLOperationName.ALL_SUPPORTED, 8, 8)
