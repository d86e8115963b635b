"""NVIDIA Jetson: power rails from `tegrastats`, for boards whose INA3221 sysfs rails are hidden (a container
without /sys/bus/i2c, a vendor kernel). The ina3221 reader is preferred: it reads the monitor directly.

tegrastats prints one line per interval; its rail fields differ by generation (fixtures in
tests/power/fixtures/tegrastats/, each with its source):
    Nano (JetPack 4)        POM_5V_IN 4520/4680 POM_5V_GPU 0/0 POM_5V_CPU 1078/1205       (mW now/average)
    TX2/Xavier (JetPack 4)  VDD_IN 14025/14416 VDD_CPU 2209/2538 ...                    (mW now/average)
    Orin (JetPack 5/6)      VDD_GPU_SOC 2390mW/2390mW VDD_CPU_CV 400mW/400mW VIN_SYS_5V0 4032mW/4032mW
    Orin (JetPack 7)        VDD_GPU_SOC 5139mW/5139mW/5139mW ...                         (now/average/peak)
The first number is the present reading. The total is the module input rail where the line has one
(VDD_IN, POM_5V_IN, VIN_SYS_5V0 on Orin developer kits), else the sum of the rails, and the result says so.

`parse` is total: any text gives (rails, None) or ({}, the reason it was not recognised), never an exception.
"""
import re
import shlex
import subprocess
import threading

from .base import PowerReader, Sample, SensorError, now

# A rail: an upper-case name of the families tegrastats prints (so "RAM 4722/7844MB" or "EMC_FREQ 2%@1866" never
# match), then 2 or 3 readings in mW, with or without the unit.
RAIL = re.compile(r"(?<![A-Za-z0-9_])((?:VDD|VIN|POM)_[A-Z0-9_]+|VDDQ_[A-Z0-9_]+) "
                  r"(\d{1,9})(?:mW)?/(\d{1,9})(?:mW)?(?:/(\d{1,9})(?:mW)?)?(?![0-9A-Za-z/])")
INPUT_RAILS = ("VDD_IN", "POM_5V_IN", "VIN_SYS_5V0")
MAX_LINE = 8192


def parse(line):
    """({rail: watts now}, None) for a tegrastats line with rail readings, else ({}, why not)."""
    if not isinstance(line, str):
        return {}, "not text"
    if len(line) > MAX_LINE:
        return {}, "line longer than %d characters" % MAX_LINE
    rails = {}
    for m in RAIL.finditer(line):
        rails[m.group(1)] = int(m.group(2)) / 1e3
    if rails:
        return rails, None
    if "RAM " in line:
        return {}, "a tegrastats line without power rails (run tegrastats as root, or the board has no monitor)"
    return {}, "unrecognised: no tegrastats rail fields (NAME mW/mW) in %r" % line[:60]


def total(rails):
    """(watts, what the figure is): the module input rail when present, else the sum of the rails."""
    for name in INPUT_RAILS:
        if name in rails:
            return rails[name], "%s (input rail)" % name
    return sum(rails.values()), "sum of rails " + " + ".join(sorted(rails))


class TegrastatsReader(PowerReader):
    """Runs `tegrastats --interval MS` for the reader's lifetime; read() gives the newest line's readings."""
    name = "tegrastats"
    kind = "watts"
    default_rate_hz = 10.0

    def __init__(self, config, argv):
        PowerReader.__init__(self, config)
        self.argv, self.latest, self.reason, self._rails = argv, None, "no line yet", []
        self.lock, self.first = threading.Lock(), threading.Event()
        interval = str(max(10, int(1000.0 / self.rate_hz())))
        try:
            self.proc = subprocess.Popen(argv + ["--interval", interval], stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL, universal_newlines=True)
        except OSError as e:
            raise SensorError("cannot run %s: %s" % (" ".join(argv), e.strerror or e))
        self.thread = threading.Thread(target=self._follow, name="edgeopt-tegrastats")
        self.thread.daemon = True
        self.thread.start()

    @classmethod
    def probe(cls, config):
        argv = shlex.split(config.tegrastats or "tegrastats")
        try:
            reader = cls(config, argv)
        except SensorError as e:
            return None, "no tegrastats: %s" % e
        try:
            reader.read(wait=3.0)
        except SensorError as e:
            reader.close()
            return None, "tegrastats gives no power readings: %s" % e
        return reader, None

    def _follow(self):
        for line in self.proc.stdout:
            rails, why = parse(line)
            with self.lock:
                self.latest, self.reason = ((now(), rails) if rails else self.latest), why
            self.first.set()
        self.first.set()

    def read(self, wait=0.0):
        self.first.wait(wait)
        with self.lock:
            latest, reason = self.latest, self.reason
        if latest is None:
            raise SensorError("%s: %s" % (" ".join(self.argv), reason))
        t, rails = latest
        self._rails = sorted(rails)
        return Sample(t, total(rails)[0], dict(rails))

    def sensor(self):
        return "tegrastats (%s)" % " ".join(self.argv)

    def rails(self):
        return list(self._rails)

    def total(self):
        if not self.latest:
            return "the input rail, or the sum of the rails"
        return total(self.latest[1])[1]

    def notes(self):
        return ["tegrastats prints a line per interval: a reading may be up to one interval old, and the rails "
                "are those of the board's power monitor (the carrier board and USB loads may be outside them)"]

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
