"""Throughput (FPS) and the per-layer profile: real runtimes through `edgeopt bench` on `local`, the
figures checked against their own counts, and the result fields' readers (old results, malformed ones)."""
import json
import tarfile
import threading
import time

import pytest

from conftest import FAST_BENCH_ARGS, FAST_LOOP, MODEL, write_inventory
from device_agent.measure import layers, throughput
from device_agent.measure.latency import LoopSettings
from edgeopt import api, results
from edgeopt.errors import BadInput


def _fps_from_counts(t):
    """FPS is the completed count over the wall time of the timed part, and the count met the loop's rule."""
    assert t["available"] is True and t["fps"] > 0
    assert t["fps"] == pytest.approx(t["completed"] / t["duration_s"], rel=1e-12)
    if t["stopped_by"] == "max_iterations":  # a tiny model on a fast CPU
        assert t["completed"] >= FAST_LOOP["max_iterations"]
    else:
        assert t["stopped_by"] == "min_iterations_and_duration"
        assert t["completed"] >= FAST_LOOP["min_iterations"] and t["duration_s"] >= FAST_LOOP["min_seconds"]


def _shares_add_up(p):
    assert p["available"] is True and p["layers"] and p["runs"] == min(layers.PROFILE_RUNS, FAST_LOOP["min_iterations"])
    assert sum(x["share_pct"] for x in p["layers"]) + p["others"]["share_pct"] == pytest.approx(100.0, abs=1e-6)
    assert sum(x["mean_ms"] for x in p["layers"]) + p["others"]["mean_ms"] == pytest.approx(p["total_ms"], rel=1e-9)
    assert p["layer_count"] == len(p["layers"]) + p["others"]["count"]
    assert [x["mean_ms"] for x in p["layers"]] == sorted((x["mean_ms"] for x in p["layers"]), reverse=True)


def _unpack(bundle, into):
    with tarfile.open(bundle) as tar:
        tar.extractall(into, filter="data")
    return json.loads((into / "manifest.json").read_text())


@pytest.fixture(scope="module")
def ort_measured(bundles, tmp_path_factory):
    return api.bench(bundles["fp32"], "local", tmp_path_factory.mktemp("results"),
                     loop=dict(FAST_LOOP, throughput=True, profile_layers=True))


def test_onnxruntime_concurrent_fps_and_layers_of_the_executed_graph(ort_measured, bundles, tmp_path):
    doc = ort_measured
    t = doc["throughput"]
    _fps_from_counts(t)
    threads = doc["settings"]["threads"]
    assert t["concurrency"] == threads and t["threads_per_run"] == 1 and t["asked_by"] == "--throughput"
    assert doc["settings"]["passes"] == {"throughput": True, "profile_layers": True}
    p = doc["layer_profile"]
    _shares_add_up(p)
    # The names are those of the graph ORT ran: the same file optimized with the same settings.
    import onnx
    import onnxruntime as ort
    manifest = _unpack(bundles["fp32"], tmp_path)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads
    so.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(tmp_path / manifest["model"]), so, providers=["CPUExecutionProvider"])
    names = {n.name for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node}
    assert {x["name"] for x in p["layers"]} <= names


def test_openvino_throughput_hint_measures_fps_with_async_requests(cli, tmp_path, agent_cache):
    bundle = tmp_path / "ov-t.edgepkg"
    r = cli("package", MODEL, "--profile", "intel-cpu", "--performance-hint", "throughput", "-o", bundle, "--json")
    assert r.exit_code == 0, r.stderr
    r = cli("bench", bundle, "--results-dir", tmp_path / "results", "--json", "--profile-layers", *FAST_BENCH_ARGS)
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    t = doc["throughput"]
    _fps_from_counts(t)  # no --throughput: the bundle's hint asked for it
    assert t["asked_by"] == "the bundle's performance hint" and t["method"].startswith("AsyncInferQueue")
    assert t["performance_hint"] == "THROUGHPUT" and t["concurrency"] >= 1 and t["request_latency_median_ms"] > 0
    p = doc["layer_profile"]
    _shares_add_up(p)
    from device_agent.runtimes.openvino import OpenVinoAdapter
    manifest = _unpack(bundle, tmp_path / "unpacked")
    adapter = OpenVinoAdapter(doc["settings"]["threads"], manifest["runtime"]["options"])
    adapter.load(str(tmp_path / "unpacked" / manifest["model"]))
    executed = {op.get_friendly_name() for op in adapter.compiled.get_runtime_model().get_ops()}
    assert {x["name"] for x in p["layers"]} <= executed
    assert {x["op_type"] for x in p["layers"]} & {"Convolution", "FullyConnected"}
    saved = results.load(doc["_path"])  # the reader takes what the agent wrote
    assert saved["throughput"]["fps"] == t["fps"]


def test_litert_one_interpreter_per_run_and_no_profiler(tmp_path):
    m = api.package(str(MODEL), "raspberry-pi-5", tmp_path / "pi.edgepkg", "fp32", "none")
    doc = api.bench(m["path"], "local", tmp_path / "results", threads=2,
                    loop=dict(FAST_LOOP, throughput=True, profile_layers=True))
    t = doc["throughput"]
    _fps_from_counts(t)
    assert t["concurrency"] == 2 and "one interpreter each" in t["method"]
    assert doc["layer_profile"]["available"] is False and "no per-op profiler" in doc["layer_profile"]["reason"]


def test_the_flags_reach_the_agent_over_ssh_in_a_fleet(cli, lab, bundles, tmp_path):
    device = lab.devices.get("fps-0") or lab.add("fps-0", 90)
    inv = write_inventory(tmp_path / "fleet.yaml", lab, [device])
    r = cli("fleet", "bench", bundles["fp32"], "--inventory", inv, "--known-hosts", lab.known_hosts,
            "--results-dir", tmp_path / "results", *FAST_BENCH_ARGS, "--throughput", "--profile-layers", "--json")
    assert r.exit_code in (0, 1), r.stderr  # 1: a budget of the generic profile may miss; the device answered
    doc = r.json()["documents"]["fps-0"]
    assert doc["throughput"]["asked_by"] == "--throughput" and doc["throughput"]["fps"] > 0
    assert doc["layer_profile"]["available"] is True


def test_not_asked_is_absent_with_the_reason_and_fails_a_budget(bundles, tmp_path, cli):
    doc = api.bench(bundles["fp32"], "local", tmp_path / "results", loop=FAST_LOOP)
    assert doc["throughput"] == {"available": False, "reason": throughput.NOT_ASKED}
    assert doc["layer_profile"] == {"available": False, "reason": layers.NOT_ASKED}
    r = cli("check", doc["_path"], "--budget", "throughput_fps=1", "--json")
    row = next(b for b in r.json()["results"][0]["budgets"] if b["budget"] == "throughput_fps")
    assert r.exit_code == 1 and row["status"] == "unmeasured" and row["reason"] == throughput.NOT_ASKED


def test_throughput_streams_sets_the_runs_in_flight_and_is_said_unused_without_the_pass(bundles, tmp_path):
    doc = api.bench(bundles["fp32"], "local", tmp_path / "fps", loop=dict(FAST_LOOP, throughput=True,
                                                                         runtime_option=["throughput_streams=2"]))
    assert doc["throughput"]["concurrency"] == 2 and not [w for w in doc["warnings"] if "throughput_streams" in w]
    doc = api.bench(bundles["fp32"], "local", tmp_path / "latency", loop=dict(FAST_LOOP,
                                                                             runtime_option=["throughput_streams=2"]))
    assert [w for w in doc["warnings"] if w.startswith("--runtime-option throughput_streams=2 changed nothing")], \
        doc["warnings"]


def test_a_bundles_throughput_budget_asks_for_the_pass(tmp_path, cli):
    """A bundle carrying a throughput_fps budget was benched without the FPS pass, and `check` failed the budget
    NOT MEASURED, with no warning anywhere."""
    m = api.package(str(MODEL), "generic", tmp_path / "fps.edgepkg", budgets={"throughput_fps": 1})
    doc = api.bench(m["path"], "local", tmp_path / "results", loop=FAST_LOOP)
    assert doc["throughput"]["fps"] > 0 and doc["throughput"]["asked_by"] == "the bundle's throughput_fps budget"
    row = next(b for b in cli("check", doc["_path"], "--json").json()["results"][0]["budgets"]
               if b["budget"] == "throughput_fps")
    assert row["status"] == "pass"


def test_throughput_budget_is_higher_is_better(ort_measured, cli):
    fps = ort_measured["throughput"]["fps"]
    verdicts = []
    for limit in (fps * 0.5, fps * 2):
        r = cli("check", ort_measured["_path"], "--budget", f"throughput_fps={limit}", "--json")
        row = next(b for b in r.json()["results"][0]["budgets"] if b["budget"] == "throughput_fps")
        assert row["comparison"] == ">=" and row["measured"] == fps
        verdicts.append(row["status"])
    assert verdicts == ["pass", "fail"]


def test_reports_show_fps_and_layers_and_old_results_still_load(ort_measured, tmp_path, cli):
    old = {k: v for k, v in json.loads(open(ort_measured["_path"]).read()).items()
           if k not in ("throughput", "layer_profile")}
    (tmp_path / "old.json").write_text(json.dumps(old))
    results.load(tmp_path / "old.json")
    compared = cli("compare", ort_measured["_path"], tmp_path / "old.json", "--json")
    assert compared.exit_code == 0, compared.stderr
    new_row, old_row = compared.json()["rows"]
    assert new_row["throughput_fps"] == ort_measured["throughput"]["fps"] and old_row["throughput_fps"] is None
    assert new_row["slowest_layer"].startswith(ort_measured["layer_profile"]["layers"][0]["name"])
    html = tmp_path / "r.html"
    assert cli("report", ort_measured["_path"], tmp_path / "old.json", "-o", html).exit_code == 0
    page = html.read_text()
    top = ort_measured["layer_profile"]["layers"][0]["name"]
    assert "<h2>Throughput</h2>" in page and "<h2>Time per layer</h2>" in page and top in page
    assert "measured by an agent before the throughput pass existed" in page
    csv_text = cli("report", ort_measured["_path"], "--format", "csv").stdout
    header, row = csv_text.splitlines()[:2]
    assert float(row.split(",")[header.split(",").index("throughput_fps")]) == pytest.approx(
        ort_measured["throughput"]["fps"])
    md = cli("report", ort_measured["_path"], "--format", "markdown").stdout
    assert "| FPS |" in md and "Slowest layers" in md
    # the layers' times summed to 13x the timed latency (profiler overhead): every format says to read the shares
    assert "read the shares" in md and "read the shares" in page
    from edgeopt.report.tables import layer_rows
    assert "read the shares" in layer_rows(ort_measured["layer_profile"])[0][1]


@pytest.mark.parametrize("path, value, field", [
    (("throughput", "fps"), -3, "throughput.fps"),
    (("throughput", "completed"), "many", "throughput.completed"),
    (("layer_profile", "layers"), {"a": 1}, "layer_profile.layers"),
    (("layer_profile", "layers", 0, "share_pct"), 180.0, "layer_profile.layers[0].share_pct"),
    (("layer_profile", "layers", 0, "name"), 7, "layer_profile.layers[0].name"),
    (("layer_profile", "others", "count"), True, "layer_profile.others.count"),
])
def test_malformed_fields_are_refused_naming_file_and_field(ort_measured, tmp_path, path, value, field):
    doc = json.loads(open(ort_measured["_path"]).read())
    node = doc
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(BadInput) as e:
        results.load(bad)
    assert str(bad) in str(e.value) and field in str(e.value)


def test_concurrent_runs_count_every_completed_call():
    """Every call that returned is counted in the phase it ran in; the calls really overlap."""
    calls, lock, active, overlap = [0], threading.Lock(), [0], [0]

    def call():
        with lock:
            active[0] += 1
            overlap[0] = max(overlap[0], active[0])
        time.sleep(0.001)  # releases the GIL, as the runtimes do while they compute
        with lock:
            active[0] -= 1
            calls[0] += 1

    settings = LoopSettings(warmup_min_iterations=4, warmup_min_seconds=0.0, min_iterations=30, min_seconds=0.05,
                            max_iterations=10000, max_seconds=5.0)
    completed, duration, stopped_by, (warm_n, _) = throughput.concurrent_runs([call] * 3, settings)
    assert completed + warm_n == calls[0] and completed >= 30 and duration >= 0.05
    assert stopped_by == "min_iterations_and_duration" and overlap[0] == 3


def test_stop_rule_and_summary_edges():
    s = LoopSettings(min_iterations=10, min_seconds=1.0, max_iterations=100, max_seconds=5.0)
    assert throughput.stop_rule(10, 0.5, s) is None and throughput.stop_rule(10, 1.0, s) == "min_iterations_and_duration"
    assert throughput.stop_rule(100, 0.1, s) == "max_iterations" and throughput.stop_rule(3, 5.0, s) == "max_duration"
    warm = LoopSettings(warmup_min_iterations=10, warmup_min_seconds=0.2, max_iterations=50, max_seconds=5.0)
    assert not throughput.warmup_done(60, 0.01, warm)   # --max-iterations bounds the timed part, not the warm-up
    assert throughput.warmup_done(60, 0.2, warm) and throughput.warmup_done(3, 5.0, warm)
    assert throughput.split_threads(4, None) == (4, 1) and throughput.split_threads(4, 2) == (2, 2)
    assert throughput.split_threads(2, 8) == (8, 1)
    assert layers.summarize({"a": ("Conv", 0.0)}, 3, "m")["available"] is False  # no shares of nothing
    many = {f"l{i}": ("Op", float(i + 1)) for i in range(25)}
    out = layers.summarize(many, 5, "m", top=20)
    assert [x["name"] for x in out["layers"][:2]] == ["l24", "l23"] and out["others"]["count"] == 5
    assert out["others"]["mean_ms"] == pytest.approx(sum(range(1, 6)) / 5)
