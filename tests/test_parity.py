"""Parity, output by output: a float artifact's limit scales with an output's magnitude above 1; a quantized
artifact's outputs that top-1 cannot judge are judged each by SQNR (edgeopt/parity.py)."""
import numpy as np
import pytest

from edgeopt.errors import ParityMismatch
from edgeopt.source import TensorSpec
from edgeopt.parity import (
    INPUT_ROUNDING_MARGIN_DB,
    QUANTIZED_MIN_SQNR_DB,
    SQNR_IDENTICAL_DB,
    compare,
    describe_failure,
    round_inputs,
    sqnr_db,
)
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


# --- quantized artifacts: SQNR per output where top-1 cannot judge ------------------------------------------

def _regressor(gain):
    """A source whose output [1, 4, 1] (a regression map, not class scores) moves `gain` times as much as its input: gain 40 amplifies input noise as a
    random-weight MobileNetV2 does (rounding its input to 8 bits alone leaves 11 dB SQNR there)."""
    return lambda feed: [np.sin(gain * feed["x"].astype(np.float64)).astype(np.float32)[..., None]]


def _quantized(source, artifact):
    return compare(source, artifact, SAMPLES, INPUTS, True, "fp32", TOLERANCE, "test")[0]


def test_a_quantized_output_within_10_db_passes_and_records_its_sqnr():
    source = _regressor(1.0)
    report = _quantized(source, lambda feed: [source(feed)[0] * 1.05])   # 5% relative error: 26 dB
    (entry,) = report["outputs"]
    assert report["passed"] and report["metric"] == "sqnr_db" and entry["comparison"] == "sqnr"
    assert entry["sqnr_db"] == pytest.approx(26.0, abs=0.1) and entry["min_sqnr_db"] == QUANTIZED_MIN_SQNR_DB
    assert entry["relative_rms_error"] == pytest.approx(0.05, rel=1e-3) and "input_rounding_sqnr_db" not in entry


def test_a_wrong_scale_is_refused_on_a_well_conditioned_model():
    source = _regressor(1.0)
    report = _quantized(source, lambda feed: [source(feed)[0] * 0.5])    # a requantization scale off by 2x: 6 dB
    (entry,) = report["outputs"]
    assert not report["passed"] and entry["sqnr_db"] == pytest.approx(6.02, abs=0.01)
    assert entry["input_rounding_sqnr_db"] > 30 and entry["min_sqnr_db"] == QUANTIZED_MIN_SQNR_DB
    assert "sqnr_db 6.0 on output 0 over 16 samples" in describe_failure(report)


def test_a_noise_amplifying_model_is_judged_against_its_input_rounding_floor():
    source = _regressor(80.0)
    floor = sqnr_db(source(SAMPLES)[0], source(round_inputs(SAMPLES, INPUTS))[0])
    assert 0 < floor < QUANTIZED_MIN_SQNR_DB   # rounding the input alone costs more than the fixed bar allows
    rounded = round_inputs(SAMPLES, INPUTS)["x"]   # the artifact's input quantizer, calibrated on the samples

    def artifact(feed):
        return source({"x": rounded[np.flatnonzero((SAMPLES["x"] == feed["x"]).all(1))]})
    report = _quantized(source, artifact)
    (entry,) = report["outputs"]
    assert entry["input_rounding_sqnr_db"] == pytest.approx(floor) == pytest.approx(entry["sqnr_db"])
    assert entry["min_sqnr_db"] == pytest.approx(max(0.0, floor - INPUT_ROUNDING_MARGIN_DB))
    assert report["passed"] and entry["sqnr_db"] < QUANTIZED_MIN_SQNR_DB
    wrecked = _quantized(source, lambda feed: [-source(feed)[0]])          # sign lost: noise 4x the signal
    assert not wrecked["passed"] and wrecked["outputs"][0]["sqnr_db"] < 0
    assert "rounding the float inputs alone to 8 bits gives" in describe_failure(wrecked)


def test_each_output_is_judged_by_its_own_sqnr():
    def source(feed):
        x = feed["x"].astype(np.float32)
        return [x[..., None] * 100.0, np.tanh(x)[..., None]]   # a large output beside a small one: merged, the small one would vanish

    report = _quantized(source, lambda feed: [source(feed)[0], source(feed)[1] * 0.2])
    first, second = report["outputs"]
    assert first["passed"] and first["sqnr_db"] == SQNR_IDENTICAL_DB and not second["passed"]
    assert not report["passed"] and report["sqnr_output"] == 1 and "on output 1" in describe_failure(report)


def test_a_channel_that_lost_its_signal_fails_however_good_the_whole_output():
    """A detector head [N, 4 + classes, anchors] quantized with one scale: the boxes (hundreds of pixels) set it,
    every class score (0-1) rounds to 0, and the output's one SQNR still reads 30 dB and more."""
    rng = np.random.default_rng(1)

    def source(feed):
        n = len(feed["x"])
        boxes = 300.0 + 200.0 * np.tanh(feed["x"])[:, :, None] * np.ones((n, 4, 6))
        scores = 1 / (1 + np.exp(-feed["x"][:, :3, None])) * np.ones((n, 3, 6))
        return [np.concatenate([boxes, scores], axis=1).astype(np.float32)]

    def artifact(feed):
        out = source(feed)[0].copy()
        out[:, :4] += rng.normal(0, 0.5, out[:, :4].shape)   # boxes: fine at 8 bits of a 500-pixel range
        out[:, 4:] = 0.0                                      # scores: below half a step, rounded to 0
        return [out]
    report = _quantized(source, artifact)
    (entry,) = report["outputs"]
    assert entry["sqnr_db"] > 30 and entry["lost_channels"] == [4, 5, 6] and entry["worst_channel_sqnr_db"] == 0.0
    assert not report["passed"]
    assert "output 0 lost 3 channels (4..6) of axis 1 (own SQNR down to 0.0 dB, requires >= 3, and more than 4 " \
        "distinct values)" in describe_failure(report)
    kept = _quantized(source, lambda feed: [source(feed)[0] * 1.01])   # every channel 40 dB: passes
    assert kept["passed"] and "lost_channels" not in kept["outputs"][0]
    # YOLOv5's layout, [N, anchors, 4 + classes]: the scores' channels are on the last axis (it passed at 38 dB)
    def anchors_first(feed):   # 7 fields of each of 6 x 5 anchors
        return [np.moveaxis(np.tile(source(feed)[0], 5), 1, 2)]

    def scores_lost(feed):
        out = anchors_first(feed)[0].copy()
        out[..., :4] += rng.normal(0, 0.5, out[..., :4].shape)
        out[..., 4:] = 0.0
        return [out]
    last = _quantized(anchors_first, scores_lost)
    assert not last["passed"] and last["outputs"][0]["lost_channels"] == [4, 5, 6]
    assert "output 0 lost 3 channels (4..6) of axis 2 (own SQNR down to" in describe_failure(last)
    kept = _quantized(anchors_first, lambda feed: [anchors_first(feed)[0] * 1.01])
    assert kept["passed"] and "lost_channels" not in kept["outputs"][0]
    # scores left a few steps of the output's one int8 scale (0.39: 0, 0.39, 0.78), 12 dB each: their resolution
    # is lost however their SQNR reads (a YOLOv5 head on LiteRT passed at 38 dB overall; a walkthrough)
    def varied(feed):   # each anchor's scores its own, as a head's are
        out = anchors_first(feed)[0].copy()
        out[..., 4:] *= np.linspace(0.2, 1.0, out.shape[1])[None, :, None]
        return [out]

    def scores_stepped(feed):
        out = varied(feed)[0].copy()
        out[..., 4:] = np.round(out[..., 4:] / 0.39) * 0.39
        return [out]
    stepped = _quantized(varied, scores_stepped)
    entry = stepped["outputs"][0]
    assert not stepped["passed"] and entry["lost_channels"] == [4, 5, 6] and entry["worst_channel_sqnr_db"] > 3
    # a confident sigmoid mask takes two values in int8 and loses nothing (48 dB): not a lost channel (a review)
    def mask(feed):
        return [1 / (1 + np.exp(-40 * np.tanh(feed["x"])[:, :, None] * np.linspace(1, 2, 30)[None, None, :]))]

    def mask_int8(feed):
        return [np.round(mask(feed)[0] * 256) / 256]
    confident = _quantized(mask, mask_int8)
    assert confident["passed"] and "lost_channels" not in confident["outputs"][0], confident["outputs"][0]


def test_a_top1_failure_on_few_samples_says_one_changed_prediction_fails_it():
    """16 eval samples under a 0.97 limit: one changed prediction fails it, and the refusal offered no next step
    but --allow-mismatch (a GRU on LiteRT, after --keep-float auto's two minutes)."""
    report = {"metric": "top1_agreement", "top1_agreement": 0.9375, "samples": 16, "tolerance": 0.97, "outputs": []}
    assert "on 16 samples one changed prediction is 0.0625 of it, so any fails: 34 or more eval samples" \
        in describe_failure(report)
    assert "changed prediction" not in describe_failure(dict(report, samples=100, top1_agreement=0.9))


def test_identical_outputs_read_as_such_not_as_200_db():
    """SQNR_IDENTICAL_DB is a cap for outputs with no noise at all; "sqnr_db 200" read as a measurement."""
    from edgeopt.parity import SQNR_IDENTICAL_DB, headline
    assert headline({"metric": "sqnr_db", "sqnr_db": SQNR_IDENTICAL_DB, "tolerance": 10.0, "max_abs_error": 0.0}) == \
        "sqnr_db: outputs identical (tolerance 10)"
    assert headline({"metric": "sqnr_db", "sqnr_db": 41.25, "tolerance": 10.0, "max_abs_error": 0.1}) == \
        "sqnr_db 41.25 (tolerance 10)"


@pytest.mark.parametrize("scale, said", [(0.0, "is 0 everywhere in every sample"),
                                         (1e-9, "below parity's tolerance 0.0001, so any artifact passes")])
def test_a_source_whose_outputs_judge_nothing_is_said(scale, said):
    """A ViT whose head is initialised to zero passed parity at max_abs_error 0, random weights at 4e-15: nothing
    was compared and nothing said (a walkthrough of third-party networks)."""
    from edgeopt.parity import blank_source_note

    def source(feed):
        return [np.tanh(feed["x"]).astype(np.float32) * np.float32(scale)]

    report = compare(source, source, SAMPLES, INPUTS, False, "fp32", TOLERANCE, "random samples")[0]
    assert report["passed"] and len(report["source_blank"]) == 1 and said in report["source_blank"][0], report
    note = blank_source_note(report, report["samples_source"])
    assert note.startswith("the source model's output 0 ") and "on the random samples: parity compares nothing" in note
    quantized = compare(source, source, SAMPLES, INPUTS, True, "fp32", TOLERANCE, "test")[0]
    assert bool(quantized.get("source_blank")) == (scale == 0.0)   # judged relative to its size: tiny is fine
    small = compare(lambda f: [np.tanh(f["x"]) * 0.01], lambda f: [np.tanh(f["x"]) * 0.01], SAMPLES, INPUTS, False,
                    "fp16", TOLERANCE, "test")[0]   # fp16's 0.05 limit is no measure of blank: fp32's is
    assert "source_blank" not in small
    working = compare(lambda f: [np.tanh(f["x"])], lambda f: [np.tanh(f["x"])], SAMPLES, INPUTS, False, "fp32",
                      TOLERANCE, "test")[0]
    assert "source_blank" not in working and blank_source_note(working) is None


def test_package_warns_of_a_model_whose_head_is_zero(cli, tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    weights = numpy_helper.from_array(np.zeros((4, 3), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "zero_head",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], [weights])
    model = tmp_path / "zero_head.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), model)
    r = cli("package", model, "--profile", "generic", "--budget", "accuracy_drop=none", "-o", tmp_path / "z.edgepkg")
    assert r.exit_code == 0, r.stderr
    assert "warning the source model's output 0 (y) is 0 everywhere in every sample on the random" in " ".join(
        r.stdout.split()), r.stdout


def test_an_argmax_output_of_a_quantized_artifact_is_held_to_top1s_agreement():
    """An integer output of one value a sample (a classifier's argmax) was judged as a set of NMS indices, at 0.8
    where quantized: an argmax-only classifier could flip a fifth of its answers and pass, where its logits twin is
    held to 0.97 (a walkthrough). A detector's variable-length indices keep the set rule."""
    samples = {"x": np.random.default_rng(1).standard_normal((100, 4)).astype(np.float32)}
    source = lambda feed: [np.argmax(feed["x"], axis=1).astype(np.int64)]

    def flipped(share):
        def artifact(feed):
            ids = source(feed)[0]
            return [(ids + 1) % 4 if artifact.calls < share * 100 else ids]
        artifact.calls = 0

        def counted(feed):
            out = artifact(feed)
            artifact.calls += 1
            return out
        return counted
    for share, passed in ((0.02, True), (0.1, False)):
        report = compare(source, flipped(share), samples, INPUTS, True, "fp32", TOLERANCE, "test")[0]
        entry = report["outputs"][0]
        assert entry["passed"] is passed and entry["min_agreement"] == 0.97, entry
    float_report = compare(source, flipped(0.02), samples, INPUTS, False, "fp32", TOLERANCE, "test")[0]
    assert float_report["outputs"][0]["min_agreement"] == 0.95   # a float artifact keeps its own rule
