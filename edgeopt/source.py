"""The model every stage of the pipeline hands on: TensorSpec and SourceModel. A leaf module (it imports
nothing of edgeopt's at import time), so intake, transforms and backends all import it without a circle."""
from __future__ import annotations

import dataclasses
import pathlib


@dataclasses.dataclass
class TensorSpec:
    name: str
    shape: list
    dtype: str
    layout: str = ""
    quantization: dict | None = None   # {"scale", "zero_point"} of an integer (int8 I/O) tensor
    source_layout: str = ""            # the source model's layout when the artifact's differs
    source_dtype: str = ""             # the source model's dtype when the artifact's differs (LiteRT's int32 for int64)

    def to_dict(self):
        d = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}
        for key in ("layout", "source_layout", "source_dtype", "quantization"):
            if getattr(self, key):
                d[key] = getattr(self, key)
        return d


@dataclasses.dataclass
class SourceModel:
    reference: str          # what the user named
    format: str             # onnx | pytorch-module | torchscript | exported-program | openvino-ir | tflite
    sha256: str             # of the user's file (or of the module reference string)
    onnx_path: pathlib.Path | None  # the ONNX file with static input shapes (None for an IR source)
    inputs: list
    outputs: list
    notes: list
    ir_path: pathlib.Path | None = None  # an OpenVINO IR source (.xml, its .bin beside it)
    tflite_path: pathlib.Path | None = None  # a TFLite source, packaged as is
    # What simplification did ({"applied": bool, ...}, recorded in the manifest), and the ONNX file
    # as given with its shapes fixed: the parity reference, so a simplifier's mistake is caught.
    simplification: dict | None = None
    unsimplified_path: pathlib.Path | None = None
    torch_module: object = None  # a PyTorch source kept as a module (backends with takes_torch), no ONNX
    torch_examples: tuple = ()   # its example inputs, in argument order

    def reference_runner(self):
        """{input: array} -> [outputs] of the source model itself, in float32 on this host: the
        parity check's reference. ONNX Runtime for an ONNX source, OpenVINO (f32) for an IR,
        LiteRT for a .tflite, the module itself for a PyTorch source kept as a module."""
        if self.torch_module is not None:
            from .torch_export import reference_runner
            return reference_runner(self)
        if self.tflite_path is not None:
            from .litert_model import host_runner
            return host_runner(self.tflite_path)
        if self.ir_path is not None:
            from .ir import reference_runner
            return reference_runner(self.ir_path)
        from .convert.onnxruntime import ort_runner
        from .errors import BadInput, first_line
        try:
            return ort_runner(self.unsimplified_path or self.onnx_path)
        except Exception as e:   # onnxruntime's own error types: a model it cannot load was a traceback, exit 1
            raise BadInput(f"{self.reference}: onnxruntime cannot load the model, which the parity check runs as "
                           f"its reference: {first_line(e)[:300]}") from None
