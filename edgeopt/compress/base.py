"""Model transforms on a PyTorch module, applied before export (the pipeline's transform stage).

A transform is one file in this package: a `Transform` subclass registered with `@register`, with a
name, a frozen `Options` dataclass whose fields are declared with `option()` (default, help, bounds,
choices and the range a search may explore), and `apply(module, options, context)`. The CLI flags, the
recipe file and the search space are all read from those declarations, so a knob is added in one place.
"""
from __future__ import annotations

import dataclasses
import pathlib
import typing

import numpy as np

from ..errors import BadInput
# The option machinery lives in edgeopt/options.py (backends declare options too); re-exported here.
from ..options import build_options, fields, option, parse_spec  # noqa: F401
from ..progress import SILENT

REGISTRY: dict = {}


@dataclasses.dataclass
class TransformContext:
    """What a transform may use besides the module it changes."""
    examples: tuple                 # example inputs (torch tensors, batch 1) in the module's argument order
    inputs: list                    # TensorSpecs of the module's inputs (names, shapes), same order
    teacher: typing.Any = None      # the source module before any transform (eval mode): distillation's teacher
    train: dict | None = None       # --train-data samples {input: array, "labels"?: array} (edgeopt/data.py)
    evaluation: dict | None = None  # --eval-data samples (held-out accuracy while training; sensitivity)
    calibration: dict | None = None  # --calib samples
    progress: typing.Any = SILENT
    seed: int = 0
    workdir: pathlib.Path | None = None
    fine_tuned_later: bool = False  # a later step trains (distill, qat): no "fine-tune it" advice


@dataclasses.dataclass
class TransformResult:
    module: typing.Any              # the transformed torch.nn.Module (eval mode)
    details: dict                   # what was done, recorded in the manifest (JSON-able)
    notes: list = dataclasses.field(default_factory=list)  # lines for the user ("warning: ..." stands out)


class Transform:
    name = ""
    summary = ""                    # one line for --help
    Options: type = None            # a frozen dataclass with option() fields
    needs_training_data = False     # refused before any work when --train-data is missing
    searchable = True               # edgeopt optimize may try it (False: it cannot make a model faster)
    # its result is a QDQ (INT8) ONNX graph: the backend must run the exported graph as it is, with no
    # quantization on top (--quantize none), and not convert the PyTorch module itself (takes_torch)
    makes_qdq_graph = False
    # it trains weights, and untrained() gives the graph it makes without the training: a candidate's latency, size
    # and memory are those of that graph, so optimize screens it first and trains only what can still win
    screens_untrained = False

    def apply(self, module, options, context: TransformContext) -> TransformResult:
        raise NotImplementedError

    def reads_training_data(self, options) -> bool:
        """Whether the step reads --train-data (given): a transform that trains, and one that ranks by
        gradients (prune's taylor criterion)."""
        return self.needs_training_data

    def untrained(self, options: dict) -> dict | None:
        """For a transform that screens_untrained: the step's options that make the same graph without
        training, or None where the step is left out (distillation changes no architecture)."""
        return None

    def unsupported(self, module, examples: tuple) -> str | None:
        """Why this transform cannot change `module` whatever its options (None: it may). `optimize` asks once,
        before the search, and leaves such a transform out rather than fail every trial that proposes it."""
        return None

    def check_given(self, values: dict, where: str) -> None:
        """Refuse options that each fit their declaration but not together, judged on those the user gave
        (a flag's KEY=VALUE items, a recipe's table), not on the defaults filled in."""

    def recorded(self, values: dict) -> dict:
        """The step's options as a recipe records them (all of them by default); read back, check_given must
        accept them."""
        return values

    def validate(self, options, context: TransformContext) -> None:
        """Refuse what cannot work before any work starts (BadInput, one line). The default checks
        training data."""
        if self.needs_training_data and context.train is None:
            raise BadInput(f"transform {self.name} needs training data: --train-data samples.npz "
                           "(an array per model input; labels optional)")


def register(cls):
    REGISTRY[cls.name] = cls()
    return cls


def get(name: str) -> Transform:
    _load_all()
    if name not in REGISTRY:
        raise BadInput(f"unknown transform {name!r}; transforms: {', '.join(sorted(REGISTRY)) or 'none'}")
    return REGISTRY[name]


def names() -> list:
    _load_all()
    return sorted(REGISTRY)


def _load_all() -> None:
    """Import every transform module of this package (each registers itself); the quantizers
    (*_quantize.py, called by their backends) are not transforms."""
    import importlib
    import pkgutil

    from .. import compress
    for info in pkgutil.iter_modules(compress.__path__):
        if info.name != "base" and not info.name.endswith("_quantize"):
            importlib.import_module(f"{compress.__name__}.{info.name}")


def training_batches(samples: dict, inputs, batch_size: int, rng: np.random.Generator, labels: bool = True):
    """Shuffled minibatches [(tensors in input order, labels tensor or None)] for one epoch over `samples`
    (stacked `(N, *S)` arrays with S's first dim 1, or rows along the batch axis: both are cut to rows)."""
    import torch

    arrays = [_rows(samples[s.name], s.shape, s.name) for s in inputs]
    y = samples.get("labels") if labels else None
    n = len(arrays[0])
    order = rng.permutation(n)
    batches = []
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        xs = tuple(torch.from_numpy(np.ascontiguousarray(a[idx])) for a in arrays)
        batches.append((xs, None if y is None else torch.from_numpy(np.asarray(y)[idx].astype(np.int64))))
    return batches


def _rows(array: np.ndarray, shape, name: str) -> np.ndarray:
    """Samples as rows: (N, *shape[1:]). A stacked (N, 1, ...) array drops its batch-1 axis."""
    rest = list(shape[1:])
    if list(array.shape[1:]) == rest:
        return array
    if list(array.shape[1:]) == [1] + rest:
        return array.reshape(array.shape[0], *rest)
    raise BadInput(f"training data {name!r}: shape {list(array.shape)} is not (N, {', '.join(map(str, rest))}); "
                   "training feeds samples along the batch axis")
