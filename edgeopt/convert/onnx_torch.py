"""An ONNX graph as a torch.nn.Module, so litert-torch (which converts PyTorch, not ONNX) can
produce a .tflite from an ONNX model without TensorFlow.

Why not a library: onnx2torch imports torchvision, whose PyPI wheel is built against CUDA torch
and cannot load beside the pinned CPU torch (libc10_cuda.so), so the import fails; onnx2tf pins
TensorFlow 2.19, older onnx/onnxruntime/numpy and ai-edge-litert 2.1, while litert-torch needs
ai-edge-litert 2.3 (docs/architecture.md). So the ops edge CNNs and MLPs use are mapped here, one
short function each; any other op is a one-line error naming the op and its node.

Integer initializers (shapes, axes, pads) and scalars stay Python values: torch.export must see
them as constants, not as tensors whose values it cannot know while tracing.
"""
from __future__ import annotations

from ..errors import BadInput

OPS = {}


def op(*names):
    def register(fn):
        for name in names:
            OPS[name] = fn
        return fn
    return register


def _torch():
    import torch
    import torch.nn.functional as F
    return torch, F


def _pairs(pads):
    """ONNX pads [x1_begin, x2_begin, ..., x1_end, x2_end] -> F.pad order (last dim first)."""
    half = len(pads) // 2
    out = []
    for begin, end in reversed(list(zip(pads[:half], pads[half:]))):
        out += [begin, end]
    return out


def _split_pads(attrs):
    """(begin pads, end pads) of a padded op; auto_pad other than NOTSET is refused."""
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise BadInput(f"auto_pad={attrs['auto_pad']!r} is not supported; re-export the model with explicit pads")
    pads = list(attrs.get("pads", []))
    return pads[:len(pads) // 2], pads[len(pads) // 2:]


def _symmetric_pads(attrs, what):
    """Pads for an op that can only take them symmetric, as torch's `padding` argument."""
    begin, end = _split_pads(attrs)
    if begin != end:
        raise BadInput(f"{what} with asymmetric pads is not supported")
    return tuple(begin) or 0


def _padded(x, attrs, value=0.0):
    """Symmetric pads go to the op itself; asymmetric ones become an explicit F.pad first."""
    begin, end = _split_pads(attrs)
    if begin == end:
        return x, tuple(begin) or 0
    return _torch()[1].pad(x, _pairs(begin + end), value=value), 0


@op("Conv")
def _conv(a, x, w, b=None):
    torch, F = _torch()
    x, padding = _padded(x, a)
    conv = {3: F.conv1d, 4: F.conv2d, 5: F.conv3d}[w.dim()]
    return conv(x, w, b, a.get("strides", 1), padding, a.get("dilations", 1), a.get("group", 1))


@op("ConvTranspose")
def _conv_transpose(a, x, w, b=None):
    torch, F = _torch()
    if "output_shape" in a:
        raise BadInput("ConvTranspose with output_shape is not supported; re-export with explicit pads")
    padding = _symmetric_pads(a, "ConvTranspose")
    conv = {3: F.conv_transpose1d, 4: F.conv_transpose2d, 5: F.conv_transpose3d}[w.dim()]
    return conv(x, w, b, a.get("strides", 1), padding, tuple(a.get("output_padding", [])) or 0,
                a.get("group", 1), a.get("dilations", 1))


@op("Gemm")
def _gemm(a, x, w, c=None):
    x = x.t() if a.get("transA") else x
    w = w.t() if a.get("transB") else w
    y = (x @ w) * a.get("alpha", 1.0)
    return y if c is None else y + c * a.get("beta", 1.0)


@op("MatMul")
def _matmul(a, x, y):
    return x @ y


@op("Add")
def _add(a, x, y):
    return x + y


@op("Sub")
def _sub(a, x, y):
    return x - y


@op("Mul")
def _mul(a, x, y):
    return x * y


@op("Div")
def _div(a, x, y):
    return x / y


@op("Pow")
def _pow(a, x, y):
    return x ** y


def _elementwise(torch_name):
    return lambda a, x: getattr(_torch()[0], torch_name)(x)


for _onnx_name, _torch_name in {"Sqrt": "sqrt", "Exp": "exp", "Erf": "erf", "Tanh": "tanh", "Sigmoid": "sigmoid",
                                "Neg": "neg", "Abs": "abs", "Relu": "relu"}.items():
    OPS[_onnx_name] = _elementwise(_torch_name)


@op("LeakyRelu")
def _leaky_relu(a, x):
    return _torch()[1].leaky_relu(x, a.get("alpha", 0.01))


@op("HardSigmoid")
def _hard_sigmoid(a, x):
    return (x * a.get("alpha", 0.2) + a.get("beta", 0.5)).clamp(0.0, 1.0)


@op("HardSwish")
def _hard_swish(a, x):
    return _torch()[1].hardswish(x)


@op("Clip")
def _clip(a, x, low=None, high=None):
    low = a.get("min", low)
    high = a.get("max", high)
    return x.clamp(min=None if low is None else float(low), max=None if high is None else float(high))


@op("Softmax")
def _softmax(a, x):
    return x.softmax(a.get("axis", -1))


@op("MaxPool")
def _max_pool(a, x):
    torch, F = _torch()
    x, padding = _padded(x, a, value=float("-inf"))
    pool = {3: F.max_pool1d, 4: F.max_pool2d, 5: F.max_pool3d}[x.dim()]
    return pool(x, a["kernel_shape"], a.get("strides", 1), padding, a.get("dilations", 1), bool(a.get("ceil_mode")))


@op("AveragePool")
def _avg_pool(a, x):
    torch, F = _torch()
    include = bool(a.get("count_include_pad"))
    if include:  # explicit zero padding is counted, as count_include_pad asks
        x, padding = _padded(x, a)
    else:
        padding = _symmetric_pads(a, "AveragePool with count_include_pad=0")
    pool = {3: F.avg_pool1d, 4: F.avg_pool2d, 5: F.avg_pool3d}[x.dim()]
    return pool(x, a["kernel_shape"], a.get("strides", 1), padding, bool(a.get("ceil_mode")), include)


@op("GlobalAveragePool")
def _global_avg(a, x):
    return x.mean(dim=tuple(range(2, x.dim())), keepdim=True)


@op("GlobalMaxPool")
def _global_max(a, x):
    return x.amax(dim=tuple(range(2, x.dim())), keepdim=True)


@op("BatchNormalization")
def _batch_norm(a, x, scale, bias, mean, var):
    return _torch()[1].batch_norm(x, mean, var, scale, bias, False, 0.0, a.get("epsilon", 1e-5))


@op("Flatten")
def _flatten(a, x):
    axis = a.get("axis", 1) % x.dim() if x.dim() else 0
    lead = 1
    for d in x.shape[:axis]:
        lead *= d
    return x.reshape(lead, -1)


@op("Reshape")
def _reshape(a, x, shape):
    # ONNX: 0 copies the input's dim (unless allowzero), -1 is inferred.
    dims = [x.shape[i] if d == 0 and not a.get("allowzero") else d for i, d in enumerate(shape)]
    return x.reshape(dims)


@op("Transpose")
def _transpose(a, x):
    return x.permute(a.get("perm", list(reversed(range(x.dim())))))


@op("Concat")
def _concat(a, *xs):
    return _torch()[0].cat(xs, a["axis"])


@op("Squeeze")
def _squeeze(a, x, axes=None):
    axes = a.get("axes", axes)
    if axes is None:
        return x.squeeze()
    for axis in sorted((d % x.dim() for d in axes), reverse=True):
        x = x.squeeze(axis)
    return x


@op("Unsqueeze")
def _unsqueeze(a, x, axes=None):
    axes = a.get("axes", axes)
    rank = x.dim() + len(axes)
    for axis in sorted(d % rank for d in axes):
        x = x.unsqueeze(axis)
    return x


@op("ReduceMean")
def _reduce_mean(a, x, axes=None):
    axes = a.get("axes", axes)
    dims = tuple(range(x.dim())) if axes is None else tuple(axes)
    return x.mean(dim=dims, keepdim=bool(a.get("keepdims", 1)))


@op("Pad")
def _pad(a, x, pads=None, value=None, axes=None):
    if a.get("mode", b"constant") not in (b"constant", "constant") or axes is not None:
        raise BadInput("Pad is supported in constant mode over all axes only")
    pads = a.get("pads", pads)
    return _torch()[1].pad(x, _pairs(list(pads)), value=0.0 if value is None else float(value))


@op("Identity", "Dropout")
def _identity(a, x, *unused):
    return x


def _attributes(node) -> dict:
    import onnx

    return {attr.name: onnx.helper.get_attribute_value(attr) for attr in node.attribute}


def _check_supported(model) -> None:
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx"):
            raise BadInput(f"op {node.domain}.{node.op_type} (node {node.name or node.output[0]!r}) is a custom op; "
                           "the LiteRT converter cannot convert it")
        if node.op_type not in OPS and node.op_type != "Constant":
            raise BadInput(f"op {node.op_type} (node {node.name or node.output[0]!r}) is not supported by the "
                           f"ONNX -> LiteRT converter; supported: {', '.join(sorted(OPS))}")


def to_torch(model):
    """The ONNX model (static input shapes) as an nn.Module taking its inputs positionally."""
    import numpy as np
    import onnx.numpy_helper
    import torch

    _check_supported(model)

    class OnnxGraph(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.constants = {}   # integer tensors as Python lists, float tensors as buffers
            for init in model.graph.initializer:
                self._add_constant(init.name, onnx.numpy_helper.to_array(init))
            self.nodes = []
            for node in model.graph.node:
                attrs = _attributes(node)
                if node.op_type == "Constant":
                    self._add_constant(node.output[0], onnx.numpy_helper.to_array(attrs["value"]))
                    continue
                self.nodes.append((node.op_type, list(node.input), list(node.output), attrs))
            initializers = {i.name for i in model.graph.initializer}
            self.input_names = [i.name for i in model.graph.input if i.name not in initializers]
            self.output_names = [o.name for o in model.graph.output]

        def _add_constant(self, name, array):
            # Scalars too (Clip's bounds, a scale): torch.export cannot read a tensor's value, and a
            # literal bound lets the converter fuse Clip(0, 6) into RELU6.
            if np.issubdtype(array.dtype, np.integer) or array.size == 1 and array.ndim == 0:
                self.constants[name] = array.tolist()
            else:
                key = f"c{len(self.constants)}"
                self.register_buffer(key, torch.from_numpy(np.array(array, dtype=np.float32)))
                self.constants[name] = key

        def forward(self, *args):
            values = dict(zip(self.input_names, args))
            for op_type, inputs, outputs, attrs in self.nodes:
                values[outputs[0]] = OPS[op_type](attrs, *[self._value(values, i) for i in inputs])
            found = tuple(values[name] for name in self.output_names)
            return found[0] if len(found) == 1 else found

        def _value(self, values, name):
            if name == "":
                return None   # an omitted optional input
            if name in values:
                return values[name]
            constant = self.constants[name]
            return getattr(self, constant) if isinstance(constant, str) else constant

    return OnnxGraph().eval()
