"""One error root. Each subclass carries the process exit code the CLI returns for it.

0 ok, 1 a budget or check failed, 2 bad input or usage, 3 a device or transport failure.
"""
from __future__ import annotations


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
