"""ONNX ops as torch functions, one short function each: the tensor ops of CNNs, MLPs and
transformers (convolutions, pools, norms, activations, arithmetic). Shape, indexing, logic,
resizing and recurrent ops are in onnx_ops_shape.py; onnx_torch.py builds the module.

Every op takes (attrs, *inputs). An input is a traced tensor, or a constant: integer constants
(shapes, axes, pads, indices) arrive as Python ints/lists, since torch.export must see them as
constants and cannot read a tensor's value; float scalars as Python floats (a literal Clip(0, 6)
bound is fused into RELU6); other float constants as buffers. `ints()` and `tensor()` take either.
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


def ints(v):
    """A static integer (list) from a constant input: Python values pass, a tensor (only while
    folding constants on real values) is read."""
    return v.tolist() if hasattr(v, "tolist") else v


def tensor(v):
    """A tensor from a constant input (int lists -> int64, float lists -> float32)."""
    torch = _torch()[0]
    return v if isinstance(v, torch.Tensor) else torch.tensor(v)


def is_integer(v) -> bool:
    torch = _torch()[0]
    if isinstance(v, torch.Tensor):
        return not v.dtype.is_floating_point and v.dtype != torch.bool
    if isinstance(v, list):
        return all(is_integer(e) for e in v)
    return isinstance(v, int) and not isinstance(v, bool)


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


def operands(x, y):
    """Both operands of a binary op, lists made tensors (Python scalars stay literals)."""
    return (tensor(x) if isinstance(x, list) else x), (tensor(y) if isinstance(y, list) else y)


@op("Add")
def _add(a, x, y):
    x, y = operands(x, y)
    return x + y


@op("Sub")
def _sub(a, x, y):
    x, y = operands(x, y)
    return x - y


@op("Mul")
def _mul(a, x, y):
    x, y = operands(x, y)
    return x * y


@op("Div")
def _div(a, x, y):
    if is_integer(x) and is_integer(y):   # ONNX integer Div truncates
        return _torch()[0].div(tensor(x), tensor(y), rounding_mode="trunc")
    x, y = operands(x, y)
    return x / y


@op("Pow")
def _pow(a, x, y):
    x, y = operands(x, y)
    if isinstance(y, (int, float)) and float(y) == 2.0:   # x*x: exact, and LiteRT has no fast POW
        return x * x
    return x ** y


def _elementwise(torch_name):
    return lambda a, x: getattr(_torch()[0], torch_name)(tensor(x))


for _onnx_name, _torch_name in {"Sqrt": "sqrt", "Exp": "exp", "Erf": "erf", "Tanh": "tanh", "Sigmoid": "sigmoid",
                                "Neg": "neg", "Abs": "abs", "Relu": "relu", "Reciprocal": "reciprocal",
                                "Log": "log", "Floor": "floor", "Ceil": "ceil", "Sin": "sin", "Cos": "cos",
                                "Sign": "sign", "Round": "round", "Not": "logical_not",
                                "IsNaN": "isnan"}.items():   # Hugging Face attention masks: every BERT, GPT-2
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
    low, high = a.get("min", ints(low)), a.get("max", ints(high))
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
    axis = a.get("axis", 1)   # in [-rank, rank]: rank itself makes [all, 1]
    axis = axis + x.dim() if axis < 0 else axis
    lead = 1
    for d in x.shape[:axis]:
        lead *= d
    return x.reshape(lead, -1)


@op("Reshape")
def _reshape(a, x, shape):
    # ONNX: 0 copies the input's dim (unless allowzero), -1 is inferred.
    dims = [x.shape[i] if d == 0 and not a.get("allowzero") else d for i, d in enumerate(ints(shape))]
    return tensor(x).reshape(dims)


@op("Transpose")
def _transpose(a, x):
    x = tensor(x)
    return x.permute(a.get("perm", list(reversed(range(x.dim())))))


@op("Concat")
def _concat(a, *xs):
    return _torch()[0].cat([tensor(x) for x in xs], a["axis"])


@op("Squeeze")
def _squeeze(a, x, axes=None):
    x, axes = tensor(x), a.get("axes", ints(axes))
    if axes is None:
        return x.squeeze()
    for axis in sorted((d % x.dim() for d in axes), reverse=True):
        x = x.squeeze(axis)
    return x


@op("Unsqueeze")
def _unsqueeze(a, x, axes=None):
    x, axes = tensor(x), a.get("axes", ints(axes))
    rank = x.dim() + len(axes)
    for axis in sorted(d % rank for d in axes):
        x = x.unsqueeze(axis)
    return x




@op("Pad")
def _pad(a, x, pads=None, value=None, axes=None):
    mode = a.get("mode", b"constant")
    mode = {"constant": "constant", "reflect": "reflect", "edge": "replicate"}.get(
        mode.decode() if isinstance(mode, bytes) else mode)
    if mode is None:
        raise BadInput(f"Pad mode {a['mode']!r} is not supported")
    pads = list(a.get("pads", ints(pads)))
    if axes is not None:   # opset 18: pads for the listed axes only
        axes = [d % x.dim() for d in ints(axes)]
        full = [0] * (2 * x.dim())
        for k, d in enumerate(axes):
            full[d], full[x.dim() + d] = pads[k], pads[len(axes) + k]
        pads = full
    pairs = _pairs(pads)
    if mode != "constant":   # torch pads only trailing dims in these modes: drop the untouched leading ones
        while len(pairs) > 2 and pairs[-2:] == [0, 0]:
            pairs = pairs[:-2]
        return _torch()[1].pad(x, pairs, mode=mode)
    return _torch()[1].pad(x, pairs, value=0.0 if value is None else float(ints(value)))


@op("Gelu")
def _gelu(a, x):
    approximate = a.get("approximate", b"none")
    return _torch()[1].gelu(x, approximate=approximate.decode() if isinstance(approximate, bytes) else approximate)


@op("Elu")
def _elu(a, x):
    return _torch()[1].elu(x, a.get("alpha", 1.0))


@op("Selu")
def _selu(a, x):
    alpha, gamma = a.get("alpha", 1.67326319217681884765625), a.get("gamma", 1.05070102214813232421875)
    return gamma * _torch()[0].where(x > 0, x, alpha * (x.exp() - 1))


@op("Celu")
def _celu(a, x):
    return _torch()[1].celu(x, a.get("alpha", 1.0))


@op("PRelu")
def _prelu(a, x, slope):
    return _torch()[0].where(x >= 0, x, x * slope)


@op("Softplus")
def _softplus(a, x):
    return _torch()[1].softplus(x)


@op("Softsign")
def _softsign(a, x):
    return x / (1 + x.abs())


@op("Mish")
def _mish(a, x):
    return _torch()[1].mish(x)


@op("LogSoftmax")
def _log_softmax(a, x):
    return x.log_softmax(a.get("axis", -1))


def _variadic(fold):
    def apply(a, *xs):
        out = tensor(xs[0]) if isinstance(xs[0], list) else xs[0]
        for x in xs[1:]:
            out = fold(*operands(out, x))
        return out
    return apply


OPS["Max"] = _variadic(lambda x, y: _torch()[0].maximum(tensor(x), tensor(y)))
OPS["Min"] = _variadic(lambda x, y: _torch()[0].minimum(tensor(x), tensor(y)))
OPS["Sum"] = _variadic(lambda x, y: x + y)


@op("Mean")
def _mean(a, *xs):
    return OPS["Sum"](a, *xs) / len(xs)


@op("Mod")
def _mod(a, x, y):
    torch = _torch()[0]
    x, y = tensor(x), tensor(y)
    return torch.fmod(x, y) if a.get("fmod") else torch.remainder(x, y)


@op("LayerNormalization")
def _layer_norm(a, x, scale, bias=None):
    axis = a.get("axis", -1) % x.dim()
    return _torch()[1].layer_norm(x, tuple(x.shape[axis:]), scale, bias, a.get("epsilon", 1e-5))


@op("InstanceNormalization")
def _instance_norm(a, x, scale, bias):
    return _torch()[1].instance_norm(x, weight=scale, bias=bias, eps=a.get("epsilon", 1e-5))


@op("GroupNormalization")
def _group_norm(a, x, scale, bias):
    groups, eps = a["num_groups"], a.get("epsilon", 1e-5)
    if scale.numel() == groups and x.shape[1] != groups:  # opset 18: one scale per group
        scale, bias = scale.repeat_interleave(x.shape[1] // groups), bias.repeat_interleave(x.shape[1] // groups)
    return _torch()[1].group_norm(x, groups, scale, bias, eps)


def _reduce(name, fn):
    def apply(a, x, axes=None):
        x = tensor(x)
        axes = a.get("axes", ints(axes))
        if not axes:
            if a.get("noop_with_empty_axes"):
                return x
            axes = list(range(x.dim()))
        return fn(x, tuple(d % max(x.dim(), 1) for d in axes), bool(a.get("keepdims", 1)))
    OPS[name] = apply


_reduce("ReduceMean", lambda x, d, k: x.mean(dim=d, keepdim=k))
_reduce("ReduceSum", lambda x, d, k: x.sum(dim=d, keepdim=k))
_reduce("ReduceMax", lambda x, d, k: x.amax(dim=d, keepdim=k))
_reduce("ReduceMin", lambda x, d, k: x.amin(dim=d, keepdim=k))
_reduce("ReduceProd", lambda x, d, k: _prod_dims(x, d, k))
_reduce("ReduceL2", lambda x, d, k: (x * x).sum(dim=d, keepdim=k).sqrt())
_reduce("ReduceSumSquare", lambda x, d, k: (x * x).sum(dim=d, keepdim=k))
_reduce("ReduceLogSumExp", lambda x, d, k: x.logsumexp(dim=d, keepdim=k))


def _prod_dims(x, dims, keep):
    for d in sorted(dims, reverse=True):
        x = x.prod(dim=d, keepdim=keep)
    return x


def _arg(name, fn):
    def apply(a, x):
        if a.get("select_last_index"):
            raise BadInput(f"{name} with select_last_index=1 is not supported")
        return fn(x, a.get("axis", 0), bool(a.get("keepdims", 1)))
    OPS[name] = apply


_arg("ArgMax", lambda x, d, k: x.argmax(dim=d, keepdim=k))
_arg("ArgMin", lambda x, d, k: x.argmin(dim=d, keepdim=k))


@op("Einsum")
def _einsum(a, *xs):
    equation = a["equation"]
    return _torch()[0].einsum(equation.decode() if isinstance(equation, bytes) else equation, *xs)


@op("Identity", "Dropout")
def _identity(a, x, *unused):
    return x


