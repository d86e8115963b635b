"""An ONNX graph as a torch.nn.Module, so litert-torch (which converts PyTorch, not ONNX) can
produce a .tflite from an ONNX model without TensorFlow.

Why not a library: onnx2torch imports torchvision, whose PyPI wheel is built against CUDA torch
and cannot load beside the pinned CPU torch (libc10_cuda.so), so the import fails; onnx2tf pins
TensorFlow 2.19, older onnx/onnxruntime/numpy and ai-edge-litert 2.1, while litert-torch needs
ai-edge-litert 2.3 (docs/architecture.md). So the ops edge models use are mapped here, one short
function each (onnx_ops*.py); every op without a mapping is listed in one message before anything
is converted.

Input shapes are static on this path, so the module is run once on example inputs when it is built:
every value that does not depend on an input (Shape of a static tensor, and what is computed from
it, as both torch exporters emit for reshapes and attention) is folded to a constant then, and
forward() runs only what depends on the inputs. Integer constants stay Python values:
torch.export must see them as constants, not as tensors whose values it cannot know.
"""
from __future__ import annotations

import collections

from ..errors import BadInput
from . import onnx_ops_nms, onnx_ops_rnn, onnx_ops_shape  # noqa: F401  (they register their ops)
from .onnx_ops import OPS

SUPPORTED_DOMAINS = ("", "ai.onnx")
# Inputs whose values an op needs as numbers while tracing (Resize's scales, NMS thresholds): a float
# constant vector this small is also kept as a Python list for them.
NUMBER_INPUTS = {"Resize": (1, 2), "Upsample": (1,), "NonMaxSuppression": (3, 4)}
# Ops whose output length depends on the data, mapped to a padded output of static length plus the
# number of valid rows (onnx_ops_nms.py): that count is the module's last output, and every graph
# output whose first dim is not static is padded along it.
PADDED_OPS = ("NonMaxSuppression",)
VALID_ROWS = "edgeopt::valid_rows"
SMALL_FLOAT_CONSTANT = 8


def _attributes(node) -> dict:
    import onnx

    return {attr.name: onnx.helper.get_attribute_value(attr) for attr in node.attribute}


def unsupported_ops(model) -> dict:
    """{op label: [node names]} for every node without a mapping (custom domains as domain.Op), in
    one pass over the graph."""
    missing = collections.defaultdict(list)
    for node in model.graph.node:
        custom = node.domain not in SUPPORTED_DOMAINS
        if custom or (node.op_type not in OPS and node.op_type != "Constant"):
            label = f"{node.domain}.{node.op_type}" if custom else node.op_type
            missing[label].append(node.name or node.output[0])
    return dict(missing)


HALF_TYPES = {10: "float16", 16: "bfloat16"}   # onnx.TensorProto.FLOAT16, BFLOAT16


def _refuse_half_precision(model, reference) -> None:
    """A graph of float16 inputs or weights mixed half and float tensors in its ops ("expected m1 and m2 to have
    the same dtype ... Half != float", blamed on the user's node; a walkthrough): the path maps fp32 graphs, and
    --precision fp16 makes the half-precision artifact from one."""
    typed = [(i.name, i.type.tensor_type.elem_type) for i in model.graph.input] + \
        [(i.name, i.data_type) for i in model.graph.initializer]
    half = [(name, HALF_TYPES[t]) for name, t in typed if t in HALF_TYPES]
    if half:
        raise BadInput(f"{reference}: {half[0][0]!r} is {half[0][1]} ({len(half)} {half[0][1]} inputs and weights "
                       "in all); the LiteRT path converts float32 graphs: export the model at float32 and package it "
                       "with --precision fp16 for a half-precision artifact")


def check_supported(model, reference="the model") -> None:
    """One BadInput listing every op without a mapping, with counts, before anything is converted; a graph of
    half-precision inputs or weights is refused first."""
    _refuse_half_precision(model, reference)
    missing = unsupported_ops(model)
    if not missing:
        return
    total = sum(len(v) for v in missing.values())
    ops = ", ".join(f"{label} x{len(nodes)}" for label, nodes in sorted(missing.items()))
    first = ", ".join(repr(nodes[0]) for _, nodes in sorted(missing.items()))
    raise BadInput(f"{reference}: {total} ONNX op{'s have' if total > 1 else ' has'} no LiteRT mapping: {ops} "
                   f"(first nodes: {first}); a PyTorch source (a .pt2 export, or file.py:callable for float "
                   "inputs) goes to litert-torch directly, without this mapping")


def _constant_value(attrs):
    """A Constant node's value, from whichever value* attribute it has."""
    import numpy as np
    import onnx.numpy_helper

    if "value" in attrs:
        return onnx.numpy_helper.to_array(attrs["value"])
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32), ("value_int", np.int64),
                       ("value_ints", np.int64)):
        if key in attrs:
            return np.array(attrs[key], dtype)
    raise BadInput(f"Constant with {', '.join(attrs) or 'no value'} is not supported")


def _example_inputs(model, names):
    """Zeros of each input's static shape and type, to run the graph once when it is built."""
    import onnx
    import torch

    by_name = {vi.name: vi for vi in model.graph.input}
    out = []
    for name in names:
        t = by_name[name].type.tensor_type
        dtype = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type)
        dims = [d.dim_value for d in t.shape.dim]
        if any(d <= 0 for d in dims):
            raise BadInput(f"input {name} has dynamic dims; the LiteRT converter needs static input shapes")
        out.append(torch.zeros(dims, dtype=getattr(torch, str(dtype))))
    return out


def _padded_outputs(model, reference) -> list:
    """With one op of PADDED_OPS in the graph, the outputs it may pad: those whose first dim is not
    static (_check_padding keeps those with its rows)."""
    padders = [n.name or n.output[0] for n in model.graph.node if n.op_type in PADDED_OPS]
    if len(padders) > 1:
        raise BadInput(f"{reference}: {len(padders)} NonMaxSuppression nodes ({', '.join(map(repr, padders))}); "
                       "the LiteRT path pads the detections of one")
    return [o.name for o in model.graph.output if padders and (
        not o.type.tensor_type.shape.dim or not o.type.tensor_type.shape.dim[0].dim_value > 0)]


def to_torch(model, reference="the model"):
    """The ONNX model (static input shapes) as an nn.Module taking its inputs positionally."""
    import numpy as np
    import torch

    check_supported(model, reference)

    class OnnxGraph(torch.nn.Module):
        def __init__(self):
            super().__init__()
            import onnx.numpy_helper

            self.constants = {}   # integer tensors and scalars as Python values, others as buffers
            self.numbers = {}     # small float vectors also as Python lists, for NUMBER_INPUTS
            for init in model.graph.initializer:
                self._add_constant(init.name, onnx.numpy_helper.to_array(init))
            self.nodes = []
            for node in model.graph.node:
                attrs = _attributes(node)
                if node.op_type == "Constant":
                    self._add_constant(node.output[0], _constant_value(attrs))
                    continue
                attrs["_outputs"] = len(node.output)   # Split without sizes splits into this many
                outputs = list(node.output) + ([VALID_ROWS] if node.op_type in PADDED_OPS else [])
                self.nodes.append((node.op_type, list(node.input), outputs, attrs, node.name))
            initializers = {i.name for i in model.graph.initializer}
            self.input_names = [i.name for i in model.graph.input if i.name not in initializers]
            self.output_names = [o.name for o in model.graph.output]
            self.padded_outputs = _padded_outputs(model, reference)
            self._fold(_example_inputs(model, self.input_names))
            self._check_padding()

        def _add_constant(self, name, array):
            # Scalars too (Clip's bounds, a scale): torch.export cannot read a tensor's value, and a
            # literal bound lets the converter fuse Clip(0, 6) into RELU6.
            array = np.asarray(array)
            if array.dtype.kind in "iu" or array.ndim == 0:
                self.constants[name] = array.tolist()
                return
            key = f"c{len(self.constants)}"
            dtype = bool if array.dtype == bool else np.float32
            self.register_buffer(key, torch.from_numpy(np.array(array, dtype=dtype)))
            self.constants[name] = key
            if array.ndim == 1 and array.size <= SMALL_FLOAT_CONSTANT:
                self.numbers[name] = array.astype(np.float64).tolist()

        def _fold(self, examples):
            """Run every node once on example inputs; a node whose inputs are all constants (or
            that reads only a static shape) becomes a constant, the rest stays in forward()."""
            values = dict(zip(self.input_names, examples))
            kept = []
            for node in self.nodes:
                op_type, inputs, outputs, attrs, name = node
                results = self._call(node, values)
                if op_type in ("Shape", "Size") or all(i == "" or i in self.constants for i in inputs):
                    for out, r in zip(outputs, results):
                        self._add_constant(out, r.detach().numpy() if isinstance(r, torch.Tensor) else r)
                else:
                    values.update(zip(outputs, results))
                    kept.append(node)
            self.nodes = kept
            self.example_outputs = values

        def _check_padding(self):
            """The outputs of data-dependent length are those with the padded op's rows (a first dim left
            symbolic by a dynamic batch is not); the count trims them."""
            padder = next((n for n in self.nodes if VALID_ROWS in n[2]), None)
            if padder is None:   # none, or folded to a constant on constant boxes
                self.padded_outputs = []
            else:
                rows = self.example_outputs[padder[2][0]].shape[0]
                self.padded_outputs = [name for name in self.padded_outputs
                                       if getattr(self._value(self.example_outputs, name), "shape", ())[:1] == (rows,)]
                if not self.padded_outputs:
                    raise BadInput(f"{reference}: no output has the rows of {padder[0]} {padder[4] or padder[2][0]!r}; "
                                   "the LiteRT path pads the outputs made of them")
            del self.example_outputs

        def _call(self, node, values):
            op_type, inputs, outputs, attrs, name = node
            try:
                result = OPS[op_type](attrs, *self._args(op_type, inputs, values))
            except BadInput as e:
                raise BadInput(f"{reference}: node {name or outputs[0]!r} ({op_type}): {e}") from None
            except Exception as e:  # torch raises RuntimeError/TypeError/IndexError for what it cannot do
                first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
                raise BadInput(f"{reference}: node {name or outputs[0]!r} ({op_type}) cannot be mapped to "
                               f"PyTorch: {first}") from None
            return result if isinstance(result, tuple) else (result,)

        def forward(self, *args):
            values = dict(zip(self.input_names, args))
            for node in self.nodes:
                op_type, inputs, outputs, attrs, _ = node
                result = OPS[op_type](attrs, *self._args(op_type, inputs, values))
                values.update(zip(outputs, result if isinstance(result, tuple) else (result,)))
            found = tuple(self._value(values, name) for name in self.output_names)
            found = tuple(f if isinstance(f, torch.Tensor) else torch.tensor(f) for f in found)
            found += (values[VALID_ROWS],) if self.padded_outputs else ()
            return found[0] if len(found) == 1 else found

        def _args(self, op_type, inputs, values):
            numbers = NUMBER_INPUTS.get(op_type, ())
            return [self.numbers[name] if i in numbers and name in self.numbers else self._value(values, name)
                    for i, name in enumerate(inputs)]

        def _value(self, values, name):
            if name == "":
                return None   # an omitted optional input
            if name in values:
                return values[name]
            constant = self.constants[name]
            return getattr(self, constant) if isinstance(constant, str) else constant

    with torch.no_grad():
        return OnnxGraph().eval()
