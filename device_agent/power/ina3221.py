"""NVIDIA Jetson: the module's INA3221 power monitor(s), in both JetPack layouts.

- JetPack 5 and later (upstream hwmon driver): /sys/bus/i2c/drivers/ina3221/<bus-addr>/hwmon/hwmon*/
  with `in<N>_label` (rail name), `in<N>_input` (bus mV) and `curr<N>_input` (mA), N = 1..3.
- JetPack 4 (NVIDIA's iio driver): /sys/bus/i2c/drivers/ina3221x/<bus-addr>/iio:device*/
  with `rail_name_<K>` and `in_power<K>_input` (mW), K = 0..2.

The total is the module's input rail (VDD_IN on Orin Nano/NX and Xavier NX, POM_5V_IN on
Nano) where the board has one; otherwise the sum of the rails, and the result says so.
"""
import glob
import os

from .base import PowerReader, Sample, SensorError, now, optional_text, read_number

INPUT_RAILS = ("VDD_IN", "POM_5V_IN")
UNCONNECTED = ("NC", "")


class _HwmonRail(object):
    def __init__(self, directory, index, label):
        self.label = label
        self.volts = os.path.join(directory, "in%d_input" % index)
        self.amps = os.path.join(directory, "curr%d_input" % index)

    def watts(self):
        return read_number(self.volts) * read_number(self.amps) / 1e6  # mV x mA


class _IioRail(object):
    def __init__(self, directory, index, label):
        self.label = label
        self.power = os.path.join(directory, "in_power%d_input" % index)

    def watts(self):
        return read_number(self.power) / 1e3  # mW


def _readable(rails, skipped):
    """(the rails that give a reading, None), the others left out with a note as a rail with a missing file is;
    ([], the error) where the module input rail, the total, or every rail reads nothing: a partial sum passed a
    power budget with no warning (a review). One bad sub-rail had disabled the reader (a user walkthrough)."""
    kept, first_error = [], None
    for rail in rails:
        try:
            rail.watts()
        except SensorError as e:
            if rail.label in INPUT_RAILS:
                return [], e
            first_error = first_error or e
            skipped.append("rail %s unreadable (%s): left out" % (rail.label, e))
            continue
        kept.append(rail)
    return (kept, None) if kept else ([], first_error)


def _hwmon_rails(config, skipped):
    rails = []
    for d in sorted(glob.glob(config.path("sys", "bus", "i2c", "drivers", "ina3221", "*", "hwmon", "hwmon*"))):
        for i in (1, 2, 3):
            label = optional_text(os.path.join(d, "in%d_label" % i), "")
            if label in UNCONNECTED or optional_text(os.path.join(d, "in%d_enable" % i), "1") == "0":
                continue
            missing = [f for f in ("in%d_input" % i, "curr%d_input" % i) if not os.path.exists(os.path.join(d, f))]
            if missing:
                skipped.append("rail %s has no %s in %s: left out" % (label, " or ".join(missing), d))
                continue
            rails.append(_HwmonRail(d, i, label))
    return rails


def _iio_rails(config, skipped):
    rails = []
    for d in sorted(glob.glob(config.path("sys", "bus", "i2c", "drivers", "ina3221x", "*", "iio:device*"))):
        for k in (0, 1, 2):
            label = optional_text(os.path.join(d, "rail_name_%d" % k), "")
            if label in UNCONNECTED:
                continue
            if not os.path.exists(os.path.join(d, "in_power%d_input" % k)):
                skipped.append("rail %s has no in_power%d_input in %s: left out" % (label, k, d))
                continue
            rails.append(_IioRail(d, k, label))
    return rails


class Ina3221Reader(PowerReader):
    name = "ina3221"
    kind = "watts"
    default_rate_hz = 20.0

    def __init__(self, config, rails, layout, skipped):
        PowerReader.__init__(self, config)
        self._rails, self.layout, self.skipped = rails, layout, skipped
        self.input_rail = next((r for r in rails if r.label in INPUT_RAILS), None)

    @classmethod
    def probe(cls, config):
        skipped = []
        rails, layout = _hwmon_rails(config, skipped), "hwmon (JetPack 5+)"
        if not rails:
            rails, layout = _iio_rails(config, skipped), "iio (JetPack 4)"
        if not rails:
            reason = "no INA3221 rails under %s (not a Jetson)" % config.path("sys", "bus", "i2c", "drivers")
            return None, reason + ("; " + "; ".join(skipped) if skipped else "")
        rails, error = _readable(rails, skipped)
        if error is not None:
            return None, "INA3221 rail unreadable: %s" % error
        return cls(config, rails, layout, skipped), None

    def read(self):
        rails = {}
        for r in self._rails:
            rails[r.label] = r.watts()
        t = now()
        total = rails[self.input_rail.label] if self.input_rail else sum(rails.values())
        return Sample(t, total, rails)

    def sensor(self):
        return "INA3221 power monitor, %s layout" % self.layout

    def rails(self):
        return [r.label for r in self._rails]

    def total(self):
        if self.input_rail:
            return "%s (module input)" % self.input_rail.label
        return "sum of rails " + " + ".join(self.rails())

    def notes(self):
        out = list(self.skipped)
        if not self.input_rail:
            out.append("no module input rail (VDD_IN/POM_5V_IN) read: the total is the sum of the rails above, "
                       "so loads outside them (carrier board, USB) are not counted")
        return out

