"""Fleets over real OpenSSH devices: parallel runs, every outcome kept, failures isolated, --resume."""
import json
import os
import pathlib
import signal
import shutil
import subprocess
import sys
import time

import pytest

from conftest import FAST_BENCH_ARGS, FAST_LOOP, ctrl_c_works, write_inventory
from edgeopt import api
from edgeopt.progress import Progress
from edgeopt.store import Store
from edgeopt.transport.ssh import SshOptions


def _devices(lab, prefix, start, count, **kwargs):
    """Devices named prefix0.., reused when an earlier test of this module started them."""
    return [lab.devices.get(f"{prefix}{i}") or lab.add(f"{prefix}{i}", start + i, **kwargs) for i in range(count)]


def test_fleet_of_eight_in_parallel(cli, lab, bundles, tmp_path):
    devices = _devices(lab, "node-", 0, 8)
    inv = write_inventory(tmp_path / "fleet.yaml", lab, devices, groups={"lab": [d.name for d in devices[:8]]})
    r = cli("fleet", "bench", bundles["int8"], "--inventory", inv, "--group", "lab", "--parallel", "4",
            "--known-hosts", lab.known_hosts, "--results-dir", tmp_path / "results", *FAST_BENCH_ARGS, "--json")
    assert r.exit_code == 0, r.stderr
    report = r.json()
    assert sorted(report["succeeded"]) == sorted(d.name for d in devices) and report["failed"] == {}
    assert all(doc["accuracy"]["top1"] > 0.95 for doc in report["documents"].values())
    run_dir = pathlib.Path(report["run_dir"])
    assert len(list(run_dir.glob("node-*.json"))) == 8
    rows = Store(f"sqlite:///{tmp_path / 'results' / 'edgeopt.db'}").history()
    assert len(rows) == 8 and {r["status"] for r in rows} == {"ok"}
    r = cli("check", *sorted(run_dir.glob("node-*.json")), "--budget", "latency_p90_ms=1000")
    assert r.exit_code == 0
    r = cli("check", run_dir, "--budget", "latency_p90_ms=0.000001", "--json")  # a run directory: the whole fleet
    assert r.exit_code == 1 and len(r.json()["results"]) == 8
    r = cli("history", "--results-dir", tmp_path / "results", "--device", "node-3", "--json")
    assert [row["device"] for row in r.json()] == ["node-3"]
    # the README's report of the latest results and the run directory: each measurement once, named by its run
    r = cli("report", *(tmp_path / "results").glob("*.json"), run_dir, "--format", "csv", "--no-history")
    rows = r.stdout.strip().splitlines()[1:]
    assert r.exit_code == 0 and len(rows) == 8 and all(f",{report['run_id']}," in row for row in rows), r.stdout


def test_a_fleet_runs_budgets_are_the_ones_check_judges_its_directory_by(cli, lab, bundles, tmp_path):
    """`fleet bench --budget` exited 1 and then `check RUN_DIR` passed the same run (it read the bundle's budgets
    only), so one run directory gave CI two answers. The run records its budgets; --budget still overrides."""
    devices = _devices(lab, "node-", 0, 2)
    inv = write_inventory(tmp_path / "fleet.yaml", lab, devices)
    common = ["--inventory", inv, "--known-hosts", lab.known_hosts, "--results-dir", tmp_path / "results",
              *FAST_BENCH_ARGS, "--json"]
    r = cli("fleet", "bench", bundles["int8"], "--budget", "latency_p90_ms=0.000001", *common)
    assert r.exit_code == 1, r.stderr
    run_dir = pathlib.Path(r.json()["run_dir"])
    assert json.loads((run_dir / "run.json").read_text())["budgets"] == {"latency_p90_ms": 1e-06}
    assert cli("check", run_dir).exit_code == 1
    assert cli("check", run_dir, "--budget", "latency_p90_ms=1000").exit_code == 0
    # a profile's defaults tighten the run's budgets, never loosen them (generic's 50 ms passed this run)
    assert cli("check", run_dir, "--profile", "generic").exit_code == 1
    # under -q, each miss on stderr as `check -q` says it: exit 1 said nothing (a user walkthrough)
    quiet = cli("fleet", "bench", bundles["int8"], "--budget", "latency_p90_ms=0.000001", *common[:-1], "-q")
    assert quiet.exit_code == 1 and quiet.stdout == ""
    assert sorted(line.split(": latency_p90_ms ")[0] for line in quiet.stderr.splitlines()) == [
        f"edgeopt: int8-fp32@{d.name}" for d in devices], quiet.stderr
    refused = cli("fleet", "bench", bundles["int8"], "--budget", "latncy=1", *common)   # before run.json keeps it
    assert refused.exit_code == 2 and "unknown budget 'latncy'" in refused.stderr, refused.stderr
    assert cli("fleet", "bench", bundles["int8"], *common, "--resume").exit_code == 1   # kept on --resume
    assert json.loads((run_dir / "run.json").read_text())["budgets"] == {"latency_p90_ms": 1e-06}


def test_ansible_inventory_used_unchanged_for_a_fleet(cli, lab, bundles, tmp_path):
    devices = _devices(lab, "node-", 0, 3)
    lines = ["[pis]"]
    for d in devices:
        e = lab.inventory_entry(d)
        lines.append(f"{d.name} ansible_host={d.host} ansible_port={d.port} ansible_user={e['user']} "
                     f"ansible_ssh_private_key_file={e['key']} ansible_python_interpreter={e['python']} "
                     f"edgeopt_workdir={e['workdir']}")
    inv = tmp_path / "hosts.ini"
    inv.write_text("\n".join(lines) + "\n")
    r = cli("fleet", "bench", bundles["fp32"], "--inventory", inv, "--group", "pis", "--known-hosts",
            lab.known_hosts, "--results-dir", tmp_path / "results", *FAST_BENCH_ARGS, "--json")
    assert r.exit_code == 0, r.stderr
    report = r.json()
    assert report["succeeded"] == [d.name for d in devices]
    assert all(doc["device"]["python"] for doc in report["documents"].values())


class KillOn(Progress):
    """Kills a device's sshd (listener, sessions, agent) the moment it reaches a given phase."""

    def __init__(self, plan):
        self.plan, self.states = plan, {}

    def device_state(self, device, state, detail=""):
        self.states.setdefault(device, []).append(state)
        target = self.plan.get(device)
        if target and state == target[0]:
            target[1].kill()


def test_failures_are_isolated_and_reported_with_reasons(cli, lab, bundles, tmp_path):
    ok = _devices(lab, "ok-", 20, 2)
    up, mid = lab.add("dies-uploading", 30), lab.add("dies-measuring", 31)
    noauth, unknown = lab.add("no-auth", 32, authorized=False), lab.add("unknown-key", 33, known=False)
    devices = ok + [up, mid, noauth, unknown]
    inv = write_inventory(tmp_path / "fleet.yaml", lab, devices)
    progress = KillOn({up.name: ("uploading bundle", up), mid.name: ("warm-up", mid)})
    loop = dict(FAST_LOOP, min_seconds=1.0)
    started = time.monotonic()
    report = api.fleet_bench(bundles["int8"], inv, parallel=6, results_dir=tmp_path / "results", loop=loop,
                             ssh_options=SshOptions(known_hosts=str(lab.known_hosts)), progress=progress)
    assert time.monotonic() - started < 60
    assert sorted(report["succeeded"]) == ["ok-0", "ok-1"]
    failed = report["failed"]
    assert set(failed) == {up.name, mid.name, noauth.name, unknown.name}
    assert "connection lost during the bundle upload" in failed[up.name]
    assert "connection lost during the agent run" in failed[mid.name]
    assert "authentication refused" in failed[noauth.name]
    assert "is unknown" in failed[unknown.name]
    for name in failed:  # every failure is stored like a result, with its reason
        saved = json.loads((pathlib.Path(report["run_dir"]) / f"{name}.json").read_text())
        assert saved["status"] == "failed" and saved["error"]["message"] == failed[name]
    assert report["check"]["check"]["exit_code"] == 3
    r = cli("check", report["run_dir"])
    assert r.exit_code == 3 and r.stdout.count("DEVICE FAILED") == 4
    assert sorted(p.stem for p in pathlib.Path(report["run_dir"]).glob("*.json") if p.stem != "run") == sorted(
        d.name for d in devices)


def test_a_bundle_the_device_refuses_is_saved_under_its_name_and_a_good_run_replaces_it(cli, lab, bundles, tmp_path):
    dev = _devices(lab, "ok-", 20, 1)[0]
    inv = write_inventory(tmp_path / "fleet.yaml", lab, [dev])
    results = tmp_path / "results"
    fleet = ("fleet", "bench", bundles["fp32"], "--inventory", inv, "--known-hosts", lab.known_hosts,
             "--results-dir", results, *FAST_BENCH_ARGS)
    r = cli(*fleet, "--allowed-signers", tmp_path / "no-such-signers", "-q")
    assert r.exit_code == 3 and r.stderr.startswith(f"edgeopt: device {dev.name}: "), r.stderr
    latest = sorted(p.name for p in results.glob("*.json"))
    assert len(latest) == 1 and latest[0].endswith(f"@{dev.name}.json") and "unknown-bundle" not in latest[0]
    # a --resume measures the rest of the run alike: other settings are refused, naming what the run began with
    other = cli(*fleet, "--resume", "--min-seconds", "0.2")
    assert other.exit_code == 2 and "was measured with" in other.stderr and "--allowed-signers" in other.stderr
    assert len(list((results / "fleet").glob("*/*"))) == 1   # no second run directory
    assert cli(*fleet, "--allowed-signers", tmp_path / "no-such-signers", "--resume").exit_code == 3   # same: runs
    assert cli(*fleet).exit_code == 0
    assert cli("check", *results.glob("*.json"), "--budget", "latency_p90_ms=1000").exit_code == 0   # replaced


def test_an_inventory_defect_is_bad_input_before_any_device_is_reached(cli, lab, bundles, tmp_path, monkeypatch):
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)   # with an agent, an unreadable key file is passed over
    dev = _devices(lab, "ok-", 20, 1)[0]
    public = f"{lab.client_key}.pub"
    if not pathlib.Path(public).is_file():
        public = str(tmp_path / "id.pub")
        pathlib.Path(public).write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB user@host\n")
    junk = tmp_path / "junk_key"   # was a device failure, exit 3, per device (a user walkthrough)
    junk.write_text("not a key\n")
    shared = tmp_path / "shared_key"   # readable by others: ssh refuses it, edgeopt used it (a security review)
    shutil.copyfile(lab.client_key, shared)
    shared.chmod(0o644)
    inv = tmp_path / "fleet.yaml"   # each error names the device, the inventory file and the field
    named = f"device {dev.name} (inventory {inv}): field"
    for field, value, said in (("profile", "raspbery-pi-5", f"{named} `profile`: unknown profile"),
                               ("key", str(tmp_path / "no-key"), f"{named} `key`: no such file"),
                               ("key", public, f"{named} `key`: {public} is a public key"),
                               ("key", str(junk), f"{named} `key`: {junk} is no private key edgeopt can use: paramiko"),
                               ("key", str(shared), f"{named} `key`: {shared} is readable by others (mode 0644)")):
        write_inventory(inv, lab, [dev], **{dev.name: {field: value}})
        r = cli("fleet", "bench", bundles["fp32"], "--inventory", inv, "--known-hosts", lab.known_hosts,
                "--results-dir", tmp_path / "results", *FAST_BENCH_ARGS)
        assert r.exit_code == 2 and said in r.stderr, r.stderr
        assert not (tmp_path / "results" / "fleet").exists()
        single = cli("bench", bundles["fp32"], "-d", dev.name, "--inventory", inv, "--known-hosts", lab.known_hosts,
                     "--results-dir", tmp_path / "results", *FAST_BENCH_ARGS)
        assert single.exit_code == 2 and said in single.stderr, single.stderr


def test_host_killed_mid_fleet_then_resume_completes_the_rest(cli, lab, bundles, tmp_path):
    devices = _devices(lab, "node-", 0, 4)
    inv = write_inventory(tmp_path / "fleet.yaml", lab, devices)
    args = ["fleet", "bench", str(bundles["fp32"]), "--inventory", str(inv), "--parallel", "1", "--known-hosts",
            str(lab.known_hosts), "--results-dir", str(tmp_path / "results"), "--min-iterations", "50",
            "--min-seconds", "1.5", "--warmup-seconds", "0", "--quiet"]
    host = subprocess.Popen([sys.executable, "-m", "edgeopt", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    fleet_dir = tmp_path / "results" / "fleet"

    def reported():   # every device has a placeholder (a failed result) from the start: its own replaces it
        return sorted(p.stem for p in fleet_dir.glob("*/*/node-*.json") if json.loads(p.read_text())["status"] == "ok")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(reported()) < 2:
        time.sleep(0.1)
    host.send_signal(signal.SIGKILL)
    host.wait()
    kept = reported()
    assert 2 <= len(kept) < 4
    run_dir = next(fleet_dir.glob("*/*"))   # the run killed part-way is no pass: the devices left read as failed
    r = cli("check", run_dir, "--json")
    left = [e for e in r.json()["results"] if e["status"] != "ok"]
    assert r.exit_code == 3 and len(left) == 4 - len(kept) and all(
        "the run was interrupted or killed before this device reported" in e["error"] for e in left), r.stdout
    r = cli(*args[:-1], "--resume", "--json")   # the settings the run began with (others are refused)
    assert r.exit_code == 0, r.stderr
    report = r.json()
    assert sorted(report["skipped"]) == kept and sorted(report["succeeded"]) == [d.name for d in devices]
    assert len(list(fleet_dir.glob("*/*/node-*.json"))) == 4 and len(list(fleet_dir.glob("*/*"))) == 1  # resumed in place


def _interrupt(host, sent, again: float | None = None) -> tuple:
    """(stderr, seconds to exit) of a fleet process sent `sent` (and once more `again` seconds later, as `timeout`
    and a double Ctrl-C send it); killed after 30 s."""
    started = time.monotonic()
    host.send_signal(sent)
    if again is not None:
        time.sleep(again)
        host.send_signal(sent)
    try:
        _, err = host.communicate(timeout=30)
    finally:
        host.kill()
    return err, time.monotonic() - started


@pytest.mark.parametrize("sent, code, said", [(signal.SIGINT, 130, "interrupted"),
                                               (signal.SIGTERM, 143, "terminated (SIGTERM)")])
def test_ctrl_c_lets_the_measuring_devices_go_at_once(lab, bundles, tmp_path, sent, code, said):
    """A fleet measuring for 60 s is interrupted: it exits 130 within seconds, not when the measurements would end,
    and the agents on the devices stop too. SIGTERM (a cancelled CI job) likewise, with 143: it killed the
    process without a word."""
    import psutil
    devices = _devices(lab, "node-", 0, 2)
    inv = write_inventory(tmp_path / "fleet.yaml", lab, devices)
    with ctrl_c_works():
        host = subprocess.Popen([sys.executable, "-m", "edgeopt", "fleet", "bench", str(bundles["fp32"]), "-i",
                                 str(inv), "--known-hosts", str(lab.known_hosts), "--results-dir",
                                 str(tmp_path / "results"), "--min-seconds", "60", "--max-seconds", "60",
                                 "--max-iterations", "1000000000", "--warmup-seconds", "0", "-q"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    runs = [pathlib.Path(lab.inventory_entry(d)["workdir"]) / "runs" for d in devices]
    before = {p for r in runs for p in r.glob("edgeopt-run-*")}   # left by the test that killed the host
    deadline = time.monotonic() + 120
    while not all(set(r.glob("edgeopt-run-*")) - before for r in runs):   # both agents started
        assert time.monotonic() < deadline and host.poll() is None, host.communicate()
        time.sleep(0.1)
    time.sleep(2.0)   # and in their timed loops
    err, seconds = _interrupt(host, sent)
    assert host.returncode == code and f"edgeopt: {said}: " in err, (host.returncode, err)
    assert "0 of 2 devices reported; the others read as no result in " in err and "--resume" in err, err
    assert seconds < 10
    agents = lambda: [p for p in psutil.process_iter(["cmdline"])
                      if any(str(r.parent) in part for part in (p.info["cmdline"] or []) for r in runs)
                      and "sshd" not in " ".join(p.info["cmdline"] or [])]
    deadline = time.monotonic() + 15
    while agents() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not agents(), "the devices' agents stopped with the connections"


@pytest.mark.parametrize("sent, code, again", [(signal.SIGINT, 130, None), (signal.SIGTERM, 143, None),
                                               (signal.SIGINT, 130, 0.05), (signal.SIGHUP, 129, None)])
def test_ctrl_c_stops_the_agents_of_local_devices_too(bundles, tmp_path, sent, code, again):
    """`local` devices had no connection to close: after Ctrl-C or SIGTERM their agents measured on, one after
    another (they share one lock), for results then thrown away, and the exit waited for them (a review: 18 s).
    SIGHUP (the terminal closed) killed the run without a word or its --resume line (a walkthrough)."""
    import psutil
    inv = tmp_path / "inv.yaml"
    inv.write_text("devices:\n  a: {connection: local}\n  b: {connection: local}\n  c: {connection: local}\n")
    with ctrl_c_works():
        host = subprocess.Popen([sys.executable, "-m", "edgeopt", "fleet", "bench", str(bundles["fp32"]), "-i",
                                 str(inv), "--results-dir", str(tmp_path / "results"), "--min-seconds", "60",
                                 "--max-seconds", "60", "--max-iterations", "1000000000", "--warmup-seconds", "0",
                                 "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    parent = psutil.Process(host.pid)
    deadline = time.monotonic() + 120
    while len(parent.children(recursive=True)) < 2:   # one agent measuring (the others queue: one machine), its child
        assert time.monotonic() < deadline and host.poll() is None, host.communicate()
        time.sleep(0.1)
    time.sleep(2.0)
    agents = parent.children(recursive=True)
    err, seconds = _interrupt(host, sent, again)   # twice: a second signal in the let-go lost the line below
    # a second signal after the run has let go, as the process exits, ends it by that signal: a shell reads 130 too
    exited = (code, -sent) if again else (code,)
    assert host.returncode in exited and "0 of 3 devices reported" in err, (host.returncode, err)
    assert seconds < 10
    _, alive = psutil.wait_procs(agents, timeout=5)
    assert not alive, [p.cmdline() for p in alive]


def test_devices_of_one_machine_are_measured_one_after_another_each_timed_from_its_start(cli, bundles, tmp_path):
    """Three `local` entries queued on the one lock while each one's --timeout ran from the start (rc 3, "agent did
    not finish within 12 s" of one that waited 10 s); two entries of one SSH host were measured at once, each
    reading the other's load (a walkthrough). One machine's devices go one after another, each timed alone."""
    inv = tmp_path / "inv.yaml"
    inv.write_text("devices:\n  a: {connection: local}\n  b: {connection: local}\n  c: {connection: local}\n")
    r = cli("fleet", "bench", bundles["fp32"], "-i", inv, "--results-dir", tmp_path / "results", "--min-seconds",
            "3", "--max-seconds", "3", "--max-iterations", "1000000000", "--warmup-seconds", "0", "--timeout", "10",
            "--json")
    assert r.exit_code == 0, r.stderr
    seconds = [d["fleet"]["seconds"] for d in r.json()["documents"].values()]
    assert len(seconds) == 3 and all(s < 10 for s in seconds), seconds   # each its own time, none the wait
    from edgeopt.fleet import _machine
    from edgeopt.inventory import make_device
    one = [make_device(n, {"host": "pi.lan", "port": p}, "x") for n, p in (("v1", None), ("v2", 22), ("v3", 2222))]
    assert _machine(one[0]) == _machine(one[1]) != _machine(one[2])
    assert json.dumps(_machine(make_device("l", {"connection": "local"}, "x"))) == '["local"]'


def test_sighup_of_a_run_whose_terminal_closed_exits_129(bundles, tmp_path):
    """A closed terminal (SIGHUP) exited 1 with a traceback: stopping rich's live view wrote to the gone terminal,
    EIO (a review). A fleet on a pseudo-terminal whose other end closes, then SIGHUP: 129."""
    import pty
    import select
    inv = tmp_path / "inv.yaml"
    inv.write_text("devices:\n  a: {connection: local}\n  b: {connection: local}\n")
    terminal, its_end = pty.openpty()
    host = subprocess.Popen([sys.executable, "-m", "edgeopt", "fleet", "bench", str(bundles["fp32"]), "-i", str(inv),
                             "--results-dir", str(tmp_path / "results"), "--min-seconds", "30", "--max-seconds", "30",
                             "--max-iterations", "1000000000", "--warmup-seconds", "0"],
                            stdin=its_end, stdout=its_end, stderr=its_end, start_new_session=True,
                            env=dict(os.environ, COLUMNS="120", TERM="xterm"))
    os.close(its_end)
    shown, deadline = b"", time.monotonic() + 60
    while b"measur" not in shown and time.monotonic() < deadline:   # the live view is up and a device measures
        if select.select([terminal], [], [], 0.5)[0]:
            try:
                shown += os.read(terminal, 65536)
            except OSError:
                break
    time.sleep(1.0)
    os.close(terminal)   # the terminal goes away
    host.send_signal(signal.SIGHUP)
    assert host.wait(timeout=60) == 129


def test_resume_adds_the_store_row_a_killed_run_left_out(cli, bundles, tmp_path):
    """A run killed between a device's result file and its store row (a busy store, then SIGTERM): --resume kept
    the device as done and never stored it, so history lacked it for good (a review). The row is added."""
    import sqlite3
    inv = tmp_path / "inv.yaml"
    inv.write_text("devices:\n  a: {connection: local}\n  b: {connection: local}\n")
    args = ("fleet", "bench", bundles["fp32"], "-i", inv, "--results-dir", tmp_path / "results", *FAST_BENCH_ARGS)
    first = cli(*args, "--json")
    assert first.exit_code == 0, first.stderr
    with sqlite3.connect(tmp_path / "results" / "edgeopt.db") as db:   # b failed at first, then its ok row was lost
        db.execute("UPDATE results SET status = 'failed' WHERE device = 'b'")
    again = cli(*args, "--resume", "--json")
    assert again.exit_code == 0 and sorted(again.json()["skipped"]) == ["a", "b"], again.stderr
    rows = cli("history", "--results-dir", tmp_path / "results", "--json").json()
    assert sorted((r["device"], r["status"]) for r in rows) == [("a", "ok"), ("b", "failed"), ("b", "ok")], rows
    third = cli(*args, "--resume", "--json")   # added once, not on every --resume
    assert third.exit_code == 0
    assert len(cli("history", "--results-dir", tmp_path / "results", "--json").json()) == 3


def test_ctrl_c_lets_a_device_still_connecting_go_at_once(lab, bundles, tmp_path):
    """A device whose sshd accepts the connection and says nothing (stopped, overloaded): Ctrl-C waited out
    --connect-timeout for it, 20 s here, before the run exited (a user walkthrough)."""
    dev = lab.add("stalled", 40)
    inv = write_inventory(tmp_path / "fleet.yaml", lab, [dev])
    os.kill(dev.proc.pid, signal.SIGSTOP)   # the kernel still accepts its connections
    try:
        with ctrl_c_works():
            host = subprocess.Popen([sys.executable, "-m", "edgeopt", "fleet", "bench", str(bundles["fp32"]), "-i",
                                     str(inv), "--known-hosts", str(lab.known_hosts), "--results-dir",
                                     str(tmp_path / "results"), "--connect-timeout", "20", "-q"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not list((tmp_path / "results" / "fleet").glob("*/*/stalled.json")):   # the run has begun
            assert time.monotonic() < deadline and host.poll() is None, host.communicate()
            time.sleep(0.1)
        time.sleep(2.0)   # and is waiting for the banner
        started = time.monotonic()
        host.send_signal(signal.SIGINT)
        try:
            _, err = host.communicate(timeout=30)
        finally:
            host.kill()
        assert host.returncode == 130 and "0 of 1 devices reported" in err, (host.returncode, err)
        assert time.monotonic() - started < 8
    finally:
        os.kill(dev.proc.pid, signal.SIGCONT)


def test_two_fleets_at_once_on_one_bundle_lose_nothing(lab, bundles, tmp_path):
    import threading
    devices = _devices(lab, "node-", 0, 3)
    inv = write_inventory(tmp_path / "fleet.yaml", lab, devices)
    options = SshOptions(known_hosts=str(lab.known_hosts))
    reports = []  # both open a store that does not exist yet: its first opens are serialized

    def one_fleet():
        reports.append(api.fleet_bench(bundles["fp32"], inv, parallel=3, results_dir=tmp_path / "results",
                                       loop=FAST_LOOP, ssh_options=options))

    fleets = [threading.Thread(target=one_fleet) for _ in range(2)]
    for t in fleets:
        t.start()
    for t in fleets:
        t.join()
    assert len(reports) == 2 and reports[0]["run_dir"] != reports[1]["run_dir"]
    for report in reports:
        assert sorted(report["succeeded"]) == sorted(d.name for d in devices)
        assert len(list(pathlib.Path(report["run_dir"]).glob("node-*.json"))) == 3
    assert len(list((tmp_path / "results" / "history").iterdir())) == 6
    rows = Store(f"sqlite:///{tmp_path / 'results' / 'edgeopt.db'}").history()
    assert len(rows) == 6 and len({r["run_id"] for r in rows}) == 2


def test_a_store_that_fails_mid_fleet_loses_no_result(bundles, tmp_path):
    import sqlite3
    from edgeopt import fleet
    from edgeopt.inventory import DeviceSpec
    from edgeopt.transport import for_spec
    db = tmp_path / "results" / "edgeopt.db"
    devices = [DeviceSpec(name=f"bench-{i}", host="localhost", connection="local") for i in range(3)]

    def transport_for(spec):
        if spec.name == "bench-1":  # the store breaks while the fleet runs (a DBA dropped the table)
            with sqlite3.connect(db) as conn:
                conn.execute("DROP TABLE results")
        return for_spec(spec)

    report = fleet.bench(bundles["fp32"], devices, transport_for, tmp_path / "results", f"sqlite:///{db}",
                         parallel=1, agent_args=["--min-iterations", "20", "--min-seconds", "0"])
    assert sorted(report["succeeded"]) == ["bench-0", "bench-1", "bench-2"]
    # bench-0's row may or may not land before the table goes (the pool starts bench-1 as bench-0 ends)
    assert len(report["store_errors"]) in (2, 3) and all("cannot store the result" in e for e in report["store_errors"])
    assert len(list(pathlib.Path(report["run_dir"]).glob("bench-*.json"))) == 3


def test_resume_measures_again_a_kept_result_that_no_longer_reads(cli, bundles, tmp_path):
    """A user review: a kept result edited by hand (p90 "fast") was skipped, the others measured again, and then
    the run refused it; every later --resume did the same. A kept file that does not read is measured again."""
    inv = tmp_path / "inv.yaml"
    inv.write_text("devices:\n  a: {connection: local}\n  b: {connection: local}\n")
    args = ("fleet", "bench", bundles["fp32"], "-i", inv, "--results-dir", tmp_path / "results", *FAST_BENCH_ARGS)
    first = cli(*args, "--json")
    assert first.exit_code == 0, first.stderr
    damaged = pathlib.Path(first.json()["paths"]["b"])
    doc = json.loads(damaged.read_text())
    doc["latency"]["p90_ms"] = "fast"
    damaged.write_text(json.dumps(doc))
    again = cli(*args, "--resume", "--json")
    assert again.exit_code == 0, again.stderr
    assert again.json()["skipped"] == ["a"] and again.json()["succeeded"] == ["a", "b"]
    assert isinstance(json.loads(damaged.read_text())["latency"]["p90_ms"], float)


def test_resume_of_an_older_run_file_says_its_settings_are_unknown_and_claims_none(cli, bundles, tmp_path):
    """An upgrade walkthrough: a run file of an older edgeopt records no agent_args; a --resume with --threads 1
    measured the rest at 1 thread beside kept results at 2 without a word, wrote that the whole run was at 1, and a
    later --resume with the run's own settings was refused as "measured with --threads 1"."""
    inv = tmp_path / "inv.yaml"
    inv.write_text("devices:\n  a: {connection: local}\n  b: {connection: local}\n")
    args = ("fleet", "bench", bundles["fp32"], "-i", inv, "--results-dir", tmp_path / "results", *FAST_BENCH_ARGS)
    first = cli(*args, "--json")
    assert first.exit_code == 0, first.stderr
    pathlib.Path(first.json()["paths"]["b"]).unlink()
    run_file = pathlib.Path(first.json()["run_dir"]) / "run.json"
    older = {k: v for k, v in json.loads(run_file.read_text()).items() if k not in ("agent_args", "devices")}
    run_file.write_text(json.dumps(older))
    checked = cli("check", run_file.parent, "--budget", "latency_p90_ms=1000")   # b's loss cannot be told
    assert checked.exit_code == 0 and "was written by an older edgeopt and lists no devices" in checked.stdout, \
        checked.stdout
    resumed = cli(*args, "--threads", "1", "--resume")
    assert resumed.exit_code == 0 and "was begun by an older edgeopt" in resumed.stdout, resumed.stdout
    assert "agent_args" not in json.loads(run_file.read_text())
    pathlib.Path(first.json()["paths"]["a"]).unlink()
    again = cli(*args, "--resume", "-q")   # the run's own settings: not refused by a claim the resume made
    assert again.exit_code == 0 and "edgeopt: warning: fleet run " in again.stderr and \
        "was begun by an older edgeopt" in again.stderr, again.stderr   # --quiet keeps it (a review)


def test_resume_continues_the_run_left_unfinished_not_a_newer_finished_one(cli, bundles, tmp_path):
    """A run killed by SIGTERM, then another job's complete run of the bundle: --resume continued the newer one
    ("kept", measuring nothing), and the killed run could not be resumed at all (a walkthrough)."""
    inv = tmp_path / "inv.yaml"
    inv.write_text("devices:\n  a: {connection: local}\n  b: {connection: local}\n")
    args = ("fleet", "bench", bundles["fp32"], "-i", inv, "--results-dir", tmp_path / "results", *FAST_BENCH_ARGS)
    killed = cli(*args, "--json").json()
    unfinished = json.loads(pathlib.Path(killed["paths"]["b"]).read_text())   # as a killed run leaves it
    unfinished.update(status="failed", error={"message": f"no result yet in fleet run {killed['run_id']}: the run "
                                              "was interrupted", "exit_code": 3, "kind": "device"})
    pathlib.Path(killed["paths"]["b"]).write_text(json.dumps(unfinished))
    newer = cli(*args, "--json").json()
    assert newer["run_dir"] != killed["run_dir"]
    resumed = cli(*args, "--resume", "--json")
    assert resumed.exit_code == 0, resumed.stderr
    assert resumed.json()["run_dir"] == killed["run_dir"] and resumed.json()["skipped"] == ["a"]
    again = cli(*args, "--resume", "--json")   # nothing left anywhere: the newest, all kept
    assert again.json()["run_dir"] == newer["run_dir"] and sorted(again.json()["skipped"]) == ["a", "b"]
    # a run whose device failed (it reported) is no interrupted one: an older such run of another device set
    # was preferred, and refused the command for its devices (a review)
    failed = json.loads(pathlib.Path(newer["paths"]["b"]).read_text())
    failed.update(status="failed", error={"message": "device b: agent did not finish within 10 s", "exit_code": 3,
                                          "kind": "device"})
    pathlib.Path(newer["paths"]["b"]).write_text(json.dumps(failed))
    only_a = tmp_path / "only_a.yaml"
    only_a.write_text("devices:\n  a: {connection: local}\n")
    latest = cli("fleet", "bench", bundles["fp32"], "-i", only_a, "--results-dir", tmp_path / "results",
                 *FAST_BENCH_ARGS, "--json").json()
    resumed = cli("fleet", "bench", bundles["fp32"], "-i", only_a, "--results-dir", tmp_path / "results",
                  *FAST_BENCH_ARGS, "--resume", "--json")
    assert resumed.exit_code == 0 and resumed.json()["run_dir"] == latest["run_dir"], resumed.stderr


def test_resume_continues_a_run_with_its_own_devices_only(cli, bundles, tmp_path):
    """A run resumed with a smaller group measured that group, showed only it and exited 0, while `check RUN_DIR`
    failed the devices left without a result. And a --resume with no run to continue said nothing of it."""
    inv = tmp_path / "inv.yaml"
    inv.write_text("devices:\n  a: {connection: local}\n  b: {connection: local}\ngroups:\n  just-a: [a]\n")
    args = ("fleet", "bench", bundles["fp32"], "-i", inv, "--results-dir", tmp_path / "results", *FAST_BENCH_ARGS)
    first = cli(*args, "--resume")
    assert first.exit_code == 0, first.stderr
    assert "--resume: no earlier run of this bundle" in first.stderr and "a new run" in first.stderr
    run_dir = next((tmp_path / "results" / "fleet").glob("*/*"))
    assert json.loads((run_dir / "run.json").read_text())["devices"] == ["a", "b"]
    smaller = cli(*args, "-g", "just-a", "--resume")
    assert smaller.exit_code == 2 and f"fleet run {run_dir} measures a, b, and --resume continues it with the " \
        "same devices (this command: a; b left out)" in smaller.stderr, smaller.stderr
    assert cli(*args, "--resume", "--json").json()["skipped"] == ["a", "b"]   # the same devices: resumed
    run_file = run_dir / "run.json"   # damaged by hand: a TypeError traceback, exit 1 (a fuzzing audit)
    good = json.loads(run_file.read_text())
    for key, value in (("devices", [1]), ("devices", [["a"]]), ("agent_args", [1, 2]), ("devices", "a")):
        run_file.write_text(json.dumps(dict(good, **{key: value})))
        r = cli(*args, "--resume")
        assert r.exit_code == 2 and f"{run_file}: {key} is " in r.stderr and "start a new run" in r.stderr, r.stderr
    run_file.write_text("[" * 100000 + "]" * 100000)   # nested past JSON's reader: not this bundle's run
    r = cli(*args, "--resume", "--budget", "latency_p90_ms=1000")
    assert r.exit_code == 0 and "--resume: no earlier run of this bundle" in r.stderr, r.stderr


def test_resume_without_the_budgets_keeps_the_runs_fps_pass(cli, bundles, tmp_path):
    """`fleet bench --budget throughput_fps=N` asks each device for the FPS pass; its --resume without --budget
    was refused ("measured with other settings"): the run's budgets were read after the agent's flags were built."""
    inv = tmp_path / "inv.yaml"
    inv.write_text("devices:\n  a: {connection: local}\n  b: {connection: local}\n")
    args = ("fleet", "bench", bundles["fp32"], "-i", inv, "--results-dir", tmp_path / "results", *FAST_BENCH_ARGS)
    first = cli(*args, "--budget", "throughput_fps=1", "--json")
    assert first.exit_code == 0, first.stderr
    damaged = pathlib.Path(first.json()["paths"]["b"])
    damaged.unlink()   # b's result lost: the resume measures b again, with the FPS pass the run began with
    again = cli(*args, "--resume", "--json")
    assert again.exit_code == 0, again.stderr
    assert again.json()["skipped"] == ["a"] and json.loads(damaged.read_text())["throughput"]["fps"] > 0
    # with other budgets, a --resume is refused: it replaced the run's without a word (a failed gate then passed)
    other = cli(*args, "--resume", "--budget", "throughput_fps=0.5")
    run_dir = damaged.parent
    assert other.exit_code == 2 and f"fleet run {run_dir} was judged by --budget throughput_fps=1; --resume keeps " \
        "them" in other.stderr, other.stderr
    assert json.loads((run_dir / "run.json").read_text())["budgets"] == {"throughput_fps": 1}
    assert cli(*args, "--resume", "--budget", "throughput_fps=1", "--json").exit_code == 0   # the same: resumed


def test_signals_are_held_while_a_stopping_run_lets_its_devices_go():
    """A second Ctrl-C (or `timeout`'s signal to the process group) inside the let-go replaced the interruption
    that carries the --resume line: while held it is ignored, and the handlers are back after. In a process of its
    own: signals sent to the test runner, loaded with native runtimes, crashed it."""
    code = ("import os, signal, time\n"
            "from edgeopt.signals import signals_held\n"
            "before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)\n"
            "with signals_held():\n"
            "    os.kill(os.getpid(), signal.SIGINT)\n"
            "    os.kill(os.getpid(), signal.SIGTERM)\n"
            "    time.sleep(0.05)\n"   # the handlers run between bytecodes: had they raised, it would be here
            "assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before\n"
            "print('held')\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout == "held\n", p.stderr


def test_a_power_commands_secret_is_kept_out_of_the_run_file_and_the_resume_refusal(cli, bundles, tmp_path):
    """run.json kept the whole --power-command (a meter's bearer token), and a --resume given another one printed
    both in full (a security review). The run keeps its program and a salted digest, which still tells them apart."""
    inv = tmp_path / "inv.yaml"
    inv.write_text("devices:\n  a: {connection: local}\n")
    args = ("fleet", "bench", bundles["fp32"], "-i", inv, "--results-dir", tmp_path / "results", *FAST_BENCH_ARGS)
    meter = "TOKEN='Bearer SECRET-1' sh -c 'echo 2.5'"
    r = cli(*args, "--power-command", meter, "--json")
    assert r.exit_code == 0, r.stderr
    run_file = next((tmp_path / "results" / "fleet").glob("*/*/run.json"))
    assert "SECRET" not in run_file.read_text() and "`sh` ..." in run_file.read_text()
    other = cli(*args, "--power-command", meter.replace("SECRET-1", "SECRET-2"), "--resume")
    assert other.exit_code == 2 and "--resume measures the rest alike" in other.stderr, other.stderr
    assert "SECRET" not in other.stderr + other.stdout
    assert cli(*args, "--power-command", meter, "--resume", "--json").exit_code == 0   # the same: resumed
