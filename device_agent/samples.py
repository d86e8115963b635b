"""Sample sets (calibration and eval data): which part of an array is sample i of an input, and the model
calls that cover a set. The host (edgeopt/data.py) imports this module too, so both halves slice alike.

An array for a model input of static shape S holds N samples in one of two forms, told apart by rank:
- stacked: shape (N, *S), one more axis than the input: sample i is the whole input `array[i]`. This
  expresses every static input: a scalar (S = ()) is (N,), a state [2, 1, 128] is (N, 2, 1, 128).
- rows: shape (N, *S[1:]), the input's own rank: samples concatenated along the input's first (batch)
  axis; sample i is `array[i:i + 1]` and one call takes S[0] of them (the form every .npz had first).
Inputs given as rows must share their first dim B, the samples per call; beside a stacked input B must
be 1, since a call then takes one sample of each input.
"""
import numpy as np

STACKED, ROWS = "stacked", "rows"


class SampleError(ValueError):
    """Arrays that do not fit the model's inputs; the message names the array and both shapes."""


def _shape(shape):
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def form(array_shape, input_shape):
    """STACKED, ROWS, or None when an array of `array_shape` fits neither form for the input."""
    a, s = tuple(array_shape), tuple(input_shape)
    if len(a) == len(s) + 1 and a[1:] == s:
        return STACKED
    if s and len(a) == len(s) and a[1:] == s[1:]:
        return ROWS
    return None


def expected(input_shape, rows=True):
    """The accepted array shapes for an input, for messages (rows only where its first axis can be the batch)."""
    s = tuple(input_shape)
    stacked = "(N" + "".join(", %s" % d for d in s) + (",)" if not s else ")")
    if not s:
        return stacked + " (a scalar input: one value per sample)"
    if not rows:
        return stacked + " (whole inputs stacked)"
    return "(N%s) (samples along its batch axis) or %s (whole inputs stacked)" % (
        "".join(", %s" % d for d in s[1:]), stacked)


def plan(shapes, specs):
    """({name: form}, samples per call) for arrays of `shapes` ({name: shape}) fed to `specs`
    ([(name, input shape)]); SampleError names the first array that does not fit."""
    forms = {}
    firsts = set(tuple(shape[:1]) for _, shape in specs)
    for name, shape in specs:
        forms[name] = form(shapes[name], shape)
        if forms[name] is None:
            batch_axis = len(firsts) == 1 or tuple(shape[:1]) == (1,)   # else rows would not fit either
            raise SampleError("array %r has shape %s; model input %r expects %s"
                              % (name, _shape(shapes[name]), name, expected(shape, batch_axis)))
    rows = [(name, tuple(shape)) for name, shape in specs if forms[name] == ROWS]
    stacked = [name for name, _ in specs if forms[name] == STACKED]
    batch = 1 if stacked or not rows else rows[0][1][0]
    for name, shape in rows:
        if shape[0] != batch:
            beside = ("beside stacked input(s) %s" % ", ".join(map(repr, stacked)) if stacked else
                      "while input %r takes %d per call" % (rows[0][0], batch))
            raise SampleError("array %r has shape %s, samples along the first axis of model input %r %s, "
                              "%s; give it stacked: (N, %s)" % (name, _shape(shapes[name]), name, list(shape),
                                                                beside, ", ".join(map(str, shape))))
    return forms, batch


def take(array, kind, start, count=1):
    """Samples start..start+count of one input: the input itself for one stacked sample, else rows."""
    if kind == STACKED:
        if count != 1:
            raise ValueError("a stacked input gives one sample per call")
        return array[start, ...]  # an array even for a scalar input (array[start] is a numpy scalar)
    return array[start:start + count]


def sample(array, kind, i):
    """Sample i of one input, shaped as the model takes it (batch 1 for rows)."""
    return take(array, kind, i, 1)


def count(arrays):
    return len(next(iter(arrays.values())))


def calls(arrays, forms, batch, pad=True):
    """(start, count, feed) for each model call over every sample of `arrays` ({input: array}), in order.
    A short tail is padded by repeating its last sample (pad) or left out (not pad)."""
    n = count(arrays)
    for start in range(0, n, batch):
        size = min(batch, n - start)
        if size < batch and not pad:
            return
        feed = {}
        for name, array in arrays.items():
            part = take(array, forms[name], start, size)
            if size < batch:
                part = np.concatenate([part, np.repeat(part[-1:], batch - size, axis=0)])
            feed[name] = part
        yield start, size, feed


def run(infer, arrays, forms, batch):
    """Every sample through `infer` ({name: array} -> outputs); one merged array per output. An output
    whose first dim is the batch is concatenated along it (padding trimmed); any other of one shape (a
    state, a scalar) is stacked, one per call; one whose length varies between calls (detections after
    NMS) becomes its rows, call after call, as the host's references hold it (edgeopt/parity.py)."""
    results = [(size, [np.asarray(o) for o in infer(feed)]) for _, size, feed in calls(arrays, forms, batch)]
    merged = []
    for i in range(len(results[0][1])):
        outs = [(size, outputs[i]) for size, outputs in results]
        if all(o.ndim >= 1 and o.shape[0] == batch for _, o in outs):
            merged.append(np.concatenate([o[:size] for size, o in outs]))
        elif len(set(o.shape for _, o in outs)) == 1:
            merged.append(np.stack([o for _, o in outs]))
        else:
            merged.append(rows_in_sequence([o for _, o in outs]))
    return merged


def rows_in_sequence(arrays):
    """[rows, fields] of every array in turn, a row per index along the first axis that is not 1 in some
    array (the rows of a set-like output); arrays of different ranks are not rows of one thing: refused."""
    if len(set(a.ndim for a in arrays)) != 1:
        raise SampleError("an output changes rank between calls: %s" % sorted(set(a.shape for a in arrays)))
    axis = next((k for k in range(arrays[0].ndim) if any(a.shape[k] != 1 for a in arrays)), None)
    if axis is None:
        return np.concatenate([a.reshape(1, -1) for a in arrays])
    fields = int(np.prod([n for k, n in enumerate(arrays[0].shape) if k != axis]))   # explicit: a call may have 0 rows
    return np.concatenate([np.moveaxis(a, axis, 0).reshape(a.shape[axis], fields) for a in arrays])
