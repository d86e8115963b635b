"""Throughput (FPS): many inferences in flight at once, counted as they complete, as the runtimes' own
tools measure it (OpenVINO benchmark_app's async infer requests; concurrent runs for the others).

FPS is completed inferences / wall time of the timed part, never 1000 / mean latency of the sequential
loop: that figure says how fast one caller is served, not how many inferences the device finishes. The
pass runs after the latency loop, by the same loop settings: a warm-up by count and time, then until
both the minimum count and the minimum duration are reached, or a maximum stops it.
"""
import threading
import time

NOT_ASKED = "not asked, since the bundle's performance hint is not throughput (bench --throughput measures it)"


def stop_rule(completed, elapsed_s, settings):
    """The rule that ends the timed part after `completed` inferences in `elapsed_s`, or None to go on."""
    if completed >= settings.min_iterations and elapsed_s >= settings.min_seconds:
        return "min_iterations_and_duration"
    if completed >= settings.max_iterations:
        return "max_iterations"
    if elapsed_s >= settings.max_seconds:
        return "max_duration"
    return None


def warmup_done(completed, elapsed_s, settings):
    """By the warm-up's own count and time, as the latency loop's (max_iterations bounds the timed part only);
    max_seconds still ends a warm-up that would outlast the whole pass."""
    return ((completed >= settings.warmup_min_iterations and elapsed_s >= settings.warmup_min_seconds)
            or elapsed_s >= settings.max_seconds)


def figures(completed, duration_s, stopped_by, warmup, **how):
    """The result's throughput section: fps from the completed count and the wall time, and how it ran."""
    out = {"available": True, "fps": completed / duration_s if duration_s > 0 else None, "completed": completed,
           "duration_s": duration_s, "stopped_by": stopped_by, "warmup_count": warmup[0], "warmup_s": warmup[1]}
    if out["fps"] is None:
        out["fps_absent"] = "the timed part took no measurable time"
    out.update(how)
    return out


class _Worker(object):
    """One thread calling its own `call` until told to stop; counts the calls that returned."""

    def __init__(self, call, go, stop):
        self.call, self.go, self.stop, self.done, self.error = call, go, stop, 0, None
        self.thread = threading.Thread(target=self._run, name="throughput")
        self.thread.daemon = True

    def _run(self):
        self.go.wait()
        try:
            while not self.stop.is_set():
                self.call()
                self.done += 1
        except Exception as e:  # the runtime's own error types: reported by the caller, not lost in a thread
            self.error = e
            self.stop.set()


def _phase(calls, until, poll_s=0.002):
    """Run every call in its own thread until `until(completed, elapsed_s)` is true; the in-flight calls then
    finish and count. Returns (completed, wall seconds from start to the last thread's end, stopped_by)."""
    go, stop = threading.Event(), threading.Event()
    workers = [_Worker(call, go, stop) for call in calls]
    for w in workers:
        w.thread.start()
    start = time.perf_counter()
    go.set()
    stopped_by = None
    while stopped_by is None and not stop.is_set():
        time.sleep(poll_s)  # the runtimes release the GIL while they compute: this thread costs little
        stopped_by = until(sum(w.done for w in workers), time.perf_counter() - start)
    stop.set()
    for w in workers:
        w.thread.join()
    duration = time.perf_counter() - start
    failed = next((w.error for w in workers if w.error is not None), None)
    if failed is not None:
        raise failed
    return sum(w.done for w in workers), duration, stopped_by


def concurrent_runs(calls, settings):
    """Throughput of `calls` (zero-argument callables, one per thread) run at the same time: a warm-up phase,
    then the timed phase. Returns (completed, duration_s, stopped_by, (warm-up count, warm-up seconds))."""
    warm_n, warm_s, _ = _phase(calls, lambda n, s: warmup_done(n, s, settings) or None)
    completed, duration, stopped_by = _phase(calls, lambda n, s: stop_rule(n, s, settings))
    return completed, duration, stopped_by, (warm_n, warm_s)


def split_threads(threads, streams):
    """(concurrent runs, intra-op threads each): `streams` runs (default: one per thread of the budget)
    sharing the thread budget, at least one thread each."""
    streams = streams or threads
    return streams, max(1, threads // streams)
