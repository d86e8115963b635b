"""The verified bundle: run the produced artifact beside its source model on the same samples.

Each output gets the comparison that fits it, recorded in the report (`outputs: [{output, name,
comparison, rule, passed, ...}]`):
- `elementwise` (a float output of one fixed shape): for a float artifact, max abs error against the
  profile's limit scaled by the output's magnitude where it exceeds 1; a quantized artifact's float
  outputs are judged together, since they move by design: by top-1 agreement of output 0 for a
  classifier (and the accuracy delta when labels exist) where top-1 can judge, else each by its SQNR
  (signal-to-quantization-noise ratio, dB: 10 log10 of sum(source^2) / sum((artifact - source)^2)),
  which must reach QUANTIZED_MIN_SQNR_DB, or, for a model that amplifies noise so much that rounding
  its float inputs alone to 8 bits costs more than that, come within INPUT_ROUNDING_MARGIN_DB of what
  that rounding costs (never below 0 dB). Top-1 cannot judge when on most samples the source's top-1
  leads by less than twice the RMS error of an artifact at that SQNR (near-tied logits: random weights,
  an untrained head).
- `equal_elements`, else `multiset` (an integer or bool output: class ids, NMS selected indices): the
  share of equal elements where the shape is fixed; where that falls short or the length varies, per
  model call the rows along the output's first non-singleton axis as a multiset, the share of rows
  found in both (of the larger count). Either must reach MIN_SET_AGREEMENT (QUANTIZED_MIN_SET_AGREEMENT
  for a quantized artifact). Order does not count for the multiset: at equal scores two runtimes may
  list the same detections in another order.
- `matched_rows` (a float output whose length varies: between calls, or between source and artifact,
  as detections after NMS do): per call, rows paired one to one (least L-inf distance), a pair matched
  when every element is within the elementwise limit; the share of matched rows (of the larger count)
  must reach the same agreement. A fixed-shape float output whose rows are narrow records (2 to
  RECORD_MAX_FIELDS fields, at least 2 rows: boxes, detections) and that fails elementwise is judged
  this way too, with the elementwise error kept: at ties NMS may keep another box of equal score.
Outputs whose shapes differ elsewhere than along that row axis are not the same model: a one-line mismatch.
"""
from __future__ import annotations

import collections
import contextlib
import contextvars
import functools
import math

import numpy as np

from device_agent.measure.accuracy import top1
from device_agent.samples import rows_in_sequence

from .data import LABELS, feeds, head, plan, sample_count
from .errors import BadInput, EdgeoptError, ParityMismatch, first_line

MAX_SAMPLES = 500
# A quantized artifact's variable-length float rows (detections): error allowed against the output's range.
QUANTIZED_MAX_RELATIVE_ERROR = 0.1
# A quantized artifact's fixed-shape float outputs, where top-1 cannot judge: SQNR per output, in dB. 10 dB
# is quantization noise at most a tenth of the output's power (relative RMS error <= 0.32). A model whose
# outputs move more than that when only its float inputs are rounded to 8 bits (the first quantizer of every
# full-INT8 recipe; random-weight MobileNetV2: 11 dB) is judged against that floor instead: at most
# INPUT_ROUNDING_MARGIN_DB below it (noise power at most 4x), and never below 0 dB (noise as strong as the
# output). docs/architecture.md, "Parity of quantized outputs", has the zoo's figures.
QUANTIZED_MIN_SQNR_DB = 10.0
INPUT_ROUNDING_MARGIN_DB = 6.0
SQNR_IDENTICAL_DB = 200.0   # recorded when artifact and source agree exactly (no noise to divide by)
# One SQNR per output is dominated by its largest channels: a YOLOv8 head ([N, 4 + classes, anchors]) quantized
# with one scale for boxes (0-500) and class scores (0-1) rounded every score to 0 at 31 dB overall. So each
# channel (axis 1 of an output of rank 3 or more) must keep its own signal: one whose quantization noise is at
# least half its own power has lost it. The zoo's legitimate INT8 channels read 10 dB and more (DeepLabV3's 21
# classes: 10.5-17 dB).
LOST_CHANNEL_DB = 3.0
# ... or its resolution: a YOLOv5 head ([N, anchors, 4 + 1 + classes]) shipped with one int8 output scale (0.39)
# for boxes (0-64) and scores (0-1), so each score took 3 values; 12 dB per score, 38 dB overall, a pass. A channel
# whose artifact takes at most this many values where its source takes many times more has lost it.
COLLAPSED_LEVELS = 4
COLLAPSED_RATIO = 8
COLLAPSED_SPREAD = 0.1
COLLAPSED_MAX_DB = 20.0   # ... and only below this own SQNR: a confident sigmoid mask takes 2 values at 48 dB
INPUT_LEVELS = 256          # 8-bit rounding of float inputs for the floor, min/max of the samples
# Set-like outputs: share of rows that must be found in both. Below 1 for float artifacts because a box
# whose score ties the threshold, or two boxes of equal score, may go either way in another runtime;
# lower for quantized ones, whose scores move by design and change which boxes survive at the margin.
MIN_SET_AGREEMENT = 0.95
QUANTIZED_MIN_SET_AGREEMENT = 0.8
# A quantized classifier is judged by top-1 agreement when at least this share of samples has a top-1
# the quantization error alone cannot flip (see _robust_share); else by relative error, as other outputs.
TOP1_MIN_ROBUST_SHARE = 0.5
RECORD_MAX_FIELDS = 16   # a detection record: box (4) + score + class + a few keypoints at most
# A raw detector head's record along the last axis: box (4) + up to 80 classes (COCO) and a few keypoints or masks
RECORD_MAX_CHANNELS = 128
HUNGARIAN_MAX_ROWS = 1000  # beyond this, rows are paired in sorted order (an O(n^2) cost matrix is too big)

RULES = {
    "elementwise": "max abs error <= profile limit x max(1, output magnitude)",
    "quantized": "judged with the model's other float outputs by the quantized metric",
    "sqnr": f"SQNR (dB) >= {QUANTIZED_MIN_SQNR_DB:g}, or >= the SQNR of the source with its float inputs rounded to "
            f"8 bits less {INPUT_ROUNDING_MARGIN_DB:g} (never below 0); and every channel (axis 1, rank >= 3) "
            f">= {LOST_CHANNEL_DB:g} dB of its own",
    "equal_elements": "share of equal elements (integer output of fixed shape)",
    "multiset": "rows (first non-singleton axis) compared as a multiset per call; share found in both",
    "matched_rows": "rows paired one to one per call (least L-inf distance), matched when every element is "
                    "within the elementwise limit; share matched",
}


def _is_classifier(output: np.ndarray) -> bool:
    return output is not None and output.dtype.kind == "f" and output.ndim == 2 and output.shape[1] > 1


def compare(source_runner, artifact_runner, samples: dict, inputs, quantized: bool, precision: str,
            tolerance, samples_source: str, output_names=None, source_name: str = "the source model"):
    """Returns (parity report, source outputs on the samples: one array per output, a variable-length
    output's rows of every call in sequence). source_name: the source as a refusal of it names it."""
    feed = head(samples, MAX_SAMPLES)
    batch = plan(feed, inputs)[1]
    with source_on(f"the {samples_source}"):
        ref_calls, sizes = _per_call(source_runner, feed, inputs)
        _refuse_an_unjudgeable_source(source_runner, feed, inputs, ref_calls, samples_source, source_name)
    got_calls, _ = _per_call(artifact_runner, feed, inputs)
    names = list(output_names or [])
    outputs = [_Output(i, names[i] if i < len(names) else None, [c[i] for c in ref_calls],
                       [c[i] for c in got_calls], sizes, batch) for i in range(len(ref_calls[0]))]
    for o in outputs:
        o.check_shapes()
    report = {"samples": sample_count(feed), "samples_source": samples_source}
    limit = tolerance.max_abs_error(precision)
    min_agreement = QUANTIZED_MIN_SET_AGREEMENT if quantized else MIN_SET_AGREEMENT
    # an integer output of one value a sample is a class index: judged as top-1 is (0.97 where quantized), not as a
    # set of NMS indices (0.8), so an argmax-only classifier could not flip a fifth of its answers (a walkthrough)
    class_agreement = tolerance.quantized_min_top1_agreement if quantized else min_agreement
    entries = [o.judge(quantized, limit, class_agreement if o.class_index() else min_agreement) for o in outputs]
    errors = [e["max_abs_error"] for e in entries if "max_abs_error" in e]
    report["max_abs_error"] = max(errors, default=0.0)
    if not quantized:
        report.update(metric="max_abs_error", tolerance=limit)
    else:
        floors = functools.partial(_input_rounding_sqnr, source_runner, feed, inputs, outputs, batch)
        _quantized_metric(report, outputs, entries, tolerance, min_agreement, floors)
    report.update(outputs=entries, passed=all(e["passed"] for e in entries))
    # against fp32's limit whatever the precision: bf16's 0.2 called a normalised embedding (max 0.18) blank
    blank = [why for o in outputs if (why := o.blank(None if quantized else tolerance.max_abs_error("fp32")))]
    if blank:
        report["source_blank"] = blank
    ref = [o.ref_merged for o in outputs]
    if LABELS in samples and _is_classifier(ref[0]) and len(ref[0]) == report["samples"]:
        labels = feed[LABELS]
        report["source_top1"] = top1(ref[0], labels)
        report["artifact_top1"] = top1(outputs[0].got_merged, labels)
        report["accuracy_delta"] = report["artifact_top1"] - report["source_top1"]
    return report, ref


def _refuse_an_unjudgeable_source(source_runner, feed: dict, inputs, ref_calls: list, samples_source: str,
                                  source_name: str) -> None:
    """A source no artifact can be judged against: NaN in its own outputs, or other outputs for the same input on a
    second run (a dropout left in training mode, a random op). Both read as "the packaged artifact disagrees with
    its source model", blaming the conversion."""
    for call in ref_calls:
        for index, out in enumerate(call):
            if np.issubdtype(out.dtype, np.floating) and np.isnan(out).any():
                advice = ("give data from its domain (--eval-data or --calib)" if samples_source.startswith("random")
                          else "check the model's weights and the data")
                raise BadInput(f"{source_name} itself outputs NaN (output {index}) on the {samples_source}: "
                               f"nothing can be compared with it; {advice}")
    again = [np.asarray(o) for o in source_runner(next(feeds(feed, inputs, pad=True))[2])]
    differs = max((float(np.max(np.abs(a.astype(np.float64) - r.astype(np.float64))))
                   for a, r in zip(again, ref_calls[0]) if a.shape == r.shape and a.size), default=0.0)
    scale = max((float(np.max(np.abs(r))) for r in ref_calls[0] if r.size and np.issubdtype(r.dtype, np.number)),
                default=0.0) or 1.0
    if differs > 1e-5 * scale:
        raise BadInput(f"{source_name} gives other outputs for the same input on a second run (max abs difference "
                       f"{differs:.3g}): a random op, or a layer left in training mode (dropout)? A parity check "
                       "cannot judge a conversion against it")


def _quantized_metric(report: dict, outputs, entries, tolerance, min_agreement, floors) -> None:
    """The verdict of a quantized artifact's fixed-shape float outputs, written into the report and into
    their entries: top-1 agreement of a classifier's output 0 where top-1 can judge, else each output's SQNR.
    `floors` () -> {output index: SQNR dB of the source itself with its float inputs rounded to 8 bits}."""
    judged = [(o, e) for o, e in zip(outputs, entries) if e["comparison"] == "quantized"]
    if not judged:   # only set-like outputs: the report names their agreement
        report.update(metric="agreement", agreement=min(e["agreement"] for e in entries),
                      tolerance=min_agreement)
        return
    if judged[0][0].index == 0 and _is_classifier(outputs[0].ref_merged):
        ref, got = outputs[0].ref_merged, outputs[0].got_merged
        agreement = float(np.mean(np.argmax(ref, 1) == np.argmax(got, 1)))
        robust = _robust_share(ref)
        report.update(top1_agreement=agreement, top1_robust_share=robust)
        if robust >= TOP1_MIN_ROBUST_SHARE:
            limit = tolerance.quantized_min_top1_agreement
            report.update(metric="top1_agreement", tolerance=limit)
            for _, e in judged[1:]:
                e.update(rule="not judged: a quantized classifier is judged by output 0's top-1")
            judged[0][1].update(comparison="top1_agreement", passed=agreement >= limit)
            return
        report["top1_why_not"] = (f"on {1 - robust:.0%} of samples the source's top-1 leads by less than twice the "
                                  f"error a {QUANTIZED_MIN_SQNR_DB:g} dB artifact has (near-tied logits, as random "
                                  "weights and low-confidence models give): top-1 agreement cannot judge them, each "
                                  "output's SQNR does")
    _judge_sqnr(judged, floors)
    worst = min((e for _, e in judged), key=lambda e: (e["passed"], e["sqnr_db"] - e["min_sqnr_db"]))
    scale = max(e["magnitude_abs"] for _, e in judged) or 1.0
    report.update(metric="sqnr_db", sqnr_db=worst["sqnr_db"], tolerance=worst["min_sqnr_db"],
                  sqnr_output=worst["output"], relative_rms_error=worst["relative_rms_error"],
                  relative_error=max(e["max_abs_error"] for _, e in judged) / scale)


def _judge_sqnr(judged, floors) -> None:
    """Each output's SQNR against QUANTIZED_MIN_SQNR_DB, or against its input-rounding floor less the margin
    where the model's own noise gain puts that floor out of reach (measured only then: one more source pass)."""
    found = None
    for o, e in judged:
        value = sqnr_db(o.ref_merged, o.got_merged)
        allowed = QUANTIZED_MIN_SQNR_DB
        e.update(comparison="sqnr", rule=RULES["sqnr"], sqnr_db=value, relative_rms_error=10 ** (-value / 20))
        if value < allowed:
            found = found if found is not None else floors()
            floor = found.get(o.index, SQNR_IDENTICAL_DB)
            allowed = max(0.0, min(allowed, floor - INPUT_ROUNDING_MARGIN_DB))
            e["input_rounding_sqnr_db"] = floor
        lost, worst, axis = lost_channels(o.ref_merged, o.got_merged, min(LOST_CHANNEL_DB, allowed))
        if lost:
            e.update(lost_channels=lost, worst_channel_sqnr_db=worst, lost_axis=axis)
        e.update(min_sqnr_db=allowed, passed=value >= allowed and not lost)


def lost_channels(ref: np.ndarray, got: np.ndarray, bar: float = LOST_CHANNEL_DB) -> tuple:
    """([channels whose own SQNR is below `bar`], the worst one's SQNR, their axis) of an output of rank 3 or
    more: along axis 1 ([N, 4 + classes, anchors]), and along the last axis where it holds a detection record
    ([N, anchors, 4 + classes], YOLOv5's layout: its class scores were lost at 38 dB overall, the check looking at
    the anchors). A channel whose source is all zeros has no signal to lose. The bar is lower for a model whose
    outputs its own input rounding already moves that much (the output's allowed SQNR, never below 0 dB)."""
    if ref.ndim < 3 or ref.shape != got.shape:
        return [], None, None
    last = ref.ndim - 1
    record = ref.shape[last] <= RECORD_MAX_CHANNELS and ref.shape[last] < ref.shape[1]   # fewer fields than anchors
    for axis in (1, last) if record else (1,):
        ref_rows = np.moveaxis(ref.astype(np.float64), axis, 0).reshape(ref.shape[axis], -1)
        got_rows = np.moveaxis(got.astype(np.float64), axis, 0).reshape(ref.shape[axis], -1)
        signal, noise = np.sum(ref_rows ** 2, axis=1), np.sum((got_rows - ref_rows) ** 2, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            per = np.where(noise > 0, 10 * np.log10(signal / noise), SQNR_IDENTICAL_DB)
        low = (signal > 0) & (per < COLLAPSED_MAX_DB)   # a saturated mask at 48 dB has few values and lost nothing
        lost = [int(i) for i in np.flatnonzero((signal > 0) & (per < bar) | low & _collapsed(ref_rows, got_rows, low))]
        if lost:
            return lost, float(per[lost].min()), axis
    return [], None, None


def _collapsed(ref_rows: np.ndarray, got_rows: np.ndarray, asked: np.ndarray) -> np.ndarray:
    """Per channel (row), of those `asked`: whether the artifact's values take at most COLLAPSED_LEVELS distinct
    values where the source's take COLLAPSED_RATIO times as many over a spread that means something (at least
    COLLAPSED_SPREAD of its largest magnitude): a coarse output scale left it a few steps. A channel that is one
    value give or take float noise (a bias behind an input scaled by 1e-8) has nothing to lose but that value.
    np.unique runs on the few rows that take few values: on every row it made a [50, 84, 8400] output's check 9x
    slower (a review)."""
    out, rows = np.zeros(len(got_rows), dtype=bool), np.flatnonzero(asked)
    for i in rows[_few_values(got_rows[rows], COLLAPSED_LEVELS)]:
        got = len(np.unique(got_rows[i]))
        spread = np.ptp(ref_rows[i]) >= COLLAPSED_SPREAD * np.max(np.abs(ref_rows[i]))
        out[i] = spread and len(np.unique(ref_rows[i])) >= COLLAPSED_RATIO * got
    return out


def _few_values(rows: np.ndarray, most: int) -> np.ndarray:
    """Per row: whether it takes at most `most` distinct values, in most + 1 passes of a row minimum."""
    work, count = rows.astype(np.float64), np.zeros(len(rows), dtype=int)   # a copy
    for _ in range(most + 1):
        low = work.min(axis=1)
        present = np.isfinite(low)
        count += present
        work[work == low[:, None]] = np.inf
    return count <= most


def sqnr_db(ref: np.ndarray, got: np.ndarray) -> float:
    """10 log10(signal power / noise power) of `got` against `ref`, in dB (SQNR_IDENTICAL_DB when equal)."""
    ref = ref.astype(np.float64)
    noise = float(np.sum(np.square(got.astype(np.float64) - ref)))
    signal = float(np.sum(np.square(ref)))
    if noise == 0.0:
        return SQNR_IDENTICAL_DB
    return float(10 * np.log10(signal / noise)) if signal > 0.0 else -SQNR_IDENTICAL_DB


def round_inputs(samples: dict, inputs) -> dict:
    """The samples with every float input rounded to INPUT_LEVELS levels between its min and max (0 included),
    as an asymmetric 8-bit input quantizer calibrated on them would; other inputs as they are."""
    names = {s.name for s in inputs}
    out = {}
    for name, a in samples.items():
        if name in names and a.dtype.kind == "f" and a.size:
            low, high = min(float(a.min()), 0.0), max(float(a.max()), 0.0)
            step = (high - low) / (INPUT_LEVELS - 1) or 1.0
            a = (np.round((a.astype(np.float64) - low) / step) * step + low).astype(a.dtype)
        out[name] = a
    return out


def _input_rounding_sqnr(source_runner, feed: dict, inputs, outputs, batch) -> dict:
    """{output index: SQNR dB of the source on inputs rounded to 8 bits against the source on the samples}:
    the noise any full-INT8 artifact starts from, however good its recipe."""
    calls, sizes = _per_call(source_runner, round_inputs(feed, inputs), inputs)
    found = {}
    for o in outputs:
        rounded = _merge([c[o.index] for c in calls], sizes, batch)
        if o.fixed and rounded is not None and rounded.shape == o.ref_merged.shape:
            found[o.index] = sqnr_db(o.ref_merged, rounded)
    return found


def _robust_share(ref: np.ndarray) -> float:
    """Share of samples whose source top-1 leads the runner-up by more than twice the RMS logit error of an
    artifact just at the QUANTIZED_MIN_SQNR_DB bar: the ones whose argmax an acceptable quantization cannot
    flip. Where it is small, agreement measures noise against near-ties, not the artifact. A property of
    the source alone: were it the artifact's own error, a more accurate INT8 would have more samples judged
    by top-1, and could fail where a worse one passed by SQNR."""
    ref = ref.astype(np.float64)
    top2 = np.sort(ref, axis=1)[:, -2:]
    error_at_bar = 10 ** (-QUANTIZED_MIN_SQNR_DB / 20) * np.sqrt(np.mean(np.square(ref), axis=1))
    return float(np.mean(top2[:, 1] - top2[:, 0] > 2 * error_at_bar))


def _runtime_errors(python: bool = True) -> tuple:
    """What a runtime raises on data it cannot take: ONNX Runtime's own exception types (each a plain Exception),
    and (python) PyTorch's and numpy's (RuntimeError, ValueError, IndexError)."""
    found = [RuntimeError, ValueError, IndexError] if python else []
    try:
        from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors
        found += [getattr(ort_errors, n) for n in ("Fail", "InvalidArgument", "RuntimeException", "NotImplemented")
                  if hasattr(ort_errors, n)]
    except ImportError:
        pass
    return tuple(found)


# {"the calibration data": its file, ...} while a package runs (data_files): the errors below name the file given
_DATA_FILES = contextvars.ContextVar("data_files", default={})


@contextlib.contextmanager
def data_files(files: dict):
    """Name these data files in source_on's errors (by what they are: "the eval data") within the block."""
    token = _DATA_FILES.set({what: str(path) for what, path in files.items() if path})
    try:
        yield
    finally:
        _DATA_FILES.reset(token)


@contextlib.contextmanager
def source_on(what: str, python_errors: bool = True):
    """The source model run on the user's data (parity, calibration, the shipped references, mixed precision's
    scores): the runtime's error on that data (token ids past the vocabulary: ONNX Runtime's InvalidArgument) is
    bad input in one line naming the data, not a traceback with exit 1. edgeopt's own errors pass unchanged.
    python_errors=False: ONNX Runtime's alone, where a ValueError may be the tool's (quantize_static's graph)."""
    try:
        yield
    except EdgeoptError:
        raise
    except _runtime_errors(python_errors) as e:
        raise BadInput(f"{named(what)}: the source model itself fails on them (give samples it takes): "
                       f"{first_line(e)}") from None


def named(what: str) -> str:
    """"the calibration data (calib.npz)": data named with its file, where data_files knows it."""
    file = _DATA_FILES.get().get(what)
    return f"{what} ({file})" if file else what


def _per_call(runner, samples: dict, inputs):
    """([outputs of each model call], [samples in each call]), every output an array."""
    calls, sizes = [], []
    for _, size, feed in feeds(samples, inputs, pad=True):
        calls.append([np.asarray(o) for o in runner(feed)])
        sizes.append(size)
    return calls, sizes


def _merge(arrays: list, sizes: list, batch: int):
    """One array for an output over all calls, as device_agent/samples.py merges them (concatenated
    along the batch, padding trimmed; anything else stacked), or None when the calls' shapes differ."""
    if all(a.ndim >= 1 and a.shape[0] == batch for a in arrays):
        return np.concatenate([a[:size] for a, size in zip(arrays, sizes)])
    if len({a.shape for a in arrays}) == 1:
        return np.stack(arrays)
    return None


def _row_axis(shapes) -> int | None:
    """The first axis that is not 1 in some call (the rows of a set-like output); None if all are 1."""
    ndim = len(shapes[0])
    return next((a for a in range(ndim) if any(s[a] != 1 for s in shapes)), None)


def _rows(array: np.ndarray, axis) -> np.ndarray:
    """[rows, fields]: one row per index along `axis` (the whole array as one row when axis is None)."""
    if axis is None:
        return array.reshape(1, -1)
    fields = int(np.prod([n for k, n in enumerate(array.shape) if k != axis]))   # explicit: there may be 0 rows
    return np.moveaxis(array, axis, 0).reshape(array.shape[axis], fields)


class _Output:
    """One output of the model, in every call of the source and of the artifact."""

    def __init__(self, index, name, ref, got, sizes, batch):
        self.index, self.name, self.ref, self.got, self.batch = index, name, ref, got, batch
        self.ref_merged, self.got_merged = _merge(ref, sizes, batch), _merge(got, sizes, batch)
        shapes = [a.shape for a in ref + got]
        self.fixed = len(set(shapes)) == 1
        self.axis = _row_axis(shapes) if len({len(s) for s in shapes}) == 1 else None
        self.integer = ref[0].dtype.kind in "biu"
        if self.ref_merged is None:   # references of a variable-length output: its rows, call after call,
            self.ref_merged = rows_in_sequence(ref)   # merged by the function the device agent merges with

    def label(self) -> str:
        return f"{self.index} ({self.name})" if self.name else str(self.index)

    def check_shapes(self) -> None:
        """Shapes may differ along the row axis only (a variable count of detections); anything else is
        another model."""
        for r, g in zip(self.ref, self.got):
            if r.ndim != g.ndim or any(x != y for k, (x, y) in enumerate(zip(r.shape, g.shape)) if k != self.axis):
                merged = self.ref_merged is not None and self.got_merged is not None and self.fixed_per_side()
                want, have = (self.ref_merged.shape, self.got_merged.shape) if merged else (r.shape, g.shape)
                raise ParityMismatch(f"packaged artifact's output {self.label()} has shape {list(have)}, its "
                                     f"source model's {list(want)}: not the same model")

    def fixed_per_side(self) -> bool:
        return len({a.shape for a in self.ref}) == 1 and len({a.shape for a in self.got}) == 1

    def blank(self, limit: float | None) -> str | None:
        """Why this float output of the source judges nothing, or None: the same value everywhere on every sample
        (a head initialised to zero: a ViT's read 0 and passed), or, against an absolute limit, smaller than it
        (random weights gave 2e-09: any artifact passed)."""
        ref = self.ref_merged
        if self.integer or ref is None or not ref.size or not np.issubdtype(ref.dtype, np.floating):
            return None
        values = ref.astype(np.float64)
        if float(np.ptp(values)) == 0.0:
            return f"output {self.label()} is {float(values.flat[0]):g} everywhere in every sample"
        magnitude = self.magnitude()
        if limit is not None and magnitude < limit:
            return (f"output {self.label()} is at most {magnitude:.3g} in size, below parity's tolerance {limit:g}, "
                    "so any artifact passes")
        return None

    def class_index(self) -> bool:
        """An integer output of fixed shape holding one value per sample ([batch] or [batch, 1]): an argmax."""
        merged = self.ref_merged
        return self.integer and self.fixed and merged is not None and merged.ndim >= 1 and \
            all(d == 1 for d in merged.shape[1:])

    def magnitude(self) -> float:
        return float(max((np.max(np.abs(a.astype(np.float64)), initial=0.0) for a in self.ref), default=0.0))

    def judge(self, quantized: bool, limit: float, min_agreement: float) -> dict:
        entry = {"output": self.index, **({"name": self.name} if self.name else {})}
        if self.integer:
            return self._integer(entry, min_agreement)
        magnitude = self.magnitude()
        allowed = (QUANTIZED_MAX_RELATIVE_ERROR * (magnitude or 1.0)) if quantized else limit * max(1.0, magnitude)
        if not self.fixed:
            return self._matched(entry, allowed, min_agreement, "its length varies")
        error = float(np.max(np.abs(self.ref_merged.astype(np.float64) - self.got_merged.astype(np.float64)),
                             initial=0.0))
        if quantized:
            return dict(entry, comparison="quantized", rule=RULES["quantized"], max_abs_error=error,
                        magnitude_abs=magnitude, passed=True)
        scale = max(1.0, magnitude)
        entry.update(comparison="elementwise", rule=RULES["elementwise"], max_abs_error=error, magnitude=scale,
                     allowed=limit * scale, passed=error <= limit * scale)
        if not entry["passed"] and self._records():
            return self._matched(dict(entry), allowed, min_agreement,
                                 f"elementwise max abs error {error:.4g} exceeds {limit * scale:.4g}; its rows "
                                 "are records (detections) that may swap or change at equal scores",
                                 elementwise_max_abs_error=error)
        return entry

    def _records(self) -> bool:
        """Rows that look like detection records: at least 2 of them, each of 2..RECORD_MAX_FIELDS fields,
        and not the samples of a batch (those are compared in place)."""
        if self.axis is None or self.ref[0].ndim < 2 or (self.axis == 0 and self.batch > 1):
            return False
        rows = _rows(self.ref[0], self.axis)
        return rows.shape[0] >= 2 and 2 <= rows.shape[1] <= RECORD_MAX_FIELDS

    def _integer(self, entry: dict, min_agreement: float) -> dict:
        """Share of equal elements where the shape is fixed (a class-id map); where that falls short or
        the length varies, rows as a multiset (the same indices in another order)."""
        if self.fixed:
            equal = float(np.mean(self.ref_merged == self.got_merged)) if self.ref_merged.size else 1.0
            if equal >= min_agreement:
                return dict(entry, comparison="equal_elements", rule=RULES["equal_elements"], agreement=equal,
                            min_agreement=min_agreement, passed=True)
            entry = dict(entry, equal_elements=equal)
        return self._multiset(entry, min_agreement)

    def _multiset(self, entry: dict, min_agreement: float) -> dict:
        found = total = rows_ref = rows_got = 0
        for r, g in zip(self.ref, self.got):
            a = collections.Counter(map(tuple, _rows(r, self.axis).tolist()))
            b = collections.Counter(map(tuple, _rows(g, self.axis).tolist()))
            found += sum((a & b).values())
            total += max(sum(a.values()), sum(b.values()))
            rows_ref, rows_got = rows_ref + sum(a.values()), rows_got + sum(b.values())
        agreement = found / total if total else 1.0
        return dict(entry, comparison="multiset", rule=RULES["multiset"], rows_source=rows_ref,
                    rows_artifact=rows_got, agreement=agreement, min_agreement=min_agreement,
                    passed=agreement >= min_agreement)

    def _matched(self, entry: dict, allowed: float, min_agreement: float, why: str, **extra) -> dict:
        matched = total = rows_ref = rows_got = 0
        worst = 0.0
        for r, g in zip(self.ref, self.got):
            a, b = _rows(r, self.axis).astype(np.float64), _rows(g, self.axis).astype(np.float64)
            pairs = _pair_rows(a, b, allowed)
            good = [d for d in pairs if d <= allowed]
            matched, worst = matched + len(good), max([worst] + good)
            total += max(len(a), len(b))
            rows_ref, rows_got = rows_ref + len(a), rows_got + len(b)
        agreement = matched / total if total else 1.0
        entry.update(comparison="matched_rows", rule=RULES["matched_rows"], why=why, rows_source=rows_ref,
                     rows_artifact=rows_got, matched=matched, agreement=agreement, min_agreement=min_agreement,
                     max_abs_error=worst, allowed=allowed, passed=agreement >= min_agreement, **extra)
        return entry


def _pair_rows(a: np.ndarray, b: np.ndarray, allowed: float) -> list:
    """L-inf distance of each pair when rows of `a` and `b` are paired one to one: the assignment with the
    most pairs within `allowed`, then the least distance (scipy's Hungarian solver), or for many rows,
    pairing in lexicographic order."""
    if not len(a) or not len(b) or a.shape[1] != b.shape[1]:
        return []
    if max(len(a), len(b)) > HUNGARIAN_MAX_ROWS:
        a, b = a[np.lexsort(a.T[::-1])], b[np.lexsort(b.T[::-1])]
        n = min(len(a), len(b))
        return np.max(np.abs(a[:n] - b[:n]), axis=1).tolist()
    from scipy.optimize import linear_sum_assignment

    distance = np.max(np.abs(a[:, None, :] - b[None, :, :]), axis=2)
    # a pair within `allowed` costs less than 1, one beyond it more than all those together
    cost = np.where(distance <= allowed, distance / (distance.max() or 1.0), 1.0 + len(a) + len(b))
    rows, cols = linear_sum_assignment(cost)
    return distance[rows, cols].tolist()


def only_top1_failed(report: dict) -> bool:
    """Whether the report failed on a classifier's top-1 agreement alone: what an accuracy budget on the same
    labelled eval data judges too, where the user said how much may change."""
    failed = [o for o in report.get("outputs", []) if not o["passed"]]
    return bool(failed) and all(o["comparison"] == "top1_agreement" for o in failed)


def headline(report: dict) -> str:
    """The metric that judged the artifact, its value and tolerance: "top1_agreement 0.9667 (tolerance 0.97)"."""
    metric = report["metric"]
    if metric == "sqnr_db" and report.get(metric) == SQNR_IDENTICAL_DB:   # a cap, not a measurement
        return f"sqnr_db: outputs identical (tolerance {report['tolerance']:g})"
    return f"{metric} {report.get(metric, report['max_abs_error']):.4g} (tolerance {report['tolerance']:g})"


def blank_source_note(report: dict, samples_source: str | None = None) -> str | None:
    """A warning where the source's outputs judge nothing (_Output.blank), or None."""
    if not report.get("source_blank"):
        return None
    on = f" on the {samples_source}" if samples_source else ""
    return (f"the source model's {'; '.join(report['source_blank'])}{on}: parity compares nothing there; untrained "
            "or unloaded weights (random weights, a head initialised to zero), or an output to be read otherwise?")


def describe_failure(report: dict) -> str:
    """One line: the first output that failed its comparison, or the quantized model-level metric."""
    worst = [o for o in report.get("outputs", []) if not o["passed"] and o["comparison"] in
             ("elementwise", "multiset", "matched_rows")]
    if worst:
        o = worst[0]
        label = f"{o['output']} ({o['name']})" if o.get("name") else str(o["output"])
        if o["comparison"] == "elementwise":
            return (f"packaged artifact disagrees with its source model: max_abs_error {o['max_abs_error']:.4g} "
                    f"on output {label} over {report['samples']} samples, profile allows "
                    f"{report['tolerance']:g} x its magnitude {o['magnitude']:.4g} = {o['allowed']:.4g} "
                    "(--allow-mismatch to package anyway)")
        how = ("its integer rows compared as a multiset" if o["comparison"] == "multiset" else
               f"rows matched within {o['allowed']:.4g}" + ("" if "elementwise_max_abs_error" not in o else
                                                            f", elementwise max_abs_error {o['elementwise_max_abs_error']:.4g}"))
        return (f"packaged artifact disagrees with its source model: agreement {o['agreement']:.4g} on output "
                f"{label} over {report['samples']} samples ({how}; {o['rows_source']} rows in the source, "
                f"{o['rows_artifact']} in the artifact), requires >= {o['min_agreement']:g} "
                "(--allow-mismatch to package anyway)")
    metric = report["metric"]
    if metric == "sqnr_db":
        return _describe_sqnr(report)
    value = report[metric] if metric in report else report["max_abs_error"]
    op = "<=" if metric in ("relative_error", "max_abs_error") else ">="
    return (f"packaged artifact disagrees with its source model: {metric} {value:.4g} on "
            f"{report['samples']} samples, profile requires {op} {report['tolerance']:g}"
            f"{_one_sample_said(report, metric)} (--allow-mismatch to package anyway)")


def _one_sample_said(report: dict, metric: str) -> str:
    """Where one changed prediction alone fails top-1 agreement (1 of 16 is 0.0625 under a 0.97 limit): say so
    and how many samples judge finer, the next step a user had no word of."""
    n, tolerance = report.get("samples") or 0, report.get("tolerance")
    if metric != "top1_agreement" or not n or not isinstance(tolerance, (int, float)) or tolerance >= 1:
        return ""
    if 1 / n <= 1 - tolerance:
        return ""
    enough = math.ceil(1 / (1 - tolerance) - 1e-9)   # the fewest samples where one of them is within the limit
    return (f"; on {n} samples one changed prediction is {1 / n:.3g} of it, so any fails: {enough} or more eval "
            "samples (--eval-data) judge finer")


def _describe_sqnr(report: dict) -> str:
    o = next(e for e in report["outputs"] if e["output"] == report["sqnr_output"])
    label = f"{o['output']} ({o['name']})" if o.get("name") else str(o["output"])
    if o.get("lost_channels") and o["sqnr_db"] >= o["min_sqnr_db"]:
        lost = o["lost_channels"]
        which = f"channel {lost[0]}" if len(lost) == 1 else f"{len(lost)} channels ({lost[0]}..{lost[-1]})"
        return (f"packaged artifact disagrees with its source model: output {label} lost {which} of axis "
                f"{o.get('lost_axis', 1)} "
                f"(own SQNR down to {o['worst_channel_sqnr_db']:.1f} dB, requires >= "
                f"{min(LOST_CHANNEL_DB, o['min_sqnr_db']):g}, and more than {COLLAPSED_LEVELS} distinct values) at "
                f"{o['sqnr_db']:.1f} dB overall: values of very different scales (a detector's boxes and scores) "
                "share one quantized tensor and its one scale; export them as separate outputs, each then quantized "
                "on its own scale (--allow-mismatch to package anyway)")   # the backend's way to keep it float follows
    floor = o.get("input_rounding_sqnr_db")
    why = (f" (rounding the float inputs alone to 8 bits gives {floor:.1f} dB; a model that sensitive may be "
           f"{INPUT_ROUNDING_MARGIN_DB:g} dB below that)" if floor is not None and o["min_sqnr_db"] < QUANTIZED_MIN_SQNR_DB
           else "")
    return (f"packaged artifact disagrees with its source model: sqnr_db {o['sqnr_db']:.1f} on output {label} over "
            f"{report['samples']} samples (relative RMS error {o['relative_rms_error']:.3g}), requires >= "
            f"{o['min_sqnr_db']:.1f}{why} (--allow-mismatch to package anyway)")
