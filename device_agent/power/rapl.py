"""Intel/AMD x86: RAPL energy counters under /sys/class/powercap (Linux powercap framework).

Each zone (`intel-rapl:0` package-0, `intel-rapl:0:2` dram, `intel-rapl:1` psys, ...) has a
cumulative `energy_uj` that wraps at `max_energy_range_uj`. The total is the package zones plus
the DRAM zones: core/uncore are parts of a package and psys overlaps everything, so they are
reported as rails but not added. Since Linux 5.10 `energy_uj` is readable by root only
(CVE-2020-8694, the PLATYPUS power side channel); the probe says so instead of reporting nothing.
"""
import glob
import os

from .base import PowerReader, Sample, SensorError, first_readable, now, optional_text, read_number

POWERCAP = ("sys", "class", "powercap")


class _Zone(object):
    """One energy counter, with its wrap-arounds folded into a running total."""

    def __init__(self, path, rail, max_range_uj):
        self.path, self.rail, self.max_range_uj = path, rail, max_range_uj
        self.last_uj = None
        self.total_uj = 0.0

    def read_j(self):
        raw = read_number(os.path.join(self.path, "energy_uj"))
        if self.last_uj is not None:
            delta = raw - self.last_uj
            if delta < 0:  # wrapped: at most once, as long as we sample faster than one range
                delta += self.max_range_uj
            self.total_uj += delta
        self.last_uj = raw
        return self.total_uj / 1e6


def _zone_dirs(config):
    root = config.path(*POWERCAP)
    # `intel-rapl` (the control type) has no ':'; zones do. AMD CPUs use the same driver and names.
    dirs = sorted(d for d in glob.glob(os.path.join(root, "*rapl*:*")) if os.path.isfile(os.path.join(d, "energy_uj")))
    # `intel-rapl-mmio:0` (recent Intel client CPUs) is a second window onto the package domain that
    # `intel-rapl:0` (MSR) reads: its `name` is package-0 too, and summing both counted the package twice.
    msr = any(os.path.basename(d).startswith("intel-rapl:") for d in dirs)
    return [d for d in dirs if not (msr and os.path.basename(d).startswith("intel-rapl-mmio:"))]


def _rail_name(path, names):
    """package-0, package-0/dram, ...: zone names repeat across packages, so subzones carry their parent."""
    base = os.path.basename(path)
    name = names[path]
    parent = base.rsplit(":", 1)[0]
    parent_path = os.path.join(os.path.dirname(path), parent)
    if parent.count(":") >= 1 and parent_path in names:
        return "%s/%s" % (names[parent_path], name)
    return name


class RaplReader(PowerReader):
    name = "rapl"
    kind = "energy"
    default_rate_hz = 10.0

    def __init__(self, config, zones):
        PowerReader.__init__(self, config)
        self.zones = zones
        # Without a package zone (unusual), the top-level zones stand for the total.
        self.summed = [z for z in zones if _counts_in_total(z.rail)] or [z for z in zones if "/" not in z.rail]

    @classmethod
    def probe(cls, config):
        dirs = _zone_dirs(config)
        if not dirs:
            return None, "no RAPL zones under %s (intel_rapl driver not loaded, or not an x86 CPU)" % config.path(*POWERCAP)
        names = {d: optional_text(os.path.join(d, "name"), os.path.basename(d)) for d in dirs}
        try:
            zones = [_Zone(d, _rail_name(d, names), read_number(os.path.join(d, "max_energy_range_uj"))) for d in dirs]
        except SensorError as e:
            return None, "RAPL zone without a usable max_energy_range_uj: %s" % e
        reader = cls(config, zones)
        error = first_readable(reader)
        if error is not None:
            if error.permission:
                return None, ("RAPL energy counters are readable by root only since Linux 5.10 (CVE-2020-8694): %s; "
                              "run the agent as root or grant read access to energy_uj" % error)
            return None, "RAPL counter unreadable: %s" % error
        return reader, None

    def read(self):
        rails = {z.rail: z.read_j() for z in self.zones}
        return Sample(now(), sum(rails[z.rail] for z in self.summed), rails)

    def sensor(self):
        return "RAPL energy counters (%s)" % self.config.path(*POWERCAP)

    def rails(self):
        return [z.rail for z in self.zones]

    def total(self):
        return " + ".join(z.rail for z in self.summed)

    def notes(self):
        return ["RAPL is the CPU package (and DRAM where reported), not the whole machine at the wall"]


def _counts_in_total(rail):
    leaf = rail.rsplit("/", 1)[-1]
    return leaf.startswith("package") or leaf == "dram"

