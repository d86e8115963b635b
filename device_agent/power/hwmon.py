"""Any board that exposes power through the kernel's hwmon interface (Documentation/hwmon/sysfs-interface).

Per device under /sys/class/hwmon/hwmon*: `power<N>_input` (µW), else `power<N>_average` (µW),
else `curr<N>_input` (mA) x `in<N>_input` (mV) paired by channel number. The total is the sum of
every channel found: where one channel feeds another (an input rail and its sub-rails) that
counts twice, which is why boards with a known layout have a reader of their own.
"""
import glob
import os
import re

from .base import PowerReader, Sample, first_readable, now, optional_text, read_number

CHANNEL = re.compile(r"^(power|curr)(\d+)_(input|average)$")


class _Channel(object):
    def __init__(self, label, files, scale):
        self.label, self.files, self.scale = label, files, scale

    def watts(self):
        value = self.scale
        for f in self.files:
            value *= read_number(f)
        return value


def _device_channels(d, skipped):
    name = optional_text(os.path.join(d, "name"), os.path.basename(d))
    try:
        files = set(os.listdir(d))
    except OSError as e:
        skipped.append("%s: %s" % (d, e.strerror or e))
        return []

    def numbers(prefix, suffixes):
        found = (CHANNEL.match(f) for f in files)
        return sorted({int(m.group(2)) for m in found if m and m.group(1) == prefix and m.group(3) in suffixes})

    channels = []
    for n in numbers("power", ("input", "average")):
        f = "power%d_input" % n if "power%d_input" % n in files else "power%d_average" % n
        channels.append(_Channel(_label(d, name, "power", n), [os.path.join(d, f)], 1e-6))  # uW
    if channels:
        return channels
    for n in numbers("curr", ("input",)):
        if "in%d_input" % n not in files:
            skipped.append("%s curr%d_input has no in%d_input to pair with: left out" % (name, n, n))
            continue
        files_n = [os.path.join(d, "curr%d_input" % n), os.path.join(d, "in%d_input" % n)]
        channels.append(_Channel(_label(d, name, "curr", n), files_n, 1e-6))  # mA x mV
    return channels


def _label(d, name, prefix, n):
    label = optional_text(os.path.join(d, "%s%d_label" % (prefix, n))) or optional_text(os.path.join(d, "in%d_label" % n))
    return "%s/%s" % (name, label or "%s%d" % (prefix, n))


class HwmonReader(PowerReader):
    name = "hwmon"
    kind = "watts"
    default_rate_hz = 10.0

    def __init__(self, config, channels, skipped):
        PowerReader.__init__(self, config)
        self.channels, self.skipped = channels, skipped

    @classmethod
    def probe(cls, config):
        skipped, channels = [], []
        for d in sorted(glob.glob(config.path("sys", "class", "hwmon", "hwmon*"))):
            channels += _device_channels(d, skipped)
        if not channels:
            reason = "no hwmon power or current+voltage channels under %s" % config.path("sys", "class", "hwmon")
            return None, reason + ("; " + "; ".join(skipped) if skipped else "")
        reader = cls(config, channels, skipped)
        error = first_readable(reader)
        if error is not None:
            return None, "hwmon channel unreadable: %s" % error
        return reader, None

    def read(self):
        rails = {c.label: c.watts() for c in self.channels}
        return Sample(now(), sum(rails.values()), rails)

    def sensor(self):
        return "hwmon (%s)" % self.config.path("sys", "class", "hwmon")

    def rails(self):
        return [c.label for c in self.channels]

    def total(self):
        return "sum of " + " + ".join(self.rails())

    def notes(self):
        out = list(self.skipped)
        if len(self.channels) > 1:
            out.append("the total adds every hwmon channel: a channel that feeds another is counted twice")
        return out
