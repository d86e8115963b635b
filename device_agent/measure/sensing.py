"""Power and heat around one measured run, inside the measuring process.

Order (run.py): open the power reader -> idle baseline window (the process loaded but idle,
sampled for idle_seconds) -> thermal snapshot -> warm-up -> timed loop, sampled in a background
thread (power at the reader's rate, thermal zones and CPU frequency every 0.25 s) -> thermal snapshot. Only the
timed loop's window makes the inference figures and the timelines; the idle window makes idle_w.
"""
import time

from ..power import open_reader, unavailable
from ..power.sampler import Sampler
from ..power.summary import power_section, power_timeline, window_figures
from ..progress import report
from . import thermal


class RunSensors(object):
    def __init__(self, config):
        self.config = config
        self.reader, self.tried = open_reader(config)
        self.idle = self.loop_sampler = self.before = self.after = None
        if self.reader is not None:
            d = self.reader.describe()
            report("power", "%s: %s at %.3g Hz" % (d["reader"], d["total"], d["sample_rate_hz"]))

    def _power_source(self):
        if self.reader is None:
            return None
        return ("power", self.reader.read, 1.0 / self.reader.rate_hz())

    def _figures(self, sampler):
        return window_figures(self.reader.kind, sampler.values["power"], sampler.errors["power"], sampler.t_start,
                              sampler.t_end, 1.0 / self.reader.rate_hz())

    def idle_baseline(self):
        if self.reader is None or self.config.idle_seconds <= 0:
            return
        report("power", "idle baseline: %.1f s" % self.config.idle_seconds)
        with Sampler([self._power_source()]) as sampler:
            time.sleep(self.config.idle_seconds)
        self.idle = self._figures(sampler)

    def snapshot_before(self):
        self.before = thermal.snapshot(self.config)

    def loop(self):
        """The sampler to hold open around the timed loop (a context manager)."""
        self.loop_sampler = Sampler([self._power_source(), thermal.timeline_source(self.config)])
        return self.loop_sampler

    def snapshot_after(self):
        self.after = thermal.snapshot(self.config)

    def results(self, inferences, loop_seconds):
        """(power section, thermal section, warnings)."""
        warnings = []
        if self.reader is None:
            power = unavailable(self.config, self.tried)
        else:
            power, warnings = power_section(self.reader.describe(), self.idle, self._figures(self.loop_sampler),
                                            inferences, loop_seconds)
            if self.tried:
                power["tried"] = self.tried
            self._add_power_timeline(power)
        s = self.loop_sampler
        heat, heat_warnings = thermal.section(self.config, self.before, self.after, s.values.get("thermal", []),
                                              s.t_start, s.errors.get("thermal", []))
        return power, heat, heat_warnings + warnings

    def _add_power_timeline(self, power):
        if not power["available"]:
            return
        s = self.loop_sampler
        line = power_timeline(self.reader.kind, s.values["power"], s.t_start, 1.0 / self.reader.rate_hz())
        if line is None:
            power["timeline_absent"] = "fewer than two usable readings an interval apart in the timed loop"
        else:
            power["timeline"] = line

    def close(self):
        if self.reader is not None:
            self.reader.close()
