"""JUnit XML for CI systems: one testsuite per result, one testcase per budget."""
from __future__ import annotations

import pathlib
import xml.etree.ElementTree as ET


def _fmt(value):
    return "not measured" if value is None else f"{value:.6g}"


def write(report: dict, path) -> None:
    suites = ET.Element("testsuites", name="edgeopt check")
    for entry in report["results"]:
        suite = ET.SubElement(suites, "testsuite", name=f"{entry['bundle']}@{entry['device']}")
        failures = 0
        if entry["status"] != "ok":
            case = ET.SubElement(suite, "testcase", classname=suite.get("name"), name="result")
            ET.SubElement(case, "error", message=entry.get("error", "no result"))
            failures += 1
        for row in entry["budgets"]:
            case = ET.SubElement(suite, "testcase", classname=suite.get("name"), name=row["budget"])
            text = f"{row['budget']} measured {_fmt(row['measured'])} {row['unit']}, limit {row['comparison']} {row['limit']:g}"
            if row["status"] == "fail":
                ET.SubElement(case, "failure", message=text)
                failures += 1
            elif row["status"] == "unmeasured":
                ET.SubElement(case, "failure", message=f"{row['budget']} was not measured: {row['reason']}")
                failures += 1
            else:
                ET.SubElement(case, "system-out").text = text
        suite.set("tests", str(len(suite)))
        suite.set("failures", str(failures))
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)
