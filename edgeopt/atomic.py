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
    umask = os.umask(0o022)   # the only way to read it; set straight back
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)
    return fd, tmp
