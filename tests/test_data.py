"""Calibration and eval data: the two sample forms, the total .npz reader, and a state/scalar model packaged
and benchmarked end to end."""
import zipfile

import numpy as np
import pytest

from conftest import FAST_BENCH_ARGS, MODEL, bundle_member
from device_agent import samples
from edgeopt.data import load_samples, random_samples, run, to_layouts
from edgeopt.errors import BadInput
from edgeopt.source import TensorSpec
from sample_models import INPUTS, SR, stacked_samples, write_model

SPECS = [TensorSpec(name, list(shape), np.dtype(dtype).name) for name, (shape, dtype) in INPUTS.items()]


@pytest.fixture(scope="module")
def state_model(tmp_path_factory):
    return write_model(tmp_path_factory.mktemp("model") / "state.onnx")


def _load(tmp_path, arrays, specs=SPECS):
    path = tmp_path / "s.npz"
    np.savez(path, **arrays)
    return load_samples(path, specs, "calibration")


# --- the rule, in device_agent/samples.py ---

def test_forms_are_told_apart_by_rank():
    assert samples.form((5,), ()) == samples.STACKED                      # a scalar input: one value a sample
    assert samples.form((5, 2, 1, 16), (2, 1, 16)) == samples.STACKED
    assert samples.form((5, 1, 16), (2, 1, 16)) == samples.ROWS           # fits, but see plan below
    assert samples.form((5, 1, 8, 8), (1, 1, 8, 8)) == samples.ROWS
    assert samples.form((5, 1), ()) is None and samples.form((), ()) is None
    assert samples.form((5, 2, 16), (2, 1, 16)) is None


def test_plan_refuses_rows_that_are_not_the_batch():
    specs = [(name, shape) for name, (shape, _) in INPUTS.items()]
    forms, batch = samples.plan({"image": (4, 1, 8, 8), "state": (4, 2, 1, 16), "sr": (4,)}, specs)
    assert forms == {"image": "rows", "state": "stacked", "sr": "stacked"} and batch == 1
    with pytest.raises(samples.SampleError, match=r"array 'state' has shape \(4, 1, 16\).*give it stacked: "
                                                  r"\(N, 2, 1, 16\)"):
        samples.plan({"image": (4, 1, 8, 8), "state": (4, 1, 16), "sr": (4,)}, specs)
    with pytest.raises(samples.SampleError, match=r"array 'sr' has shape \(4, 1\); model input 'sr' expects "
                                                  r"\(N,\) \(a scalar input"):
        samples.plan({"image": (4, 1, 8, 8), "state": (4, 2, 1, 16), "sr": (4, 1)}, specs)
    # a batch-4 input given as rows beside a stacked one: one call cannot take 4 of one and 1 of the other
    with pytest.raises(samples.SampleError, match="beside stacked input"):
        samples.plan({"x": (8, 3), "sr": (8,)}, [("x", (4, 3)), ("sr", ())])


def test_an_output_whose_length_varies_is_merged_as_rows_call_after_call_as_the_host_does():
    """Detections after NMS: 2, 0 and 3 rows in three calls, merged as the host's parity merges its references."""
    from edgeopt.parity import _rows, _row_axis

    counts = iter([2, 0, 3])
    def infer(feed):
        n = next(counts)
        return [np.full((n, 3), feed["x"][0, 0], np.int64), feed["x"] * 2]
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    forms, batch = samples.plan({"x": x.shape}, [("x", (1, 2))])
    selected, doubled = samples.run(infer, {"x": x}, forms, batch)
    assert selected.shape == (5, 3) and selected[:, 0].tolist() == [0, 0, 4, 4, 4]
    assert np.array_equal(doubled, x * 2)
    calls = [np.zeros((2, 3)), np.zeros((0, 3)), np.zeros((3, 3))]
    host = np.concatenate([_rows(a, _row_axis([a.shape for a in calls])) for a in calls])
    assert samples.rows_in_sequence(calls).shape == host.shape == (5, 3)
    with pytest.raises(samples.SampleError, match="changes rank"):
        samples.rows_in_sequence([np.zeros((2, 3)), np.zeros((2,))])


def test_rows_of_a_fixed_batch_pad_the_tail_and_trim_outputs():
    x = np.arange(10, dtype=np.float32).reshape(5, 2)
    forms, batch = samples.plan({"x": x.shape}, [("x", (4, 2))])
    calls = list(samples.calls({"x": x}, forms, batch))
    assert [(start, size) for start, size, _ in calls] == [(0, 4), (4, 1)]
    assert np.array_equal(calls[1][2]["x"], np.repeat(x[4:], 4, axis=0))    # padded with its last sample
    assert len(list(samples.calls({"x": x}, forms, batch, pad=False))) == 1
    out = samples.run(lambda feed: [feed["x"] * 2, feed["x"].sum()], {"x": x}, forms, batch)
    assert np.array_equal(out[0], x * 2)          # batch-led output: concatenated, padding trimmed
    assert out[1].shape == (2,)                   # a scalar output: one per call, stacked


def test_sample_of_a_scalar_input_is_an_array():
    sr = np.array([8000, 16000])
    got = samples.sample(sr, samples.STACKED, 1)
    assert isinstance(got, np.ndarray) and got.shape == () and got == 16000   # runtimes refuse numpy scalars


@pytest.mark.parametrize("with_eval", [True, False], ids=["eval-sample", "random"])
def test_the_agents_timed_feed_has_each_inputs_recorded_shape(tmp_path, with_eval):
    """The feed bench times on: a scalar stays 0-d (it was (1,): LiteRT refused it, exit 3), a state keeps its
    shape, every array C-contiguous."""
    from device_agent.measure.run import example_feed

    manifest = {"inputs": [s.to_dict() for s in SPECS]}
    if with_eval:
        (tmp_path / "data").mkdir()
        np.savez(tmp_path / "data" / "eval.npz", **stacked_samples(3))
        manifest["data"] = {"eval": {"path": "data/eval.npz", "samples": 3}}
    feed, source = example_feed(manifest, str(tmp_path))
    assert source == ("eval sample" if with_eval else "random, seed 0")
    assert {k: (v.shape, v.dtype) for k, v in feed.items()} == {n: (s, np.dtype(d)) for n, (s, d) in INPUTS.items()}
    assert all(isinstance(v, np.ndarray) and v.flags.c_contiguous for v in feed.values())


# --- the reader ---

def test_stacked_file_reads_and_casts(tmp_path):
    got = _load(tmp_path, stacked_samples(6))
    assert got["image"].dtype == np.float32 and got["image"].shape == (6, 1, 1, 8, 8)
    assert got["sr"].shape == (6,) and got["labels"].dtype == np.int64
    got = _load(tmp_path, dict(stacked_samples(6), sr=np.full(6, 16000.0)))   # whole numbers: an exact cast
    assert got["sr"].dtype == np.int64 and np.all(got["sr"] == 16000)
    rows = dict(stacked_samples(6), image=stacked_samples(6)["image"][:, 0], labels=np.arange(6, dtype=np.uint8))
    got = _load(tmp_path, rows)                   # image as rows (today's form) beside stacked inputs
    assert got["image"].shape == (6, 1, 8, 8) and got["labels"].dtype == np.int64


@pytest.mark.parametrize("change, message", [
    ({"image": np.full((6, 1, 1, 8, 8), np.nan)}, "array 'image' has NaN values (first at sample 0)"),
    ({"state": np.where(np.arange(6)[:, None, None, None] == 3, np.inf, np.zeros((6, 2, 1, 16)))},
     "array 'state' has Inf values (first at sample 3)"),
    ({"image": np.full((6, 1, 1, 8, 8), 1e300)}, "array 'image' has values beyond the range of the input's float32"),
    ({"sr": np.full(6, 16000.5)}, "array 'sr' is float64 with fractions (first at sample 0), input expects int64"),
    ({"sr": np.full(6, 1e19)}, "array 'sr' holds values 10000000000000000000..10000000000000000000, beyond"),
    ({"sr": np.full(6, 2 ** 63, np.uint64)}, "array 'sr' holds values 9223372036854775808..9223372036854775808"),
    ({"sr": np.full(6, "16k")}, "array 'sr' is <U3, input expects int64"),
    ({"image": np.zeros((6, 1, 1, 8, 8), np.complex64)}, "array 'image' is complex64, input expects float32"),
    ({"image": np.full((6, 1, 1, 8, 8), 2 ** 40 + 1, np.int64)}, "array 'image' (int64) has integers float32 cannot"),
    ({"state": np.zeros((6, 1, 16), np.float32)}, "array 'state' has shape (6, 1, 16), samples along the first"),
    ({"state": np.zeros((5, 2, 1, 16), np.float32)}, "arrays disagree on the sample count (first axis)"),
    ({"labels": np.zeros((6, 1), np.int64)}, "array 'labels' is int64 of shape (6, 1); labels must be 1-D"),
    ({"labels": np.zeros(6, np.float32)}, "array 'labels' is float32 of shape (6,); labels must be 1-D integer"),
    ({"labels": np.array(["cat"] * 6)}, "array 'labels' is <U3 of shape (6,)"),
    ({"labels": np.full(6, -1)}, "array 'labels' holds -1..-1; labels are class indices"),
    ({"extra": np.zeros(6)}, "array(s) 'extra' match no model input (inputs: 'image', 'state', 'sr'"),
])
def test_malformed_arrays_are_refused_by_name(tmp_path, change, message):
    arrays = dict(stacked_samples(6), **change)
    with pytest.raises(BadInput) as e:
        _load(tmp_path, arrays)
    assert message in str(e.value) and str(tmp_path / "s.npz") in str(e.value) and "\n" not in str(e.value)


def test_a_single_input_takes_its_one_array_under_any_name_and_errors_name_the_files_array(tmp_path):
    spec = [TensorSpec("input", [1, 1, 8, 8], "float32")]
    got = _load(tmp_path, {"pixels": np.zeros((4, 1, 8, 8), np.float32)}, spec)
    assert list(got) == ["input"] and got["input"].shape == (4, 1, 8, 8)
    with pytest.raises(BadInput, match="array 'pixels' has shape .4, 3, 8, 8.; model input 'input' expects"):
        _load(tmp_path, {"pixels": np.zeros((4, 3, 8, 8), np.float32)}, spec)


def test_zero_samples_and_missing_inputs(tmp_path):
    with pytest.raises(BadInput, match="holds zero samples"):
        _load(tmp_path, {k: v[:0] for k, v in stacked_samples(3).items()})
    with pytest.raises(BadInput, match="no array for input.s. sr; it has 'image', 'state'"):
        _load(tmp_path, {k: v for k, v in stacked_samples(3).items() if k != "sr"})
    with pytest.raises(BadInput, match="no array for input.s. image, state, sr; it has only 'labels'"):   # not
        _load(tmp_path, {"labels": np.zeros(3, np.int64)})                                               # "no arrays"


def test_files_that_are_not_npz(tmp_path):
    spec = [TensorSpec("image", [1, 1, 8, 8], "float32")]
    npy = tmp_path / "calib.npz"
    np.save(tmp_path / "a.npy", np.zeros((3, 1, 8, 8), np.float32))
    npy.write_bytes((tmp_path / "a.npy").read_bytes())
    with pytest.raises(BadInput, match="is a .npy .one unnamed array., not an .npz"):
        load_samples(npy, spec, "calibration")
    np.savez(tmp_path / "obj.npz", image=np.array([object()] * 3))
    with pytest.raises(BadInput, match="array 'image' holds Python objects .a pickle."):
        load_samples(tmp_path / "obj.npz", spec, "calibration")
    with zipfile.ZipFile(tmp_path / "text.npz", "w") as z:
        z.writestr("notes.txt", "hello")
    with pytest.raises(BadInput, match="member 'notes.txt' is not a .npy array"):
        load_samples(tmp_path / "text.npz", spec, "calibration")
    with pytest.raises(BadInput, match="is not a file"):
        load_samples(tmp_path, spec, "calibration")


def test_stacked_arrays_keep_the_sample_axis_through_a_layout_change():
    perm = {"image": {"perm": [0, 2, 3, 1]}}
    stacked = np.zeros((5, 1, 3, 8, 9))
    assert to_layouts({"image": stacked}, perm)["image"].shape == (5, 1, 8, 9, 3)
    assert to_layouts({"image": stacked[:, 0]}, perm)["image"].shape == (5, 8, 9, 3)


def test_random_parity_samples_fit_a_state_model():
    arrays = random_samples(SPECS, 4)
    assert {k: v.shape for k, v in arrays.items()} == {"image": (4, 1, 1, 8, 8), "state": (4, 2, 1, 16), "sr": (4,)}
    seen = []
    run(lambda feed: seen.append({k: v.shape for k, v in feed.items()}) or [np.zeros((1, 10))], arrays, SPECS)
    assert seen == [{"image": (1, 1, 8, 8), "state": (2, 1, 16), "sr": ()}] * 4


def test_existing_rows_files_still_read(tmp_path):
    got = load_samples(MODEL.parent / "digits_eval.npz", [TensorSpec("image", [1, 1, 8, 8], "float32")], "eval data")
    assert got["image"].shape == (360, 1, 8, 8) and got["labels"].shape == (360,)


# --- end to end: a state + scalar model packaged, checked and benchmarked ---

@pytest.mark.parametrize("profile", ["generic", "intel-cpu"])
def test_a_scalar_input_benches_through_every_pass(cli, tmp_path, state_model, agent_cache, profile):
    """The timed feed, the throughput pass and the layer profile take the scalar 0-d: OpenVINO refused the (1,)
    the agent made of it, and both passes were recorded unavailable (ONNX Runtime lets a (1,) pass)."""
    np.savez(tmp_path / "eval.npz", **stacked_samples(8, seed=3))
    out = tmp_path / "state.edgepkg"
    r = cli("package", state_model, "--profile", profile, "--eval-data", tmp_path / "eval.npz", "-o", out, "-q")
    assert r.exit_code == 0, r.stderr
    r = cli("bench", out, "--device", "local", "--results-dir", tmp_path / "results", "--throughput",
            "--profile-layers", *FAST_BENCH_ARGS, "--json")
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    assert doc["latency"]["input"] == "eval sample" and doc["accuracy"]["n"] == 8
    assert doc["throughput"].get("reason") is None and doc["throughput"]["fps"] > 0
    assert doc["layer_profile"].get("reason") is None and doc["layer_profile"]["available"]


@pytest.mark.slow
def test_state_and_scalar_model_packages_and_reports_accuracy(cli, tmp_path, state_model):
    np.savez(tmp_path / "calib.npz", **stacked_samples(48, seed=2, labels=False))
    np.savez(tmp_path / "eval.npz", **stacked_samples(40, seed=3))
    out = tmp_path / "state.edgepkg"
    # static: the calibration reader is what this test is about (auto would take dynamic on this MatMul model)
    r = cli("package", state_model, "--profile", "generic", "--quantize", "int8", "--calib", tmp_path / "calib.npz",
            "--eval-data", tmp_path / "eval.npz", "--backend-option", "int8_method=static", "-o", out, "--json")
    assert r.exit_code == 0, r.stderr
    m = r.json()
    # random weights, labels its own argmax: near-tied logits, judged by SQNR (edgeopt/parity.py, _robust_share)
    assert m["parity"]["passed"] and m["parity"]["samples"] == 40 and m["parity"]["metric"] == "sqnr_db"
    assert m["compression"]["calibration"]["samples"] == 48 and m["source"]["accuracy"] == {"top1": 1.0, "n": 40}
    with open(tmp_path / "shipped.npz", "wb") as f:
        f.write(bundle_member(out, "data/eval.npz"))
    shipped = np.load(tmp_path / "shipped.npz")
    assert shipped["sr"].shape == (40,) and shipped["ref:new_state"].shape == (40, 2, 1, 16)
    assert shipped["ref:logits"].shape == (40, 10)
    r = cli("bench", out, "--device", "local", "--results-dir", tmp_path / "results", *FAST_BENCH_ARGS, "--json")
    assert r.exit_code == 0, r.stderr
    acc = r.json()["accuracy"]
    assert acc["n"] == 40 and acc["top1"] >= 0.95 and acc["source_top1"] == 1.0
    assert 0 < acc["max_abs_error"] < 1.0     # int8 against the float source, over both outputs
    assert np.all(shipped["sr"] == SR)
