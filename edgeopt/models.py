"""Model intake: ONNX files as they are, PyTorch models exported to ONNX, OpenVINO IR and
TFLite as they are (edgeopt/ir.py, edgeopt/litert_model.py); shapes fixed up front.

Everything downstream (conversion, quantization, parity) works on one model with static input
shapes, described by SourceModel (edgeopt/source.py): an ONNX file, or an IR for the backends that read IR.
"""
from __future__ import annotations

import hashlib
import math
import pathlib

from . import scratch
from .errors import BadInput, first_line
from .source import SourceModel, TensorSpec

TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".torchscript")


# an input of more elements than this is no input a device holds (8 GiB as float32): a batch dim of 99999999999
# allocated 23.3 TiB for the parity check's random inputs, a traceback with exit 1
MAX_INPUT_ELEMENTS = 2 ** 31


def parse_input_shapes(items) -> dict:
    """`name=1,3,224,224` (or just `1,3,224,224` for the only input) -> {name or '': [dims]}."""
    shapes = {}
    for item in items or ():
        name, sep, dims = item.rpartition("=")
        try:
            shape = [int(d) for d in dims.split(",")]
        except ValueError:
            form = "" if sep else " (NAME=D,D,..., or D,D,... for the only input)"   # `image:1,3,224,224` too
            raise BadInput(f"--input-shape {item!r}: dims must be integers, e.g. image=1,3,224,224{form}") from None
        if any(d <= 0 for d in shape):
            raise BadInput(f"--input-shape {item!r}: every dim must be positive")
        count = math.prod(shape)
        if count > MAX_INPUT_ELEMENTS:
            raise BadInput(f"--input-shape {item!r}: {count:.3g} elements ({count * 4 / 2**30:.3g} GiB as float32), "
                           f"more than a device holds (at most {MAX_INPUT_ELEMENTS:.3g})")
        key = name if sep else ""
        if key in shapes:   # the last one had won silently
            raise BadInput(f"--input-shape {item!r}: input {key or '(the only one)'} given a shape twice "
                           f"({','.join(map(str, shapes[key]))} and {dims})")
        shapes[key] = shape
    return shapes


def shapes_text(shapes: dict) -> str:
    """{input: dims} as an error names them: "x 1,3,16,16; mask 1,8"."""
    return "; ".join(f"{name} {','.join(map(str, dims))}" for name, dims in shapes.items())


def sha256_of(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    _feed(h, path)
    return h.hexdigest()


def _feed(h, path: pathlib.Path) -> None:
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)


def onnx_sha256(path: pathlib.Path) -> str:
    """The .onnx file's bytes, then those of each external data file it names (in name order): a model saved with
    external data keeps its weights there, and two models with other weights had one sha256. Without external
    data, the file's own sha256."""
    import onnx
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    h = hashlib.sha256()
    _feed(h, path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - no ONNX model: its reader (load_onnx) refuses it, in one line
        return h.hexdigest()
    locations = {entry.value for tensor in _get_all_tensors(model) if uses_external_data(tensor)
                 for entry in tensor.external_data if entry.key == "location"}
    for location in sorted(locations):
        file = path.parent / location
        if file.is_file():   # a missing one is refused where the model loads
            _feed(h, file)
    return h.hexdigest()


def source_sha256(path: pathlib.Path) -> str:
    """A model file's identity as a bundle records it: with its external data (ONNX) or weights (an IR's .bin)."""
    if path.suffix.lower() == ".onnx":
        return onnx_sha256(path)
    if path.suffix.lower() == ".xml":
        from . import ir
        return ir.sha256_of_ir(path, ir.check_files(path))
    return sha256_of(path)


FILE_FORMATS = {".tflite": "tflite", ".onnx": "onnx", ".xml": "openvino-ir", ".pt2": "exported-program",
                **dict.fromkeys(TORCHSCRIPT_SUFFIXES, "torchscript")}
# names that are files whatever their colons say (`v2.npz` is no module attribute)
FILE_SUFFIXES = {*FILE_FORMATS, ".npz", ".npy", ".edgepkg", ".json", ".bin"}


def callable_reference(reference) -> bool:
    """Whether `reference` is a `module:callable` / `file.py:callable` (a model, a DataLoader) rather than a file:
    a colon, no such file, and a Python name after the last colon. A mistyped `data/trian:v2.npz` read "cannot
    import data/trian: ModuleNotFoundError" (a walkthrough): it is a file that is not there."""
    text = str(reference)
    if ":" not in text or pathlib.Path(text).exists() or pathlib.Path(text).suffix.lower() in FILE_SUFFIXES:
        return False
    return all(part.isidentifier() for part in text.rsplit(":", 1)[1].split("."))


def detect_format(reference: str) -> str:
    """The model's format from its name; BadInput where a model file is missing (`package missing.onnx` ended in
    a FileNotFoundError traceback, and `optimize` recorded a study first)."""
    path = pathlib.Path(reference)
    fmt = FILE_FORMATS.get(path.suffix.lower())
    if fmt is None and callable_reference(reference):
        return "pytorch-module"
    if not path.is_file():
        raise BadInput(f"model not found: {reference}" if not path.exists() else f"model {reference} is not a file")
    if fmt is not None:
        return fmt
    instead = {".edgepkg": "; it is an edgeopt bundle: `package --recipe BUNDLE` rebuilds one from its recipe",
               ".json": "; a JSON file is no model (`check` and `report` read result files)"}.get(path.suffix.lower(), "")
    raise BadInput(f"{reference}: unknown model format (expected .onnx, .pt2, .pt/.pth TorchScript, "
                   f"OpenVINO IR .xml, .tflite, or module:callable){instead}")


def load_onnx(path: pathlib.Path):
    """Load and check an ONNX file; any defect is a one-line BadInput."""
    import onnx

    if not path.is_file():
        raise BadInput(f"model not found: {path}")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as e:  # onnx raises protobuf DecodeError, ValidationError, OSError, ...
        first = first_line(e)
        raise BadInput(f"{path} is not a valid ONNX model: {first}") from None
    if not model.graph.output:
        raise BadInput(f"{path}: the graph has no outputs")
    for kind, values in (("input", graph_inputs(model)), ("output", model.graph.output)):
        for value in values:
            _require_tensor(path, kind, value)
    return model


def refuse_passthrough(model, reference: str, backend: str) -> None:
    """A graph output that is one of its inputs, passed through unchanged, is refused by name on a backend that
    cannot keep the two apart: OpenVINO's converter made two parameters of it and fed one (an artifact of
    uninitialised memory), LiteRT's path lost the input's name (a traceback); ONNX Runtime runs it as it is."""
    inputs = {i.name for i in graph_inputs(model)}
    through = [o.name for o in model.graph.output if o.name in inputs]
    if through:
        raise BadInput(f"{reference}: output {through[0]!r} is the input of that name passed through unchanged, "
                       f"which backend {backend} cannot package; leave it out of the graph's outputs (the caller "
                       "has it already), or package for a profile on onnxruntime (generic)")


NON_TENSOR = {"sequence_type": "a sequence", "map_type": "a map", "optional_type": "an optional",
              "sparse_tensor_type": "a sparse tensor"}


def _require_tensor(path, kind: str, value) -> None:
    """A graph input or output that is no tensor (SplitToSequence's sequence, sklearn-onnx's ZipMap of maps) is
    refused by name: every runtime path here feeds and compares tensors, and it was a KeyError traceback."""
    held = value.type.WhichOneof("value")
    if held in (None, "tensor_type"):
        return
    zipmap = (" (sklearn-onnx writes its probabilities as one: convert with options={id(model): {'zipmap': False}})"
              if held == "sequence_type" and value.type.sequence_type.elem_type.WhichOneof("value") == "map_type"
              else "")
    raise BadInput(f"{path}: {kind} {value.name!r} is {NON_TENSOR.get(held, held)}, not a tensor; edgeopt packages "
                   f"and measures models whose inputs and outputs are tensors{zipmap}")


def graph_inputs(model):
    initializers = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in initializers]


def _dims(value_info):
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or "?")
            for d in value_info.type.tensor_type.shape.dim]


def _np_dtype(value_info) -> str:
    import onnx

    return str(onnx.helper.tensor_dtype_to_np_dtype(value_info.type.tensor_type.elem_type))


def resolve_static_shapes(declared: dict, shapes: dict) -> tuple:
    """Static shapes for every input: user shapes first, a dynamic leading (batch) dim becomes 1.

    `declared` is {input name: [dim]} with an int for a static dim and a str (its name, or '?')
    for a dynamic one. Returns ({input name: [int]}, notes on what was fixed). Unresolved dynamic
    dims elsewhere are a BadInput that says how to fix them. Format-neutral: ONNX and IR use it.
    """
    names = list(declared)
    shapes = dict(shapes)
    if "" in shapes:
        if len(names) != 1:
            raise BadInput(f"--input-shape without a name needs a single-input model; inputs: {', '.join(names)}")
        shapes = {names[0]: shapes.pop("")} | shapes
    for name in shapes:
        if name not in names:
            raise BadInput(f"--input-shape names {name!r}, which is not an input; inputs: {', '.join(names)}")
    resolved, notes = {}, []
    for name, dims in declared.items():
        wanted = shapes.get(name)
        if wanted is not None:
            if len(wanted) != len(dims):
                raise BadInput(f"--input-shape {name}: rank {len(wanted)}, the model's input has rank {len(dims)}")
            for d, v in zip(dims, wanted):
                if isinstance(d, int) and d != v:
                    raise BadInput(f"--input-shape {name}: dim {v} contradicts the model's static dim {d}")
            resolved[name] = list(wanted)
    bound = _shared_dims(declared, resolved)
    for name, dims in declared.items():
        if name in resolved:
            continue
        filled = {i: bound[d] for i, d in enumerate(dims) if _named(d) and d in bound}
        if filled:
            said = ", ".join(f"{dims[i]}={value}" for i, (value, _) in filled.items())
            notes.append(f"input {name}: {said} as {', '.join(sorted({src for _, src in filled.values()}))} has it "
                         "(a dim they share)")
        dims = [filled[i][0] if i in filled else d for i, d in enumerate(dims)]
        dynamic = [i for i, d in enumerate(dims) if not isinstance(d, int)]
        if dynamic == [0]:
            notes.append(f"input {name}: dynamic batch dim, packaged at 1 (--input-shape sets another)")
        elif dynamic:
            shown = ",".join(str(x) for x in dims)
            raise BadInput(f"input {name!r} has dynamic dims ({shown}); fix them with --input-shape {name}=...")
        resolved[name] = [1 if i in dynamic else d for i, d in enumerate(dims)]
    return resolved, notes


def _named(dim) -> bool:
    """A dynamic dim with a name of its own ("batch", "seq"), which every input that names it shares: not "?" or
    an empty one."""
    return isinstance(dim, str) and dim not in ("", "?")


def _shared_dims(declared: dict, given: dict) -> dict:
    """{dim name: (its value, the input whose --input-shape gave it)} of the named dynamic dims the given shapes
    set; two values for one name are refused. A mask given batch 1 beside images of batch 4 broadcast sample 0's
    mask over all four, packaged without a word (a walkthrough)."""
    bound = {}
    for name, shape in given.items():
        for dim, value in zip(declared[name], shape):
            if not _named(dim):
                continue
            if dim in bound and bound[dim][0] != value:
                raise BadInput(f"--input-shape: dim {dim!r} is {bound[dim][0]} for {bound[dim][1]} and {value} for "
                               f"{name}; inputs that share a dim take one value")
            bound.setdefault(dim, (value, name))
    return bound


def fix_input_shapes(model, shapes: dict) -> list:
    """Make every input of an ONNX model static (resolve_static_shapes); returns the notes."""
    inputs = graph_inputs(model)
    resolved, notes = resolve_static_shapes({vi.name: _dims(vi) for vi in inputs}, shapes)
    for vi in inputs:
        for d, v in zip(vi.type.tensor_type.shape.dim, resolved[vi.name]):
            d.dim_value = v
    return notes


# Float initializers larger than this go to shape inference as name, type and dims alone (shapes_of)
WEIGHTLESS_ABOVE = 1024
FLOAT_TYPES = (1, 10, 11, 16)   # TensorProto FLOAT, FLOAT16, DOUBLE, BFLOAT16


def shapes_of(model, **kwargs):
    """onnx.shape_inference.infer_shapes of `model` without the values of its large float weights: it serializes
    and parses the whole model twice, which for a 97 MB ResNet-50 was the peak of package and inspect (+390 MB for
    shapes alone, a memory profile). Shapes never come from a float weight's values; integer initializers (shape
    tensors, which data_prop reads) and small ones are passed whole."""
    import onnx

    light = onnx.ModelProto()
    for message, into, left_out in ((model, light, "graph"), (model.graph, light.graph, "initializer")):
        for field, value in message.ListFields():
            if field.name == left_out:
                continue
            if hasattr(value, "extend"):   # a repeated field
                getattr(into, field.name).extend(value)
            elif hasattr(value, "CopyFrom"):   # a message
                getattr(into, field.name).CopyFrom(value)
            else:
                setattr(into, field.name, value)
    for tensor in model.graph.initializer:
        if tensor.data_type in FLOAT_TYPES and math.prod(tensor.dims) > WEIGHTLESS_ABOVE:
            light.graph.initializer.add(name=tensor.name, data_type=tensor.data_type, dims=tensor.dims)
        else:
            light.graph.initializer.append(tensor)
    return onnx.shape_inference.infer_shapes(light, **kwargs)


def _infer_output_shapes(model) -> None:
    """An output exported with a named dim (['batch', 10]) keeps the name once the inputs are fixed, so the
    manifest would not say what a call returns: each named dim is inferred again from the static inputs
    ([4, 10] at --input-shape image=4,...). A dim that stays dynamic (a detector's box count) keeps its name."""
    import onnx

    named = {}
    for output in model.graph.output:
        for i, d in enumerate(output.type.tensor_type.shape.dim):
            if d.HasField("dim_param"):
                named[output.name, i] = d.dim_param
                d.ClearField("dim_param")
    if not named:
        return
    try:
        inferred = {o.name: _dims(o) for o in shapes_of(model).graph.output}
    except (onnx.shape_inference.InferenceError, ValueError):   # left as exported: the conversion still checks
        inferred = {}
    for output in model.graph.output:
        for i, d in enumerate(output.type.tensor_type.shape.dim):
            if (output.name, i) in named:
                value = (inferred.get(output.name) or [])[i:i + 1]
                if value and isinstance(value[0], int):
                    d.dim_value = value[0]
                else:
                    d.dim_param = named[output.name, i]


def describe_tensors(model):
    inputs = [TensorSpec(i.name, _dims(i), _np_dtype(i)) for i in graph_inputs(model)]
    outputs = [TensorSpec(o.name, _dims(o), _np_dtype(o)) for o in model.graph.output]
    return inputs, outputs


def load_model(reference: str, shapes: dict, workdir: pathlib.Path, simplify: bool = True,
               takes_torch: bool = False, progress=None) -> SourceModel:
    """Any supported model -> SourceModel with an ONNX file (or an IR) of static input shapes in `workdir`,
    simplified (edgeopt/simplify.py) unless `simplify` is False; with takes_torch, a PyTorch module or
    ExportedProgram stays a module (torch_export.load). progress: told of the export, the long step (13 s of a
    ResNet-50 showed only "loading": a walkthrough)."""

    fmt = detect_format(reference)
    if takes_torch and fmt in ("pytorch-module", "exported-program"):
        from . import torch_export
        return torch_export.load(reference, fmt, shapes)
    if fmt == "openvino-ir":
        from . import ir
        return ir.load(pathlib.Path(reference), shapes, workdir)
    if fmt == "tflite":
        from . import litert_model
        return litert_model.load(pathlib.Path(reference), shapes, workdir)
    if fmt == "onnx":
        src = pathlib.Path(reference)
        sha = onnx_sha256(src)
    else:
        from . import torch_export
        if progress is not None:
            progress.status(f"exporting {reference} to ONNX and checking the export")
        src, sha = torch_export.export(reference, fmt, shapes, workdir)
    return onnx_source(src, reference, fmt, sha, shapes, workdir, simplify)


def onnx_source(src: pathlib.Path, reference: str, fmt: str, sha: str, shapes: dict, workdir: pathlib.Path,
                simplify: bool = True) -> SourceModel:
    """An ONNX file (given, or exported from PyTorch) -> SourceModel with static input shapes, simplified
    unless `simplify` is False."""
    import onnx

    model = load_onnx(src)
    _refuse_what_cannot_run(model, reference)
    notes = fix_input_shapes(model, dict(shapes))
    _infer_output_shapes(model)
    fixed = workdir / "source.onnx"
    onnx.save(model, str(fixed))
    inputs, outputs = describe_tensors(shapes_of(model))
    del model   # saved: the simplifier and its ONNX Runtime sessions read the file, not this copy of the weights
    source = SourceModel(reference, fmt, sha, fixed, inputs, outputs, notes,
                         simplification={"applied": False, "reason": "--no-simplify"})
    if simplify:
        from .simplify import simplify as simplify_graph
        simplified = workdir / "simplified.onnx"
        try:
            source.simplification = simplify_graph(fixed, simplified)
        except BadInput as e:   # it names the working copy, a temporary file: the user's is the one to fix
            raise BadInput(str(e).replace(str(fixed), reference)) from None
        if source.simplification["applied"]:
            source.onnx_path, source.unsimplified_path = simplified, fixed
    return source


# ONNX's own operator sets and ONNX Runtime's contrib ops: every other domain is a custom operator, which needs a
# library of its own that no runtime edgeopt ships loads (onnxruntime then failed in the parity check's reference,
# a traceback with exit 1)
STANDARD_DOMAINS = ("", "ai.onnx", "ai.onnx.ml", "com.microsoft")


def _refuse_what_cannot_run(model, reference: str) -> None:
    """A graph with no inputs (nothing to feed or measure: its random inputs' generator was empty), or with a
    custom operator that a model-local function does not define, is bad input named by the user's file."""
    if not graph_inputs(model):
        raise BadInput(f"{reference}: the model has no inputs (its outputs are constants): there is nothing to "
                       "feed it or to measure")
    local = {(f.domain, f.name) for f in model.functions}
    custom = next((n for n in model.graph.node if n.domain not in STANDARD_DOMAINS
                   and (n.domain, n.op_type) not in local), None)
    if custom is not None:
        raise BadInput(f"{reference}: node {custom.name or custom.op_type!r} is {custom.domain}:{custom.op_type}, a "
                       "custom operator: the runtimes edgeopt packages for cannot load it (export the model with "
                       "standard ONNX operators)")
    _refuse_unfed_inputs(model, reference)
    _refuse_an_unknown_opset(model, reference)


def _refuse_unfed_inputs(model, reference: str) -> None:
    """An input of a type no bundle feeds (a string tensor) was refused after conversion and parity, as the
    output bundle's manifest field `inputs[0].dtype` (a user walkthrough)."""
    from device_agent.manifest import INPUT_DTYPES
    for value in graph_inputs(model):
        if not value.type.HasField("tensor_type"):
            raise BadInput(f"{reference}: input {value.name!r} is no tensor (a sequence or map): edgeopt feeds "
                           "tensors only")
        dtype = _np_dtype(value)
        if dtype not in INPUT_DTYPES:
            shown = "string" if dtype == "object" else dtype
            raise BadInput(f"{reference}: input {value.name!r} is a {shown} tensor: edgeopt feeds numeric and bool "
                           "inputs only")


def _refuse_an_unknown_opset(model, reference: str) -> None:
    """An opset newer than this host's onnx knows: onnxruntime's refusal was cut off before its reason, behind a
    --no-simplify hint that did not help (a user walkthrough)."""
    import onnx
    newest = onnx.defs.onnx_opset_version()
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset > newest:
        raise BadInput(f"{reference}: opset {opset} is newer than this edgeopt's onnx {onnx.__version__} knows "
                       f"(opset {newest} at most): export the model at opset {newest} or lower")


def count_parameters(model) -> int:
    import numpy as np

    return int(sum(np.prod(t.dims, dtype=np.int64) for t in model.graph.initializer))


def estimate_flops(model):
    """2 x MACs of Conv, ConvTranspose, Gemm, MatMul, LSTM, GRU and RNN, from inferred shapes; None if shapes
    are unknown."""
    per_node = macs_per_node(model)
    return None if per_node is None else 2 * sum(macs for _, macs in per_node)


# Gate blocks of a recurrent op's weights W [directions, gates x hidden, input] and R [.., gates x hidden, hidden].
RECURRENT_OPS = ("LSTM", "GRU", "RNN")


def macs_per_node(model):
    """[(node, MACs)] of the Conv, ConvTranspose, Gemm, MatMul and recurrent nodes, in graph order, from
    inferred shapes; None if a shape is unknown."""
    found = _node_macs(model)
    return None if any(macs is None for _, macs in found) else found


def unknown_macs(model) -> str | None:
    """Why macs_per_node has no answer: the first compute node whose shapes inference left unknown."""
    node = next((node for node, macs in _node_macs(model) if macs is None), None)
    return None if node is None else f"the shapes of {node.op_type} node {node.name or '(unnamed)'} are not static"


def _node_macs(model) -> list:
    """[(node, MACs or None where a shape is unknown)] of the compute nodes, in graph order. Shape inference
    propagates shape values (data_prop): a legacy export's Shape -> Gather -> Concat -> Reshape chains then
    resolve at static input shapes."""
    inferred = shapes_of(model, data_prop=True)
    shapes = {vi.name: _dims(vi) for vi in list(inferred.graph.value_info) + list(inferred.graph.output)
              + list(inferred.graph.input)}
    shapes.update({t.name: list(t.dims) for t in model.graph.initializer})
    found = []
    for node in inferred.graph.node:
        if node.op_type in RECURRENT_OPS:   # every step of every sequence: X @ W^T and H @ R^T, all gates
            x, w, r = (shapes.get(name) for name in node.input[:3])
            found.append((node, _prod(x[:2]) * (_prod(w) + _prod(r)) if _static(x, w, r) else None))  # x: [T, B, I]
            continue
        if node.op_type not in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
            continue
        out, w = shapes.get(node.output[0]), shapes.get(node.input[1])
        if not _static(out, w):
            macs = None
        elif node.op_type == "Conv":
            macs = _prod(out) * _prod(w[1:])
        elif node.op_type == "ConvTranspose":
            macs = _prod(shapes.get(node.input[0], [0])) * _prod(w[1:])
        elif node.op_type == "MatMul":   # [..., M, K] x [..., K, N]: K per output element
            macs = _prod(out) * (w[-2] if len(w) > 1 else w[0])
        else:
            macs = _prod(out) * (w[1] if _attr(node, "transB") else w[0])
        found.append((node, macs))
    return found


# A graph whose MatMul/Gemm-with-weights MACs reach this share is quantized as a transformer: dynamically on ONNX
# Runtime (compress/ort_quantize.py) and LiteRT (convert/tflite.py, counted on the float .tflite), with NNCF's
# transformer scheme on OpenVINO (compress/nncf_quantize.py).
TRANSFORMER_MAC_SHARE = 0.5
# --quantize int8 as calibrated static INT8, as dynamic (int8 weights, activation ranges at run time), or auto:
# dynamic for a transformer-like graph (ONNX Runtime's and LiteRT's backend option int8_method).
INT8_METHODS = ("auto", "static", "dynamic")


def matmul_mac_share(model):
    """The share of macs_per_node's MACs in MatMul/Gemm nodes with weights (near 1 in transformers and
    ConvNeXt's pointwise layers, near 0 in CNNs), rounded to 3 places; None when MACs cannot be counted.
    Recurrent ops are left out of both sides: ONNX Runtime's dynamic quantization takes LSTM but not GRU, and
    neither mode takes a GRU, so counting them would move a conv + GRU model off static INT8 (its convs int8)
    for nothing. They count in estimate_flops."""
    per_node = [(node, macs) for node, macs in macs_per_node(model) or () if node.op_type not in RECURRENT_OPS]
    total = sum(macs for _, macs in per_node)
    if not total:
        return None
    weights = {t.name for t in model.graph.initializer}
    share = sum(macs for node, macs in per_node if node.op_type in ("MatMul", "Gemm") and node.input[1] in weights)
    return round(share / total, 3)


def recurrent_share(model):
    """The share of macs_per_node's MACs in LSTM/GRU/RNN nodes, rounded to 3 places; None when there are none or
    MACs cannot be counted. Quantization notes say it of the recurrent ops ONNX Runtime leaves float."""
    per_node = macs_per_node(model) or ()
    total = sum(macs for _, macs in per_node)
    share = sum(macs for node, macs in per_node if node.op_type in RECURRENT_OPS)
    return round(share / total, 3) if total and share else None


def transformer_like(model_path) -> tuple:
    """(whether MatMul/Gemm with weights hold at least TRANSFORMER_MAC_SHARE of the ONNX model's MACs, the
    share or None): the one rule both backends' INT8 follow (dynamic on ONNX Runtime, NNCF's transformer scheme)."""
    import onnx

    share = matmul_mac_share(onnx.load(str(model_path)))
    if share is None:   # shapes a legacy export computes (a BERT's): counted on ONNX Runtime's folded copy
        share = _share_once_folded(model_path)
    return (share or 0) >= TRANSFORMER_MAC_SHARE, share


def _share_once_folded(model_path):
    """matmul_mac_share of the model after ONNX Runtime's basic-level folding, for counting only (a graph whose
    simplification was not kept, such as a BERT's, otherwise read as unknown, so static INT8); None if that fails
    too."""

    import onnx

    from .simplify import ort_optimize

    with scratch.folder("macs") as tmp:
        folded = pathlib.Path(tmp) / "folded.onnx"
        try:
            ort_optimize(pathlib.Path(model_path), folded)
        except BadInput:
            return None
        return matmul_mac_share(onnx.load(str(folded)))


def _static(*shapes) -> bool:
    """Whether every shape is known, to the last dim."""
    return all(shape and all(isinstance(d, int) for d in shape) for shape in shapes)


def _prod(xs):
    n = 1
    for x in xs:
        n *= x if isinstance(x, int) else 0
    return n


def _attr(node, name):
    return next((a.i for a in node.attribute if a.name == name), 0)


def inspect_model(reference: str, shapes: dict, workdir: pathlib.Path) -> dict:
    import onnx

    fmt = detect_format(reference)
    if fmt == "openvino-ir":
        from . import ir
        return ir.inspect(pathlib.Path(reference), shapes)
    if fmt == "tflite":
        from . import litert_model
        return litert_model.inspect(pathlib.Path(reference), shapes)
    original_dynamic = None
    if fmt == "onnx":
        raw = load_onnx(pathlib.Path(reference))
        original_dynamic = {i.name: [d for d in _dims(i) if not isinstance(d, int)] for i in graph_inputs(raw)}
    try:
        source = load_model(reference, shapes, workdir, simplify=False)  # the model as given
    except BadInput as e:
        if original_dynamic is None or "has dynamic dims" not in str(e):
            raise
        return _inspect_dynamic(reference, raw, original_dynamic, str(e))
    exported = workdir / "exported.onnx"   # a PyTorch source's export, before its shapes were fixed
    if original_dynamic is None and exported.is_file():   # a .pt2's dynamic batch read "dynamic dims: none"
        original_dynamic = {i.name: [d for d in _dims(i) if not isinstance(d, int)]
                            for i in graph_inputs(onnx.load(str(exported), load_external_data=False))}
    model = onnx.load(str(source.onnx_path))
    flops, flops_note = _inspect_flops(model, source.onnx_path, workdir)
    return {
        "model": reference, "format": source.format, "sha256": source.sha256,
        "inputs": [t.to_dict() for t in source.inputs], "outputs": [t.to_dict() for t in source.outputs],
        "dynamic_dims": {k: v for k, v in (original_dynamic or {}).items() if v},
        "flops_estimate": flops, "flops_note": flops_note,
        **_graph_facts(model), "notes": source.notes + ([] if fmt == "onnx" else [EXPORT_NOTE]),
    }


# A PyTorch source is described from the ONNX it exports to, which a walkthrough of a TorchScript ResNet-18 took for
# the module itself (ONNX node names, 11,680,872 parameters where the module has 11,689,512)
EXPORT_NOTE = ("described from its ONNX export: node names, op types and the opset are the export's, and parameters "
               "are counted in the exported graph (a BatchNorm folded into its convolution adds none of its own)")


FLOPS_NOTE = "2 x MACs of Conv/ConvTranspose/Gemm/MatMul/LSTM/GRU/RNN at the fixed input shapes"
FOLDED = "counted on the constant-folded graph"


def _inspect_flops(model, onnx_path: pathlib.Path, workdir: pathlib.Path) -> tuple:
    """(FLOPs or None, how they were counted or why not). On the graph as given, else on ONNX Runtime's
    constant-folded copy of it, as package simplifies: a legacy export's Split and Slice sizes come from shape
    arithmetic that ONNX's shape inference leaves unknown, which folding turns into constants."""
    flops = estimate_flops(model)
    if flops is not None:
        return flops, FLOPS_NOTE
    import onnx
    from .simplify import ort_optimize

    why = unknown_macs(model)
    folded = workdir / "flops-folded.onnx"
    try:
        ort_optimize(onnx_path, folded)
        flops = estimate_flops(onnx.load(str(folded)))
    except BadInput as e:   # ONNX Runtime cannot load it: say why the graph as given has no count
        return None, f"not estimated: {why}, and onnxruntime cannot fold it: {e}"
    finally:
        folded.unlink(missing_ok=True)
    if flops is None:
        return None, f"not estimated: {why}, even after constant folding"
    return flops, f"{FLOPS_NOTE}; {FOLDED}, since as given {why}"


def _graph_facts(model) -> dict:
    """What inspect reports of an ONNX graph whatever its input shapes: opsets, producer, size, ops, layers."""
    ops = {}
    for node in model.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    return {"opset": {(o.domain or "ai.onnx"): o.version for o in model.opset_import},
            "ir_version": model.ir_version, "producer": f"{model.producer_name} {model.producer_version}".strip(),
            "parameters": count_parameters(model), "nodes": len(model.graph.node),
            "op_types": dict(sorted(ops.items(), key=lambda kv: -kv[1])), "layers": _layers(model)}


def _layers(model) -> list:
    """The named compute layers ({name, op}): the names --keep-float takes (node names, or module paths in them)."""
    from .compress.mixed_quantize import compute_layers
    # a name that is not UTF-8 (ONNX's proto2 strings are not checked) comes as bytes: a TypeError in inspect
    return [{"name": name if isinstance(name, str) else name.decode("utf-8", "replace"), "op": op}
            for name, op in compute_layers(model.graph)]


def _inspect_dynamic(reference: str, model, dynamic: dict, why: str) -> dict:
    """What inspect can say of an ONNX model whose inputs stay dynamic (no --input-shape for them): everything
    but the FLOPs, which need static shapes; the dims to fix are named."""
    inputs, outputs = describe_tensors(model)
    return {
        "model": reference, "format": "onnx", "sha256": onnx_sha256(pathlib.Path(reference)),
        "inputs": [t.to_dict() for t in inputs], "outputs": [t.to_dict() for t in outputs],
        "dynamic_dims": {k: v for k, v in dynamic.items() if v},
        "flops_estimate": None, "flops_note": f"not estimated: {why}",
        **_graph_facts(model), "notes": [why],
    }
