"""OpenVINO IR intake: an `.xml` with its `.bin`, checked before OpenVINO reads a byte of it.

OpenVINO maps the `.bin` and reads weights at the offsets the `.xml` names; a short or missing
`.bin` shows up late, as a crash or an unhelpful message. So the `.xml` is parsed here with the
standard library first: every Const layer names `offset` and `size` in the `.bin`, and the file
must be at least as long as the furthest of them. openvino is imported only after that.
"""
from __future__ import annotations

import hashlib
import pathlib
import re
import xml.etree.ElementTree as ET

from .errors import BadInput, first_line
from .models import resolve_static_shapes, shapes_text
from .source import SourceModel, TensorSpec

FORMAT = "openvino-ir"
# The runtime options the reference (source) runs with: real f32, one thread, no cache.
F32_OPTIONS = {"device": "CPU", "performance_hint": "LATENCY", "inference_precision": "f32"}


def bin_path(xml_path: pathlib.Path) -> pathlib.Path:
    return xml_path.with_suffix(".bin")


def required_bin_bytes(xml_path: pathlib.Path) -> int:
    """The least `.bin` size the `.xml` needs: the end of its furthest weight blob."""
    try:
        root = ET.parse(xml_path).getroot()
    except (ET.ParseError, OSError) as e:
        raise BadInput(f"{xml_path} is not an OpenVINO IR: {e}") from None
    if root.tag != "net":
        raise BadInput(f"{xml_path} is not an OpenVINO IR: root element <{root.tag}>, expected <net>")
    end = 0
    for data in root.iter("data"):
        offset, size = data.get("offset"), data.get("size")
        if offset is None or size is None:
            continue
        try:
            end = max(end, int(offset) + int(size))
        except ValueError:
            raise BadInput(f"{xml_path}: weight offset/size {offset!r}/{size!r} are not integers") from None
    return end


def weight_bytes_by_type(xml_path: pathlib.Path) -> dict:
    """{element type: bytes} of the IR's constants, read from the .xml ({"f32": ..., "i8": ...})."""
    out = {}
    for layer in ET.parse(xml_path).getroot().iter("layer"):
        data = layer.find("data")
        if layer.get("type") == "Const" and data is not None and data.get("size"):
            kind = data.get("element_type", "?")
            out[kind] = out.get(kind, 0) + int(data.get("size"))
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def check_files(xml_path: pathlib.Path) -> pathlib.Path | None:
    """The `.bin` to read (None when the IR has no weights); a missing or short one is a BadInput."""
    if not xml_path.is_file():
        raise BadInput(f"model not found: {xml_path}")
    needed, weights = required_bin_bytes(xml_path), bin_path(xml_path)
    if needed == 0:
        return weights if weights.is_file() else None
    if not weights.is_file():
        raise BadInput(f"{xml_path}: its weights file {weights.name} is missing (the IR needs {needed} bytes of it)")
    have = weights.stat().st_size
    if have < needed:
        raise BadInput(f"{weights} is truncated: {have} bytes, the IR reads up to byte {needed}")
    return weights


def sha256_of_ir(xml_path: pathlib.Path, weights: pathlib.Path | None) -> str:
    """One digest for the pair: the `.xml` bytes, then the `.bin` bytes."""
    h = hashlib.sha256()
    for path in (xml_path, weights):
        if path is not None:
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()


def read_model(xml_path: pathlib.Path):
    """(openvino.Model, its .bin or None) of a checked IR; OpenVINO's own refusal becomes one line."""
    import openvino as ov

    weights = check_files(xml_path)
    try:
        return ov.Core().read_model(str(xml_path), str(weights) if weights else ""), weights
    except RuntimeError as e:
        own = f" (is {weights.name} the weights file saved with it?)" if weights else ""   # a .bin of another IR
        raise BadInput(f"{xml_path}: OpenVINO cannot read this IR{own}: {openvino_reason(e)}") from None


def name_ports(model) -> list:
    """Name the inputs and outputs that have no tensor name (`input`/`output`, `_0`, `_1`... where several), as
    ONNX export names them; returns the names given. `ov.convert_model` of a PyTorch module leaves its outputs
    nameless, and such an IR, made the standard way, was refused."""
    given = []
    for ports, stem in ((model.inputs, "input"), (model.outputs, "output")):
        taken = {name for port in ports for name in port.get_names()}
        for i, port in enumerate(ports):
            if port.get_names():
                continue
            name = stem if len(ports) == 1 else f"{stem}_{i}"
            while name in taken:
                name += "_"
            port.get_tensor().set_names({name})
            taken.add(name)
            given.append(name)
    return given


def _declared_dims(port) -> list:
    shape = port.get_partial_shape()
    if shape.rank.is_dynamic:
        raise BadInput(f"input {port_name(port)} has a dynamic rank; give its shape with --input-shape")
    return [d.get_length() if d.is_static else "?" for d in shape]


def openvino_reason(error: Exception) -> str:
    """OpenVINO's error in one line that says something: its first line is where in OpenVINO's C++ it was raised
    ("Exception from src/inference/src/cpp/core.cpp:84:"), its last the reason, and a "While validating node"
    line names the node."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    reasons = [line for line in lines if not line.startswith(("Exception from ", "Check '", "While validating"))]
    node = next((m.group(1) for line in lines for m in [re.search(r"with friendly_name '([^']+)'", line)] if m), None)
    reason = reasons[-1] if reasons else first_line(error)
    return f"{reason} (node {node})" if node else reason


def port_name(port) -> str:
    names = sorted(port.get_names())
    if not names:
        raise BadInput(f"model input/output {port.get_node().get_friendly_name()!r} has no tensor name")
    return names[0]


def tensor_specs(ports, prefer=()) -> list:
    """TensorSpecs of a model's inputs or outputs; `prefer` picks among a port's several names."""
    specs = []
    for port in ports:
        names = port.get_names()
        name = next((p for p in prefer if p in names), None) or port_name(port)
        dims = [d.get_length() if d.is_static else "?" for d in port.get_partial_shape()]
        specs.append(TensorSpec(name, dims, str(port.get_element_type().to_dtype())))
    return specs


def make_static(model, shapes: dict, where: str) -> list:
    """Reshape the model's inputs to static shapes (resolve_static_shapes); returns the notes. where: the IR's file,
    as a refusal names it."""
    import openvino as ov

    declared = {port_name(p): _declared_dims(p) for p in model.inputs}
    resolved, notes = resolve_static_shapes(declared, shapes)
    if any(resolved[n] != d for n, d in declared.items()):
        try:
            model.reshape({n: ov.PartialShape(dims) for n, dims in resolved.items()})
        except RuntimeError as e:
            raise BadInput(f"{where}: the IR does not take the input shapes {shapes_text(resolved)}: "
                           f"{openvino_reason(e)}") from None
    return notes


def load(xml_path: pathlib.Path, shapes: dict, workdir: pathlib.Path) -> SourceModel:
    """An IR as a SourceModel; reshaped to static shapes (and saved to `workdir`) only if needed."""
    import openvino as ov

    model, weights = read_model(xml_path)
    named = name_ports(model)
    before = [str(p.get_partial_shape()) for p in model.inputs]
    notes = make_static(model, shapes, str(xml_path))
    if named:
        notes.append(f"the IR names no tensor for {', '.join(named)}: named so here, as ONNX export names them")
    path = xml_path
    if named or before != [str(p.get_partial_shape()) for p in model.inputs]:
        path = workdir / "source.xml"
        ov.save_model(model, str(path), compress_to_fp16=False)  # keep the weights as the user gave them
    return SourceModel(str(xml_path), FORMAT, sha256_of_ir(xml_path, weights), None, tensor_specs(model.inputs),
                       tensor_specs(model.outputs), notes, ir_path=path)


def reference_runner(xml_path: pathlib.Path):
    from .convert.openvino import ov_runner
    return ov_runner(xml_path, F32_OPTIONS)


def _is_weight(element_type) -> bool:
    """A constant of float, or of 8 bits or fewer: an INT8 IR's weights are i8, an INT4 one's u4/i4 (counting
    real constants only made an INT8 IR of 25,866 weights read 260); wider integers are shapes and axes."""
    return element_type.is_real() or (element_type.is_integral() and element_type.bitwidth <= 8
                                      and element_type.get_type_name() != "boolean")


def inspect(xml_path: pathlib.Path, shapes: dict) -> dict:
    """`edgeopt inspect` for an IR: the same keys as for ONNX, from the IR's own graph."""
    import numpy as np

    model, weights = read_model(xml_path)
    named = name_ports(model)
    dynamic = {port_name(p): [d for d in _declared_dims(p) if not isinstance(d, int)] for p in model.inputs}
    try:
        notes = make_static(model, shapes, str(xml_path))
    except BadInput as e:   # as for ONNX: dims that only --input-shape can fix are reported, not refused
        if "has dynamic dims" not in str(e):
            raise
        notes = [str(e)]
    if named:
        notes.append(f"the IR names no tensor for {', '.join(named)}: packaged as named here")
    ops = {}
    for op in model.get_ordered_ops():
        ops[op.get_type_name()] = ops.get(op.get_type_name(), 0) + 1
    params = sum(int(np.prod(op.get_output_shape(0))) for op in model.get_ordered_ops()
                 if op.get_type_name() == "Constant" and _is_weight(op.get_output_element_type(0)))
    version = int(ET.parse(xml_path).getroot().get("version", 0))
    return {
        "model": str(xml_path), "format": FORMAT, "sha256": sha256_of_ir(xml_path, weights),
        "opset": {"openvino IR": version}, "ir_version": version, "producer": "",
        "inputs": [t.to_dict() for t in tensor_specs(model.inputs)],
        "outputs": [t.to_dict() for t in tensor_specs(model.outputs)],
        "dynamic_dims": {k: v for k, v in dynamic.items() if v},
        "parameters": params, "flops_estimate": None, "flops_note": "not estimated for OpenVINO IR",
        "nodes": sum(ops.values()), "op_types": dict(sorted(ops.items(), key=lambda kv: -kv[1])), "notes": notes,
    }
