"""Resident memory of the measuring process.

Peak during inference uses Linux's VmHWM high-water mark, reset just before the timed loop
by writing 5 to /proc/self/clear_refs, so model-load spikes do not count as inference peak.
Where that reset is refused, the peak is the whole process's and the result says so.
"""
import os

_MB = 1024.0 * 1024.0


def _status_kb(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_mb():
    kb = _status_kb("VmRSS")
    if kb is not None:
        return kb / 1024.0
    try:
        import psutil
    except ImportError:
        return None
    return psutil.Process().memory_info().rss / _MB


def reset_peak():
    """Reset the high-water mark; True when the kernel accepted it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_mb():
    kb = _status_kb("VmHWM")
    if kb is not None:
        return kb / 1024.0
    try:
        import resource  # ru_maxrss is KiB on Linux, bytes on macOS
    except ImportError:
        return None
    scale = 1.0 / _MB if os.uname().sysname == "Darwin" else 1.0 / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def swap_mb():
    kb = _status_kb("VmSwap")
    return None if kb is None else kb / 1024.0
