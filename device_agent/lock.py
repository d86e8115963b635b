"""One benchmark at a time per device: an flock on a file in the agent's directory.

The lock file holds the holder's pid and start time so a waiting run can say who holds it.
Once the lock is held, run directories left by a killed run are stale and removed.
"""
import errno
import fcntl
import os
import shutil
import time

from . import AgentError
from .progress import report


class DeviceBusy(AgentError):
    """Another edgeopt benchmark holds this device."""


class DeviceLock(object):
    def __init__(self, path, wait_seconds):
        self.path, self.wait_seconds, self.fd = path, wait_seconds, None

    def __enter__(self):
        directory = os.path.dirname(self.path) or "."
        if not os.path.isdir(directory):
            os.makedirs(directory, exist_ok=True)   # two agents starting at once on a new device
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.wait_seconds   # a clock stepped by NTP at boot is no wait
        told = False
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            holder = self._holder()
            if time.monotonic() >= deadline:
                os.close(self.fd)
                raise DeviceBusy("device busy: another edgeopt benchmark holds %s (%s); waited %.0f s"
                                 % (self.path, holder, self.wait_seconds))
            if not told:
                report("lock", "waiting for another benchmark to finish (%s)" % holder)
                told = True
            time.sleep(0.2)
        os.ftruncate(self.fd, 0)
        os.write(self.fd, ("pid %d since %s" % (os.getpid(), time.strftime("%Y-%m-%dT%H:%M:%S"))).encode())
        return self

    def _holder(self):
        try:
            with open(self.path) as f:
                return f.read().strip() or "unknown holder"
        except OSError:
            return "unknown holder"

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        return False


def remove_stale_runs(workdir):
    """Run directories left behind by a killed run (only called while holding the lock)."""
    if not workdir or not os.path.isdir(workdir):
        return
    for name in os.listdir(workdir):
        if name.startswith("edgeopt-run-"):
            shutil.rmtree(os.path.join(workdir, name), ignore_errors=True)
