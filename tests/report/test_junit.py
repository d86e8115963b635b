"""`check --junit` writes XML that the Jenkins / Apache Ant JUnit schema accepts, for passing, failing,
unmeasured, device-failure and regression reports; and says what happened in the right element."""
import copy
import json
import pathlib
import xml.etree.ElementTree as ET

import pytest

ASSETS = pathlib.Path(__file__).resolve().parent.parent / "assets"
# Ours always; the original windyroad JUnit.xsd too when someone drops it in beside it (see the file's comment).
SCHEMAS = [p for p in (ASSETS / "junit-jenkins.xsd", ASSETS / "JUnit.xsd") if p.exists()]


def _validator():
    """A function path -> list of schema errors, from lxml or xmlschema; None if neither is installed."""
    try:
        from lxml import etree
    except ImportError:
        etree = None
    if etree is not None:
        def validate(path, xsd):
            schema = etree.XMLSchema(etree.parse(str(xsd)))
            schema.validate(etree.parse(str(path)))
            return [f"line {e.line}: {e.message}" for e in schema.error_log]
        return validate
    try:
        import xmlschema
    except ImportError:
        return None
    return lambda path, xsd: [str(e) for e in xmlschema.XMLSchema(str(xsd)).iter_errors(str(path))]


VALIDATE = _validator()
needs_validator = pytest.mark.skipif(VALIDATE is None, reason="neither lxml nor xmlschema is installed in this "
                                                               "environment: the JUnit files cannot be checked "
                                                               "against the XSD (add lxml to the dev extras)")


def _write(tmp_path, doc, name):
    path = tmp_path / name
    path.write_text(json.dumps({k: v for k, v in doc.items() if not k.startswith("_")}))
    return path


@pytest.fixture
def reports(cli, int8_result, tmp_path):
    """JUnit files for a passing, a failing (missed + unmeasured), a device-failure and a regression check."""
    ok = _write(tmp_path, int8_result, "ok.json")
    slow_doc = copy.deepcopy(int8_result)
    slow_doc["latency"]["samples_ms"] = [x * 3 for x in slow_doc["latency"]["samples_ms"]]
    slow = _write(tmp_path, slow_doc, "slow.json")
    failed = _write(tmp_path, {"schema": "edgeopt.result/1", "status": "failed", "device": {"name": "pi<&>"},
                               "bundle": {"name": "m"}, "error": {"message": "connection lost \x01"}}, "failed.json")
    runs = {"pass": ([ok, "--budget", "latency_p90_ms=1000"], 0),
            "fail": ([ok, "--budget", "latency_p90_ms=0.000001", "--budget", "power_w=3"], 1),
            "error": ([ok, failed, "--budget", "latency_p90_ms=1000"], 3),
            "regression": ([slow, "--baseline", ok, "--budget", "latency_p90_ms=1000"], 1),
            # refused before any verdict: no file read as "no test results" in a CI's report step (a walkthrough)
            "refused": ([tmp_path / "nope.json", "--budget", "latency_p90_ms=1000"], 2)}
    out = {}
    for name, (args, code) in runs.items():
        path = tmp_path / f"{name}.xml"
        r = cli("check", *args, "--junit", path)
        assert r.exit_code == code, (name, r.stdout, r.stderr)
        out[name] = path
    return out


@needs_validator
def test_every_report_is_valid_against_the_jenkins_schema(reports):
    assert SCHEMAS
    for xsd in SCHEMAS:
        for name, path in reports.items():
            assert VALIDATE(path, xsd) == [], (xsd.name, name, path.read_text())


def test_a_check_refused_before_any_verdict_writes_one_error_case(reports, tmp_path):
    import xml.etree.ElementTree as ET
    suite = ET.parse(reports["refused"]).getroot().find("testsuite")
    errors = [c.find("error") for c in suite.findall("testcase")]
    assert suite.get("errors") == "1" and len(errors) == 1 and errors[0] is not None
    assert errors[0].get("message") == f"result file not found: {tmp_path / 'nope.json'}"


@needs_validator
def test_the_old_writer_s_shape_is_refused(tmp_path):
    """The schema is strict enough to catch what the old writer produced (no errors/time/timestamp/hostname,
    <system-out> inside a passing testcase, <failure> without a type)."""
    old = tmp_path / "old.xml"
    old.write_text('<testsuites name="edgeopt check"><testsuite name="m@pi" tests="1" failures="1">'
                   '<testcase classname="m@pi" name="latency_p90_ms"><failure message="x"/></testcase>'
                   '</testsuite></testsuites>')
    assert all(len(VALIDATE(old, xsd)) >= 5 for xsd in SCHEMAS)


def _suites(path):
    return ET.parse(path).getroot().findall("testsuite")


def test_device_errors_are_errors_and_budget_misses_failures(reports):
    (suite,) = _suites(reports["fail"])
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert suite.get("failures") == "2" and suite.get("errors") == "0"
    assert cases["latency_p90_ms"].find("failure").get("type") == "budget missed"
    assert cases["latency_p90_ms"].find("failure").get("message").endswith("limit <= 1e-06 ms")   # units on both
    unmeasured = cases["power_w"].find("failure")
    assert unmeasured.get("type") == "not measured" and unmeasured.get("message").startswith("NOT MEASURED: power_w")
    ok_suite, failed_suite = _suites(reports["error"])
    assert failed_suite.get("errors") == "1" and failed_suite.get("failures") == "0"
    error = failed_suite.find("testcase").find("error")
    assert error.get("type") == "device failure" and "connection lost \ufffd" in error.get("message")
    assert [s.get("id") for s in (ok_suite, failed_suite)] == ["0", "1"]
    assert ok_suite.get("hostname") and len(ok_suite.get("timestamp")) == 19


def test_a_regression_is_a_failure_and_a_pass_says_what_held(reports):
    (suite,) = _suites(reports["regression"])
    case = [c for c in suite.findall("testcase") if c.get("name") == "latency regression vs baseline"][0]
    assert case.find("failure").get("type") == "latency regression"
    assert "slower: p50 x3.000" in case.find("failure").get("message")
    (passing,) = _suites(reports["pass"])
    assert passing.get("failures") == "0" and all(c.find("failure") is None for c in passing.findall("testcase"))
    assert "pass: latency_p90_ms measured" in passing.find("system-out").text


def test_results_of_one_bundle_on_one_device_are_suites_of_their_own_names(cli, int8_result, tmp_path):
    """A user review: three results of a@local (a run's history) made three suites all named "a@local", which a CI
    system merges into one."""
    paths = [_write(tmp_path, dict(int8_result, created=f"2026-01-0{i + 1}T00:00:00+00:00"), f"{n}.json")
             for i, n in enumerate(("first", "second"))]
    junit = tmp_path / "j.xml"
    assert cli("check", *paths, "--budget", "latency_p90_ms=1000", "--junit", junit).exit_code == 0
    names = [s.get("name") for s in ET.parse(junit).getroot().iter("testsuite")]
    label = f"{int8_result['bundle']['name']}@{int8_result['device']['name']}"
    assert names == [f"{label} (first.json)", f"{label} (second.json)"]
    assert cli("check", paths[0], "--budget", "latency_p90_ms=1000", "--junit", junit).exit_code == 0
    assert [s.get("name") for s in ET.parse(junit).getroot().iter("testsuite")] == [label]   # alone: as before
