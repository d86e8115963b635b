"""SSH devices through paramiko: verified host keys, ~/.ssh/config aliases, keepalive and
kernel-level dead-peer detection, content-addressed uploads, every remote argument quoted."""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import pathlib
import shlex
import time

from ..agent_zipapp import REMOVE_PARTIAL, VERSION_CHECK
from .base import Transport
from ..inventory import DEFAULT_PYTHON, DEFAULT_WORKDIR

# paramiko logs a failed transport thread (a whole traceback) at ERROR, and with no logging set up Python
# prints that on stderr. The failure reaches the user once, as a one-line DeviceFailure; an application
# that configures logging still receives the records.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

CHUNK = 1 << 20
# Streamed upload: the device's Python checks the content-addressed store first ("cached"),
# else reads exactly SIZE bytes from stdin, checks their sha256 and renames them into place.
# Nothing half-written stays behind: the helper removes its .partial file on any error or signal,
# and, since SIGKILL leaves no chance to, every upload first sweeps partial files whose writer is
# gone. A live writer holds an flock on its partial file, which the kernel drops when it dies.
UPLOAD_SCRIPT = VERSION_CHECK + REMOVE_PARTIAL + r"""
import errno, fcntl, hashlib, os, signal, sys
dest, sha, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
d = os.path.dirname(dest) or "."
if not os.path.isdir(d):
    os.makedirs(d)

def sweep():
    for name in os.listdir(d):
        if name.endswith(".partial"):
            remove_partial(os.path.join(d, name))

def stop(signum, frame):
    raise SystemExit(128 + signum)

for s in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
    signal.signal(s, stop)
def intact(path):
    # a cached copy is hashed, not only sized: a byte changed on the device (bad storage, a hand edit) is sent
    # again, where a size check kept it and every later run refused the bundle
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest() == sha

sweep()
if os.path.isfile(dest) and os.path.getsize(dest) == size and intact(dest):
    sys.stdout.write("cached\n"); sys.stdout.flush(); sys.exit(0)
# a file larger than the room left is refused before a byte is sent: the helper died mid-stream, and the host read
# its end as the connection lost
free = os.statvfs(d).f_bavail * os.statvfs(d).f_frsize
if free < size:
    raise OSError(errno.ENOSPC, "No space left on device (%.1f MiB free)" % (free / 1048576.0), d)
while True:
    tmp = "%s.%d.partial" % (dest, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    if os.fstat(fd).st_nlink:  # else a sweep removed it between open and lock: start again
        break
    os.close(fd)
done = False
try:
    sys.stdout.write("send\n"); sys.stdout.flush()
    h, n, src = hashlib.sha256(), 0, sys.stdin.buffer
    with os.fdopen(fd, "wb") as f:
        while n < size:
            b = src.read(min(1 << 20, size - n))
            if not b:
                break
            f.write(b); h.update(b); n += len(b)
        if n != size or h.hexdigest() != sha:
            sys.stdout.write("corrupt %d\n" % n); sys.exit(4)
        f.flush()
        os.replace(tmp, dest)  # still holding the lock, so no sweep can take the file first
        done = True
    sys.stdout.write("ok\n")
finally:
    if not done and os.path.exists(tmp):
        os.unlink(tmp)
"""


@dataclasses.dataclass(frozen=True)
class SshOptions:
    known_hosts: str | None = None       # default ~/.ssh/known_hosts
    trust_new_host_keys: bool = False    # trust on first use, and remember the key
    ssh_config: str | None = None        # default ~/.ssh/config
    connect_timeout: float = 10.0
    dead_peer_timeout: float = 8.0       # silence (or unacknowledged data) for this long: the device is gone
    keepalive: float = 2.0


def sha256_file(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def quote_argv(argv) -> str:
    """The one place a remote command line is made: every argument quoted for a POSIX shell."""
    return " ".join(shlex.quote(str(a)) for a in argv)


class SshTransport(Transport):
    name = "ssh"

    def __init__(self, spec, options: SshOptions | None = None):
        super().__init__()
        self.spec, self.options = spec, options or SshOptions()
        self.device = spec.name
        self.client = None
        self._opening = []   # the clients open_client is making: close() closes them too
        self._hash_cache = {}

    # --- connection ------------------------------------------------------------------------
    def connect(self):
        if self.client is None:
            from .ssh_connect import open_client
            self._opening = []
            self.client = open_client(self.spec, self.options, opened=self._opening)
            self.trusted += getattr(self.client, "edgeopt_trusted", [])
        return self.client

    @property
    def address(self) -> str:
        """user@host:port after ~/.ssh/config, once connected."""
        return getattr(self.client, "edgeopt_address", self.spec.host)

    def close(self):
        if self.client is not None:
            self.client.close()
            self.client = None
        else:   # from another thread while connecting: its wait for the banner or the login ends now
            for client in list(self._opening):
                client.close()

    def python(self) -> str:
        return self.spec.python or DEFAULT_PYTHON

    def workdir(self) -> str:
        return (self.spec.workdir or DEFAULT_WORKDIR).rstrip("/") or "."

    # --- Transport interface ---------------------------------------------------------------
    def put(self, local: pathlib.Path, kind: str) -> str:
        key = (str(local), local.stat().st_mtime_ns, local.stat().st_size)
        if key not in self._hash_cache:
            self._hash_cache[key] = sha256_file(local)
        sha = self._hash_cache[key]
        suffix = ".pyz" if kind == "agent" else ".edgepkg"
        remote = f"{self.workdir()}/store/{sha}{suffix}"
        self._upload(local, remote, sha, kind)
        return remote

    def run(self, argv, on_line, timeout):
        from .ssh_exec import run_command
        return run_command(self.connect(), self.device, quote_argv(argv), on_line, timeout,
                           self.options.dead_peer_timeout)

    # --- upload ----------------------------------------------------------------------------
    def _upload(self, local: pathlib.Path, remote: str, sha: str, kind: str):
        from .ssh_exec import stream_upload
        size = local.stat().st_size
        cmd = quote_argv(self.python_argv() + ["-c", UPLOAD_SCRIPT, remote, sha, size])
        start = time.perf_counter()
        sent = stream_upload(self.connect(), self.device, cmd, local, size, self.progress, kind,
                             self.options.dead_peer_timeout, remote)
        self.transfers.append({"kind": kind, "sha256": sha, "bytes": size, "sent_bytes": sent,
                               "seconds": round(time.perf_counter() - start, 4)})
