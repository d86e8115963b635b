"""Build the device agent as one zipapp file, named by its content hash so devices cache it."""
from __future__ import annotations

import hashlib
import os
import pathlib
import zipfile

import device_agent

from .atomic import replacing


def cache_dir() -> pathlib.Path:
    root = os.environ.get("EDGEOPT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "edgeopt")
    return pathlib.Path(root)


def _sources() -> list:
    pkg = pathlib.Path(device_agent.__file__).resolve().parent
    return sorted(p for p in pkg.rglob("*.py") if "__pycache__" not in p.parts)


def content_hash() -> str:
    pkg = pathlib.Path(device_agent.__file__).resolve().parent
    h = hashlib.sha256(SHEBANG + MAIN.encode() + b"\0")   # a cached build of another entry point is another agent
    for path in _sources():
        h.update(path.relative_to(pkg).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def is_agent(path) -> bool:
    """Whether `path` is an agent zipapp this command wrote (a zip holding device_agent/cli.py): `agent build -o`
    replaces one, and refuses any other file, as `package -o` does."""
    if not pathlib.Path(path).is_file():   # a pipe or a device: no zip to look for (/dev/full was read to the end)
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return "device_agent/cli.py" in archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


# Every build's bytes alike: a zip keeps each file's time, and zipapp took the copies' (the build's own, in local
# time) in the order the folder listed them. A fleet's first run built the agent in each device's thread at once,
# and one thread's upload, hashed from one build, sent another's bytes: refused on the device as corrupt (a
# security review). So the zip is written here: sorted, every entry at zip's epoch, mode 0644.
ZIP_TIME = (1980, 1, 1, 0, 0, 0)
AGENT_ERROR = "edgeopt-agent: error: "   # how the agent's own one-line failures begin on stderr (device_agent.cli)
SHEBANG = b"#!/usr/bin/env python3\n"
# A version check in a syntax every Python reads, first in the zipapp's template and the upload helper (which runs
# before the agent does): on a board's Python 3.7 (Raspberry Pi OS Buster), 3.6 or 2.7 the agent failed in its
# imports, and bench said "AttributeError: 'NoneType' object has no attribute 'PackageNotFoundError'" (a
# walkthrough). The host reads this line as the device's own failure.
VERSION_CHECK = ("import sys\n"
                 f"if sys.version_info < {device_agent.MIN_PYTHON!r}:\n"
                 "    sys.stderr.write(\"" + AGENT_ERROR + "%s is Python %d.%d.%d; the agent needs Python "
                 f"{'.'.join(map(str, device_agent.MIN_PYTHON))} or newer: install it, or set the device's `python` "
                 "in the inventory\\n\" % ((sys.executable or \"python\",) + tuple(sys.version_info[:3])))\n"
                 "    sys.exit(3)\n")
# A partial upload (STORE/NAME.PID.partial) removed where no writer holds its flock, and only the file locked (a
# writer may have begun again under that name), while this holds the lock: the upload helper's sweep and `device
# clean` alike. It returns the bytes removed, 0 where there was nothing to remove, None where an upload is in progress.
REMOVE_PARTIAL = r"""
import fcntl, os

def remove_partial(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return 0
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    try:
        if os.stat(path).st_ino == os.fstat(fd).st_ino:
            gone = os.fstat(fd).st_size
            os.unlink(path)
            return gone
        return 0
    except OSError:
        return 0
    finally:
        os.close(fd)
"""
MAIN = "# -*- coding: utf-8 -*-\n" + VERSION_CHECK + "import device_agent.cli\ndevice_agent.cli.run()\n"


def build(out: pathlib.Path | None = None) -> pathlib.Path:
    """The agent zipapp; reused from the cache when the agent's sources have not changed."""
    digest = content_hash()[:16]
    target = pathlib.Path(out) if out else cache_dir() / "agent" / f"edgeopt-agent-{digest}.pyz"
    if out is None and target.is_file() and _intact(target):
        return target
    pkg = pathlib.Path(device_agent.__file__).resolve().parent
    with replacing(target, "the agent", "wb") as f:
        f.write(SHEBANG)
        with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as archive:
            for src in _sources():   # sorted
                _add(archive, "device_agent/" + src.relative_to(pkg).as_posix(), src.read_bytes())
            _add(archive, "__main__.py", MAIN.encode())
        os.fchmod(f.fileno(), os.fstat(f.fileno()).st_mode | 0o111)   # ./edgeopt-agent.pyz runs, as zipapp's own
    return target


def _intact(path: pathlib.Path) -> bool:
    """Whether a cached agent is a whole zipapp (every member's CRC): one cut short (a power loss, a full disk
    outside edgeopt's atomic write) failed every later bench with "source code cannot contain null bytes", each
    saved as the device's failure, and `device clean` did not remove it (a walkthrough). It is built again."""
    try:
        with zipfile.ZipFile(path) as archive:
            return "__main__.py" in archive.namelist() and archive.testzip() is None
    except (OSError, zipfile.BadZipFile, EOFError):
        return False


def _add(archive, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
    info.external_attr = 0o644 << 16
    archive.writestr(info, data)
