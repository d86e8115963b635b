"""What a killed edgeopt (kill -9: no finally block ran) left behind is removed by a later run: its temporary
folders and the hidden `.partial` beside an output (a walkthrough: 769 MB and 150 MB a killed package)."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

from conftest import MODEL
from edgeopt import scratch


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _left(path, age: float, folder: bool = False):
    """A folder (with a file in it) or a file, last touched `age` seconds ago."""
    if folder:
        path.mkdir()
        (path / "model.onnx").write_bytes(b"x" * 1000)
    else:
        path.write_bytes(b"x" * 1000)
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def test_a_later_package_removes_what_a_killed_one_left(cli, tmp_path, monkeypatch):
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.setattr(scratch, "_swept", set())
    dead, live, old = _dead_pid(), os.getppid(), 2 * scratch.STALE_S
    killed = _left(temp / f"edgeopt-package-{dead}-abc", old, folder=True)
    running = _left(temp / f"edgeopt-package-{live}-def", old, folder=True)   # a live process's, however old
    recent = _left(temp / f"edgeopt-package-{dead}-ghi", 5, folder=True)   # maybe another pid namespace's
    out = tmp_path / "out" / "a.edgepkg"
    out.parent.mkdir()
    partial = _left(out.parent / f".a.edgepkg.{dead}-zz.partial", old)
    of_another_file = _left(out.parent / f".b.edgepkg.{dead}-zz.partial", old)   # its own writer's to sweep
    r = cli("package", MODEL, "-o", out, "-q")
    assert r.exit_code == 0, r.stderr
    assert not killed.exists() and not partial.exists()
    assert running.exists() and recent.exists() and of_another_file.exists()
    assert sorted(p.name for p in out.parent.iterdir()) == [of_another_file.name, "a.edgepkg"]
