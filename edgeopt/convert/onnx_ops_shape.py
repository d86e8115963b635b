"""ONNX shape, indexing, logic, resizing and recurrent ops as torch functions (see onnx_ops.py
for the conventions). Shapes are static on this path, so Shape and what is computed from it
(Gather, Concat, Range, ConstantOfShape...) are folded to constants when the module is built
(onnx_torch.py); these functions then run on real values once, and never reach torch.export.
"""
from __future__ import annotations

from ..errors import BadInput
from .onnx_ops import OPS, _torch, ints, op, operands, tensor

# ONNX TensorProto element types -> torch dtype names (the ones a Cast in an edge model uses).
DTYPES = {1: "float32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 7: "int64", 9: "bool", 10: "float16",
          11: "float64", 16: "bfloat16"}


def _dtype(onnx_type):
    if onnx_type not in DTYPES:
        raise BadInput(f"Cast to ONNX element type {onnx_type} is not supported")
    return getattr(_torch()[0], DTYPES[onnx_type])


@op("Shape")
def _shape(a, x):
    dims = list(tensor(x).shape)
    return dims[a.get("start", 0):a["end"]] if "end" in a else dims[a.get("start", 0):]


@op("Size")
def _size(a, x):
    return tensor(x).numel()


@op("Cast")
def _cast(a, x):
    return tensor(x).to(_dtype(a["to"]))


@op("CastLike")
def _cast_like(a, x, like):
    return tensor(x).to(tensor(like).dtype)


@op("ConstantOfShape")
def _constant_of_shape(a, shape):
    import numpy as np
    import onnx.numpy_helper

    value = np.array(onnx.numpy_helper.to_array(a["value"])) if "value" in a else np.zeros(1, np.float32)
    torch = _torch()[0]
    return torch.full(ints(shape), value.reshape(-1)[0].item(), dtype=torch.from_numpy(value).dtype)


@op("Range")
def _range(a, start, limit, delta):
    return _torch()[0].arange(ints(start), ints(limit), ints(delta))


@op("Gather")
def _gather(a, x, indices):
    x = tensor(x)
    axis = a.get("axis", 0) % x.dim()
    if not isinstance(indices, _torch()[0].Tensor) or not indices.is_floating_point() and indices.dim() == 0:
        idx = ints(indices)
        if isinstance(idx, int):
            return x.select(axis, idx % x.shape[axis])
    idx = tensor(indices)
    flat = idx.reshape(-1)
    flat = _torch()[0].where(flat < 0, flat + x.shape[axis], flat)
    out = x.index_select(axis, flat)
    return out.reshape(tuple(x.shape[:axis]) + tuple(idx.shape) + tuple(x.shape[axis + 1:]))


@op("GatherND")
def _gather_nd(a, x, indices):
    """batch_dims 0: indices [..., k] address x's first k dims; a linear index into them flattened, so
    the converter sees one gather."""
    if a.get("batch_dims", 0):
        raise BadInput("GatherND with batch_dims > 0 is not supported")
    torch = _torch()[0]
    x, idx = tensor(x), tensor(indices)
    k = idx.shape[-1]
    lead, rest = tuple(x.shape[:k]), tuple(x.shape[k:])
    linear = 0
    for axis, size in enumerate(lead):
        column = idx[..., axis]
        stride = 1
        for later in lead[axis + 1:]:
            stride *= later
        linear = linear + torch.where(column < 0, column + size, column) * stride
    size = 1
    for d in lead:
        size *= d
    out = x.reshape((size,) + rest).index_select(0, tensor(linear).reshape(-1))
    return out.reshape(tuple(idx.shape[:-1]) + rest)


@op("GatherElements")
def _gather_elements(a, x, indices):
    x, idx = tensor(x), tensor(indices)   # x a constant too: a BERT's token_type_ids buffer
    axis = a.get("axis", 0)
    idx = _torch()[0].where(idx < 0, idx + x.shape[axis], idx)
    return x.gather(axis, idx)


@op("Slice")
def _slice(a, x, starts=None, ends=None, axes=None, steps=None):
    x = tensor(x)
    starts, ends = a.get("starts", ints(starts)), a.get("ends", ints(ends))
    axes = a.get("axes", ints(axes)) or list(range(len(starts)))
    steps = ints(steps) or [1] * len(starts)
    for start, end, axis, step in zip(starts, ends, axes, steps):
        axis %= x.dim()
        picked = range(*slice(start, end, step).indices(x.shape[axis]))
        if step > 0:
            x = x.narrow(axis, picked.start, len(picked)) if step == 1 else x[(slice(None),) * axis + (
                slice(picked.start, picked.stop, step),)]
        else:  # torch has no negative steps: pick the indices
            x = x.index_select(axis, _torch()[0].tensor(list(picked), dtype=_torch()[0].int64))
    return x


@op("Split")
def _split(a, x, split=None):
    x = tensor(x)
    axis = a.get("axis", 0) % x.dim()
    sizes = a.get("split", ints(split))
    if not sizes:
        n = a.get("num_outputs", a["_outputs"])
        chunk = -(-x.shape[axis] // n)
        sizes = [min(chunk, x.shape[axis] - i * chunk) for i in range(n)]
    return tuple(x.split(list(sizes), axis))


@op("Expand")
def _expand(a, x, shape):
    x = tensor(x)
    return x.expand(_torch()[0].broadcast_shapes(tuple(x.shape), tuple(ints(shape))))


@op("Tile")
def _tile(a, x, repeats):
    return tensor(x).repeat(ints(repeats))


@op("Where")
def _where(a, cond, x, y):
    x, y = operands(x, y)
    return _torch()[0].where(tensor(cond), x, y)


def _compare(fn):
    return lambda a, x, y: fn(*(tensor(v) if isinstance(v, list) else v for v in (x, y)))


OPS["Equal"] = _compare(lambda x, y: x == y)
OPS["Less"] = _compare(lambda x, y: x < y)
OPS["LessOrEqual"] = _compare(lambda x, y: x <= y)
OPS["Greater"] = _compare(lambda x, y: x > y)
OPS["GreaterOrEqual"] = _compare(lambda x, y: x >= y)
OPS["And"] = _compare(lambda x, y: tensor(x) & tensor(y))
OPS["Or"] = _compare(lambda x, y: tensor(x) | tensor(y))
OPS["Xor"] = _compare(lambda x, y: tensor(x) ^ tensor(y))


@op("CumSum")
def _cumsum(a, x, axis):
    if a.get("exclusive") or a.get("reverse"):
        raise BadInput("CumSum with exclusive or reverse is not supported")
    return tensor(x).cumsum(ints(axis))


@op("Trilu")
def _trilu(a, x, k=0):
    x = tensor(x)
    return x.triu(ints(k)) if a.get("upper", 1) else x.tril(ints(k))


@op("DepthToSpace")
def _depth_to_space(a, x):
    b, c, h, w = x.shape
    s = a["blocksize"]
    if a.get("mode", b"DCR") in (b"CRD", "CRD"):
        return _torch()[1].pixel_shuffle(x, s)
    return x.reshape(b, s, s, c // (s * s), h, w).permute(0, 3, 4, 1, 5, 2).reshape(b, c // (s * s), h * s, w * s)


@op("SpaceToDepth")
def _space_to_depth(a, x):
    b, c, h, w = x.shape
    s = a["blocksize"]
    return x.reshape(b, c, h // s, s, w // s, s).permute(0, 3, 5, 1, 2, 4).reshape(b, c * s * s, h // s, w // s)


def _text(value, default):
    value = value if value is not None else default
    return value.decode() if isinstance(value, bytes) else value


@op("Resize")
def _resize(a, x, roi=None, scales=None, sizes=None):
    """Resize as F.interpolate, for the coordinate conventions torch itself exports."""
    mode = _text(a.get("mode"), "nearest")
    coords = _text(a.get("coordinate_transformation_mode"), "half_pixel")
    nearest = _text(a.get("nearest_mode"), "round_prefer_floor")
    spatial = x.dim() - 2
    sizes, scales = ints(sizes), ints(scales)
    if sizes:
        size, factor = [int(s) for s in sizes[-spatial:]], None
    elif scales:
        factor = [float(s) for s in scales[-spatial:]]
        size = [int(d * f) for d, f in zip(x.shape[2:], factor)]
    else:
        raise BadInput("Resize needs scales or sizes")
    F = _torch()[1]
    if mode == "nearest" and coords == "asymmetric" and nearest == "floor":
        return F.interpolate(x, size=size, mode="nearest")
    if mode == "nearest" and coords in ("half_pixel", "pytorch_half_pixel") and nearest == "round_prefer_ceil":
        return F.interpolate(x, size=size, mode="nearest-exact")
    whole = all(o >= i and o % i == 0 for o, i in zip(size, x.shape[2:]))
    if mode == "nearest" and coords in ("half_pixel", "pytorch_half_pixel") and nearest == "round_prefer_floor" \
            and whole:
        # ONNX's defaults (tf2onnx and hand-made graphs leave them): at a whole upscale factor k, (x + 0.5) / k - 0.5
        # lies within 0.5 of floor(x / k) and never on a tie, so it picks torch's own nearest pixels
        return F.interpolate(x, size=size, mode="nearest")
    if mode in ("linear", "cubic") and coords in ("half_pixel", "pytorch_half_pixel", "align_corners"):
        kind = ({1: "linear", 2: "bilinear", 3: "trilinear"}[spatial] if mode == "linear" else "bicubic")
        return F.interpolate(x, size=size, mode=kind, align_corners=coords == "align_corners",
                             antialias=bool(a.get("antialias", 0)))
    raise BadInput(f"Resize mode={mode} coordinate_transformation_mode={coords} nearest_mode={nearest} "
                   f"{'from ' + str(list(x.shape[2:])) + ' to ' + str(size) + ' ' if mode == 'nearest' else ''}"
                   "is not supported (mapped: nearest with asymmetric and floor, with half_pixel and "
                   "round_prefer_ceil, or with half_pixel and round_prefer_floor at a whole upscale factor; linear "
                   "and cubic with half_pixel or align_corners: torch's own exports of nn.Upsample/F.interpolate)")


OPS["Upsample"] = lambda a, x, scales: _resize({"mode": a.get("mode", b"nearest"),
                                                "coordinate_transformation_mode": b"asymmetric",
                                                "nearest_mode": b"floor"}, x, None, scales)
