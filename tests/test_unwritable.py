"""An output that cannot be written (a read-only or full disk, a file where a folder should be) is one line naming
it, exit 2, found before the work where it can be, and every result already measured kept somewhere.

Real file systems: a read-only and a 64 KiB tmpfs mounted for the test (root, as the README's test command runs);
skipped where mounting is not allowed. A file standing where a folder should be needs no mount."""
from __future__ import annotations

import contextlib
import json
import pathlib
import sqlite3
import subprocess

import pytest

from conftest import FAST_BENCH_ARGS, MODEL
from edgeopt import atomic
from edgeopt.errors import CannotWrite


@contextlib.contextmanager
def _mounted(folder: pathlib.Path, options: str):
    folder.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {p.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.fixture
def read_only(tmp_path):
    with _mounted(tmp_path / "ro", "ro,size=64k") as folder:
        yield folder


@pytest.fixture
def full_disk(tmp_path):
    with _mounted(tmp_path / "full", "size=64k") as folder:
        yield folder


def _one_line(stderr: str, fragment: str) -> None:
    lines = [line for line in stderr.splitlines() if line.startswith("edgeopt: error:")]
    assert len(lines) == 1 and fragment in lines[0], stderr
    assert "Traceback" not in stderr


def test_package_to_a_read_only_folder_is_refused_before_converting(cli, read_only):
    r = cli("package", MODEL, "-o", read_only / "a.edgepkg")
    assert r.exit_code == 2
    _one_line(r.stderr, f"cannot write the bundle {read_only / 'a.edgepkg'}: Read-only file system")
    assert "loading" not in r.stderr   # refused before the model was even read


def test_package_under_a_file_is_refused(cli, tmp_path):
    (tmp_path / "plain").write_text("x")
    r = cli("package", MODEL, "-o", tmp_path / "plain" / "a.edgepkg")
    assert r.exit_code == 2
    _one_line(r.stderr, "cannot write the bundle")


def test_package_on_a_full_disk_leaves_no_partial_file(cli, full_disk, tmp_path):
    from conftest import EVAL
    r = cli("package", MODEL, "--eval-data", EVAL, "-o", full_disk / "a.edgepkg")
    assert r.exit_code == 2
    _one_line(r.stderr, "No space left on device")
    assert list(full_disk.iterdir()) == []


def test_check_junit_to_a_read_only_folder_exits_2_not_1(cli, int8_result, read_only, tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({k: v for k, v in int8_result.items() if not k.startswith("_")}))
    r = cli("check", path, "--budget", "latency_p90_ms=0.000001", "--junit", read_only / "j.xml")
    assert r.exit_code == 2   # not 1, which CI reads as "a budget was missed"
    _one_line(r.stderr, "cannot write the JUnit report")


def test_agent_build_to_a_read_only_folder(cli, read_only):
    r = cli("agent", "build", "-o", read_only / "agent.pyz")
    assert r.exit_code == 2
    _one_line(r.stderr, "cannot write the agent")


def test_bench_to_a_read_only_results_folder_measures_nothing(cli, bundles, read_only, tmp_path):
    r = cli("bench", bundles["fp32"], "--results-dir", read_only / "results", *FAST_BENCH_ARGS)
    assert r.exit_code == 2   # the store beside the results says so first, before the results folder is probed
    _one_line(r.stderr, f"cannot make the directory {read_only / 'results'}: [Errno 30] Read-only file system")
    assert "measuring" not in r.stderr
    r = cli("bench", bundles["fp32"], "--results-dir", read_only, *FAST_BENCH_ARGS)   # an existing folder: it said
    assert r.exit_code == 2   # "cannot open it: unable to open database file" (a walkthrough)
    _one_line(r.stderr, f"cannot write results to {read_only}: Read-only file system")
    r = cli("bench", bundles["fp32"], "--results-dir", read_only / "results", "--store",
            f"sqlite:///{tmp_path / 'store.db'}", *FAST_BENCH_ARGS)   # a store elsewhere: the folder's own line
    assert r.exit_code == 2
    _one_line(r.stderr, f"cannot write results to {read_only / 'results'}: Read-only file system")
    assert "measuring" not in r.stderr


def test_a_read_only_store_is_refused_before_anything_is_measured(cli, bundles, tmp_path):
    """A store on a read-only mount was found out after the measurement (exit 3, its time spent), where the README
    says an unusable store is refused before anything is measured (a user walkthrough). It is still read."""
    with _mounted(tmp_path / "shared", "size=4m") as folder:
        store = f"sqlite:///{folder / 'edgeopt.db'}"
        first = cli("bench", bundles["fp32"], "--results-dir", tmp_path / "r1", "--store", store, *FAST_BENCH_ARGS)
        assert first.exit_code == 0, first.stderr
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        r = cli("bench", bundles["fp32"], "--results-dir", tmp_path / "r2", "--store", store, *FAST_BENCH_ARGS)
        assert r.exit_code == 2 and "measuring" not in r.stderr
        _one_line(r.stderr, f"results store {store}: {folder / 'edgeopt.db'} is not writable (--store or")
        assert not list((tmp_path / "r2").rglob("*.json"))
        inventory = tmp_path / "devices.yaml"
        inventory.write_text("devices:\n  here: {connection: local}\n")
        fleet = cli("fleet", "bench", bundles["fp32"], "-i", inventory, "--results-dir", tmp_path / "r3", "--store",
                    store)
        assert fleet.exit_code == 2 and "is not writable" in fleet.stderr and "measuring" not in fleet.stderr
        study = cli("optimize", MODEL, "--results-dir", tmp_path / "r4", "--output-dir", tmp_path / "o4", "--store",
                    store, "--budget", "latency_p90_ms=50", "--trials", "1", "--study", "ro")
        assert study.exit_code == 2 and "measuring" not in study.stderr   # one "results store" prefix, not two
        _one_line(study.stderr, f"edgeopt: error: results store {store}: {folder / 'edgeopt.db'} is not writable")
        history = cli("history", "--store", store, "--json")
        assert history.exit_code == 0 and len(history.json()) == 1, history.stderr


def test_bench_on_a_full_disk_keeps_the_result_in_the_store(cli, bundles, full_disk, tmp_path):
    (full_disk / "filler").write_bytes(b"\0" * 60_000)   # room for the probe, none for a result
    db = tmp_path / "store.db"
    r = cli("bench", bundles["fp32"], "--results-dir", full_disk, "--store", f"sqlite:///{db}", *FAST_BENCH_ARGS)
    assert r.exit_code == 2
    _one_line(r.stderr, "No space left on device; the result is in the store")
    with sqlite3.connect(db) as c:
        assert c.execute("select count(*) from results").fetchone()[0] == 1


def test_bench_on_a_full_disk_that_holds_the_store_too_keeps_the_result_in_the_temporary_folder(
        cli, bundles, full_disk, tmp_path, monkeypatch):
    """Neither the results folder nor the store could take the result: "this run's result is lost"."""
    import os
    import tempfile

    from edgeopt.store import Store
    url = f"sqlite:///{full_disk / 'e.db'}"
    Store(url).close()   # made while there was room; then the disk fills, but for the results folder's probe
    free = os.statvfs(full_disk)
    (full_disk / "filler").write_bytes(b"\0" * (free.f_bavail * free.f_frsize - 4096))
    spare = tmp_path / "tmp"
    spare.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spare))
    r = cli("bench", bundles["fp32"], "--results-dir", full_disk, "--store", url, *FAST_BENCH_ARGS)
    assert r.exit_code == 2, r.stderr
    kept = list(spare.glob("edgeopt-result-*.json"))
    assert len(kept) == 1 and json.loads(kept[0].read_text())["status"] == "ok", r.stderr
    _one_line(r.stderr, f"the result is saved to {kept[0]} instead")
    assert cli("check", kept[0], "--budget", "latency_p90_ms=1000").exit_code == 0


@pytest.mark.slow
def test_optimize_to_a_read_only_folder_leaves_no_study_behind(cli, read_only, tmp_path):
    from conftest import CALIB, EVAL
    args = ["optimize", MODEL, "--calib", CALIB, "--eval-data", EVAL, "--results-dir", tmp_path / "results",
            "--budget", "latency_p90_ms=1000", "--trials", "1", "--study", "s", "--json"]
    r = cli(*args, "--output-dir", read_only / "opt")
    assert r.exit_code == 2
    _one_line(r.stderr, "cannot write bundles to")
    r = cli(*args, "--output-dir", tmp_path / "opt")   # the same study: no "exists" from the refused run
    assert r.exit_code == 0, r.stderr


def test_a_failed_read_inside_the_block_is_not_called_a_write(tmp_path):
    with pytest.raises(FileNotFoundError):
        with atomic.replacing(tmp_path / "out.bin", "the thing") as f:
            f.write((tmp_path / "missing-input").read_bytes())
    assert list(tmp_path.iterdir()) == []   # and its temp file is gone


def test_check_writable_names_a_file_in_the_way(tmp_path):
    (tmp_path / "plain").write_text("x")
    with pytest.raises(CannotWrite, match="Not a directory"):
        atomic.check_writable(tmp_path / "plain", "results to", folder=True)
    with pytest.raises(CannotWrite, match="Is a directory"):
        atomic.check_writable(tmp_path, "the bundle")


def test_agent_build_does_not_overwrite_a_file_that_is_no_agent(cli, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("precious\n")
    r = cli("agent", "build", "-o", notes)
    assert r.exit_code == 2 and "notes.txt: exists and is not an edgeopt agent zipapp" in r.stderr, r.stderr
    assert notes.read_text() == "precious\n"
    agent = tmp_path / "agent.pyz"
    assert cli("agent", "build", "-o", agent).exit_code == 0
    assert cli("agent", "build", "-o", agent).exit_code == 0   # its own output, rebuilt
    assert cli("agent", "build", "-o", notes, "--force").exit_code == 0 and notes.read_bytes()[:2] == b"#!"


def test_a_report_or_junit_file_never_replaces_a_bundle(cli, bundles, int8_result, tmp_path):
    """`check --junit victim.edgepkg` and `report -o victim.edgepkg --format html` replaced the bundle with XML."""
    import shutil
    victim = tmp_path / "victim.edgepkg"
    shutil.copy(bundles["fp32"], victim)
    before = victim.read_bytes()
    path = tmp_path / "r.json"
    path.write_text(json.dumps({k: v for k, v in int8_result.items() if not k.startswith("_")}))
    for args in (["check", path, "--junit", victim], ["report", path, "-o", victim, "--format", "html"]):
        r = cli(*args)
        assert r.exit_code == 2 and f"{victim}: is an edgeopt bundle; refusing to overwrite it" in r.stderr, r.stderr
    assert victim.read_bytes() == before


def test_a_report_or_junit_file_never_replaces_a_result_or_an_input(cli, int8_result, tmp_path):
    """`report r.json -o r.json --format markdown`, `report r.json --format csv -o other.json` and `check r.json
    --junit r.json` replaced a measurement with text, exit 0; `--format csv -o x.html` wrote CSV into x.html."""
    path, other = tmp_path / "r.json", tmp_path / "other.json"
    for p in (path, other):
        p.write_text(json.dumps({k: v for k, v in int8_result.items() if not k.startswith("_")}))
    before = path.read_bytes()
    for args in (["report", path, "-o", path, "--format", "markdown"], ["report", path, "--format", "csv", "-o", other],
                 ["check", path, "--junit", path, "--budget", "latency_p90_ms=1000"]):
        r = cli(*args)
        assert r.exit_code == 2 and "refusing to overwrite it" in r.stderr, (args, r.stderr)
        assert "edgeopt.result/1 document" in r.stderr or "is one of the files read" in r.stderr
    assert path.read_bytes() == before and other.read_bytes() == before
    notes = tmp_path / "notes.csv"   # a file of the user's given as input is no result, and still not replaced
    notes.write_text("a,b\n")
    r = cli("report", path, notes, "-o", notes)
    assert r.exit_code == 2 and "is one of the files read" in r.stderr and notes.read_text() == "a,b\n"
    store = tmp_path / "edgeopt.db"   # the results store: a database, not JSON (a code review)
    from edgeopt.store import Store
    Store(f"sqlite:///{store}").close()
    before_store = store.read_bytes()
    r = cli("report", path, "--format", "markdown", "-o", store)
    assert r.exit_code == 2 and "holds a SQLite database (a results store?)" in r.stderr and store.read_bytes() == \
        before_store, r.stderr
    r = cli("report", path, "--format", "csv", "-o", tmp_path / "x.html")
    assert r.exit_code == 2 and "its suffix .html says html, --format says csv" in r.stderr, r.stderr
    assert not (tmp_path / "x.html").exists()
    r = cli("report", path, "--format", "csv", "-o", tmp_path / "x.csv")
    assert r.exit_code == 0 and (tmp_path / "x.csv").read_text().startswith("bundle")


def test_a_bundle_that_does_not_fit_where_it_is_unpacked_is_the_devices_failure(bundles, full_disk):
    """A device's full disk while unpacking read "bundle ...: cannot be read or unpacked" with exit 2, as if the
    bundle were bad; while uploading, exit 3 (a user walkthrough). Both are the device's: exit 3."""
    from device_agent import AgentError, BundleError
    from device_agent.bundle import unpack
    (full_disk / "filler").write_bytes(b"\0" * 60_000)
    with pytest.raises(AgentError, match="no space left on this device to unpack bundle ") as raised:
        unpack(str(bundles["fp32"]), str(full_disk / "run"))
    assert not isinstance(raised.value, BundleError) and raised.value.exit_code == 3


def test_a_device_with_no_room_for_the_runs_files_fails_the_run_with_a_result(bundles, tmp_path):
    """No inode left where the agent makes its run directory was a traceback on the device and no result (a user
    walkthrough); it is the device's failure (exit 3) with a document that says so."""
    from device_agent.bench import run
    from device_agent.measure.latency import LoopSettings
    with _mounted(tmp_path / "no_inodes", "size=64k,nr_inodes=3") as folder:
        for name in ("a", "b"):   # the root takes one inode, these the rest
            (folder / name).touch()
        doc, code = run(str(bundles["fp32"]), LoopSettings(), workdir=str(folder))
    assert code == 3 and doc["status"] == "failed" and doc["error"]["kind"] == "device", doc
    assert doc["error"]["message"].startswith("no space left on this device for the run's files ("), doc["error"]


def test_a_lock_or_workdir_that_cannot_be_made_fails_the_run_with_a_result(bundles, tmp_path):
    """Any other OSError there (a lock under a missing /proc folder, a file where the workdir goes) was a
    traceback, exit 1 (a missed budget, to CI) and no document (a device_agent review): exit 3 with one."""
    from device_agent.bench import run
    from device_agent.measure.latency import LoopSettings
    (tmp_path / "file").write_text("")
    for options in ({"lock": "/proc/edgeopt/lock"}, {"workdir": str(tmp_path / "file" / "work")}):
        doc, code = run(str(bundles["fp32"]), LoopSettings(), **options)
        assert code == 3 and doc["status"] == "failed" and doc["error"]["kind"] == "device", doc
        assert doc["error"]["message"].startswith("cannot write the run's files on this device: "), doc["error"]


def test_a_report_to_a_link_a_pipe_or_under_a_file_is_written_where_it_points(cli, int8_result, tmp_path):
    """The rename onto the target replaced a symbolic link, a named pipe (its reader got nothing) and, as root,
    a device node such as /dev/full with a plain file; a folder above that is a file read "File exists"."""
    import os
    import threading
    real, link = tmp_path / "real.md", tmp_path / "link.md"
    real.write_text("old")
    link.symlink_to(real.name)
    r = cli("report", int8_result["_path"], "-o", link)
    assert r.exit_code == 0 and link.is_symlink() and real.read_text().startswith("### edgeopt report"), r.stderr
    fifo, got = tmp_path / "fifo.md", []
    os.mkfifo(fifo)
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    r = cli("report", int8_result["_path"], "-o", fifo)
    reader.join(timeout=30)
    assert r.exit_code == 0 and got and got[0].startswith("### edgeopt report"), r.stderr
    assert not fifo.is_file() and fifo.is_fifo()
    (tmp_path / "plain").write_text("x")
    r = cli("report", int8_result["_path"], "-o", tmp_path / "plain" / "x.html")
    _one_line(r.stderr, f"Not a directory: {tmp_path / 'plain'} is a file")
    assert r.exit_code == 2 and (tmp_path / "plain").read_text() == "x"


def test_report_without_o_replaces_only_its_own_report_html(cli, int8_result, tmp_path, monkeypatch):
    """report writes ./report.html by default, and replaced a page of the user's of that name without a word."""
    monkeypatch.chdir(tmp_path)
    mine = tmp_path / "report.html"
    mine.write_text("<html>mine</html>")
    r = cli("report", int8_result["_path"], "--no-history")
    assert r.exit_code == 2 and "report.html exists and is not an edgeopt report" in r.stderr, r.stderr
    assert mine.read_text() == "<html>mine</html>"
    mine.unlink()
    for _ in range(2):   # its own, written again
        assert cli("report", int8_result["_path"], "--no-history").exit_code == 0 and mine.stat().st_size > 1000
    assert cli("report", int8_result["_path"], "--no-history", "-o", tmp_path / "x.html").exit_code == 0
    import os
    import threading

    from edgeopt.cli import _refuse_a_foreign_default_report
    mine.unlink()
    os.mkfifo(mine)   # reading it to tell whose it is blocked for ever (a code review)
    judged = threading.Thread(target=_refuse_a_foreign_default_report, args=(str(mine),), daemon=True)
    judged.start()
    judged.join(timeout=10)
    assert not judged.is_alive()


def test_dev_stdout_is_written_through_its_descriptor_and_keeps_the_rest_of_the_output(tmp_path):
    """/dev/stdout links to /proc/self/fd/1: resolved, it named the file the shell redirected stdout to, which the
    rename replaced, so everything else the process printed was lost, and `>>`'s earlier lines too (a review)."""
    import sys
    log = tmp_path / "ci.log"
    log.write_text("earlier\n")
    script = ("from edgeopt.atomic import check_writable, replacing\n"
              "check_writable('/dev/stdout', 'the JUnit report')\n"
              "print('before', flush=True)\n"
              "with replacing('/dev/stdout', 'the JUnit report', 'wb') as f:\n"
              "    f.write(b'<testsuites/>\\n')\n"
              "print('after')\n")
    with open(log, "a") as out:
        subprocess.run([sys.executable, "-c", script], stdout=out, check=True, cwd=pathlib.Path(atomic.__file__).parents[1])
    assert log.read_text() == "earlier\nbefore\n<testsuites/>\nafter\n"


def test_a_bundle_is_not_written_to_a_pipe_or_a_device(tmp_path):
    """tar writes a bundle with seeks, which a pipe refuses ("Illegal seek" after the conversion): said before."""
    import os
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    atomic.check_writable(fifo, "the JUnit report")   # a report may go there
    with pytest.raises(CannotWrite, match="not a regular file"):
        atomic.check_writable(fifo, "the bundle", file_only=True)
    link = tmp_path / "link.edgepkg"   # a link is judged where it points: a folder that does not exist is made
    link.symlink_to(tmp_path / "elsewhere" / "b.edgepkg")
    atomic.check_writable(link, "the bundle", file_only=True)
    assert (tmp_path / "elsewhere").is_dir()


def test_a_pipe_or_a_device_named_as_an_input_is_refused_not_read(cli, tmp_path):
    """A pipe named as a result file or as -o waited for a writer forever, /dev/zero filled the memory, and
    `agent build -o /dev/full` read the device to the end before writing (the host killed it; a user
    walkthrough). Each is one line, exit 2."""
    import os
    pipe, zero, pipe_bundle = tmp_path / "pipe.json", tmp_path / "zero.json", tmp_path / "pipe.edgepkg"
    os.mkfifo(pipe)
    os.mkfifo(pipe_bundle)
    zero.symlink_to("/dev/zero")
    for path in (pipe, zero):
        r = cli("check", path, "--json")
        assert r.exit_code == 2 and "zero.json is not a regular file" in r.stderr if path == zero else \
            r.exit_code == 2 and "pipe.json is not a regular file" in r.stderr, r.stderr
    r = cli("inspect", pipe_bundle)
    assert r.exit_code == 2 and "pipe.edgepkg: is not a regular file" in r.stderr, r.stderr
    r = cli("package", MODEL, "-o", pipe_bundle)   # no file to replace: not offered --force, which cannot help
    assert r.exit_code == 2 and "pipe.edgepkg: is not a regular file (a directory, pipe or device)" in r.stderr \
        and "--force" not in r.stderr, r.stderr
    r = cli("agent", "build", "-o", "/dev/full")   # written to as it is, as a shell's redirection would
    assert r.exit_code == 2 and "cannot write the agent /dev/full: No space left on device" in r.stderr, r.stderr


def test_an_upload_to_a_full_or_read_only_device_disk_says_where_and_what_to_do(cli, lab, bundles, full_disk,
                                                                               read_only, tmp_path):
    """A full disk read "agent upload failed (OSError: [Errno 28] No space left on device)", naming no folder, size
    or remedy; a read-only workdir a bare OSError (a walkthrough). Over a real sshd device."""
    from conftest import write_inventory
    dev = lab.devices.get("pi-one") or lab.add("pi-one", 0)
    cases = {full_disk / "edgeopt": ("the device's disk is full where", "device clean pi-one"),
             read_only / "edgeopt": ("the login cannot write", "a folder it can write")}
    for workdir, said in cases.items():
        inv = write_inventory(tmp_path / "inv.yaml", lab, [dev], **{dev.name: {"workdir": str(workdir)}})
        r = cli("bench", bundles["fp32"], "--device", dev.name, "--inventory", inv, "--known-hosts", lab.known_hosts,
                "--results-dir", tmp_path / "results", *FAST_BENCH_ARGS)
        assert r.exit_code == 3 and all(s in r.stderr for s in said) and str(workdir) in r.stderr, r.stderr
        assert "MiB free" in r.stderr or workdir == read_only / "edgeopt", r.stderr   # refused before a byte is sent


@pytest.mark.slow
def test_a_disk_that_fills_during_a_study_stops_it_and_resume_measures_the_trial_it_stopped(tmp_path):
    """The disk filling (the trials' bundles) failed every later trial as its candidate's fault: the study used up
    --trials on them, and --resume never measured INT8 by hand (a walkthrough). It stops; the trial runs again."""
    import optuna
    from conftest import CALIB, EVAL
    from edgeopt import api
    from edgeopt.errors import BadInput
    from edgeopt.progress import Progress

    class FillsTheDiskAtTrial1(Progress):
        def status(self, message):
            if message.startswith("trial 1") and not filler.exists():
                with contextlib.suppress(OSError), open(filler, "wb") as f:
                    while True:
                        f.write(b"\0" * 65536)
                        f.flush()

    space = tmp_path / "space.toml"
    space.write_text('quantize = ["none", "int8"]\nprecision = ["fp32"]\nkeep_float = [""]\nthreads = [1]\n')
    with _mounted(tmp_path / "opt", "size=2m") as out:
        filler = out / "filler"
        kwargs = dict(budgets={"latency_p90_ms": 1000.0}, study="full", trials=3, calib=CALIB, eval_data=EVAL,
                      results_dir=tmp_path / "results", output_dir=out, space_file=space)
        with pytest.raises(BadInput, match="No space left on device; study 'full' stopped with every finished trial "
                                           "kept: make room, then run the same command with --resume"):
            api.optimize(str(MODEL), progress=FillsTheDiskAtTrial1(), **kwargs)
        storage = f"sqlite:///{tmp_path / 'results' / 'edgeopt.db'}"
        trials = optuna.load_study(study_name="full", storage=storage).get_trials()
        assert [t.state.name for t in trials] == ["COMPLETE", "WAITING"]   # INT8 by hand back in the queue
        filler.unlink()
        outcome = api.optimize(str(MODEL), resume=True, **kwargs)
    textbook = [row for row in outcome["trials"] if "textbook" in str(row.get("config", "")) or row["trial"] == 1]
    assert outcome["exit_code"] == 0 and textbook and textbook[0]["state"] == "complete", outcome["trials"]


def test_a_fleet_result_neither_its_run_directory_nor_its_store_can_take_is_kept_in_the_temporary_folder(
        lab, bundles, tmp_path, monkeypatch):
    """It said "this result of d is lost" where `bench` keeps it in the temporary folder (a walkthrough)."""
    import tempfile

    from conftest import write_inventory
    from edgeopt import api
    from edgeopt.progress import Progress

    dev = lab.devices.get("pi-one") or lab.add("pi-one", 0)
    inv = write_inventory(tmp_path / "inv.yaml", lab, [dev])
    spare = tmp_path / "tmp"
    spare.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spare))

    class FillsTheDiskAsItConnects(Progress):
        def device_state(self, name, state, detail=""):
            if state == "connecting":   # the run directory and the store are made by now
                with contextlib.suppress(OSError), open(out / "filler", "wb") as f:
                    while True:
                        f.write(b"\0" * 4096)
                        f.flush()

    with _mounted(tmp_path / "results", "size=1m") as out:
        outcome = api.fleet_bench(bundles["fp32"], inv, results_dir=out, loop={"min_seconds": 0.2,
                                  "min_iterations": 10}, ssh_options=_known(lab), progress=FillsTheDiskAsItConnects())
    kept = list(spare.glob("edgeopt-result-*.json"))
    assert len(kept) == 1 and json.loads(kept[0].read_text())["status"] == "ok"
    said = outcome["store_errors"]   # the CLI's exit 3, with these lines
    assert len(said) == 1 and f"the result is saved to {kept[0]} instead" in said[0] and "lost" not in said[0], said


def _known(lab):
    from edgeopt.transport.ssh import SshOptions
    return SshOptions(known_hosts=str(lab.known_hosts))


def test_a_name_too_long_is_one_line_and_exit_2_before_the_work(cli, bundles, int8_result, tmp_path):
    """A legal 255-byte name was refused for its temp file's longer one, and a name or path past the file system's
    limits was a traceback and exit 1 (a budget failed, to CI) after the conversion (a walkthrough)."""
    legal = tmp_path / ("c" * 247 + ".edgepkg")
    assert cli("package", MODEL, "-o", legal, "--name", "short", "-q").exit_code == 0 and legal.is_file()
    too_long = tmp_path / ("e" * 250 + ".edgepkg")
    r = cli("package", MODEL, "-o", too_long, "--name", "short")
    assert r.exit_code == 2 and "loading" not in r.stderr
    _one_line(r.stderr, "file name too long: ")
    r = cli("package", MODEL, "-o", tmp_path / ("n" * 230 + ".edgepkg"))
    assert r.exit_code == 2
    _one_line(r.stderr, "the bundle's name, taken from -o's file name, is 230 characters: at most 200")
    deep = tmp_path.joinpath(*["x" * 200] * 21)
    for args in (("check", int8_result, "--budget", "latency_p90_ms=5", "--junit", tmp_path / ("r" * 255 + ".xml")),
                 ("bench", bundles["fp32"], "--results-dir", deep)):
        r = cli(*args)
        assert r.exit_code == 2, r.stderr
        _one_line(r.stderr, "file name too long: ")


def test_a_full_temporary_folder_is_said_as_the_hosts_disk_not_a_traceback(cli, full_disk, tmp_path, monkeypatch):
    import os
    import tempfile
    from conftest import CALIB
    monkeypatch.setattr(tempfile, "tempdir", str(full_disk))
    free = os.statvfs(full_disk)
    (full_disk / "filler").write_bytes(b"\0" * (free.f_bavail * free.f_frsize - 8192))
    r = cli("package", MODEL, "--quantize", "int8", "--calib", CALIB, "-o", tmp_path / "a.edgepkg", "--no-simplify")
    assert r.exit_code == 2 and not (tmp_path / "a.edgepkg").exists()
    _one_line(r.stderr, "this host cannot write its files: No space left on device")


def test_a_relative_target_owns_its_temp_files_absolute_name(tmp_path, monkeypatch):
    """mkstemp names its file absolute: a relative `-o out/r.md` into a read-only folder was said as "this host
    cannot write out/.r.md.123-x.partial ... set TMPDIR" or, denied, a traceback (a walkthrough)."""
    import os
    import pathlib
    from edgeopt.atomic import _is_on_the_way_to
    from edgeopt.errors import host_file_problem
    monkeypatch.chdir(tmp_path)
    assert _is_on_the_way_to(pathlib.Path("out/r.md"), str(tmp_path / "out" / ".r.md.123-abc.partial"))
    assert _is_on_the_way_to(pathlib.Path("out/r.md"), str(tmp_path / "out"))
    assert not _is_on_the_way_to(pathlib.Path("out/r.md"), os.fsencode(tmp_path / "elsewhere.json"))
    said = host_file_problem(OSError(24, "Too many open files", "x.onnx"))
    assert said == "a limit of this host stopped the work x.onnx: Too many open files (raise the open-file limit: " \
        "ulimit -n)"
