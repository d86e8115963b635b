"""Keep converters' own output off the user's terminal. litert-torch prints its progress on
stdout (which --json must keep clean); torchao, absl, the MLIR converter and LiteRT log on
stderr, from Python and from native code; ai-edge-quantizer draws a tqdm bar. None of it means
anything to a user unless a step fails, when the captured text supplies the error line.

Everything written meanwhile is captured, edgeopt's own progress too: long steps are therefore
captured in chunks with progress advanced between them (see convert/tflite.py)."""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings


class Captured:
    text = ""


def _drop_handlers_on(sink) -> None:
    """Logging handlers a converter added meanwhile on the capture's stream, on the root logger or any other:
    litert-torch's first `logging.info` ran logging.basicConfig(), and importing it gave a torch.fx logger a
    handler, each writing to this stream once it was closed, so every later log line of a program calling
    edgeopt.api printed a traceback (and its own basicConfig() did nothing; a walkthrough, then a review)."""
    loggers = [logging.root] + [v for v in list(logging.root.manager.loggerDict.values()) if isinstance(v, logging.Logger)]
    for logger in loggers:
        for handler in list(logger.handlers):
            if getattr(handler, "stream", None) is sink:
                logger.removeHandler(handler)


@contextlib.contextmanager
def captured_output():
    """Redirects fds 1 and 2 and sys.stdout/sys.stderr to a buffer; `.text` has what was written."""
    log = Captured()
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    old_streams = sys.stdout, sys.stderr
    sink = tempfile.TemporaryFile()
    sink_text = os.fdopen(os.dup(sink.fileno()), "w", buffering=1)
    try:
        for fd in (1, 2):
            os.dup2(sink.fileno(), fd)
        sys.stdout = sys.stderr = sink_text   # also when they were not fds 1 and 2 (a test runner's buffers)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield log
    finally:
        _drop_handlers_on(sink_text)
        sink_text.close()
        for fd in (1, 2):
            os.dup2(saved[fd], fd)
            os.close(saved[fd])
        sys.stdout, sys.stderr = old_streams
        sink.seek(0)
        log.text = sink.read().decode("utf-8", "replace")
        sink.close()
