"""Temporary files of edgeopt's host processes, made so that a later run can remove what a killed process (kill -9,
the out-of-memory killer) left: each `package` of a 400 MB model killed so left 769 MB in the temporary folder and
a 150 MB hidden `.partial` beside its bundle, and nothing removed them (a walkthrough). SIGTERM and Ctrl-C end
through the `finally` blocks, which remove them as they go.

A temporary folder holds an flock on its `.lock` for its whole life: a later run removes only folders whose lock
nobody holds, which is true across containers sharing the temporary folder (other pid namespaces), where a pid or
a folder's mtime says nothing of a live process. A `.partial` beside an output carries its writer's pid and is
written without pause: it is removed once that pid is gone and it is STALE_S untouched."""
from __future__ import annotations

import contextlib
import fcntl
import os
import pathlib
import re
import shutil
import tempfile
import time

STALE_S = 600.0   # a .partial untouched this long, its writer gone, is left over
NEW_S = 60.0      # a folder younger than this may be one whose maker has not taken its lock yet
LOCK = ".lock"
KINDS = ("inspect", "macs", "package", "pin", "read", "recipe", "rewrite", "sig", "sign", "train", "transforms")
# mkstemp's and mkdtemp's eight characters after the prefix (tempfile._RandomNameSequence)
_RANDOM = r"[a-z0-9_]{8}"
_FOLDER = re.compile(rf"edgeopt-(?:{'|'.join(KINDS)})-\d+-{_RANDOM}\Z")
PARTIAL = re.compile(rf"\..+\.(\d+)-{_RANDOM}\.partial\Z")   # atomic.temp_beside's names
_swept = set()            # temporary folders swept of stale scratch folders, once a process
_swept_partials = set()   # output folders swept of stale .partial files, once a process


class Folder(tempfile.TemporaryDirectory):
    """A TemporaryDirectory that holds the flock of its `.lock` until it is cleaned up."""

    def __init__(self, kind: str):
        if kind not in KINDS:
            raise ValueError(f"scratch kind {kind!r} is not one of {KINDS}")
        super().__init__(prefix=f"edgeopt-{kind}-{os.getpid()}-")
        self._held = open(os.path.join(self.name, LOCK), "w")
        fcntl.flock(self._held, fcntl.LOCK_EX)

    def cleanup(self):
        with contextlib.suppress(OSError):
            self._held.close()
        super().cleanup()


def folder(kind: str) -> Folder:
    """A temporary folder for `kind` of work, after removing, once a process, those no live process holds."""
    where = tempfile.gettempdir()
    if where not in _swept:
        _swept.add(where)
        _sweep_folders(pathlib.Path(where))
    return Folder(kind)


def _sweep_folders(where: pathlib.Path) -> None:
    for entry in _entries(where):
        if not _FOLDER.match(entry.name) or not entry.is_dir(follow_symlinks=False) or not _ours(entry):
            continue
        try:
            if time.time() - entry.stat(follow_symlinks=False).st_mtime < NEW_S:   # its maker may not hold it yet
                continue
            with open(os.path.join(entry.path, LOCK), "r+") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)   # held: its process runs
                shutil.rmtree(entry.path, ignore_errors=True)
        except OSError:   # held, or no lock file (not one of ours to judge): left alone
            continue


def sweep_partials(where: pathlib.Path) -> None:
    """Remove, once a process for each folder, the `.partial` files (atomic.temp_beside's) whose writer is gone."""
    key = str(where)
    if key in _swept_partials:
        return
    _swept_partials.add(key)
    for entry in _entries(where):
        found = PARTIAL.match(entry.name)
        if found is None or int(found.group(1)) == os.getpid() or alive(int(found.group(1))) or not _ours(entry):
            continue
        with contextlib.suppress(OSError):
            if time.time() - entry.stat(follow_symlinks=False).st_mtime >= STALE_S and entry.is_file(
                    follow_symlinks=False):
                os.unlink(entry.path)


def _entries(where: pathlib.Path) -> list:
    try:
        return list(os.scandir(where))
    except OSError:
        return []


def _ours(entry) -> bool:
    """This user's, as the entry itself says (a link is not followed)."""
    try:
        return entry.stat(follow_symlinks=False).st_uid == os.getuid()
    except OSError:
        return False


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # another user's
        return True
    except OverflowError:
        return False
    return True
