"""Files written whole or not at all: a temp file beside the target, renamed over it when complete."""
from __future__ import annotations

import os
import pathlib
import tempfile


def temp_beside(path: pathlib.Path) -> tuple[int, str]:
    """(fd, name) of a new temp file in `path`'s directory, for os.replace onto `path` once written.
    Its mode is a plain open()'s (0666 less the umask), not mkstemp's 0600: bundles, results and reports are
    shared, uploaded as CI artifacts and kept on network drives, and the rename keeps the temp file's mode."""
    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_umask())
    return fd, tmp


def _umask() -> int:
    """The process's umask, read where Linux shows it: setting it to read it (os.umask) would change it for a
    moment under the fleet's other threads, which save their results at the same time."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0o022)   # elsewhere the only way to read it; set straight back
    os.umask(umask)
    return umask
