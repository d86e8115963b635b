"""`edgeopt package`: real ORT conversions and quantization, the parity check, bad input."""
import subprocess
import sys
import tarfile

import numpy as np
import onnx
import pytest

import onnx_graphs
from conftest import CALIB, EVAL, MODEL, bundle_manifest
from edgeopt import api


def _members(path):
    with tarfile.open(path) as tar:
        return {m.name: m for m in tar.getmembers()}



def test_fp32_bundle_is_verified_and_complete(bundles):
    m = bundle_manifest(bundles["fp32"])
    assert m["schema"] == "edgeopt.bundle/1"
    assert set(_members(bundles["fp32"])) == {"manifest.json", "model/model.onnx", "data/eval.npz"}
    assert m["parity"]["passed"] and m["parity"]["max_abs_error"] <= 1e-4
    assert m["parity"]["samples"] == 360 and m["parity"]["samples_source"] == "eval data"
    assert m["source"]["accuracy"]["top1"] > 0.95
    assert m["inputs"] == [{"name": "image", "shape": [1, 1, 8, 8], "dtype": "float32"}]
    assert m["budgets"]["latency_p90_ms"] == 50.0 and m["runtime"]["name"] == "onnxruntime"
    assert {f["role"] for f in m["files"]} == {"model", "eval-data"}
    assert all(len(f["sha256"]) == 64 for f in m["files"])


def test_int8_is_static_qdq_u8s8_per_channel(bundles, tmp_path):
    m = bundle_manifest(bundles["int8"])
    c = m["compression"]
    assert (c["method"], c["format"], c["scheme"], c["per_channel"]) == ("static", "QDQ", "u8s8", True)
    # 7-bit weights: an AVX2-only CPU's U8S8 kernels saturate 8-bit products (logits off by 3.3, not 0.67)
    assert c["weight_bits"] == 7
    assert c["calibration"]["samples"] == 200
    assert m["parity"]["metric"] == "top1_agreement" and m["parity"]["top1_agreement"] >= 0.97
    assert abs(m["parity"]["accuracy_delta"]) <= 0.01
    with tarfile.open(bundles["int8"]) as tar:
        tar.extract("model/model.onnx", tmp_path, filter="data")
    ops = {n.op_type for n in onnx.load(str(tmp_path / "model/model.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert (tmp_path / "model/model.onnx").stat().st_size < 0.5 * MODEL.stat().st_size


def test_fp16_and_dynamic(tmp_path, cli):
    r = cli("package", MODEL, "--precision", "fp16", "--eval-data", EVAL, "--calib", CALIB, "-o", tmp_path / "h.edgepkg",
            "--json")
    assert r.exit_code == 0, r.stderr
    m = r.json()
    assert m["profile"]["precision"] == "fp16" and m["parity"]["tolerance"] == 5e-2
    # a float bundle with eval data reads no --calib, as dynamic INT8 says of itself (it said nothing)
    assert "--calib is not used: a float bundle (fp16) calibrates nothing, and parity judged on the eval data" \
        in m["notes"]
    assert 0 < m["parity"]["max_abs_error"] < 5e-2
    alone = cli("package", MODEL, "--precision", "fp16", "--calib", CALIB, "-o", tmp_path / "c.edgepkg", "--json")
    assert alone.exit_code == 0, alone.stderr   # without eval data, parity's inputs: said, where nothing was
    assert "--calib is read only as parity's inputs: a float bundle (fp16) calibrates nothing" in alone.json()["notes"]
    r = cli("package", MODEL, "--quantize", "dynamic", "-o", tmp_path / "d.edgepkg", "--json")
    assert r.exit_code == 0, r.stderr
    m = r.json()
    assert m["compression"]["method"] == "dynamic"
    assert any("ConvInteger" in n for n in m["notes"])  # the measured pitfall is told, not hidden
    assert m["parity"]["samples_source"] == "random inputs (seed 0)"


def test_int8_without_calibration_is_refused(cli, tmp_path):
    out = tmp_path / "q.edgepkg"
    r = cli("package", MODEL, "--quantize", "int8", "-o", out)
    assert r.exit_code == 2
    assert "--quantize int8 needs calibration data: --calib" in r.stderr
    assert not out.exists()


@pytest.mark.parametrize("args, said", [
    (["--quantize", "int4-weights", "--calib"], "backend onnxruntime supports --quantize none, dynamic, int8, not "
                                                "int4-weights"),
    (["--precision", "bf16", "--eval-data"], "backend onnxruntime supports --precision fp32, fp16, not bf16"),
])
def test_a_compression_the_backend_lacks_is_refused_before_the_data_is_judged(cli, tmp_path, args, said):
    """The calibration (or eval) file's shape was refused against the model first, for a quantization the
    backend would never have run."""
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, image=np.zeros((10, 3, 8, 8), np.float32))   # 3 channels: the model takes 1
    r = cli("package", MODEL, *args, wrong, "-o", tmp_path / "q.edgepkg")
    assert r.exit_code == 2 and r.stderr.strip() == f"edgeopt: error: {said}", r.stderr

@pytest.mark.parametrize("arrays, message", [
    ({"image": np.zeros((10, 3, 8, 8), np.float32)}, "array 'image' has shape (10, 3, 8, 8); model input 'image' expects (N, 1, 8, 8)"),
    ({"pixels": np.zeros((10, 1, 8, 8), np.float32), "other": np.zeros((10, 2), np.float32)}, "no array for input(s) image"),
    ({"image": np.zeros((10, 1, 8, 8), np.complex64)}, "is complex64, input expects float32"),
    ({"image": np.zeros((10, 1, 8, 8), np.float32), "labels": np.zeros(9)}, "disagree on the sample count"),
])
def test_calibration_that_does_not_match_the_model(cli, tmp_path, arrays, message):
    calib = tmp_path / "calib.npz"
    np.savez(calib, **arrays)
    out = tmp_path / "q.edgepkg"
    r = cli("package", MODEL, "--quantize", "int8", "--calib", calib, "-o", out)
    assert r.exit_code == 2, r.stderr
    assert message in r.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == [calib]


def _two_scales_head(tmp_path, joined=False, permuted=False):
    """onnx_graphs.boxes_and_scores, and 100 calibration samples for it."""
    model = tmp_path / ("permuted.onnx" if permuted else "joined.onnx" if joined else "head.onnx")
    onnx.save(onnx_graphs.boxes_and_scores(joined, permuted), model)
    calib = tmp_path / "calib.npz"
    np.savez(calib, x=np.random.default_rng(0).standard_normal((100, 3, 8, 8)).astype(np.float32))
    return model, calib


def test_an_int8_refusal_says_what_keep_float_did(cli, tmp_path):
    """--keep-float auto judges by the whole output's error, which the large channels dominate: it keeps no layer,
    and the refusal says so, where it used to read as if nothing had been tried."""
    model, calib = _two_scales_head(tmp_path)
    out = tmp_path / "q.edgepkg"
    r = cli("package", model, "--quantize", "int8", "--calib", calib, "-o", out)
    assert r.exit_code == 2 and "lost 3 channels (4..6) of axis 1" in r.stderr and not out.exists()
    assert r.stderr.rstrip().endswith("; or keep it float: --keep-float /head/Conv")
    r = cli("package", model, "--quantize", "int8", "--calib", calib, "--keep-float", "auto", "-o", out)
    error = r.stderr.splitlines()[-1]
    assert r.exit_code == 2 and error.startswith("edgeopt: error: ") and "lost 3 channels" in error
    assert "; --keep-float auto kept 0 of 1 layers float: none needed (output error" in error
    r = cli("package", model, "--quantize", "int8", "--calib", calib, "--keep-float", "head", "-o", out, "--json")
    assert r.exit_code == 0, r.stderr
    assert "--keep-float kept 1 layer float: /head/Conv" in r.json()["notes"]


def test_a_concat_making_an_output_stays_float_in_int8(cli, tmp_path):
    """YOLO's head joins boxes (hundreds of pixels) and scores (0-1) in one Concat that makes the output: quantized,
    its one scale rounded every score to 0, and packaging was refused. It is left float now: the INT8 model
    passes, and says so."""
    model, calib = _two_scales_head(tmp_path, joined=True)
    r = cli("package", model, "--quantize", "int8", "--calib", calib, "-o", tmp_path / "j.edgepkg",
            "--json")
    assert r.exit_code == 0, r.stderr
    manifest = r.json()
    assert manifest["compression"]["float_output_joins"] == ["/head/Concat"]
    assert any(n.startswith("/head/Concat left float: a Concat that makes a graph output") for n in manifest["notes"])
    assert manifest["parity"]["passed"] and "lost_channels" not in manifest["parity"]["outputs"][0]
    # YOLOv5's layout: the Concat reshaped and transposed to [1, anchors, 4 + classes] before the output (its scores
    # were quantized away, and parity passed at 38 dB)
    model, calib = _two_scales_head(tmp_path, joined=True, permuted=True)
    r = cli("package", model, "--quantize", "int8", "--calib", calib, "-o", tmp_path / "p.edgepkg", "--json")
    assert r.exit_code == 0, r.stderr
    manifest = r.json()
    assert manifest["compression"]["float_output_joins"] == ["/head/Concat", "/head/Transpose", "/head/Reshape"]
    assert manifest["parity"]["passed"] and "lost_channels" not in manifest["parity"]["outputs"][0]


def test_calibration_file_not_npz(cli, tmp_path):
    bad = tmp_path / "calib.npz"
    bad.write_text("hello")
    r = cli("package", MODEL, "--quantize", "int8", "--calib", bad, "-o", tmp_path / "q.edgepkg")
    assert r.exit_code == 2 and "is not a readable .npz" in r.stderr


def test_parity_failure_blocks_the_bundle_unless_allowed(cli, tmp_path):
    strict = tmp_path / "strict.toml"
    text = (MODEL.parent.parent.parent / "profiles" / "generic.toml").read_text()
    strict.write_text(text.replace("fp16_max_abs_error = 5e-2", "fp16_max_abs_error = 1e-9")
                      .replace('name = "generic"', 'name = "strict"'))   # a profile is named as its file
    out = tmp_path / "h.edgepkg"
    r = cli("package", MODEL, "--profile", strict, "--precision", "fp16", "-o", out)
    assert r.exit_code == 2
    assert "packaged artifact disagrees with its source model: max_abs_error" in r.stderr
    assert "profile allows 1e-09 x its magnitude" in r.stderr and not out.exists()
    r = cli("package", MODEL, "--profile", strict, "--precision", "fp16", "-o", out, "--allow-mismatch", "--json")
    assert r.exit_code == 0
    assert r.json()["parity"]["passed"] is False and r.json()["parity"]["allowed_by"] == "--allow-mismatch"
    assert out.exists()


def test_failed_package_keeps_the_previous_bundle(cli, tmp_path, bundles):
    out = tmp_path / "keep.edgepkg"
    out.write_bytes(bundles["fp32"].read_bytes())
    before = out.read_bytes()
    r = cli("package", MODEL, "--quantize", "int8", "-o", out)
    assert r.exit_code == 2 and out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.edgepkg"]


def test_unknown_budget_key(cli, tmp_path):
    r = cli("package", MODEL, "--budget", "latency_p90=3", "-o", tmp_path / "x.edgepkg")
    assert r.exit_code == 2 and "unknown budget 'latency_p90'; known budgets: latency_p50_ms" in r.stderr


def test_package_api_records_budgets_and_tools(tmp_path):
    m = api.package(str(MODEL), output=tmp_path / "b.edgepkg", budgets={"latency_p90_ms": 3.0})
    assert m["budgets"]["latency_p90_ms"] == 3.0 and m["budgets"]["peak_rss_mb"] == 512.0
    assert {"onnx", "onnxruntime", "edgeopt"} <= set(m["tools"])


def test_overwriting_a_bundle_of_another_profile_needs_force(cli, tmp_path):
    out = tmp_path / "b.edgepkg"
    assert cli("package", MODEL, "-o", out).exit_code == 0
    before = out.read_bytes()
    r = cli("package", MODEL, "--profile", "intel-cpu", "-o", out)
    assert r.exit_code == 2 and out.read_bytes() == before
    assert r.stderr.count("\n") == 1
    assert f"{out}: exists and is a bundle for profile 'generic', not 'intel-cpu'" in r.stderr and "--force" in r.stderr
    r = cli("package", MODEL, "--profile", "intel-cpu", "-o", out, "--force", "--json")
    assert r.exit_code == 0, r.stderr
    assert bundle_manifest(out)["profile"]["name"] == "intel-cpu"


def test_rebuilding_a_bundle_of_the_same_profile_is_allowed(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no -o: the default name, the case that used to be overwritten silently
    r = cli("package", MODEL, "--json")
    assert r.exit_code == 0, r.stderr
    path = tmp_path / r.json()["path"]
    first = bundle_manifest(path)["created"]
    r = cli("package", MODEL, "--json")
    assert r.exit_code == 0, r.stderr
    assert bundle_manifest(path)["created"] != first
    r = cli("package", MODEL, "--profile", "intel-cpu")
    assert r.exit_code == 2 and "bundle for profile 'generic', not 'intel-cpu'" in r.stderr


@pytest.mark.parametrize("content", [b"not a tar", b""])
def test_overwriting_a_file_that_is_not_a_bundle_needs_force(cli, tmp_path, content):
    out = tmp_path / "x.edgepkg"
    out.write_bytes(content)
    r = cli("package", MODEL, "-o", out)
    assert r.exit_code == 2 and out.read_bytes() == content
    assert f"{out}: exists and is not a readable edgeopt bundle" in r.stderr and "--force" in r.stderr
    assert cli("package", MODEL, "-o", out, "--force").exit_code == 0
    assert bundle_manifest(out)["profile"]["name"] == "generic"


def test_a_corrupt_manifest_counts_as_not_a_bundle(cli, tmp_path, bundles):
    out = tmp_path / "c.edgepkg"
    data = bytearray(bundles["fp32"].read_bytes())
    at = data.index(b'"generic"')
    data[at:at + 9] = b'"GENERIC"'  # same length: the tar stays readable, the manifest's digest does not match
    out.write_bytes(bytes(data))
    r = cli("package", MODEL, "-o", out)
    assert r.exit_code == 2 and "is not a readable edgeopt bundle" in r.stderr


def test_a_budget_the_bundle_cannot_measure_is_warned_about(cli, tmp_path):
    r = cli("package", MODEL, "-o", tmp_path / "n.edgepkg", "--budget", "min_top1=0.9", "--json")
    assert r.exit_code == 0, r.stderr
    doc = r.json()  # the warning lives in the document; stdout is nothing but JSON
    warnings = [n for n in doc["notes"] if n.startswith("warning:")]
    assert len(warnings) == 1
    assert "accuracy_drop=0.01, min_top1=0.9 cannot be measured" in warnings[0]
    assert "no eval data" in warnings[0] and "--eval-data" in warnings[0]
    assert bundle_manifest(tmp_path / "n.edgepkg")["notes"] == doc["notes"]
    r = cli("package", MODEL, "-o", tmp_path / "t.edgepkg")
    assert r.exit_code == 0
    assert "warning budget accuracy_drop=0.01 cannot be measured" in " ".join(r.stdout.split())


def test_no_warning_with_labelled_eval_data(cli, tmp_path):
    r = cli("package", MODEL, "--eval-data", EVAL, "-o", tmp_path / "e.edgepkg", "--json")
    assert r.exit_code == 0, r.stderr
    assert not [n for n in r.json()["notes"] if n.startswith("warning")]
    r = cli("package", MODEL, "--eval-data", EVAL, "-o", tmp_path / "e.edgepkg")
    assert r.exit_code == 0 and "cannot be measured" not in " ".join(r.stdout.split())


def test_eval_data_without_labels_is_warned_about(tmp_path):
    data = dict(np.load(EVAL))
    del data["labels"]
    unlabelled = tmp_path / "u.npz"
    np.savez(unlabelled, **data)
    m = api.package(str(MODEL), output=tmp_path / "u.edgepkg", eval_data=unlabelled)
    assert [n for n in m["notes"] if n.startswith("warning:")] == [
        "warning: budget accuracy_drop=0.01 cannot be measured from this bundle (the eval data has no labels): "
        "`edgeopt check` will report it NOT MEASURED and fail; add a 'labels' array to the --eval-data file, or "
        "package with --budget accuracy_drop=none to drop it"]


def test_eval_labels_past_the_models_classes_are_refused(cli, tmp_path):
    """1-based labels, or another dataset's, would read as top-1 0 and a bundle that passes parity."""
    data = dict(np.load(EVAL))
    data["labels"] = data["labels"] + 100
    shifted = tmp_path / "shifted.npz"
    np.savez(shifted, **data)
    out = tmp_path / "s.edgepkg"
    r = cli("package", MODEL, "--eval-data", shifted, "-o", out)
    assert r.exit_code == 2 and not out.exists()
    assert f"eval data file {shifted}: array 'labels' goes up to 109, but the first output" in r.stderr
    assert "has 10 classes (labels are 0..9)" in r.stderr


def test_calibration_labels_past_the_models_classes_are_refused(cli, tmp_path):
    """Without eval data, parity's top-1 reads the calibration labels: out of range, they printed a top-1 of 0
    for source and artifact alike."""
    data = dict(np.load(CALIB))
    data["labels"] = np.full(len(data["image"]), 10)
    labelled = tmp_path / "calib.npz"
    np.savez(labelled, **data)
    out = tmp_path / "c.edgepkg"
    r = cli("package", MODEL, "--quantize", "int8", "--calib", labelled, "-o", out)
    assert r.exit_code == 2 and not out.exists()
    assert r.stderr.strip().splitlines()[-1] == (
        f"edgeopt: error: calibration file {labelled}: array 'labels' goes up to 10, but the first output "
        "'logits' has 10 classes (labels are 0..9)")
    assert "calibrating" not in r.stderr   # refused before any work


def test_calibration_labels_of_a_detector_are_left_alone():
    """Calibration labels feed no accuracy budget: on an output that is no classifier's they are not refused."""
    from edgeopt.pipeline import _check_label_range
    from edgeopt.source import TensorSpec
    _check_label_range(np.arange(500), TensorSpec("detections", [1, 84, 189], "float32"), "calibration file c.npz")


def test_backend_packages_for_another_backend_the_profile_runs(cli, tmp_path):
    """intel-cpu hardware runs ONNX Runtime too: --backend onnxruntime packages for it (its runtime, its own
    INT8 scheme rather than the profile's NNCF one), and the recipe records the choice."""
    out = tmp_path / "ort.edgepkg"
    r = cli("package", MODEL, "--profile", "intel-cpu", "--backend", "onnxruntime", "--quantize", "int8",
            "--calib", CALIB, "-o", out, "--json")
    assert r.exit_code == 0, r.stderr
    m = r.json()
    assert m["profile"] == {"name": "intel-cpu", "backend": "onnxruntime", "precision": "fp32"}
    assert m["runtime"]["name"] == "onnxruntime" and m["recipe"]["package"]["backend"] == "onnxruntime"
    assert m["compression"]["scheme"] == "u8s8"
    refused = cli("package", MODEL, "--profile", "intel-cpu", "--backend", "tflite", "-o", tmp_path / "x.edgepkg")
    assert refused.exit_code == 2 and "--backend tflite: profile 'intel-cpu' runs openvino, onnxruntime" in refused.stderr
    assert not (tmp_path / "x.edgepkg").exists()


def test_eval_labels_are_refused_for_an_output_that_is_no_classifiers():
    """A detector's first output [1, 84, 189]: top-1 over it reads 0 for source and artifact alike, so an
    accuracy_drop budget passed on a detector whose class scores were gone. A classifier exported as
    [1, 10, 1, 1] still takes labels."""
    from edgeopt.errors import BadInput
    from edgeopt.pipeline import _refuse_labels_without_classes
    from edgeopt.source import TensorSpec
    labels, where = np.arange(10), "eval data file e.npz"
    with pytest.raises(BadInput, match=r"eval data file e.npz: array 'labels' is for a classifier, but the first "
                                       r"output 'detections' is \[1, 84, 189\], not \[batch, classes\]"):
        _refuse_labels_without_classes(labels, TensorSpec("detections", [1, 84, 189], "float32"), where)
    _refuse_labels_without_classes(labels, TensorSpec("logits", [1, 10, 1, 1], "float32"), where)


def test_an_accuracy_budget_on_a_detector_is_not_answered_with_add_labels():
    from edgeopt.pipeline import _unmeasurable_budget_notes
    from edgeopt.source import TensorSpec
    (note,) = _unmeasurable_budget_notes({"accuracy_drop": 0.01}, {"images": np.zeros((2, 3))}, None,
                                         TensorSpec("detections", [1, 84, 189], "float32"))
    assert "first output 'detections' is [1, 84, 189], not a classifier's [batch, classes]" in note
    assert "labels" not in note
    # a regression's [batch, 1] was told to add labels, then refused for them (a walkthrough)
    for shape in ([1, 1], [1]):
        (note,) = _unmeasurable_budget_notes({"accuracy_drop": 0.01}, {"x": np.zeros((2, 3))}, None,
                                             TensorSpec("y", shape, "float32"))
        assert f"first output 'y' is {shape}, not a classifier's" in note and "labels" not in note
    (note,) = _unmeasurable_budget_notes({"accuracy_drop": 0.01}, {"x": np.zeros((2, 3))}, None,
                                         TensorSpec("logits", [1, 10], "float32"))
    assert "add a 'labels' array" in note   # a classifier's: labels are the fix


def test_the_table_says_when_the_host_ran_another_precision_than_asked():
    """OpenVINO runs an fp16 hint as bf16 on a CPU that has bf16, and parity judges bf16's tolerance there: the
    table says so, where it said fp16 beside bf16's tolerance."""
    from edgeopt.report.tables import package_rows
    manifest = {"path": "x.edgepkg", "profile": {"name": "intel-cpu", "backend": "openvino", "precision": "fp16"},
                "conversion_seconds": 1.0,
                "compression": {"quantize": "none"}, "files": [],
                "parity": {"metric": "max_abs_error", "max_abs_error": 0.12, "tolerance": 0.2, "samples": 64,
                           "samples_source": "random inputs (seed 0)", "passed": True,
                           "host_inference_precision": "bf16"}}
    rows = dict(package_rows(manifest))
    assert rows["float precision"] == "fp16 (ran as bf16 on this host; parity judged bf16)"
    manifest["parity"]["host_inference_precision"] = "f16"
    assert dict(package_rows(manifest))["float precision"] == "fp16"
    # a PyTorch source's time before the conversion is its export (13 s read as "reading the source")
    manifest.update(intake_seconds=13.39, source={"format": "pytorch-module"})
    assert dict(package_rows(manifest))["conversion"] == "1.00 s (after 13.39 s loading and exporting the source)"
    manifest["source"]["format"] = "onnx"
    assert dict(package_rows(manifest))["conversion"] == "1.00 s (after 13.39 s reading the source)"


def test_a_small_calibration_set_is_warned_about(cli, tmp_path):
    data = dict(np.load(CALIB))
    small = tmp_path / "c16.npz"
    np.savez(small, **{k: v[:16] for k, v in data.items()})
    r = cli("package", MODEL, "--quantize", "int8", "--calib", small, "-o", tmp_path / "q.edgepkg", "--json")
    assert r.exit_code == 0, r.stderr
    assert any(n.startswith("warning: INT8 calibrated on 16 samples (100 or more recommended)") for n in r.json()["notes"])
    r = cli("package", MODEL, "--quantize", "int8", "--calib", CALIB, "-o", tmp_path / "q2.edgepkg", "--json")
    assert not [n for n in r.json()["notes"] if "calibrated on" in n]


@pytest.mark.parametrize("n, budget, said", [
    (1, None, "top-1 is measured on 1 labelled eval sample, so one sample moves it by 1, more than the accuracy_drop "
              "budget 0.01: any changed prediction fails it; 1000 or more samples"),
    (50, "accuracy_drop=0.05", "top-1 is measured on 50 labelled eval samples: one sample moves it by 0.02; 100 or "
                               "more recommended"),
    (360, None, None)])
def test_eval_data_too_small_for_the_accuracy_it_judges_is_warned_of(cli, tmp_path, n, budget, said):
    """A user review packaged with a one-sample eval set and was told nothing: top-1 then moves 1.0 per sample."""
    arrays = dict(np.load(EVAL))
    np.savez(tmp_path / "eval.npz", **{k: v[:n] for k, v in arrays.items()})
    extra = ["--budget", budget] if budget else []
    r = cli("package", MODEL, "--eval-data", tmp_path / "eval.npz", *extra, "-o", tmp_path / "a.edgepkg", "--json")
    assert r.exit_code == 0, r.stderr
    warned = [note for note in r.json()["notes"] if "labelled eval sample" in note]
    assert (len(warned) == 1 and warned[0].startswith(f"warning: {said}")) if said else not warned, warned


def test_a_source_no_better_than_the_commonest_label_is_warned_of(cli, tmp_path):
    """Labels of another task (each digit's label shifted by one here): the source scored 0,
    and a pruned model "met" accuracy_drop 0.01 at 0 % (a user review). The sample's own labels: no warning."""
    arrays = dict(np.load(EVAL))
    np.savez(tmp_path / "wrong.npz", **dict(arrays, labels=(arrays["labels"] + 1) % 10))   # shifted by one
    notes = {}
    for name, data in (("wrong", tmp_path / "wrong.npz"), ("right", EVAL)):
        r = cli("package", MODEL, "--eval-data", data, "-o", tmp_path / f"{name}.edgepkg", "--json")
        assert r.exit_code == 0, r.stderr
        notes[name] = [n for n in r.json()["notes"] if "most common label" in n]
    assert notes["right"] == [] and len(notes["wrong"]) == 1, notes
    top1 = float(notes["wrong"][0].split("top-1 ")[1].split(" ")[0])
    assert top1 <= 0.05 and "no better than always answering its most common label (0.1" in notes["wrong"][0]
    np.savez(tmp_path / "one.npz", **dict(arrays, labels=np.zeros_like(arrays["labels"])))   # one label only
    r = cli("package", MODEL, "--eval-data", tmp_path / "one.npz", "-o", tmp_path / "one.edgepkg", "--json")
    assert any(n.startswith("warning: the eval data holds one label only") for n in r.json()["notes"])
    quiet = cli("package", MODEL, "--eval-data", tmp_path / "one.npz", "-o", tmp_path / "one.edgepkg", "-q")
    assert quiet.exit_code == 0 and quiet.stdout == "" and quiet.stderr.startswith(   # it was lost under -q
        "edgeopt: warning: the eval data holds one label only"), quiet.stderr


def test_data_the_source_model_itself_rejects_is_bad_input(cli, tmp_path, capfd):
    """Token ids past an embedding's vocabulary: ONNX Runtime's INVALID_ARGUMENT was a traceback with exit 1 (a
    user review), which a CI job reads as a failed budget. And --keep-float auto on fp16 with no data at all."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    table = numpy_helper.from_array(np.random.default_rng(0).standard_normal((100, 8)).astype(np.float32), "table")
    graph = helper.make_graph([helper.make_node("Gather", ["table", "ids"], ["vectors"])], "emb",
                              [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 4])],
                              [helper.make_tensor_value_info("vectors", TensorProto.FLOAT, [1, 4, 8])], [table])
    model = tmp_path / "emb.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), model)
    bad = tmp_path / "bad.npz"
    np.savez(bad, ids=np.full((8, 4), 174, dtype=np.int64))
    for args, data in ((["--eval-data", bad], "the eval data"),
                       (["--quantize", "int8", "--calib", bad], "the calibration data"),
                       (["--precision", "fp16", "--calib", bad], "the calibration data")):   # the host hint's feed
        r = cli("package", model, *args, "-o", tmp_path / "e.edgepkg")
        said = [line for line in r.stderr.splitlines() if line.startswith("edgeopt:")]
        assert r.exit_code == 2 and "Traceback" not in r.stderr, r.stderr
        assert len(said) == 1 and f"{data} ({bad}): the source model itself fails on them" in said[0], r.stderr
        # ONNX Runtime's own log of the failing node (in colour, on fd 2, past --quiet) is held back
        assert "onnxruntime" not in capfd.readouterr().err
    from conftest import MODEL
    r = cli("package", MODEL, "--precision", "fp16", "--keep-float", "auto", "-o", tmp_path / "k.edgepkg")
    assert r.exit_code == 2 and "--keep-float auto measures each layer's error on data: give --eval-data" in r.stderr


def test_the_bundle_never_replaces_an_input_even_with_force(cli, tmp_path):
    """`package m.onnx -o m.onnx --force` turned the source model into a tar (a user review): the refusal of a
    non-bundle output named --force as its way out."""
    import shutil
    from conftest import EVAL, MODEL
    model, data = tmp_path / "m.onnx", tmp_path / "eval.npz"
    shutil.copy(MODEL, model)
    shutil.copy(EVAL, data)
    before = model.read_bytes(), data.read_bytes()
    r = cli("package", model, "-o", model, "--force")
    assert r.exit_code == 2 and f"-o {model}: is the model, an input of this package" in r.stderr, r.stderr
    r = cli("package", model, "--eval-data", data, "-o", data, "--force")
    assert r.exit_code == 2 and "is --eval-data, an input of this package" in r.stderr, r.stderr
    assert (model.read_bytes(), data.read_bytes()) == before


def test_a_bundle_name_is_judged_before_any_work(cli, tmp_path):
    """`--name a/b` was refused after packaging by the manifest's check, which named no flag; `--name ' '` was
    taken, and `--name ''` left to the default without a word (a user walkthrough)."""
    for name, said in (("a/b", "--name 'a/b': a bundle name is not a path"),
                       (" ", "--name ' ': give a name with something in it"),
                       ("", "Invalid value for '--name': an empty value: give one, or leave the option out"),
                       ("x\ty", "--name 'x\\ty': a bundle name is at most 200 characters, no control characters"),
                       ("n" * 201, "--name 'nnn")):
        r = cli("package", MODEL, "--name", name, "-o", tmp_path / "n.edgepkg", "-q")
        assert r.exit_code == 2 and r.stderr.startswith(f"edgeopt: error: {said}") and len(r.stderr.splitlines()) == 1
        assert not (tmp_path / "n.edgepkg").exists()


def test_a_bundle_file_name_without_its_suffix_is_refused(cli, tmp_path):
    """`-o out/b` wrote a bundle that inspect called an unknown model format and --recipe a TOML file it could not
    decode, while bench ran it (a user walkthrough)."""
    from conftest import MODEL
    r = cli("package", MODEL, "-o", tmp_path / "b")
    assert r.exit_code == 2 and not (tmp_path / "b").exists()
    assert r.stderr.strip() == (f"edgeopt: error: -o {tmp_path / 'b'}: a bundle's file name ends in .edgepkg "
                                f"(inspect, bench and --recipe know it by that): give {tmp_path / 'b'}.edgepkg")


def test_a_source_no_artifact_can_be_judged_against_is_named_not_the_conversion(cli, tmp_path):
    """A source that outputs NaN, or other outputs for the same input (dropout left in training mode), read as
    "the packaged artifact disagrees with its source model", blaming the conversion (a user walkthrough)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def model(name, nodes, initializers):
        graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], initializers)
        path = tmp_path / f"{name}.onnx"
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
        return path
    nan = model("nan", [helper.make_node("Add", ["x", "b"], ["y"])],
                [numpy_helper.from_array(np.array([0, np.nan, 0, 0], np.float32), "b")])
    noisy = model("noisy", [helper.make_node("RandomNormalLike", ["x"], ["n"]), helper.make_node("Add", ["x", "n"],
                                                                                                 ["y"])], [])
    for path, said in ((nan, "itself outputs NaN (output 0) on the random inputs (seed 0): nothing can be compared"),
                       (noisy, "gives other outputs for the same input on a second run (max abs difference ")):
        r = cli("package", path, "-o", tmp_path / "p.edgepkg")
        assert r.exit_code == 2 and f"edgeopt: error: the source model ({path}) {said}" in r.stderr, r.stderr
        assert "disagrees" not in r.stderr and not (tmp_path / "p.edgepkg").exists()


@pytest.mark.parametrize("model, name", [
    ("net.py:build", "net-fp32"), ("nets.py:lstm", "nets-lstm-fp32"), ("dir/nets.py:two_io", "nets-two_io-fp32"),
    ("torchvision.models:mobilenet_v2", "mobilenet_v2-fp32"), ("a/model.onnx", "model-fp32"), ("m.pt2", "m-fp32")])
def test_the_default_bundle_name_tells_two_callables_of_one_file_apart(model, name):
    """nets.py:lstm and nets.py:two_io were both nets-fp32: the second bundle replaced the first without a word, and
    the regression gate compared the two models (a user walkthrough). `build`, the usual callable, adds nothing."""
    from edgeopt.pipeline import _default_name
    assert _default_name(model, "fp32", "none") == name


def test_int8_leaves_the_root_logger_without_a_handler(tmp_path):
    """ONNX Runtime's quantizer calls logging.warning(), which gives the root logger a stderr handler for good:
    paramiko's tracebacks of a hung device then reached stderr past --json in a study (a fleet walkthrough)."""
    code = ("import logging, sys; from edgeopt import api; "
            "api.package(sys.argv[1], 'generic', sys.argv[2], quantize='int8', calib=sys.argv[3]); "
            "print(len(logging.getLogger().handlers))")
    p = subprocess.run([sys.executable, "-c", code, str(MODEL), str(tmp_path / "m.edgepkg"), str(CALIB)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and p.stdout.strip().splitlines()[-1] == "0", p.stdout + p.stderr


def test_calibration_and_eval_data_scaled_apart_are_said():
    """Raw 0-255 images calibrated INT8 beside normalised eval data: packaged without a word while SQNR halved (a
    walkthrough). Data of one scale, or a float bundle that calibrates nothing, says nothing."""
    from edgeopt.pipeline import _scales_apart
    from edgeopt.source import TensorSpec
    rng = np.random.default_rng(0)
    inputs = [TensorSpec("image", [1, 3, 8, 8], "float32"), TensorSpec("ids", [1, 4], "int64")]
    raw = {"image": rng.integers(0, 256, (32, 3, 8, 8)).astype(np.float32), "ids": np.zeros((32, 4), np.int64)}
    normalised = {"image": rng.standard_normal((32, 3, 8, 8)).astype(np.float32), "ids": np.ones((32, 4), np.int64)}
    (note,) = _scales_apart(raw, normalised, inputs, True)
    assert note.startswith("warning: input 'image' spans 0..255 in --calib and ") and "x apart in spread" in note
    assert _scales_apart(normalised, {"image": normalised["image"] * 2}, inputs, True) == []
    assert _scales_apart(raw, normalised, inputs, False) == []   # dynamic INT8, a float bundle: nothing calibrated
    assert _scales_apart(raw, None, inputs, True) == []


def test_a_bundle_written_by_another_process_meanwhile_is_judged_as_if_it_was_there(tmp_path, monkeypatch):
    """Two `package -o same` at once, for two profiles, both said done and the last one's bundle was kept: each
    checked for the output before its work and found none (a walkthrough). Where it appears meanwhile, it is
    judged as it would have been at the start: another profile's is refused, the same profile's rebuilt."""
    from edgeopt import atomic, pipeline
    from edgeopt.errors import BadInput
    out = tmp_path / "same.edgepkg"
    real = atomic._put_new

    def another_got_there_first(tmp, path):   # the other process's bundle lands while this one packages
        api.package(str(MODEL), "intel-cpu", path, force=True)   # forced: it writes by a rename, not by this
        real(tmp, path)
    monkeypatch.setattr(atomic, "_put_new", another_got_there_first)
    with pytest.raises(BadInput, match=r"is a bundle for profile 'intel-cpu', not 'generic'; refusing to overwrite "
                                       r"it .*; another process wrote it while this one packaged"):
        api.package(str(MODEL), "generic", out)
    assert pipeline._existing_profile(out) == "intel-cpu"   # the other's bundle kept whole
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    out.unlink()
    monkeypatch.setattr(atomic, "_put_new", lambda tmp, path: (api.package(str(MODEL), "generic", path, force=True),
                                                                real(tmp, path)))
    assert api.package(str(MODEL), "generic", out)["profile"]["name"] == "generic"   # the same profile: rebuilt
