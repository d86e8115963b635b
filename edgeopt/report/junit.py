"""JUnit XML for CI systems: one testsuite per result, one testcase per budget (and one for the
regression gate when a baseline is given).

Valid against the Jenkins / Apache Ant JUnit schema (tests/assets/junit-jenkins.xsd), which CI systems
validate against: every testsuite carries name, package, id, timestamp (UTC, no zone), hostname, tests,
failures, errors, time, then properties, its testcases, system-out and system-err, in that order. A device
that produced no result is an <error> (the test could not run), a missed budget a <failure>, an unmeasured
figure a <failure> that says NOT MEASURED, a significant slowdown a <failure>, an untested or inconclusive regression
gate a <skipped> with its reason.
"""
from __future__ import annotations

import collections
import datetime
import pathlib
import re
import xml.etree.ElementTree as ET

from ..atomic import replacing
from ..results import UNREADABLE, parse_time

# Characters XML 1.0 cannot hold at all; names and messages come from result files, so they are replaced.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml(text) -> str:
    return _NOT_XML.sub("\ufffd", str(text))


def _fmt(value):
    return "not measured" if value is None else f"{value:.6g}"


def _timestamp(created) -> str:
    """The result's creation time in UTC as the schema's pattern wants it (no zone, no fraction); now if unknown."""
    when = parse_time(created) or datetime.datetime.now(datetime.timezone.utc)   # "Z" too, on Python 3.10
    if when.tzinfo is not None:
        when = when.astimezone(datetime.timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S")


def _case(suite, name: str, outcome: str | None = None, kind: str = "", message: str = ""):
    """A testcase; outcome is None (passed), "failure", "error" or "skipped"."""
    case = ET.SubElement(suite, "testcase", name=_xml(name), classname=suite.get("name"), time="0")
    if outcome:
        attrs = {"message": _xml(message)} if outcome == "skipped" else {"type": kind, "message": _xml(message)}
        ET.SubElement(case, outcome, attrs).text = _xml(message)
    return case


def _budget_case(suite, row: dict, out: list) -> str | None:
    unit = f" {row['unit']}" if row["unit"] else ""
    measured = f"{row['budget']} measured {_fmt(row['measured'])}{unit}, limit {row['comparison']} {row['limit']:g}{unit}"
    if row["status"] == "fail":
        _case(suite, row["budget"], "failure", "budget missed", measured)
        return "failure"
    if row["status"] == "unmeasured":
        _case(suite, row["budget"], "failure", "not measured",
              f"NOT MEASURED: {row['budget']} has no figure in this result ({row['reason']}); "
              f"a budget on an unmeasured figure fails")
        return "failure"
    _case(suite, row["budget"])
    out.append(f"pass: {measured}")
    return None


def _regression_case(suite, reg: dict, out: list) -> str | None:
    name = "latency regression vs baseline"
    # what else changed (another model under the name, threads, load): the terminal said it, the CI's page did not
    noted = "; note: " + "; ".join(reg["notes"]) if reg.get("notes") else ""
    if reg["verdict"] in ("not tested", "inconclusive"):   # undecided: shown as skipped, not as a pass
        against = f" vs {(reg.get('baseline') or {}).get('result')}" if reg.get("baseline") else ""
        _case(suite, name, "skipped", message=f"{reg['verdict']}{against}: {reg['reason']}{noted}")
        return "skipped"
    text = (f"{reg['verdict']}: p50 x{reg['p50']['ratio']:.3f}, p90 x{reg['p90']['ratio']:.3f} vs "
            f"{(reg.get('baseline') or {}).get('result')} ({reg['reason']}){noted}")
    if reg["verdict"] == "slower":
        _case(suite, name, "failure", "latency regression", text)
        return "failure"
    _case(suite, name)
    out.append(text)
    return None


def _suite(suites, index: int, entry: dict, regression: dict | None, named_twice: bool):
    # several results of one bundle on one device (a run directory's history): told apart by their files, or a CI
    # system merges their test cases into one suite
    name = _xml(f"{entry['bundle']}@{entry['device']}" + (f" ({_file_name(entry['result'])})" if named_twice else ""))
    suite = ET.SubElement(suites, "testsuite", name=name, package=_xml(entry["bundle"]), id=str(index),
                          timestamp=_timestamp(entry.get("created")),
                          hostname=_xml(entry.get("hostname") or entry["device"] or "localhost"))
    props = ET.SubElement(suite, "properties")
    for key in ("result", "device", "bundle", "status"):
        ET.SubElement(props, "property", name=key, value=_xml(entry.get(key)))
    counts = {"failure": 0, "error": 0, "skipped": 0}
    out = []
    if entry["status"] != "ok":
        if entry["status"] == UNREADABLE:
            _case(suite, "result", "error", "unreadable result", entry["error"])
        else:
            _case(suite, "result", "error", "device failure",
                  f"the device produced no result: {entry.get('error', 'no result')}")
        counts["error"] += 1
    outcomes = [_budget_case(suite, row, out) for row in entry["budgets"]]
    if regression is not None:
        outcomes.append(_regression_case(suite, regression, out))
    for outcome in outcomes:
        if outcome:
            counts[outcome] += 1
    ET.SubElement(suite, "system-out").text = _xml("\n".join(out + [f"warning: {w}" for w in entry["warnings"]]))
    ET.SubElement(suite, "system-err")
    suite.set("tests", str(len(suite.findall("testcase"))))
    suite.set("failures", str(counts["failure"]))
    suite.set("errors", str(counts["error"]))
    suite.set("skipped", str(counts["skipped"]))
    suite.set("time", "0")


def _file_name(path) -> str:
    return pathlib.PurePath(str(path)).name


def write_refusal(message: str, path, kind: str = "bad input") -> None:
    """A check refused before any verdict (a result file named wrong, a store that cannot be read), as one <error>
    test case: no file at all read as "no test results" in a CI system's report step (a CI walkthrough)."""
    suites = ET.Element("testsuites")
    suite = ET.SubElement(suites, "testsuite", name="edgeopt check", package="edgeopt", id="0",
                          timestamp=_timestamp(None), hostname="localhost", tests="1", failures="0", errors="1",
                          skipped="0", time="0")
    ET.SubElement(suite, "properties")
    _case(suite, "check", "error", kind, message)
    ET.SubElement(suite, "system-out")
    ET.SubElement(suite, "system-err")
    with replacing(path, "the JUnit report", "wb") as f:
        ET.ElementTree(suites).write(f, encoding="utf-8", xml_declaration=True)


def write(report: dict, path) -> None:
    suites = ET.Element("testsuites")
    regressions = {r["result"]: r for r in report.get("regressions", [])}
    labels = collections.Counter((e["bundle"], e["device"]) for e in report["results"])
    for index, entry in enumerate(report["results"]):
        _suite(suites, index, entry, regressions.get(entry["result"]), labels[entry["bundle"], entry["device"]] > 1)
    with replacing(path, "the JUnit report", "wb") as f:
        ET.ElementTree(suites).write(f, encoding="utf-8", xml_declaration=True)
