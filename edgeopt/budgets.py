"""Budgets: limits on measured figures, checked against result documents.

A budget whose figure is absent from the result is `unmeasured` (with the result's reason)
and fails the check: a limit is never passed silently.
"""
from __future__ import annotations

import dataclasses
import math

from .errors import BadInput

FRACTION = (0.0, 1.0)
NON_NEGATIVE = (0.0, math.inf)


@dataclasses.dataclass(frozen=True)
class BudgetKind:
    """One budget and the figure it limits. `limit` bounds the budget a user may set, `figure` the value a
    result may carry there (edgeopt.results validates results against it); both finite and inclusive."""
    key: str
    unit: str
    path: tuple          # where the figure lives in an edgeopt.result/1 document
    higher_is_better: bool = False
    help: str = ""
    limit: tuple = NON_NEGATIVE
    figure: tuple = NON_NEGATIVE


KINDS = {k.key: k for k in [
    BudgetKind("latency_p50_ms", "ms", ("latency", "p50_ms"), help="median latency"),
    BudgetKind("latency_p90_ms", "ms", ("latency", "p90_ms"), help="90th percentile latency (the headline)"),
    BudgetKind("latency_p95_ms", "ms", ("latency", "p95_ms")),
    BudgetKind("latency_p99_ms", "ms", ("latency", "p99_ms")),
    BudgetKind("latency_mean_ms", "ms", ("latency", "mean_ms")),
    BudgetKind("first_inference_ms", "ms", ("latency", "first_inference_ms")),
    BudgetKind("peak_rss_mb", "MiB", ("memory", "peak_rss_mb"), help="peak resident memory during inference"),
    BudgetKind("size_mb", "MiB", ("bundle", "artifact_mb"), help="size of the model artifacts"),
    # A quantized model may score above its source, so a measured drop can be negative; a budget on it cannot.
    BudgetKind("accuracy_drop", "", ("accuracy", "drop"), help="source top-1 minus measured top-1, 0..1",
               limit=FRACTION, figure=(-1.0, 1.0)),
    BudgetKind("min_top1", "", ("accuracy", "top1"), higher_is_better=True, help="measured top-1, 0..1",
               limit=FRACTION, figure=FRACTION),
    BudgetKind("max_abs_error", "", ("accuracy", "max_abs_error"), help="vs the source model's outputs"),
    BudgetKind("power_w", "W", ("power", "mean_w"), help="mean power during inference"),
    BudgetKind("energy_mj", "mJ", ("power", "energy_mj_per_inference"), help="energy per inference"),
    # Measured only where asked (bench --throughput) or where the bundle's performance hint is throughput.
    BudgetKind("throughput_fps", "FPS", ("throughput", "fps"), higher_is_better=True,
               help="inferences completed per second with several in flight"),
]}
# figures a run of one bundle reads the same every time (the artifact, and the eval data through it): a miss of
# one is no device noise, and measuring it again tells nothing
SAME_EVERY_RUN = ("size_mb", "accuracy_drop", "min_top1", "max_abs_error")


def unit_suffix(key: str) -> str:
    """" ms" after a figure of a budget measured in ms; "" for a unitless one (accuracy_drop) or an unknown key."""
    unit = KINDS[key].unit if key in KINDS else ""
    return f" {unit}" if unit else ""


def with_unit(value: float, key: str) -> str:
    """A budget's figure with its unit ("0.03026 ms"), as optimize's lines give it."""
    return f"{value:.4g}{unit_suffix(key)}"


def number_in(value, low: float, high: float):
    """`value` as a float when it is a real number (not a bool, not NaN or infinite) in [low, high], else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        value = float(value)
    except OverflowError:  # an integer too large for a float
        return None
    return value if math.isfinite(value) and low <= value <= high else None


def numbers_in(values, low: float, high: float) -> bool:
    """Whether `values` is a non-empty list of what number_in takes. A list of plain floats and ints (every sample
    list JSON gives) is checked at C speed: one number_in per sample was most of the time reading a result file
    took (2,000 files, 18 s)."""
    if not isinstance(values, list) or not values:
        return False
    if set(map(type, values)) <= {float, int}:   # bool is a type of its own: refused below, as number_in does
        try:
            return all(map(math.isfinite, values)) and low <= min(values) and max(values) <= high
        except OverflowError:   # an integer too large for a float
            return False
    return all(number_in(v, low, high) is not None for v in values)


def describe_range(low: float, high: float) -> str:
    return f">= {low:g}" if high == math.inf else f"in [{low:g}, {high:g}]"


def shown(value, width: int = 60) -> str:
    """A value as an error message quotes it: its repr, on one line, cut to `width` characters."""
    text = repr(value)
    return text if len(text) <= width else text[:width - 1] + "…"


def validate_budgets(budgets, where: str = "", field: str = "budgets", dropping: bool = False) -> dict:
    """Budgets from anywhere (--budget, a profile, package, a manifest, a result) -> {key: float}.
    Unknown keys, non-numbers (bools too), NaN, infinities and out-of-range limits are refused in one line
    naming `where` (the file, if any) and the field (`field`.key). dropping=True: budgets given over others
    (--budget, a fleet run's), where None drops the key from those below it (`merged`)."""
    prefix = f"{where}: " if where else ""
    if not isinstance(budgets, dict):
        raise BadInput(f"{prefix}{field} must be a table of budgets, got {shown(budgets)}")
    out = {}
    for key, value in budgets.items():
        if key not in KINDS:
            raise BadInput(f"{prefix}{field}: unknown budget {shown(key)}; known budgets: {', '.join(KINDS)}")
        if value is None and dropping:
            out[key] = None
            continue
        limit = KINDS[key].limit
        out[key] = number_in(value, *limit)
        if out[key] is None:   # an option names its key as it is written (--budget KEY=...), a file as a path
            name = f"{field} {key}:" if field.startswith("--") else f"{field}.{key}"
            raise BadInput(f"{prefix}{name} must be a finite number {describe_range(*limit)}, got {shown(value)}")
    return out


DROP = "none"   # --budget KEY=none: a budget of the profile or the bundle that is not to be checked


def merged(*layers) -> dict:
    """Budgets of several layers, each over the ones before it; None in a layer (--budget KEY=none) drops that key.
    A detector packaged for a profile with an accuracy_drop budget could never pass `check`: nothing removed it."""
    out = {}
    for layer in layers:
        out.update(layer or {})
    return {key: value for key, value in out.items() if value is not None}


# Budgets `optimize` may give relative to the baseline it measures (KEY=0.5x): figures the baseline always
# measures (trial.HEADLINE), lower is better, and not a fraction (an accuracy drop of the untouched model is 0).
RELATIVE_KINDS = ("latency_p50_ms", "latency_p90_ms", "peak_rss_mb", "size_mb")


def parse_budget_args(items, relative: bool = False):
    """`key=value` strings from the command line -> {key: float}; each is checked, and a key given twice is
    refused (a later, looser limit silently replaced a stricter one; `=1` then `=0.5x` dropped the absolute one).
    `key=none` is None: that budget of the profile or the bundle is dropped (`merged`). relative=True (optimize):
    also `key=0.5x`, a fraction of the study's own baseline, returned apart: ({key: limit}, {key: ratio})."""
    budgets, ratios, given = {}, {}, {}
    for item in items:
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep:
            raise BadInput(f"--budget {shown(item)} is not KEY=VALUE (e.g. latency_p90_ms=25)")
        if key in given:
            raise BadInput(f"--budget {shown(key)} given twice ({shown(given[key])} and {shown(value)}): give one "
                           "limit per budget")
        given[key] = value
        if value.lower() == DROP:
            budgets.update(validate_budgets({key: None}, field="--budget", dropping=True))
            continue
        if value.lower().endswith("x"):
            ratios[key] = _ratio(key, value[:-1], relative)
            continue
        try:
            number = float(value)
        except ValueError:
            raise BadInput(f"--budget {shown(key)}: {shown(value)} is not a number") from None
        budgets.update(validate_budgets({key: number}, field="--budget"))
    return (budgets, ratios) if relative else budgets


def _ratio(key: str, text: str, relative: bool) -> float:
    if not relative:
        raise BadInput(f"--budget {shown(f'{key}={text}x')}: a budget relative to a baseline is for `edgeopt "
                       "optimize`, which measures one; give a number here")
    if key not in RELATIVE_KINDS:
        raise BadInput(f"--budget {shown(key)}: a relative budget (…x) applies to {', '.join(RELATIVE_KINDS)}")
    try:
        ratio = float(text)
    except ValueError:
        raise BadInput(f"--budget {key}: {shown(text + 'x')} is not a number followed by x (e.g. 0.5x)") from None
    return validate_ratios({key: ratio})[key]


def validate_ratios(ratios) -> dict:
    """{budget: ratio} of the relative budgets, each a RELATIVE_KINDS key with a finite ratio > 0."""
    if not isinstance(ratios, dict):
        raise BadInput(f"relative budgets must be a table of ratios, got {shown(ratios)}")
    for key, ratio in ratios.items():
        if key not in RELATIVE_KINDS:
            raise BadInput(f"--budget {shown(key)}: a relative budget (…x) applies to {', '.join(RELATIVE_KINDS)}")
        if number_in(ratio, 0.0, math.inf) is None or ratio <= 0:
            raise BadInput(f"--budget {key}: {shown(ratio)}x: the ratio must be a finite number > 0")
    return {k: float(v) for k, v in ratios.items()}


def lookup(result: dict, path: tuple):
    """The figure at `path`, or (None, reason) when the result says it was not measured."""
    node = result
    for part in path:
        if not isinstance(node, dict):
            return None, "not in the result"
        if node.get("available") is False:
            return None, node.get("reason", "not available on this device")
        if part not in node:
            return None, node.get(f"{part}_absent", "not in the result")
        node = node[part]
    if node is None:  # the agent writes null where a reading failed (e.g. peak RSS without /proc)
        return None, "null in the result: the reading failed"
    value = number_in(node, -math.inf, math.inf)  # results.load checked its range; a document built in memory
    return (value, None) if value is not None else (None, "not a number in the result")


def check_result(result: dict, budgets: dict) -> list:
    """One row per budget: key, limit, measured, unit, status (pass/fail/unmeasured), reason."""
    rows = []
    for key, limit in budgets.items():
        kind = KINDS[key]
        value, reason = lookup(result, kind.path)
        if value is None:
            status = "unmeasured"
        elif kind.higher_is_better:
            status = "pass" if value >= limit else "fail"
        else:
            status = "pass" if value <= limit else "fail"
        rows.append({"budget": key, "limit": limit, "measured": value, "unit": kind.unit,
                     "comparison": ">=" if kind.higher_is_better else "<=",
                     "status": status, "reason": reason})
    return rows
