"""Files written whole or not at all: a temp file beside the target, renamed over it when complete."""
from __future__ import annotations

import contextlib
import errno
import os
import pathlib
import re
import stat
import sys
import tempfile

from . import scratch
from .errors import CannotWrite

TEMP_NAME_BYTES = 200   # of the target's name in its temp file's (_temp_prefix): 1 + 200 + 1 + pid + 1 + 8 + 8


def temp_beside(path: pathlib.Path) -> tuple[int, str]:
    """(fd, name) of a new temp file in `path`'s directory, for os.replace onto `path` once written.
    Its mode is a plain open()'s (0666 less the umask), not mkstemp's 0600: bundles, results and reports are
    shared, uploaded as CI artifacts and kept on network drives, and the rename keeps the temp file's mode."""
    path = pathlib.Path(path)
    scratch.sweep_partials(path.parent)   # what killed writers left there (kill -9: no finally block ran)
    fd, tmp = tempfile.mkstemp(prefix=f"{_temp_prefix(path)}{os.getpid()}-", suffix=".partial", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_umask())
    return fd, tmp


def _temp_prefix(path: pathlib.Path) -> str:
    """`.NAME.` with NAME cut to 200 bytes: the temp file's own name stays within a file system's 255, where a target
    of a legal 240-byte name failed to be written ("File name too long" for its temp file; a walkthrough)."""
    return "." + os.fsencode(path.name)[:TEMP_NAME_BYTES].decode(errors="ignore") + "."


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


class Taken(Exception):
    """replacing(..., new=True): another process wrote `path` meanwhile; this one's file was not put there."""

    def __init__(self, path):
        super().__init__(str(path))
        self.path = path


def _put_new(tmp: str, path: pathlib.Path) -> None:
    """tmp moved to a `path` that must not exist: a hard link fails where another writer got there first (a
    rename would replace its file). Where the file system has no hard links, a rename after a last look."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise Taken(path) from None
    except OSError:
        if os.path.lexists(path):
            raise Taken(path) from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


@contextlib.contextmanager
def replacing(path, what: str, mode: str = "wb", encoding: str | None = None, new: bool = False):
    """A file open on a temp beside `path`, renamed over it when the block ends without error (else removed).
    An OSError from making the directory, writing or renaming (a read-only or full disk, no permission) becomes
    CannotWrite naming `what` and `path`; one that names another file (an input read inside the block) passes.
    A symbolic link is written through (its target replaced), a pipe or a device written to as it is, and
    `/dev/stdout` (a link to the process's descriptor) through that descriptor: the rename had replaced the link,
    the pipe, and as root even /dev/full, with a file, and /dev/stdout's file under the shell's redirection.
    new: `path` was not there when the work began, and must still not be: Taken where another process wrote it
    meanwhile (two `package -o same` at once both said done, the last one's bundle kept)."""
    path = pathlib.Path(path)
    kind = _kind(path)
    if kind in ("fd", "special"):
        yield from _written_as_is(path, kind, what, mode, encoding)
        return
    if kind == "link":
        path = pathlib.Path(os.path.realpath(path))
    try:
        _refuse_a_file_above(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = temp_beside(path)
        try:
            with os.fdopen(fd, mode, encoding=encoding) as f:
                yield f
            if new:
                _put_new(tmp, path)
            else:
                os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as e:
        if e.filename is not None and not _is_on_the_way_to(path, e.filename):
            raise
        raise CannotWrite(what, path, e) from None


def _kind(path: pathlib.Path) -> str:
    """ "fd" (a link to one of this process's descriptors: /dev/stdout), "special" (a pipe, a device, a socket, or a
    link to one), "link" (to a file, or to nothing yet), else "" """
    if _process_fd(path) is not None:
        return "fd"
    try:
        mode = os.stat(path).st_mode   # through links
    except OSError:
        return "link" if os.path.islink(path) else ""
    if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        return "special"
    return "link" if os.path.islink(path) else ""


def _process_fd(path) -> int | None:
    """The descriptor `path` names through /proc/self/fd/N or /dev/fd/N (/dev/stdout links to /proc/self/fd/1),
    else None. Not resolved to the file behind it: replacing that file, redirected by the shell, lost the rest of
    the output written to the descriptor."""
    where = os.path.abspath(path)
    for _ in range(40):   # a chain of links, as /dev/stdout's is
        found = re.fullmatch(r"/(?:proc/(self|\d+)|dev)/fd/(\d+)", where)
        if found and found.group(1) in (None, "self", str(os.getpid())):
            return int(found.group(2))
        try:
            target = os.readlink(where)
        except OSError:   # no link (or none there): no descriptor
            return None
        where = os.path.normpath(os.path.join(os.path.dirname(where), target))
    return None


def _written_as_is(path: pathlib.Path, kind: str, what: str, mode: str, encoding: str | None):
    """A pipe or a device opened as it is (to append: "w" truncates nothing there, and a file behind a link to it
    keeps what it held); /dev/stdout and its kin on a copy of the process's descriptor, which shares its offset,
    after what Python buffered for it. Without a temp file and a rename: neither can have one."""
    if kind == "fd":
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
    try:
        with (os.fdopen(os.dup(_process_fd(path)), mode, encoding=encoding) if kind == "fd" else
              open(path, mode.replace("w", "a"), encoding=encoding)) as f:
            yield f
    except OSError as e:
        if e.filename is not None and pathlib.Path(os.fsdecode(e.filename)) != path:
            raise
        raise CannotWrite(what, path, e) from None


def _refuse_a_file_above(path: pathlib.Path) -> None:
    """ENOTDIR where a folder above `path` is a file: mkdir said "File exists", which named nothing wrong."""
    for folder in path.parents:
        if folder.exists():
            if not folder.is_dir():
                raise OSError(errno.ENOTDIR, f"{os.strerror(errno.ENOTDIR)}: {folder} is a file", str(path))
            return


def check_writable(target, what: str, folder: bool = False, file_only: bool = False) -> None:
    """CannotWrite now, not after minutes of converting or measuring, when `target` (a file, or with folder=True a
    folder) cannot be written: its folder is made if missing, and a temp file made there and removed. A full disk
    is still found only by the write itself. A pipe, a device or /dev/stdout is written as it is (`replacing`):
    its write permission is what counts, not its folder's (/dev); `file_only` (a bundle, which tar writes with
    seeks) refuses them. A link is judged where it points."""
    target = pathlib.Path(target)
    kind = "" if folder else _kind(target)
    if kind in ("fd", "special"):
        if file_only:
            raise CannotWrite(what, target, OSError(errno.EINVAL, "not a regular file (a pipe, a device or a "
                                                                  "descriptor): give a file"))
        if not os.access(target, os.W_OK):
            raise CannotWrite(what, target, OSError(errno.EACCES, os.strerror(errno.EACCES)))
        return
    if kind == "link":
        target = pathlib.Path(os.path.realpath(target))
    where = target if folder else target.parent
    in_the_way = (errno.ENOTDIR if where.exists() and not where.is_dir() else
                  errno.EISDIR if not folder and target.is_dir() else None)
    if in_the_way:
        raise CannotWrite(what, target, OSError(in_the_way, os.strerror(in_the_way)))
    if not folder and len(os.fsencode(target.name)) > _name_max(where):   # found by the write itself, at the end
        raise CannotWrite(what, target, OSError(errno.ENAMETOOLONG, f"{os.strerror(errno.ENAMETOOLONG)} "
                                                f"({len(os.fsencode(target.name))} bytes; this file system takes "
                                                f"{_name_max(where)})"))
    try:
        where.mkdir(parents=True, exist_ok=True)
        fd, tmp = temp_beside(where / "probe")
        try:
            os.close(fd)
        finally:   # a Ctrl-C or SIGTERM between the two left `.probe.*.partial` in the user's folder (a walkthrough)
            os.unlink(tmp)
    except OSError as e:
        raise CannotWrite(what, target, e) from None


def _name_max(folder: pathlib.Path) -> int:
    """The longest file name the file system holding `folder` (or its nearest existing parent) takes."""
    for place in (folder, *folder.parents):
        try:
            return os.pathconf(place, "PC_NAME_MAX")
        except (OSError, ValueError):
            continue
    return 255


def _is_on_the_way_to(path: pathlib.Path, name) -> bool:
    """Whether `name` (an OSError's filename) is `path`, a temp file beside it, or a folder above it. Both made
    absolute: mkstemp names its file absolute, and a relative `-o out/r.md` into a read-only folder was said as
    "this host cannot write out/.r.md.123-x.partial ... set TMPDIR" or, denied, a traceback (a walkthrough)."""
    name, path = pathlib.Path(os.path.abspath(os.fsdecode(name))), pathlib.Path(os.path.abspath(path))
    beside = name.parent == path.parent and name.name.startswith(_temp_prefix(path)) and name.suffix == ".partial"
    return name == path or beside or name in path.parents
