"""Power readers, one per sensor family and file, found by name. Nothing is imported until a
reader is probed (pynvml only by the nvml reader), and a missing sensor only disables its reader."""
import importlib
import re

from .. import AgentError

# name -> "module:Class", in the order `auto` probes them. The one list: a test imports every
# entry and checks its name against its file (rpi5-pmic lives in rpi5_pmic.py).
READERS = {
    "ina3221": "device_agent.power.ina3221:Ina3221Reader",
    "tegrastats": "device_agent.power.tegrastats:TegrastatsReader",   # Jetsons whose sysfs rails are hidden
    "rpi5-pmic": "device_agent.power.rpi5_pmic:Rpi5PmicReader",
    "rapl": "device_agent.power.rapl:RaplReader",
    "nvml": "device_agent.power.nvml:NvmlReader",
    "hwmon": "device_agent.power.hwmon:HwmonReader",
    "external": "device_agent.power.external:ExternalReader",
}
CHOICES = ("auto", "none") + tuple(READERS)


def reader_class(name):
    if name not in READERS:
        raise AgentError("unknown power sensor %r (known: %s)" % (name, ", ".join(CHOICES)))
    module, cls = READERS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def candidates(config):
    """Readers to probe: the one named, or all for `auto` (the meter first when a command is given)."""
    if config.power_sensor == "none":
        return []
    if config.power_sensor != "auto":
        return [config.power_sensor]
    if config.power_command:
        return ["external"]
    return [n for n in READERS if n != "external"]


def open_reader(config):
    """(the first reader that probes successfully or None, {name: why not} for the others)."""
    tried = {}
    for name in candidates(config):
        reader, reason = reader_class(name).probe(config)
        if reader is not None:
            return reader, tried
        tried[name] = reason
    return None, tried


# What a reader's probe says of a sensor that is there but cannot be read (a file that holds no number, a vcgencmd
# that a user outside the video group cannot run), as against one that is not there at all: "no power sensor on
# this device" was said of both, and sent a Jetson or Pi user to an external meter.
FOUND_BUT_FAILING = ("unreadable", "failed with exit code", "Permission denied", "permission denied")


def _found_but_failing(reason):
    said = re.sub(r"/\S*", "", reason or "")   # the marks in the reader's words, not in a path it names
    return any(mark in said for mark in FOUND_BUT_FAILING)


def unavailable(config, tried):
    """The power section when nothing can be measured: never a zero, always the reason."""
    if config.power_sensor == "none":
        reason = "power measurement turned off (power_sensor none, or --no-power)"
    elif config.power_sensor == "auto" and not config.power_command:
        failing = [(name, why) for name, why in tried.items() if _found_but_failing(why)]
        reason = ("power sensor %s found but unreadable: %s" % failing[0] if failing else
                  "no power sensor on this device (tried %s)" % ", ".join(tried))
    else:
        name = candidates(config)[0]
        reason = "power sensor %s unavailable: %s" % (name, tried.get(name))
    return {"available": False, "reason": reason, "tried": tried}
