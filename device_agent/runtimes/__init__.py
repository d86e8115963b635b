"""Runtime adapters, one per file, found by name. Nothing heavy is imported until one is used,
and a runtime missing on the device disables only its own adapter."""
import importlib

from .. import AgentError

# name -> "module:Class". The one list: tests import every entry and check its name.
ADAPTERS = {
    "onnxruntime": "device_agent.runtimes.onnxruntime:OnnxRuntimeAdapter",
    "openvino": "device_agent.runtimes.openvino:OpenVinoAdapter",
    "litert": "device_agent.runtimes.litert:LiteRtAdapter",
    "tensorrt": "device_agent.runtimes.tensorrt:TensorRtAdapter",
}


def adapter_class(name):
    if name not in ADAPTERS:
        raise AgentError("this agent has no adapter for runtime %r (known: %s)" % (name, ", ".join(sorted(ADAPTERS))))
    module, cls = ADAPTERS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def available():
    """{name: version or None} for every adapter, without loading any model."""
    out = {}
    for name in ADAPTERS:
        cls = adapter_class(name)
        out[name] = cls.installed_version()
    return out
