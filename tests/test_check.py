"""`edgeopt check`: budgets against measured figures; unmeasured never passes; JUnit for CI."""
import copy
import json
import pathlib
import xml.etree.ElementTree as ET

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from edgeopt.budgets import check_result


def _write(tmp_path, doc, name="r.json"):
    path = tmp_path / name
    clean = {k: v for k, v in doc.items() if k != "_path"}
    path.write_text(json.dumps(clean))
    return path


def test_budgets_hold(cli, int8_result, tmp_path):
    path = _write(tmp_path, int8_result)
    r = cli("check", path, "--budget", "latency_p90_ms=1000", "--budget", "peak_rss_mb=4096",
            "--budget", "size_mb=10", "--budget", "accuracy_drop=0.01", "--json")
    assert r.exit_code == 0, r.stdout + r.stderr
    assert r.json()["schema"] == "edgeopt.check/1" and r.json()["passed"] is True
    rows = {row["budget"]: row for row in r.json()["results"][0]["budgets"]}
    assert {"latency_p90_ms", "peak_rss_mb", "size_mb", "accuracy_drop"} <= set(rows)
    assert all(row["status"] == "pass" for row in rows.values())
    assert rows["latency_p90_ms"]["measured"] == int8_result["latency"]["p90_ms"]
    assert rows["size_mb"]["measured"] == int8_result["bundle"]["artifact_mb"]


def test_a_missed_budget_fails_with_exit_1_and_junit(cli, int8_result, tmp_path):
    path = _write(tmp_path, int8_result)
    junit = tmp_path / "report.xml"
    r = cli("check", path, "--budget", "latency_p90_ms=0.000001", "--junit", junit)
    assert r.exit_code == 1
    assert "FAIL" in r.stdout and "latency_p90_ms" in r.stdout
    suite = ET.parse(junit).getroot().find("testsuite")
    failures = [c.get("name") for c in suite.findall("testcase") if c.find("failure") is not None]
    assert failures == ["latency_p90_ms"] and suite.get("failures") == "1"
    assert int(suite.get("tests")) == 3  # the bundle's three budgets, latency overridden by the flag


def test_check_ends_with_a_tally_of_its_verdicts(cli, int8_result, tmp_path):
    """201 verdict rows ended without a count of what passed and what failed (a scale walkthrough)."""
    ok = _write(tmp_path, int8_result, "ok.json")
    failed = _write(tmp_path, dict(int8_result, status="failed", error={"message": "lost", "exit_code": 3}), "f.json")
    cut = tmp_path / "cut.json"
    cut.write_text(ok.read_text()[:100])
    r = cli("check", ok, failed, cut, "--budget", f"latency_p90_ms={int8_result['latency']['p90_ms'] * 2}")
    assert r.exit_code == 2 and "3 results: 1 met every budget, 1 no result (device failed), 1 unreadable\n" \
        in r.stdout, r.stdout
    r = cli("check", ok, "--budget", "latency_p90_ms=0.000001")
    assert r.exit_code == 1 and "1 result: 1 missed a budget\n" in r.stdout, r.stdout


def test_a_warning_many_results_share_is_said_once(int8_result):
    """A fleet of 40 said the same warning text 40 times under its table (a scale walkthrough)."""
    from edgeopt.report.tables import warning_lines
    entries = [{"bundle": "m", "device": f"pi-{i}", "warnings": ["swap in use: 120 MB"], "created": None}
               for i in range(5)] + [{"bundle": "m", "device": "pi-9", "warnings": ["other"], "created": None}]
    assert warning_lines({"results": entries}) == [
        "[yellow]warning[/] m@pi-0, m@pi-1, m@pi-2 and 2 more: swap in use: 120 MB", "[yellow]warning[/] m@pi-9: other"]


def test_unmeasured_budget_is_reported_and_fails(cli, int8_result, tmp_path):
    path = _write(tmp_path, int8_result)
    r = cli("check", path, "--budget", "power_w=5", "--json")
    assert r.exit_code == 1
    row = [b for b in r.json()["results"][0]["budgets"] if b["budget"] == "power_w"][0]
    assert row["status"] == "unmeasured" and row["measured"] is None
    assert "no power sensor" in row["reason"] or "no reader" in row["reason"]


def test_accuracy_drop_without_labels_is_unmeasured(int8_result):
    doc = copy.deepcopy(int8_result)
    del doc["accuracy"]["drop"]
    doc["accuracy"]["drop_absent"] = "the eval data has no labels"
    row = check_result(doc, {"accuracy_drop": 0.01})[0]
    assert row["status"] == "unmeasured" and row["reason"] == "the eval data has no labels"


def test_budgets_come_from_the_bundle_then_profile_then_command_line(cli, int8_result, tmp_path):
    path = _write(tmp_path, int8_result)
    r = cli("check", path, "--json")
    assert {b["budget"] for b in r.json()["results"][0]["budgets"]} == {"latency_p90_ms", "peak_rss_mb", "accuracy_drop"}
    r = cli("check", path, "--profile", "raspberry-pi-5", "--json")
    limits = {b["budget"]: b["limit"] for b in r.json()["results"][0]["budgets"]}
    assert limits["peak_rss_mb"] == 256.0
    r = cli("check", path, "--profile", "raspberry-pi-5", "--budget", "peak_rss_mb=1", "--json")
    assert {b["budget"]: b["limit"] for b in r.json()["results"][0]["budgets"]}["peak_rss_mb"] == 1.0
    assert r.exit_code == 1
    # a profile's default tightens the bundle's own, never loosens it: generic's 50 ms passed a bundle packaged
    # with a 0.001 ms limit (a code review); --budget still sets one outright
    strict = dict(int8_result, bundle=dict(int8_result["bundle"], budgets={"latency_p90_ms": 0.001}))
    path = _write(tmp_path, strict, "strict.json")
    for args, limit, code in (([], 0.001, 1), (["--profile", "generic"], 0.001, 1),
                              (["--profile", "generic", "--budget", "latency_p90_ms=1000"], 1000.0, 0)):
        r = cli("check", path, *args, "--json")
        limits = {b["budget"]: b["limit"] for b in r.json()["results"][0]["budgets"]}
        assert limits["latency_p90_ms"] == limit and r.exit_code == code, (args, limits)


def test_failed_device_result_is_exit_3(cli, int8_result, tmp_path):
    ok = _write(tmp_path, int8_result, "ok.json")
    failed = _write(tmp_path, {"schema": "edgeopt.result/1", "status": "failed", "device": {"name": "pi"},
                               "bundle": {"name": "m"}, "error": {"message": "connection lost"}}, "failed.json")
    r = cli("check", ok, failed)
    assert r.exit_code == 3
    assert "DEVICE FAILED" in r.stdout and "connection lost" in r.stdout


@pytest.mark.parametrize("args, message", [
    (["--budget", "latency=3"], "--budget: unknown budget 'latency'"),
    (["--budget", "latency_p90_ms"], "is not KEY=VALUE"),
    (["--budget", "latency_p90_ms=fast"], "'fast' is not a number"),
    (["--budget", "latency_p90_ms=nan"], "--budget latency_p90_ms: must be a finite number >= 0, got nan"),
    (["--budget", "latency_p90_ms=inf"], "--budget latency_p90_ms: must be a finite number >= 0, got inf"),
    (["--budget", "peak_rss_mb=-1"], "--budget peak_rss_mb: must be a finite number >= 0, got -1.0"),
    (["--budget", "accuracy_drop=-0.5"], "--budget accuracy_drop: must be a finite number in [0, 1], got -0.5"),
    (["--budget", "min_top1=2"], "--budget min_top1: must be a finite number in [0, 1], got 2.0"),
    (["--budget", "min_top1=nan", "--budget", "min_top1=0.5"], "--budget min_top1: must be a finite number"),
    # a later, looser limit replaced a stricter one without a word
    (["--budget", "latency_p90_ms=1", "--budget", "latency_p90_ms=2"],
     "--budget 'latency_p90_ms' given twice ('1' and '2'): give one limit per budget"),
])
def test_bad_budget_arguments(cli, int8_result, tmp_path, args, message):
    r = cli("check", _write(tmp_path, int8_result), *args)
    assert r.exit_code == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_not_a_result_file(cli, tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text('{"schema": "something/1"}')
    r = cli("check", bad)
    assert r.exit_code == 2 and "is not an edgeopt.result/1 document" in r.stderr
    bad.write_text('{"notes": "a user\'s own file in a run folder"}')   # it read "schema is None"
    r = cli("check", tmp_path)
    assert r.exit_code == 2 and f"{bad} is not an edgeopt.result/1 document: it has no schema field" in r.stderr
    r = cli("check", tmp_path / "missing.json")
    assert r.exit_code == 2 and "result file not found" in r.stderr


def _edit(doc, dotted, value=None, delete=False):
    doc = copy.deepcopy({k: v for k, v in doc.items() if k != "_path"})
    *parents, last = dotted.split(".")
    node = doc
    for part in parents:
        node = node[part]
    if delete:
        del node[last]
    else:
        node[last] = value
    return doc


@pytest.mark.parametrize("dotted, value, delete, message", [
    ("latency.p90_ms", "12", False, "latency.p90_ms must be a finite number >= 0 (or absent: not measured), got '12'"),
    ("latency.p90_ms", -1.0, False, "latency.p90_ms must be a finite number >= 0"),
    ("latency.p90_ms", float("nan"), False, "latency.p90_ms must be a finite number >= 0"),
    ("latency.p90_ms", True, False, "latency.p90_ms must be a finite number >= 0"),
    ("accuracy.top1", 1.5, False, "accuracy.top1 must be a finite number in [0, 1]"),
    ("memory.peak_rss_mb", float("inf"), False, "memory.peak_rss_mb must be a finite number >= 0"),
    ("status", None, True, "status is missing"),
    ("status", "okay", False, "status must be one of ok, failed, got 'okay'"),
    ("latency", None, True, "latency is missing (a status ok result has one)"),
    ("latency", [1, 2], False, "latency must be an object, got [1, 2]"),
    ("warnings", "noisy", False, "warnings must be a list of text"),
    ("thermal", {"throttled": "yes"}, False, "thermal.throttled must be true or false, got 'yes'"),
    ("bundle.name", 7, False, "bundle.name must be text without control characters"),
    ("device.name", "a\x1b[31mRED", False, "device.name must be text without control characters"),
    ("bundle.budgets", {"latency_p90_ms": float("nan")}, False,
     "bundle.budgets.latency_p90_ms must be a finite number >= 0, got nan"),
    ("bundle.budgets", {"speed": 1}, False, "bundle.budgets: unknown budget 'speed'"),
    # refused by report and the gate, passed by check and compare: now by every verb (a user review)
    ("latency.samples_ms", "abc", False, "latency.samples_ms must be a non-empty list of finite numbers >= 0, got 'abc'"),
    ("runtime", "ort", False, "runtime must be an object, got 'ort'"),
    ("created", "yesterday", False, "created must be an ISO 8601 time"),
    ("created", 12, False, "created must be an ISO 8601 time"),
    # past what a datetime converts to UTC: an OverflowError traceback in compare and report (a clock walkthrough)
    ("created", "0001-01-01T00:00:00+05:00", False, "created must be an ISO 8601 time (2026-12-05T18:58:15+00:00) "
     "of the years 1970 to 9998"),
    ("created", "9999-12-31T23:59:59-05:00", False, "created must be an ISO 8601 time"),
    # hand-edited figures that no measurement gives: shown as "50 [0.03317-0.03329]"
    ("latency.p50_ms", 100.0, False, "latency.p50_ms 100 is above latency.p90_ms "),
    ("latency.ci95.p90_ms", [5, 1], False, "latency.ci95.p90_ms [5, 1]: its low end is above its high end"),
])
def test_a_malformed_result_is_one_line_naming_file_and_field(cli, int8_result, tmp_path, dotted, value, delete,
                                                             message):
    path = _write(tmp_path, _edit(int8_result, dotted, value, delete))
    for verb in ("check", "compare"):
        r = cli(verb, path)
        assert r.exit_code == 2, r.stdout
        assert r.stderr.startswith(f"edgeopt: error: {path}: {message}") and len(r.stderr.strip().splitlines()) == 1


def test_an_absent_or_null_figure_is_not_measured_and_fails(cli, int8_result, tmp_path):
    for doc in (_edit(int8_result, "latency.p90_ms", delete=True), _edit(int8_result, "memory.peak_rss_mb", None)):
        r = cli("check", _write(tmp_path, doc), "--budget", "latency_p90_ms=1000", "--budget", "peak_rss_mb=4096",
                "--json")
        assert r.exit_code == 1
        rows = {b["budget"]: b for b in r.json()["results"][0]["budgets"]}
        assert [k for k, b in rows.items() if b["status"] == "unmeasured"] in (["latency_p90_ms"], ["peak_rss_mb"])


def test_a_failed_result_needs_no_figures(cli, tmp_path):
    path = _write(tmp_path, {"schema": "edgeopt.result/1", "status": "failed", "error": {"message": "boom [/]"}})
    r = cli("check", path)
    assert r.exit_code == 3 and "boom [/]" in r.stdout   # shown as written, not read as markup


def test_names_from_a_result_are_not_markup(cli, int8_result, tmp_path):
    doc = _edit(int8_result, "bundle.name", "m[/]x[bold]")
    doc["warnings"] = ["throttled: [/] cpu0", "odd [red"]
    path = _write(tmp_path, doc)
    for verb in ("check", "compare"):
        r = cli(verb, path, "--junit", tmp_path / "j.xml") if verb == "check" else cli(verb, path)
        assert r.exit_code == 0 and "m[/]x[bold]" in r.stdout and "odd [red" in r.stdout


def test_budgets_read_back_from_a_manifest_are_checked(cli, bundles, tmp_path):
    import io
    import tarfile
    from device_agent.manifest import seal
    bad = tmp_path / "bad.edgepkg"
    with tarfile.open(bundles["fp32"]) as src, tarfile.open(bad, "w") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read()
            if member.name == "manifest.json":  # edited and sealed again, as a tool that rewrites budgets would
                manifest = json.loads(data)
                manifest["budgets"]["min_top1"] = 2.0   # the agent's check (a number >= 0) lets it through
                data = seal(manifest)[1]
                member.size = len(data)
            dst.addfile(member, io.BytesIO(data))
    r = cli("bench", bad, "--results-dir", tmp_path / "results")
    assert r.exit_code == 2 and not (tmp_path / "results").exists()
    assert f"{bad}: manifest.json: budgets.min_top1 must be a finite number in [0, 1], got 2.0" in r.stderr


@pytest.mark.parametrize("budget", ["latency_p90_ms=nan", "peak_rss_mb=-1", "min_top1=2", "accuracy_drop=inf"])
def test_package_refuses_a_bad_budget_before_any_work(cli, tmp_path, budget):
    from conftest import MODEL
    r = cli("package", MODEL, "--budget", budget, "-o", tmp_path / "x.edgepkg")
    assert r.exit_code == 2 and f"--budget {budget.partition('=')[0]}: must be" in r.stderr
    assert not (tmp_path / "x.edgepkg").exists()


def test_a_bundle_given_to_check_is_told_to_be_measured_first(cli, bundles, tmp_path):
    r = cli("check", bundles["fp32"])
    assert r.exit_code == 2 and f"{bundles['fp32']} is a bundle, not a result: measure it first (edgeopt bench" \
        in r.stderr
    truncated = tmp_path / "copy.edgepkg"   # a broken copy: benching it would only be refused in turn
    truncated.write_bytes(pathlib.Path(bundles["fp32"]).read_bytes()[:3000])
    r = cli("check", truncated)
    assert r.exit_code == 2 and "copy.edgepkg is a bundle file, not a result, and it does not verify (" in r.stderr
    assert "measure it first" not in r.stderr


def test_a_result_with_nothing_to_check_is_refused_not_passed(cli, int8_result, tmp_path):
    """A bundle packaged with no budgets (a profile without [budgets]) must not turn a CI gate green."""
    path = _write(tmp_path, _edit(int8_result, "bundle.budgets", {}))
    r = cli("check", path, "--junit", tmp_path / "junit.xml")
    assert r.exit_code == 2 and f"{path}: nothing to check" in r.stderr
    # the JUnit file is one error (no file read as "no test results" in a CI's report step), never a pass
    error = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite/testcase/error")
    assert error is not None and f"{path}: nothing to check" in error.get("message")
    assert cli("check", path, "--budget", "latency_p90_ms=1000").exit_code == 0
    r = cli("check", path, "--budget", "latency_p90_ms=none")   # nothing to drop: not "every budget was dropped"
    assert r.exit_code == 2 and "its bundle carries no budgets and none were given" in r.stderr, r.stderr
    earlier = _write(tmp_path, _edit(_edit(int8_result, "bundle.budgets", {}), "created", "2020-01-01T00:00:00+00:00"),
                     "earlier.json")
    assert cli("check", path, "--baseline", earlier).exit_code == 0   # the regression gate alone is a check
    assert cli("compare", path).exit_code == 0                     # side by side needs no budget
    r = cli("check", _write(tmp_path, _edit(int8_result, "bundle", delete=True), "nameless.json"))
    assert r.exit_code == 2 and "bundle is missing" in r.stderr   # an ok result names what it measured



RUN_BUDGETS = st.one_of(st.dictionaries(st.sampled_from(["latency_p90_ms", "peak_rss_mb", "latncy", ""]),
                                        st.floats(allow_nan=True) | st.text(max_size=4) | st.booleans(), max_size=3),
                        st.none(), st.lists(st.integers(), max_size=2), st.text(max_size=6))


RUN_DEVICES = st.one_of(st.lists(st.sampled_from(["node", "pi-c", ""]), max_size=3), st.none(),
                        st.lists(st.integers(), min_size=1, max_size=2), st.text(max_size=4))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(budgets=RUN_BUDGETS, devices=RUN_DEVICES, junk=st.sampled_from([None, b"{", b"[]", b"\xff"]))
def test_a_fleet_runs_recorded_budgets_are_read_totally(cli, int8_result, tmp_path, budgets, devices, junk):
    """run.json's budgets judge the run's results (`check RUN_DIR`), and its devices say which results it must
    hold: whatever it holds, a verdict or exit 2 in one line naming run.json and the field, never a traceback."""
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    _write(run, int8_result, "node.json")
    recorded = {"budgets": budgets, **({"devices": devices} if devices is not None else {})}
    (run / "run.json").write_bytes(junk if junk is not None else json.dumps(recorded).encode())
    r = cli("check", run, "--budget", "peak_rss_mb=100000")
    assert r.exit_code in (0, 1, 2, 3) and "Traceback" not in r.stderr
    if r.exit_code == 2:
        assert len(r.stderr.strip().splitlines()) == 1 and str(run / "run.json") in r.stderr, r.stderr


def test_a_fleet_run_missing_a_devices_result_is_no_pass(cli, int8_result, tmp_path):
    """A run directory with one device's file lost (deleted, a CI artifact cut short) passed on the files left: its
    run.json lists every device the run measures (a user walkthrough)."""
    run = tmp_path / "run"
    run.mkdir()
    _write(run, int8_result, "node.json")
    device = int8_result["device"]["name"]
    (run / "run.json").write_text(json.dumps({"bundle": "digits_cnn-int8", "devices": [device]}))
    assert cli("check", run, "--budget", "peak_rss_mb=100000").exit_code == 0
    (run / "run.json").write_text(json.dumps({"bundle": "digits_cnn-int8", "devices": [device, "pi-c"]}))
    r = cli("check", run, "--budget", "peak_rss_mb=100000", "--json")
    assert r.exit_code == 3, r.stdout
    lost = [e for e in r.json()["results"] if e["device"] == "pi-c"]
    assert lost and lost[0]["status"] == "missing" and lost[0]["bundle"] == "digits_cnn-int8"
    assert lost[0]["error"] == f"{run / 'run.json'} lists pi-c, and the run directory holds no result of it"
    # compare and report of the run say so too, and exit as check does (they read its files only: exit 0)
    compared = cli("compare", run, "--budget", "peak_rss_mb=100000", "--json")
    assert compared.exit_code == 3 and [r["verdict"] for r in compared.json()["rows"]] == ["all pass", "device failed"]
    shown = cli("report", run, "--budget", "peak_rss_mb=100000", "--format", "markdown", "--no-history")
    assert shown.exit_code == 3 and "lists pi-c, and the run directory holds no result of it" in shown.stdout, \
        shown.stdout
    page = cli("report", run, "--budget", "peak_rss_mb=100000", "-o", tmp_path / "r.html", "--no-history")
    assert page.exit_code == 3 and "pi-c" in (tmp_path / "r.html").read_text()
    # one file of the run, named alone, is judged alone
    assert cli("check", run / "node.json", "--budget", "peak_rss_mb=100000").exit_code == 0


def test_one_unreadable_result_among_good_ones_hides_none_of_their_verdicts(cli, int8_result, tmp_path):
    """`check results/*.json` with one file cut short gave exit 2 and no verdict on the others (a walkthrough):
    each verb judges the readable ones beside an UNREADABLE row, says the file's defect on stderr, and exits 2."""
    run = tmp_path / "run"
    run.mkdir()
    good = _write(run, int8_result, "node.json")
    (run / "pi-b.json").write_text('{"schema": "edgeopt.result/1", "status": "ok", "lat')   # cut short
    device = int8_result["device"]["name"]
    (run / "run.json").write_text(json.dumps({"bundle": "digits_cnn-int8", "devices": [device, "pi-b"]}))
    error = f"edgeopt: error: {run / 'pi-b.json'} is not valid JSON"
    r = cli("check", run, "--budget", "peak_rss_mb=100000", "--json")
    assert r.exit_code == 2 and r.stderr.startswith(error) and len(r.stderr.splitlines()) == 1, r.stderr
    entries = {e["device"]: e for e in r.json()["results"]}
    assert entries[device]["status"] == "ok" and entries[device]["budgets"][0]["status"] == "pass"
    assert entries["pi-b"]["status"] == "unreadable" and entries["pi-b"]["bundle"] == "digits_cnn-int8"
    assert "cannot be read" in r.json()["headline"]
    shown = cli("check", good, run / "pi-b.json", "--budget", "peak_rss_mb=100000")   # files, as a glob gives them
    assert shown.exit_code == 2 and "UNREADABLE" in shown.stdout and "pass" in shown.stdout, shown.stdout
    compared = cli("compare", run, "--json")
    assert compared.exit_code == 2 and [r["verdict"] for r in compared.json()["rows"]] == ["all pass", "unreadable"]
    page = cli("report", run, "--format", "markdown", "--no-history")
    assert page.exit_code == 2 and "UNREADABLE" in page.stdout and device in page.stdout, page.stdout
    assert page.stderr.startswith(error) and len(page.stderr.splitlines()) == 1, page.stderr
    junit = tmp_path / "check.xml"
    assert cli("check", run, "--budget", "peak_rss_mb=100000", "--junit", junit).exit_code == 2
    assert [e.get("type") for e in ET.parse(junit).iter("error")] == ["unreadable result"]
    # a name given wrong is still refused before anything is read, and so is a JSON file that is no result
    missing = cli("check", good, tmp_path / "nothing.json", "--budget", "peak_rss_mb=100000")
    assert missing.exit_code == 2 and not missing.stdout.strip() and "result file not found" in missing.stderr
    (tmp_path / "budgets.json").write_text('{"latency_p90_ms": 5}')
    other = cli("check", good, tmp_path / "budgets.json", "--budget", "peak_rss_mb=100000")
    assert other.exit_code == 2 and not other.stdout.strip() and "is not an edgeopt.result/1 document" in other.stderr


def test_a_budget_given_as_none_is_dropped_from_the_bundles_and_the_profiles(cli, int8_result, tmp_path):
    """A detector packaged for a profile with an accuracy_drop budget could never pass `check`: top-1 is not
    measured for it, and nothing removed the budget. `--budget KEY=none` drops one, in check, a fleet run's
    recorded budgets and package."""
    doc = copy.deepcopy(int8_result)
    del doc["accuracy"]["drop"]
    doc["accuracy"]["drop_absent"] = "the eval data has no labels"
    path = _write(tmp_path, doc)
    assert cli("check", path).exit_code == 1                       # the bundle's accuracy_drop, unmeasured
    r = cli("check", path, "--budget", "accuracy_drop=none", "--json")
    assert r.exit_code == 0, r.stdout + r.stderr
    assert {b["budget"] for b in r.json()["results"][0]["budgets"]} == {"latency_p90_ms", "peak_rss_mb"}
    r = cli("check", path, "--profile", "raspberry-pi-5", "--budget", "accuracy_drop=None", "--json")
    assert r.exit_code == 0 and "accuracy_drop" not in {b["budget"] for b in r.json()["results"][0]["budgets"]}
    # every budget dropped: nothing is checked, which a gate refuses
    r = cli("check", path, *[f"--budget={k}=none" for k in ("accuracy_drop", "latency_p90_ms", "peak_rss_mb")])
    assert r.exit_code == 2 and "nothing to check: every budget was dropped (accuracy_drop=none" in r.stderr
    assert cli("check", path, "--budget", "accuracy_drop=none", "--budget", "accuracy_drop=0.1").exit_code == 2
    assert "unknown budget 'nope'" in cli("check", path, "--budget", "nope=none").stderr
    # a fleet run that dropped it (run.json holds null) is judged so by `check RUN_DIR`
    run = tmp_path / "run"
    run.mkdir()
    _write(run, doc, "node.json")
    (run / "run.json").write_text(json.dumps({"budgets": {"accuracy_drop": None}}))
    assert cli("check", run).exit_code == 0


def test_package_drops_a_profile_budget_given_as_none(cli, tmp_path):
    from conftest import MODEL

    from edgeopt import api

    m = api.package(str(MODEL), "generic", tmp_path / "b.edgepkg", budgets={"accuracy_drop": None})
    assert "accuracy_drop" not in m["budgets"] and m["budgets"]["latency_p90_ms"] == 50
    assert not any("accuracy_drop" in n for n in m["notes"])
    # a rebuild from the bundle keeps the bundle's whole set: the dropped budget is not the profile's again
    again = cli("package", MODEL, "--recipe", tmp_path / "b.edgepkg", "-o", tmp_path / "c.edgepkg", "--json")
    assert again.exit_code == 0 and "accuracy_drop" not in again.json()["budgets"], again.stderr


def test_a_warning_under_the_table_is_one_line_on_a_pipe(cli, int8_result, tmp_path):
    """On a pipe or in a CI log the warnings under a table were folded at 120 columns, mid-word: grep found half
    of one (a user walkthrough)."""
    said = "noisy run: " + "the spread of latencies was wide, " * 6 + "measure it again on a quiet device"
    path = _write(tmp_path, _edit(int8_result, "warnings", [said]))
    r = cli("check", path, "--budget", "peak_rss_mb=100000")
    assert r.exit_code == 0 and any(line.endswith(said) for line in r.stdout.splitlines()), r.stdout


def test_compare_says_when_a_quantized_bundle_is_no_faster_than_its_float_one(cli, int8_result, tmp_path):
    """compare had no word for INT8 slower than FP32 of the same model on the same device, the question it is run
    for (a walkthrough: OpenVINO INT8 of a BERT at 1.44x its FP32)."""
    p50 = int8_result["latency"]["p50_ms"]
    float_doc = copy.deepcopy(int8_result)
    float_doc["bundle"] = dict(float_doc["bundle"], name="m-fp32",
                               compression=dict(float_doc["bundle"]["compression"], quantize="none"))
    def scaled(latency, scale):   # every figure in ms, so the percentiles stay in order
        return {k: ([x * scale for x in v] if k == "samples_ms" else v * scale if k.endswith("_ms") and
                    isinstance(v, float) else v) for k, v in latency.items()}

    for scale, said in ((0.8, True), (2.0, False)):
        float_doc["latency"] = scaled(int8_result["latency"], scale)
        paths = [_write(tmp_path, int8_result, "int8.json"), _write(tmp_path, float_doc, "fp32.json")]
        notes = cli("compare", *paths, "--json").json()["notes"]
        name = int8_result["bundle"]["name"]
        assert bool(notes) == said and (not said or notes[0].startswith(
            f"{name} is quantized and runs at 1.25x the p50 of m-fp32 (float) on local")), notes
    noisy = dict(float_doc, latency=scaled(int8_result["latency"], 0.8), warnings=["noisy run: robust spread ..."])
    steady = dict(int8_result, warnings=[])   # the fixture's own run may read noisy on a loaded host
    notes = cli("compare", _write(tmp_path, steady, "int8.json"), _write(tmp_path, noisy, "fp32.json"),
                "--json").json()["notes"]   # a large-model walkthrough: 1.01x from a noisy run, 4x measured again
    assert notes[0].endswith("(float) on local: measured in a run flagged noisy (m-fp32): measure both again before "
                             "concluding that quantization does not pay there"), notes
    other = copy.deepcopy(float_doc)   # another model's float bundle: nothing to say
    other["bundle"]["source"] = dict(other["bundle"]["source"], sha256="0" * 64)
    other["latency"] = scaled(int8_result["latency"], 0.5)
    assert cli("compare", _write(tmp_path, int8_result, "int8.json"), _write(tmp_path, other, "o.json"),
               "--json").json()["notes"] == []


def test_a_figure_just_over_its_limit_is_shown_with_the_digits_that_tell_them_apart(cli, int8_result, tmp_path):
    """`<= 66.89 MiB | 66.89 MiB | FAIL` (66.890625): a failure that read as a pass (a walkthrough). And two runs of
    one bundle's warnings name which run each is."""
    doc = copy.deepcopy(int8_result)
    doc["memory"]["peak_rss_mb"] = 66.890625
    doc["warnings"] = ["noisy run: robust_cv 0.2"]
    path = _write(tmp_path, doc)
    r = cli("check", path, "--budget", "peak_rss_mb=66.89")
    text = " ".join(r.stdout.split())
    assert r.exit_code == 1 and "<= 66.89 MiB │ 66.891 MiB │ FAIL" in text, r.stdout
    r = cli("check", path, "--budget", "peak_rss_mb=66.890625")
    assert r.exit_code == 0 and "<= 66.8906 MiB │ 66.8906 MiB │ pass" in " ".join(r.stdout.split()), r.stdout
    r = cli("check", path, "--budget", "peak_rss_mb=66.89062")   # the figure shown above the limit shown, as it is
    assert r.exit_code == 1 and "<= 66.8906 MiB │ 66.891 MiB │ FAIL" in " ".join(r.stdout.split()), r.stdout
    later = tmp_path / "later.json"
    later.write_text(json.dumps(dict(doc, created="2030-01-01T00:00:00+00:00")))
    r = cli("check", path, later, "--budget", "peak_rss_mb=100")
    warned = [line for line in r.stdout.splitlines() if "noisy run" in line]   # one text, said once for both
    assert len(warned) == 1 and "2030-01-01 00:00:00: noisy run" in warned[0], r.stdout


def test_a_tail_budget_on_a_percentile_with_no_interval_is_said(cli, bundles, int8_result, tmp_path):
    """A p90 of 10 runs is an interpolation towards the slowest: its 95% interval is absent (the agent records why),
    and a budget on it passed with no word in bench's table or check's (a review)."""
    results = tmp_path / "results"
    few = ["--min-iterations", "10", "--max-iterations", "10", "--min-seconds", "0", "--warmup-seconds", "0"]
    benched = cli("bench", bundles["int8"], "--results-dir", results, *few)
    assert benched.exit_code == 0, benched.stderr
    assert "(no 95% CI: too few samples for a 95% interval (n=10))" in benched.stdout
    result = next(results.glob("*.json"))
    r = cli("check", result, "--budget", "latency_p90_ms=1000", "--budget", "latency_p50_ms=1000", "--json")
    assert r.exit_code == 0, r.stderr
    said = [w for w in r.json()["results"][0]["warnings"] if "95% interval" in w]
    assert said == ["latency_p90_ms is judged on a p90 of 10 runs, too few for a 95% interval: it rests on the "
                    "slowest few runs; more runs (bench --min-iterations) give one"]
    assert "latency_p90_ms is judged on a p90 of 10 runs" in cli("check", result, "--budget",
                                                                  "latency_p90_ms=1000").stdout
    # report (Markdown, its JSON) says it too: its rows took the result file's warnings alone
    for name in ("r.md", "r.html"):
        shown = cli("report", result, "--budget", "latency_p90_ms=1000", "-o", tmp_path / name, "--no-history")
        assert shown.exit_code == 0 and "is judged on a p90 of 10 runs" in (tmp_path / name).read_text(), name
    # with enough runs the interval is there, and nothing is said
    assert int8_result["latency"]["ci95"]["p90_ms"]
    plenty = cli("check", _write(tmp_path, int8_result, "plenty.json"), "--budget", "latency_p90_ms=1000", "--json")
    assert not [w for w in plenty.json()["results"][0]["warnings"] if "95% interval" in w]
