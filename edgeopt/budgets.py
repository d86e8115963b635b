"""Budgets: limits on measured figures, checked against result documents.

A budget whose figure is absent from the result is `unmeasured` (with the result's reason)
and fails the check: a limit is never passed silently.
"""
from __future__ import annotations

import dataclasses

from .errors import BadInput


@dataclasses.dataclass(frozen=True)
class BudgetKind:
    key: str
    unit: str
    path: tuple          # where the figure lives in an edgeopt.result/1 document
    higher_is_better: bool = False
    help: str = ""


KINDS = {k.key: k for k in [
    BudgetKind("latency_p50_ms", "ms", ("latency", "p50_ms"), help="median latency"),
    BudgetKind("latency_p90_ms", "ms", ("latency", "p90_ms"), help="90th percentile latency (the headline)"),
    BudgetKind("latency_p95_ms", "ms", ("latency", "p95_ms")),
    BudgetKind("latency_p99_ms", "ms", ("latency", "p99_ms")),
    BudgetKind("latency_mean_ms", "ms", ("latency", "mean_ms")),
    BudgetKind("first_inference_ms", "ms", ("latency", "first_inference_ms")),
    BudgetKind("peak_rss_mb", "MiB", ("memory", "peak_rss_mb"), help="peak resident memory during inference"),
    BudgetKind("size_mb", "MiB", ("bundle", "artifact_mb"), help="size of the model artifacts"),
    BudgetKind("accuracy_drop", "", ("accuracy", "drop"), help="source top-1 minus measured top-1, 0..1"),
    BudgetKind("min_top1", "", ("accuracy", "top1"), higher_is_better=True, help="measured top-1, 0..1"),
    BudgetKind("max_abs_error", "", ("accuracy", "max_abs_error"), help="vs the source model's outputs"),
    BudgetKind("power_w", "W", ("power", "mean_w"), help="mean power during inference"),
    BudgetKind("energy_mj", "mJ", ("power", "energy_mj_per_inference"), help="energy per inference"),
]}


def validate_budget_keys(budgets: dict) -> None:
    for key, value in budgets.items():
        if key not in KINDS:
            raise BadInput(f"unknown budget {key!r}; known budgets: {', '.join(KINDS)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BadInput(f"budget {key} must be a number, got {value!r}")


def parse_budget_args(items) -> dict:
    """`key=value` strings from the command line -> {key: float}."""
    budgets = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise BadInput(f"budget {item!r} is not KEY=VALUE (e.g. latency_p90_ms=25)")
        try:
            budgets[key.strip()] = float(value)
        except ValueError:
            raise BadInput(f"budget {key}: {value!r} is not a number") from None
    validate_budget_keys(budgets)
    return budgets


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
    if isinstance(node, (int, float)) and not isinstance(node, bool):
        return float(node), None
    return None, "not a number in the result"


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
