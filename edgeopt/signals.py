"""Signals held while a run that is already stopping finishes saying so: a second Ctrl-C (a double press, or
`timeout` signalling the process and its group) inside that work replaced the interruption that carried what was
kept and how to go on (`fleet bench`'s --resume line, the CLI's exit line)."""
from __future__ import annotations

import contextlib
import signal
import threading


@contextlib.contextmanager
def signals_held():
    """SIGINT, SIGTERM and SIGHUP ignored meanwhile, their handlers restored after; in the main thread only, where
    Python runs signal handlers (elsewhere nothing changes). A handler C code installed (getsignal None) could not
    be put back after: it is left as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, lambda signum, frame: None)
                for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP) if signal.getsignal(s) is not None}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
