"""Build the device agent as one zipapp file, named by its content hash so devices cache it."""
from __future__ import annotations

import hashlib
import os
import pathlib
import shutil
import tempfile
import zipapp
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
    h = hashlib.sha256()
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


# Every build's bytes alike: a zip keeps each file's mtime, and the copies' were the build's own time. A fleet's
# first run built the agent in each device's thread at once, and one thread's upload, hashed from one build, sent
# another's bytes: refused on the device as corrupt (a security review).
ZIP_EPOCH = 315_576_000   # 1980-01-02 00:00 UTC: zip's epoch is 1980, in local time
MAIN = "# -*- coding: utf-8 -*-\nimport device_agent.cli\ndevice_agent.cli.main()\n"   # zipapp's template


def build(out: pathlib.Path | None = None) -> pathlib.Path:
    """The agent zipapp; reused from the cache when the agent's sources have not changed."""
    digest = content_hash()[:16]
    target = pathlib.Path(out) if out else cache_dir() / "agent" / f"edgeopt-agent-{digest}.pyz"
    if out is None and target.is_file():
        return target
    pkg = pathlib.Path(device_agent.__file__).resolve().parent
    with tempfile.TemporaryDirectory(prefix="edgeopt-agent-") as tmp:
        for src in _sources():
            dest = pathlib.Path(tmp, "device_agent", src.relative_to(pkg))
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
        # zipapp's own main= is written at the build's time: the same __main__.py as a file of the tree
        pathlib.Path(tmp, "__main__.py").write_text(MAIN)
        for path in pathlib.Path(tmp).rglob("*"):
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
            os.utime(path, (ZIP_EPOCH, ZIP_EPOCH))
        with replacing(target, "the agent", "wb") as f:
            zipapp.create_archive(tmp, f, interpreter="/usr/bin/env python3")
            os.fchmod(f.fileno(), os.fstat(f.fileno()).st_mode | 0o111)   # ./edgeopt-agent.pyz runs, as zipapp's own
    return target
