"""Conversion backends, one per file, found by name through this one registry.

A profile may name a backend that this version cannot convert for yet: the registry says
so in a clear error instead of failing somewhere deep in a conversion.
"""
from __future__ import annotations

import importlib

from ..errors import BackendUnavailable

# name -> "module:Class"; None marks a backend the profile format already knows but this
# version does not implement. Tests import every implemented entry and check its name.
BACKENDS = {
    "onnxruntime": "edgeopt.convert.onnxruntime:OnnxRuntimeBackend",
    "openvino": "edgeopt.convert.openvino:OpenVinoBackend",
    "tflite": "edgeopt.convert.tflite:LiteRtBackend",
    "tensorrt": "edgeopt.convert.tensorrt:TensorRtBackend",
}


def backend_for(profile, name: str | None = None):
    """The profile's backend, or `name`: one of the backends the profile's hardware runs (profile.backends)."""
    if name is not None and name not in profile.backends:
        from ..errors import BadInput
        raise BadInput(f"--backend {name}: profile {profile.name!r} runs {', '.join(profile.backends)}", option="backend")
    target = BACKENDS.get(name or profile.backend)
    if target is None:
        ready = ", ".join(k for k, v in BACKENDS.items() if v)
        raise BackendUnavailable(
            f"profile {profile.name!r} uses backend {name or profile.backend!r}, which this version of edgeopt "
            f"cannot convert for yet (available: {ready}); use --profile generic meanwhile")
    return _backend_class(target)()


def _backend_class(target: str):
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)


def backends_reading(fmt: str) -> list:
    """Names of the implemented backends that take a source model of format `fmt`."""
    return [name for name, target in BACKENDS.items() if target and fmt in _backend_class(target).source_formats]
