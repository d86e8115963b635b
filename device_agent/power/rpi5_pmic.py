"""Raspberry Pi 5: the PMIC's ADC rails, from `vcgencmd pmic_read_adc`.

The firmware prints one line per channel, currents and voltages apart:

       VDD_CORE_A current(7)=0.61588800A
       VDD_CORE_V volt(15)=0.72037500V
          EXT5V_V volt(24)=5.16289600V

Power is volts x amps summed over the rails that have both. The PMIC only sees the rails it
makes: the 5 V that goes straight from the USB-C input to USB devices, HATs, an NVMe drive
and the fan is not in it, so the board draws more at the wall (the result's notes say so).
A call costs the firmware about 0.1 s, hence a default of 5 samples a second.
"""
import re
import shlex

from .base import PowerReader, Sample, SensorError, first_readable, now, run_command

LINE = re.compile(r"^\s*(\S+)_([AV])\s+(?:current|volt)\(\d+\)=([-+0-9.eE]+)[AV]\s*$")


def parse(text):
    """{rail: watts} for every rail with both a current and a voltage line."""
    amps, volts = {}, {}
    for line in text.splitlines():
        m = LINE.match(line)
        if m:
            try:   # the pattern takes "1.2.3" and "e": a ValueError here ended the whole measurement
                value = float(m.group(3))
            except ValueError:
                raise SensorError("vcgencmd pmic_read_adc printed %r, not a number" % line.strip()[:80])
            (amps if m.group(2) == "A" else volts)[m.group(1)] = value
    return {rail: amps[rail] * volts[rail] for rail in sorted(amps) if rail in volts}


class Rpi5PmicReader(PowerReader):
    name = "rpi5-pmic"
    kind = "watts"
    default_rate_hz = 5.0

    def __init__(self, config):
        PowerReader.__init__(self, config)
        self.argv = shlex.split(config.vcgencmd) + ["pmic_read_adc"]
        self._rails = []

    @classmethod
    def probe(cls, config):
        reader = cls(config)
        error = first_readable(reader)
        if error is not None:
            return None, "no Raspberry Pi 5 PMIC readings: %s" % error
        return reader, None

    def read(self):
        t0 = now()
        text = run_command(self.argv, timeout=2.0)
        t = (t0 + now()) / 2  # the firmware's answer takes a while: stamp the middle
        rails = parse(text)
        if not rails:
            first = (text.strip().splitlines() or ["no output"])[0]
            raise SensorError("%s printed no rail readings (not a Raspberry Pi 5?): %s" % (" ".join(self.argv), first[:120]))
        self._rails = sorted(rails)
        return Sample(t, sum(rails.values()), rails)

    def sensor(self):
        return "Raspberry Pi 5 PMIC ADC (%s)" % " ".join(self.argv)

    def rails(self):
        return list(self._rails)

    def total(self):
        return "sum of volts x amps over the PMIC rails"

    def notes(self):
        return ["the Pi 5 PMIC does not see 5 V loads fed straight from the input (USB devices, HATs, NVMe, fan): "
                "power at the wall is higher"]
