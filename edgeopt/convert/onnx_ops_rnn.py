"""ONNX LSTM and GRU as torch, unrolled over the (static) sequence: LiteRT then sees plain
FULLY_CONNECTED/LOGISTIC/TANH ops, which XNNPACK and the INT8 quantizer both handle, where a
fused recurrent op would need a kernel of its own. Conventions as in onnx_ops.py.

ONNX packs gates as LSTM i,o,f,c and GRU z,r,h (torch: i,f,g,o and r,z,n); W [dirs, G*H, I],
R [dirs, G*H, H], B [dirs, 2*G*H] (input bias, then recurrent bias).
"""
from __future__ import annotations

from ..errors import BadInput
from .onnx_ops import _torch, op


def _check(a, name):
    acts = [s.decode() if isinstance(s, bytes) else s for s in a.get("activations", [])]
    default = ["Sigmoid", "Tanh", "Tanh"] if name == "LSTM" else ["Sigmoid", "Tanh"]
    if acts and acts != default * (len(acts) // len(default)):
        raise BadInput(f"{name} with activations {acts} is not supported")
    if a.get("clip") is not None or a.get("input_forget"):
        raise BadInput(f"{name} with clip or input_forget is not supported")


def _directions(a):
    direction = a.get("direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    return {"forward": [False], "reverse": [True], "bidirectional": [False, True]}[direction]


def _prepare(a, x, sequence_lens, name):
    _check(a, name)
    if sequence_lens is not None:
        raise BadInput(f"{name} with sequence_lens is not supported (export with a fixed sequence length)")
    return x.transpose(0, 1) if a.get("layout", 0) else x   # -> [seq, batch, input]


def _finish(a, ys, finals):
    """Y [seq, dirs, batch, H] (or [batch, seq, dirs, H] with layout=1) and the final states."""
    torch = _torch()[0]
    y = torch.stack([torch.stack(seq) for seq in ys], 1)
    states = [torch.stack(s) for s in zip(*finals)]  # each [dirs, batch, H]
    if a.get("layout", 0):
        y = y.permute(2, 0, 1, 3)
        states = [s.transpose(0, 1) for s in states]
    return (y, *states)


@op("LSTM")
def _lstm(a, x, w, r, b=None, sequence_lens=None, initial_h=None, initial_c=None, p=None):
    torch = _torch()[0]
    x = _prepare(a, x, sequence_lens, "LSTM")
    if p is not None:
        raise BadInput("LSTM with peepholes is not supported")
    hidden, batch = a["hidden_size"], x.shape[1]
    ys, finals = [], []
    for d, backwards in enumerate(_directions(a)):
        h = initial_h[d] if initial_h is not None else x.new_zeros(batch, hidden)
        c = initial_c[d] if initial_c is not None else x.new_zeros(batch, hidden)
        bias = b[d, :4 * hidden] + b[d, 4 * hidden:] if b is not None else 0.0
        gates_x = x @ w[d].t() + bias     # all steps at once: [seq, batch, 4H]
        out = [None] * x.shape[0]
        for t in (reversed(range(x.shape[0])) if backwards else range(x.shape[0])):
            i, o, f, g = (gates_x[t] + h @ r[d].t()).split(hidden, -1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            out[t] = h
        ys.append(out)
        finals.append((h, c))
    return _finish(a, ys, finals)


@op("GRU")
def _gru(a, x, w, r, b=None, sequence_lens=None, initial_h=None):
    torch = _torch()[0]
    x = _prepare(a, x, sequence_lens, "GRU")
    hidden, batch = a["hidden_size"], x.shape[1]
    before_reset = bool(a.get("linear_before_reset", 0))
    ys, finals = [], []
    for d, backwards in enumerate(_directions(a)):
        h = initial_h[d] if initial_h is not None else x.new_zeros(batch, hidden)
        wb, rb = (b[d, :3 * hidden], b[d, 3 * hidden:]) if b is not None else (0.0, x.new_zeros(3 * hidden))
        gates_x = x @ w[d].t() + wb
        r_zr, r_h = r[d, :2 * hidden], r[d, 2 * hidden:]
        out = [None] * x.shape[0]
        for t in (reversed(range(x.shape[0])) if backwards else range(x.shape[0])):
            xz, xr, xh = gates_x[t].split(hidden, -1)
            hz, hr = (h @ r_zr.t() + rb[:2 * hidden]).split(hidden, -1)
            z, reset = torch.sigmoid(xz + hz), torch.sigmoid(xr + hr)
            if before_reset:
                n = torch.tanh(xh + reset * (h @ r_h.t() + rb[2 * hidden:]))
            else:
                n = torch.tanh(xh + (reset * h) @ r_h.t() + rb[2 * hidden:])
            h = (1 - z) * n + z * h
            out[t] = h
        ys.append(out)
        finals.append((h,))
    return _finish(a, ys, finals)
