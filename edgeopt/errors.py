"""One error root. Each subclass carries the process exit code the CLI returns for it.

0 ok, 1 a budget or check failed, 2 bad input or usage, 3 a device, transport or results store server failure.
"""
from __future__ import annotations

import errno
import os
import tempfile

# this host's disk refusing a write: a full disk, a quota, a read-only file system
HOST_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)
# a limit of this host (ulimit -f, -n; the system's open files): tracebacks before; not a disk to make room on, so
# not HOST_DISK_ERRNOS (a study stops on those, and one candidate too large for the file-size limit would stop it)
LIMITS = {errno.EFBIG: "the file-size limit: ulimit -f", errno.EMFILE: "the open-file limit: ulimit -n",
          errno.ENFILE: "the system's open-file limit: fs.file-max"}


class EdgeoptError(Exception):
    """Base of every error edgeopt raises on purpose; the CLI prints it as one line."""

    exit_code = 2


class BadInput(EdgeoptError):
    """The user gave something unusable: a model, a profile, a calibration file, a bundle.

    option: the packaging option the defect is in (quantize, a backend's subset_size), where one is: a caller
    that took the value from a file (a recipe) names the file and its field."""

    exit_code = 2

    def __init__(self, message: str = "", option: str | None = None):
        super().__init__(message)
        self.option = option


class DeviceFailure(EdgeoptError):
    """The device or the way to it failed: transport, agent crash, missing runtime."""

    exit_code = 3


class StoreUnreachable(BadInput):
    """A results store's server that did not answer (refused, timed out, shutting down or starting up): exit 3,
    as a device that does not answer, where a CI job may retry; it was exit 2 at the start of a run and 3 in its
    middle. A wrong URL, host name, password or database stays bad input. A BadInput still, so a reader that goes
    on without the history (a report) goes on."""

    exit_code = 3


class CannotWrite(BadInput):
    """An output edgeopt cannot write: a read-only or full disk, no permission, a file or directory in the way.
    Exit 2, not 1: for check and optimize, 1 reads as "a budget was missed" in CI."""

    def __init__(self, what: str, path, error: OSError):
        super().__init__(f"cannot write {what} {path}: {error.strerror or first_line(error)}")


class BackendUnavailable(BadInput):
    """A profile names a backend that this version of edgeopt cannot convert for yet."""


class ParityMismatch(BadInput):
    """The packaged artifact disagrees with its source model beyond the profile's tolerance."""


def first_line(error: BaseException, text: str | None = None) -> str:
    """The first non-blank line of an error's message, stripped: what a one-line error quotes of a library's
    message, often a paragraph or a C++ backtrace. text: the message where it is not str(error) (the driver's
    error SQLAlchemy wraps, a converter's log). No such line: the error's type name."""
    text = str(error) if text is None else text
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    # a line that ends in a colon is a heading of the next: onnxruntime's "... [ONNXRuntimeError] : 1 : FAIL :"
    # then its reason ("graph.cc:4164 ... Attempt to replace the existing tensor") on a line of its own
    first = lines[0]
    for line in lines[1:]:
        if not first.endswith(":"):
            break
        first += " " + line
    return first


def in_chain(error: BaseException | None, wanted) -> BaseException | None:
    """The first exception of `error`'s chain (itself, then its causes and contexts) for which wanted(e) holds."""
    seen = set()
    while error is not None and id(error) not in seen:
        if wanted(error):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def host_file_problem(error: OSError) -> str | None:
    """One line for an OSError that is this host's file system's, not the input's: a name or path too long, a disk
    full or read-only where a library wrote its own files (onnx.save into the temporary folder). They were
    tracebacks and exit 1, which CI reads as a budget failed (a walkthrough). None for any other OSError."""
    name = "" if error.filename is None else f" {_shortened(os.fsdecode(error.filename))}"
    if error.errno == errno.ENAMETOOLONG:
        return f"file name too long:{name} (a name is at most 255 bytes on most file systems, a path 4096)"
    if error.errno in LIMITS:
        return f"a limit of this host stopped the work{name}: {error.strerror} (raise {LIMITS[error.errno]})"
    if error.errno in HOST_DISK_ERRNOS:
        remedy = _remedy(error)
        return f"this host cannot write{name or ' its files'}: {error.strerror}" + (f" ({remedy})" if remedy else "")
    return None


def _remedy(error: OSError) -> str:
    """What frees the write: room on that disk, or, for the folders edgeopt picks itself, another folder."""
    where = os.path.abspath(os.fsdecode(error.filename)) if error.filename is not None else ""
    temporary, cache = tempfile.gettempdir(), os.environ.get("EDGEOPT_CACHE") or os.path.expanduser("~/.cache")
    fixes = ["make room there"] if error.errno != errno.EROFS else []
    if not where or os.path.commonpath([where, temporary]) == temporary:
        fixes.append(f"set TMPDIR (now {temporary}) to a folder on another disk")
    elif os.path.commonpath([where, cache]) == cache:
        fixes.append("set EDGEOPT_CACHE to a folder on another disk")
    return ", or ".join(fixes)


def _shortened(name: str, keep: int = 60) -> str:
    return name if len(name) <= 2 * keep else f"{name[:keep]}...{name[-keep:]}"

