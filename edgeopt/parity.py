"""The verified bundle: run the produced artifact beside its source model on the same samples.

Float artifacts are judged output by output by max abs error, against the profile's limit scaled by the
output's magnitude where it exceeds 1; quantized ones by top-1 agreement with the source (and the accuracy
delta when labels exist), since their outputs move by design.
"""
from __future__ import annotations

import numpy as np

from device_agent.measure.accuracy import top1

from .data import LABELS, head, run, sample_count
from .errors import ParityMismatch

MAX_SAMPLES = 500
# Quantized models without a class output: relative error allowed against the output's range.
QUANTIZED_MAX_RELATIVE_ERROR = 0.1


def _is_classifier(output: np.ndarray) -> bool:
    return output.ndim == 2 and output.shape[1] > 1


def compare(source_runner, artifact_runner, samples: dict, inputs, quantized: bool, precision: str,
            tolerance, samples_source: str):
    """Returns (parity report, source outputs on the samples)."""
    feed = head(samples, MAX_SAMPLES)
    ref = run(source_runner, feed, inputs)
    got = run(artifact_runner, feed, inputs)
    shapes = [(i, r.shape, g.shape) for i, (r, g) in enumerate(zip(ref, got)) if r.shape != g.shape]
    if shapes:
        i, want, have = shapes[0]
        raise ParityMismatch(f"packaged artifact's output {i} has shape {list(have)}, its source model's "
                             f"{list(want)}: not the same model")
    errors = [float(np.max(np.abs(r.astype(np.float64) - g.astype(np.float64)), initial=0.0))
              for r, g in zip(ref, got)]
    report = {"samples": sample_count(feed), "samples_source": samples_source, "max_abs_error": max(errors)}
    if not quantized:
        limit = tolerance.max_abs_error(precision)
        outputs = [_float_output(i, r, err, limit) for i, (r, err) in enumerate(zip(ref, errors))]
        report.update(metric="max_abs_error", tolerance=limit, outputs=outputs,
                      passed=all(o["passed"] for o in outputs))
    elif _is_classifier(ref[0]):
        agreement = float(np.mean(np.argmax(ref[0], 1) == np.argmax(got[0], 1)))
        limit = tolerance.quantized_min_top1_agreement
        report.update(metric="top1_agreement", top1_agreement=agreement, tolerance=limit, passed=agreement >= limit)
    else:
        scale = max(float(np.max(np.abs(r))) for r in ref) or 1.0
        relative = report["max_abs_error"] / scale
        report.update(metric="relative_error", relative_error=relative, tolerance=QUANTIZED_MAX_RELATIVE_ERROR,
                      passed=relative <= QUANTIZED_MAX_RELATIVE_ERROR)
    if LABELS in samples and _is_classifier(ref[0]) and len(ref[0]) == report["samples"]:
        labels = feed[LABELS]
        report["source_top1"] = top1(ref[0], labels)
        report["artifact_top1"] = top1(got[0], labels)
        report["accuracy_delta"] = report["artifact_top1"] - report["source_top1"]
    return report, ref


def _float_output(index: int, ref: np.ndarray, error: float, limit: float) -> dict:
    """One output of a float artifact: its max abs error against the profile's limit, scaled by the
    output's magnitude where that exceeds 1. Float rounding error grows with the values computed, so a
    detector's pixel-scale boxes (hundreds) are held to the same relative precision as logits near 1,
    not to an absolute error that only values below 1 can meet."""
    scale = max(1.0, float(np.max(np.abs(ref.astype(np.float64)), initial=0.0)))
    return {"output": index, "max_abs_error": error, "magnitude": scale, "allowed": limit * scale,
            "passed": error <= limit * scale}


def describe_failure(report: dict) -> str:
    metric = report["metric"]
    value = report[metric] if metric in report else report["max_abs_error"]
    op = ">=" if metric == "top1_agreement" else "<="
    worst = [o for o in report.get("outputs", []) if not o["passed"]]
    if worst:
        o = worst[0]
        return (f"packaged artifact disagrees with its source model: max_abs_error {o['max_abs_error']:.4g} "
                f"on output {o['output']} over {report['samples']} samples, profile allows "
                f"{report['tolerance']:g} x its magnitude {o['magnitude']:.4g} = {o['allowed']:.4g} "
                "(--allow-mismatch to package anyway)")
    return (f"packaged artifact disagrees with its source model: {metric} {value:.4g} on "
            f"{report['samples']} samples, profile requires {op} {report['tolerance']:g} "
            "(--allow-mismatch to package anyway)")
