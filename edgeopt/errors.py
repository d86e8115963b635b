"""One error root. Each subclass carries the process exit code the CLI returns for it.

0 ok, 1 a budget or check failed, 2 bad input or usage, 3 a device or transport failure.
"""


class EdgeoptError(Exception):
    """Base of every error edgeopt raises on purpose; the CLI prints it as one line."""

    exit_code = 2


class BadInput(EdgeoptError):
    """The user gave something unusable: a model, a profile, a calibration file, a bundle."""

    exit_code = 2


class DeviceFailure(EdgeoptError):
    """The device or the way to it failed: transport, agent crash, missing runtime."""

    exit_code = 3


class BackendUnavailable(BadInput):
    """A profile names a backend that this version of edgeopt cannot convert for yet."""


class ParityMismatch(BadInput):
    """The packaged artifact disagrees with its source model beyond the profile's tolerance."""
