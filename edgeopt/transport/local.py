"""The `local` device: the agent runs as a subprocess here, by the same path a remote device takes."""
from __future__ import annotations

import os
import pathlib
import shlex
import signal
import socket
import subprocess
import sys
import threading

from .. import bundle as bundles
from ..errors import DeviceFailure
from ..progress import SILENT
from .base import Transport


class LocalTransport(Transport):
    name = "local"

    def __init__(self, device: str = "local"):
        super().__init__()
        self.device = device
        self.hostname = socket.gethostname()
        self._running, self._closed, self._state = None, False, threading.Lock()

    def python(self) -> str:
        return sys.executable

    def python_argv(self) -> list:
        # edgeopt's own interpreter, unless an inventory entry names another (a venv with other runtimes)
        spec = getattr(self, "spec", None)
        return list(spec.python_argv) if spec is not None and spec.python is not None else [sys.executable]

    def workdir(self) -> str:
        """edgeopt's cache, unless an inventory entry names a directory (relative: to the home, as over SSH)."""
        spec = getattr(self, "spec", None)
        if spec is not None and spec.workdir is not None:
            return str(pathlib.Path.home() / os.path.expanduser(spec.workdir))
        return str(_own_dir())

    def agent_home(self) -> str:
        # run where it is built (agent_zipapp.build): `local` ships nothing to a store
        from ..agent_zipapp import cache_dir
        return str(cache_dir() / "agent")

    def lock_path(self) -> str:
        # this host's one lock, whatever workdir an entry names: two `local` devices are one machine, and measured
        # at once they would each read the other's load
        return str(_own_dir() / "lock")

    def bench(self, bundle, agent_args: list, progress=SILENT, timeout: float = 900.0) -> tuple:
        """Transport.bench of the bundle as it is now: a package that rewrote it while this bench waited for the
        device read as "changed in transit, refused" (a walkthrough)."""
        with bundles.pinned(pathlib.Path(bundle)) as pinned:
            return super().bench(pinned, agent_args, progress, timeout)

    def put(self, local: pathlib.Path, kind: str) -> str:
        if not local.is_file():
            raise DeviceFailure(f"{kind} {local} does not exist")
        return str(local.resolve())

    def run(self, argv, on_line, timeout):
        # A session of its own, so a timeout kills the agent and its measuring process together.
        try:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
                                    start_new_session=True)
        except OSError as e:   # an inventory's `python` that is not there or not executable: the device's failure
            raise DeviceFailure(f"device {self.device}: its python {shlex.join(self.python_argv())!r} did not start: "
                                f"{e.strerror or e}") from None
        with self._state:
            self._running = proc
            closed = self._closed
        if closed:   # closed (a fleet's Ctrl-C) while it started
            _kill(proc)
        stdout = []
        reader = threading.Thread(target=lambda: stdout.append(proc.stdout.read()), daemon=True)
        reader.start()
        timed_out = threading.Event()

        def kill():
            timed_out.set()
            _kill(proc)

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            for line in proc.stderr:
                on_line(line.rstrip("\n"))
            proc.wait()
        except BaseException:  # Ctrl-C here: the agent's own session did not get the signal, so end it
            _kill(proc)
            proc.wait()
            raise
        finally:
            timer.cancel()
            with self._state:
                self._running = None
        reader.join()
        if timed_out.is_set():
            raise DeviceFailure(f"device {self.device}: agent did not finish within {timeout:.0f} s")
        if self._closed:
            raise DeviceFailure(f"device {self.device}: interrupted while it was measured")
        return proc.returncode, "".join(stdout)

    def close(self) -> None:
        """Ends a running agent and its measuring process: a fleet's Ctrl-C or SIGTERM lets go of its devices
        from another thread, where the signal reaches neither (an SSH device's agent ends with its connection).
        Without it, every `local` device went on measuring for nothing and held the exit back."""
        with self._state:
            self._closed, proc = True, self._running
        if proc is not None:
            _kill(proc)


TERM_GRACE_S = 2.0


def _kill(proc) -> None:
    """Ends the agent's session: SIGTERM first, which the agent ends through its finally blocks (its run directory,
    a copy of the bundle, removed; its lock released), then SIGKILL for whatever is left after TERM_GRACE_S."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=TERM_GRACE_S)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)   # the measuring process too, should it outlive the agent
    except ProcessLookupError:
        pass


def _own_dir() -> pathlib.Path:
    """The local device's folder in edgeopt's cache: its workdir unless an entry names one, and its lock always."""
    from ..agent_zipapp import cache_dir
    return cache_dir() / "local-device"
