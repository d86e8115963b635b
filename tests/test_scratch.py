"""What a killed edgeopt (kill -9: no finally block ran) left behind is removed by a later run: its temporary
folders and the hidden `.partial` beside an output (a walkthrough: 769 MB and 150 MB a killed package)."""
from __future__ import annotations

import fcntl
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


def _aged(path, age: float):
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def _folder(path, age: float, lock: bool = True):
    """A scratch folder as a process made it: a file in it, its `.lock`, last touched `age` seconds ago."""
    path.mkdir()
    (path / "model.onnx").write_bytes(b"x" * 1000)
    if lock:
        (path / scratch.LOCK).write_text("")
    return _aged(path, age)


def test_a_later_package_removes_what_a_killed_one_left(cli, tmp_path, monkeypatch):
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.setattr(scratch, "_swept", set())
    monkeypatch.setattr(scratch, "_swept_partials", set())
    dead, old = _dead_pid(), 2 * scratch.STALE_S
    killed = _folder(temp / f"edgeopt-package-{dead}-abcdefgh", old)
    running = _folder(temp / f"edgeopt-package-{dead}-ijklmnop", old)   # a live process of another pid namespace
    new = _folder(temp / f"edgeopt-package-{dead}-qrstuvwx", 1)   # its maker may not hold its lock yet
    unlocked = _folder(temp / f"edgeopt-package-{dead}-yz012345", old, lock=False)   # not one to judge
    users = _folder(temp / "edgeopt-results-2024-05", old)   # a user's own folder of a like name
    out = tmp_path / "out" / "a.edgepkg"
    out.parent.mkdir()
    partial = out.parent / f".a.edgepkg.{dead}-zzzzzzzz.partial"
    partial.write_bytes(b"y" * 1000)
    _aged(partial, old)
    fresh = out.parent / f".b.edgepkg.{dead}-yyyyyyyy.partial"   # written a moment ago: maybe another namespace's
    fresh.write_bytes(b"z")
    with open(running / scratch.LOCK) as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        _aged(running, old)
        r = cli("package", MODEL, "-o", out, "-q")
    assert r.exit_code == 0, r.stderr
    assert not killed.exists() and not partial.exists()
    assert running.exists() and new.exists() and unlocked.exists() and users.exists() and fresh.exists()
    assert sorted(p.name for p in out.parent.iterdir()) == [fresh.name, "a.edgepkg"]


def test_a_scratch_folder_holds_its_lock_until_it_is_cleaned_up(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with scratch.folder("package") as name:
        with open(os.path.join(name, scratch.LOCK)) as probe:
            try:
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
                held = False
            except BlockingIOError:
                held = True
    assert held and not os.path.exists(name)
