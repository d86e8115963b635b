"""Low-rank factorization: a linear layer W (out x in) becomes two, in -> r -> out, from the truncated SVD
W ~ U S V^T; a k x k convolution becomes a k x k convolution to r channels followed by a 1 x 1 convolution
(the SVD of the weight reshaped to out x (in*k*k)). A layer is replaced only where the two factors hold
fewer parameters than the original, so parameters and MACs only go down."""
from __future__ import annotations

import copy
import dataclasses

from ..errors import BadInput
from .base import Transform, TransformResult, option, register


@dataclasses.dataclass(frozen=True)
class LowRankOptions:
    energy: float = option(0.9, "fraction of each layer's singular-value energy (sum of squares) kept",
                           low=0.0, high=1.0, low_open=True, search=(0.5, 0.99),
                           search_off="above")
    # 0 (the default): not given, each layer's rank picked by energy; given, at least 1 (rank=-3 was refused with
    # ">= 0", rank=0 with ">= 1")
    rank: int = option(0, "a fixed rank (1 or more) for every layer instead of energy", low=1)
    min_params: int = option(4096, "layers with fewer weights are left alone", low=0)
    protect: tuple[str, ...] = option((), "module names (as in named_modules, joined by '+') left whole")


@register
class LowRank(Transform):
    name = "lowrank"
    summary = "low-rank factorization (SVD) of linear and conv layers into two thinner ones"
    Options = LowRankOptions

    def check_given(self, values: dict, where: str) -> None:
        # rank with energy left one of them ignored (rank=0, which silently meant "use energy", is below the bound)
        if "rank" in values and "energy" in values:
            raise BadInput(f"{where}: rank and energy: give one (rank fixes every layer's rank, energy picks "
                           "each layer's)", option="rank")

    def recorded(self, values: dict) -> dict:
        """Only the mode in use: energy, or rank (recipes before this recorded both, with rank 0 for energy)."""
        drop = "energy" if values.get("rank") else "rank"
        return {k: v for k, v in values.items() if k != drop}

    def apply(self, module, options, context) -> TransformResult:
        import torch

        model = copy.deepcopy(module).eval()
        whole = _read_whole(model)
        candidates = _candidates(model, options, whole)
        params_before = sum(p.numel() for p in model.parameters())
        context.progress.start("lowrank", total=len(candidates), unit="layers")
        layers = []
        try:
            with torch.no_grad():
                for name, layer in candidates:
                    replacement, rank, full = _factorize(layer, options)
                    if replacement is not None:
                        model = _set(model, name, replacement)
                        layers.append({"layer": name, "rank": rank, "full_rank": full,
                                       "params_before": _count(layer), "params_after": _count(replacement)})
                    context.progress.advance()
        finally:
            context.progress.finish()
        params_after = sum(p.numel() for p in model.parameters())
        details = {"energy": options.energy, "rank": options.rank, "min_params": options.min_params,
                   "params_before": params_before, "params_after": params_after,
                   "factorized": len(layers), "considered": len(candidates), "layers": layers}
        # the module's own count (BatchNorm's included), which the stage table's, counted on the export, is not
        # with none considered, "0 of 0 layers factorized" beside the warning's "of its 8 linear layers" read as a
        # contradiction: the warning below says why none was
        notes = [(f"lowrank: {len(layers)} of {len(candidates)} layers considered factorized, PyTorch parameters "
                  f"{params_before:,} -> {params_after:,}")] if candidates else []
        if whole:
            notes.append(f"lowrank: {len(whole)} linear layer(s) of PyTorch's attention and Transformer layers left "
                         "whole: those layers read their weight themselves")
        if not layers:   # "0 of 0 layers factorized" read as a success, and distillation then trained it unchanged
            notes.append(f"warning: lowrank changed nothing: {_why_none(model, options, whole, candidates)}")
        if layers and not context.fine_tuned_later:
            notes.append("factorized without fine-tuning here: accuracy drops as energy falls; follow with "
                         "distillation on --train-data (--distill) to recover it")
        return TransformResult(model.eval(), details, notes)


def _why_none(model, options, whole: set, candidates: list) -> str:
    """Why no layer was factorized: none could be (too small, read whole, protected), or none was smaller so."""
    if candidates:
        mode = f"rank {options.rank}" if options.rank else f"energy {options.energy:g}"
        return (f"none of the {len(candidates)} layers considered has fewer parameters factorized at {mode} (a "
                "lower energy or rank factorizes more)")
    named = dict(model.named_modules())
    kinds = [m for m in named.values() if _factorizable(m)]
    protected = {id(m) for n in options.protect for m in named[n].modules()}
    small = sum(m.weight.numel() < options.min_params for m in kinds)
    return (f"of its {len(kinds)} linear and ungrouped conv layers, {small} hold fewer than min_params="
            f"{options.min_params} weights, {sum(id(m) in whole for m in kinds)} are read whole by attention and "
            f"{sum(id(m) in protected for m in kinds)} are protected")


def _candidates(model, options, whole: set) -> list:
    """[(name, layer)]: linear layers and ungrouped, non-transposed convs big enough, outside protect and `whole`
    (ids of layers to leave whole)."""
    named = dict(model.named_modules())
    unknown = [n for n in options.protect if n not in named]
    if unknown:
        raise BadInput(f"lowrank: protect: no module named {unknown[0]!r} in the model")
    kept = {id(m) for n in options.protect for m in named[n].modules()} | whole
    return [(name, m) for name, m in named.items()
            if _factorizable(m) and id(m) not in kept and m.weight.numel() >= options.min_params]


def _factorizable(m) -> bool:
    """A linear layer, or an ungrouped, non-transposed conv: what _factorize can split in two."""
    import torch

    conv = isinstance(m, torch.nn.modules.conv._ConvNd) and not m.transposed and m.groups == 1
    return conv or isinstance(m, torch.nn.Linear)


# PyTorch modules whose forward reads their Linear children's .weight itself (MultiheadAttention its out_proj,
# the Transformer layers linear1/linear2 for their fast path): a factorized pair there broke every stock
# nn.TransformerEncoder ("'Sequential' object has no attribute 'weight'"), and a subclass of one inherits that
READS_CHILD_WEIGHTS = ("MultiheadAttention", "TransformerEncoderLayer", "TransformerDecoderLayer")


def _read_whole(model) -> set:
    """ids of the Linear layers that a READS_CHILD_WEIGHTS parent (or a subclass of one) reads directly: left whole."""
    import torch

    kinds = tuple(getattr(torch.nn, name) for name in READS_CHILD_WEIGHTS)
    parents = [m for m in model.modules() if isinstance(m, kinds)]
    return {id(c) for p in parents for c in p.children() if isinstance(c, torch.nn.Linear)}


def _factorize(layer, options):
    """(replacement or None, rank, full rank) for one layer."""
    import torch

    weight = layer.weight.detach()
    matrix = weight.reshape(weight.shape[0], -1).double()   # out x (in * kernel)
    u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
    full = len(s)
    rank = min(options.rank, full) if options.rank else _rank_for_energy(s, options.energy)
    out_dim, in_dim = matrix.shape
    if rank * (out_dim + in_dim) >= out_dim * in_dim:   # two factors would not be smaller
        return None, rank, full
    root = s[:rank].sqrt()
    first = (vh[:rank] * root[:, None]).to(weight.dtype)       # rank x (in * kernel)
    second = (u[:, :rank] * root[None, :]).to(weight.dtype)    # out x rank
    build = _linear_pair if isinstance(layer, torch.nn.Linear) else _conv_pair
    return build(layer, first, second, rank), rank, full


def _rank_for_energy(s, energy: float) -> int:
    import torch

    kept = torch.cumsum(s ** 2, 0) / (s ** 2).sum()
    # the smallest rank whose leading singular values hold `energy` (a hair of slack for rounding at 1.0)
    return int(torch.searchsorted(kept, torch.tensor(energy - 1e-9, dtype=kept.dtype)).item()) + 1


def _linear_pair(layer, first, second, rank):
    import torch

    like = {"dtype": layer.weight.dtype, "device": layer.weight.device}
    a = torch.nn.Linear(layer.in_features, rank, bias=False, **like)
    b = torch.nn.Linear(rank, layer.out_features, bias=layer.bias is not None, **like)
    a.weight.copy_(first)
    b.weight.copy_(second)
    if layer.bias is not None:
        b.bias.copy_(layer.bias)
    return _factorized()(a, b, layer)


def _conv_pair(layer, first, second, rank):
    """The k x k conv keeps stride, padding and dilation and emits `rank` channels; a 1 x 1 conv mixes them
    back to the original outputs and carries the bias."""
    import torch

    kind = {1: torch.nn.Conv1d, 2: torch.nn.Conv2d, 3: torch.nn.Conv3d}[len(layer.kernel_size)]
    like = {"dtype": layer.weight.dtype, "device": layer.weight.device}
    a = kind(layer.in_channels, rank, layer.kernel_size, stride=layer.stride, padding=layer.padding,
             dilation=layer.dilation, bias=False, padding_mode=layer.padding_mode, **like)
    b = kind(rank, layer.out_channels, 1, bias=layer.bias is not None, **like)
    a.weight.copy_(first.reshape(a.weight.shape))
    b.weight.copy_(second.reshape(b.weight.shape))
    if layer.bias is not None:
        b.bias.copy_(layer.bias)
    return _factorized()(a, b, layer)


_FACTORIZED = []


def _factorized():
    """The pair's class: an nn.Sequential of the two factors that still answers `.weight` (their product, in the
    layer's shape) and `.bias`, as the layer did. Code outside forward reads them: Hugging Face's ViT casts its
    input to `patch_embeddings.projection.weight.dtype`, and a plain Sequential there failed every ViT ("'Sequential'
    object has no attribute 'weight'"; a user walkthrough). Made once, when torch is first needed."""
    if not _FACTORIZED:
        import torch

        class Factorized(torch.nn.Sequential):
            def __init__(self, first, second, layer):
                super().__init__(first, second)
                self.weight_shape = tuple(layer.weight.shape)

            @property
            def weight(self):
                first, second = self[0].weight, self[1].weight
                return (second.reshape(second.shape[0], -1) @ first.reshape(first.shape[0], -1)).reshape(
                    self.weight_shape)

            @property
            def bias(self):
                return self[1].bias

        _FACTORIZED.append(Factorized)
    return _FACTORIZED[0]


def _set(model, name: str, replacement):
    """The model with the module at `name` replaced (the model itself when it is that layer)."""
    if not name:
        return replacement
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, replacement)
    return model


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())
