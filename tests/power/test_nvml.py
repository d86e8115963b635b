"""NVML through a stand-in pynvml (fixtures/nvml), and through the real one where a GPU exists."""
import importlib
import shutil
import sys

import pytest

from device_agent.power.base import SensorConfig, SensorError
from device_agent.power.nvml import NvmlReader
from powertrees import FIXTURES


@pytest.fixture
def fake_nvml(monkeypatch):
    monkeypatch.syspath_prepend(str(FIXTURES / "nvml"))
    monkeypatch.delitem(sys.modules, "pynvml", raising=False)
    module = importlib.import_module("pynvml")
    yield module
    sys.modules.pop("pynvml", None)


def test_energy_counter_is_used_where_every_gpu_has_one(fake_nvml):
    reader, reason = NvmlReader.probe(SensorConfig())
    assert reason is None and reader.kind == "energy" and reader.rails() == ["GPU0 NVIDIA Fake GPU"]
    assert reader.read().value == 0.0  # joules since the reader opened
    fake_nvml.GPUS[0]["energy_mj"] += 5000
    assert reader.read().value == pytest.approx(5.0)
    reader.close()
    assert fake_nvml.initialized is False


def test_power_usage_without_an_energy_counter_and_the_averaging_note(fake_nvml):
    fake_nvml.GPUS[0]["energy"] = False
    reader, _ = NvmlReader.probe(SensorConfig())
    assert reader.kind == "watts" and reader.read().value == pytest.approx(60.0)
    assert "1 s running average" in reader.notes()[0]


def test_gpu_lost_mid_run_is_a_failed_reading(fake_nvml):
    reader, _ = NvmlReader.probe(SensorConfig())
    fake_nvml.FAIL_AFTER = fake_nvml.reads
    with pytest.raises(SensorError, match="GPU is lost"):
        reader.read()


def test_without_nvidia_ml_py(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails as it does where the package is absent
    reader, reason = NvmlReader.probe(SensorConfig())
    assert reader is None and "nvidia-ml-py is not installed" in reason


def _live_reason():
    try:
        importlib.import_module("pynvml")
    except ImportError:
        return "nvidia-ml-py is not installed here"
    if shutil.which("nvidia-smi") is None:
        return "no NVIDIA driver here (no nvidia-smi)"
    return None


@pytest.mark.hardware
@pytest.mark.skipif(_live_reason() is not None, reason=str(_live_reason()))
def test_nvml_live():
    reader, reason = NvmlReader.probe(SensorConfig())
    assert reader is not None, reason
    first, second = reader.read(), reader.read()
    assert second.t > first.t and (second.value >= first.value if reader.kind == "energy" else second.value > 0)
    reader.close()
