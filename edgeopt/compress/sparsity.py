"""Unstructured magnitude pruning: the smallest weights of every conv and linear layer are set to zero
(torch.nn.utils.prune, made permanent). Shapes do not change, so neither does the exported graph's size
or speed on dense runtimes; see NOTE."""
from __future__ import annotations

import copy
import dataclasses

from ..errors import BadInput
from .base import Transform, TransformResult, option, register

NOTE = ("sparsity: zeros do not make ONNX Runtime, OpenVINO CPU or LiteRT faster (dense kernels multiply "
        "zeros too; OpenVINO's sparse INT8 kernels exist only for fully-connected layers on AMX Xeons, and "
        "edgeopt does not enable them) and the bundle is an uncompressed tar, so it is not smaller either; "
        "the zeros pay off where the model file is compressed in transfer")


@dataclasses.dataclass(frozen=True)
class SparsityOptions:
    weights: float = option(0.5, "fraction of conv and linear weights set to zero", low=0.0, high=0.99,
                            low_open=True, search=(0.3, 0.9), search_off="below")
    scope: str = option("layer", "layer: every layer reaches the fraction; global: the smallest magnitudes "
                        "across all layers (uneven per layer)", choices=("layer", "global"), search=("layer", "global"))
    protect: tuple[str, ...] = option((), "module names (as in named_modules, joined by '+') left dense")


@register
class Sparsity(Transform):
    name = "sparsity"
    summary = "unstructured magnitude pruning: zeros in the weights (smaller when compressed, not faster)"
    Options = SparsityOptions
    searchable = False   # zeros do not make a dense runtime faster (measured ~1.0x): nothing for optimize to find

    def apply(self, module, options, context) -> TransformResult:
        import torch
        from torch.nn.utils import prune

        torch.manual_seed(context.seed)
        model = copy.deepcopy(module).eval()
        layers = _layers(model, options.protect)
        if not layers:
            raise BadInput("sparsity: the model has no conv or linear layer to sparsify (outside protect)")
        context.progress.status(f"sparsity: zeroing {options.weights:.0%} of the weights ({options.scope})")
        targets = [(m, "weight") for _, m in layers]
        if options.scope == "global":
            prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=options.weights)
        else:
            for m, _ in targets:
                prune.l1_unstructured(m, "weight", amount=options.weights)
        for m, _ in targets:
            prune.remove(m, "weight")   # fold the mask into the weight: a plain module again
        details = _details(options, layers, model)
        notes = [f"sparsity: {details['sparsity']:.1%} of {details['weights']:,} conv/linear weights are zero", NOTE]
        return TransformResult(model.eval(), details, notes)


def _layers(model, protect: tuple) -> list:
    """[(name, module)] of the conv and linear layers to sparsify."""
    import torch

    named = dict(model.named_modules())
    unknown = [n for n in protect if n not in named]
    if unknown:
        raise BadInput(f"sparsity: protect: no module named {unknown[0]!r} in the model")
    kept = {id(m) for n in protect for m in named[n].modules()}
    kinds = (torch.nn.Linear, torch.nn.modules.conv._ConvNd)
    return [(n, m) for n, m in named.items() if isinstance(m, kinds) and id(m) not in kept]


def _details(options, layers, model) -> dict:
    per_layer, zeros, total = [], 0, 0
    for name, m in layers:
        z, n = int((m.weight == 0).sum()), m.weight.numel()
        per_layer.append({"layer": name, "sparsity": round(z / n, 4)})
        zeros, total = zeros + z, total + n
    all_params = sum(p.numel() for p in model.parameters())
    return {"weights_ratio": options.weights, "scope": options.scope, "weights": total,
            "sparsity": round(zeros / total, 4), "sparsity_of_all_parameters": round(zeros / all_params, 4),
            "layers": per_layer}
