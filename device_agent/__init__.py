"""edgeopt's device agent: verifies a bundle, measures it with the device's own runtime, reports JSON.

Runs on the device with Python 3.8+, the standard library, numpy, psutil when present and
whichever runtime the device has. It never imports edgeopt; the two halves share only the
bundle manifest and the result document, each versioned by its `schema` field.
"""

__version__ = "0.1.0"

BUNDLE_SCHEMA = "edgeopt.bundle/1"
RESULT_SCHEMA = "edgeopt.result/1"
MIN_PYTHON = (3, 8)   # what the agent runs on: checked first by its zipapp and upload helper, and by `device doctor`

# The agent's words for a bundle the host had stored that is gone before the lock was taken (a `device clean` from
# another host between the upload and the lock): the host then sends it again, once.
BUNDLE_GONE = "is no longer on this device"

# Exit codes shared with the host CLI.
EXIT_OK, EXIT_BAD_INPUT, EXIT_DEVICE_FAILURE = 0, 2, 3


class AgentError(Exception):
    """An error the agent reports as one line and an exit code."""

    exit_code = EXIT_DEVICE_FAILURE


class BundleError(AgentError):
    """The bundle is malformed, tampered with or unsafe: refused before anything loads."""

    exit_code = EXIT_BAD_INPUT


def bounded(text, limit=300):
    """A library's message cut to `limit` characters by its middle: its head names what failed, and its tail often
    why (onnxruntime's "This is an invalid model. In Node, (...) ... Error Unrecognized attribute: axis for operator
    DequantizeLinear"), which a cut at the end lost."""
    if len(text) <= limit:
        return text
    tail = limit * 2 // 3
    return text[:limit - tail - 3] + " … " + text[-tail:]

