"""Helpers for the power and thermal tests: recorded trees copied where a test may change them."""
import os
import pathlib
import shutil
import stat

from device_agent.power.base import SensorConfig

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures"


def tree(name, tmp_path):
    """A private copy of fixtures/<name> (symlinks kept, as on a board)."""
    dest = pathlib.Path(tmp_path) / name
    shutil.copytree(FIXTURES / name, dest, symlinks=True)
    vcgencmd = dest / "vcgencmd"
    if vcgencmd.exists():
        vcgencmd.chmod(vcgencmd.stat().st_mode | stat.S_IXUSR)
    return dest


def config(root, **kwargs):
    return SensorConfig(sysfs_root=str(root), **kwargs)


def write(path, value):
    pathlib.Path(path).write_text("%s\n" % value)


def rapl_zone(root, zone="intel-rapl:0"):
    return pathlib.Path(root) / "sys" / "class" / "powercap" / zone


def fake_clock(start=0.0):
    """A monotonic clock that advances only when told to (for the cooldown loop)."""
    now = [start]

    def clock():
        return now[0]

    def advance(seconds):
        now[0] += seconds
    return clock, advance


def is_root():
    return os.geteuid() == 0
