"""Temporary files of edgeopt's host processes, named with the process id, so that a later run removes what a
killed process (kill -9, the out-of-memory killer) left: each `package` of a 400 MB model killed so left 769 MB in
the temporary folder and a 150 MB hidden `.partial` beside its bundle, and nothing removed them (a walkthrough).
SIGTERM and Ctrl-C end through the `finally` blocks, which remove them as they go."""
from __future__ import annotations

import os
import pathlib
import re
import shutil
import tempfile
import time

# Left alone unless untouched this long as well as its process gone: a temporary folder shared between containers
# (other process-id namespaces) holds folders of live processes whose ids this one cannot see.
STALE_S = 600.0
_OWN = re.compile(r"edgeopt-[a-z]+-(\d+)-")
_swept = set()


def folder(kind: str) -> tempfile.TemporaryDirectory:
    """A temporary folder for `kind` of work ("package", "read"), after removing, once a process, those that
    processes no longer running left behind."""
    if tempfile.gettempdir() not in _swept:
        _swept.add(tempfile.gettempdir())
        sweep(pathlib.Path(tempfile.gettempdir()), _OWN)
    return tempfile.TemporaryDirectory(prefix=f"edgeopt-{kind}-{os.getpid()}-")


def sweep(where: pathlib.Path, pattern: re.Pattern) -> None:
    """Remove the entries of `where` whose name `pattern` matches from its start, its first group a process id,
    where that process is gone and the entry untouched for STALE_S. Errors are ignored: another run may be
    removing the same entries."""
    try:
        entries = list(os.scandir(where))
    except OSError:
        return
    for entry in entries:
        found = pattern.match(entry.name)
        if found is None or int(found.group(1)) == os.getpid() or alive(int(found.group(1))):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if info.st_uid != os.getuid() or time.time() - info.st_mtime < STALE_S:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                os.unlink(entry.path)
        except OSError:
            continue


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
