"""Structured channel pruning with Torch-Pruning: whole output channels (conv filters, linear rows) are
removed together with everything coupled to them (BatchNorm, the next layer's inputs, residual adds), so
the exported graph is physically smaller and faster on any runtime. The layers that produce the model's
outputs keep their width, so the output shapes never change."""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import warnings

import numpy as np

from ..errors import BadInput, first_line
from .base import Transform, TransformContext, TransformResult, build_options, option, register, training_batches

CRITERIA = ("l1", "l2", "lamp", "fpgm", "taylor", "random")
TAYLOR_SAMPLES = 64          # samples of --train-data whose gradients rank channels for criterion=taylor
TAYLOR_BATCH = 16
MAX_LAYER_RATIO = 0.9        # global ranking may thin one layer this much, never to nothing
MAX_LEFT_WHOLE = 64          # groups left whole, one restart each, before a model is refused as unprunable
# graph nodes whose output channels are their own (not coupled to their inputs): walking back from an
# output, these are the layers that set the output's width
_WIDTH_SETTERS = ("CONV", "LINEAR", "LSTM", "EMBED", "MHA")


@dataclasses.dataclass(frozen=True)
class PruneOptions:
    channels: float = option(0.5, "fraction of channels removed (per layer; over the whole model with "
                             "scope=global)", low=0.0, high=0.95, low_open=True, search=(0.1, 0.7),
                             search_off="below")
    criterion: str = option("l2", "channel importance: l1 or l2 weight norm, lamp, fpgm, taylor (gradients "
                            "on --train-data), random", choices=CRITERIA, search=("l1", "l2", "lamp"))
    scope: str = option("layer", "layer: every layer loses the same fraction; global: channels ranked "
                        "across layers (uneven widths)", choices=("layer", "global"), search=("layer", "global"))
    protect: tuple[str, ...] = option((), "module names (as in named_modules, joined by '+') that keep their "
                                      "width; the layers producing the outputs always do")
    # searched: widths that are no multiple of 8 made ORT's INT8 kernels slower than the unpruned model
    # (MobileNetV2, prune 0.3 + INT8: 1.0-1.5 ms at round_to=1, 0.61-0.77 ms at 8 or 16, 0.86 ms unpruned)
    round_to: int = option(1, "make each pruned width the multiple of this nearest what the fraction leaves (8 "
                           "or 16 suit SIMD kernels)", low=1, high=256, search=(1, 8, 16))


@register
class ChannelPrune(Transform):
    name = "prune"
    summary = "structured channel pruning (Torch-Pruning): fewer channels, a smaller and faster graph"
    Options = PruneOptions

    def reads_training_data(self, options) -> bool:
        return options.criterion == "taylor"   # its gradients rank the channels

    def validate(self, options, context) -> None:
        if options.criterion == "taylor" and context.train is None:
            raise BadInput("prune: criterion=taylor needs --train-data (its gradients rank the channels)")

    def apply(self, module, options, context) -> TransformResult:
        import torch

        examples = tuple(context.examples)
        context.progress.status("prune: tracing the dependency graph")
        with torch.enable_grad():
            model, protected, left_whole = _pruned(module, options, context, examples)
            # the "before" figures from a copy: the caller's module is never run here (a training-mode
            # BatchNorm would update its statistics)
            before, after = _measure(_fresh(module), examples), _measure(model, examples)
        layers = _changed(before["widths"], after["widths"])
        removed = _removed_share(before["widths"], after["widths"], set(protected) | set(left_whole))
        details = {"channels": options.channels, "criterion": options.criterion, "scope": options.scope,
                   "round_to": options.round_to, "protected": sorted(protected), "left_whole": left_whole,
                   "params_before": before["params"], "params_after": after["params"],
                   "macs_before": before["macs"], "macs_after": after["macs"], "layers": layers,
                   "channels_removed": removed}
        notes = [(f"prune: PyTorch parameters {before['params']:,} -> {after['params']:,}, "   # BatchNorm's counted
                  f"MACs {before['macs']:,} -> {after['macs']:,}; {removed:.1%} of the prunable layers' channels "
                  f"removed ({options.channels:g} asked"
                  + (f", widths rounded to multiples of {options.round_to})" if options.round_to > 1 else ")"))]
        if left_whole:
            notes.append(f"prune: left whole, with the channels they share, since thinning them broke the model "
                         f"(a reshape that fixes their width, as attention's split into heads): {', '.join(left_whole)}")
        unchanged = after["params"] == before["params"]
        if not context.fine_tuned_later and not unchanged:   # nothing removed: nothing lost to recover
            notes.append("pruned without fine-tuning here: accuracy usually drops; follow with distillation on "
                         "--train-data (--distill) to recover it")
        if unchanged:
            notes.insert(0, f"warning: prune: no channel could be removed ({_why_none_removed(model)})")
        return TransformResult(model.eval(), details, notes)

    def unsupported(self, module, examples: tuple) -> str | None:
        """Pruning with the default options fails for a structure Torch-Pruning does not model (a channel
        shuffle, a reshape that hard-codes a width), whatever the fraction; or removes nothing (a recurrent
        network's every layer is coupled to its output)."""
        try:
            result = self.apply(module, build_options(self.Options, {}, self.name),
                                TransformContext(tuple(examples), []))
        except BadInput as e:
            return str(e).removeprefix(f"{self.name}: ")
        if result.details["params_after"] == result.details["params_before"]:
            return f"no channel can be removed ({_why_none_removed(result.module)})"
        return None


def _why_none_removed(model) -> str:
    """Why pruning removed nothing: recurrent layers keep their widths (and the layers feeding them theirs), or
    every other layer is protected or feeds an output."""
    import torch

    recurrent = sorted({type(m).__name__ for m in model.modules() if isinstance(m, torch.nn.RNNBase)})
    if recurrent:   # "every layer is protected or coupled to an output" was said of a GRU, neither
        return (f"{' and '.join(recurrent)} layers keep their widths, and so do the layers that feed them; what is "
                "left is protected or feeds an output")
    return "every layer is protected or coupled to an output"


def _pruned(module, options, context, examples) -> tuple:
    """(the thinned copy of `module`, {name: module} protected, [layers left whole]). Pruned in one step and
    checked once; where the result no longer runs or changes its output shapes (a reshape that fixes a width,
    as attention's split into heads), pruned again group by group, each checked as it is cut: a group that
    breaks the model has its first layer left whole (with everything sharing its channels), and the pruning
    starts over without it."""
    model = _fresh(module)
    protected = _protected(model, options.protect, examples)
    try:
        _prune(model, options, context, examples, protected)
        return model, protected, []
    except _Broken as first:
        left_whole = []
        for _ in range(MAX_LEFT_WHOLE):
            model = _fresh(module)
            protected = _protected(model, options.protect + tuple(left_whole), examples)
            try:
                _prune(model, options, context, examples, protected, check_each=True)
                return model, protected, left_whole
            except _Broken as e:
                if e.layer is None or e.layer in left_whole:
                    break
                left_whole.append(e.layer)
        raise BadInput(f"prune: {first}") from None


def _fresh(module):
    """A copy to thin, in eval mode."""
    model = copy.deepcopy(module).eval()
    model.requires_grad_(True)   # tracing and Taylor need gradients, also through a frozen model
    return model


class _Broken(Exception):
    """The pruned model no longer runs or changed its output shapes; `layer`: the first layer of the group
    whose cut broke it, where the groups were checked one by one."""

    def __init__(self, message: str, layer: str | None = None):
        super().__init__(message)
        self.layer = layer


def _prune(model, options, context, examples, protected: dict, check_each: bool = False) -> None:
    """Thin `model` in place; it must still run with the same output shapes (else _Broken)."""
    import torch

    torch.manual_seed(context.seed)
    shapes = _output_shapes(model, examples)
    names = {m: n for n, m in model.named_modules()}

    def check(group):
        try:
            _check_outputs(model, examples, shapes)
        except _Broken as e:
            raise _Broken(str(e), names.get(group[0][0].target.module)) from None

    try:
        pruner = _pruner(model, options, examples, protected)
        if options.criterion == "taylor":
            context.progress.status("prune: gradients for taylor importance")
            _accumulate_gradients(model, context)
        context.progress.status(f"prune: removing {options.channels:.0%} of channels ({options.scope})"
                                + (", checking each group" if check_each else ""))
        _step(pruner, options, check if check_each else None)
    except (AssertionError, IndexError) as e:   # Torch-Pruning's own checks on a structure it cannot cut
        raise BadInput(f"prune: Torch-Pruning cannot prune this model ({type(e).__name__}: "
                       f"{first_line(e)}); protect the layer involved "
                       "(protect=NAME) or use lowrank") from None
    model.zero_grad(set_to_none=True)
    _check_outputs(model, examples, shapes)


def _measure(model, examples) -> dict:
    import torch
    import torch_pruning as tp

    recurrent = {name: m for name, m in model.named_modules() if isinstance(m, torch.nn.RNNBase)}
    steps = {name: [] for name in recurrent}   # each call's sequence steps x batch (a decoder calls it per step)

    def count_steps(name):   # keyed by name: Torch-Pruning runs a deep copy, hooks included
        def hook(module, args):
            steps[name].append(_steps_times_batch(module, args[0]))
        return hook

    hooks = [m.register_forward_pre_hook(count_steps(name)) for name, m in recurrent.items()]
    try:
        macs, params, by_layer, _ = tp.utils.count_ops_and_params(model, examples, layer_wise=True)
    finally:
        for hook in hooks:
            hook.remove()
    # Torch-Pruning 1.6 counts a recurrent layer per step times the batch read as [0] of the first sample (the
    # sequence length) times the features: a GRU's MACs 64x over, the model's 30x (a user walkthrough). Its total is
    # divided by the first input's dim 0, its layers' counts are not: the figure here is per call of the model, as
    # the FLOPs of the ONNX graph beside it are (a time-major input's dim 0 is its steps, not a batch).
    rows = len(examples[0]) if examples and getattr(examples[0], "ndim", 0) else 1
    macs *= max(rows, 1)
    for name, m in recurrent.items():
        macs += sum(steps[name]) * _recurrent_step_macs(m) - (by_layer.get(m) or 0)
    return {"macs": int(macs), "params": int(params), "widths": _widths(model)}


def _steps_times_batch(module, given) -> int:
    """The steps an RNN, GRU or LSTM runs over its input, times its batch: [steps, batch, features] (or batch
    first), [steps, features] unbatched, or a PackedSequence's rows."""
    data = getattr(given, "data", given)
    if not hasattr(given, "shape"):   # a PackedSequence: one row per step of each sequence
        return int(data.shape[0]) if hasattr(data, "shape") else 0
    shape = tuple(given.shape)
    return int(shape[0] * shape[1]) if len(shape) == 3 else int(shape[0]) if len(shape) == 2 else 0


def _recurrent_step_macs(module) -> int:
    """The multiply-adds of one step of an RNN, GRU or LSTM, every layer and direction: gates x (input + state) x
    hidden, and an LSTM's projection (proj_size) of its state."""
    gates = {"LSTM": 4, "GRU": 3}.get(module.mode, 1)
    hidden = module.hidden_size
    state = getattr(module, "proj_size", 0) or hidden
    directions = 2 if module.bidirectional else 1
    total, width = 0, module.input_size
    for _ in range(module.num_layers):
        total += directions * (gates * (width + state) * hidden + (state * hidden if state != hidden else 0))
        width = state * directions
    return total


def _protected(model, names: tuple, examples) -> dict:
    """{qualified name: module} of the layers that keep their width: the ones asked for, the ones producing
    the outputs, and attention blocks (their embedding width is split into heads)."""
    import torch

    named = dict(model.named_modules())
    unknown = [n for n in names if n not in named]
    if unknown:
        raise BadInput(f"prune: protect: no module named {unknown[0]!r} in the model")
    out = {n: named[n] for n in names}
    graph = _dependency_graph(model, examples)
    by_module = {m: n for n, m in named.items()}
    for m in _output_producers(graph):
        out[by_module.get(m, repr(m))] = m
    out.update({n: m for n, m in named.items() if isinstance(m, torch.nn.MultiheadAttention)})
    return out


def _dependency_graph(model, examples):
    """Torch-Pruning's graph of which channels the layers share, or BadInput: its shape inference fails
    on structures it does not model (a ShuffleNet's channel shuffle, a reshape across the channel axis, ends
    in a ZeroDivisionError inside its reshape mapping)."""
    import traceback

    import torch_pruning as tp

    try:
        with _unwrapped_parameters_as_channels_last():
            return tp.DependencyGraph().build_dependency(model, example_inputs=examples, forward_fn=_forward,
                                                         customized_pruners=_recurrent_pruners(model))
    except (ArithmeticError, AssertionError, IndexError, KeyError, ValueError, RuntimeError) as e:
        where = traceback.extract_tb(e.__traceback__)[-1].name
        message = first_line(e)
        raise BadInput(f"prune: Torch-Pruning cannot trace which channels this model's layers share "
                       f"({type(e).__name__} in its {where}: {message}); a reshape or shuffle across the channel "
                       "axis is the usual cause: use lowrank instead") from None


def _forward(model, examples):
    """The tracing run, as Torch-Pruning makes it without a forward_fn, less its bare `except:` retry, which caught
    a Ctrl-C mid-forward and turned it into a TypeError traceback, exit 1 (an optimize study ran on to exit 0;
    a walkthrough)."""
    return model(*examples) if isinstance(examples, (tuple, list)) else model(examples)


def _output_producers(graph) -> list:
    """Walk back from every graph output through width-preserving ops (activations, norms, adds, reshapes,
    pooling, depthwise convs) to the layers whose own channels become the output's. A recurrent layer is
    kept whole, so its input counts as an output too."""
    import torch
    import torch_pruning as tp

    setters = {getattr(tp.ops.OPTYPE, t) for t in _WIDTH_SETTERS}
    recurrent = [n for n in graph.module2node.values() if isinstance(n.module, torch.nn.RNNBase)]
    stack = [n for n in graph.module2node.values() if not n.outputs] + [i for n in recurrent for i in n.inputs]
    seen, found = set(), [n.module for n in recurrent]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        if node.type in setters:
            found.append(node.module)
        elif node.type != tp.ops.OPTYPE.PARAMETER:
            stack.extend(node.inputs)
    return found


def _recurrent_pruners(model) -> dict:
    """{recurrent layer type: a pruner that never changes it}: Torch-Pruning 1.6.1 corrupts LSTM weights
    when it thins them and does not know GRU or RNN at all (it would take them for element-wise ops). As
    registered layers they appear in the graph, and _output_producers keeps them and their inputs whole."""
    import torch
    import torch_pruning as tp

    class Frozen(tp.pruner.BasePruningFunc):
        def prune_out_channels(self, layer, idxs):
            return layer

        prune_in_channels = prune_out_channels

        def get_out_channels(self, layer):
            return layer.hidden_size * (2 if layer.bidirectional else 1)

        def get_in_channels(self, layer):
            return layer.input_size

    kinds = {type(m) for m in model.modules() if isinstance(m, torch.nn.RNNBase)}
    return {kind: Frozen() for kind in kinds}


@contextlib.contextmanager
def _unwrapped_parameters_as_channels_last():
    """Torch-Pruning warns, once per graph, that a parameter outside a layer (a ViT's class token and position
    embedding) will be pruned along its last dimension: their channel axis, which is what pruning them needs.
    The warning cut into the progress lines of every pruning trial of a DeiT study; it is silenced here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Unwrapped parameters detected")
        yield


def _importance(criterion: str):
    import torch_pruning as tp

    imp = tp.importance
    return {"l1": lambda: imp.GroupMagnitudeImportance(p=1), "l2": lambda: imp.GroupMagnitudeImportance(p=2),
            "lamp": lambda: imp.LAMPImportance(p=2), "fpgm": lambda: imp.FPGMImportance(p=2),
            "taylor": lambda: imp.GroupTaylorImportance(), "random": lambda: imp.RandomImportance()}[criterion]()


def _pruner(model, options, examples, protected: dict):
    import torch
    import torch_pruning as tp

    class NearestMultiple(tp.pruner.BasePruner):
        def _round_to(self, n_pruned, current_channels, round_to):
            return _rounded_removal(n_pruned, current_channels, round_to)

    heads = {m: m.num_heads for m in model.modules() if isinstance(m, torch.nn.MultiheadAttention)}
    with _unwrapped_parameters_as_channels_last():
        return NearestMultiple(
            model, examples, importance=_importance(options.criterion), global_pruning=options.scope == "global",
            pruning_ratio=options.channels, max_pruning_ratio=max(MAX_LAYER_RATIO, options.channels),
            ignored_layers=list(protected.values()), round_to=options.round_to if options.round_to > 1 else None,
            num_heads=heads, customized_pruners=_recurrent_pruners(model))


def _step(pruner, options, after_each=None) -> None:
    """One pruning step. Torch-Pruning drops a group that asks for every channel of a layer (global ranking
    over a uniform layer; a tiny layer at a high ratio), leaving that layer at full width; here such a group
    is cut back to its least important channels so the layer keeps a few (see _kept). `after_each(group)` runs
    after each group is cut."""
    graph = pruner.DG
    refuses = graph.check_pruning_group
    graph.check_pruning_group = lambda group: True   # see every group; the check runs after trimming
    cap = options.channels if options.scope == "layer" else max(MAX_LAYER_RATIO, options.channels)
    try:
        for group in pruner.step(interactive=True):
            dep, idxs = group[0]
            count = graph.get_out_channels if graph.is_out_channel_pruning_fn(dep.handler) else graph.get_in_channels
            width = count(dep.target.module)
            if width and len(idxs) > width - _kept(width, cap, options.round_to):
                group = _least_important(pruner, group, width, width - _kept(width, cap, options.round_to))
            if refuses(group):
                group.prune()
                if after_each:
                    after_each(group)
    finally:
        graph.check_pruning_group = refuses


def _kept(width: int, cap: float, round_to: int) -> int:
    """The fewest channels a layer may keep: what the ratio cap leaves (at least one), rounded to the channel
    multiple as the pruner rounds (_rounded_removal)."""
    keep = max(1, int(width * (1 - cap)))
    return width - _rounded_removal(width - keep, width, round_to) if round_to > 1 else keep


def _rounded_removal(n_pruned: int, width: int, round_to: int) -> int:
    """How many of a layer's `width` channels to remove so that the width kept is the multiple of `round_to`
    nearest what removing `n_pruned` leaves (a tie keeps more), and at least one multiple; a layer narrower than
    one multiple as asked. Torch-Pruning 1.6 documents "nearest" but rounds down: at prune 0.524 a 96-wide
    layer kept 32 (67 % removed) where 48 is nearest, so a trial removed more than its configuration said."""
    if width < round_to:
        return n_pruned
    multiples = max(1, (2 * (width - n_pruned) + round_to) // (2 * round_to))
    return width - min(width, multiples * round_to)


def _least_important(pruner, group, width: int, allowed: int):
    """`group` cut back to its `allowed` least important channels (grouped channels: left as is)."""
    import torch

    dep, idxs = group[0]
    module, handler = dep.target.module, dep.handler
    imp = pruner.estimate_importance(pruner.DG.get_pruning_group(module, handler, list(range(width))))
    if imp is None or len(imp) != width:
        return group
    wanted = torch.tensor(sorted(int(i) for i in idxs))
    order = wanted[torch.argsort(imp[wanted])][:allowed]
    return pruner.DG.get_pruning_group(module, handler, sorted(order.tolist()))


def _accumulate_gradients(model, context) -> None:
    """Gradients of a classification loss over TAYLOR_SAMPLES training samples, for Taylor importance:
    cross-entropy against the labels when there are labels, else against the model's own argmax (a
    label-free proxy that ranks channels by how much they sway the current decision). Batches of
    TAYLOR_BATCH, or of one for a model whose shapes fix the batch at 1."""
    try:
        _gradients(model, context, TAYLOR_BATCH)
    except RuntimeError:
        _gradients(model, context, 1)


def _gradients(model, context, batch: int) -> None:
    rng = np.random.default_rng(context.seed)
    batches = training_batches(context.train, context.inputs, batch, rng)
    model.zero_grad(set_to_none=True)
    for xs, labels in batches[:max(1, TAYLOR_SAMPLES // batch)]:
        outputs = [o for o in _flatten(model(*xs)) if o.dim() >= 2 and o.shape[1] > 1]
        if not outputs:
            raise BadInput("prune: criterion=taylor needs an output with classes along axis 1; use l2")
        sum(_loss(o, labels) for o in outputs).backward()


def _loss(output, labels):
    import torch.nn.functional as F

    classes = output.shape[1]
    if labels is not None and output.dim() == 2 and len(labels) == len(output):
        if int(labels.min()) < 0 or int(labels.max()) >= classes:
            raise BadInput(f"prune: training data labels: values outside 0..{classes - 1} of the model's output")
        return F.cross_entropy(output, labels)
    return F.cross_entropy(output, output.detach().argmax(1))


def _flatten(out) -> list:
    import torch

    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    return [t for o in out for t in _flatten(o)] if isinstance(out, (list, tuple)) else []


def _output_shapes(model, examples) -> list:
    import torch

    with torch.no_grad():
        return [tuple(t.shape) for t in _flatten(model(*examples))]


def _check_outputs(model, examples, before: list) -> None:
    """The pruned module must still run and give the same output shapes; a model whose reshapes hard-code
    a width (custom attention, `view(-1, 512)`) fails here: protecting that layer is the way out."""
    try:
        after = _output_shapes(model, examples)
    except RuntimeError as e:
        raise _Broken(f"the pruned model no longer runs ({first_line(e)}); protect the "
                      "layers feeding hard-coded shapes (protect=NAME+NAME)") from None
    if [_fixed(s) for s in after] != [_fixed(s) for s in before]:
        raise _Broken(f"output shapes changed {before} -> {after}; protect the layers producing them")


def _fixed(shape: tuple) -> tuple:
    """The part of an output's shape that pruning must keep: all of it, but for a first dimension other than
    the batch (1 in the examples), which counts what the model found (SSDLite's boxes after NMS: 51 before
    pruning, 5 after), and pruned weights find another number."""
    return shape if not shape or shape[0] == 1 else (len(shape), *shape[1:])


def _widths(model) -> dict:
    """{name: output width} of the layers pruning can thin."""
    out = {}
    for name, m in model.named_modules():
        for attr in ("out_channels", "out_features", "embed_dim", "hidden_size", "embedding_dim"):
            if isinstance(getattr(m, attr, None), int):
                out[name] = getattr(m, attr)
                break
    return out


def _removed_share(before: dict, after: dict, kept_whole: set) -> float:
    """The share of channels removed over every layer that could lose some (not protected, not left whole): what a
    configuration's fraction became once widths were rounded (a layer rounded back to its width counts, at none
    removed)."""
    names = [n for n in before if n not in kept_whole and n in after]
    total = sum(before[n] for n in names)
    return 1 - sum(after[n] for n in names) / total if total else 0.0


def _changed(before: dict, after: dict) -> list:
    return [{"layer": n, "before": w, "after": after[n]} for n, w in before.items() if after.get(n) != w]
