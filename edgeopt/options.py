"""Typed option declarations, shared by model transforms (edgeopt/compress/) and conversion backends
(edgeopt/convert/): a frozen dataclass whose fields are declared with `option()` (default, help, bounds,
choices and the range a search may explore). The CLI flags, the recipe file and the search space are all
read from those declarations, so a knob is added in one place.
"""
from __future__ import annotations

import dataclasses
import types
import typing

import numpy as np

from .errors import BadInput


def option(default, help: str, low=None, high=None, choices=None, search=None, low_open=False, log=False,
           search_off=None):
    """A typed option field. low/high bound a number (low_open: the bound itself is refused); choices
    lists a string's values; search is what an optimizer may try: (low, high) for a number, a tuple of
    values for a choice, None when the option is not searched; log: a number's search range is explored
    on a log scale (learning rates). search_off ("below" or "above"): a transform's strength, at whose weak
    end of the range the transform does nothing (0 channels pruned, 0 epochs); a search then tries the
    transform's on/off and this option as one ordered axis (edgeopt/search/space.py)."""
    return dataclasses.field(default=default, metadata={
        "help": help, "low": low, "high": high, "low_open": low_open, "choices": choices, "search": search,
        "log": log, "search_off": search_off})


def fields(options_cls) -> list:
    return list(dataclasses.fields(options_cls))


def describe(options_cls) -> dict:
    """{name: {"default", "help", and "choices" or "range" where declared}} of an Options class, for users."""
    out = {}
    for f in fields(options_cls):
        meta, entry = f.metadata, {"default": f.default, "help": f.metadata.get("help", "")}
        if meta.get("choices"):
            entry["choices"] = list(meta["choices"])
        elif meta.get("low") is not None or meta.get("high") is not None:
            entry["range"] = [meta.get("low"), meta.get("high")]
        out[f.name] = entry
    return out


def parse_spec(text: str, where: str) -> dict:
    """`key=value,key=value` -> {key: text value}; an item without `=` is refused, naming `where`."""
    out = {}
    for item in (p.strip() for p in text.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep:
            raise BadInput(f"{where}: {item!r} is not KEY=VALUE")
        if key.strip() in out:   # the last had won silently (`channels=0.3,channels=0.5`)
            raise BadInput(f"{where}: {key.strip()} given twice ({out[key.strip()]!r} and {value.strip()!r}): "
                           "give one value")
        out[key.strip()] = value.strip()
    return out


def build_options(options_cls, values: dict, where: str):
    """An Options instance from {name: value} (text from the CLI, typed values from a recipe), every
    value converted to the field's type and checked against its bounds; any defect is one BadInput
    naming `where` and the option."""
    known = {f.name: f for f in fields(options_cls)}
    for key in values:
        if key not in known:
            raise BadInput(f"{where}: unknown option {key!r}; options: {', '.join(known) or 'none'}", option=key)
    hints = typing.get_type_hints(options_cls)
    converted = {}
    for key, value in values.items():
        try:
            converted[key] = _convert(value, hints[key], known[key], f"{where}: {key}")
        except BadInput as e:
            e.option = e.option or key
            raise
    return options_cls(**converted)


def plain_type(kind):
    """The type of an option declared `int | None` (None means "not set"): int; any other type as it is."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        return next(k for k in typing.get_args(kind) if k is not type(None))
    return kind


def _convert(value, kind, field, where: str):
    meta = field.metadata
    if value is None and plain_type(kind) is not kind:
        return None
    kind = plain_type(kind)
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
