"""The one interface every power reader implements, and the file helpers they share.

A reader is found by `probe(config)`, which returns the reader or None with the reason, and
then `read()` gives one Sample: a monotonic timestamp and either watts now (kind "watts") or a
cumulative energy in joules since the reader opened (kind "energy", from a hardware counter,
wrap-around already handled). Every sysfs or proc path goes through `config.path(...)` so a
recorded tree is read by the same code as a real board.
"""
import collections
import errno
import os
import re
import time
from dataclasses import dataclass

SYSFS_ROOT_ENV = "EDGEOPT_SYSFS_ROOT"
VCGENCMD_ENV = "EDGEOPT_VCGENCMD"
TEGRASTATS_ENV = "EDGEOPT_TEGRASTATS"

# t: time.monotonic() of the reading; value: W (watts readers) or J since open (energy readers);
# rails: {rail name: W or J}, same unit as value.
Sample = collections.namedtuple("Sample", "t value rails")


@dataclass(frozen=True)
class SensorConfig:
    """Where and how the agent reads sensors; travels from `agent bench` to the measuring process."""
    power_sensor: str = "auto"  # auto, none, or one registry name
    sysfs_root: str = "/"       # prefix of every /sys and /proc path
    vcgencmd: str = "vcgencmd"  # the command (may include arguments) the Raspberry Pi readers run
    power_command: str = ""     # the external meter's command, run by /bin/sh, prints watts
    tegrastats: str = "tegrastats"  # the command (may include arguments) the Jetson tegrastats reader runs
    power_rate_hz: float = 0.0  # 0: the reader's own default rate
    idle_seconds: float = 1.0   # the idle baseline window before warm-up

    def to_dict(self):
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d):
        return cls(**d)

    def path(self, *parts):
        return os.path.join(self.sysfs_root, *parts)


class SensorError(Exception):
    """One reading failed; the message names the file or command and why."""

    def __init__(self, message, permission=False):
        Exception.__init__(self, message)
        self.permission = permission


def read_text(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError as e:
        denied = isinstance(e, PermissionError) or e.errno in (errno.EACCES, errno.EPERM)
        raise SensorError("%s: %s" % (path, e.strerror or e), permission=denied)


def read_number(path):
    text = read_text(path)
    try:
        return float(text)
    except ValueError:
        raise SensorError("%s: not a number (%r)" % (path, text[:40]))


def optional_text(path, default=None):
    """A descriptive file (a label, a name) that may be absent without making the sensor unusable."""
    try:
        return read_text(path)
    except SensorError:
        return default


class PowerReader(object):
    name = ""                # registry name; the file is this name with '-' as '_'
    kind = "watts"           # "watts" or "energy" (a cumulative counter)
    default_rate_hz = 10.0

    def __init__(self, config):
        self.config = config

    @classmethod
    def probe(cls, config):
        """(reader, None) when this sensor family is present and readable, else (None, reason)."""
        raise NotImplementedError

    def read(self):
        """One Sample; raises SensorError when the sensor cannot be read."""
        raise NotImplementedError

    def sensor(self):
        """Which chip or interface, and where, in words."""
        return self.name

    def rails(self):
        return []

    def total(self):
        """What the total figure is made of, in words."""
        return "the sensor's reading"

    def notes(self):
        return []

    def rate_hz(self):
        return float(self.config.power_rate_hz or self.default_rate_hz)

    def describe(self):
        return {"reader": self.name, "sensor": self.sensor(), "kind": self.kind, "rails": self.rails(),
                "total": self.total(), "sample_rate_hz": self.rate_hz(), "notes": self.notes()}

    def close(self):
        pass


def first_readable(reader):
    """Probe helper: one real reading, so a sensor that lists files it cannot serve is refused."""
    try:
        reader.read()
    except SensorError as e:
        return e
    return None


def now():
    return time.monotonic()


def run_command(argv, timeout, shell=False):
    """stdout of a short command (vcgencmd, a meter script); SensorError with its stderr otherwise."""
    import signal
    import subprocess
    try:   # in the agent's process group, which the host kills whole when it gives up on the agent
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, shell=shell,
                             universal_newlines=True)
    except OSError as e:
        raise SensorError("cannot run %s: %s" % (shown_command(argv), e.strerror or e))
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # the command and everything it started: a meter script's `curl` or `sleep` outlived its shell, one stray
        # process per reading on the device
        for pid in _descendants(p.pid) + [p.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            p.communicate(timeout=2)
        except subprocess.TimeoutExpired:   # one that left the tree still holds the pipes: not waited for
            p.poll()
        raise SensorError("%s did not answer within %.1f s" % (shown_command(argv), timeout))
    if p.returncode != 0:
        tail = (err.strip().splitlines() or out.strip().splitlines() or ["no output"])[-1]
        raise SensorError("%s failed with exit code %d: %s" % (shown_command(argv), p.returncode, tail[:200]))
    return out


def _descendants(pid):
    """The processes below `pid`, from /proc (Linux; elsewhere none): children first found, then theirs."""
    children = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])   # the name in parentheses may hold spaces
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")


def shown_command(argv):
    """The command as messages and results name it: a shell command (--power-command) by its program alone, since
    the rest may hold a secret (a meter's `curl -H 'Authorization: ...'`) that results and reports would keep.
    Split as the shell would: split on spaces, `TOKEN="Bearer abc" meter` showed the token's tail as the program."""
    import shlex

    if not isinstance(argv, str):
        return " ".join(argv)
    try:
        words = shlex.split(argv)
    except ValueError:   # unbalanced quotes: nothing of it is shown
        return "`...`"
    program = next((w for w in words if not _ASSIGNMENT.match(w)), None)   # past `TOKEN=... meter.sh`'s assignments
    if program is None or any(c.isspace() for c in program):
        return "`...`"
    return "`%s`%s" % (program, " ..." if words != [program] else "")