"""The device agent's OpenVINO adapter: a real subprocess, real OpenVINO, settings read back."""
import numpy as np
import pytest

from conftest import EVAL, FAST_BENCH_ARGS
from device_agent import AgentError
from device_agent.runtimes.openvino import OpenVinoAdapter
from edgeopt.report.tables import bench_rows
from sample_models import INPUTS, SR, write_model


def test_bench_an_openvino_bundle_through_the_cli(cli, ov_bundles, tmp_path, agent_cache):
    r = cli("bench", ov_bundles["fp32"]["path"], "--device", "local", "--results-dir", tmp_path / "results", "--json",
            *FAST_BENCH_ARGS)
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    rt = doc["runtime"]
    assert rt["name"] == "openvino" and rt["version"]
    # What the compiled model says it uses, not what was asked: real f32, latency hint, one stream.
    assert rt["inference_precision"] == "f32" and rt["performance_hint"] == "LATENCY" and rt["num_streams"] == 1
    assert rt["inference_num_threads"] == doc["settings"]["threads"] == rt["threads"]
    assert set(rt["execution_precisions"]) <= {"f32", "i32", "i64"}  # nothing ran in bf16
    assert rt["compile_ms"] > 0 and rt["model_cache"] == {"enabled": True, "dir": rt["model_cache"]["dir"], "hit": False}
    assert rt["model_cache"]["dir"].startswith(str(agent_cache))
    lat = doc["latency"]
    assert lat["load_ms"] >= rt["compile_ms"] * 0.5 and lat["first_inference_ms"] > 0 and lat["n"] >= 50
    acc = doc["accuracy"]
    assert acc["n"] == 360 and acc["top1"] > 0.95 and abs(acc["drop"]) <= 0.01 and acc["max_abs_error"] < 1e-3
    rows = dict(bench_rows(doc))  # the terminal table says what ran, too
    assert "LATENCY hint, 1 stream(s), inference precision f32" in rows["runtime settings"]


def test_threads_openvino_did_not_run_are_said(cli, ov_bundles, tmp_path):
    """OpenVINO caps its threads at the CPUs it finds: `--threads` above them recorded and showed the count asked,
    and warned of threads waiting for each other that never ran (a review, on a 2-CPU host)."""
    import os

    asked = 2 * (os.cpu_count() or 1)
    r = cli("bench", ov_bundles["fp32"]["path"], "--results-dir", tmp_path / "results", "--json", "--threads",
            str(asked), *FAST_BENCH_ARGS)
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    ran = doc["runtime"]["inference_num_threads"]
    assert doc["settings"]["threads"] == asked and isinstance(ran, int) and 0 < ran < asked
    assert f"{asked} threads asked, {ran} ran (the runtime's own count, read back)" in " ".join(doc["warnings"])
    assert not any("wait for each other" in w for w in doc["warnings"]) or ran > os.cpu_count()
    assert dict(bench_rows(doc))["runtime"].endswith(f"{asked} threads (command line), {ran} ran")


def test_int8_bundle_runs_in_int8_and_the_second_run_hits_the_cache(cli, ov_bundles, tmp_path, agent_cache):
    runs = []
    for _ in range(2):
        r = cli("bench", ov_bundles["int8"]["path"], "--results-dir", tmp_path / "results", "--json", "--threads", "1",
                *FAST_BENCH_ARGS)
        assert r.exit_code == 0, r.stderr
        runs.append(r.json())
    first, second = (d["runtime"] for d in runs)
    assert first["model_cache"]["hit"] is False and second["model_cache"]["hit"] is True
    assert first["inference_num_threads"] == 1 and first["inference_precision"] == "f32"
    assert {"u8", "i8"} & set(first["execution_precisions"])
    assert abs(runs[0]["accuracy"]["drop"]) <= 0.01


def test_lean_timed_call_reads_the_bound_input(ov_bundles, tmp_path, agent_cache):
    """bind() fills the request's input once; the timed call then runs on it without copying."""
    import tarfile
    with tarfile.open(ov_bundles["fp32"]["path"]) as tar:
        tar.extractall(tmp_path, filter="data")
    adapter = OpenVinoAdapter(1, ov_bundles["fp32"]["runtime"]["options"])
    adapter.load(str(tmp_path / "model" / "model.xml"))
    sample = np.load(EVAL)["image"][:1].astype(np.float32)
    timed = adapter.bind({"image": sample})
    timed()
    bound = adapter.request.get_output_tensor(0).data.copy()
    assert np.allclose(bound, adapter.infer({"image": sample})[0], atol=1e-6)
    described = adapter.describe()
    assert described["properties"]["INFERENCE_NUM_THREADS"] == 1 and described["inference_precision"] == "f32"
    adapter.close()


def test_throughput_hint_is_passed_and_read_back(ov_bundles, tmp_path, agent_cache):
    import tarfile
    with tarfile.open(ov_bundles["fp32"]["path"]) as tar:
        tar.extractall(tmp_path, filter="data")
    options = dict(ov_bundles["fp32"]["runtime"]["options"], performance_hint="THROUGHPUT", model_cache=False)
    adapter = OpenVinoAdapter(2, options)
    adapter.load(str(tmp_path / "model" / "model.xml"))
    described = adapter.describe()
    assert described["performance_hint"] == "THROUGHPUT" and described["num_streams"] >= 1
    assert described["model_cache"] == {"enabled": False, "reason": "turned off in the bundle"}
    adapter.close()


def test_a_hint_given_in_lower_case_is_taken_as_openvino_spells_it(cli, ov_bundles, tmp_path, agent_cache):
    """package --performance-hint and `profiles show` spell it throughput; bench --runtime-option
    performance_hint=throughput was refused as not one of LATENCY, THROUGHPUT, ... (a user walkthrough)."""
    r = cli("bench", ov_bundles["fp32"]["path"], "--results-dir", tmp_path / "results", "--json", *FAST_BENCH_ARGS,
            "--runtime-option", "performance_hint=throughput")
    assert r.exit_code == 0, r.stderr
    assert r.json()["settings"]["runtime_options"] == {"performance_hint": "THROUGHPUT"}
    wrong = cli("bench", ov_bundles["fp32"]["path"], "--results-dir", tmp_path / "results", *FAST_BENCH_ARGS,
                "--runtime-option", "performance_hint=fastest")
    assert wrong.exit_code == 2 and "must be one of LATENCY, THROUGHPUT, CUMULATIVE_THROUGHPUT" in wrong.stderr


def test_bind_refuses_a_feed_of_another_shape_instead_of_broadcasting_it(tmp_path, agent_cache):
    """numpy would broadcast a (1,) feed into a scalar input's buffer (or one value over a whole image):
    the timed loop then ran on other data than the accuracy pass, whose infer() refuses that shape."""
    adapter = OpenVinoAdapter(1, {"model_cache": False})
    adapter.load(str(write_model(tmp_path / "state.onnx")))
    feed = {name: np.zeros(shape, dtype) for name, (shape, dtype) in INPUTS.items()}
    adapter.bind(dict(feed, sr=np.array(SR, np.int64)))()
    with pytest.raises(AgentError, match=r"input 'sr': the feed has shape \[1\], the compiled model takes \[\]"):
        adapter.bind(dict(feed, sr=np.array([SR], np.int64)))
    adapter.close()
