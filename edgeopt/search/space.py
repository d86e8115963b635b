"""The search space of `edgeopt optimize`, built from what the backends and transforms declare.

Backends declare the precisions and quantizations they take; backends and transforms declare each of their
options' search range (option(search=...) in their Options: edgeopt/convert/, edgeopt/compress/). Nothing is
listed twice: a new knob with a search range appears here by itself. A backend option is a dimension of its
own name ("keep_float", "preset"). A transform is a yes/no dimension ("prune") whose options
("prune.channels") are sampled only when it is on. A transform's strength option (declared with search_off:
"prune.channels", "distill.epochs") and its on/off are one ordered axis for the samplers: the option's range
extended by one grid step past its weak end, where the transform is off (prune.channels -0.1..0.7 for 0.1..0.7;
a trial parameter below 0.1 means no pruning). A categorical on/off hid the ordering from TPE (off is weaker
than the weakest setting) and spent half its random start-up trials with each transform off; on a measured
landscape TPE reached a configuration that needs pruning and distillation together in 16-59 % fewer trials on
average (docs/benchmarks.md, "One ordered axis"). A space file narrows or fixes dimensions:

    quantize = ["none", "int8"]      # a subset of the choices
    "prune.channels" = [0.3, 0.6]    # a narrower range (within the option's bounds)
    "distill.epochs" = {low = 2, high = 8, step = 2}   # a range tried in steps: 2, 4, 6, 8
    distill = false                  # fixed
    threads = [1, 2, 4]              # bench threads, when the device's core count is not known
    backend = ["onnxruntime"]        # where the profile's hardware runs several backends (profile.backends)

With several backends, "backend" is a dimension, and each backend's own dimensions are named after it
("openvino.quantize", "onnxruntime.keep_float") and sampled only when it is chosen: each backend offers its own
quantizations, precisions and options. A space file's plain key ("quantize") narrows that dimension of every
backend that has it; a prefixed one ("openvino.quantize") narrows one backend's.
"""
from __future__ import annotations

import dataclasses
import pathlib
import random
import sys
import typing

from .. import transform as transform_stage
from ..compress import base as transforms
from ..errors import BadInput
from ..recipe import toml_value

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

STEP_DIGITS = 9   # a stepped value is rounded to this many decimals
GRID_POINTS = 4   # values a grid tries over a range without a step; a strength axis's off share is one of them
GRID_LIMIT = 100_000   # configurations a grid search lists at most
EXPLORE_DRAWS = 1000   # Exploration: random configurations tried where the grid is too large to list
# The order transforms are applied in (recipe.from_flags' order); a transform not listed goes last.
ORDER = ("prune", "sparsity", "lowrank", "distill", "qat")


@dataclasses.dataclass(frozen=True)
class Dimension:
    name: str                       # "quantize", "prune", "prune.channels", "threads"
    choices: tuple = ()             # a categorical dimension; else a number range
    low: float | None = None
    high: float | None = None
    integer: bool = False
    log: bool = False
    parent: str = ""                # sampled only when this dimension's value is `when`
    when: object = True             # (a transform's toggle: True; "backend": the backend's name)
    backend: bool = False           # an option of the backend's Options (a package() option), not a transform
    int8_only: bool = False         # a backend option that acts only with quantize int8: passed on only then
    toggle: bool = False            # a transform's on/off dimension (its options are its children)
    owner: str = ""                 # the backend whose dimension this is, where the space has several
    # How far a space file may widen it: the option's own bounds or choices (empty: no wider than declared);
    # low_open: the lower bound itself is refused by the option (prune.channels > 0).
    limits: tuple = ()
    low_open: bool = False
    # A number option searched among a few values that takes any in its bounds (prune.round_to: 1, 8, 16 of
    # 1..256): (low, high), which a space file's list may name too.
    choices_within: tuple = ()
    # A number range tried only in these steps from low (a space file's {low, high, step}): every sampler,
    # the grid included, then proposes the same finite set of values, so their studies share candidates.
    step: float | None = None
    # A transform that makes a QDQ graph (QAT): sampled only with these backends (those that run the exported
    # graph) and their quantize at "none"; any other combination is refused by package (a wasted trial).
    qdq_backends: tuple = ()
    # Of those, the ones whose precision acts only on an unquantized graph (precision_unquantized_only): the
    # transform at fp16 there packages the fp32 bundle again (a twin that cost a training run), so only fp32.
    qdq_fp32_only: tuple = ()
    # A transform's strength option: "below" or "above" the range is where the transform is off (its toggle
    # and this option are then one axis for the samplers: strength_axis).
    off: str = ""
    # What a candidate gets where the dimension is not sampled (its option's default; None: not known). A space
    # file's one value other than this, where the file's other choices never let it be sampled, is refused.
    default: object = None

    def suggest(self, trial):
        if self.choices:
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.low == self.high:
            return int(self.low) if self.integer else float(self.low)
        if self.integer:
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1),
                                     log=self.log)
        value = trial.suggest_float(self.name, float(self.low), float(self.high), step=self.step, log=self.log)
        # low + k * step in floating point (0.30000000000000004): the grid's spelling, so keys agree
        return round(value, STEP_DIGITS) if self.step else value

    def grid(self, points: int = GRID_POINTS) -> list:
        """Values a grid search tries: every choice, or `points` evenly spaced over the range."""
        if self.choices:
            return list(self.choices)
        if self.low == self.high:
            return [self.low]
        if self.step:
            count = round((self.high - self.low) / self.step) + 1
            values = [self.low + i * self.step for i in range(count)]
            return [int(round(v)) for v in values] if self.integer else [round(v, STEP_DIGITS) for v in values]
        step = (self.high - self.low) / (points - 1)
        values = [self.low + i * step for i in range(points)]
        return sorted({int(round(v)) for v in values}) if self.integer else [round(v, 6) for v in values]

    def describe(self) -> str:
        if self.choices:
            return ", ".join(map(str, self.choices))
        return f"{self.low:g}..{self.high:g}" + (" (log)" if self.log else "") + (
            f" step {self.step:g}" if self.step else "")


def build(backends, source_format: str, has_calib: bool, has_train: bool, cores: int | None,
          space_file=None, measures_accuracy: bool = True, calib_samples: int | None = None,
          profile_backends: tuple | None = None) -> list:
    """The dimensions for one model and profile, narrowed by the space file. backends: a backend, or the
    backends the devices run (the profile's own first), of which the space file's `backend` may keep some.
    measures_accuracy=False (no accuracy budget): the transforms, which change what the model computes, are
    searched only where the space file names them (transforms_left_out). calib_samples: the --calib set's size;
    a backend whose INT8 refuses so few calibrates on all of them (small_calibration). profile_backends: the
    backends the profile runs, whose keys a file may hold where the devices lack their runtime (None: any)."""
    backends = list(backends) if isinstance(backends, (list, tuple)) else [backends]
    doc = _read(space_file) if space_file else {}
    offered = backends
    backends = _chosen_backends(backends, doc.pop("backend", None), space_file)
    if len(backends) == 1:
        dims = _backend_dimensions(backends[0], has_calib, calib_samples)
    else:
        dims = [Dimension("backend", tuple(b.name for b in backends))]
        for b in backends:
            dims += [dataclasses.replace(d, name=f"{b.name}.{d.name}", owner=b.name,
                                         **({"parent": f"{b.name}.{d.parent}"} if d.parent else
                                            {"parent": "backend", "when": b.name}))
                     for d in _backend_dimensions(b, has_calib, calib_samples)]
    if source_format in transform_stage.TRANSFORMABLE:
        named = _named_transforms(doc)
        dims += [d for d in _transform_dimensions(has_train, backends)
                 if measures_accuracy or _transform_of(d) in named]
    if cores and cores > 1:
        dims.append(Dimension("threads", tuple(sorted({1, 2, 4, 8} & set(range(1, cores + 1)) | {cores}))))
    if doc and len(backends) == 1:
        # every option of theirs (calibration data or not): a file shared by studies names them all
        others = {b.name: [d.name for d in _backend_dimensions(b, True, calib_samples)]
                  for b in offered if b.name != backends[0].name}
        doc = _one_backends_keys(doc, backends[0].name, space_file, others, profile_backends)
    if doc:
        dims = _narrow(dims, doc, space_file, ", ".join(b.name for b in backends))
    return dims


def _one_backends_keys(doc: dict, backend: str, path, others: dict, profile_backends: tuple | None) -> dict:
    """One backend's dimensions carry no prefix: the file's "openvino.quantize" is its "quantize" here, and the
    keys of another backend the devices run ({name: its dimensions}) have nothing to narrow. A file written for
    two backends read "not a dimension of this search" once `backend = [...]` or the devices kept one (a
    walkthrough). Those keys are still checked against that backend's dimensions (a typo was dropped unsaid);
    a backend the devices lack is passed over where the profile runs it, and a backend it does not
    (`tensorrt.quantize` for generic) is left to be refused as no dimension."""
    from ..profiles import BACKENDS

    out = {}
    for key, value in doc.items():
        prefix, dot, rest = key.partition(".")
        if key in BACKENDS and isinstance(value, dict):   # an unquoted openvino.quantize: a table in TOML
            prefix, dot, rest, value = key, ".", None, value
        if not dot or prefix not in BACKENDS:
            own = {key: value}
        elif prefix == backend:
            own = value if rest is None else {rest: value}
        elif prefix in others:   # left out by `backend = [...]`: nothing to narrow, but a typo is said
            unknown = sorted(set(value if rest is None else [rest]) - set(others[prefix]))
            if unknown:
                raise BadInput(f"{path}: {prefix}.{unknown[0]}: not a dimension of backend {prefix} (left out of "
                               f"this search); its dimensions: {', '.join(others[prefix]) or 'none'}")
            continue
        elif profile_backends is None or prefix in profile_backends:   # the profile's, which these devices lack
            continue
        else:   # a backend the profile never runs: refused as no dimension of this search
            own = {key: value}
        twice = sorted(set(own) & set(out))
        if twice:
            raise BadInput(f"{path}: {twice[0]} is narrowed twice, with and without the prefix {backend}.: give one")
        out.update(own)
    return out


def _transform_of(dim: Dimension) -> str:
    return dim.parent or dim.name


def _named_transforms(doc: dict) -> set:
    """The transforms a space file names, by their switch (`prune = true`) or an option (`"prune.channels"`)."""
    return {key.split(".")[0] for key in doc} & set(transforms.names())


def transforms_left_out(dims: list, backends, source_format: str, has_train: bool) -> list:
    """The searchable transforms that build() left out of `dims`: without an accuracy budget, those the space
    file does not name (pruning a random-weight MobileNetV3 by 67 % "met every budget" in a study that measured
    speed alone)."""
    if source_format not in transform_stage.TRANSFORMABLE:
        return []
    backends = list(backends) if isinstance(backends, (list, tuple)) else [backends]
    searchable = {d.name for d in _transform_dimensions(has_train, backends) if d.toggle}
    return sorted(searchable - {d.name for d in dims if d.toggle})


def _chosen_backends(backends: list, value, path) -> list:
    """The backends a space file's `backend = [...]` keeps (all of them without one)."""
    if value is None:
        return backends
    names = [b.name for b in backends]
    values = value if isinstance(value, list) else [value]
    bad = [v for v in values if v not in names]
    if not values or bad:
        raise BadInput(f"{path}: backend: {toml_value(bad[0] if bad else value)} is not one this search can use "
                       f"({', '.join(names)}: the profile's backends whose runtime every device has)")
    return [b for b in backends if b.name in values]


def _backend_dimensions(backend, has_calib: bool, calib_samples: int | None = None) -> list:
    """quantize, the backend's own options that declare a search range, then precision. An option that acts
    only with INT8 (backend.int8_options) is a dimension only when INT8 is (it needs calibration data)."""
    quantizations = [q for q in backend.quantizations if q != "int8" or has_calib]
    dims = [Dimension("quantize", tuple(quantizations))]
    hints = typing.get_type_hints(backend.Options)
    for f in transforms.fields(backend.Options):
        if f.metadata.get("search") is None or (f.name in backend.int8_options and "int8" not in quantizations):
            continue
        dims.append(dataclasses.replace(_option_dimension(f.name, f, hints[f.name]), backend=True,
                                        int8_only=f.name in backend.int8_options))
    if len(backend.precisions) > 1:   # where a quantized model's precision is refused: with quantize none only
        dims.append(Dimension("precision", tuple(backend.precisions), default="fp32",
                              **({"parent": "quantize", "when": "none"} if backend.precision_unquantized_only else {})))
    if "int8" in quantizations and small_calibration(backend, calib_samples):
        dims.append(Dimension(backend.calibration_size_option, (calib_samples,), backend=True, int8_only=True))
    return dims


def small_calibration(backend, calib_samples: int | None) -> bool:
    """Whether the backend's INT8 refuses this many calibration samples unless told to use them all: a search
    then tells it (a fixed dimension, calibration_size_option), rather than fail every INT8 candidate."""
    return calib_samples is not None and calib_samples < backend.min_calibration_samples


def _transform_dimensions(has_train: bool, backends) -> list:
    """Each searchable transform's toggle and options. One that makes a QDQ graph is left out where no backend
    runs that graph unquantized (LiteRT converts the module itself), and sampled only with one that does."""
    dims = []
    for name in sorted(transforms.names(), key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER)):
        transform = transforms.get(name)
        if not transform.searchable or (transform.needs_training_data and not has_train):
            continue
        qdq_backends, fp32_only = (), ()
        if transform.makes_qdq_graph:
            qdq_backends = tuple(b.name for b in backends if not b.takes_torch and "none" in b.quantizations)
            fp32_only = tuple(b.name for b in backends if b.name in qdq_backends and b.precision_unquantized_only)
            if backends and not qdq_backends:
                continue
        dims.append(Dimension(name, (False, True), toggle=True, qdq_backends=qdq_backends, qdq_fp32_only=fp32_only,
                              default=False))
        dims += [_option_dimension(f"{name}.{f.name}", f, typing.get_type_hints(transform.Options)[f.name], name)
                 for f in transforms.fields(transform.Options) if f.metadata.get("search") is not None]
    return dims


def _option_dimension(name: str, field, kind, parent: str = "") -> Dimension:
    """The dimension of an option declared with a search range (parent: the transform it belongs to)."""
    search = tuple(field.metadata["search"])
    meta = field.metadata
    default = None if field.default is dataclasses.MISSING else field.default
    if kind in (int, float) and len(search) == 2 and all(isinstance(v, (int, float)) for v in search):
        limits = (meta["low"] if meta["low"] is not None else search[0],
                  meta["high"] if meta["high"] is not None else search[1])
        return Dimension(name, (), search[0], search[1], kind is int, bool(meta.get("log")), parent, limits=limits,
                         low_open=bool(meta.get("low_open")) and limits[0] == meta["low"],
                         off=meta.get("search_off") or "", default=default)
    within = (meta["low"], meta["high"]) if kind in (int, float) and None not in (meta["low"], meta["high"]) else ()
    return Dimension(name, search, parent=parent, limits=tuple(meta.get("choices") or ()), default=default,
                     integer=kind is int, choices_within=within)


def options(dims: list, config: dict) -> tuple:
    """(package options, [(transform name, {option: value})], threads) of one sampled configuration."""
    chosen = config.get("backend")
    package = {"backend": chosen} if chosen else {}
    for key in ("quantize", "precision"):
        if _key(key, chosen) in config:
            package[key] = config[_key(key, chosen)]
    for d in dims:   # a backend option at its "not set" value ("", as keep_float's none) is left out
        if d.backend and d.owner == (chosen or "") and d.name in config and config[d.name] != "" and (
                not d.int8_only or package.get("quantize") == "int8"):
            package[_option_name(d)] = config[d.name]
    steps = []
    for d in dims:
        if d.toggle and config.get(d.name):
            values = {k.split(".", 1)[1]: v for k, v in config.items() if k.startswith(d.name + ".")}
            steps.append((d.name, values))
    return package, steps, config.get("threads")


def _key(name: str, backend: str | None) -> str:
    """A backend dimension's name: "quantize", or "openvino.quantize" where the space has several backends."""
    return f"{backend}.{name}" if backend else name


def _option_name(d: Dimension) -> str:
    return d.name.removeprefix(f"{d.owner}.") if d.owner else d.name


def textbook(dims: list, precision: str) -> dict | None:
    """The configuration of INT8 alone with the backend's defaults (no transform, options unset, the profile's
    precision; the profile's own backend where there are several), as sampled parameters: what a user tries
    first by hand. None when that backend's space has no INT8."""
    default = next((d.choices[0] for d in dims if d.name == "backend"), None)
    if "int8" not in next((d.choices for d in dims if d.name == _key("quantize", default)), ()):
        return None
    return _plain(dims, precision, "int8")


def untouched(dims: list, precision: str) -> dict:
    """The baseline's parameters (no quantization, no transform) for a sampler that models every dimension;
    a value the space leaves out (a space without "none") is recorded as the dimension's first choice."""
    return params(dims, _plain(dims, precision, "none"), every=True)


def params(dims: list, config: dict, every: bool = False) -> dict:
    """The trial parameters that make sample() return `config` (a configuration of sample, grid_points or
    textbook): what enqueue_trial and the grid are given. A transform with a strength axis is no parameter of
    its own: the axis is the option's value, or its off end. every: every dimension a sampler that models them
    all suggests, the others at rest (first choice, lower bound, or an axis's off end)."""
    axes = {d.name: axis for d in dims if (axis := strength_axis(dims, d)) is not None}
    out = dict(config)
    for toggle, axis in axes.items():
        if toggle in out and not out.pop(toggle):
            out[axis.name] = _off_end(axis)
    if not every:
        return out
    off_ends = {axis.name: _off_end(axis) for axis in axes.values()}

    def rest(d):
        if d.name in off_ends:
            return off_ends[d.name]
        return d.choices[0] if d.choices else int(d.low) if d.integer else d.low

    def given(d):
        return d.name in out and (not d.choices or out[d.name] in d.choices)
    return {d.name: out[d.name] if given(d) else rest(d) for d in dims if d.name not in axes}


def strength_axis(dims: list, toggle: Dimension) -> Dimension | None:
    """The axis a transform's toggle is sampled as: its strength option's range extended by one step past the
    end where the transform is off (Dimension.off); None where the toggle is searched as itself (no strength
    option, a space file fixes the transform on or off, or the option to one value or a log scale)."""
    if not toggle.toggle or set(toggle.choices) != {False, True}:
        return None
    strength = next((d for d in dims if d.parent == toggle.name and d.off and not d.choices and not d.log
                     and d.low < d.high), None)
    if strength is None:
        return None
    width = strength.step or (strength.high - strength.low) / (GRID_POINTS - 1)   # one grid step
    if strength.integer:
        width = max(1, round(width))
    if strength.off == "below":
        low, high = strength.low - width, strength.high
    else:
        low, high = strength.low, strength.high + width
    if strength.step and not strength.integer:
        low, high = round(low, STEP_DIGITS), round(high, STEP_DIGITS)
    return dataclasses.replace(strength, low=low, high=high)


def _off_end(axis: Dimension):
    """The value of a strength axis that means its transform is off."""
    return axis.low if axis.off == "below" else axis.high


def _on(strength: Dimension, value) -> bool:
    """Whether a value of strength's axis is within the option's own range (the transform on)."""
    return value >= strength.low if strength.off == "below" else value <= strength.high


def _plain(dims: list, precision: str, quantize: str) -> dict:
    """Every transform off, the backend's options unset: the first backend's (the profile's own), with
    `quantize` and `precision` where its space has them."""
    params = {}
    for d in dims:
        if not _applies(d, params):
            continue
        name = _option_name(d)
        if name == "quantize":
            params[d.name] = quantize
        elif d.name == "threads":
            params[d.name] = max(d.choices) if d.choices else d.high
        elif d.choices:
            preferred = False if d.toggle else precision if name == "precision" else ""
            params[d.name] = preferred if preferred in d.choices else d.choices[0]
        else:
            params[d.name] = d.low
    return params


def sample(dims: list, trial, every: bool = False) -> dict:
    """One configuration: every dimension whose parent (if any) is on; a transform with a strength axis
    (strength_axis) on where the axis's value is within its option's range. every=True also suggests the
    options of a transform that is off (left out of the configuration): a Gaussian-process sampler models only
    the dimensions every trial has."""
    config, axes = {}, set()
    for d in dims:
        if d.name in axes:   # a strength option: suggested as its transform's axis
            continue
        applies = not (d.parent and config.get(d.parent) != d.when) and _qdq_applies(d, config)
        axis = strength_axis(dims, d)
        if axis is not None:
            axes.add(axis.name)
            value = axis.suggest(trial) if applies or every else None
            if applies:
                strength = next(s for s in dims if s.name == axis.name)
                config[d.name] = _on(strength, value)
                if config[d.name]:
                    config[axis.name] = value
        elif applies:
            config[d.name] = d.suggest(trial)
        elif every:
            d.suggest(trial)
    return config


def grid_points(dims: list) -> list:
    """Every distinct configuration a grid search tries (Dimension.grid's values), as sampled parameters: a
    transform's options only while it is on, a backend option that acts only with INT8 only then. A plain
    product over the dimensions would repeat each configuration once per value of every option that is off.
    BadInput past GRID_LIMIT configurations (the default space of a PyTorch source has millions)."""
    points = [{}]
    for d in dims:
        grown = []
        for point in points:
            if _applies(d, point):
                grown += [dict(point, **{d.name: value}) for value in d.grid()]
            else:
                grown.append(point)
            if len(grown) > GRID_LIMIT:
                raise BadInput(f"--sampler grid: the space has more than {GRID_LIMIT:,} configurations; narrow it "
                               "with a --space file (fix transforms or options you do not need searched)")
        points = grown
    return points


def random_point(dims: list, rng) -> dict:
    """One configuration drawn from the grid's values (random.Random rng), without listing the grid."""
    point = {}
    for d in dims:
        if _applies(d, point):
            point[d.name] = rng.choice(d.grid())
    return point


class Exploration:
    """Configurations to offer when a search's sampler only repeats measured ones: the grid's, in an order the seed
    shuffles, each offered once; where the grid is too large to list, random draws from its values."""

    def __init__(self, dims: list, seed: int):
        self.dims, self.seed = dims, seed
        try:
            self.points = grid_points(dims)
            random.Random(seed).shuffle(self.points)
        except BadInput:
            self.points = None

    def candidates(self, salt):
        """An iterator of configurations to try in turn (the caller takes the first nobody measured)."""
        if self.points is None:
            rng = random.Random(f"{self.seed}:{salt}")
            return (random_point(self.dims, rng) for _ in range(EXPLORE_DRAWS))
        return iter(lambda: self.points.pop() if self.points else None, None)


def _applies(d: Dimension, point: dict) -> bool:
    """Whether `point` (the dimensions before d, in order) samples d: its parent has the value it needs, and
    an INT8-only option's backend quantizes to INT8."""
    return not (d.parent and point.get(d.parent) != d.when) and not (
        d.int8_only and point.get(_key("quantize", d.owner or None)) != "int8") and _qdq_applies(d, point)


def _qdq_applies(d: Dimension, point: dict) -> bool:
    """Whether a QDQ-making transform's toggle applies: the chosen backend runs its graph, unquantized (and at
    fp32 where its precision would not act on the graph)."""
    if not d.qdq_backends:
        return True
    chosen = point.get("backend")
    backend = chosen or d.qdq_backends[0]
    return backend in d.qdq_backends and point.get(_key("quantize", chosen)) == "none" and (
        backend not in d.qdq_fp32_only or point.get(_key("precision", chosen), "fp32") == "fp32")


def _read(path) -> dict:
    path = pathlib.Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(f"search space file not found: {path}") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError) as e:   # arrays 500 deep
        raise BadInput(f"{path}: not a readable TOML space: {(str(e).splitlines() or [type(e).__name__])[0]}") from None


def _narrow(dims: list, doc: dict, path, backend_names: str) -> list:
    by_name = {d.name: d for d in dims}
    narrowed = []
    for key, value in _dotted(doc, by_name, path).items():
        if key == "threads" and key not in by_name:
            by_name[key] = _threads(value, path)
            continue
        # a plain backend key ("quantize") where each backend has its own: every backend's that has it
        targets = [key] if key in by_name else [d.name for d in dims if d.owner and _option_name(d) == key]
        if not targets and key in transforms.names() and (value is False or value == [False] and value[0] is False):
            continue   # off where it is no dimension (no --train-data): what holds; one file serves both studies
        if not targets:
            raise BadInput(f"{path}: {key}: not a dimension of this search (backend {backend_names}"
                           f"{_why_absent(key, by_name)}); dimensions: {', '.join(by_name) or 'none'}")
        for name in targets:
            by_name[name] = _narrowed(by_name[name], value, f"{path}: {key}", len(targets) > 1)
            narrowed.append((key, name))
    for key in dict.fromkeys(key for key, _ in narrowed):
        # several values, or one other than what a candidate gets anyway (`keep_float = ["auto"]` beside
        # `quantize = ["none"]` was taken and never tried; a pin of the default, as a space file shared by studies
        # has, is left alone), and no backend's copy sampled
        searched = [by_name[name] for k, name in narrowed if k == key and (
            len(by_name[name].grid()) > 1 or by_name[name].grid() != [by_name[name].default])]
        unused = [why for why in (_why_unused(by_name, d) for d in searched) if why]
        if searched and len(unused) == len(searched):
            raise BadInput(f"{path}: {key}: never searched, since {unused[0]}")
    return list(by_name.values())


def _why_unused(by_name: dict, d: Dimension) -> str:
    """Why the file's other choices never let `d` be sampled (`prune = [false]` beside a `prune.channels` range:
    the user meant one of the two, and the study would search neither), or ""."""
    parent = by_name.get(d.parent)
    if parent is not None and parent.choices and d.when not in parent.choices:
        return (f"{d.parent} is narrowed to {toml_value(list(parent.choices))} (it is sampled only with {d.parent} "
                f"= {toml_value(d.when)})")
    quantize = by_name.get(_key("quantize", d.owner or None))
    if d.int8_only and quantize is not None and "int8" not in quantize.choices:
        return f"{quantize.name} is narrowed to {toml_value(list(quantize.choices))} (it acts only with int8)"
    return ""


def _dotted(doc: dict, by_name: dict, path) -> dict:
    """The space file's keys as the dotted names of dimensions. TOML reads an unquoted `prune.channels = [...]` as
    a table `prune` holding `channels` (the message showed the table as a Python dict); a table is a value only of a
    number range ({low, high, step}), so a table under any other key is read as the names within it."""
    out = {}
    for key, value in doc.items():
        dim = by_name.get(key)
        # a {low, high, step} table is a range even where `key` is no dimension here: the error names the key,
        # not "distill.epochs.low"
        if not isinstance(value, dict) or key == "threads" or (dim is not None and not dim.choices) or (
                dim is None and value and set(value) <= {"low", "high", "step"}):
            out[key] = value
        elif dim is not None and value and set(value) <= {"low", "high", "step"}:   # read "round_to.low: not a ..."
            raise BadInput(f"{path}: {key}: a choice among {_listed(dim.limits or dim.choices)}{_or_within(dim)}, "
                           "not a range: give a "
                           f"list of values (e.g. {key} = {toml_value(list(dim.choices[:2]))})")
        elif not value:
            raise BadInput(f"{path}: {key}: an empty table (a range is {{low, high, step}}; a dotted name such as "
                           f"\"{key}.OPTION\" narrows one of its options)")
        else:
            out.update(_dotted({f"{key}.{k}": v for k, v in value.items()}, by_name, path))
    return out


def _why_absent(key: str, by_name: dict) -> str:
    """Why a transform the registry has is not searched here, or why its option is not ("" for a name that is no
    transform)."""
    from ..profiles import BACKENDS

    name, _, option = key.partition(".")
    if name in BACKENDS and option and not any(k.startswith(f"{name}.") for k in by_name):
        return f"; {name} is not among the backends searched here"   # a file shared by studies on other profiles
    if name not in transforms.names():
        return ""
    if name in by_name:   # the transform is searched: the option is what is not ("prune.foo")
        options = [d.name.partition(".")[2] for d in by_name.values() if d.parent == name]
        return f"; {name} has no option {option or '?'}: its options here are {', '.join(options) or 'none'}"
    transform = transforms.get(name)
    if not transform.searchable:
        return f"; {name} is never searched: it cannot make a model faster"
    if transform.needs_training_data:
        return f"; {name} needs --train-data"
    return "; transforms need a PyTorch source"


def _threads(value, path) -> Dimension:
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
        raise BadInput(f"{path}: threads: expected a list of thread counts >= 1, got {toml_value(value)}")
    return Dimension("threads", tuple(sorted(set(values))))


def _narrowed(dim: Dimension, value, where: str, shared: bool = False) -> Dimension:
    """dim within the space file's value. shared: the value narrows this dimension of several backends, and
    a choice one backend lacks (OpenVINO has no dynamic quantization) is left out for it."""
    if dim.choices:
        allowed = dim.limits or dim.choices
        values = value if isinstance(value, list) else [value]
        bad = [v for v in values if not (_one_of(v, allowed) or _within(v, dim))]
        if shared and values and len(bad) < len(values):
            values, bad = [v for v in values if _one_of(v, allowed) or _within(v, dim)], []
        if not values:   # `quantize = []` read "[] is not one of none, dynamic, int8"
            raise BadInput(f"{where}: an empty list leaves nothing to search: give at least one of "
                           f"{_listed(allowed)}")
        if bad:
            owner = f" (backend {dim.owner}; `backend = [...]` leaves it out)" if shared else ""
            # _backend_dimensions offers INT8 only with calibration data
            calib = " (int8 needs --calib)" if bad[:1] == ["int8"] and dim.name.endswith("quantize") else ""
            raise BadInput(f"{where}: {toml_value(bad[0])} is not one of {_listed(allowed)}{_or_within(dim)}{owner}"
                           f"{calib}")
        values = [int(v) if dim.integer and _within(v, dim) else v for v in values]   # round_to = [8.0]: 8
        return dataclasses.replace(dim, choices=tuple(dict.fromkeys(values)))
    value, step = _stepped(value, where) if isinstance(value, dict) else (value, None)
    if _number(value):
        value = [value, value]
    if not (isinstance(value, list) and len(value) == 2 and all(map(_number, value))):
        # a list of three numbers is read as choices by a user who has seen `quantize = [...]`: say it is a range
        raise BadInput(f"{where}: a number option is a range: expected [low, high], {{low, high, step}} (e.g. "
                       f"{{low = 0.3, high = 0.9, step = 0.3}} for 0.3, 0.6, 0.9) or one number, got {toml_value(value)}")
    low, high = value
    if low > high:   # said as such: "not within the option's bounds" sent the user to the bounds
        raise BadInput(f"{where}: low {low:g} is above high {high:g}")
    lowest, highest = dim.limits or (dim.low, dim.high)
    # an open lower bound, or a log scale's 0, failed a trial mid-study (a walkthrough) where it belongs here
    above = dim.low_open or dim.log and lowest <= 0
    if not (lowest < low if above else lowest <= low) or not low <= high <= highest:
        bounds = f"above {max(lowest, 0):g}, up to {highest:g}" if above else f"{lowest:g}..{highest:g}"
        scale = ", a log scale" if dim.log and not dim.low_open else ""
        raise BadInput(f"{where}: [{low}, {high}] is not within the option's bounds ({bounds}{scale})")
    if dim.integer and not all(float(v).is_integer() for v in (low, high, step or 1)):
        raise BadInput(f"{where}: expected whole numbers, got low {low}, high {high}" + (
            f", step {step}" if step else ""))
    if step is not None:
        _check_step(low, high, step, dim.log, where)
    return dataclasses.replace(dim, low=low, high=high, step=step)


def _within(value, dim: Dimension) -> bool:
    """Whether a space file's value lies in the bounds of a choice dimension that has them (choices_within:
    `prune.round_to = [3]` read "not one of 1, 8, 16" of an option that takes 1..256)."""
    if not dim.choices_within or not _number(value) or dim.integer and not float(value).is_integer():
        return False
    low, high = dim.choices_within
    return low <= value <= high


def _or_within(dim: Dimension) -> str:
    if not dim.choices_within:
        return ""
    low, high = dim.choices_within
    return f", or any {'whole number' if dim.integer else 'number'} in {low:g}..{high:g}"


def _listed(allowed) -> str:
    """A dimension's choices as a space file writes them: true, not True; "" (keep_float's "none": no layer left
    float) as TOML has it, with what it means."""
    return ", ".join('"" (none)' if a == "" else toml_value(a) if isinstance(a, bool) else str(a) for a in allowed)


def _one_of(value, allowed) -> bool:
    """Whether a space file's value is one of a dimension's choices, true and false apart from 1 and 0: in Python
    True == 1, and `threads = true` passed as one thread (then failed mid-study), `prune = [0, 1]` as off and on."""
    return any(value == choice and isinstance(value, bool) == isinstance(choice, bool) for choice in allowed)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _stepped(value: dict, where: str) -> tuple:
    """([low, high], step or None) of a {low, high, step} table; without a step, the range as [low, high] is
    (it was refused, and hid a low above its high)."""
    unknown = sorted(set(value) - {"low", "high", "step"})
    if unknown or not {"low", "high"} <= set(value):
        raise BadInput(f"{where}: expected a table of low, high and (optionally) step, got "
                       f"{', '.join(map(str, value)) or 'none'}")
    if not all(_number(value[k]) for k in value):
        raise BadInput(f"{where}: low, high and step must be numbers, got {toml_value(value)}")
    return [value["low"], value["high"]], value.get("step")


MAX_STEPS = 10_000   # steps of a space file's {low, high, step}: far more values than any study measures


def _check_step(low, high, step, log: bool, where: str) -> None:
    if log:
        raise BadInput(f"{where}: a step needs a linear range; this option is searched on a log scale")
    if not step > 0:
        raise BadInput(f"{where}: step must be above 0, got {step}")
    count = (high - low) / step
    if round(count) > MAX_STEPS:   # the grid lists every value: a step of 1e-9 over 0.1..0.7 was a MemoryError
        raise BadInput(f"{where}: step {step:g} makes {round(count) + 1:,} values of {low:g}..{high:g}; at most "
                       f"{MAX_STEPS + 1:,} are searched: give a larger step")
    if abs(count - round(count)) > 1e-6:
        raise BadInput(f"{where}: high {high} is not low {low} plus a whole number of steps of {step}")
