"""The fake-quantize modules of quantization-aware training (edgeopt/compress/qat.py). torch is imported
at the top of this file, so it is imported only by qat.py's functions, never when transforms are listed.

Both use torch's own fake-quantize ops, which the TorchScript ONNX exporter (opset >= 13) writes as
QuantizeLinear/DequantizeLinear pairs: uint8 per-tensor asymmetric activations, int8 per-channel
symmetric weights.
"""
from __future__ import annotations

import numpy as np
import torch

QMIN, QMAX = 0, 255            # activations: uint8
# weights: int8 symmetric in 7 bits (scale = max|w| / 63, zero point 0), as static INT8's int8_weight_bits: ONNX
# Runtime's U8S8 kernels on an x86 CPU without VNNI saturate 8-bit products, and a QAT bundle trained on [-127, 127]
# read 0.77 top-1 there against 0.97 (an AVX2-only host); training adapts the weights to the coarser grid. The
# fake-quantize op keeps int8's range (ONNX's exporter takes no other); the scale keeps the weights within 7 bits
WMAX = 63


class ActivationQuantizer(torch.nn.Module):
    """Per-tensor fake quantization; records min/max while `observing`, then `fix` sets its range."""

    def __init__(self):
        super().__init__()
        self.register_buffer("scale", torch.tensor(1.0))
        self.register_buffer("zero_point", torch.tensor(0, dtype=torch.int32))
        self.observing, self.low, self.high = False, 0.0, 0.0  # the range always holds 0 (exact zero padding)

    def forward(self, x):
        if self.observing:
            self.low = min(self.low, float(x.detach().min()))
            self.high = max(self.high, float(x.detach().max()))
            return x
        return torch.fake_quantize_per_tensor_affine(x, self.scale, self.zero_point, QMIN, QMAX)

    def fix(self) -> None:
        scale = max((self.high - self.low) / (QMAX - QMIN), 1e-8)
        self.scale.fill_(scale)
        self.zero_point.fill_(int(np.clip(round(QMIN - self.low / scale), QMIN, QMAX)))
        self.observing = False


class QuantizedLayer(torch.nn.Module):
    """A Conv or Linear whose weights are fake-quantized per output channel: scales follow the weights
    while training, constant once `freeze`d (so the export holds constants)."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer
        self.register_buffer("weight_scale", None)

    def forward(self, x):
        layer = self.layer
        scale = self.weight_scale if self.weight_scale is not None else weight_scale(layer.weight)
        zero = torch.zeros_like(scale, dtype=torch.int32)
        weight = torch.fake_quantize_per_channel_affine(layer.weight, scale, zero, 0, -128, 127)
        if isinstance(layer, torch.nn.Linear):
            return torch.nn.functional.linear(x, weight, layer.bias)
        return layer._conv_forward(x, weight, layer.bias)

    def freeze(self) -> None:
        self.weight_scale = weight_scale(self.layer.weight)


def weight_scale(weight):
    """Per output channel: max|w| / WMAX, so the int8 weights span [-WMAX, WMAX]."""
    return weight.detach().abs().amax(dim=tuple(range(1, weight.dim()))).clamp_min(1e-8) / WMAX
