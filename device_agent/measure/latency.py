"""The timed loop: warm-up by count and time, then run until a minimum count and duration.

The loop is deliberately bare (one bound call between two perf_counter_ns reads) so the
figures agree with the runtime vendors' own benchmark tools on the same file.
"""
import time
from dataclasses import dataclass

from ..progress import report


@dataclass(frozen=True)
class LoopSettings:
    warmup_min_iterations: int = 10
    warmup_min_seconds: float = 0.2
    min_iterations: int = 200
    min_seconds: float = 1.0
    max_iterations: int = 10000
    max_seconds: float = 30.0

    def to_dict(self):
        return dict(self.__dict__)


def first_inference_ms(infer):
    start = time.perf_counter_ns()
    infer()
    return (time.perf_counter_ns() - start) / 1e6


def warm_up(infer, settings):
    """Run until both the warm-up count and the warm-up time are reached; returns (count, seconds). Not capped
    by max_iterations, which bounds the timed runs: `--max-iterations 50` had ended a 0.2 s warm-up after 1 ms
    without a word (--warmup-iterations and --warmup-seconds shorten it). max_seconds still ends a warm-up that
    would outlast the whole run (a slow model's ten default runs), as in the throughput pass."""
    start = time.perf_counter()
    count = 0
    while count < settings.warmup_min_iterations or time.perf_counter() - start < settings.warmup_min_seconds:
        infer()
        count += 1
        if time.perf_counter() - start >= settings.max_seconds:
            break
    return count, time.perf_counter() - start


def timed_loop(infer, settings):
    """Raw per-inference samples in ms, and the rule that stopped the loop."""
    clock = time.perf_counter_ns
    samples = []
    append = samples.append
    min_ns, max_ns = int(settings.min_seconds * 1e9), int(settings.max_seconds * 1e9)
    start = clock()
    next_report = start + 1000000000
    while True:
        t0 = clock()
        infer()
        t1 = clock()
        append(t1 - t0)
        n, elapsed = len(samples), t1 - start
        if n >= settings.min_iterations and elapsed >= min_ns:
            stopped_by = "min_iterations_and_duration"
            break
        if n >= settings.max_iterations:
            stopped_by = "max_iterations"
            break
        if elapsed >= max_ns:
            stopped_by = "max_duration"
            break
        if t1 >= next_report:
            report("measure", "%d runs, %.1f s" % (n, elapsed / 1e9))
            next_report = t1 + 1000000000
    return [s / 1e6 for s in samples], stopped_by, (clock() - start) / 1e9
