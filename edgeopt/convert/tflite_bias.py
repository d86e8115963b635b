"""INT8 biases that fit in int32: the calibrated input range of a biased convolution or fully connected layer is
widened where its bias would overflow.

ai-edge-quantizer quantizes a bias to int32 at scale input_scale x weight_scale (per output channel), and casts
without clipping (`symmetric_quantize_bias_tensor`, check_error=False): where the input's calibrated range is
tiny (activations near 1e-8, as BatchNorm with untrained statistics leaves them) a bias of 0.04 needed 4e11,
and 99 % of one layer's biases became INT32_MIN whatever their sign. The model then passed calibration, and
a MobileNetV3's logits read 8.8 dB against 44 dB on ONNX Runtime, which enlarges the weight scale instead
(onnxruntime.quantization's _adjust_weight_scale_for_int32_bias). Widening that input's range until every
bias fits, with a margin, is the same remedy on the other factor: the layer's inputs lose resolution they
did not use, and nothing changes where the biases fit already (a trained network's).
"""
from __future__ import annotations

import numpy as np

INT32_MAX = 2 ** 31 - 1
MARGIN = 2.0                 # the bias fits with room to spare, as a range from more samples could be narrower
ZERO_WEIGHTS = 1e-9          # ai-edge-quantizer's floor for a channel's weight scale
ACTIVATION_LEVELS = 255      # int8 activations: the recipe's static_wi8_ai8
WEIGHT_LEVELS = 127          # int8 symmetric per-channel weights
# TFLite builtin operator codes with a bias input (index 2): CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED
BIASED_OPS = {3: "CONV_2D", 4: "DEPTHWISE_CONV_2D", 9: "FULLY_CONNECTED"}
DEPTHWISE = 4                # its weights are [1, H, W, channels]: the output channel is the last axis


def widen_for_bias(float_path, ranges: dict) -> list:
    """Widen `ranges` ({tensor name: {"min", "max", ...}}, the calibrator's) in place where an op's int32 bias
    would overflow at its calibrated input scale; returns the input tensors widened."""
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as flatbuffer

    model = flatbuffer.read_model(str(float_path))
    widened = []
    for graph in model.subgraphs:
        for op in graph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            kind = max(code.builtinCode, code.deprecatedBuiltinCode)
            if kind not in BIASED_OPS or len(op.inputs) < 3 or min(op.inputs[:3]) < 0:
                continue
            name = flatbuffer.get_tensor_name(graph.tensors[op.inputs[0]])
            if name not in ranges:
                continue
            weights = flatbuffer.get_tensor_data(graph.tensors[op.inputs[1]], model.buffers)
            bias = flatbuffer.get_tensor_data(graph.tensors[op.inputs[2]], model.buffers)
            if weights is None or bias is None:   # computed at run time: nothing to quantize ahead
                continue
            needed = _needed_input_scale(np.asarray(weights, np.float64), np.asarray(bias, np.float64),
                                         3 if kind == DEPTHWISE else 0)
            if _widen(ranges, name, needed):
                widened.append(name)
    return list(dict.fromkeys(widened))


def _needed_input_scale(weights, bias, channel_axis: int) -> float:
    """The least input scale at which every channel's bias fits in int32 (with MARGIN)."""
    per_channel = np.moveaxis(weights, channel_axis, 0).reshape(weights.shape[channel_axis], -1)
    largest = np.abs(per_channel).max(axis=1)
    bias = bias.reshape(-1)
    if bias.size != largest.size:
        largest = np.full(bias.size, largest.max())
    # a channel whose weights are all zero (a dead or pruned filter) is left out: no input scale fits its bias,
    # and widening for it would ruin every other channel's input
    live = largest > ZERO_WEIGHTS
    weight_scale = largest[live] / WEIGHT_LEVELS
    return float((np.abs(bias[live]) * MARGIN / (weight_scale * INT32_MAX)).max(initial=0.0))


def _widen(ranges: dict, name: str, needed: float) -> bool:
    entry = ranges[name]
    low, high = np.minimum(entry["min"], 0), np.maximum(entry["max"], 0)
    if float(np.max(high - low)) / ACTIVATION_LEVELS >= needed:
        return False
    half = needed * ACTIVATION_LEVELS / 2
    ranges[name] = dict(entry, min=np.minimum(entry["min"], -half).astype(np.float32),
                        max=np.maximum(entry["max"], half).astype(np.float32))
    return True
