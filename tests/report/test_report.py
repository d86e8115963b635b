"""`edgeopt report` on real results: local benches, a fleet run over real loopback sshd devices, a results store
with history, and a run on a recorded Jetson sysfs tree (power and temperature). The HTML page is rendered in
headless Chromium: its charts must be drawn and its console silent."""
import csv
import io
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser

import pytest
import yaml

from conftest import FAST_LOOP
from edgeopt import api
from edgeopt.store import Store

TESTS = pathlib.Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_csv_leaves_throttled_empty_where_thermal_was_not_measured(cli, lab_results, tmp_path):
    """`false` claimed a throttling check on a device where nothing thermal could be read."""
    doc = json.loads(lab_results["fp32"].read_text())
    paths = []
    for name, thermal in [("read", {"throttled": False, "frequency_capped": False}),
                          ("unread", {"available": False, "reason": "no thermal zones readable under /sys"})]:
        doc["thermal"], doc["device"]["name"] = thermal, name
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(doc))
    out = tmp_path / "r.csv"
    r = cli("report", *paths, "--format", "csv", "-o", out)
    assert r.exit_code == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert {row["device"]: row["throttled"] for row in rows} == {"read": "false", "unread": ""}
    # which runtime each ran on, in the CSV and under the bundle's name (a LiteRT row looked like ONNX Runtime's)
    runtime = f"{doc['runtime']['name']} {doc['runtime']['version']} ×{doc['settings']['threads']}"
    assert {row["runtime"] for row in rows} == {runtime}
    assert cli("report", *paths, "-o", tmp_path / "r.html").exit_code == 0
    assert f"<span class='small muted'>{runtime}</span>" in (tmp_path / "r.html").read_text()


@pytest.fixture(scope="module")
def lab_results(bundles, tmp_path_factory):
    """results/ with fp32 and int8 benched here, an 8-run stored history of int8 whose p90 halved after run 4,
    and (where sshd runs) a fleet run of int8 on two loopback devices."""
    root = tmp_path_factory.mktemp("report")
    res = root / "results"
    fp32 = api.bench(bundles["fp32"], "local", res, loop=FAST_LOOP)
    int8 = api.bench(bundles["int8"], "local", res, loop=FAST_LOOP)
    store = Store(f"sqlite:///{res / 'edgeopt.db'}")
    p90 = int8["latency"]["p90_ms"]
    for i, factor in enumerate([2.0, 2.03, 1.98, 2.01, 1.0, 1.01, 0.99, 1.02]):   # runs stored before today's
        old = json.loads(json.dumps({k: v for k, v in int8.items() if k != "_path"}))
        old["created"], old["latency"]["p90_ms"] = f"2026-01-0{i + 1}T00:00:00+00:00", p90 * factor
        store.add(old)
    store.close()
    out = {"root": root, "results": res, "fp32": pathlib.Path(fp32["_path"]), "int8": pathlib.Path(int8["_path"]),
           "fleet": None}
    sys.path.insert(0, str(TESTS))
    import sshd
    if sshd.available():
        return out
    from edgeopt.transport.ssh import SshOptions
    lab = sshd.Lab(root / "lab")
    try:
        devices = [lab.add(f"pi-{i}", 60 + i) for i in range(2)]
        inv = root / "fleet.yaml"
        inv.write_text(yaml.safe_dump({"devices": {d.name: lab.inventory_entry(d) for d in devices}}))
        fleet = api.fleet_bench(bundles["int8"], inv, parallel=2, results_dir=res, loop=FAST_LOOP,
                                ssh_options=SshOptions(known_hosts=str(lab.known_hosts)))
        assert sorted(fleet["succeeded"]) == ["pi-0", "pi-1"], fleet["failed"]
        out["fleet"] = pathlib.Path(fleet["run_dir"])
    finally:
        lab.stop()
    return out


def inputs(lab_results):
    return [lab_results["fp32"], lab_results["int8"]] + ([lab_results["fleet"]] if lab_results["fleet"] else [])


class Page(HTMLParser):
    """Tags, attributes and text of a page, to check what it holds and what it refers to."""

    def __init__(self, text):
        super().__init__()
        self.tags, self.refs, self.text = [], [], []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.refs += [v for k, v in attrs if k in ("src", "href", "xlink:href", "srcset", "action") and v]

    def handle_data(self, data):
        self.text.append(data)


def test_html_report_holds_every_section_and_needs_no_network(cli, lab_results, tmp_path):
    out = tmp_path / "report.html"
    r = cli("report", *inputs(lab_results), "-o", out, "--budget", "latency_p90_ms=1000", "--json")
    assert r.exit_code == 0, r.stderr
    summary = r.json()
    assert summary["format"] == "html" and summary["path"] == str(out) and summary["bytes"] == out.stat().st_size
    assert summary["schema"] == "edgeopt.report/1"   # versioned, as check's answer is
    text = out.read_text()
    page = Page(text)
    # self-contained: no script, no external reference of any kind, no web font, no stylesheet link
    assert "script" not in page.tags and "link" not in page.tags and page.refs == []
    assert not re.search(r"https?://|@import|url\(|@font-face", text)
    words = " ".join(page.text)
    for heading in ("Summary", "Latency distributions", "Latency over the run", "Memory", "Power",
                    "Temperature and clocks", "Fleet", "History"):
        assert f"<h2>{heading}</h2>" in text
    n_results = len(summary["summary"])
    bundles = {row["bundle"] for row in summary["summary"]}
    fleet = 1 if lab_results["fleet"] else 0
    # ECDF per bundle + one over-the-run chart per result + memory + fleet + one history chart per pair with >= 2 runs
    history_charts = 1   # int8@local: the stored history; fp32@local and the fleet devices have one run each
    assert page.tags.count("svg") == len(bundles) + n_results + 1 + fleet + history_charts
    assert "no power sensor" in words and "over the run:" not in " ".join(a for a in re.findall(r'aria-label="([^"]*)"', text)
                                                                    if not a.startswith("Latency"))
    # the stored p90 halved after run 4: one change point, found there
    assert "run 5 (2026-01-05T00:00:00)" in words and "-50." in words   # from about 2x p90 to 1x
    assert "Peak is the high-water mark, reset just before the timed loop." in words   # its scope said once
    # a result outside a fleet run says when it ran, and its file on hover: two of one bundle@device told apart
    assert re.search(r'title="[^"]+\.json">\d{4}-\d\d-\d\d \d\d:\d\d:\d\d</span>', text)
    assert all(row["verdict"] == "pass" for row in summary["summary"])


def test_report_exit_codes_follow_check(cli, lab_results, tmp_path):
    r = cli("report", lab_results["int8"], "-o", tmp_path / "r.html", "--budget", "latency_p90_ms=0.000001")
    assert r.exit_code == 1
    assert 'FAIL</span>' in (tmp_path / "r.html").read_text()
    # and the CI log says why, not only the page's name (a user review)
    assert re.search(r"^edgeopt: \S+@\S+: latency_p90_ms \S+ ms misses <= 1e-06 ms$", r.stderr, re.MULTILINE), r.stderr
    quiet = cli("report", lab_results["int8"], "-o", tmp_path / "q.html", "--budget", "latency_p90_ms=0.000001", "-q")
    # as check -q: nothing but why it failed, one line each (it said nothing at all: a review)
    assert quiet.exit_code == 1 and re.fullmatch(r"edgeopt: \S+@\S+: latency_p90_ms \S+ ms misses <= 1e-06 ms\n",
                                                 quiet.stderr), quiet.stderr
    failed = json.loads(lab_results["int8"].read_text())
    failed.update(status="failed", error={"message": "device pi-9: connection refused", "exit_code": 3})
    for key in ("latency", "memory", "power", "thermal", "accuracy"):
        failed.pop(key)
    (tmp_path / "failed.json").write_text(json.dumps(failed))
    r = cli("report", lab_results["int8"], tmp_path / "failed.json", "-o", tmp_path / "f.html", "--no-history")
    assert r.exit_code == 3 and "no result: device pi-9: connection refused" in r.stderr
    text = (tmp_path / "f.html").read_text()
    assert "DEVICE FAILED" in text and "device pi-9: connection refused" in text and "the run failed" in text
    assert "history left out (--no-history)" in text


def test_markdown_for_a_pull_request(cli, lab_results, tmp_path):
    doc = json.loads(lab_results["fp32"].read_text())
    doc["device"]["name"] = "pi|`<b>x</b>`"   # a device name that would break a table or inject markup
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps(doc))
    r = cli("report", lab_results["int8"], odd, "--format", "markdown", "--budget", "latency_p90_ms=0.000001")
    assert r.exit_code == 1, r.stderr
    rows = [line for line in r.stdout.splitlines() if line.startswith("| ")]
    header, body = rows[0], rows[1:3]
    unescaped = lambda line: len(re.findall(r"(?<!\\)\|", line))
    assert all(unescaped(line) == unescaped(header) for line in body)
    assert "<b>" not in r.stdout and "pi\\|\\`\\<b\\>x\\</b\\>\\`" in r.stdout
    assert r.stdout.count("❌ FAIL: `latency_p90_ms` ≤ 1e-06 ms, measured ") == 2
    assert "**p90 change points in the history**" in r.stdout and "| 5 of 9 |" in r.stdout


def test_csv_for_a_spreadsheet(cli, lab_results, tmp_path):
    doc = json.loads(lab_results["fp32"].read_text())
    doc["device"]["name"] = "=HYPERLINK(\"x\")"
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps(doc))
    out = tmp_path / "r.csv"
    r = cli("report", lab_results["int8"], odd, "--format", "csv", "-o", out)
    assert r.exit_code == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    int8 = json.loads(lab_results["int8"].read_text())
    assert len(rows) == 2 and rows[0]["bundle"] == int8["bundle"]["name"] and rows[0]["n"] == str(int8["latency"]["n"])
    assert float(rows[0]["p90_ms"]) == pytest.approx(int8["latency"]["p90_ms"], rel=1e-11)   # 12 digits
    assert [float(rows[0]["p90_ci95_low"]), float(rows[0]["p90_ci95_high"])] == \
        pytest.approx(int8["latency"]["ci95"]["p90_ms"], rel=1e-11)
    assert rows[1]["device"] == "'=HYPERLINK(\"x\")"   # not run as a formula
    from edgeopt.report.markdown import _spreadsheet_safe   # a figure with float arithmetic's noise: 12 digits
    assert _spreadsheet_safe(0.07752870000000008) == "0.0775287" and _spreadsheet_safe(1e-9) == "1e-09"
    doc["latency"]["p90_ms"] = None   # absent: no interval around it either ("— [0.0191–0.0192]")
    odd.write_text(json.dumps(doc))
    r = cli("report", odd, "--format", "csv", "-o", out)
    row = next(csv.DictReader(io.StringIO(out.read_text())))
    assert r.exit_code == 1 and row["p90_ms"] == row["p90_ci95_low"] == row["p90_ci95_high"] == "", row   # p90 budget: not measured
    assert rows[0]["power_w"] == "" and rows[0]["throttled"] == ("false" if "throttled" in int8["thermal"] else "")


@pytest.fixture(scope="module")
def jetson_result(bundles, tmp_path_factory):
    """A local bench on the recorded Jetson tree (power, temperature and clock timelines), with a passive trip
    point at 45 degC added to tj-thermal (it reads 48.5): a throttled run whose charts mark it."""
    root = tmp_path_factory.mktemp("jetson") / "tree"
    shutil.copytree(TESTS / "power" / "fixtures" / "jetson-orin-nano-jp5", root, symlinks=True)
    (root / "sys/class/thermal/thermal_zone4/trip_point_0_type").write_text("passive\n")
    (root / "sys/class/thermal/thermal_zone4/trip_point_0_temp").write_text("45000\n")
    before = os.environ.get("EDGEOPT_SYSFS_ROOT")
    os.environ["EDGEOPT_SYSFS_ROOT"] = str(root)   # the local agent inherits it
    try:
        doc = api.bench(bundles["fp32"], "local", root.parent / "results", loop=dict(FAST_LOOP, min_seconds=0.6))
    finally:
        os.environ.pop("EDGEOPT_SYSFS_ROOT") if before is None else os.environ.__setitem__("EDGEOPT_SYSFS_ROOT", before)
    return pathlib.Path(doc["_path"])


def test_power_and_temperature_where_measured(cli, jetson_result, tmp_path):
    r = cli("report", jetson_result, "-o", tmp_path / "r.html", "--budget", "power_w=8", "--json", "--no-history")
    assert r.exit_code == 0, r.stderr
    assert r.json()["summary"][0]["power_w"] == pytest.approx(7.5)
    text = (tmp_path / "r.html").read_text()
    assert "ina3221: VDD_IN (module input)" in text and "<td class=num>7.5</td>" in text
    assert "thermal_zone4 (tj-thermal)" in text and "48.5 →" in text and "cpufreq policy0" in text
    labels = re.findall(r'aria-label="([^"]*)"', text)
    for what in ("Power", "Temperature", "CPU frequency"):
        assert f"{what} over the run: none-fp32 @ local" in labels
    assert "trip point 45 °C" in text and re.search(r"<title>throttling [^<]* s</title>", text)   # the trip line and the shaded span
    assert "No power timeline" not in text and "No temperature timeline" not in text
    md = cli("report", jetson_result, "--format", "markdown", "--no-history").stdout
    assert "**Over the run**" in md and "power total \\(VDD\\_IN \\(module input\\)\\) 7.5–7.5 W" in md
    assert "48.5–48.5 °C" in md and "(throttling)" in md and "policy0 1510–1510 MHz" in md
    header, _, row = md.split("### edgeopt report")[1].strip().splitlines()[2:5]   # power columns, where measured
    assert "| W | mJ / inference |" in header and "| 7.5 | " in row, (header, row)
    doc = json.loads(jetson_result.read_text())
    doc["power"] = {"available": False, "reason": "no power sensor on this device (tried rapl)"}
    (tmp_path / "plain.json").write_text(json.dumps(doc))
    plain = cli("report", tmp_path / "plain.json", "--format", "markdown", "--no-history").stdout
    assert "| top-1 | verdict |" in plain and "mJ / inference" not in plain   # no power measured: no columns
    both = cli("report", jetson_result, tmp_path / "plain.json", "--format", "markdown", "--no-history").stdout
    assert "W absent for none-fp32 @ local" in both and "no power sensor on this device \\(tried rapl\\)" in both


def test_a_result_without_timelines_says_why(cli, jetson_result, tmp_path):
    old = json.loads(jetson_result.read_text())   # as an agent from before timelines wrote it
    old["power"].pop("timeline")
    old["thermal"].pop("timeline")
    (tmp_path / "old.json").write_text(json.dumps(old))
    r = cli("report", tmp_path / "old.json", "-o", tmp_path / "r.html", "--no-history")
    assert r.exit_code == 0, r.stderr
    words = " ".join(Page((tmp_path / "r.html").read_text()).text)
    assert "No power timeline for none-fp32 @ local: the result keeps idle, mean and peak power" in words
    assert "No temperature timeline for none-fp32 @ local: the result keeps each zone's temperature" in words
    assert "Power over the run:" not in (tmp_path / "r.html").read_text()
    old["power"]["timeline"] = json.loads(jetson_result.read_text())["power"]["timeline"]
    old["power"]["timeline"]["total_w"][0] = "hot"   # index 0: a loaded host may read few points
    (tmp_path / "old.json").write_text(json.dumps(old))
    r = cli("report", tmp_path / "old.json", "-o", tmp_path / "r.html", "--no-history")
    assert r.exit_code == 2 and r.stderr.count("\n") == 1
    assert "power.timeline.total_w[0] must be a finite number" in r.stderr and str(tmp_path / "old.json") in r.stderr


def test_a_store_that_cannot_be_read_leaves_out_the_history_not_the_report(cli, lab_results, tmp_path):
    """The history is a supplement: a PostgreSQL server that is down (a real refused port) or a database without
    edgeopt's tables costs the history, with a warning, and the report of the results is still written. A URL
    that is not one is still the user's to fix."""
    pytest.importorskip("psycopg")
    sys.path.insert(0, str(TESTS / "store"))
    from pgserver import free_port
    down = f"postgresql://edgeopt:hunter2@127.0.0.1:{free_port()}/results"
    r = cli("report", lab_results["int8"], "-o", tmp_path / "r.html", "--store", down)
    assert r.exit_code == 0, r.stderr
    assert r.stderr.startswith("edgeopt: warning: the report has no history: results store") and "hunter2" not in r.stderr
    page = (tmp_path / "r.html").read_text()
    assert "no history: results store postgresql+psycopg://edgeopt:***@127.0.0.1" in page and "hunter2" not in page
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    r = cli("report", lab_results["int8"], "--format", "markdown", "--store", f"sqlite:///{empty}", "-q")
    assert r.exit_code == 0 and "holds no edgeopt results" in r.stderr and "| int8" in r.stdout.lower()
    typo = tmp_path / "typo.db"   # a mistyped --store: said, where it was only a line in the report
    r = cli("report", lab_results["int8"], "--format", "markdown", "--store", f"sqlite:///{typo}", "-q")
    assert r.exit_code == 0 and r.stderr == (f"edgeopt: warning: the report has no history: results store {typo} "
                                             "does not exist\n") and not typo.exists()
    folder = tmp_path / "folder.db"   # it read "does not exist"
    folder.mkdir()
    r = cli("report", lab_results["int8"], "--format", "markdown", "--store", f"sqlite:///{folder}", "-q")
    assert r.exit_code == 0 and f"results store {folder} is a directory, not an SQLite file" in r.stderr, r.stderr
    r = cli("report", lab_results["int8"], "-o", tmp_path / "x.html", "--store", "mysql://db/results")
    assert r.exit_code == 2 and "not 'mysql'" in r.stderr and not (tmp_path / "x.html").exists()


def test_bad_inputs_are_one_line(cli, lab_results, tmp_path):
    doc = json.loads(lab_results["int8"].read_text())
    doc["latency"]["samples_ms"][3] = "fast"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    r = cli("report", bad, "-o", tmp_path / "r.html")
    assert r.exit_code == 2 and r.stderr.count("\n") == 1
    assert str(bad) in r.stderr and "latency.samples_ms" in r.stderr and "'fast'" in r.stderr
    assert not (tmp_path / "r.html").exists()
    doc["latency"]["samples_ms"] = None   # an older agent kept no raw samples: shown as absent, not refused
    bad.write_text(json.dumps(doc))
    r = cli("report", bad, "-o", tmp_path / "r.html", "--no-history")
    assert r.exit_code == 0 and "no raw samples in the result (latency.samples_ms)" in (tmp_path / "r.html").read_text()
    r = cli("report", tmp_path / "missing.json", "-o", tmp_path / "r.html")
    assert r.exit_code == 2 and "result file not found" in r.stderr
    r = cli("report", lab_results["int8"], "-o", "/proc/edgeopt-report.html")
    assert r.exit_code == 2 and r.stderr.startswith("edgeopt: error:") and r.stderr.count("\n") == 1


def test_names_from_result_files_are_escaped(cli, lab_results, tmp_path):
    doc = json.loads(lab_results["int8"].read_text())
    doc["device"]["name"] = "<img src=x onerror=alert(1)>"
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps(doc))
    r = cli("report", odd, "-o", tmp_path / "r.html", "--no-history")
    assert r.exit_code == 0
    page = Page((tmp_path / "r.html").read_text())
    assert "img" not in page.tags and "<img src=x onerror=alert(1)>" in " ".join(page.text)


# -- headless Chromium -------------------------------------------------------------------------------------------

PROBE = """<script>
// Test-only: added to a copy of the report. Measures every chart as laid out and drawn, and writes it into the DOM.
const charts = [...document.querySelectorAll('svg.chart')].map(svg => {
  const box = svg.getBoundingClientRect();
  const marks = [...svg.querySelectorAll('polyline, polygon, circle, rect:not(.plot), line:not(.grid)')];
  const drawn = marks.filter(m => { const b = m.getBBox(); return b.width > 0 || b.height > 0; }).length;
  return {label: svg.getAttribute('aria-label'), width: box.width, height: box.height, marks: marks.length, drawn};
});
const out = document.createElement('pre'); out.id = 'probe'; out.textContent = JSON.stringify(charts);
document.body.appendChild(out);
</script>"""


def chromium(*args, timeout=120):
    """Headless Chromium, offline (every host name fails to resolve), logging the page console to stderr."""
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
           "--host-resolver-rules=MAP * ~NOTFOUND", "--enable-logging=stderr", "--v=0", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def console_errors(stderr: str) -> list:
    return [line for line in stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line or "net::ERR" in line]


def probe(page: pathlib.Path, tmp_path) -> tuple:
    copy = tmp_path / f"probe-{page.name}"
    copy.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    r = chromium("--dump-dom", "--virtual-time-budget=5000", copy.as_uri())
    found = re.search(r'<pre id="probe">(.*?)</pre>', r.stdout, re.S)
    return (json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&")) if found else None), r.stderr


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
def test_chromium_draws_every_chart_with_a_silent_console(cli, lab_results, jetson_result, tmp_path):
    # the console check can fail: a chart with a broken coordinate is reported there
    control = tmp_path / "control.html"
    control.write_text('<!DOCTYPE html><html><body><svg class="chart" width="50" height="50">'
                       '<polyline points="nan,1 2,2"/></svg></body></html>')
    _, stderr = probe(control, tmp_path)
    assert console_errors(stderr), stderr
    out = tmp_path / "report.html"
    r = cli("report", *inputs(lab_results), jetson_result, "-o", out, "--budget", "latency_p90_ms=1000")
    assert r.exit_code == 0, r.stderr
    charts, stderr = probe(out, tmp_path)
    assert charts, stderr[-2000:]
    assert len(charts) == out.read_text().count("<svg")
    # the Jetson result's timelines are drawn: power (total + two rails), five zones, two clocks, throttled span
    drawn = {c["label"]: c for c in charts}
    for what, lines in (("Power", 3), ("Temperature", 5 + 1 + 1), ("CPU frequency", 2)):
        label = next(k for k in drawn if k.startswith(f"{what} over the run: none-fp32 @ local ("))   # beside lab's
        assert drawn[label]["marks"] >= lines, drawn
    for chart in charts:
        assert chart["width"] > 100 and chart["height"] > 100, chart
        assert chart["marks"] > 0 and chart["drawn"] == chart["marks"], chart
    # the report itself, unchanged, offline: nothing logged at all by the page
    shot = tmp_path / "shot.png"
    r = chromium("--hide-scrollbars", "--window-size=1200,5000", f"--screenshot={shot}", out.as_uri())
    assert console_errors(r.stderr) == [], r.stderr
    Image = pytest.importorskip("PIL.Image", reason="Pillow absent: the screenshot's pixels are not counted")
    import numpy as np
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=int)
    # the charts' series colour (#0072B2) is drawn: ECDF lines, bands, dots, memory bars (the window is tall
    # enough for the whole page: at 3000 px a summary a few lines taller pushed the memory bars out of the shot)
    blue = (np.abs(pixels - [0x00, 0x72, 0xB2]).max(axis=2) < 40).sum()
    assert blue > 2000


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
def test_a_long_bundle_name_wraps_and_leaves_the_verdict_in_view(cli, lab_results, tmp_path):
    """The name cell never wrapped: a 90-character bundle name pushed top-1, power, the verdict and the budgets out
    of a 1400 px window into a horizontal scroll box (a user walkthrough), and out of a printout."""
    doc = json.loads(lab_results["int8"].read_text())
    doc["bundle"]["name"] = "digits_cnn-a-very-long-experimental-bundle-name-for-the-kitchen-camera-v2-int8-final-b"
    long = tmp_path / "long.json"
    long.write_text(json.dumps(doc))
    out = tmp_path / "long.html"
    assert cli("report", lab_results["fp32"], long, "-o", out, "--no-history").exit_code in (0, 1)
    measure = ("<script>const t = document.querySelector('table'); document.body.insertAdjacentHTML('beforeend', "
               "'<pre id=\"fits\">' + (t.scrollWidth <= t.parentElement.clientWidth) + '</pre>');</script>")
    copy = tmp_path / "measured.html"
    copy.write_text(out.read_text().replace("</body>", measure + "</body>"))
    r = chromium("--window-size=1400,900", "--dump-dom", "--virtual-time-budget=3000", copy.as_uri())
    assert '<pre id="fits">true</pre>' in r.stdout, r.stdout[-500:] + r.stderr[-1000:]


def test_stdout_json_and_quiet(cli, lab_results, tmp_path):
    r = cli("report", lab_results["int8"], "--format", "csv", "--no-history", "--json")
    assert r.exit_code == 0 and r.json()["text"].startswith("bundle,device,") and r.json()["summary"][0]["n"] > 0
    r = cli("report", lab_results["int8"], "--format", "markdown", "--no-history", "-q")   # the text, nothing more
    assert r.exit_code == 0 and r.stdout.startswith("### edgeopt report") and r.stderr == ""
    r = cli("report", lab_results["int8"], "-o", tmp_path / "q.md", "--no-history", "-q")
    assert r.exit_code == 0 and r.stdout == "" and (tmp_path / "q.md").read_text().startswith("### edgeopt report")
    r = cli("report", lab_results["int8"], "-o", tmp_path / "r.html", "--no-history", "--json")
    assert "text" not in r.json() and (tmp_path / "r.html").stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_throttled_run_is_marked(cli, lab_results, tmp_path):
    doc = json.loads(lab_results["int8"].read_text())
    doc["warnings"].append("throttled: cpufreq policy0 fell from 2400 to 1500 MHz under load (thermal or power throttling)")
    hot = tmp_path / "hot.json"
    hot.write_text(json.dumps(doc))
    r = cli("report", hot, "-o", tmp_path / "r.html", "--no-history", "--json")
    assert r.exit_code == 0 and r.json()["summary"][0]["throttled"] is True
    assert (tmp_path / "r.html").read_text().count('<span class="badge bad">THROTTLED</span>') == 2  # summary, over the run


def test_a_study_report_judges_the_best_by_the_limits_its_chosen_bundle_carries(int8_result, tmp_path):
    """report --study shows the best trial's own result, measured with its trial's bundle, which carried the ratio
    times the baseline's first run; the chosen bundle carries the ratio times the median of every baseline run.
    The report judged the best by the first (eff5: "FAIL: latency_p50_ms 0.08378 ≤ 0.0700164" for the study's
    chosen configuration); it now judges it by what the chosen bundle carries, and a --budget still wins."""
    from edgeopt import api
    from edgeopt.budgets import KINDS, lookup

    p50 = lookup(int8_result, KINDS["latency_p50_ms"].path)[0]
    doc = {k: v for k, v in int8_result.items() if not k.startswith("_")}
    doc["bundle"] = dict(doc["bundle"], budgets={"latency_p50_ms": p50 / 2})   # the first run's limit: missed
    path = tmp_path / "best.json"
    path.write_text(json.dumps(doc))
    study = {"best": {"results": [str(path)]},
             "carried_limits": {"latency_p50_ms": {"limit": 2 * p50, "median": 4 * p50, "runs": 7}}}
    assert api.check([path])["exit_code"] == 1
    judged = api.check([path], limits_by_path=api._study_limits(study))
    assert judged["exit_code"] == 0
    assert [b["limit"] for b in judged["results"][0]["budgets"] if b["budget"] == "latency_p50_ms"] == [2 * p50]
    assert api.check([path], {"latency_p50_ms": p50 / 3}, limits_by_path=api._study_limits(study))["exit_code"] == 1
    assert api._study_limits({"best": None, "trials": [], "carried_limits": study["carried_limits"]}) == {}


def test_a_study_report_judges_its_baseline_by_the_relative_budget_and_exits_with_the_studys_verdict(
        int8_result, tmp_path, monkeypatch):
    """The baseline's bundle cannot carry the relative budget it sets, so `report --study` read "✅ every budget
    holds" (exit 0) beside a baseline the study judged to miss it, and exited 0 for a study where no trial met
    every budget. The baseline is judged by the study's limit now; the report's verdict is the study's."""
    from edgeopt import api
    from edgeopt.budgets import KINDS, lookup

    p50 = lookup(int8_result, KINDS["latency_p50_ms"].path)[0]
    doc = {k: v for k, v in int8_result.items() if not k.startswith("_")}
    paths = {}
    for name, scale in (("s-t0", 1), ("s-t1", 0.25)):   # the chosen one at a quarter of the baseline's p50
        paths[name] = tmp_path / f"{name}.json"
        latency = dict(doc["latency"], p50_ms=scale * p50)
        paths[name].write_text(json.dumps(dict(doc, latency=latency, bundle=dict(doc["bundle"], name=name, budgets={}))))
    def trial(number, **attrs):   # a row as edgeopt.search.study.load gives it
        return dict({"trial": number, "state": "complete", "config": f"c{number}", "figures": {"latency_p50_ms": p50},
                     "violations": {}, "feasible": True, "measurement": "full", "cached": False, "twin_of": None,
                     "transforms_reused": False, "baseline": False, "textbook": None, "error": None, "bundle": None,
                     "stages": [], "paired": None, "seconds": {}, "parity": None, "untrained": None,
                     "rechecked": None, "results": [str(paths[f"s-t{number}"])]}, **attrs)
    baseline, best = trial(0, baseline=True, feasible=False), trial(1)
    study = {"study": "s", "objective": "latency_p50_ms", "budgets": {}, "trials": [baseline, best], "best": best,
             "relative_budgets": {"latency_p50_ms": 0.5}, "baseline_figures": {"latency_p50_ms": p50},
             "paired_baseline": True, "carried_limits": {"latency_p50_ms": {"limit": 0.6 * p50, "median": 1.2 * p50,
                                                                              "runs": 5}},
             "pareto": [], "pareto_figures": ["latency_p50_ms"], "notes": []}
    from edgeopt.store import Store, file_url
    store = file_url(tmp_path / "edgeopt.db")
    Store(store).close()   # a store without the results of another host's trial
    monkeypatch.setattr(api, "_report_study", lambda *a: (study, store))
    for fmt, headline in (("markdown", "2 result(s): ✅ the chosen configuration (trial 1) meets every budget."),
                          ("html", "(the chosen configuration (trial 1) meets every budget; edgeopt report exits 0)")):
        shown = api.report([], fmt=fmt, history=False, study="s")
        assert shown["exit_code"] == 0 and headline in shown["text"]
    assert "which <code>edgeopt check</code> applies" in shown["text"] and "`" not in shown["text"]   # not "`edgeopt check`"
    verdicts = {row["bundle"]: row["verdict"] for row in shown["rows"]["summary"]}
    assert verdicts == {"s-t0": "fail", "s-t1": "pass"}   # the baseline by the carried 0.5x of the runs' median
    study.update(best=None, carried_limits={})   # nothing chosen: the first run's 0.5x judges the baseline
    shown = api.report([], fmt="markdown", history=False, study="s")
    assert shown["exit_code"] == 1 and "1 result(s): ❌ no trial of the study met every budget." in shown["text"]
    assert f"`latency_p50_ms` ≤ {0.5 * p50:g} ms, measured {p50:.4g} ms" in shown["text"]
    study["best"] = best   # a --budget the chosen results miss here
    missed = api.report([], fmt="markdown", history=False, study="s", budgets={"latency_p50_ms": p50 / 8})
    assert missed["exit_code"] == 1 and "misses a budget here" in missed["text"]
    best["results"] = [str(paths["s-t1"]), str(tmp_path / "on-another-host.json")]   # a second device's
    partly = api.report([], fmt="markdown", history=False, study="s")
    assert partly["exit_code"] == 0 and "(1 of its 2 results are on this host or in the store)" in partly["text"]
    other = json.loads(paths["s-t1"].read_text())
    other["device"] = dict(other["device"], name="pi-2")
    with Store(store) as kept:   # that device's worker stored it: the report reads its document there
        kept.add(other, path=str(tmp_path / "on-another-host.json"))
    both = api.report([], fmt="markdown", history=False, study="s")
    assert both["exit_code"] == 0 and "of its 2 results" not in both["text"], both["text"]
    assert {row["device"] for row in both["rows"]["summary"]} == {other["device"]["name"], doc["device"]["name"]}
    assert re.search(r"- note: result files not on this host, read from the results store: \S*on-another-host\.json",
                     both["text"]), both["text"]
    study["notes"].clear()
    kept = Store(store)
    kept.add(dict(other, schema="edgeopt.result/0"), path=str(tmp_path / "on-another-host.json"))   # newer: wins
    kept.close()
    from edgeopt.errors import BadInput
    with pytest.raises(BadInput, match="the result of .*on-another-host.json is not an edgeopt.result/1 document"):
        api.report([], fmt="markdown", history=False, study="s")
    # a study run with a relative --results-dir records its files so; the store keeps them absolute (it found none)
    relative = os.path.join("results", "history", "s-t1@pi-2-20261207T120000Z.json")
    with Store(store) as kept:
        kept.add(other, path=str(tmp_path / "worker" / relative))
    best["results"] = [relative]
    study["notes"].clear()
    away = api.report([], fmt="markdown", history=False, study="s")
    assert away["exit_code"] == 0 and f"read from the results store: {relative}" in away["text"], away["text"]
    best["results"] = [os.path.join("..", "worker", relative)]   # --results-dir ../worker/results (a review)
    study["notes"].clear()
    assert api.report([], fmt="markdown", history=False, study="s")["exit_code"] == 0
    best["results"] = [str(paths["s-t1"])]
    # result files named: their own verdict, as without --study
    assert api.report([paths["s-t1"]], fmt="markdown", history=False, study="s")["exit_code"] == 0
    # a near miss chosen by the median of its runs: its result file here is its first run, which missed the
    # carried limit; the study judged it by its runs' figures, and so does the report
    slow = tmp_path / "s-t1-first.json"
    slow.write_text(json.dumps(dict(doc, latency=dict(doc["latency"], p50_ms=0.8 * p50),
                                    bundle=dict(doc["bundle"], name="s-t1", budgets={}))))
    study["carried_limits"] = {"latency_p50_ms": {"limit": 0.6 * p50, "median": 1.2 * p50, "runs": 5}}
    best.update(results=[str(slow)], rechecked=[0.8, 0.5, 0.55], rechecked_figures=[0.8 * p50, 0.5 * p50, 0.55 * p50])
    judged = api.report([], fmt="markdown", history=False, study="s")
    assert judged["exit_code"] == 0, judged["text"]
    assert (f"its latency_p50_ms by the median of its 3 runs ({0.55 * p50:.4g}), since its result file here, its "
            "first run, missed it") in judged["text"]
    best["rechecked_figures"] = [0.8 * p50, 0.7 * p50, 0.65 * p50]   # the median misses the carried limit too
    assert api.report([], fmt="markdown", history=False, study="s")["exit_code"] == 1


def test_history_text_says_when_the_noise_is_the_floor_and_what_a_change_needs():
    """One jump at the last run is no change point (a level needs MIN_SEGMENT runs) and no noise either (a
    robust estimate): the report says the floor is what it shows, not "noise ≈ 2 %" beside a 27 % jump."""
    from edgeopt.report import html, rows

    def text(p90s):
        return html._change_text(rows.history_series("m", "d", [
            {"created": f"2026-01-0{i + 1}", "p90_ms": v, "status": "ok"} for i, v in enumerate(p90s)]))

    jump = text([1.0, 1.0, 1.0, 1.27])
    assert "no change point (run-to-run noise at most 2 %, the floor; a change needs 3 runs at its new level)" in jump
    assert "run-to-run noise ≈ 2" not in jump
    assert "run-to-run noise ≈ 4.4 %" in text([1.0, 1.2, 0.95, 1.15, 1.0, 1.25])   # measured where it is above


def test_a_batched_bundle_says_its_latency_is_per_call_everywhere_it_is_shown(cli, tmp_path):
    """`--input-shape image=4,...` times calls of four samples: the manifest says what a call returns, and bench,
    compare and every report format label the latency as the call's."""
    from conftest import EVAL, FAST_BENCH_ARGS, MODEL, bundle_manifest

    bundle = tmp_path / "b4.edgepkg"
    packaged = cli("package", MODEL, "--profile", "generic", "--input-shape", "image=4,1,8,8", "--eval-data", EVAL,
                   "-o", bundle, "--json")
    assert packaged.exit_code == 0, packaged.stderr
    manifest = bundle_manifest(bundle)
    assert manifest["inputs"][0]["shape"] == [4, 1, 8, 8] and manifest["outputs"][0]["shape"] == [4, 10]
    benched = cli("bench", bundle, "--results-dir", tmp_path / "results", *FAST_BENCH_ARGS)
    assert benched.exit_code == 0, benched.stderr
    assert "4 samples a call (image [4, 1, 8, 8]): the latencies are per call" in benched.stdout
    result = tmp_path / "results" / "b4@local.json"
    assert json.loads(result.read_text())["bundle"]["inputs"] == [{"name": "image", "shape": [4, 1, 8, 8]}]
    assert "(batch 4)" in cli("compare", result).stdout
    # the format follows the output's name where --format is not given
    for name in ("r.md", "r.csv", "r.html"):
        assert cli("report", result, "-o", tmp_path / name, "--no-history").exit_code == 0
    assert (tmp_path / "r.md").read_text().startswith("### ") and "| b4 (batch 4: per call) |" in (tmp_path / "r.md").read_text()
    assert next(csv.DictReader(io.StringIO((tmp_path / "r.csv").read_text())))["batch"] == "4"
    assert "batch 4: per call" in (tmp_path / "r.html").read_text()


def test_a_single_sample_bundle_has_no_batch_label(cli, lab_results, tmp_path):
    out = tmp_path / "r.csv"
    assert cli("report", lab_results["int8"], "-o", out).exit_code == 0
    # the CSV's column says 1 (it read empty, where `compare -q` said 1); empty where the inputs are not recorded
    assert next(csv.DictReader(io.StringIO(out.read_text())))["batch"] == "1"
    assert "batch" not in cli("compare", lab_results["int8"]).stdout
    doc = json.loads(pathlib.Path(lab_results["int8"]).read_text())
    del doc["bundle"]["inputs"]
    older = tmp_path / "older@local.json"
    older.write_text(json.dumps(doc))
    assert cli("report", older, "-o", out, "--no-history").exit_code == 0
    assert next(csv.DictReader(io.StringIO(out.read_text())))["batch"] == ""


@pytest.mark.parametrize("name, what", [("summary.txt", ".txt is not a report's suffix"),
                                        ("summary", "no suffix tells the format")])
def test_an_output_name_that_names_no_format_is_refused_unless_format_is_given(cli, lab_results, tmp_path, name,
                                                                                what):
    """`-o summary.txt` wrote an HTML page into a file its name calls text; --format still writes any name."""
    out = tmp_path / name
    r = cli("report", lab_results["int8"], "-o", out, "--no-history")
    assert r.exit_code == 2 and not out.exists()
    assert r.stderr == (f"edgeopt: error: --output {out}: {what} (.html/.htm html, .md/.markdown markdown, .csv csv); "
                        "rename it or give --format\n")
    r = cli("report", lab_results["int8"], "-o", out, "--format", "markdown", "--no-history")
    assert r.exit_code == 0 and out.read_text().startswith("### "), r.stderr


def test_results_from_two_results_folders_each_get_their_own_stores_history(bundles, tmp_path):
    """Only the first result's store was read: the other folder's bundle had no history in the report."""
    paths = []
    for name, bundle in (("a", bundles["fp32"]), ("b", bundles["int8"])):
        for _ in range(2):
            doc = api.bench(bundle, "local", tmp_path / name / "results", loop=FAST_LOOP)
        paths.append(doc["_path"])
    report = api.report(paths, fmt="markdown")
    series = {h["bundle"]: len(h["points"]) for h in report["rows"]["history"]}
    assert series == {"none-fp32": 2, "int8-fp32": 2}, series


def test_a_fleet_runs_table_holds_its_own_devices_only(cli, lab_results, bundles, tmp_path):
    """A result given beside a fleet run was ranked in the run's table (a LiteRT bundle measured on x86 stood as
    its "fastest device"); and results of one bundle name on one device read alike ("local local local")."""
    if not lab_results["fleet"]:
        pytest.skip("no sshd here: no fleet run")
    r = cli("report", lab_results["int8"], lab_results["fleet"], "--format", "markdown", "--no-history")
    assert r.exit_code == 0, r.stderr
    fleet = r.stdout.split("**Fleet: ")[1].split("\n\n|")[1].split("\n\n")[0]
    assert "pi-0" in fleet and "pi-1" in fleet and "local" not in fleet, fleet
    assert f"(run {lab_results['fleet'].name}, profile generic)" in r.stdout
    apart = tmp_path / "apart"
    for name in ("a", "b"):   # one bundle name, two profiles, one device
        doc = json.loads(lab_results["int8"].read_text())
        doc["bundle"]["profile"]["name"] = {"a": "generic", "b": "intel-cpu"}[name]
        (apart / name).mkdir(parents=True)
        (apart / name / "r.json").write_text(json.dumps(doc))
    r = cli("report", apart / "a" / "r.json", apart / "b" / "r.json", "--format", "markdown", "--no-history")
    assert r"| local \(generic\) |" in r.stdout and r"| local \(intel-cpu\) |" in r.stdout   # escaped for Markdown
    assert "**Fleet" not in r.stdout   # nor are two profiles' bundles on one device a fleet
    # CSV and JSON give each device by its own name, the profile in a column of its own (a spreadsheet filters on it)
    rows = list(csv.DictReader(io.StringIO(cli("report", apart / "a" / "r.json", apart / "b" / "r.json", "--format",
                                               "csv", "--no-history").stdout)))
    assert [(r["device"], r["profile"]) for r in rows] == [("local", "generic"), ("local", "intel-cpu")]
    summary = cli("report", apart / "a" / "r.json", apart / "b" / "r.json", "--format", "csv", "--no-history",
                  "--json").json()["summary"]
    assert [(r["device"], r["shown"]) for r in summary] == [("local", "local (generic)"), ("local", "local (intel-cpu)")]


def test_a_result_with_no_budget_is_shown_as_nothing_checked_not_as_passing(cli, lab_results, tmp_path):
    """`check` refuses it (exit 2); compare said "all pass" and report "every budget holds" of a result whose bundle
    carries no budget and was given none (a user review)."""
    doc = json.loads(lab_results["int8"].read_text())
    doc["bundle"]["budgets"] = {}
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps(doc))
    assert cli("check", bare).exit_code == 2
    compared = cli("compare", bare, "--json")
    assert compared.exit_code == 0 and compared.json()["rows"][0]["verdict"] == "no budgets"
    assert compared.json()["check"]["checked"] is False
    md = cli("report", bare, "--format", "markdown", "--no-history")
    assert md.exit_code == 0 and "result(s): nothing checked: no result's bundle carries a budget" in md.stdout
    assert "every budget holds" not in md.stdout and "✅" not in md.stdout
    budgeted = cli("report", bare, "--format", "markdown", "--no-history", "--budget", "latency_p90_ms=1000")
    assert "✅ every budget holds" in budgeted.stdout
    # a bundle's budgets each dropped: said so, not "carries no budget" (a user walkthrough)
    drops = [a for key in json.loads(lab_results["int8"].read_text())["bundle"]["budgets"]
             for a in ("--budget", f"{key}=none")]
    dropped = cli("report", lab_results["int8"], "--format", "markdown", "--no-history", *drops)
    assert dropped.exit_code == 0 and "result(s): nothing checked: every budget was dropped (" in dropped.stdout, \
        dropped.stdout


def test_one_bundle_name_packaged_for_two_profiles_is_two_history_series(lab_results, tmp_path):
    """The history trend joined ONNX Runtime, OpenVINO and LiteRT runs of one bundle name on one device into one
    series ("run-to-run noise 165 %"), where the regression gate keeps profiles apart."""
    base = {k: v for k, v in json.loads(lab_results["int8"].read_text()).items() if not k.startswith("_")}
    store = Store(f"sqlite:///{tmp_path / 'edgeopt.db'}")
    paths = []
    for profile, p90 in (("generic", 1.0), ("intel-cpu", 0.3)):
        for day in (1, 2, 3):
            doc = json.loads(json.dumps(base))
            doc["bundle"]["profile"]["name"], doc["created"] = profile, f"2026-02-0{day}T00:00:00+00:00"
            doc["latency"].update(p50_ms=p90 / 2, p90_ms=p90, p95_ms=p90, p99_ms=p90)
            doc["latency"].pop("ci95", None)
            store.add(doc)
        path = tmp_path / profile / "r.json"
        path.parent.mkdir()
        path.write_text(json.dumps(doc))
        paths.append(path)
    store.close()
    series = api.report(paths, None, "markdown", store_url=f"sqlite:///{tmp_path / 'edgeopt.db'}")["rows"]["history"]
    assert sorted((s["device"], [p["p90_ms"] for p in s["points"]]) for s in series) == [
        ("local (generic)", [1.0] * 3), ("local (intel-cpu)", [0.3] * 3)]


def test_markdown_history_says_when_the_runs_are_too_few_for_a_trend():
    """"no p90 change point in 2 bundle × device series" read as a verdict where each series had one run."""
    from edgeopt.report.markdown import _history
    from edgeopt.report.rows import history_series
    one = [{"created": "2026-01-01T00:00:00", "p90_ms": 1.0, "status": "ok"}]
    series = [history_series("a", "local", one), history_series("b", "local", one)]
    assert _history(series, None)[0] == ("History: too few runs in the store for a trend (2 bundle × device "
                                         "series, at most 1 usable run(s) each).")
    flat = [{"created": f"2026-01-{d:02d}T00:00:00", "p90_ms": 1.0 + d * 1e-4, "status": "ok"} for d in range(1, 13)]
    series.append(history_series("c", "local", flat))
    assert _history(series, None)[0] == ("History: no p90 change point in 1 bundle × device series; 2 with too few "
                                         "runs for a trend.")


def test_markdown_says_why_a_summary_column_is_empty(lab_results, tmp_path):
    """p99 and FPS read "—" in Markdown with no reason, where HTML and bench gave one (a user review)."""
    from edgeopt import api
    doc = json.loads(lab_results["int8"].read_text())
    assert doc["throughput"]["available"] is False
    text = api.report([lab_results["int8"]], fmt="markdown", history=False)["text"]
    # no result measured FPS: no column of dashes, nor a line in every pull-request comment (a CI walkthrough)
    assert "| FPS |" not in text and "FPS absent" not in text, text
    measured = dict(doc, throughput={"available": True, "fps": 1234.5, "in_flight": 2},
                    created="2026-12-01T00:00:00+00:00")
    other = tmp_path / "fps.json"
    other.write_text(json.dumps(measured))
    text = api.report([lab_results["int8"], other], fmt="markdown", history=False)["text"]
    lines = [line for line in text.splitlines() if line.startswith("FPS absent for ")]
    assert "| FPS |" in text and "1234.5" in text
    assert len(lines) == 1 and lines[0].endswith("not asked, since the bundle's performance hint is not throughput "
                                                 "\\(bench --throughput measures it\\)"), text
    assert "**Over the run**\n\nLatency drift: the last quarter of the timed runs' median against the first" in text


def test_a_runs_seconds_read_as_seconds():
    """A code review: `.3g` wrote a 1234 s run as "1.23e+03 s"."""
    from edgeopt.report.tables import _seconds
    assert (_seconds(0.00123), _seconds(12.34), _seconds(1234.5)) == ("0.00123", "12.3", "1234")


def test_fleet_chart_labels_are_whole_or_cut_with_an_ellipsis_and_their_name_on_hover():
    """Labels were cut at 22 characters: two runs of `local` both read `local (2026-12-06 17:2`, and a longer
    name ran off the chart's left edge (a user walkthrough)."""
    from edgeopt.report import html
    names = ("local (2026-12-06 17:27:12)", "local (2026-12-06 17:27:26)", "x" * 60)
    rows = [{"device": name, "status": "ok", "verdict": "pass", "p50_ms": 1.0, "p99_ms": 2.0, "p90_ms": 1.5,
             "p90_ci95": None} for name in names]
    svg = html._fleet_chart({"bundle": "b", "devices": rows})
    # the verdict first, in words: red and green alone were one olive to a deuteranope (an accessibility walkthrough)
    assert all(f">pass · {name}</text>" in svg for name in names[:2])
    assert "pass · " + "x" * 36 + "…</text>" in svg and f"<title>pass · {'x' * 60}</title>" in svg
    assert "<td>pass · local (2026-12-06 17:27:12)</td><td>1</td><td>1.5</td>" in svg   # the figures, as a table
    left = min(float(x) for x in re.findall(r'<text class="note" x="([-\d.]+)"[^>]*text-anchor="end"', svg))
    assert left >= 16 + 6.2 * 44 - 6 - 1   # the label's end, where its longest neighbour still fits on the left


def test_memory_chart_labels_keep_the_run_time_whole():
    """The memory chart cut its labels at 36 characters: five runs of one bundle all read
    `digits-int8 @ local (2026-12-06 21:3` (a user walkthrough)."""
    from edgeopt.report import html
    rows = [{"bundle": "digits-int8", "device": f"local (2026-12-06 21:36:{s:02d})", "peak_scope": "timed loop",
             "steps": [("baseline", 40.0), ("loaded", 60.0), ("peak", 66.0), ("end", 64.0)]} for s in (12, 48)]
    page = html._memory(rows)
    assert all(f">digits-int8 @ local (2026-12-06 21:36:{s:02d})</text>" in page for s in (12, 48))
    # the figures as a table too: they were in hover titles alone (an accessibility walkthrough)
    assert "<td>digits-int8 @ local (2026-12-06 21:36:12)</td><td class=num>40.0</td><td class=num>60.0</td>" in page
    for row in rows:   # a longer name is cut before its time, not through it (a review)
        row["bundle"], row["device"] = "mobilenet_v2-int8-pruned", f"pi-kitchen {row['device'][6:]}"
    page = html._memory(rows)
    assert all(f"… (2026-12-06 21:36:{s:02d})</text>" in page for s in (12, 48)), page


def test_the_layer_chart_scales_to_its_largest_share_and_keeps_long_names_ends():
    """0-100 % drew a model whose slowest layer takes 13 % as a row of stubs, and names were cut at 40 characters
    from their start, where ONNX names repeat their path (a user walkthrough)."""
    from edgeopt.report import html
    name = "/features/features.3/block/block.0/block.0.0/Conv_token_4"
    svg = html._layer_chart({"bundle": "b", "device": "d", "layers": [
        {"name": name, "op_type": "QLinearConv", "mean_ms": 0.01, "share_pct": 13.0},
        {"name": "fc", "op_type": "Gemm", "mean_ms": 0.002, "share_pct": 2.0}]})
    assert ">20<" in svg and ">100<" not in svg   # the axis to 20 %, 13 % x 1.15 in tens
    assert f"…{name[-39:]}</text>" in svg and f"<title>{name}</title>" in svg


def test_a_study_whose_trials_share_one_accuracy_drop_is_drawn_up_to_its_budget():
    """Every trial at a drop of 0 (a small eval set) drew the scatter's y axis 0-1, every point on its floor (a
    user walkthrough): the axis runs to the accuracy budget, which is drawn as a line."""
    from edgeopt.report import html
    trials = [{"trial": i, "config": f"c{i}", "figures": {"latency_p90_ms": 0.05 * (i + 1), "accuracy_drop": 0.0},
               "cached": False, "feasible": True, "baseline": i == 0, "rechecked": None} for i in range(3)]
    study = {"objective": "latency_p90_ms", "budgets": {"latency_p90_ms": 1.0, "accuracy_drop": 0.01},
             "pareto": [1], "best": trials[1], "pareto_figures": ["latency_p90_ms", "accuracy_drop"]}
    svg = html._study_chart(study, trials)
    assert "<title>accuracy_drop budget 0.01</title>" in svg
    assert ">1<" not in svg and ">0.5<" not in svg   # no 0-1 axis


def test_a_markdown_report_fits_in_a_pull_request_comment():
    """445 results made a 175 KB comment (GitHub holds 65,536 characters) and 67 drift lines (a scale
    walkthrough): the drift lines are the 20 largest, and a longer report is cut at a line, saying so."""
    from edgeopt.report import markdown
    latency = [{"result": f"r{i}", "bundle": "m", "device": f"pi-{i}", "timeline": {"drift_pct": float(i % 50)}}
               for i in range(67)]
    lines = markdown._over_run({"latency": latency, "power": [], "thermal": []})
    drift = [line for line in lines if line.startswith("- ")]
    assert len(drift) == 21 and drift[0] == "- m @ pi-49: latency drift +49.0 %" and \
        drift[-1] == "- and 47 more results (the HTML report draws each)"
    text = markdown._within_a_comment("| a row of a long table |\n" * 5000)
    assert len(text) < 65_536 and text.endswith("`edgeopt report --format html` shows it all.\n")
    assert "\n\n… cut here at 59,981 of 130,000 characters" in text
    assert markdown._within_a_comment("short\n") == "short\n"
    folded = markdown._within_a_comment("<details><summary>Warnings</summary>\n\n" + "- a warning line\n" * 5000)
    assert folded.count("<details>") == folded.count("</details>") == 1   # the note was cut inside the fold
    row = {"bundle": "m", "device": "pi", "p50_ms": 1.0, "p90_ms": 1.0, "p90_ci95": None, "p99_ms": 1.0,
           "peak_rss_mb": 1.0, "top1": None, "verdict": "pass", "budgets": [], "throttled": False, "error": None,
           "warnings": ["noisy run: spread 0.2"], "absent": {}}
    rows = [dict(row, device=f"pi-{i}") for i in range(150)] + [dict(row, device="pi-bad", verdict="fail")]
    text = "\n".join(markdown._summary(rows))
    assert text.count("\n| m | pi-") == markdown.TABLE_ROWS and "| m | pi-bad |" in text   # the failure first
    assert "… and 51 more results: `edgeopt report --format html` (or csv) lists each" in text
    assert "- … and 60 more" in text and text.count("noisy run") == markdown.WARNING_LINES
