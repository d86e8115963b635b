"""NVIDIA GPUs: NVML through nvidia-ml-py (`import pynvml`), imported only when this reader is probed.

Energy comes from nvmlDeviceGetTotalEnergyConsumption (mJ since the driver loaded; Volta and
newer) where every GPU offers it; otherwise power is sampled with nvmlDeviceGetPowerUsage (mW),
which on Ampere and newer is a one-second running average (nvidia-smi's power.draw), so peaks
are smoothed. Every GPU NVML lists is read; the total is their sum (board power, not the host).
"""
import importlib

from .base import PowerReader, Sample, SensorError, first_readable, now


class NvmlReader(PowerReader):
    name = "nvml"
    kind = "watts"
    default_rate_hz = 10.0

    def __init__(self, config, nvml, handles, names, kind):
        PowerReader.__init__(self, config)
        self.nvml, self.handles, self.names, self.kind = nvml, handles, names, kind
        self.start_mj = None

    @classmethod
    def probe(cls, config):
        try:
            nvml = importlib.import_module("pynvml")
        except ImportError:
            return None, "nvidia-ml-py is not installed (pip install nvidia-ml-py)"
        try:
            nvml.nvmlInit()
            handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
            names = ["GPU%d %s" % (i, _text(nvml.nvmlDeviceGetName(h))) for i, h in enumerate(handles)]
        except nvml.NVMLError as e:
            return None, "NVML unavailable: %s" % e
        if not handles:
            nvml.nvmlShutdown()
            return None, "NVML lists no GPU"
        kind = "energy" if _has_energy_counter(nvml, handles) else "watts"
        reader = cls(config, nvml, handles, names, kind)
        error = first_readable(reader)
        if error is not None:
            reader.close()
            return None, "NVML power unreadable: %s" % error
        return reader, None

    def read(self):
        try:
            if self.kind == "energy":
                values = [self.nvml.nvmlDeviceGetTotalEnergyConsumption(h) / 1e3 for h in self.handles]  # mJ -> J
            else:
                values = [self.nvml.nvmlDeviceGetPowerUsage(h) / 1e3 for h in self.handles]  # mW -> W
        except self.nvml.NVMLError as e:
            raise SensorError("NVML: %s" % e)
        t = now()
        if self.kind == "energy":  # joules since this reader opened, like every energy reader
            if self.start_mj is None:
                self.start_mj = values
            values = [v - s for v, s in zip(values, self.start_mj)]
        rails = dict(zip(self.names, values))
        return Sample(t, sum(values), rails)

    def sensor(self):
        return "NVML (%s)" % ", ".join(self.names)

    def rails(self):
        return list(self.names)

    def total(self):
        return "board power of every GPU NVML lists"

    def notes(self):
        if self.kind == "energy":
            return ["energy from NVML's total energy counter; GPU board power only, not the host CPU"]
        return ["power from nvmlDeviceGetPowerUsage: a 1 s running average on Ampere and newer GPUs, so peak_w is "
                "smoothed; GPU board power only, not the host CPU"]

    def close(self):
        try:
            self.nvml.nvmlShutdown()
        except self.nvml.NVMLError:
            pass  # already shut down or never started: nothing held


def _has_energy_counter(nvml, handles):
    try:
        for h in handles:
            nvml.nvmlDeviceGetTotalEnergyConsumption(h)
    except nvml.NVMLError:  # NotSupported before Volta
        return False
    return True


def _text(name):
    return name.decode() if isinstance(name, bytes) else str(name)
