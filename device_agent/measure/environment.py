"""The device's state as a measurement starts: CPU governor and clocks, load average, running processes, and on
a Jetson its software versions, power mode and GPU/EMC clocks (jetson.py).

A slow run is often explained by the state it started in (a `powersave` governor, a clock capped
low, a board already busy), so the result records it. Every path goes through the agent's sysfs
root (`SensorConfig.path`), like thermal.py, so recorded trees are read by the same code as a
board. What the device does not expose is absent with the reason, never guessed.
"""
import os

from ..power.base import SensorError, optional_text, read_text
from . import jetson
from .thermal import policies, policy_mhz

# cpufreq file -> key in the result (kHz files become MHz)
FREQ_FILES = (("scaling_cur_freq", "cur_mhz"), ("scaling_min_freq", "min_mhz"), ("scaling_max_freq", "max_mhz"),
              ("cpuinfo_min_freq", "hw_min_mhz"), ("cpuinfo_max_freq", "hw_max_mhz"))


def cpufreq(config):
    """{policy: {"governor", "cpus", "cur_mhz", "min_mhz", "max_mhz", "hw_min_mhz", "hw_max_mhz"}}, what is readable."""
    out = {}
    for policy in policies(config):
        entry = {}
        governor = optional_text(os.path.join(policy, "scaling_governor"))
        if governor:
            entry["governor"] = governor
        cpus = optional_text(os.path.join(policy, "related_cpus")) or optional_text(os.path.join(policy, "affected_cpus"))
        if cpus:
            entry["cpus"] = cpus
        entry.update(policy_mhz(policy, FREQ_FILES))
        out[os.path.basename(policy)] = entry
    return out


def load(config):
    """Load averages and process counts from /proc/loadavg and /proc/stat; raises SensorError if unreadable."""
    fields = read_text(config.path("proc", "loadavg")).split()
    try:
        out = {"load_1m": float(fields[0]), "load_5m": float(fields[1]), "load_15m": float(fields[2])}
        runnable, _, total = fields[3].partition("/")
        out["processes"] = int(total)
        out["runnable"] = int(runnable)  # scheduling entities runnable now, this process included
    except (IndexError, ValueError):
        raise SensorError("%s: unexpected content %r" % (config.path("proc", "loadavg"), " ".join(fields)[:60]))
    try:
        for line in read_text(config.path("proc", "stat")).splitlines():
            key, _, value = line.partition(" ")
            if key in ("procs_running", "procs_blocked"):
                out[key] = int(value)
    except (SensorError, ValueError):
        pass  # /proc/loadavg's count stands; /proc/stat only refines it
    return out


def read(config):
    """The environment section of the result."""
    env = {}
    policies = cpufreq(config)
    if policies:
        env["cpufreq"] = policies
    else:
        env["cpufreq_absent"] = "no cpufreq policies under %s" % config.path("sys", "devices", "system", "cpu", "cpufreq")
    try:
        env.update(load(config))
    except SensorError as e:
        env["load_absent"] = str(e)
    if jetson.is_jetson(config):
        env["jetson"] = jetson.read(config)
    return env
