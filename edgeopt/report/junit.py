"""JUnit XML for CI systems: one testsuite per result, one testcase per budget."""
from __future__ import annotations

import pathlib
import re
import xml.etree.ElementTree as ET

# Characters XML 1.0 cannot hold at all; names and messages come from result files, so they are replaced.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml(text) -> str:
    return _NOT_XML.sub("\ufffd", str(text))


def _fmt(value):
    return "not measured" if value is None else f"{value:.6g}"


def write(report: dict, path) -> None:
    suites = ET.Element("testsuites", name="edgeopt check")
    for entry in report["results"]:
        suite = ET.SubElement(suites, "testsuite", name=_xml(f"{entry['bundle']}@{entry['device']}"))
        failures = 0
        if entry["status"] != "ok":
            case = ET.SubElement(suite, "testcase", classname=suite.get("name"), name="result")
            ET.SubElement(case, "error", message=_xml(entry.get("error", "no result")))
            failures += 1
        for row in entry["budgets"]:
            case = ET.SubElement(suite, "testcase", classname=suite.get("name"), name=row["budget"])
            text = f"{row['budget']} measured {_fmt(row['measured'])} {row['unit']}, limit {row['comparison']} {row['limit']:g}"
            if row["status"] == "fail":
                ET.SubElement(case, "failure", message=text)
                failures += 1
            elif row["status"] == "unmeasured":
                ET.SubElement(case, "failure", message=_xml(f"{row['budget']} was not measured: {row['reason']}"))
                failures += 1
            else:
                ET.SubElement(case, "system-out").text = text
        suite.set("tests", str(len(suite)))
        suite.set("failures", str(failures))
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)
