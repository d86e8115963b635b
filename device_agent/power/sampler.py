"""Background sampling during a window: one daemon thread, each source at its own period.

The first reading is taken as the window opens and the last as it closes, so the samples span
the whole window. A failed reading is recorded as an error with its time, never as a value.
"""
import threading

from .base import SensorError, now


class Sampler(object):
    """sources: [(key, fn, period_s)]; fn() returns a value (a power Sample or anything else)."""

    def __init__(self, sources):
        self.sources = [s for s in sources if s is not None]
        self.values = {key: [] for key, _, _ in self.sources}
        self.errors = {key: [] for key, _, _ in self.sources}
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="edgeopt-sampler")
        self.thread.daemon = True
        self.crash = None
        self.t_start = self.t_end = None

    def __enter__(self):
        self.t_start = now()
        for source in self.sources:
            self._take(*source[:2])
        if self.sources:
            self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        if self.thread.is_alive():
            self.thread.join()
        for source in self.sources:
            self._take(*source[:2])
        self.t_end = now()
        if self.crash is not None and exc[0] is None:
            raise self.crash  # a bug in a reader, not a sensor failure: surface it
        return False

    def _take(self, key, fn):
        try:
            value = fn()
        except SensorError as e:
            self.errors[key].append((now(), str(e)))
            return
        self.values[key].append(value)

    def _run(self):
        due = {key: self.t_start + period for key, _, period in self.sources}
        try:
            while not self.stop_event.wait(max(0.0, min(due.values()) - now())):
                t = now()
                for key, fn, period in self.sources:
                    if due[key] <= t:
                        self._take(key, fn)
                        # A slow source (a command) that fell behind skips ahead instead of bursting.
                        due[key] += period
                        if due[key] <= t:
                            due[key] = t + period
        except Exception as e:  # recorded and re-raised by __exit__ in the measuring thread
            self.crash = e

    def window(self):
        return self.t_start, self.t_end
