"""One benchmark at a time per device: an flock on a file in the agent's directory, then one on a file every
workdir and user of the machine shares (MachineLock).

The lock file holds the holder's pid and start time so a waiting run can say who holds it.
Once the lock is held, run directories left by a killed run are stale and removed.
"""
import errno
import fcntl
import os
import shutil
import stat
import time

from . import AgentError
from .progress import report


class DeviceBusy(AgentError):
    """Another edgeopt benchmark holds this device."""


HOLDER_BYTES = 200   # of a lock file's holder line read into a message


class DeviceLock(object):
    HOLDER, WAITING_FOR = "another edgeopt benchmark", "another benchmark"

    def __init__(self, path, wait_seconds):
        self.path, self.wait_seconds, self.fd, self.writable = path, wait_seconds, None, True
        self.waited = "waited %.0f s" % wait_seconds

    def _open(self):
        directory = os.path.dirname(self.path) or "."
        if not os.path.isdir(directory):
            os.makedirs(directory, exist_ok=True)   # two agents starting at once on a new device
        return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)

    def __enter__(self):
        self.fd = self._open()
        if self.fd is None:
            return self
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
                raise DeviceBusy("device busy: %s holds %s (%s); %s" % (self.HOLDER, self.path, holder, self.waited))
            if not told:
                report("lock", "waiting for %s to finish (%s)" % (self.WAITING_FOR, holder))
                told = True
            time.sleep(0.2)
        if self.writable:
            os.ftruncate(self.fd, 0)
            since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())   # UTC: a Pi's local time read as the future
            os.write(self.fd, ("pid %d since %s" % (os.getpid(), since)).encode())
        return self

    def _holder(self):
        """The holder's line, read from the open file (never again by its name, which another login may have
        replaced by a FIFO meanwhile) and cut short: the machine's lock is writable by all."""
        try:
            line = os.pread(self.fd, HOLDER_BYTES, 0).decode("utf-8", "replace").strip()
        except OSError:
            return "unknown holder"
        return line.splitlines()[0] if line else "unknown holder"

    def __exit__(self, *exc):
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
        return False


# Shared by every workdir and user of the machine: /tmp, not the temporary folder a user's TMPDIR names.
# $EDGEOPT_MACHINE_LOCK in the agent's environment moves it (the test rig's sshd devices, each one board).
MACHINE_LOCK = "/tmp/edgeopt-measure.lock"


class MachineLock(DeviceLock):
    """One measurement at a time on the machine, whatever workdir or login ran it: the workdir's lock alone let two
    inventory entries of one board (two venvs, two workdirs) or two users measure at once, each reading the
    other's load. Taken after the workdir's lock, by every agent in that order.

    The file lies in a folder every user writes, so it is opened without following a link and used only as a
    plain file of one name (no hard link to another file); it is made writable by all, so another login can
    write its holder line (one another login made read-only is locked read-only). Where it cannot be opened at
    all, the run goes on unserialised with other workdirs and logins, and says so in `warnings`."""
    HOLDER = "another edgeopt benchmark on this machine (another workdir or login)"
    WAITING_FOR = "another benchmark on this machine (another workdir or login)"

    def __init__(self, path, wait_seconds, of_total=None):
        super(MachineLock, self).__init__(path, wait_seconds)
        self.warnings = []
        if of_total is not None:   # "waited 0 s" where the workdir's lock had used the whole wait (a review)
            self.waited = ("waited %.0f s, what the workdir's lock left of --lock-wait %.0f s"
                           % (wait_seconds, of_total))

    def _open(self):
        try:
            return self._open_plain_file()
        except OSError as e:
            self.warnings.append("not serialised with edgeopt benchmarks of other workdirs or logins on this "
                                 "machine: cannot use %s (%s)" % (self.path, e.strerror or e))
            return None

    def _open_plain_file(self):
        # O_NONBLOCK: a FIFO planted there (mkfifo) blocked the open for good; flock ignores it
        safe = os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
        for _ in range(10):
            made = False
            try:   # an existing file without O_CREAT: fs.protected_regular refuses O_CREAT of another user's
                fd = self._open_existing(safe)
            except FileNotFoundError:
                try:
                    fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | safe, 0o666)
                    made = True
                except FileExistsError:   # another agent made it meanwhile
                    continue
            try:
                info = os.fstat(fd)
                if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
                    raise OSError(errno.EPERM, "not a plain file of its own (a FIFO, or a link to another file?)")
                if made:
                    os.fchmod(fd, 0o666)   # the umask took some bits: another login writes its holder line too
            except OSError:
                os.close(fd)
                raise
            return fd
        raise OSError(errno.EAGAIN, "made and removed again meanwhile")

    def _open_existing(self, flags):
        try:
            return os.open(self.path, os.O_RDWR | flags)
        except PermissionError:   # another login's, not writable for this one: flock works on a read-only file
            self.writable = False
            return os.open(self.path, os.O_RDONLY | flags)


def remove_stale_runs(workdir):
    """Run directories left behind by a killed run (only called while holding the lock)."""
    if not workdir or not os.path.isdir(workdir):
        return
    for name in os.listdir(workdir):
        if name.startswith("edgeopt-run-"):
            shutil.rmtree(os.path.join(workdir, name), ignore_errors=True)
