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
from ..progress import SILENT

REGISTRY: dict = {}


def option(default, help: str, low=None, high=None, choices=None, search=None, low_open=False, log=False):
    """A typed option field. low/high bound a number (low_open: the bound itself is refused); choices
    lists a string's values; search is what an optimizer may try: (low, high) for a number, a tuple of
    values for a choice, None when the option is not searched; log: a number's search range is explored
    on a log scale (learning rates)."""
    return dataclasses.field(default=default, metadata={
        "help": help, "low": low, "high": high, "low_open": low_open, "choices": choices, "search": search,
        "log": log})


def fields(options_cls) -> list:
    return list(dataclasses.fields(options_cls))


def describe(options_cls) -> str:
    """One line per option, for --help texts and messages."""
    return "; ".join(f"{f.name} ({f.metadata['help']}, default {f.default!r})" for f in fields(options_cls))


def parse_spec(text: str, where: str) -> dict:
    """`key=value,key=value` (or one bare value for the first option) -> {key: text value}."""
    out = {}
    for item in (p.strip() for p in text.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep:
            raise BadInput(f"{where}: {item!r} is not KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def build_options(options_cls, values: dict, where: str):
    """An Options instance from {name: value} (text from the CLI, typed values from a recipe), every
    value converted to the field's type and checked against its bounds; any defect is one BadInput
    naming `where` and the option."""
    known = {f.name: f for f in fields(options_cls)}
    for key in values:
        if key not in known:
            raise BadInput(f"{where}: unknown option {key!r}; options: {', '.join(known) or 'none'}")
    hints = typing.get_type_hints(options_cls)
    converted = {k: _convert(v, hints[k], known[k], f"{where}: {k}") for k, v in values.items()}
    return options_cls(**converted)


def _convert(value, kind, field, where: str):
    meta = field.metadata
    if kind is bool:
        value = _to_bool(value, where)
    elif kind in (int, float):
        if isinstance(value, bool):
            raise BadInput(f"{where}: expected a number, got {value!r}")
        try:
            value = kind(value) if kind is float or isinstance(value, (int, str)) else None
        except (TypeError, ValueError, OverflowError):
            value = None
        if value is None or (kind is float and not np.isfinite(value)):
            raise BadInput(f"{where}: expected {'an integer' if kind is int else 'a number'}")
        _check_bounds(value, meta, where)
    elif kind is str:
        if not isinstance(value, str):
            raise BadInput(f"{where}: expected text, got {value!r}")
        if meta.get("choices") and value not in meta["choices"]:
            raise BadInput(f"{where}: {value!r} is not one of {', '.join(meta['choices'])}")
    elif kind == tuple[str, ...]:
        items = value.split("+") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) and i for i in items):
            raise BadInput(f"{where}: expected names separated by '+', got {value!r}")
        value = tuple(items)
    return value


def _to_bool(value, where: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise BadInput(f"{where}: expected true or false, got {value!r}")


def _check_bounds(value, meta, where: str) -> None:
    low, high = meta.get("low"), meta.get("high")
    if low is not None and (value < low or (meta.get("low_open") and value == low)):
        raise BadInput(f"{where}: {value} is out of range ({'>' if meta.get('low_open') else '>='} {low})")
    if high is not None and value > high:
        raise BadInput(f"{where}: {value} is out of range (<= {high})")


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

    def apply(self, module, options, context: TransformContext) -> TransformResult:
        raise NotImplementedError

    def validate(self, options, context: TransformContext) -> None:
        """Refuse what cannot work before any work starts (BadInput, one line). The default checks
        training data."""
        if self.needs_training_data and context.train is None:
            raise BadInput(f"transform {self.name} needs training data: --train-data samples.npz "
                           "(inputs; labels are optional for distillation)")


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
