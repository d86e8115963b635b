"""An external meter: a user command that prints the present power in watts, run at a set rate.

The command runs under /bin/sh (so `curl -s http://plug/status | jq .power` works) and the last
non-empty line of its output is the reading, a number with an optional `W`. It runs on the
device, at the sampling rate (default 1 Hz): keep it cheap, its own cost lands in the figures.
"""
import re

from .base import PowerReader, Sample, SensorError, first_readable, now, run_command, shown_command

NUMBER = re.compile(r"^\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*[wW]?\s*$")


def parse_watts(text):
    lines = [l for l in text.splitlines() if l.strip()]
    m = NUMBER.match(lines[-1]) if lines else None
    if not m:
        raise SensorError("the meter command printed %r, not a number of watts" % (lines[-1][:80] if lines else ""))
    return float(m.group(1))


class ExternalReader(PowerReader):
    name = "external"
    kind = "watts"
    default_rate_hz = 1.0

    @classmethod
    def probe(cls, config):
        if not config.power_command:
            return None, "no meter command given (--power-command)"
        reader = cls(config)
        error = first_readable(reader)
        if error is not None:
            return None, "external meter unusable: %s" % error
        return reader, None

    def read(self):
        t0 = now()
        text = run_command(self.config.power_command, timeout=max(2.0, 2.0 / self.rate_hz()), shell=True)
        t = (t0 + now()) / 2
        watts = parse_watts(text)
        return Sample(t, watts, {"meter": watts})

    def sensor(self):
        return "external meter: %s (--power-command)" % shown_command(self.config.power_command)

    def rails(self):
        return ["meter"]

    def total(self):
        return "the meter's reading"

    def notes(self):
        return ["figures are whatever the meter measures (often the whole board at the wall), sampled at %.3g Hz"
                % self.rate_hz()]
