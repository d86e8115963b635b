"""Parity of a float artifact, output by output: the profile's limit scales with an output's magnitude above 1."""
import numpy as np
import pytest

from edgeopt.errors import ParityMismatch
from edgeopt.source import TensorSpec
from edgeopt.parity import compare, describe_failure
from edgeopt.profiles import ParityTolerance

TOLERANCE = ParityTolerance(fp32_max_abs_error=1e-4, fp16_max_abs_error=5e-2, quantized_min_top1_agreement=0.97)
INPUTS = [TensorSpec("x", [1, 4], "float32")]
SAMPLES = {"x": np.random.default_rng(0).standard_normal((16, 4)).astype(np.float32)}


def _pair(boxes_error, logits_error, shape=(1, 8, 4)):
    """A detector-like source: pixel-scale boxes (up to ~640) and logits near 1; the artifact off by the errors."""
    def source(feed):
        x = feed["x"]
        return [np.broadcast_to(x.sum() * 0 + 640.0 * np.abs(x).max(), (1, 8, 4)).astype(np.float32),
                np.tanh(x).astype(np.float32)]

    def artifact(feed):
        boxes, logits = source(feed)
        return [(boxes + boxes_error).reshape(shape), logits + logits_error]
    return source, artifact


def _report(boxes_error, logits_error, shape=(1, 8, 4)):
    source, artifact = _pair(boxes_error, logits_error, shape)
    return compare(source, artifact, SAMPLES, INPUTS, False, "fp32", TOLERANCE, "test")[0]


def test_pixel_scale_outputs_are_held_to_relative_precision():
    report = _report(5e-3, 0.0)  # what YOLOv8n's boxes showed on OpenVINO and LiteRT FP32: ~1e-5 of the range
    assert report["passed"] and report["max_abs_error"] == pytest.approx(5e-3, rel=1e-2)
    boxes, logits = report["outputs"]
    assert boxes["magnitude"] > 100 and boxes["allowed"] == pytest.approx(1e-4 * boxes["magnitude"])
    assert logits["magnitude"] == 1.0 and logits["allowed"] == 1e-4


def test_outputs_below_one_keep_the_absolute_limit_and_the_failure_names_the_output():
    report = _report(0.0, 2e-4)
    assert not report["passed"] and [o["passed"] for o in report["outputs"]] == [True, False]
    assert "max_abs_error 0.0002 on output 1 over 16 samples" in describe_failure(report)


def test_a_wrong_box_still_fails():
    report = _report(5.0, 0.0)  # 5 pixels off is not rounding
    assert not report["passed"] and "on output 0" in describe_failure(report)


def test_an_output_of_another_shape_is_a_mismatch_not_a_crash():
    with pytest.raises(ParityMismatch, match=r"output 0 has shape \[16, 4, 8\], its source model.s \[16, 8, 4\]"):
        _report(0.0, 0.0, shape=(1, 4, 8))
