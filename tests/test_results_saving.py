"""Saving results: one file per distinct name on any file system, failures never replace a good
result, history never overwritten, fleets keyed on exact device names (issue 11: no result lost)."""
import json
import os
import pathlib
import threading

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import FAST_LOOP, bundle_manifest
from edgeopt import api, fleet, results
from edgeopt.errors import BadInput
from edgeopt.inventory import make_device
from edgeopt.store import Store

# What an inventory accepts as a device name (edgeopt.inventory.make_device): no whitespace or slashes.
NAME_CHARS = st.characters(blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc"), blacklist_characters="/\\")
NAMES = st.text(NAME_CHARS, min_size=1, max_size=24)
# The collisions measured on main, plus case and Unicode-normalization twins.
TWINS = ["pi:1", "pi_1", "设备1", "装置1", "&&id", "|id", "Pi-1", "pi-1", "run", "café", "cafe\u0301", "..", ".",
         "a@b", "a_b", "x~y", "node-3", "NODE-3"]


def _fold(stem: str) -> str:
    """How a case-insensitive file system (macOS, Windows) compares names."""
    return stem.casefold()


@settings(max_examples=400, deadline=None)
@given(st.lists(NAMES, min_size=1, max_size=12, unique=True))
def test_distinct_names_get_distinct_ascii_file_names(names):
    names = names + [n for n in TWINS if n not in names]
    stems = [results.file_stem(n) for n in names]
    assert len({_fold(s) for s in stems}) == len(names)
    for name, stem in zip(names, stems):
        assert stem.isascii() and "/" not in stem and "@" not in stem and stem not in (".", "..", "run")
        assert 0 < len(stem) <= 64 and not stem.startswith(".")
        assert results.file_stem(name) == stem  # stable: resume and history find the same file
        assert results.file_stem(name, hashed=True) != stem or "~" in stem


def test_plain_names_keep_their_file_names():
    assert [results.file_stem(n) for n in ("node-3", "pi.kitchen", "mnet_int8")] == ["node-3", "pi.kitchen",
                                                                                       "mnet_int8"]
    assert results.file_stem("Pi-1").startswith("Pi-1~") and results.file_stem("run").startswith("run~")


def _doc(status, device="pi-1", bundle="mnet", value=1.0):
    doc = {"schema": "edgeopt.result/1", "status": status, "device": {"name": device}, "bundle": {"name": bundle}}
    if status == "ok":
        doc["latency"], doc["memory"] = {"p90_ms": value}, {}   # a result as results.validate reads it
    else:
        doc["error"] = {"message": "device down", "exit_code": 3}
    return doc


def test_a_failure_never_replaces_a_good_result(tmp_path):
    good = results.save(_doc("ok", value=4.0), tmp_path)
    failed = _doc("failed")
    where = results.save(failed, tmp_path)
    assert json.loads(good.read_text())["latency"]["p90_ms"] == 4.0  # the good one is still the latest
    assert where.parent.name == "history" and json.loads(where.read_text())["status"] == "failed"
    assert failed["_latest_kept"] == str(good)
    assert results.save(_doc("ok", value=5.0), tmp_path) == good  # a new good one does replace it
    assert json.loads(good.read_text())["latency"]["p90_ms"] == 5.0


def test_a_latency_only_run_never_replaces_a_result_that_measured_the_accuracy(tmp_path):
    """optimize measures its finalists and paired baselines again without the eval pass: the trial's own file must
    keep its full run, or `check results/STUDY-t1@local.json` of the chosen trial reads accuracy NOT MEASURED."""
    from device_agent.measure.accuracy import SKIPPED

    def latency_only(value):
        return dict(_doc("ok", value=value), accuracy={"available": False, "reason": SKIPPED})

    first = results.save(latency_only(2.0), tmp_path)   # a screening run: nothing fuller to keep, so the latest
    assert first == tmp_path / "mnet@pi-1.json"
    assert results.save(latency_only(3.0), tmp_path) == first   # and a repeat of it replaces it
    full = dict(_doc("ok", value=4.0), accuracy={"top1": 0.98, "drop": 0.002})
    assert results.save(full, tmp_path) == first
    repeat = latency_only(5.0)
    where = results.save(repeat, tmp_path)
    assert where.parent.name == "history" and repeat["_latest_kept"] == str(first)
    assert json.loads(first.read_text())["accuracy"]["top1"] == 0.98
    no_eval = dict(_doc("ok", bundle="plain", value=1.0), accuracy={"available": False, "reason": "no eval data"})
    assert results.save(no_eval, tmp_path) == tmp_path / "plain@pi-1.json"
    assert results.save(dict(latency_only(1.5), bundle={"name": "plain"}), tmp_path).parent.name == "history"


def test_a_failure_of_one_profiles_bundle_replaces_another_profiles_good_result(tmp_path):
    """d1/a.edgepkg (generic) measured fine, then d2/a.edgepkg (raspberry-pi-5) failed on the same device: the
    failure carried no profile, was taken for the generic bundle's, and kept its good result as results/a@pi-1.json,
    which `check` passed."""
    spec = make_device("pi-1", {"host": "pi-1.lan"}, "test")
    good = dict(_doc("ok", bundle="a"), bundle={"name": "a", "profile": {"name": "generic"}})
    latest = results.save(good, tmp_path)
    manifest = {"name": "a", "_manifest_sha256": "0" * 64,
                "profile": {"name": "raspberry-pi-5", "backend": "litert", "precision": "fp32"}}
    failed = fleet.failed_document(spec, manifest, "device pi-1: unreachable")
    assert results.save(failed, tmp_path) == latest and "_latest_kept" not in failed
    assert json.loads(latest.read_text())["status"] == "failed"
    again = fleet.failed_document(spec, dict(manifest, profile={"name": "generic"}), "device pi-1: unreachable")
    results.save(good, tmp_path)   # and a failure of the generic bundle still keeps its own good result
    assert results.save(again, tmp_path).parent.name == "history" and again["_latest_kept"] == str(latest)


def test_a_failure_replaces_a_failure_and_a_result_of_another_device(tmp_path):
    first = results.save(_doc("failed"), tmp_path)
    assert results.save(_doc("failed"), tmp_path) == first
    # A latest file an older, lossy naming gave another device: not this device's good result.
    (tmp_path / "mnet@pi-2.json").write_text(json.dumps(_doc("ok", device="pi:2")))
    assert results.save(_doc("failed", device="pi-2"), tmp_path) == tmp_path / "mnet@pi-2.json"


def test_history_keeps_every_save_even_in_the_same_microsecond(tmp_path):
    threads = [threading.Thread(target=results.save, args=(_doc("ok", value=i), tmp_path)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    saved = sorted(json.loads(p.read_text())["latency"]["p90_ms"] for p in (tmp_path / "history").iterdir())
    assert saved == list(range(24))
    path = tmp_path / "same.json"
    made = [results.write_json_new(path, {"n": i}) for i in range(3)]
    assert [p.name for p in made] == ["same.json", "same-2.json", "same-3.json"]
    assert not list(tmp_path.glob("*.partial")) and not list(tmp_path.glob(".*.partial"))


class _Instant:
    """A device that answers at once: `ok` unless its name is in `failing`. The storage is under test here;
    tests/test_fleet.py and tests/transport/test_ssh_faults.py run the same code over real sshd devices."""

    def __init__(self, spec, manifest, failing):
        self.spec, self.manifest, self.failing = spec, manifest, failing

    def bench(self, bundle, agent_args, progress, timeout):
        if self.spec.name in self.failing:
            return fleet.failed_document(self.spec, self.manifest, "no route to host"), 3
        doc = _doc("ok", device=self.spec.name, bundle=self.manifest["name"])
        doc["bundle"]["manifest_sha256"] = self.manifest["_manifest_sha256"]
        return doc, 0

    def close(self):
        pass


def _fleet(bundle, names, failing, results_dir, resume, store_url):
    manifest = dict(bundle_manifest(bundle), _manifest_sha256="0" * 64)
    devices = [make_device(n, {"host": "127.0.0.1"}, "test") for n in names]
    return fleet.bench(bundle, devices, lambda spec: _Instant(spec, manifest, failing), results_dir,
                       store_url, parallel=4, resume=resume)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(NAMES.filter(lambda n: _allowed(n)), min_size=1, max_size=10, unique=True),
       data=st.data())
def test_fleet_keeps_one_file_per_device_and_resume_skips_exactly_the_ok_ones(bundles, tmp_path_factory, names,
                                                                              data):
    names = names + [n for n in TWINS if n not in names]
    failing = set(data.draw(st.lists(st.sampled_from(names), unique=True)))
    out = tmp_path_factory.mktemp("fleet")
    store_url = f"sqlite:///{tmp_path_factory.getbasetemp() / 'saving-store.db'}"  # one store for every example
    first = _fleet(bundles["fp32"], names, failing, out, resume=False, store_url=store_url)
    run_dir = pathlib.Path(first["run_dir"])
    files = [p for p in run_dir.glob("*.json") if p.name != "run.json"]
    assert len(files) == len(names)
    assert sorted(json.loads(p.read_text())["device"]["name"] for p in files) == sorted(names)
    assert len(list((out / "history").iterdir())) == len(names)
    assert len({p.name for p in out.glob("*@*.json")}) == len(names)
    again = _fleet(bundles["fp32"], names, set(), out, resume=True, store_url=store_url)
    assert again["run_dir"] == first["run_dir"]
    assert sorted(again["skipped"]) == sorted(set(names) - failing)
    assert sorted(again["succeeded"]) == sorted(names)
    assert len([p for p in run_dir.glob("*.json") if p.name != "run.json"]) == len(names)


def _allowed(name):
    try:
        make_device(name, {"host": "127.0.0.1"}, "test")
        return True
    except BadInput:
        return False


def test_two_fleets_at_once_keep_separate_runs_and_a_resume_waits_for_neither(bundles, tmp_path):
    names = ["a", "b", "c"]
    manifest = dict(bundle_manifest(bundles["fp32"]), _manifest_sha256="0" * 64)
    runs = [fleet.FleetRun(bundles["fp32"], manifest, tmp_path, resume=False) for _ in range(2)]
    assert runs[0].run_dir != runs[1].run_dir
    try:
        with pytest.raises(BadInput, match="still in progress"):
            fleet.FleetRun(bundles["fp32"], manifest, tmp_path, resume=True)
    finally:
        for run in runs:
            run.close()
    store = Store(f"sqlite:///{tmp_path / 'edgeopt.db'}")
    for run in runs:
        for n in names:
            run.record(_doc("ok", device=n, bundle=manifest["name"]), store)
    store.close()
    assert all(len(list(run.run_dir.glob("?.json"))) == 3 for run in runs)
    assert len(list((tmp_path / "history").iterdir())) == 6
    resumed = fleet.FleetRun(bundles["fp32"], manifest, tmp_path, resume=True)
    assert resumed.run_dir == max(r.run_dir for r in runs) and all(resumed.done(n) for n in names)
    resumed.close()


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_saved_files_take_the_umask_mode_not_the_temp_files_0600(bundles, tmp_path, umask, mode):
    """Results, bundles and reports are renamed from a temp file; they must read as a plain open() would make
    them (shared result dirs, CI artifacts), not mkstemp's 0600."""
    import tarfile

    from edgeopt import api, bundle

    with tarfile.open(bundles["fp32"]) as tar:
        tar.extractall(tmp_path / "members", filter="data")
    manifest = bundle_manifest(bundles["fp32"])
    files = [(tmp_path / "members" / f["path"], f["path"], f["role"]) for f in manifest.pop("files")]
    previous = os.umask(umask)
    try:
        saved = results.save(_doc("ok", value=1.0), tmp_path / "results")
        packed = tmp_path / "m.edgepkg"
        bundle.write(packed, manifest, files)
        report = tmp_path / "r.html"
        api._write_text(report, "<html></html>")
    finally:
        os.umask(previous)
    for path in (saved, *saved.parent.joinpath("history").iterdir(), packed, report):
        assert path.stat().st_mode & 0o777 == mode, path


def test_a_store_that_fails_after_the_measurement_is_exit_3_naming_the_saved_file(bundles, tmp_path):
    """The measurement is whole and saved; only the store refused it (a DBA dropped the table mid-run): exit 3,
    as fleet bench has it, naming the file, not "bad input"."""
    import sqlite3

    from conftest import FAST_LOOP
    from edgeopt import api
    from edgeopt.errors import DeviceFailure
    from edgeopt.progress import Progress
    db = tmp_path / "results" / "edgeopt.db"

    class DropTheTable(Progress):
        def status(self, message):
            if message.startswith("warm-up") and db.is_file():
                with sqlite3.connect(db) as conn:
                    conn.execute("DROP TABLE IF EXISTS results")

    said = r"the result is saved to .*history/.*@local-.*\.json, but not in the store \(`edgeopt history --add .*` " \
        r"adds it\)"
    with pytest.raises(DeviceFailure, match=said) as e:
        api.bench(bundles["fp32"], results_dir=tmp_path / "results", loop=FAST_LOOP, progress=DropTheTable())
    assert e.value.exit_code == 3
    assert len(list((tmp_path / "results").glob("*@local.json"))) == 1


def test_signals_stay_held_until_an_interrupted_fleet_has_closed_its_store_and_run(bundles, tmp_path, monkeypatch):
    """The hold that keeps a second Ctrl-C from replacing the --resume line ended with the pool: the store's close
    (a PostgreSQL pool's dispose) and the run's unlock came after it, unheld (a review). No signal is sent here:
    the handlers in place while each closes are read."""
    import concurrent.futures
    import signal
    from edgeopt.store import Store

    before = signal.getsignal(signal.SIGINT)
    seen = {}

    def interrupted(futures):
        raise KeyboardInterrupt
        yield

    def closing(name, close):
        def wrapper(self):
            seen[name] = signal.getsignal(signal.SIGINT)
            return close(self)
        return wrapper
    monkeypatch.setattr(concurrent.futures, "as_completed", interrupted)
    monkeypatch.setattr(Store, "close", closing("store", Store.close))
    monkeypatch.setattr(fleet.FleetRun, "close", closing("run", fleet.FleetRun.close))
    with pytest.raises(KeyboardInterrupt, match="devices reported"):
        _fleet(bundles["fp32"], ["a", "b"], set(), tmp_path / "results", False, f"sqlite:///{tmp_path / 'r.db'}")
    assert seen["store"] is not before and seen["run"] is not before, seen
    assert signal.getsignal(signal.SIGINT) is before


def test_an_agent_document_check_could_not_read_is_a_failed_result_and_replaces_nothing(cli, bundles, tmp_path):
    """`{"status": "ok"}` from a wrapper was a traceback after it had replaced the device's latest good result, and
    in a fleet it lost the other device's measurement (a fuzzing audit)."""
    import json
    import sys

    from conftest import FAST_BENCH_ARGS
    fake = tmp_path / "fake-python"
    fake.write_text(f'#!/bin/sh\ncase "$1" in *.pyz) echo \'{{"status": "ok"}}\'; exit 0;; esac\n'
                    f'exec {sys.executable} "$@"\n')
    fake.chmod(0o755)
    inventory = tmp_path / "inv.yaml"
    inventory.write_text(f"devices:\n  here: {{connection: local}}\n  odd: {{connection: local, python: {fake}}}\n")
    results_dir = tmp_path / "results"
    common = ["--inventory", inventory, "--results-dir", results_dir, *FAST_BENCH_ARGS]
    assert cli("bench", bundles["fp32"], "--device", "here", *common).exit_code == 0
    good = results_dir / "none-fp32@here.json"
    (results_dir / "none-fp32@odd.json").write_bytes(good.read_bytes().replace(b'"here"', b'"odd"'))
    r = cli("bench", bundles["fp32"], "--device", "odd", *common)
    assert r.exit_code == 3 and "device odd: the agent's result document is not an edgeopt.result/1 document" in \
        r.stderr and "Traceback" not in r.stderr, r.stderr
    assert json.loads((results_dir / "none-fp32@odd.json").read_text())["status"] == "ok"   # kept
    r = cli("fleet", "bench", bundles["fp32"], *common, "--json")
    assert r.exit_code == 3, r.stderr
    statuses = {name: doc["status"] for name, doc in r.json()["documents"].items()}
    assert statuses == {"here": "ok", "odd": "failed"}, r.stdout


def test_an_agent_document_with_odd_text_is_kept_and_a_failure_keeps_the_agents_words(int8_result):
    """The review: a model file name that is not UTF-8 (surrogates in bundle.source.reference) made a real
    measurement a failed result; a failure the agent reported lost its message."""
    import copy

    from edgeopt.transport.base import _as_a_result
    doc = copy.deepcopy({k: v for k, v in int8_result.items() if not k.startswith("_")})
    doc["bundle"].setdefault("source", {})["reference"] = "m\udcff.onnx"
    doc["warnings"] = ["a path \udcff"]
    kept, code = _as_a_result(doc, 0, "pi")
    assert code == 0 and kept["status"] == "ok" and kept["bundle"]["source"]["reference"] == "m\ufffd.onnx"
    failed = {"schema": "edgeopt.result/1", "status": "failed", "device": {"name": "pi"}, "warnings": [5],
              "error": {"message": "bundle refused: its manifest changed", "exit_code": 2, "kind": "bundle"}}
    kept, code = _as_a_result(failed, 2, "pi")
    assert code == 2 and kept["error"]["kind"] == "bundle" and kept["error"]["message"].startswith(
        "bundle refused: its manifest changed; and device pi: the agent's result document: warnings must be")


def test_an_agent_document_nested_near_the_json_readers_limit_is_a_failed_result():
    from edgeopt.transport.base import _as_a_result
    doc = inner = {"schema": "edgeopt.result/1", "status": "ok"}
    for _ in range(3000):   # json.loads reads about this deep; walking it again was a RecursionError traceback
        inner["x"] = {}
        inner = inner["x"]
    failed, code = _as_a_result(doc, 0, "pi")
    assert code == 3 and failed["error"]["message"].startswith("device pi: the agent's result document is nested")


def test_a_device_clock_far_from_this_hosts_is_dated_here_and_said(bundles, tmp_path, monkeypatch):
    """A board without a real-time clock dated its results 2000-01-01 and one 15 years ahead put its result above
    every later run in history (a walkthrough): a result whose time lies outside the run as this host timed it
    is dated by this host's clock, the device's reading kept and said. Here the host's clock reads a day ahead
    of the agent's (the same machine's), as a device a day behind would."""
    import datetime
    from edgeopt.transport import base

    real = base.host_time
    monkeypatch.setattr(base, "host_time", lambda: real() + 86400)
    doc = api.bench(bundles["fp32"], "local", tmp_path / "results", loop=FAST_LOOP)
    created = datetime.datetime.fromisoformat(doc["created"]).timestamp()
    device = datetime.datetime.fromisoformat(doc["device"]["clock_created"]).timestamp()
    assert abs(created - device - 86400) < 120
    assert any(w.startswith("the device's clock read ") and "24.0 h behind this host's: the result is dated by "
               "this host's clock" in w for w in doc["warnings"]), doc["warnings"]
    saved = json.loads(pathlib.Path(doc["_path"]).read_text())
    assert saved["created"] == doc["created"]   # as history and the regression gate read it
    monkeypatch.setattr(base, "host_time", real)   # in step: the agent's own time stays
    again = api.bench(bundles["fp32"], "local", tmp_path / "results", loop=FAST_LOOP)
    assert "clock_created" not in again["device"] and not any("clock" in w for w in again["warnings"])
    # a device two minutes fast, then set right by NTP: its result was dated after the next run's, which history
    # then listed below it and the gate skipped (a clock walkthrough). Dated here, unsaid: within the slack
    monkeypatch.setattr(base, "host_time", lambda: real() - 120)
    fast = api.bench(bundles["fp32"], "local", tmp_path / "results", loop=FAST_LOOP)
    assert "clock_created" in fast["device"] and not any("clock" in w for w in fast["warnings"])
    assert datetime.datetime.fromisoformat(fast["created"]).timestamp() < real() - 100


def test_a_clock_decades_off_says_years():
    from edgeopt.transport.base import _dated_here_if_the_clock_is_off
    doc = {"created": "1970-01-01T00:00:12+00:00", "device": {"name": "pi"}}
    _dated_here_if_the_clock_is_off(doc, 1.7e9, 1.7e9 + 30)
    assert "54 years behind this host's" in doc["warnings"][0] and doc["created"].startswith("2023-11-14")


def test_ctrl_c_while_a_result_is_saved_says_where_it_is(bundles, tmp_path, monkeypatch):
    """A Ctrl-C between a result's history copy and its store row read "interrupted" alone: the result was in
    results/history/ only, unseen by `check results/*.json` and the store (a walkthrough)."""
    from edgeopt.store import Store as RealStore

    def add(self, doc, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(RealStore, "add", add)
    with pytest.raises(KeyboardInterrupt) as stopped:
        api.bench(bundles["fp32"], "local", tmp_path / "results", loop=FAST_LOOP)
    saved = str(stopped.value).split("saved to ", 1)[1].split(",", 1)[0]
    assert pathlib.Path(saved).is_file() and "/history/" in saved, stopped.value
    assert f"`edgeopt history --add {saved}` adds it if not" in str(stopped.value)


def test_another_logins_lock_file_is_taken_for_reading(tmp_path, monkeypatch):
    """A team's shared results folder whose .save.lock another login made (0644): a PermissionError traceback after
    the measurement, and no store row (a walkthrough). flock takes a file open for reading too."""
    from edgeopt import results
    from edgeopt.errors import CannotWrite
    real, refused = open, []

    def another_logins(path, mode="r", *args, **kwargs):
        if pathlib.Path(path).name == results.LOCK_FILE and (mode == "a" or refused):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, mode, *args, **kwargs)
    monkeypatch.setattr(results, "open", another_logins, raising=False)
    (tmp_path / results.LOCK_FILE).touch()
    doc = {"status": "ok", "bundle": {"name": "b"}, "device": {"name": "d"}, "created": "2026-12-08T00:00:00+00:00"}
    assert results.save(dict(doc), tmp_path) == tmp_path / "b@d.json"
    refused.append(True)   # not even for reading: said as the folder's, which the store's row outlives
    with pytest.raises(CannotWrite, match="cannot write the results folder's lock .*: Permission denied"):
        results.save(dict(doc), tmp_path)
