"""The CLI as a user meets it: help on every verb, clean --json, --quiet (plain data or silence), one-line errors."""
import json
import os
import pathlib
import re
import subprocess
import sys

import click
import pytest

from conftest import CALIB, EVAL, FAST_BENCH_ARGS, MODEL
from edgeopt.cli import main


def _verbs(group, prefix=()):
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            yield from _verbs(cmd, prefix + (name,))
        else:
            yield prefix + (name,)


VERBS = list(_verbs(main))


@pytest.mark.parametrize("verb", VERBS, ids=[" ".join(v) for v in VERBS])
def test_every_verb_has_help_and_the_common_flags(cli, verb):
    r = cli(*verb, "--help")
    assert r.exit_code == 0
    text = r.stdout
    assert "--json" in text and "--quiet" in text and "--debug" in text
    cmd = main
    for part in verb:
        cmd = cmd.commands[part]
    assert cmd.help and len(cmd.help.strip()) > 20
    # every option says what it is (compare --budget, demo --output-dir and --device, history --limit said nothing)
    assert [p.opts for p in cmd.params if isinstance(p, click.Option) and not p.help] == []


def test_inspect_help_names_every_model_format_it_reads(cli):
    from edgeopt.models import FILE_FORMATS
    text = " ".join(cli("inspect", "--help").stdout.split())
    assert all(suffix in text for suffix in FILE_FORMATS), text   # .tflite and .torchscript were left out


def test_demo_reaches_devices_as_bench_does():
    """demo had no --inventory, and its unknown-host-key error offered --trust-new-host-keys, which it lacked (a
    walkthrough): it takes bench's options for reaching a device."""
    from edgeopt.cli import bench, demo
    reaching = {"inventory", "known_hosts", "trust_new_host_keys", "ssh_config", "connect_timeout", "dead_after"}
    assert reaching <= {p.name for p in bench.params} and reaching <= {p.name for p in demo.params}


def test_end_to_end_in_real_processes(cli_subprocess, tmp_path):
    """package -> bench -> check exactly as a shell runs it, output streams kept apart."""
    bundle = tmp_path / "digits-int8.edgepkg"
    r = cli_subprocess("package", MODEL, "--quantize", "int8", "--calib", CALIB, "--eval-data", EVAL,
                       "-o", bundle, "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["path"] == str(bundle)
    r = cli_subprocess("bench", bundle, "--json", *FAST_BENCH_ARGS, cwd=tmp_path)
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)  # stdout is the result document and nothing else
    result = tmp_path / "results" / "digits-int8@local.json"
    assert result.is_file() and doc["status"] == "ok"
    r = cli_subprocess("check", result, "--budget", "latency_p90_ms=1000")
    assert r.exit_code == 0 and "latency_p90_ms" in r.stdout
    r = cli_subprocess("check", result, "--budget", "latency_p90_ms=0.0000001", "--quiet")
    assert r.exit_code == 1 and r.stdout == ""   # under --quiet, only why it failed, on stderr
    assert r.stderr.startswith("edgeopt: ") and "latency_p90_ms" in r.stderr and "misses <= 1e-07 ms" in r.stderr


def test_an_error_under_json_is_json_on_stdout_and_one_line_on_stderr(cli, tmp_path):
    """A script parsing --json's stdout read nothing at all on an error (a user review)."""
    r = cli("check", tmp_path / "missing.json", "--json")
    assert r.exit_code == 2
    assert json.loads(r.stdout) == {"error": {"message": f"result file not found: {tmp_path / 'missing.json'}",
                                              "exit_code": 2}}
    assert r.stderr.splitlines() == [f"edgeopt: error: result file not found: {tmp_path / 'missing.json'}"]
    assert cli("check", tmp_path / "missing.json").stdout == ""   # without --json, stdout stays empty
    for args, said in ((["check"], "Missing argument 'RESULTS...'."),
                       (["check", "r.json", "--min-effect", "20"], "Invalid value for '--min-effect': 20.0 is not in "
                                                                  "the range 0<=x<10."),
                       (["bench", "b.edgepkg", "--bogus"], "No such option '--bogus'.")):   # click's usage errors
        r = cli(*args, "--json")
        assert r.exit_code == 2 and json.loads(r.stdout) == {"error": {"message": said, "exit_code": 2}}, r.stdout
        verb = args[0]
        assert r.stderr.splitlines() == [f"edgeopt: error: {said.rstrip('.')} (see 'main {verb} --help')"]
        r = cli(*args)   # one line without --json too, in edgeopt's own form: click's was four
        assert r.exit_code == 2 and r.stdout == ""
        assert r.stderr.splitlines() == [f"edgeopt: error: {said.rstrip('.')} (see 'main {verb} --help')"]


def test_quiet_prints_nothing_where_the_exit_code_is_the_answer(cli, tmp_path):
    r = cli("package", MODEL, "--eval-data", EVAL, "-o", tmp_path / "q.edgepkg", "--quiet")
    assert r.exit_code == 0 and r.stdout == "" and r.stderr == ""
    r = cli("package", MODEL, "-o", tmp_path / "q.edgepkg", "--quiet")   # its warnings only, on stderr
    assert r.exit_code == 0 and r.stdout == "" and r.stderr.splitlines() == [
        "edgeopt: warning: budget accuracy_drop=0.01 cannot be measured from this bundle (the bundle carries no eval "
        "data): `edgeopt check` will report it NOT MEASURED and fail; package with --eval-data FILE.npz holding "
        "labels, or package with --budget accuracy_drop=none to drop it"]


BOX = set("─│┌┐└┘┏┓┗┛━┃╇┡┩")


def test_quiet_read_only_verbs_print_their_data_plain(cli, tmp_path, int8_result):
    """--quiet drops progress, titles, borders and colour, never the answer of a read-only verb."""
    r = cli("profiles", "list", "--quiet")
    assert r.exit_code == 0 and r.stderr == ""
    lines = r.stdout.splitlines()
    assert lines[0].split("\t")[:2] == ["name", "backend"] and "Hardware profiles" not in r.stdout
    assert ["raspberry-pi-5", "tflite"] == lines[[l.split("\t")[0] for l in lines].index("raspberry-pi-5")].split("\t")[:2]
    assert not BOX & set(r.stdout) and "\x1b[" not in r.stdout
    r = cli("profiles", "show", "intel-cpu", "-q")
    assert r.exit_code == 0 and "backend\topenvino" in r.stdout.splitlines() and "device.arch\tx86_64" in r.stdout
    assert "device.ram_mb\tany (not fixed by the profile)" in r.stdout and "\tNone" not in r.stdout
    r = cli("inspect", MODEL, "-q")
    assert r.exit_code == 0 and "format\tonnx" in r.stdout.splitlines() and not BOX & set(r.stdout)
    lines = r.stdout.splitlines()
    assert "dynamic dims\timage: batch" in lines and "…" not in r.stdout   # the whole sha256, no Python repr
    r = cli("agent", "probe", "-q")
    assert r.exit_code == 0 and any(line.startswith("runtimes\tonnxruntime ") for line in r.stdout.splitlines())
    assert "{" not in r.stdout and "None" not in r.stdout
    inventory = tmp_path / "inv.yaml"
    inventory.write_text("devices:\n  here: {connection: local, profile: intel-cpu}\n")
    r = cli("device", "list", "-i", inventory, "-q")
    assert r.exit_code == 0 and r.stdout.splitlines()[1].split("\t")[0] == "here" and "intel-cpu" in r.stdout
    r = cli("history", "--results-dir", pathlib.Path(int8_result["_path"]).parent, "-q")
    header, *rows = r.stdout.splitlines()
    assert r.exit_code == 0 and header.split("\t")[:6] == ["created (UTC)", "bundle", "profile", "made into", "device",
                                                                  "host"]
    host = int8_result["device"]["hostname"]   # which machine: a team's `local` is many; which profile's bundle
    assert any(row.split("\t")[1:7] == [int8_result["bundle"]["name"], "generic", "int8", "local", host, "ok"]
               for row in rows)
    assert header.split("\t")[-1] == "error"   # a failed run says why
    r = cli("history", "--results-dir", pathlib.Path(int8_result["_path"]).parent, "--bundle", "no-such-bundle")
    assert r.exit_code == 0 and "no results for bundle 'no-such-bundle'" in r.stdout
    # compare keeps every column for a script: one whose figures are all absent (FPS) left the later fields shifted
    r = cli("compare", int8_result["_path"], "-q")
    header, row = r.stdout.splitlines()
    assert header.split("\t") == ["bundle", "device", "time (UTC)", "runtime ×threads", "size MiB", "p50 ms", "p90 ms",
                                  "p99 ms", "FPS", "peak RSS MiB", "top-1", "slowest layer", "budgets", "power W",
                                  "energy mJ/inf", "batch"], header
    fields = row.split("\t")
    assert len(fields) == 16 and fields[8] == "" and fields[2] == int8_result["created"][:16].replace("T", " ")
    # whole fields for a script: the bundle's own name (its batch apart), the layer's whole name (a walkthrough:
    # "b4-fp32 (batch 4)" and "…Conv_token_4" were cut for the terminal)
    from edgeopt.report.tables import compare_table
    layer = "/features/features.3/Conv_token_4 (QLinearConv) 13 %"
    plain = compare_table([{"bundle": "b4", "device": "local", "created": "2026-12-05T12:42:09Z", "runtime": "ort",
                            "threads": 2, "size_mb": 0.1, "p50_ms": 1.0, "p90_ms": 1.0, "p99_ms": 1.0,
                            "peak_rss_mb": 68.9, "top1": None, "verdict": "all pass", "batch": 4,
                            "slowest_layer": layer}], every_column=True)
    cells = [list(column.cells)[0] for column in plain.columns]
    assert cells[0] == "b4" and cells[11] == layer and cells[-1] == "4"


def test_history_and_fleet_show_latency_to_the_same_decimals_as_compare():
    """history and fleet bench rounded latencies to 3 decimals (0.020) where compare showed 4 (0.0204)."""
    from edgeopt.cli import plain_lines
    from edgeopt.report.tables import compare_table, fleet_table, history_table

    lat = {"p50_ms": 0.01234, "p90_ms": 0.02042, "p99_ms": 0.03785}
    compared = compare_table([{"bundle": "d", "device": "local", "created": "2026-12-05T12:42:09Z", "runtime": "ort",
                               "threads": 2, "size_mb": 0.1, **lat, "peak_rss_mb": 68.9, "top1": None,
                               "verdict": "all pass"}])
    history = history_table([{"created": "2026-12-05T12:42:09+00:00", "bundle": "d", "device": "local", "host": "vm",
                              "status": "ok", **lat, "peak_rss_mb": 68.9, "top1": None, "error": None}])
    fleet = fleet_table({"run_id": "r1", "skipped": [], "check": {"rows": []},
                         "documents": {"local": {"status": "ok", "latency": lat, "memory": {"peak_rss_mb": 68.9}}}})
    expected = {"p50 ms": "0.0123", "p90 ms": "0.0204", "p99 ms": "0.0379"}
    for table, columns in ((compared, ("p50 ms", "p90 ms", "p99 ms")), (history, ("p90 ms",)),
                           (fleet, ("p50 ms", "p90 ms", "p99 ms"))):
        header, row = (line.split("\t") for line in plain_lines(table))
        assert {col: row[header.index(col)] for col in columns} == {col: expected[col] for col in columns}
    # a device named cam[lab] is text, not markup ("cam": an accessibility walkthrough)
    fleet = fleet_table({"run_id": "r1", "skipped": [], "check": {"rows": []},
                         "documents": {"cam[lab]": {"status": "ok", "latency": lat, "memory": {"peak_rss_mb": 1.0}}}})
    assert plain_lines(fleet)[1].startswith("cam[lab]\t")

def test_the_fleet_table_says_why_power_is_absent():
    """It read "n/a" under power W, with no reason, where bench says why."""
    from edgeopt.report.tables import fleet_table
    lat = {"p50_ms": 0.01, "p90_ms": 0.02, "p99_ms": 0.03}
    none = {"status": "ok", "latency": lat, "memory": {"peak_rss_mb": 60.0},
            "power": {"available": False, "reason": "no power sensor on this device [tried rapl]"}}
    table = fleet_table({"run_id": "r1", "skipped": [], "check": {"rows": []},
                         "documents": {"a": none, "b": none, "c": dict(none, power={"available": True, "mean_w": 2.5})}})
    assert table.caption == "power n/a on a, b: no power sensor on this device \\[tried rapl]", table.caption
    forty = {f"pi-{i}": none for i in range(40)}   # the 40 names once per reason were a 7-line block (a walkthrough)
    table = fleet_table({"run_id": "r1", "skipped": [], "check": {"rows": []}, "documents": forty})
    assert table.caption == "power n/a on every device (40): no power sensor on this device \\[tried rapl]"


def test_check_tells_runs_of_one_bundle_on_one_device_apart_by_time():
    """`check results/history` listed g-int8@local twice, with nothing to tell the rows apart."""
    from edgeopt.cli import plain_lines
    from edgeopt.report.tables import check_table
    row = {"budget": "latency_p90_ms", "measured": 1.0, "unit": "ms", "comparison": "<=", "limit": 5.0,
           "status": "pass", "reason": None}
    runs = [{"bundle": "g", "device": "local", "status": "ok", "created": when, "budgets": [row]}
            for when in ("2026-12-06T08:31:32+00:00", "2026-12-06T08:31:51+00:00")]
    lines = plain_lines(check_table({"results": runs}))
    assert [line.split("\t")[0] for line in lines[1:]] == ["g@local 2026-12-06 08:31:32", "g@local 2026-12-06 08:31:51"]
    assert plain_lines(check_table({"results": runs[:1]}))[1].split("\t")[0] == "g@local"   # alone: as it was


def test_compare_shows_seconds_where_two_results_share_a_minute():
    """Two fleet runs of one bundle on one device in the same minute read as two identical rows."""
    from edgeopt.cli import plain_lines
    from edgeopt.report.tables import compare_table

    row = {"bundle": "d", "device": "dev-a", "runtime": "ort", "threads": 2, "size_mb": 0.1, "p50_ms": 0.02,
           "p90_ms": 0.03, "p99_ms": 0.04, "peak_rss_mb": 68.9, "top1": None, "verdict": "all pass"}
    times = ("2026-12-05T23:49:05Z", "2026-12-05T23:49:41Z")
    lines = plain_lines(compare_table([dict(row, created=t) for t in times]))
    assert [line.split("\t")[2] for line in lines[1:]] == ["23:49:05", "23:49:41"]
    apart = plain_lines(compare_table([dict(row, created=t) for t in ("2026-12-05T23:49:05Z", "2026-12-05T23:52:00Z")]))
    assert [line.split("\t")[2] for line in apart[1:]] == ["23:49", "23:52"]   # minutes where they tell them apart


def test_compare_on_a_narrow_terminal_lists_each_result_as_a_block():
    """At 80 columns the bundle, device and runtime columns shrank to a character each and the numbers were cut;
    at 120 a long bundle name wrapped in slices of six (a scale walkthrough)."""
    from rich.console import Console
    from edgeopt.report.tables import compare_view
    row = {"bundle": "deeplabv3-mobilenet-513-int8-keepfloat-head", "device": "pi-lab-5", "runtime": "onnxruntime 1.32",
           "threads": 4, "size_mb": 3.5, "p50_ms": 1028.8172, "p90_ms": 1030.5, "p99_ms": 1100.25, "peak_rss_mb": 68.9,
           "top1": 0.91, "verdict": "all pass", "created": "2026-12-05T23:49:05Z"}
    for width in (80, 200):
        console = Console(width=width, record=True, file=open(os.devnull, "w"))
        console.print(compare_view([row, dict(row, bundle="m-fp32", p50_ms=2.0)]))
        text = console.export_text()
        assert "deeplabv3-mobilenet-513-int8-keepfloat-head" in text and "1028.8172" in text and "m-fp32" in text, text
        blocks = "deeplabv3-mobilenet-513-int8-keepfloat-head @ pi-lab-5  23:49" in text
        assert blocks == (width == 80) and ("p50 ms=1028.8172" in text) == blocks, text
        assert max(len(line) for line in text.splitlines()) <= width


def test_plain_lines_keep_cells_on_one_line():
    from rich.table import Table
    from rich.text import Text
    from edgeopt.cli import plain_lines
    t = Table(title="x", show_header=False)
    t.add_column("k")
    t.add_column("v")
    t.add_row("[bold]a[/bold]", Text("two\nlines [not markup]"))
    t.add_row("b", "tab\there")
    assert plain_lines(t) == ["a\ttwo lines [not markup]", "b\ttab here"]


def test_progress_goes_to_stderr_not_stdout(cli, tmp_path):
    r = cli("package", MODEL, "--quantize", "int8", "--calib", CALIB, "-o", tmp_path / "p.edgepkg")
    assert r.exit_code == 0
    assert "loading" in r.stderr and "Packaged" in r.stdout and "loading" not in r.stdout


def test_debug_shows_the_traceback(cli_subprocess, tmp_path):
    r = cli_subprocess("inspect", tmp_path / "missing.onnx", "--debug")
    assert r.exit_code == 2 and "Traceback" in r.stderr   # and the error's own exit code, not Python's 1
    r = cli_subprocess("inspect", tmp_path / "missing.onnx")
    assert r.exit_code == 2 and r.stderr.strip() == f"edgeopt: error: model not found: {tmp_path / 'missing.onnx'}"


def test_usage_errors_are_exit_2(cli):
    assert cli("package").exit_code == 2
    assert cli("package", MODEL, "--quantize", "int4").exit_code == 2
    assert cli("bench", "x.edgepkg", "--threads", "0").exit_code == 2


def test_heavy_libraries_are_not_imported_at_startup():
    code = ("import sys, edgeopt.cli, device_agent, device_agent.cli; "
            "heavy = [m for m in ('torch', 'tensorflow', 'openvino', 'nncf', 'onnxruntime', 'onnx') if m in sys.modules]; "
            "print(','.join(heavy))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.strip() == ""


def test_registries_match_their_files():
    import importlib
    import pathlib
    from device_agent.power import READERS, reader_class
    from device_agent.runtimes import ADAPTERS, adapter_class
    from edgeopt.convert import BACKENDS
    for name in ADAPTERS:
        cls = adapter_class(name)
        assert cls.name == name and pathlib.Path(importlib.import_module(cls.__module__).__file__).stem == name
    for name in READERS:  # rpi5-pmic lives in rpi5_pmic.py
        cls = reader_class(name)
        assert cls.name == name and pathlib.Path(importlib.import_module(cls.__module__).__file__).stem == name.replace("-", "_")
    for name, target in BACKENDS.items():
        if target is None:
            continue
        module, cls_name = target.split(":")
        cls = getattr(importlib.import_module(module), cls_name)
        assert cls.name == name and module.rsplit(".", 1)[1] == name


def test_demo_end_to_end(cli_subprocess, tmp_path):
    r = cli_subprocess("demo", "--output-dir", tmp_path / "demo", "--json")
    assert r.exit_code == 0, r.stderr
    report = json.loads(r.stdout)
    assert [row["bundle"] for row in report["rows"]] == ["digits_cnn-fp32", "digits_cnn-fp16", "digits_cnn-int8"]
    assert report["results_dir"] == str(tmp_path / "demo" / "results")
    sizes = [row["size_mb"] for row in report["rows"]]
    assert sizes[2] < sizes[1] < sizes[0]
    assert all(row["top1"] > 0.95 and row["verdict"] == "all pass" for row in report["rows"])
    assert sorted(p.name for p in (tmp_path / "demo" / "results").glob("*.json")) == [
        "digits_cnn-fp16@local.json", "digits_cnn-fp32@local.json", "digits_cnn-int8@local.json"]


def test_ctrl_c_exits_130_ends_the_agent_and_writes_nothing_half(bundles, tmp_path):
    """... and leaves no run directory (a copy of the bundle) on the device: the agent was killed outright, and
    its directory stayed until the next run's sweep or `device clean` (a walkthrough)."""
    from conftest import ctrl_c_works
    import signal
    import time
    import psutil
    from edgeopt.transport.local import _own_dir
    runs = _own_dir() / "runs"
    before = set(runs.glob("edgeopt-run-*"))
    with ctrl_c_works():
        proc = subprocess.Popen([sys.executable, "-m", "edgeopt", "bench", str(bundles["fp32"]), "--min-seconds",
                                 "60", "--max-seconds", "60", "--max-iterations", "100000000"], cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until the measuring process is running
        kids = psutil.Process(proc.pid).children(recursive=True)
        if any("_measure" in " ".join(k.cmdline()) for k in kids if k.is_running()):
            break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("the agent's measuring process never started")
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "edgeopt: interrupted"
    time.sleep(0.5)
    assert not [k for k in kids if k.is_running() and k.status() != psutil.STATUS_ZOMBIE], "agent left running"
    assert not list(tmp_path.rglob("*.partial")) and not list(tmp_path.rglob("*.json"))
    assert not set(runs.glob("edgeopt-run-*")) - before


def test_the_flags_every_verb_takes_may_come_before_it(cli, bundles):
    """`edgeopt --json inspect B` was "No such option '--json'", where git and docker take such flags first."""
    from edgeopt.cli import _common_flags_last
    first, last = cli("--json", "-q", "inspect", bundles["fp32"]), cli("inspect", bundles["fp32"], "--json", "-q")
    assert first.exit_code == 0 and first.json() == last.json()
    assert _common_flags_last(["--debug", "bench", "m", "--", "--json"]) == ["bench", "m", "--debug", "--", "--json"]
    assert _common_flags_last(["--json"]) == ["--json"] and _common_flags_last(["--version"]) == ["--version"]
    # between a group and its verb too (`edgeopt profiles --json list` was refused), and before --version
    from edgeopt.cli import main
    assert _common_flags_last(["fleet", "--json", "bench", "x", "--", "-q"], main) == \
        ["fleet", "bench", "x", "--json", "--", "-q"]
    between, after = cli("profiles", "--json", "list"), cli("profiles", "list", "--json")
    assert between.exit_code == 0 and between.json() == after.json()
    version = cli("--json", "--version")
    assert version.exit_code == 0 and version.json()["name"] == "edgeopt" and version.json()["version"]
    group = cli("device")   # a group alone: its usage, not "no such option"
    assert "list" in group.stdout + group.stderr and "No such option" not in group.stdout + group.stderr
    # with --json one JSON error on stdout (it printed the usage on stderr alone), as `edgeopt --json` alone (it
    # said "No such option '--json'"); with -q one line
    for args in (("--json", "device"), ("profiles", "--json"), ("--json",)):
        machine = cli(*args)
        assert machine.exit_code == 2 and machine.json()["error"]["message"].startswith("a command is needed: one of ")
        assert "No such option" not in machine.stderr and "Usage:" not in machine.stderr
    quiet = cli("-q", "device")
    assert quiet.exit_code == 2 and re.fullmatch(   # the runner calls the program `main`
        r"edgeopt: error: a command is needed: one of clean, doctor, list \(see '\w+ device --help'\)\n", quiet.stderr)


def test_quiet_lines_leave_absent_cells_empty_and_errors_whole():
    """`—` (U+2014) stood in empty fields of -q's tab-separated lines, and history cut errors at 80 characters."""
    from edgeopt.cli import plain_lines
    from edgeopt.report.tables import history_table
    why = "device f: agent printed no result document (no output) (exit 4; its last line on stderr: boom) " * 2
    rows = [{"created": "2026-12-05T19:09:21+00:00", "bundle": "b", "device": "f", "host": None, "status": "failed",
             "p90_ms": None, "peak_rss_mb": None, "top1": None, "error": why + "\nsecond line"}]
    assert plain_lines(history_table(rows, whole=True))[1].split("\t") == [
        "2026-12-05 19:09:21", "b", "", "", "f", "", "failed", "", "", "", why]
    assert plain_lines(history_table(rows))[1].split("\t")[-1] == why[:79] + "…"   # a terminal's cell


def test_names_are_printed_as_written_not_as_emoji(cli, tmp_path, int8_result):
    """A fleet device named `Box:B:` printed as "Box🅱" and a warning's `:smile:` as 😄: rich's emoji codes."""
    doc = {k: v for k, v in int8_result.items() if not k.startswith("_")}
    doc["device"] = dict(doc["device"], name="Box:B:")
    doc["warnings"] = ["a note :smile:"]
    path = tmp_path / "box.json"
    path.write_text(json.dumps(doc))
    r = cli("check", path, "--budget", "latency_p90_ms=1000")
    assert r.exit_code == 0 and "Box:B:" in r.stdout + r.stderr and ":smile:" in r.stdout + r.stderr, r.stdout
    assert "🅱" not in r.stdout + r.stderr and "😄" not in r.stdout + r.stderr
    from rich.table import Table

    from edgeopt.cli import plain_lines
    table = Table("device")
    table.add_row("Box:B: :smile:")
    assert plain_lines(table) == ["device", "Box:B: :smile:"]   # -q's lines too


def test_a_figure_too_small_or_too_large_for_its_decimals_keeps_three_digits():
    """compare showed a 3.7e-05 ms p50 as 0.0000, and a hand-set 1e308 as 309 digits that squeezed the others."""
    from edgeopt.report.tables import LATENCY_MS, _num
    assert [_num(v, LATENCY_MS) for v in (3.7e-05, 1e308, 0.0, 0.02, None)] == ["3.7e-05", "1e+308", "0.0000",
                                                                                "0.0200", "—"]
    assert _num(0.001, "{:.2f} MiB") == "0.001 MiB" and _num(-0.00002, "{:+.4f}") == "-2e-05"   # unit and sign



def test_times_are_shown_in_utc_as_the_columns_say():
    from edgeopt.report.tables import _time
    assert _time("2026-12-05T23:56:32+05:00") == "2026-12-05 18:56" and _time("2026-12-05T20:56:00Z") == "2026-12-05 20:56"
    assert _time("2026-12-05T20:56:00.123456+00:00") == "2026-12-05 20:56" and _time(None) == "—"


def test_times_are_finite_numbers(cli, bundles, tmp_path):
    """nan passes every bound (it compares false): `--connect-timeout nan` was a traceback with exit 1,
    `--dead-after inf` switched the dead-device check off unsaid, `--max-seconds inf` failed the run (exit 3)."""
    for flag, value in (("--connect-timeout", "nan"), ("--dead-after", "inf"), ("--max-seconds", "inf"),
                        ("--min-seconds", "nan"), ("--idle-seconds", "-inf")):
        r = cli("bench", bundles["fp32"], flag, value, "--results-dir", tmp_path / "r")
        assert r.exit_code == 2 and f"Invalid value for '{flag}'" in r.stderr, (flag, r.stderr)
        assert "Traceback" not in r.stderr and not (tmp_path / "r").exists()
    from edgeopt import api
    from edgeopt.errors import BadInput
    with pytest.raises(BadInput, match="--max-seconds: must be a finite positive number"):
        api._agent_args(None, {"max_seconds": float("inf")})   # the agent's parser judges it too


def test_a_word_where_a_number_goes_is_called_not_a_number(cli, bundles, tmp_path):
    """click said "'abc' is not a valid float range", as if a range had been asked for; help said FLOAT RANGE."""
    for flag, kind in (("--min-seconds", "number"), ("--threads", "integer")):
        r = cli("bench", bundles["fp32"], flag, "abc", "--results-dir", tmp_path / "r")
        assert r.exit_code == 2 and f"'abc' is not a valid {kind} (see" in r.stderr, r.stderr
    assert "RANGE" not in cli("bench", "--help").stdout
    assert "None]" not in cli("package", "--help").stdout   # --lr, bounded by its transform: "[x<=None]"


def test_an_explicit_min_seconds_cut_short_by_the_iteration_cap_is_said(cli, bundles, tmp_path):
    r = cli("bench", bundles["fp32"], "--min-seconds", "0.5", "--min-iterations", "5", "--max-iterations", "20",
            "--warmup-iterations", "1", "--warmup-seconds", "0", "--results-dir",
            tmp_path / "r", "--json")
    assert r.exit_code == 0, r.stderr
    said = [w for w in r.json()["warnings"] if w.startswith("the timed loop stopped at 20 runs (--max-iterations) after")]
    assert said and "short of --min-seconds 0.5" in said[0], r.json()["warnings"]
    # the throughput pass too: its FPS, over a fraction of the time asked for, passed a budget without a word
    r = cli("bench", bundles["fp32"], "--min-seconds", "0.5", "--min-iterations", "5", "--max-iterations", "20",
            "--warmup-iterations", "1", "--warmup-seconds", "0", "--throughput", "--results-dir", tmp_path / "r",
            "--json")
    assert r.exit_code == 0 and r.json()["throughput"]["stopped_by"] == "max_iterations", r.stderr
    said = [w for w in r.json()["warnings"] if w.startswith("the throughput pass stopped at ")]
    assert said and "completed requests (--max-iterations) after" in said[0] and "--min-seconds 0.5" in said[0], \
        r.json()["warnings"]


def test_a_file_of_another_kind_is_named_for_what_it_is(cli, bundles, tmp_path):
    """`check edgeopt.db` read "not valid JSON: 'utf-8' codec can't decode"; a bundle or a result given as a model,
    a model given as a bundle, and a fleet bundle's folder of runs said only what they were not."""
    import sqlite3
    db = tmp_path / "edgeopt.db"
    sqlite3.connect(db).execute("create table t (x)").connection.close()
    result = tmp_path / "r.json"
    result.write_text('{"schema": "edgeopt.result/1"}')
    run = tmp_path / "fleet" / "m" / "20261206T060311772915Z"
    run.mkdir(parents=True)
    (run / "run.json").write_text("{}")
    for args, said in ((("check", db), f"{db} is an SQLite database (the results store?), not a result file: "
                                        f"`edgeopt history --store sqlite:///{db}`"),
                       (("package", bundles["fp32"]), "it is an edgeopt bundle: `package --recipe BUNDLE` rebuilds"),
                       (("inspect", result), "a JSON file is no model (`check` and `report` read result files)"),
                       (("bench", MODEL), f"it is a model: `edgeopt package {MODEL}` makes a bundle of it"),
                       (("check", run.parent), f"{run.parent} holds no result files: it holds fleet runs; give one, "
                                               f"such as the newest, {run}")):
        r = cli(*args, "-q")
        assert r.exit_code == 2 and said in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_a_drop_measured_against_distillations_teacher_says_so():
    """With --teacher the drop is the teacher's top-1 minus the bundle's (the model the user means to replace);
    bench said "vs source" and "the outputs of the model after teacher, prune, distill"."""
    from edgeopt.report.tables import _accuracy_text, accuracy_reference
    source = {"accuracy": {"model": "the teacher nets.py:resnet", "top1": 0.5}}
    text = _accuracy_text({"top1": 0.45, "drop": 0.05, "max_abs_error": 0.0, "n": 8}, ["teacher", "prune", "distill"],
                          accuracy_reference(source))
    assert "(drop +0.0500 vs the teacher)" in text and "the model after prune, distill on 8" in text, text
    assert accuracy_reference({"accuracy": {"model": "the source before transforms"}}) == "source"
    assert accuracy_reference(None) == "source"


def test_piped_tables_take_the_width_columns_gives(monkeypatch):
    """A pipe has no terminal to ask: tables were 120 wide whatever $COLUMNS said (`COLUMNS=200 edgeopt history`)."""
    from edgeopt.cli import _columns
    for value, width in (("200", 200), ("", 120), ("wide", 120), ("5", 120), ("99999", 120)):
        monkeypatch.setenv("COLUMNS", value)
        assert _columns(120) == width, value
    from edgeopt.report.tables import history_table
    from rich.console import Console
    console = Console(width=200, record=True, file=open(os.devnull, "w"))
    console.print(history_table([{"created": "2026-12-06T08:33:12.5+02:00", "bundle": "b", "device": "local",
                                  "status": "ok", "p90_ms": 1.0, "peak_rss_mb": 60.0, "top1": None}]))
    text = console.export_text()
    assert "2026-12-06 06:33:12" in text and "created (UTC)" in text, text


def test_history_on_a_narrow_terminal_keeps_names_and_figures_whole():
    """At 100 columns history read "same…", "gene…" and p90 "0.01…" (a team walkthrough): a column alike in
    every row is said once under the table, an empty error column left out; --quiet's lines keep every column."""
    from rich.console import Console
    from edgeopt.report.tables import history_table

    rows = [{"created": f"2026-12-0{i}T08:33:12+00:00", "bundle": "digits_cnn-int8", "profile": "generic",
             "variant": "int8", "device": "local", "host": "vm", "status": "ok", "p90_ms": 0.0123456,
             "peak_rss_mb": 66.8, "top1": 0.9944, "error": None} for i in (1, 2)]
    console = Console(width=100, record=True, file=open(os.devnull, "w"))
    console.print(history_table(rows))
    text = console.export_text()
    assert "digits_cnn-int8" in text and "0.0123 " in text and "…" not in text, text
    assert "every row: profile generic, host vm, status ok" in text and "error" not in text
    from edgeopt.cli import plain_lines
    assert plain_lines(history_table(rows, whole=True))[0].split("\t")[-1] == "error"
    # at 80 columns rich shrank every column alike: "digit / s_cnn / -int8" on three lines beside a time of 19
    console = Console(width=80, record=True, file=open(os.devnull, "w"))
    console.print(history_table(rows))
    text = console.export_text()
    assert "digits_cnn-int8" in text and "0.0123 " in text and "2026-12-01" in text, text
    assert max(len(line) for line in text.splitlines()) <= 80, text
    # for that width only: printed again on a wider console, the table takes its room (a review)
    table = history_table(rows)
    for width in (80, 200):
        console = Console(width=width, record=True, file=open(os.devnull, "w"))
        console.print(table)
    assert "2026-12-01 08:33:12" in console.export_text()
    # a Japanese device name is two cells a character: measured so, it stays whole
    wide = [dict(row, device="ラズベリーパイ一号機", host=f"h{i}") for i, row in enumerate(rows)]
    console = Console(width=100, record=True, file=open(os.devnull, "w"))
    console.print(history_table(wide))
    assert "ラズベリーパイ一号機" in console.export_text()


def test_each_outputs_error_is_shown_where_a_bundle_has_several(tmp_path):
    """The agent reported one max abs error over every output: a detector's boxes (pixels) hid its scores (0..1)."""
    import numpy as np

    from device_agent.measure.accuracy import REF_PREFIX, _reference_error
    from edgeopt.report.tables import _accuracy_text
    np.savez(tmp_path / "eval.npz", **{REF_PREFIX + "boxes": np.zeros((2, 4)), REF_PREFIX + "scores": np.zeros((2, 3))})
    data = np.load(tmp_path / "eval.npz")
    got = _reference_error([np.full((2, 4), 0.75), np.full((2, 3), 0.25)], ["boxes", "scores"], data)
    assert got == {"max_abs_error": 0.75, "max_abs_error_by_output": {"boxes": 0.75, "scores": 0.25}}
    assert "max abs error 0.75 (boxes 0.75, scores 0.25) vs" in _accuracy_text(dict(got, n=2))
    assert "max_abs_error_by_output" not in _reference_error([np.zeros((2, 4))], ["boxes"], data)   # one: as it was
    # references under names the model's outputs do not have (an older LiteRT bundle of a dict-returning module:
    # ref:output_0 beside outputs logits, score): the figure's absence is said, not left out unsaid
    assert _reference_error([np.zeros((2, 4))], ["logits"], data) == {
        "max_abs_error_absent": "the eval data's reference outputs (boxes, scores) name none of the model's outputs "
                                "(logits)"}
    assert "(" not in _accuracy_text({"max_abs_error": 1.0, "max_abs_error_by_output": {"a": "x"}, "n": 1}).split(
        "vs")[0]   # a malformed one (a hand-edited file) is left out


@pytest.mark.parametrize("verb", [["optimize", str(MODEL), "--device", "local"], ["report", "--study", "s"]])
def test_without_optuna_a_study_names_the_extra_in_one_line(tmp_path, verb):
    """Optuna is the `search` extra, which `make demo`'s install leaves out: a study was an ImportError's traceback."""
    blocked = "import sys; sys.modules['optuna'] = None; from edgeopt.cli import main; main()"
    p = subprocess.run([sys.executable, "-c", blocked, *verb], capture_output=True, text=True, cwd=tmp_path)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.splitlines() == ["edgeopt: error: edgeopt optimize and studies need Optuna: "
                                     "pip install 'edgeopt[search]'"]


def test_a_librarys_import_time_warnings_stay_off_stderr_unless_debug(tmp_path):
    """torchao (which transformers imports) and torch's pytree logged four lines on every PyTorch command's
    stderr, -q too (a user walkthrough); --debug shows them, as it shows runtime messages."""
    pytest.importorskip("torch")
    (tmp_path / "net.py").write_text(
        "import logging\n"
        "import torch\n"
        "logging.getLogger('torchao').warning('Failed to load _C_mxfp8.so')   # as torchao does on import\n"
        "class Net(torch.nn.Module):\n"
        "    def forward(self, x):\n"
        "        return x.relu()\n"
        "def build():\n"
        "    return Net().eval()\n")
    args = [sys.executable, "-m", "edgeopt", "package", f"{tmp_path / 'net.py'}:build", "--input-shape", "x=1,4",
            "--budget", "accuracy_drop=none", "-o", str(tmp_path / "n.edgepkg"), "--force"]
    quiet = subprocess.run(args + ["-q"], capture_output=True, text=True, timeout=300)
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    debug = subprocess.run(args + ["-q", "--debug"], capture_output=True, text=True, timeout=300)
    assert debug.returncode == 0 and "Failed to load _C_mxfp8.so" in debug.stderr, debug.stderr


def test_a_signal_while_a_native_module_initialises_exits_130(cli, monkeypatch):
    """onnxruntime's import turns a KeyboardInterrupt into ImportError("initialization failed"): a traceback and
    exit 1, which a CI system reads as a failed budget (a walkthrough); and click's "Aborted!" before a verb began
    was exit 1 too."""
    import click

    from conftest import MODEL
    from edgeopt import api, cli as cli_module

    def interrupted(*args, **kwargs):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as e:
            raise ImportError("initialization failed") from e
    monkeypatch.setattr(api, "inspect", interrupted)
    r = cli("inspect", MODEL, "--json")
    assert r.exit_code == 130 and "edgeopt: interrupted" in r.stderr and r.json()["error"]["exit_code"] == 130
    def missing(*args, **kwargs):
        raise ImportError("no module x")
    monkeypatch.setattr(api, "inspect", missing)
    with pytest.raises(ImportError, match="no module x"):   # any other ImportError is not an interrupt
        cli("inspect", MODEL)

    def aborted(self, *args, **kwargs):
        raise click.exceptions.Abort()
    monkeypatch.setattr(click.Group, "main", aborted)
    with pytest.raises(SystemExit) as stop:
        cli_module.main(["inspect", str(MODEL)])
    assert stop.value.code == 130


def test_an_empty_option_value_is_a_usage_error_on_every_verb(cli, int8_result, tmp_path):
    """`check --baseline ""` (an unset $BASE in CI) compared with whatever the current folder held, `--junit ""`
    wrote no file and `package -o ""` took the default, each with exit 0 (a walkthrough)."""
    result = int8_result["_path"]
    for args in (("check", result, "--budget", "latency_p90_ms=5", "--baseline", ""),
                 ("check", result, "--budget", "latency_p90_ms=5", "--junit="),
                 ("package", MODEL, "-o", ""), ("report", result, "--title", ""),
                 ("bench", "x.edgepkg", "--store", ""), ("device", "list", "-i", "")):
        r = cli(*args)
        assert r.exit_code == 2 and "an empty value: give one, or leave the option out" in r.stderr, (args, r.stderr)
    assert cli("check", result, "--budget", "latency_p90_ms=1000", "-q").exit_code == 0


def test_a_terminal_without_unicode_gets_the_answer_not_a_traceback(tmp_path):
    """Under LANG=en_US.ISO-8859-1 a table's em dash was a UnicodeEncodeError's traceback and exit 1 after the
    work was done (a walkthrough): what the encoding lacks is shown as its ASCII stand-in ("mean ? std" read as a
    question: an accessibility walkthrough), else "?", and the exit code is the verb's."""
    failed = tmp_path / "r.json"
    failed.write_text(json.dumps({"schema": "edgeopt.result/1", "status": "failed",
                                  "error": {"message": "lost \u2014 the device \u00b1 \u2603"}}))
    p = subprocess.run([sys.executable, "-m", "edgeopt", "check", str(failed)], capture_output=True,
                       env=dict(os.environ, PYTHONIOENCODING="ascii"), timeout=120)
    assert p.returncode == 3 and b"Traceback" not in p.stderr, p.stderr
    assert b"DEVICE FAILED: lost - the device +/- ?" in p.stdout, p.stdout


def test_a_store_path_the_locale_cannot_decode_is_one_line(cli, tmp_path):
    """A results folder whose name is no UTF-8 (bytes a C locale hands Python as surrogates) was a traceback
    from the store's URL."""
    folder = tmp_path / os.fsdecode(b"r\xe9sults")
    r = cli("history", "--results-dir", folder)
    assert r.exit_code == 2 and "the results store's path is not text in this host's locale" in r.stderr, r.stderr
    assert "r\\xe9sults" in r.stderr and len(r.stderr.splitlines()) == 1


def test_running_out_of_memory_is_one_line_and_a_json_error(cli, monkeypatch):
    """numpy's "Unable to allocate 36.6 GiB" (random parity inputs of an --input-shape of 100000 images) was a
    traceback and exit 1, and --json printed nothing (a walkthrough)."""
    from edgeopt import pipeline

    def allocate(*args, **kwargs):   # as numpy says it (its _ArrayMemoryError is a MemoryError)
        raise MemoryError("Unable to allocate 36.6 GiB for an array with shape (64, 100000, 3, 16, 16) and data "
                          "type float64")
    monkeypatch.setattr(pipeline, "load_model", allocate)
    r = cli("package", MODEL, "-o", "never.edgepkg", "--json")
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("edgeopt: error: this host ran out of memory: Unable to allocate"), r.stderr
    assert json.loads(r.stdout)["error"]["exit_code"] == 2
    assert not pathlib.Path("never.edgepkg").exists()


def test_ctrl_c_while_the_cli_loads_is_one_line_and_130():
    """A Ctrl-C in the first moments (the CLI's modules loading) was a traceback through an import and death by
    SIGINT: no handler exists that early (a walkthrough)."""
    code = ("import builtins, sys\n"
            "real = builtins.__import__\n"
            "def importing(name, *args, **kwargs):\n"
            "    if name == 'edgeopt.cli':\n"
            "        raise KeyboardInterrupt\n"
            "    return real(name, *args, **kwargs)\n"
            "builtins.__import__ = importing\n"
            "from edgeopt.__main__ import run\n"
            "sys.argv = ['edgeopt', '--version']\n"
            "run()\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 130 and p.stderr == "edgeopt: interrupted\n", (p.returncode, p.stderr)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full on this host")
def test_stdout_that_cannot_be_written_is_one_line_and_a_closed_pipe_no_word(tmp_path):
    """`bench --json > r.json` on a full disk was a traceback and exit 1 (a budget failed, to CI), its --json error
    written again to the same full stdout; `| head` closing the pipe was exit 1 without a word (a walkthrough)."""
    argv = [sys.executable, "-m", "edgeopt", "profiles", "list"]
    for extra in ([], ["--json"]):
        with open("/dev/full", "w") as full:
            p = subprocess.run(argv + extra, stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
        assert p.returncode == 2 and p.stderr == "edgeopt: error: cannot write standard output: No space left on " \
            "device\n", p.stderr
    read, write = os.pipe()
    os.close(read)   # the reader left before anything was written
    p = subprocess.run(argv, stdout=write, stderr=subprocess.PIPE, text=True, timeout=120)
    os.close(write)
    assert p.returncode == 141 and p.stderr == "", p.stderr
