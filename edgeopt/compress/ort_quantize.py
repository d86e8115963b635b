"""Static INT8 (QDQ, per-channel, calibrated) and dynamic quantization with onnxruntime.quantization.

Scheme choice is measured, not ORT's default: S8S8 ran at 0.78-0.95x of FP32 latency on
x86 while U8S8 (uint8 activations, int8 per-channel weights) ran at 0.3-0.47x (RUNTIME-NOTES).
The profile's int8_scheme picks it and the manifest records which was used.
"""
from __future__ import annotations

import contextlib
import logging

from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                      quantize_dynamic, quantize_static)

from ..data import feeds, sample_count

SCHEMES = {"u8s8": ("QUInt8", "QInt8"), "s8s8": ("QInt8", "QInt8")}
CONV_OPS = {"Conv", "ConvTranspose"}


@contextlib.contextmanager
def _quiet_root_logger():
    """onnxruntime.quantization logs a pre-processing tip on the root logger at WARNING on every call."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


class _Reader(CalibrationDataReader):
    """Feeds calibration samples one at a time and advances the progress bar as ORT pulls them."""

    def __init__(self, calibration, inputs, progress):
        self.calibration, self.inputs, self.progress = calibration, inputs, progress
        self.count = sample_count(calibration)
        self.rewind()

    def get_next(self):
        # Whole model calls only (edgeopt.data.feeds): a fixed-batch model cannot take a short tail.
        _, size, feed = next(self.calls, (None, 0, None))
        self.progress.advance(size)
        return feed

    def rewind(self):
        self.calls = feeds(self.calibration, self.inputs)


def quantize(source, request, out, progress) -> dict:
    import onnx

    op_types = {n.op_type for n in onnx.load(str(source.onnx_path)).graph.node}
    if request.quantize == "dynamic":
        progress.status("dynamic INT8 quantization")
        with _quiet_root_logger():
            quantize_dynamic(str(source.onnx_path), str(out), weight_type=QuantType.QInt8)
        notes = []
        if op_types & CONV_OPS:
            notes.append("dynamic quantization turns Conv into ConvInteger, measured 3.5-8x slower on CPUs; "
                         "prefer --quantize int8 for conv nets")
        return {"method": "dynamic", "weights": "int8", "notes": notes}
    scheme = request.int8_scheme if request.int8_scheme in SCHEMES else "u8s8"
    act, wt = (getattr(QuantType, name) for name in SCHEMES[scheme])
    reader = _Reader(request.calibration, source.inputs, progress)
    progress.start("calibrating INT8", total=reader.count, unit="samples")
    try:
        with _quiet_root_logger():
            quantize_static(str(source.onnx_path), str(out), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=act, weight_type=wt, calibrate_method=CalibrationMethod.MinMax)
    finally:
        progress.finish()
    return {"method": "static", "format": "QDQ", "scheme": scheme, "activations": str(act), "weights": str(wt),
            "per_channel": True, "calibration": {"method": "MinMax", "samples": reader.count}}
