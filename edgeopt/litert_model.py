"""LiteRT (.tflite) models on the host: intake of a user's .tflite (inspected, packaged as is),
tensor descriptions for the manifest, and a host runner for parity checks.

The host runs a .tflite through the device agent's own LiteRT adapter, so parity is checked
with exactly the I/O handling (int8 quantize/dequantize, tensor names) the device will use.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
import pathlib

import numpy as np

from .errors import BadInput
from .models import sha256_of, shapes_text
from .source import SourceModel, TensorSpec

FORMAT = "tflite"
FLATBUFFER_ID = b"TFL3"   # bytes 4..8 of every TFLite flatbuffer


def _require_litert():
    try:
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError:
        raise BadInput("LiteRT models need the tflite extra: pip install 'edgeopt[tflite]'") from None


def adapter(path: pathlib.Path, options: dict | None = None, threads: int | None = None):
    """The agent's LiteRT adapter with the model loaded; a model LiteRT cannot load (a custom op
    it lacks, a corrupt file) is a one-line BadInput."""
    from device_agent import AgentError
    from device_agent.runtimes.litert import LiteRtAdapter

    from .capture import captured_output

    _require_litert()
    runner = LiteRtAdapter(threads or os.cpu_count() or 1, options)
    try:
        with captured_output():   # LiteRT logs "Created TensorFlow Lite XNNPACK delegate" on stderr
            runner.load(str(path))
    except AgentError as e:
        raise BadInput(f"{path}: {e}") from None
    return runner


def host_runner(path: pathlib.Path, options: dict | None = None):
    """{input: array} -> [float outputs]: all cores, since nothing is timed here."""
    return adapter(path, options).infer


def _spec(detail, name: str) -> TensorSpec:
    from device_agent.runtimes.litert import is_quantized

    scale, zero_point = detail["quantization"]
    quant = {"scale": float(scale), "zero_point": int(zero_point)} if is_quantized(detail) else None
    return TensorSpec(name, [int(d) for d in detail["shape"]], str(np.dtype(detail["dtype"])), quantization=quant)


def describe(path: pathlib.Path, options: dict | None = None):
    """(inputs, outputs) TensorSpecs of a .tflite as the bundle's runtime options present it: named as
    the bundle names them (option tensor_names maps bundle name -> artifact name), without the count
    of a padded output's valid rows (option valid_rows)."""
    runner = adapter(path, options, threads=1)
    to_bundle = {artifact: bundle for bundle, artifact in ((options or {}).get("tensor_names") or {}).items()}
    inputs = [_spec(d, to_bundle.get(d["name"], d["name"])) for d in runner.inputs]
    outputs = [_spec(d, to_bundle.get(d["name"], d["name"])) for d in runner.outputs]
    for position in runner.row_counts:   # padded: as many rows as its count says, at most the static length
        outputs[position].shape[0] = f"<={outputs[position].shape[0]}"
    return inputs, outputs


def check_file(path: pathlib.Path) -> None:
    if not path.is_file():
        raise BadInput(f"model not found: {path}")
    with open(path, "rb") as f:
        head = f.read(8)
    if len(head) < 8 or head[4:8] != FLATBUFFER_ID:
        raise BadInput(f"{path} is not a TFLite flatbuffer (no {FLATBUFFER_ID.decode()} identifier)")


def _check_input(path: pathlib.Path, shapes: dict) -> None:
    """The file, and any --input-shape: a .tflite's shapes are its own, and only the same ones are taken (a script
    that always passes the shapes was refused them)."""
    check_file(path)
    if not shapes:
        return
    own = {spec.name: list(spec.shape) for spec in describe(path)[0]}
    for name, shape in shapes.items():
        mine = own.get(name) if name else (next(iter(own.values())) if len(own) == 1 else None)
        if mine != list(shape):
            raise BadInput(f"{path}: a .tflite has fixed input shapes ({shapes_text(own)}); --input-shape "
                           f"{name + '=' if name else ''}{','.join(map(str, shape))} is not one of them")


def signatures_note(path: pathlib.Path) -> list:
    """A note where the .tflite has several signatures: LiteRT's runtime measures the first subgraph alone, under
    its own tensor names, and a model exported with `encode` and `encode4` said nothing of the second (a
    walkthrough). [] where it has one or none."""
    import ai_edge_litert.interpreter as litert

    from .capture import captured_output

    with captured_output():
        listed = litert.Interpreter(model_path=str(path)).get_signature_list()
    if len(listed) < 2:
        return []
    return [f"the .tflite has {len(listed)} signatures ({', '.join(listed)}); edgeopt packages and measures its "
            "first subgraph alone, under its tensor names: export the one to measure as a model of its own"]


def load(path: pathlib.Path, shapes: dict, workdir: pathlib.Path) -> SourceModel:
    """A user's .tflite as the source: its shapes are its own (static), --input-shape is refused."""
    _check_input(path, shapes)
    inputs, outputs = describe(path)
    # Data for an int8-I/O input is given as floats (the runner quantizes it), so validate it as such.
    inputs = [dataclasses.replace(s, dtype="float32") if s.quantization else s for s in inputs]
    return SourceModel(str(path), FORMAT, sha256_of(path), None, inputs, outputs, signatures_note(path),
                       tflite_path=path)


def _flatbuffer(path: pathlib.Path):
    """The model as the TFLite schema's object tree (ai_edge_litert ships the generated schema)."""
    _require_litert()
    import struct

    from ai_edge_litert import schema_py_generated as schema

    try:   # a truncated file reads past its end: struct.error, a traceback from `inspect` with exit 1
        return schema, schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(path.read_bytes(), 0))
    except (struct.error, IndexError, ValueError, TypeError, UnicodeDecodeError):
        raise BadInput(f"{path}: not a complete TFLite flatbuffer (its tables point past its end, or it is "
                       "damaged: a truncated copy?)") from None


@functools.lru_cache(maxsize=None)
def _builtin_names(schema) -> dict:
    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def op_name(schema, model, op) -> str | None:
    """An operator's builtin name (CONV_2D, ...), a custom op's custom code; None for an opcode index the
    model does not hold."""
    if not 0 <= op.opcodeIndex < len(model.operatorCodes):
        return None
    code = model.operatorCodes[op.opcodeIndex]
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)   # codes past 127 live in builtinCode only
    if builtin == schema.BuiltinOperator.CUSTOM:
        return (code.customCode or b"?").decode()
    return _builtin_names(schema).get(builtin, f"builtin {builtin}")


def operators(schema, model) -> dict:
    """{op name: count} over every subgraph; a custom op by its custom code."""
    counts = {}
    for graph in model.subgraphs:
        for op in graph.operators:
            name = op_name(schema, model, op) or "?"
            counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def parameters(model) -> int:
    """Elements of the constant tensors (those backed by a non-empty buffer) of the main graph."""
    total = 0
    for tensor in model.subgraphs[0].tensors:
        buffer = model.buffers[tensor.buffer]
        if buffer.data is not None and len(buffer.data) or buffer.size:
            total += int(np.prod(tensor.shape)) if tensor.shape is not None else 0
    return total


# The ops whose multiply-accumulates are counted, and where each keeps its weights (the TFLite schema's layouts:
# CONV_2D [Cout, kh, kw, Cin], DEPTHWISE_CONV_2D [1, kh, kw, C], TRANSPOSE_CONV [Cout, kh, kw, Cin] as input 1,
# FULLY_CONNECTED [units, in], BATCH_MATMUL [..., K, N] as the second operand).
MAC_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "FULLY_CONNECTED", "BATCH_MATMUL")


def macs_per_op(path: pathlib.Path) -> list:
    """[(op name, MACs, whether its second operand is a constant)] of the main graph's MAC_OPS, from the
    tensors' static shapes: the TFLite counterpart of models.macs_per_node."""
    return _macs_per_op(*_flatbuffer(path))


def _macs_per_op(schema, model) -> list:
    graph = model.subgraphs[0]

    def shape(index):
        tensor = graph.tensors[index] if 0 <= index < len(graph.tensors) else None
        return [int(d) for d in tensor.shape] if tensor is not None and tensor.shape is not None else []

    def constant(index):
        at = graph.tensors[index].buffer
        buffer = model.buffers[at] if 0 <= at < len(model.buffers) else None
        return buffer is not None and (buffer.data is not None and len(buffer.data) > 0 or bool(buffer.size))

    found = []
    for op in graph.operators:
        name = op_name(schema, model, op)
        if name not in MAC_OPS or op.inputs is None or len(op.inputs) < 2 or op.outputs is None:
            continue
        out, w, data = shape(op.outputs[0]), shape(op.inputs[1]), shape(op.inputs[0])
        if name == "TRANSPOSE_CONV":   # inputs: output shape, weights, data
            found.append((name, _prod(shape(op.inputs[-1])) * _prod(w[:3]), True))
            continue
        # a dim of -1 (dynamic, or a damaged file) counts nothing, as _prod has it: never negative MACs
        per_output = {"CONV_2D": _prod(w[1:]), "DEPTHWISE_CONV_2D": _prod(w[1:3]),
                      "FULLY_CONNECTED": _prod(w[-1:]), "BATCH_MATMUL": _prod(data[-1:])}[name]
        found.append((name, _prod(out) * per_output, shape(op.inputs[1]) != [] and constant(op.inputs[1])))
    return found


def matmul_mac_share(path: pathlib.Path):
    """The share of macs_per_op's MACs in fully connected layers and matrix products with constant weights,
    rounded to 3 places as models.matmul_mac_share; None when no MACs are counted."""
    per_op = macs_per_op(path)
    total = sum(macs for _, macs, _ in per_op)
    if not total:
        return None
    share = sum(macs for name, macs, weights in per_op if name in ("FULLY_CONNECTED", "BATCH_MATMUL") and weights)
    return round(share / total, 3)


def _prod(dims) -> int:
    return math.prod(dims) if len(dims) and min(dims) > 0 else 0   # Python ints: no overflow


def inspect(path: pathlib.Path, shapes: dict) -> dict:
    _check_input(path, shapes)
    schema, model = _flatbuffer(path)
    inputs, outputs = describe(path)   # the tensors as they are (int8 I/O shows as int8 with its scale)
    ops = operators(schema, model)
    macs = sum(n for _, n, _ in _macs_per_op(schema, model))
    description = model.description.decode() if isinstance(model.description, bytes) else (model.description or "")
    return {"model": str(path), "format": FORMAT, "sha256": sha256_of(path), "size_bytes": path.stat().st_size,
            "opset": {"tflite schema": model.version}, "producer": description,
            "inputs": [t.to_dict() for t in inputs], "outputs": [t.to_dict() for t in outputs],
            "dynamic_dims": {}, "parameters": parameters(model), "flops_estimate": 2 * macs or None,
            "flops_note": "2 x MACs of " + "/".join(MAC_OPS) + " at the tensors' shapes",
            "nodes": sum(ops.values()), "op_types": ops,
            "notes": signatures_note(path)}
