"""`edgeopt check`: budgets against measured figures; unmeasured never passes; JUnit for CI."""
import copy
import json
import xml.etree.ElementTree as ET

import pytest

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


def test_failed_device_result_is_exit_3(cli, int8_result, tmp_path):
    ok = _write(tmp_path, int8_result, "ok.json")
    failed = _write(tmp_path, {"schema": "edgeopt.result/1", "status": "failed", "device": {"name": "pi"},
                               "bundle": {"name": "m"}, "error": {"message": "connection lost"}}, "failed.json")
    r = cli("check", ok, failed)
    assert r.exit_code == 3
    assert "DEVICE FAILED" in r.stdout and "connection lost" in r.stdout


@pytest.mark.parametrize("args, message", [
    (["--budget", "latency=3"], "unknown budget 'latency'"),
    (["--budget", "latency_p90_ms"], "is not KEY=VALUE"),
    (["--budget", "latency_p90_ms=fast"], "'fast' is not a number"),
])
def test_bad_budget_arguments(cli, int8_result, tmp_path, args, message):
    r = cli("check", _write(tmp_path, int8_result), *args)
    assert r.exit_code == 2 and message in r.stderr


def test_not_a_result_file(cli, tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text('{"schema": "something/1"}')
    r = cli("check", bad)
    assert r.exit_code == 2 and "is not an edgeopt.result/1 document" in r.stderr
    r = cli("check", tmp_path / "missing.json")
    assert r.exit_code == 2 and "result file not found" in r.stderr
