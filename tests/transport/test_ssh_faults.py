"""SSH faults leave one line and nothing behind (issue 11): a silent peer, sshd killed mid-upload,
a host that gives up mid-upload, a device killed mid-bench; fleets at once and colliding names."""
import json
import os
import pathlib
import socket
import threading
import time

import pytest
import yaml

from conftest import FAST_BENCH_ARGS, FAST_LOOP, write_inventory
from edgeopt import api
from edgeopt.errors import DeviceFailure
from edgeopt.inventory import make_device
from edgeopt.progress import Progress
from edgeopt.transport.ssh import SshOptions, SshTransport


class SilentPeer:
    """Accepts TCP connections and never says a word: a hung device, or a port that is not SSH."""

    def __init__(self, host="127.0.9.9"):
        self.sock = socket.socket()
        self.sock.bind((host, 0))
        self.sock.listen(8)
        self.host, self.port = self.sock.getsockname()
        self.accepted = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                self.accepted.append(self.sock.accept()[0])
            except OSError:  # closed by close()
                return

    def close(self):
        self.sock.close()
        for c in self.accepted:
            c.close()


def test_silent_peer_is_one_line_within_the_connect_timeout(cli, bundles, tmp_path, capfd):
    peer = SilentPeer()
    try:
        spec = make_device("mute", {"host": peer.host, "port": peer.port, "user": "x"}, "test")
        started = time.monotonic()
        with pytest.raises(DeviceFailure) as raised:
            SshTransport(spec, SshOptions(known_hosts=str(tmp_path / "kh"), connect_timeout=2)).connect()
        took = time.monotonic() - started
        assert took <= 2 + 2, took   # the 2 s connect timeout, far below paramiko's 15 s banner wait
        assert str(raised.value) == (f"device mute: x@{peer.host}:{peer.port} accepted the connection but sent no "
                                     "SSH banner within 2 s (not an SSH server, or the device is hung)")
        assert capfd.readouterr().err == ""  # nothing from paramiko's transport thread
        inv = tmp_path / "inv.yaml"
        inv.write_text(f"devices:\n  mute: {{host: {peer.host}, port: {peer.port}, user: x}}\n")
        r = cli("bench", bundles["fp32"], "--device", "mute", "--inventory", inv, "--connect-timeout", "1",
                "--known-hosts", tmp_path / "kh", "--results-dir", tmp_path / "results", "--quiet")
        assert r.exit_code == 3
        lines = [line for line in (r.stderr + capfd.readouterr().err).splitlines() if line.strip()]
        assert len(lines) == 1 and "sent no SSH banner within 1 s" in lines[0], lines
        assert "No existing session" not in lines[0] and "Traceback" not in lines[0]
    finally:
        peer.close()


def test_a_peer_that_closes_without_a_banner_is_said_at_once(tmp_path):
    """A web server on the device's port answered and closed at once; the message said "no SSH banner within 10 s
    (not an SSH server, or the device is hung)" 1.5 s later (a walkthrough)."""
    import http.server
    import threading
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        spec = make_device("web", {"host": "127.0.0.1", "port": server.server_port, "user": "x"}, "test")
        with pytest.raises(DeviceFailure) as raised:
            SshTransport(spec, SshOptions(known_hosts=str(tmp_path / "kh"), connect_timeout=5)).connect()
        assert str(raised.value) == (f"device web: x@127.0.0.1:{server.server_port} accepted the connection and "
                                     "closed it without an SSH banner (not an SSH server: the wrong port?)")
    finally:
        server.shutdown()
        server.server_close()


def _partials(device_dir: pathlib.Path):
    return sorted(p.name for p in device_dir.rglob("*.partial"))


class Hook(Progress):
    """Calls `action` once, when the upload has sent its first block."""

    def __init__(self, action):
        self.action, self.fired = action, False

    def advance(self, n=1):
        if not self.fired:
            self.fired = True
            self.action()


def _big_file(path: pathlib.Path, mb: int) -> pathlib.Path:
    with open(path, "wb") as f:
        for _ in range(mb):
            f.write(os.urandom(1 << 20))
    return path


def _transport(lab, dev, workdir):
    entry = lab.inventory_entry(dev, workdir=str(workdir))
    spec = make_device(dev.name, {"host": dev.host, "port": dev.port, "user": entry["user"], "key": entry["key"],
                                  "python": entry["python"], "workdir": entry["workdir"]}, "test")
    return SshTransport(spec, SshOptions(known_hosts=str(lab.known_hosts), connect_timeout=5, dead_peer_timeout=3))


class HangingExec:
    """An SSH server that lets anyone log in and never answers a command's exec request: an sshd whose session
    setup hangs on the device (a PAM module, a full disk)."""

    def __init__(self, tmp_path, host="127.0.9.10"):
        import paramiko
        self.key = paramiko.Ed25519Key.from_private_key_file(str(_keygen(tmp_path / "hostkey")))
        self.sock = socket.socket()
        self.sock.bind((host, 0))
        self.sock.listen(4)
        self.host, self.port = self.sock.getsockname()
        self.release = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        import paramiko
        server = self

        class Hang(paramiko.ServerInterface):
            def get_allowed_auths(self, username):
                return "publickey"

            def check_auth_publickey(self, username, key):
                return paramiko.AUTH_SUCCESSFUL

            def check_channel_request(self, kind, chanid):
                return paramiko.OPEN_SUCCEEDED

            def check_channel_exec_request(self, channel, command):
                server.release.wait(120)
                return False

        while True:
            try:
                conn = self.sock.accept()[0]
            except OSError:
                return
            transport = paramiko.Transport(conn)
            transport.add_server_key(self.key)
            transport.start_server(server=Hang())

    def close(self):
        self.release.set()
        self.sock.close()


def _keygen(path):
    import subprocess
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


def test_a_device_whose_sshd_never_starts_the_command_fails_within_the_startup_allowance(tmp_path):
    """paramiko waits for the answer to an exec request with no limit: `bench` of such a device, an upload or a
    fleet's worker hung for good, past --timeout and --dead-after (a security review)."""
    server = HangingExec(tmp_path)
    try:
        known = tmp_path / "known_hosts"
        known.write_text(f"[{server.host}]:{server.port} {server.key.get_name()} {server.key.get_base64()}\n")
        spec = make_device("hung", {"host": server.host, "port": server.port, "user": "x",
                                    "key": [str(_keygen(tmp_path / "client"))]}, "test")
        transport = SshTransport(spec, SshOptions(known_hosts=str(known), ssh_config=os.devnull, connect_timeout=5,
                                                  dead_peer_timeout=8))
        started = time.monotonic()
        with pytest.raises(DeviceFailure, match="device hung: its SSH server did not start the command within 30 s"):
            transport.run(["true"], lambda line: None, timeout=10)
        assert time.monotonic() - started < 60
    finally:
        server.close()


def test_sshd_killed_mid_upload_leaves_no_partial_after_the_next_connection(lab, tmp_path, capfd):
    dev = lab.add("pi-upload-killed", 60)
    workdir = tmp_path / "device-home"
    big = _big_file(tmp_path / "big.edgepkg", 96)
    transport = _transport(lab, dev, workdir)
    transport.progress = Hook(dev.kill)
    with pytest.raises(DeviceFailure, match="connection lost during the bundle upload"):
        transport.put(big, "bundle")
    transport.close()
    assert capfd.readouterr().err == ""  # the one DeviceFailure line is all the user sees
    dev.start()
    # Whether the device-side helper outlived sshd long enough to remove its own partial depends on timing;
    # a writer that died by SIGKILL is what the sweep is for, so leave one as it would (unlocked, named by pid).
    if not _partials(workdir):
        (workdir / "store").mkdir(parents=True, exist_ok=True)
        (workdir / "store" / "0123abcd.edgepkg.999999.partial").write_bytes(b"x" * 1024)
    assert _partials(workdir)
    again = _transport(lab, dev, workdir)
    again.put(_big_file(tmp_path / "small.pyz", 1), "agent")
    again.close()
    assert _partials(workdir) == []
    assert sorted(p.suffix for p in (workdir / "store").iterdir()) == [".pyz"]


def test_host_giving_up_mid_upload_leaves_no_partial(lab, tmp_path):
    dev = lab.devices.get("pi-upload-killed") or lab.add("pi-upload-killed", 60)
    workdir = tmp_path / "device-home"
    big = _big_file(tmp_path / "big.edgepkg", 96)
    transport = _transport(lab, dev, workdir)

    def give_up():
        raise KeyboardInterrupt  # Ctrl-C on the host, in the middle of sending

    transport.progress = Hook(give_up)
    with pytest.raises(KeyboardInterrupt):
        transport.put(big, "bundle")
    transport.close()  # the device's helper sees end of input and removes its partial file
    deadline = time.monotonic() + 10
    while _partials(workdir) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _partials(workdir) == [] and not list((workdir / "store").iterdir())


class KillAt(Progress):
    def __init__(self, phase, dev):
        self.phase, self.dev, self.done = phase, dev, False

    def status(self, message):
        if message.startswith(self.phase) and not self.done:
            self.done = True
            self.kill()

    def kill(self):
        self.dev.kill()


class KillAgentAt(KillAt):
    """Kill -9 the agent itself (`python agent.pyz bench`, not its measuring child) at a phase, the link left up."""
    def kill(self):
        import psutil
        for p in psutil.Process(self.dev.proc.pid).children(recursive=True):
            if any(a.endswith(".pyz") for a in p.cmdline()) and "bench" in p.cmdline():
                p.kill()


def test_an_agent_killed_on_a_device_that_still_answers_is_not_a_lost_connection(lab, bundles, tmp_path):
    """kill -9 of the agent read "connection lost during the agent run" (a walkthrough): the link is up."""
    dev = lab.add("pi-agent-killed", 62)
    inv = write_inventory(tmp_path / "inv.yaml", lab, [dev])
    options = SshOptions(known_hosts=str(lab.known_hosts), connect_timeout=5, dead_peer_timeout=5)
    with pytest.raises(DeviceFailure, match="the agent ended without an exit status, the connection still up: its "
                                            "process was killed on the device"):
        api.bench(bundles["fp32"], dev.name, tmp_path / "results", loop=dict(FAST_LOOP, min_seconds=5),
                  progress=KillAgentAt("warm-up", dev), inventory=inv, ssh_options=options)


def test_device_killed_mid_bench_leaves_its_measuring_output_in_the_workdir_only(lab, bundles, tmp_path):
    dev = lab.add("pi-bench-killed", 61)
    inv = write_inventory(tmp_path / "inv.yaml", lab, [dev])
    runs = pathlib.Path(lab.inventory_entry(dev)["workdir"]) / "runs"
    options = SshOptions(known_hosts=str(lab.known_hosts), connect_timeout=5, dead_peer_timeout=3)
    with pytest.raises(DeviceFailure, match="connection lost during the agent run"):
        api.bench(bundles["fp32"], dev.name, tmp_path / "results", loop=dict(FAST_LOOP, min_seconds=5),
                  progress=KillAt("warm-up", dev), inventory=inv, ssh_options=options)
    left = list(runs.glob("edgeopt-run-*/measure.json"))
    assert len(left) == 1  # where a killed run leaves it: inside the agent's workdir, not /tmp
    dev.start()
    doc = api.bench(bundles["fp32"], dev.name, tmp_path / "results", loop=FAST_LOOP, inventory=inv,
                    ssh_options=options)
    assert doc["status"] == "ok" and not list(runs.iterdir())  # the next run swept the stale one


def test_a_failed_bench_keeps_the_good_result_and_says_where_both_are(cli, lab, bundles, tmp_path):
    dev = lab.devices.get("pi-bench-killed") or lab.add("pi-bench-killed", 61)
    inv = write_inventory(tmp_path / "inv.yaml", lab, [dev])
    args = ["bench", bundles["fp32"], "--device", dev.name, "--inventory", inv, "--known-hosts", lab.known_hosts,
            "--results-dir", tmp_path / "results", *FAST_BENCH_ARGS, "--quiet"]
    assert cli(*args).exit_code == 0
    [latest] = (tmp_path / "results").glob(f"*@{dev.name}.json")
    good = latest.read_text()
    dev.kill()
    r = cli(*args, "--connect-timeout", "1")
    dev.start()
    assert r.exit_code == 3 and f"the latest good result {latest} is kept" in r.stderr
    assert latest.read_text() == good
    history = [json.loads(p.read_text())["status"] for p in sorted((tmp_path / "results" / "history").iterdir())]
    assert sorted(history) == ["failed", "ok"]


# The names that collided on main (issue 11), with case and Unicode-normalization twins.
COLLIDING = ["pi:1", "pi_1", "设备1", "装置1", "&&id", "|id", "Pi-1", "pi-1", "run", "café", "cafe\u0301"]


def test_colliding_names_on_real_devices_keep_every_result_and_resume_by_exact_name(cli, lab, bundles, tmp_path):
    """Eleven inventory names on two sshd devices (own work directories); the names of one device use a
    Python that does not exist, so they fail; --resume re-runs exactly those."""
    good, bad = lab.add("names-ok", 62), lab.add("names-bad", 63)
    entries = {}
    for i, name in enumerate(COLLIDING):
        dev = good if i % 3 else bad
        entry = lab.inventory_entry(dev, workdir=str(tmp_path / f"home{i}"))
        if dev is bad:
            entry["python"] = "/nonexistent/python3"
        entries[name] = entry
    inv = tmp_path / "inv.yaml"
    inv.write_text(yaml.safe_dump({"devices": entries}, allow_unicode=True))
    args = ["fleet", "bench", bundles["fp32"], "--inventory", inv, "--parallel", "4", "--known-hosts",
            lab.known_hosts, "--results-dir", tmp_path / "results", *FAST_BENCH_ARGS, "--json"]
    first = cli(*args).json()
    run_dir = pathlib.Path(first["run_dir"])
    saved = {json.loads(p.read_text())["device"]["name"] for p in run_dir.glob("*.json") if p.name != "run.json"}
    assert saved == set(COLLIDING)
    assert len(list((tmp_path / "results").glob("*@*.json"))) == len(COLLIDING)
    ok = {n for n, e in entries.items() if not e["python"].startswith("/nonexistent")}
    assert set(first["succeeded"]) == ok
    again = cli(*args, "--resume").json()
    assert again["run_dir"] == first["run_dir"] and set(again["skipped"]) == ok
    assert set(again["failed"]) == set(COLLIDING) - ok
