"""Running commands and streaming files over an open SSH connection, with deadlines and
prompt detection of a device that went away."""
from __future__ import annotations

import contextlib
import select
import time

import paramiko

from ..agent_zipapp import AGENT_ERROR
from ..errors import DeviceFailure

CHUNK = 1 << 20
POLL = 0.25
# Before its first heartbeat the agent is starting Python on the device, which on a busy or slow
# board can take several seconds; a dead link is still caught sooner by TCP_USER_TIMEOUT.
STARTUP_SILENCE = 30.0
HASH_BYTES_PER_S = 10e6   # the slowest storage a device hashes a cached upload from (an SD card), for a deadline


def _session(client, device):
    transport = client.get_transport()
    if transport is None or not transport.is_active():
        raise DeviceFailure(f"device {device}: connection lost")
    try:
        return transport.open_session(timeout=10)
    except Exception as e:  # paramiko raises SSHException, EOFError or socket errors here
        raise DeviceFailure(f"device {device}: cannot open a session: {e or type(e).__name__}") from None


def _startup_allowance(silence) -> float:
    """How long a command may take to say its first word: the agent starting Python on a slow board."""
    return max(3 * silence, STARTUP_SILENCE)


def _exec(chan, command, device, silence) -> None:
    """chan.exec_command, given up after the startup allowance: paramiko waits for the server's answer to the
    request with no limit, and a device whose sshd hangs after the login (a PAM session module, a full disk)
    held `bench`, an upload or a fleet's worker for good, past --timeout and --dead-after (a security review).
    Closing the channel wakes paramiko's wait."""
    import threading

    fired = threading.Event()

    def give_up():
        fired.set()
        chan.close()

    within = _startup_allowance(silence)
    timer = threading.Timer(within, give_up)
    timer.daemon = True
    timer.start()
    late = DeviceFailure(f"device {device}: its SSH server did not start the command within {within:.0f} s of "
                         "the request (a login session that hangs on the device?)")
    try:
        chan.exec_command(command)
    except paramiko.SSHException:
        if fired.is_set():
            raise late from None
        raise
    finally:
        timer.cancel()
    if fired.is_set():   # it answered as the timer closed the channel: said as the late answer it was
        raise late


def _alive(client, device, what):
    transport = client.get_transport()
    if transport is None or not transport.is_active():
        raise DeviceFailure(f"device {device}: connection lost during {what}")


@contextlib.contextmanager
def _connection_lost_is(device, what):
    """paramiko reports a vanished peer as EOFError, socket errors or SSHException, depending on timing."""
    try:
        yield
    except (OSError, EOFError, paramiko.SSHException) as e:
        raise DeviceFailure(f"device {device}: connection lost during {what} ({type(e).__name__})") from None


def run_command(client, device, command, on_line, timeout, silence):
    """Run `command` (already quoted); stderr lines go to on_line. Returns (exit code, stdout).

    The agent writes a heartbeat every few seconds, so `silence` seconds without a byte means the
    device froze or the network went away, whatever TCP believes."""
    with _connection_lost_is(device, "the agent run"):
        return _run_command(client, device, command, on_line, timeout, silence)


def _run_command(client, device, command, on_line, timeout, silence):
    chan = _session(client, device)
    _exec(chan, command, device, silence)
    deadline = time.monotonic() + timeout
    heard, allowed = time.monotonic(), _startup_allowance(silence)
    out, err = bytearray(), bytearray()
    while True:
        select.select([chan], [], [], POLL)
        if chan.recv_stderr_ready() or chan.recv_ready():
            heard, allowed = time.monotonic(), silence
        elif time.monotonic() - heard > allowed:
            chan.close()
            raise DeviceFailure(_silent(client, device, allowed))
        while chan.recv_stderr_ready():
            err += chan.recv_stderr(65536)
            *lines, rest = err.split(b"\n")
            err = bytearray(rest)
            for line in lines:
                on_line(line.decode("utf-8", "replace"))
        while chan.recv_ready():
            out += chan.recv(CHUNK)
        if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
            break
        _alive(client, device, "the agent run")
        if time.monotonic() > deadline:
            chan.close()
            raise DeviceFailure(f"device {device}: agent did not finish within {timeout:.0f} s")
    code = chan.recv_exit_status()
    if err:
        on_line(err.decode("utf-8", "replace"))
    chan.close()
    if code == -1:   # no exit status: the link went, or the agent was killed there (sshd sends its signal instead)
        if not _link_answers(client, within=5.0):   # the channel closes before paramiko marks the link down
            raise DeviceFailure(f"device {device}: connection lost during the agent run")
        raise DeviceFailure(f"device {device}: the agent ended without an exit status, the connection still up: "
                            "its process was killed on the device")
    return code, out.decode("utf-8", "replace")


def _silent(client, device, allowed) -> str:
    """Why the agent said nothing: a device that still answers over SSH has a stuck agent (a device `python` that
    hangs before it runs, a runtime that never returns), which "device down or network lost" misnamed (a
    walkthrough)."""
    # a live sshd answers in milliseconds; 2 s at least, for one on a loaded board (or CI runner)
    if _link_answers(client, within=min(max(allowed / 3, 2.0), 5.0)):
        return (f"device {device}: the agent said nothing for {allowed:.0f} s, though the device answers over SSH: "
                "its Python or runtime is stuck there (it may still be running: look for it with `ps` on the device)")
    return f"device {device}: no sign of life for {allowed:.0f} s during the agent run (device down or network lost)"


def _link_answers(client, within: float) -> bool:
    """Whether the SSH server answers a keepalive request within `within` seconds. paramiko's request waits while
    the connection lasts, so it is asked from a thread left behind if no answer comes."""
    import threading

    transport = client.get_transport()
    if transport is None or not transport.is_active():
        return False
    asked = threading.Thread(target=transport.global_request, args=("keepalive@openssh.com",), daemon=True)
    asked.start()
    asked.join(within)
    return not asked.is_alive() and transport.is_active()


def _read_line(chan, client, device, timeout=30.0):
    buf, deadline = bytearray(), time.monotonic() + timeout
    while b"\n" not in buf:
        select.select([chan], [], [], POLL)
        if chan.recv_ready():
            buf += chan.recv(4096)
        elif chan.exit_status_ready():
            break
        _alive(client, device, "the upload")
        if time.monotonic() > deadline:
            raise DeviceFailure(f"device {device}: no answer from the upload helper within {timeout:.0f} s")
    return buf.decode("utf-8", "replace").strip()


def _stderr(chan):
    data = bytearray()
    while chan.recv_stderr_ready():
        data += chan.recv_stderr(65536)
    text = data.decode("utf-8", "replace").strip().splitlines()
    return text[-1] if text else ""


def stream_upload(client, device, command, local, size, progress, kind, silence, remote: str = "") -> int:
    """Send `local` to the upload helper started by `command` (which stores it as `remote`); returns bytes sent (0
    if cached). A send that makes no progress for `silence` seconds (the device stopped reading) fails."""
    with _connection_lost_is(device, f"the {kind} upload"):
        return _stream_upload(client, device, command, local, size, progress, kind, silence, remote)


def _storage_hint(reason: str, remote: str, size: int, device: str) -> str:
    """What to do about the device's storage refusing an upload: a full disk was a bare "OSError: [Errno 28] No
    space left on device", naming no folder, size or remedy (a walkthrough); a folder the login cannot write too."""
    folder = remote.rpartition("/")[0] or "the workdir"
    if "Errno 28" in reason or "No space left" in reason:
        return (f": the device's disk is full where {folder} is ({size / 1048576:.1f} MiB to store); `edgeopt device "
                f"clean {device}` removes what edgeopt cached there, or give the inventory's `workdir` a folder on a "
                "larger disk")
    if any(s in reason for s in ("Errno 30", "Errno 13", "Read-only file system", "Permission denied")):
        return f": the login cannot write {folder}; give the inventory's `workdir` a folder it can write"
    return ""


def _send(chan, block: bytes, device, kind, remote, size) -> None:
    """One block to the upload helper. A helper that ended mid-stream (the disk filled up under it) said why on
    stderr, where the failed send read as the connection lost."""
    try:
        chan.sendall(block)
    except (OSError, EOFError, paramiko.SSHException):
        reason = _stderr(chan) if chan.status_event.wait(2) or chan.recv_stderr_ready() else ""
        if not reason:
            raise
        raise DeviceFailure(f"device {device}: {kind} upload failed ({reason})"
                            f"{_storage_hint(reason, remote, size, device)}") from None


def _stream_upload(client, device, command, local, size, progress, kind, silence, remote) -> int:
    chan = _session(client, device)
    chan.settimeout(silence)
    _exec(chan, command, device, silence)
    # the helper hashes a cached copy before it answers: a Pi's SD card reads a few GB at 10-40 MB/s
    answer = _read_line(chan, client, device, timeout=30.0 + size / HASH_BYTES_PER_S)
    if answer == "cached":
        chan.recv_exit_status()
        chan.close()
        return 0
    if answer != "send":
        reason = _stderr(chan) or answer or "no answer"
        if reason.startswith(AGENT_ERROR):   # the helper's own account: a Python too old for the agent
            raise DeviceFailure(f"device {device}: {reason[len(AGENT_ERROR):]}")
        status = chan.exit_status if not answer and chan.status_event.wait(2) else None   # it said nothing: ended?
        if status in (126, 127):   # the shell's "command not found" / "cannot execute": read as a full disk
            raise DeviceFailure(f"device {device}: its Python did not run (exit {status}): {reason}; the inventory's "
                                "`python` names an interpreter the device does not have (without one: python3 on "
                                "its PATH): install Python 3.8+ there, or name the one it has")
        raise DeviceFailure(f"device {device}: cannot store the {kind} on the device: {reason}"
                            f"{_storage_hint(reason, remote, size, device)}")
    progress.start(f"uploading {kind}", total=size, unit="bytes")
    sent = 0
    try:
        with open(local, "rb") as f:
            for block in iter(lambda: f.read(CHUNK), b""):
                _send(chan, block, device, kind, remote, size)
                sent += len(block)
                progress.advance(len(block))
                _alive(client, device, f"the {kind} upload")
    finally:
        progress.finish()
    chan.shutdown_write()
    result = _read_line(chan, client, device, timeout=max(120.0, 30.0 + size / HASH_BYTES_PER_S))   # hashed too
    code = chan.recv_exit_status()
    chan.close()
    if code == -1:  # the channel closed without an exit status: the device or its sshd went away
        raise DeviceFailure(f"device {device}: connection lost during the {kind} upload")
    if result != "ok" or code != 0:
        reason = result or _stderr(chan) or str(code)
        raise DeviceFailure(f"device {device}: {kind} upload failed ({reason})"
                            f"{_storage_hint(reason, remote, size, device)}")
    return sent
