"""Parity for detectors: outputs whose length varies (detections after NMS), integer outputs (class ids,
selected indices) and fixed-size detection records are compared as sets, per output, and the rule is
recorded in the report. A graph with ONNX NonMaxSuppression inside (tests/zoo/graphs.py) packages
with FP32 parity on ONNX Runtime and OpenVINO; detections that really differ still fail."""
import numpy as np
import pytest
from zoo.graphs import NMS_INPUT, NMS_OUTPUTS, nms_detector

from edgeopt import api
from edgeopt.convert.onnxruntime import ort_runner
from edgeopt.data import random_samples
from edgeopt.errors import ParityMismatch
from edgeopt.parity import (
    HUNGARIAN_MAX_ROWS,
    MIN_SET_AGREEMENT,
    compare,
    describe_failure,
)
from edgeopt.profiles import ParityTolerance
from edgeopt.source import TensorSpec

TOLERANCE = ParityTolerance(fp32_max_abs_error=1e-4, fp16_max_abs_error=5e-2, quantized_min_top1_agreement=0.97)
NMS_SPECS = [TensorSpec(NMS_INPUT[0], list(NMS_INPUT[1]), "float32")]
SAMPLES = random_samples(NMS_SPECS, 24)


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    return nms_detector(tmp_path_factory.mktemp("nms") / "nms.onnx")


def _compare(source, artifact, quantized=False, samples=SAMPLES, specs=NMS_SPECS):
    return compare(source, artifact, samples, specs, quantized, "fp32", TOLERANCE, "test", NMS_OUTPUTS)[0]


def _by_name(report):
    return {o["name"]: o for o in report["outputs"]}


@pytest.mark.parametrize("profile", ["generic", "intel-cpu"])
def test_a_detector_with_nms_inside_packages_with_fp32_parity(detector, tmp_path, profile):
    manifest = api.package(str(detector), profile, output=tmp_path / "nms.edgepkg")
    parity = manifest["parity"]
    assert parity["passed"] and parity["metric"] == "max_abs_error"
    selected, boxes, scores = parity["outputs"]
    assert selected["comparison"] == "multiset" and selected["agreement"] == 1.0
    assert boxes["comparison"] == scores["comparison"] == "matched_rows" and boxes["why"] == "its length varies"
    assert boxes["agreement"] == 1.0 and boxes["rows_source"] == boxes["rows_artifact"] == selected["rows_source"]
    assert boxes["max_abs_error"] <= boxes["allowed"] and all(o["rule"] for o in parity["outputs"])


def test_the_count_of_detections_varies_from_sample_to_sample(detector):
    run = ort_runner(detector)
    counts = {len(run({"x": SAMPLES["x"][i:i + 1]})[0]) for i in range(8)}
    assert len(counts) > 1, counts


def test_the_same_detections_in_another_order_pass(detector):
    source = ort_runner(detector)

    def reordered(feed):   # every output's rows reversed alike: what another runtime may do at equal scores
        return [o[::-1] for o in source(feed)]
    report = _compare(source, reordered)
    assert report["passed"] and all(o["agreement"] == 1.0 for o in report["outputs"])


def test_a_detection_swapped_at_a_tie_passes_and_many_fail(detector):
    source = ort_runner(detector)

    def swap(count):
        def artifact(feed):   # `count` detections per call replaced by others (another box kept at a tie)
            selected, boxes, scores = [o.copy() for o in source(feed)]
            selected[:count, 2] += 1
            boxes[:count] += 3.0
            scores[:count] -= 0.01
            return [selected, boxes, scores]
        return artifact
    one = _compare(source, swap(1))
    assert one["passed"] and MIN_SET_AGREEMENT <= _by_name(one)["boxes"]["agreement"] < 1.0
    many = _compare(source, swap(10))
    assert not many["passed"] and not any(o["passed"] for o in many["outputs"])
    assert "agreement 0." in describe_failure(many) and "on output 0 (selected)" in describe_failure(many)


def test_detections_that_really_differ_fail(detector, tmp_path):
    """Another IoU threshold keeps other boxes: a real difference, whatever the order."""
    other = nms_detector(tmp_path / "other.onnx", iou_threshold=0.2)
    report = _compare(ort_runner(detector), ort_runner(other))
    outputs = _by_name(report)
    assert not report["passed"] and outputs["boxes"]["rows_artifact"] < outputs["boxes"]["rows_source"]
    assert outputs["selected"]["agreement"] < MIN_SET_AGREEMENT and outputs["boxes"]["agreement"] < MIN_SET_AGREEMENT
    message = describe_failure(report)
    assert "(its integer rows compared as a multiset;" in message and "rows in the source" in message
    reweighted = _compare(ort_runner(detector), ort_runner(nms_detector(tmp_path / "w.onnx", seed=1)))
    assert not reweighted["passed"] and _by_name(reweighted)["boxes"]["agreement"] < 0.5   # other weights: other boxes


RECORD_SPECS = [TensorSpec("x", [1, 4], "float32")]
RECORD_SAMPLES = {"x": np.random.default_rng(0).standard_normal((16, 4)).astype(np.float32)}


def _records(feed):
    """A fixed-size detection output [1, 6, 6] (x1, y1, x2, y2 in pixels, score, class) and class ids [1, 6]."""
    x = feed["x"].astype(np.float64)
    rows = np.stack([np.concatenate([100 * x[0] + k, [0.9 - 0.1 * k, k % 3]]) for k in range(6)])
    return [rows[None].astype(np.float32), (np.arange(6) % 3)[None].astype(np.int64)]


def test_fixed_size_detection_records_in_another_order_pass_and_keep_the_elementwise_error():
    def artifact(feed):
        records, ids = _records(feed)
        return [records[:, ::-1], ids[:, ::-1]]
    report = compare(_records, artifact, RECORD_SAMPLES, RECORD_SPECS, False, "fp32", TOLERANCE, "test")[0]
    records, ids = report["outputs"]
    assert report["passed"] and records["comparison"] == "matched_rows" and records["agreement"] == 1.0
    assert records["elementwise_max_abs_error"] > 1 and "records" in records["why"]
    assert ids["comparison"] == "multiset" and ids["agreement"] == 1.0


def test_integer_class_ids_are_judged_by_agreement():
    def flips(count):
        def artifact(feed):
            records, ids = _records(feed)
            ids = ids.copy()
            ids[0, :count] += 5
            return [records, ids]
        return artifact
    ok = compare(_records, flips(0), RECORD_SAMPLES, RECORD_SPECS, False, "fp32", TOLERANCE, "test")[0]
    bad = compare(_records, flips(2), RECORD_SAMPLES, RECORD_SPECS, False, "fp32", TOLERANCE, "test")[0]
    assert ok["passed"] and not bad["passed"]
    assert bad["outputs"][1]["agreement"] == pytest.approx(4 / 6) and bad["outputs"][0]["passed"]


def test_a_logit_vector_is_never_compared_as_a_set():
    """Permuted logits are another model: a classifier's output stays elementwise."""
    def logits(feed):
        return [np.tanh(np.tile(feed["x"], (1, 8)))]
    report = compare(logits, lambda f: [logits(f)[0][:, ::-1]], RECORD_SAMPLES, RECORD_SPECS, False, "fp32",
                     TOLERANCE, "test")[0]
    assert not report["passed"] and report["outputs"][0]["comparison"] == "elementwise"


def test_rows_of_another_width_are_another_model(detector):
    source = ort_runner(detector)
    with pytest.raises(ParityMismatch, match=r"output 1 \(boxes\) has shape \[\d+, 2\], its source model's \[\d+, 4\]"):
        _compare(source, lambda feed: [o[:, :2] if o.ndim == 2 and o.dtype == np.float32 else o for o in source(feed)])


def test_many_rows_are_paired_in_sorted_order():
    n = HUNGARIAN_MAX_ROWS + 200
    rows = np.random.default_rng(1).standard_normal((n, 3)).astype(np.float32)

    def source(feed):
        return [rows[: n - int(feed["x"][0, 0] > 0)]]   # the count varies with the input

    report = compare(source, lambda feed: [source(feed)[0][::-1]], RECORD_SAMPLES, RECORD_SPECS, False, "fp32",
                     TOLERANCE, "test")[0]
    assert report["passed"] and report["outputs"][0]["comparison"] == "matched_rows"


def test_a_quantized_detector_is_judged_by_agreement(detector):
    source = ort_runner(detector)
    report = _compare(source, lambda feed: [o[::-1] for o in source(feed)], quantized=True)
    assert report["passed"] and report["metric"] == "agreement" and report["tolerance"] == 0.8


def _classifier(lead):
    """Logits [1, 10] near 0.05 apart (as random weights give), one class `lead` above the rest."""
    def source(feed):
        x = feed["x"].astype(np.float64)
        logits = np.tile(x, (1, 3))[:, :10] * 0.05
        logits[0, int(abs(x[0, 0]) * 10) % 10] += lead
        return [logits.astype(np.float32)]
    return source


def _noisy(source, noise):
    def artifact(feed):
        out = source(feed)[0]
        return [out + noise * np.random.default_rng(int(abs(feed["x"][0, 0]) * 1e6)).standard_normal(out.shape)
                .astype(np.float32)]
    return artifact


def test_a_quantized_classifier_with_near_tied_logits_is_judged_by_sqnr():
    source = _classifier(lead=0.0)
    report = compare(source, _noisy(source, 0.004), RECORD_SAMPLES, RECORD_SPECS, True, "fp32", TOLERANCE, "test")[0]
    assert report["metric"] == "sqnr_db" and report["top1_robust_share"] < 0.5
    assert "cannot judge" in report["top1_why_not"] and report["passed"] and report["sqnr_db"] > 20
    worse = compare(source, _noisy(source, 0.05), RECORD_SAMPLES, RECORD_SPECS, True, "fp32", TOLERANCE, "test")[0]
    assert worse["metric"] == "sqnr_db" and not worse["passed"] and worse["sqnr_db"] < 10


@pytest.fixture(scope="module")
def mobilenet_int8(tmp_path_factory):
    """The zoo's random-weight MobileNetV2 (noise gain ~30: its INT8 logits reach ~7 dB SQNR) packaged INT8 on
    generic, and its calibration data."""
    from zoo import ZOO
    from zoo.data import write_files

    files = write_files(ZOO["mobilenet_v2"], tmp_path_factory.mktemp("mnv2"), ("legacy",))
    out = files["calib"].parent / "mnv2.edgepkg"
    manifest = api.package(str(files["onnx"]["legacy"]), "generic", output=out, quantize="int8",
                           calib=str(files["calib"]))
    return manifest, files


def test_a_noise_amplifying_zoo_model_passes_int8_by_its_input_rounding_floor(mobilenet_int8):
    parity = mobilenet_int8[0]["parity"]
    (logits,) = parity["outputs"]
    assert parity["passed"] and parity["metric"] == "sqnr_db" and logits["comparison"] == "sqnr"
    assert logits["input_rounding_sqnr_db"] < 10 + 6 and logits["min_sqnr_db"] < 10   # the floor applied
    assert logits["min_sqnr_db"] <= logits["sqnr_db"] < logits["input_rounding_sqnr_db"]


def test_the_same_model_quantized_with_a_wrong_scale_is_refused(mobilenet_int8, tmp_path):
    """One activation's QuantizeLinear/DequantizeLinear scale set 20x too small (the tensor clips): refused."""
    import tarfile

    import onnx
    from onnx import numpy_helper

    manifest, files = mobilenet_int8
    with tarfile.open(manifest["path"]) as tar:
        tar.extractall(tmp_path, filter="data")
    model = onnx.load(str(tmp_path / manifest["model"]))
    inits = {i.name: i for i in model.graph.initializer}
    first = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == model.graph.input[0].name)
    scale = inits[first.input[1]]
    scale.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(scale) / 20, scale.name))
    onnx.save(model, str(tmp_path / "wrecked.onnx"))
    samples = dict(np.load(files["calib"]))
    specs = [TensorSpec("input", [1, 3, 64, 64], "float32")]
    report = compare(ort_runner(files["onnx"]["legacy"]), ort_runner(tmp_path / "wrecked.onnx"), samples, specs,
                     True, "int8", TOLERANCE, "test", ["logits"])[0]
    assert not report["passed"] and report["metric"] == "sqnr_db"
    assert report["sqnr_db"] < report["tolerance"] and "sqnr_db" in describe_failure(report)


def test_a_quantized_classifier_with_a_clear_winner_is_judged_by_top1():
    source = _classifier(lead=2.0)
    report = compare(source, _noisy(source, 0.01), RECORD_SAMPLES, RECORD_SPECS, True, "fp32", TOLERANCE, "test")[0]
    assert report["metric"] == "top1_agreement" and report["top1_robust_share"] >= 0.5
    assert report["passed"] and report["top1_agreement"] == 1.0 and "top1_why_not" not in report


def test_an_integer_map_with_a_few_flipped_elements_passes_by_equal_elements():
    def source(feed):   # an argmax map [1, 8, 8] (a segmenter's classes)
        return [(np.abs(feed["x"][0, :, None, None]) * np.arange(16).reshape(1, 4, 4)).astype(np.int64)
                .reshape(1, 8, 8)]

    def artifact(feed):
        out = source(feed)[0].copy()
        out[0, 0, 0] += 1   # one pixel of 64 at a tie
        return [out]
    report = compare(source, artifact, RECORD_SAMPLES, RECORD_SPECS, False, "fp32", TOLERANCE, "test")[0]
    (entry,) = report["outputs"]
    assert report["passed"] and entry["comparison"] == "equal_elements" and entry["agreement"] == 63 / 64


def test_rows_are_paired_for_the_most_matches_not_the_least_total_distance():
    from edgeopt.parity import _pair_rows

    a, b = np.array([[0.0], [1.0]]), np.array([[0.9], [2.0]])   # least total distance pairs 0-0.9, 1-2.0: no match
    assert sorted(d <= 0.15 for d in _pair_rows(a, b, 0.15)) == [False, True]


def test_the_samples_of_a_batch_are_not_records():
    """[32, 6] logits of a batch of 32: one sample off is a mismatch, not 1 record of 32 left unmatched
    (31 / 32 would pass as records)."""
    specs = [TensorSpec("x", [32, 4], "float32")]

    def source(feed):
        return [np.tile(feed["x"], (1, 2))[:, :6]]

    def artifact(feed):
        out = source(feed)[0].copy()
        out[0] += 1.0
        return [out]
    samples = {"x": np.random.default_rng(0).standard_normal((320, 4)).astype(np.float32)}
    report = compare(source, artifact, samples, specs, False, "fp32", TOLERANCE, "test")[0]
    assert not report["passed"] and report["outputs"][0]["comparison"] == "elementwise"


def test_an_lstm_with_a_state_output_keeps_its_state_through_openvino_int8(tmp_path):
    """The zoo's Silero-VAD-like model (LSTM, state in and out) on intel-cpu INT8. With the LSTMSequence quantized,
    OpenVINO's CPU plugin ran its INT8 LSTM kernel from the saved IR and the state output read -10 dB SQNR (the
    same quantized model in memory: 33 dB); edgeopt keeps LSTMSequence float and says so in the manifest."""
    from zoo import ZOO
    from zoo.data import write_files

    files = write_files(ZOO["silero_vad"], tmp_path, ("legacy",))
    manifest = api.package(str(files["onnx"]["legacy"]), "intel-cpu", output=tmp_path / "vad.edgepkg", quantize="int8",
                           calib=str(files["calib"]), allow_mismatch=True)
    parity, compression = manifest["parity"], manifest["compression"]
    state = _by_name(parity)["stateN"]
    assert state["comparison"] == "sqnr" and state["sqnr_db"] >= 20 and parity["passed"], describe_failure(parity)
    assert "LSTMSequence" in compression["float_op_types"] and compression["ops"]["fake_quantize"] > 0
    assert any("LSTMSequence left in float: OpenVINO's CPU INT8 kernel for it gives wrong outputs" in note
               for note in manifest["notes"])   # the reason in the note itself, not only in the JSON
    # and counted as a compute op left in float: the summary read "1/1 compute ops quantized" (a user review)
    assert any(op.startswith("LSTMSequence:") for op in compression["ops"]["left_in_float_ops"])


def test_a_gru_left_float_by_openvino_int8_is_counted_so(tmp_path):
    """The zoo's GRU keyword spotter on intel-cpu INT8: NNCF quantizes its Gemm and leaves both GRUSequence float,
    and the summary read "1/1 compute ops quantized" (a user review)."""
    from zoo import ZOO
    from zoo.data import write_files

    files = write_files(ZOO["kws_gru"], tmp_path, ("legacy",))
    manifest = api.package(str(files["onnx"]["legacy"]), "intel-cpu", output=tmp_path / "kws.edgepkg", quantize="int8",
                           calib=str(files["calib"]), allow_mismatch=True)
    ops = manifest["compression"]["ops"]
    assert any(op.startswith("GRUSequence:") for op in ops["left_in_float_ops"]), ops
    assert ops["compute_ops"] > ops["int8_activation_inputs"]


@pytest.mark.parametrize("method", ["auto", "static"])
def test_the_recurrent_ops_onnx_runtime_int8_leaves_float_are_said_so(tmp_path, method):
    """The zoo's GRU keyword spotter on generic INT8: ONNX Runtime quantized its one small Gemm (dynamic, as auto
    chose) or nothing of the GRUs (static), and the bundle said "MatMul/Gemm hold 100 % of the MACs" and nothing
    of the two GRUs that do the work."""
    from zoo import ZOO
    from zoo.data import write_files

    from edgeopt.report.tables import _compression

    files = write_files(ZOO["kws_gru"], tmp_path, ("legacy",))
    manifest = api.package(str(files["onnx"]["legacy"]), "generic", output=tmp_path / "kws.edgepkg", quantize="int8",
                           calib=str(files["calib"]), allow_mismatch=True, backend_options={"int8_method": method})
    compression = manifest["compression"]
    assert compression["float_recurrent"] == {"GRU": 2}
    note = next(n for n in manifest["notes"] if "2 GRU left float" in n)
    assert "static INT8 quantizes no recurrent op" in note and "% of the MACs" in note
    assert "2 GRU" in _compression(compression)
    if method == "auto":
        assert compression["int8_method"]["used"] == "dynamic"
        assert any("of the MACs outside the recurrent ops" in n for n in manifest["notes"])
        # no Conv to leave float is named, and the --calib that dynamic INT8 does not use is said
        assert "Conv" not in _compression(compression) and compression["float_conv"] == 0
        assert any(n.startswith("dynamic INT8 calibrates nothing") and "int8_method=static calibrates" in n
                   for n in manifest["notes"])
        # asked for by --quantize dynamic, int8_method is refused: the note points to --quantize int8 (a user review)
        dynamic = api.package(str(files["onnx"]["legacy"]), "generic", output=tmp_path / "kwsd.edgepkg",
                              quantize="dynamic", calib=str(files["calib"]), allow_mismatch=True)
        assert any(n.startswith("dynamic INT8 calibrates nothing") and n.endswith("(--quantize int8 calibrates "
                                                                                 "with --calib)")
                   for n in dynamic["notes"]), dynamic["notes"]
