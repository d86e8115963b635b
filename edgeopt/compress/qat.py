"""Quantization-aware training for INT8: the module is trained with INT8 rounding simulated in its
forward pass, so that its weights adapt to the grid they will run on. For when post-training
quantization loses more accuracy than the budget allows.

The result is a float module with fake-quantize ops whose ONNX export (the TorchScript exporter,
opset >= 13) is a QDQ graph: QuantizeLinear/DequantizeLinear pairs around every Conv and Linear.
`details["qdq"]` tells the pipeline to skip the backend's own post-training quantization: ONNX Runtime
fuses the pairs into QLinearConv/QGemm, OpenVINO reads them as FakeQuantize.

How it is built (torch's own fake-quantize ops, no quantization framework):
1. torch.fx traces the module; each BatchNorm right after a Conv (or Linear) is folded into it, so
   the exported graph has no BatchNorm between a Conv and its quantizers (an unfused BatchNorm keeps
   ONNX Runtime from forming QLinearConv: slower than FP32, see ort_quantize.py).
2. Quantizers are inserted: before each Conv/Linear input that is not already quantized, and after
   its output (after a ReLU that directly follows it), uint8 per-tensor asymmetric; its weights are
   int8 per-channel symmetric in 7 bits (the u8s8 scheme ort_quantize.py measured fastest on x86; 7 bits as its
   int8_weight_bits, since a CPU without VNNI saturates 8-bit products: qat_modules.WMAX).
3. Activation ranges are calibrated once (min/max over the calibration samples) and then fixed;
   training moves the weights (straight-through gradients), not the ranges.
4. Training is distill.fit: cross-entropy on the labels, or without labels, distillation from the
   float module as it came into this step.
5. Weight scales are frozen from the trained weights, so the export has constant scales.

Limits: the module must be traceable by torch.fx; only Conv1d/2d/3d and Linear modules are quantized
(functional F.conv2d/F.linear calls, ConvTranspose, attention's matmuls stay float); Add/Concat/pooling
outputs get no quantizer of their own, so where no layer's quantizer follows them ONNX Runtime runs them
in float between dequantize and quantize; ranges are not learned, so one activation outlier still
coarsens its tensor's grid (the weights learn to live with it, which is what recovers the accuracy).
The export keeps float weights behind QuantizeLinear; ONNX Runtime's basic optimizer (edgeopt's
simplify step) folds them into int8 initializers.
"""
from __future__ import annotations

import copy
import dataclasses

import numpy as np

from ..data import LABELS
from ..errors import BadInput
from .base import Transform, TransformResult, option, register, training_batches
from .distill import Training, fit

CALIBRATION_ROWS = 512
CALIBRATION_BATCH = 64


@dataclasses.dataclass(frozen=True)
class QatOptions:
    epochs: int = option(3, "passes over the training data with INT8 simulated (0: the quantizers calibrated, "
                         "no training)", low=0, search=(1, 10))
    lr: float = option(1e-4, "learning rate (Adam)", low=0, low_open=True, search=(1e-5, 1e-3), log=True)
    batch_size: int = option(64, "samples per training step", low=1)


@register
class Qat(Transform):
    name = "qat"
    summary = "quantization-aware training for INT8: a QDQ model the backends run as INT8"
    Options = QatOptions
    needs_training_data = True
    makes_qdq_graph = True
    screens_untrained = True

    def untrained(self, options: dict) -> dict | None:
        """The quantizers inserted and calibrated, no epoch run: the trained model's QDQ graph, so its speed."""
        return {**options, "epochs": 0}

    def apply(self, module, options, context) -> TransformResult:
        module = module.eval()
        reference = copy.deepcopy(module)  # the float module: distillation target without labels
        graph, layout = _prepare(module)
        calibration, source = (context.calibration, "calibration") if context.calibration is not None \
            else (context.train, "train")
        rows = _calibrate(graph, calibration, context)
        labelled = LABELS in context.train
        settings = Training(options.epochs, options.lr, options.batch_size, alpha=0.0 if labelled else 1.0,
                            label="qat")
        details, notes = (fit(graph, reference, context, settings, train_mode=_train_mode) if options.epochs
                          else ({"epochs": 0, "held_out": {"metric": None, "reason": "epochs=0: not trained"}},
                                ["qat: epochs=0: the quantizers calibrated, the weights not trained"]))
        _freeze(graph)
        if not labelled and options.epochs:
            notes.append("the training data has no labels: trained to match the float module's outputs")
        if layout["left_float"]:
            shown = ", ".join(layout["left_float"][:3]) + (", ..." if len(layout["left_float"]) > 3 else "")
            notes.append(f"qat: {len(layout['left_float'])} of {layout['quantized_layers'] + len(layout['left_float'])} "
                         f"Conv/Linear layers stay float ({shown}): the traced graph does not call them as layers "
                         "(they sit inside a torch.nn module that torch.fx keeps whole, such as nn.MultiheadAttention "
                         "or nn.TransformerEncoder, or a functional call reads their weights), so no quantizer was "
                         "inserted")
        if layout["unfolded_batchnorm"]:
            notes.append(f"{layout['unfolded_batchnorm']} BatchNorm layer(s) do not follow a Conv or Linear and stay "
                         "unfolded (statistics frozen); ONNX Runtime cannot fuse INT8 around them")
        held = details["held_out"]
        if "teacher" in held:
            held["float"] = held.pop("teacher")
        if held["metric"]:
            held["before_is"] = "INT8 simulated right after calibration (post-training quantization), before training"
        details = {"qdq": True, "scheme": {"activations": "uint8 per-tensor asymmetric",
                                           "weights": "int8 per-channel symmetric, 7 bits"},
                   **layout, "calibration": {"from": source, "samples": rows, "method": "MinMax"}, **details}
        return TransformResult(graph.eval(), details, notes)


def _fx_name_clash(module) -> str:
    """Why tracing failed where a top-level submodule has the name of an attribute torch.fx's GraphModule sets
    (`meta`: "cannot assign 'dict' as child module 'meta'", which did not say to rename it)."""
    import torch

    own = set(dir(torch.fx.GraphModule)) - set(dir(torch.nn.Module)) | {"meta", "graph", "code"}
    clash = sorted(name for name, _ in module.named_children() if name in own)
    if not clash:
        return ""
    return (f": the submodule{'s' if len(clash) > 1 else ''} {', '.join(repr(n) for n in clash)} "
            f"{'have names' if len(clash) > 1 else 'has a name'} torch.fx's GraphModule uses itself; rename "
            f"{'them' if len(clash) > 1 else 'it'} in the model (its weights' keys with it)")


def _prepare(module) -> tuple:
    """(traced module with quantizers, what was changed)."""
    import torch

    try:
        graph = torch.fx.symbolic_trace(module)
    except Exception as e:  # torch.fx raises TraceError, TypeError, NotImplementedError... for untraceable code
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise BadInput(f"transform qat: the module cannot be traced by torch.fx ({first}); quantization-aware "
                       f"training inserts its quantizers on the traced graph{_fx_name_clash(module)}") from None
    folded = _fold_batchnorm(graph)
    layers, quantizers = _insert_quantizers(graph)
    if not layers:
        raise BadInput("transform qat: the module has no Conv or Linear layer to quantize")
    unfolded = sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in graph.modules())
    left_float = _left_float(module, graph)
    return graph, {"quantized_layers": layers, "activation_quantizers": quantizers, "folded_batchnorm": folded,
                   "unfolded_batchnorm": unfolded, "left_float": left_float}


def _left_float(module, graph) -> list:
    """The Conv and Linear layers of `module` that the traced graph does not call as layers, so left float: those
    inside a torch.nn module that torch.fx traces as one leaf (nn.TransformerEncoder, nn.MultiheadAttention), and
    a layer whose weight a functional call reads. A transformer's INT8 read "quantized_layers: 2" for 8, unsaid."""
    import torch

    from ..qat_modules import QuantizedLayer

    layer_types = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
    quantized = {name for name, m in graph.named_modules() if isinstance(m, QuantizedLayer)}   # fx keeps the paths
    return [name for name, m in module.named_modules() if isinstance(m, layer_types) and name not in quantized]


def _fold_batchnorm(graph) -> int:
    """Fold each BatchNorm that is the only user of a Conv (Linear) into it; how many were folded."""
    import torch
    from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

    modules = dict(graph.named_modules())
    folded = 0
    for node in list(graph.graph.nodes):
        bn = modules.get(node.target) if node.op == "call_module" else None
        source = node.args[0] if bn is not None and node.args else None
        if not isinstance(bn, torch.nn.modules.batchnorm._BatchNorm) or getattr(source, "op", "") != "call_module" \
                or len(source.users) != 1:
            continue
        layer = modules[source.target]
        if type(layer) in (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d):
            fused = fuse_conv_bn_eval(layer, bn)
        elif type(layer) is torch.nn.Linear and isinstance(bn, torch.nn.BatchNorm1d):
            fused = fuse_linear_bn_eval(layer, bn)
        else:
            continue
        _set_module(graph, source.target, fused)
        node.replace_all_uses_with(source)
        graph.graph.erase_node(node)
        folded += 1
    graph.delete_all_unused_submodules()
    graph.recompile()
    return folded


def _insert_quantizers(graph) -> tuple:
    """(layers, activation quantizers): weights of each Conv/Linear fake-quantized per channel, its input
    and output per tensor (an input another quantizer already covers is not quantized twice)."""
    from ..qat_modules import QuantizedLayer

    modules = dict(graph.named_modules())
    quantized = set()      # nodes whose value is already fake-quantized
    layers = 0
    for node in list(graph.graph.nodes):
        if _kind(node, modules) != "layer":
            continue
        source = node.args[0]
        while _kind(source, modules) == "identity" and source not in quantized:
            source = source.args[0]  # Dropout/Identity pass a quantized value on unchanged
        if source not in quantized:
            quantized.add(_quantize_after(graph, source))
        _set_module(graph, node.target, QuantizedLayer(modules[node.target]))
        quantized.add(_quantize_after(graph, _activation_after(node, modules)))
        layers += 1
    graph.graph.lint()
    graph.recompile()
    return layers, len(quantized)


def _kind(node, modules) -> str:
    import torch
    import torch.nn.functional as F

    if node.op == "call_module":
        m = modules.get(node.target)
        if type(m) in (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.Linear):
            return "layer"
        if isinstance(m, (torch.nn.ReLU, torch.nn.ReLU6)):
            return "relu"
        return "identity" if isinstance(m, (torch.nn.Identity, torch.nn.Dropout)) else "other"
    if node.op == "call_function" and node.target in (torch.relu, F.relu, F.relu6):
        return "relu"
    if node.op == "call_method" and node.target == "relu":
        return "relu"
    return "other"


def _activation_after(node, modules):
    """The ReLU that alone follows a layer (through Identity/Dropout), else the layer itself: the
    quantizer goes after it, so ONNX Runtime folds the ReLU into the quantized Conv."""
    current = node
    while len(current.users) == 1:
        user = next(iter(current.users))
        kind = _kind(user, modules)
        if kind == "relu":
            return user
        if kind != "identity":
            break
        current = user
    return node


def _quantize_after(graph, node):
    """Insert an activation quantizer on `node`'s value, used by all of its users; the new node."""
    from ..qat_modules import ActivationQuantizer

    name = f"qat_act_{sum(1 for n, _ in graph.named_children() if n.startswith('qat_act_'))}"
    graph.add_submodule(name, ActivationQuantizer())
    with graph.graph.inserting_after(node):
        quantizer = graph.graph.call_module(name, (node,))
    node.replace_all_uses_with(quantizer, delete_user_cb=lambda user: user is not quantizer)
    return quantizer


def _set_module(graph, target: str, module) -> None:
    parent, _, name = target.rpartition(".")
    setattr(graph.get_submodule(parent) if parent else graph, name, module)


def _calibrate(graph, samples, context) -> int:
    """Observe activation ranges over up to CALIBRATION_ROWS samples; how many were used."""
    import torch

    from ..qat_modules import ActivationQuantizer

    batches = training_batches(samples, context.inputs, CALIBRATION_BATCH, np.random.default_rng(context.seed),
                               labels=False)
    quantizers = [m for m in graph.modules() if isinstance(m, ActivationQuantizer)]
    for q in quantizers:
        q.observing = True
    rows = 0
    context.progress.start("qat calibration", total=min(CALIBRATION_ROWS, sum(len(xs[0]) for xs, _ in batches)),
                           unit="samples")
    try:
        with torch.no_grad():
            for xs, _ in batches:
                if rows >= CALIBRATION_ROWS:
                    break
                graph.eval()(*xs)
                rows += len(xs[0])
                context.progress.advance(len(xs[0]))
    finally:
        context.progress.finish()
    for q in quantizers:
        q.fix()
    return rows


def _train_mode(module) -> None:
    """Training mode, but BatchNorm that could not be folded keeps the statistics the ranges were
    calibrated with."""
    import torch

    module.train()
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()


def _freeze(graph) -> None:
    from ..qat_modules import QuantizedLayer

    for m in graph.modules():
        if isinstance(m, QuantizedLayer):
            m.freeze()
