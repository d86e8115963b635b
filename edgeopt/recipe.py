"""A recipe: the ordered model transforms and the packaging options of one `package` run.

`--recipe recipe.toml` is equivalent to the flags; the manifest records the recipe that was used
(`recipe` field, the same tables), so a bundle can be rebuilt from it:

    [package]                 # any of package_keys(), as the flags spell them (dashes or underscores)
    quantize = "int8"

    [[transform]]             # applied in file order to the PyTorch module, before export
    name = "prune"
    channels = 0.5

    [[transform]]
    name = "distill"
    epochs = 5

Transform options are each transform's own typed Options (edgeopt/compress/); nothing is listed twice.
"""
from __future__ import annotations

import dataclasses
import pathlib
import sys
import typing

from .bundle import SUFFIX
from .compress import base as transforms
from .errors import BadInput
from .options import plain_type

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

# The packaging options a recipe may set: these of package()'s own, and every backend's declared Options
# (package_keys(); edgeopt/convert/), each with its type.
CORE_PACKAGE_KEYS = {"precision": str, "quantize": str, "backend": str, "simplify": bool, "seed": int, "threads": int}


def package_keys() -> dict:
    """{option: type} a recipe's [package] table may hold: CORE_PACKAGE_KEYS and each backend's options (an
    optional `int | None` taken as int); a backend's option is checked against its own bounds later."""
    from .convert import BACKENDS, _backend_class

    keys = dict(CORE_PACKAGE_KEYS)
    for target in filter(None, BACKENDS.values()):
        for name, kind in typing.get_type_hints(_backend_class(target).Options).items():
            keys.setdefault(name, plain_type(kind))
    return keys


@dataclasses.dataclass(frozen=True)
class Step:
    name: str
    options: object     # the transform's Options instance

    def to_dict(self) -> dict:
        return _recorded_entry({"name": self.name, **dataclasses.asdict(self.options)})


def step(name: str, values: dict, where: str) -> Step:
    """A validated step: the transform exists, every option fits its declaration, and those given fit together."""
    if name not in transforms.names():
        raise BadInput(f"{where}: unknown transform {name!r}; transforms: {', '.join(transforms.names())}")
    transform = transforms.get(name)
    options = transforms.build_options(transform.Options, values, f"{where} ({name})")
    transform.check_given(values, f"{where} ({name})")
    return Step(name, options)


def _recorded_entry(entry):
    """A manifest's [[transform]] entry as this version records it (an older bundle's lowrank held rank and
    energy both), so that rebuilding from it, or editing its TOML, passes check_given."""
    if not isinstance(entry, dict) or entry.get("name") not in transforms.names():
        return entry   # left for _steps to refuse, naming the entry
    values = {k: v for k, v in entry.items() if k != "name"}
    return {"name": entry["name"], **transforms.get(entry["name"]).recorded(values)}


def from_flags(prune=None, low_rank=None, distill=False, qat=False, epochs=None, lr=None) -> list:
    """The steps the transform flags ask for, in the one order that makes sense: remove structure first
    (channel pruning, low-rank), then recover accuracy (distillation), then quantization-aware training.
    `--prune channels=R` is structured pruning, `--prune weights=R` unstructured (sparsity)."""
    steps = []
    if prune is not None:   # `--prune ""` said nothing and pruned nothing
        values = transforms.parse_spec(prune, "--prune")
        if "channels" in values and "weights" in values:
            raise BadInput("--prune: give channels=RATIO (structured) or weights=RATIO (unstructured), not both")
        if "weights" in values:
            steps.append(step("sparsity", values, "--prune"))
        elif "channels" in values:
            steps.append(step("prune", values, "--prune"))
        else:
            raise BadInput(f"--prune {prune!r}: say channels=RATIO (structured) or weights=RATIO (unstructured)")
    if low_rank is not None:   # `--low-rank ""`: its defaults, as asked
        steps.append(step("lowrank", transforms.parse_spec(low_rank, "--low-rank"), "--low-rank"))
    training = {k: v for k, v in (("epochs", epochs), ("lr", lr)) if v is not None}
    for flag, wanted, name in (("--distill", distill, "distill"), ("--qat", qat, "qat")):
        if wanted:
            steps.append(step(name, training, flag))
    for flag in (f"--{k}" for k in training):
        if not (distill or qat):
            raise BadInput(f"{flag} applies to --distill or --qat; neither was given")
    return steps


def load(path) -> tuple:
    """(package options {key: value}, [Step]) from a recipe file, or from the recipe a bundle's manifest
    records (a .edgepkg: rebuild it); every defect is one BadInput naming the file and the field."""
    path = pathlib.Path(path)
    doc = _bundle_recipe(path) if path.suffix == SUFFIX else _toml(path)
    if not isinstance(doc, dict):
        raise BadInput(f"{path}: a recipe is a table")
    if not doc:   # an empty file (or the wrong one, made empty) packaged every default without a word
        raise BadInput(f"{path}: the recipe is empty: it needs a [package] table or a [[transform]]")
    unknown = set(doc) - {"package", "transform"}
    if unknown:
        raise BadInput(f"{path}: unknown table {sorted(unknown)[0]!r}; a recipe has [package] and [[transform]]")
    return _package_options(doc.get("package", {}), path), _steps(doc.get("transform", []), path)


def bundle_profile(path) -> str | None:
    """The profile a bundle given as a recipe was packaged for (None for a recipe file): its options (int8_io,
    a backend's own) are that profile's backend's, so a rebuild targets it unless --profile says otherwise."""
    path = pathlib.Path(path)
    if path.suffix != SUFFIX:
        return None
    profile = _manifest(path).get("profile")
    name = profile.get("name") if isinstance(profile, dict) else None
    if not isinstance(name, str) or not name:
        raise BadInput(f"{path}: the bundle records no profile name; give --profile")
    return name


def bundle_budgets(path) -> dict:
    """The budgets a bundle given as the recipe carries ({} for a recipe file): a rebuild of optimize's chosen
    bundle carries the limits the study set, as the bundle did."""
    path = pathlib.Path(path)
    budgets = _manifest(path).get("budgets") if path.suffix == SUFFIX else None
    return dict(budgets) if isinstance(budgets, dict) else {}


def bundle_input_shapes(path, model: str) -> dict:
    """The input shapes a bundle given as the recipe was packaged at, where `model` is the source it was packaged
    from (a rebuild; another model has shapes of its own): a PyTorch module has no shapes of its own, and
    "--recipe BUNDLE rebuilds it" asked for them. {} for a recipe file, or a bundle that records none."""
    path = pathlib.Path(path)
    source = _manifest(path).get("source") if path.suffix == SUFFIX else None
    if not isinstance(source, dict) or not _same_source(source, model):
        return {}
    shapes = source.get("input_shapes")
    return {name: list(dims) for name, dims in shapes.items()} if isinstance(shapes, dict) else {}


def other_source(path, model: str) -> str:
    """What to say where a bundle given as the recipe was packaged from another model than `model`, or from this
    file before it changed: the recipe is applied all the same (the same recipe on a new version of a model is a
    use of it), but a rebuild from the wrong bundle had said nothing. "" where it is the same source."""
    from .models import source_sha256

    path = pathlib.Path(path)
    source = _manifest(path).get("source") if path.suffix == SUFFIX else None
    if not isinstance(source, dict) or not isinstance(source.get("reference"), str):
        return ""
    recorded, sha = source["reference"], source.get("sha256")
    if pathlib.Path(model).is_file() and isinstance(sha, str):
        try:
            now = source_sha256(pathlib.Path(model))
        except BadInput:   # refused with its reason where the model loads
            return ""
        if now == sha:
            return ""
        return (f"{path} was packaged from {recorded} (sha256 {sha[:12]}…); {model} is another model, or that one "
                f"changed since (sha256 {now[:12]}…): the recipe's settings are applied to it")
    if _same_source(source, model):
        return ""
    return f"{path} was packaged from {recorded}; {model} is another model: the recipe's settings are applied to it"


def _same_source(source: dict, model: str) -> bool:
    """Whether `model` names the source a bundle records: the same words, the same file by content (a copy, or
    the path given another way), or the same callable of the same Python file (`./m.py:build` and `m.py:build`)."""
    from .models import source_sha256

    recorded = source.get("reference")
    if not isinstance(recorded, str):
        return False
    if recorded == model:
        return True
    if pathlib.Path(model).is_file():
        try:
            return isinstance(source.get("sha256"), str) and source_sha256(pathlib.Path(model)) == source["sha256"]
        except BadInput:   # an IR without its .bin: no source of any bundle
            return False

    def callable_of(reference: str):
        file, _, name = reference.rpartition(":")
        return (pathlib.Path(file).resolve(), name) if file and pathlib.Path(file).is_file() else None
    return callable_of(model) is not None and callable_of(model) == callable_of(recorded)


def bundle_calibration(path) -> tuple:
    """(the calibration file a bundle given as the recipe was quantized with, or None; why it is not used, or "").
    The file is used only where it is still there with the sha256 recorded: the same data as the bundle's."""
    path = pathlib.Path(path)
    manifest = _manifest(path) if path.suffix == SUFFIX else {}
    recorded = (manifest.get("compression") or {}).get("calibration")
    if not (isinstance(recorded, dict) and "file" in recorded):   # QAT's stage: its quantizers read --calib
        stages = manifest.get("transforms") if isinstance(manifest.get("transforms"), list) else []
        recorded = next((s["details"]["calibration"] for s in stages if isinstance(s, dict)
                         and isinstance(s.get("details"), dict) and isinstance(s["details"].get("calibration"), dict)
                         and "file" in s["details"]["calibration"]), recorded)
    return _recorded_file(path, recorded, "calibrated with", "--calib")


def bundle_train_data(path) -> tuple:
    """(the training data file a bundle given as the recipe was trained on, or None; why it is not used, or ""),
    as bundle_calibration: a rebuild of a distilled bundle said "needs training data" and never which file."""
    path = pathlib.Path(path)
    stages = _manifest(path).get("transforms") if path.suffix == SUFFIX else None
    recorded = next((s["details"]["train_data"] for s in stages or [] if isinstance(s, dict)
                     and isinstance(s.get("details"), dict) and "train_data" in s["details"]), None)
    return _recorded_file(path, recorded, "trained on", "--train-data")


def bundle_teacher(path) -> tuple:
    """(the --teacher a bundle given as the recipe was distilled from, or None; why it cannot be taken, or "").
    Taken where its file is still there unchanged (its sha256), or where it is an importable module:callable."""
    from .models import callable_reference

    path = pathlib.Path(path)
    stages = _manifest(path).get("transforms") if path.suffix == SUFFIX else None
    stage = next((s for s in stages or [] if isinstance(s, dict) and s.get("stage") == "teacher"), None)
    if stage is None:
        return None, ""
    recorded = (stage.get("details") or {}).get("model") if isinstance(stage.get("details"), dict) else None
    if not isinstance(recorded, dict) or not isinstance(recorded.get("reference"), str):
        return None, (f"{path} was distilled from a teacher its manifest does not record for a rebuild (packaged by "
                      "an older edgeopt): give --teacher MODEL")
    reference = recorded["reference"]
    if "file" not in recorded:
        return reference, ""
    file, why = _recorded_file(path, recorded, "distilled from the teacher in", "--teacher MODEL")
    if file is None:
        return None, why
    callable_part = reference[len(reference.rsplit(":", 1)[0]):] if callable_reference(reference) else ""
    return file + callable_part, ""


def _recorded_file(path: pathlib.Path, recorded, what: str, flag: str) -> tuple:
    """(a data file a bundle records ({"file", "sha256"}) where it is still there unchanged, else None; why not)."""
    from .models import sha256_of

    if not isinstance(recorded, dict) or not isinstance(recorded.get("file"), str):
        return None, ""
    file, sha = pathlib.Path(recorded["file"]), recorded.get("sha256")
    if not file.is_file():
        return None, f"{path} was {what} {file}, which is not there now: give {flag}"
    if sha256_of(file) != sha:
        return None, (f"{path} was {what} {file}, which has changed since (sha256 {str(sha)[:12]}… "
                      f"recorded): give {flag} to use it as it is now")
    return str(file), ""


def bundle_eval_data(path, workdir) -> str | None:
    """The eval data a bundle given as the recipe carries (its data/eval.npz, verified with every other member),
    written to `workdir` as `--eval-data` takes it: in the source model's layout, without the reference outputs
    the bundle adds. None for a recipe file or a bundle without eval data. A rebuild without it carried none, so
    `check` read its accuracy budget NOT MEASURED where the original's passed."""
    import numpy as np

    from device_agent import BundleError
    from device_agent.measure.accuracy import REF_PREFIX, check_npz_sizes

    from .bundle import read

    path = pathlib.Path(path)
    entry = ((_manifest(path).get("data") or {}).get("eval") or {}) if path.suffix == SUFFIX else {}
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
        return None
    manifest = read(path, workdir)
    try:   # as the agent reads it: a compressed array could unpack to gigabytes on this host too
        check_npz_sizes(pathlib.Path(workdir) / entry["path"], f"bundle {path}: its eval data {entry['path']}")
    except BundleError as e:
        raise BadInput(str(e)) from None
    with np.load(pathlib.Path(workdir) / entry["path"], allow_pickle=False) as shipped:
        arrays = {k: shipped[k] for k in shipped.files if not k.startswith(REF_PREFIX)}
    for spec in manifest.get("inputs", []):   # the artifact's layout back to the source's (data.to_layouts)
        if spec.get("layout") and spec.get("source_layout") and spec["name"] in arrays:
            back = [spec["layout"].index(axis) for axis in spec["source_layout"]]
            a = arrays[spec["name"]]
            arrays[spec["name"]] = a.transpose([0] + [p + 1 for p in back] if a.ndim == len(back) + 1 else back)
    out = pathlib.Path(workdir) / "eval-from-bundle.npz"
    np.savez(out, **arrays)
    return str(out)


def _manifest(path: pathlib.Path) -> dict:
    import tarfile

    from device_agent import BundleError, manifest as agent_manifest

    from .bundle import manifest_bytes
    try:
        return agent_manifest.parse(manifest_bytes(path))
    except FileNotFoundError:
        raise BadInput(f"recipe not found: {path}") from None
    except (tarfile.TarError, OSError, BundleError) as e:
        raise BadInput(f"{path}: not a readable edgeopt bundle: {e}") from None


def _bundle_recipe(path: pathlib.Path) -> dict:
    manifest = _manifest(path)
    if "recipe" not in manifest:
        raise BadInput(f"{path}: the bundle records no recipe (packaged by an older edgeopt)")
    doc = manifest["recipe"]
    if isinstance(doc, dict) and isinstance(doc.get("package"), dict):   # None means "the default" in a manifest
        doc = dict(doc, package={k: v for k, v in doc["package"].items() if v is not None})
    if isinstance(doc, dict) and isinstance(doc.get("transform"), list):
        doc = dict(doc, transform=[_recorded_entry(e) for e in doc["transform"]])
    return doc


def _toml(path: pathlib.Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(f"recipe not found: {path}") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError) as e:   # arrays 500 deep
        raise BadInput(f"{path}: not a readable TOML recipe: {(str(e).splitlines() or [type(e).__name__])[0]}") from None


# Files a package run reads, which a recipe leaves to the command line: the same recipe serves other data
DATA_FLAGS = {"calib": "--calib FILE", "eval_data": "--eval-data FILE", "train_data": "--train-data FILE",
              "teacher": "--teacher MODEL", "input_shape": "--input-shape NAME=D,D,.."}


SEED_MAX = 2 ** 32 - 1   # numpy's and Optuna's samplers take seeds up to this


def check_seed(seed, field: str = "--seed") -> None:
    """A seed numpy and Optuna take: -1 was a 50-line traceback, exit 1 (a walkthrough)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise BadInput(f"{field} {seed!r}: expected a whole number from 0 to {SEED_MAX}")


def _package_options(table, path) -> dict:
    if not isinstance(table, dict):
        raise BadInput(f"{path}: [package] must be a table")
    out, known = {}, package_keys()
    for key, value in table.items():
        name = key.replace("-", "_")
        kind = known.get(name)
        if kind is None and name in DATA_FLAGS:
            raise BadInput(f"{path}: package.{key}: a recipe holds the method, not its data: give "
                           f"{DATA_FLAGS[name]} on the command line")
        if kind is None:
            raise BadInput(f"{path}: package.{key}: unknown option; options: {', '.join(known)}")
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise BadInput(f"{path}: package.{key}: expected {kind.__name__}, got {value!r}")
        if name == "seed":   # said as the recipe's field, not as a --seed the user never typed (a review)
            check_seed(value, f"{path}: package.{key}")
        out[name] = value
    return out


def _steps(entries, path) -> list:
    if not isinstance(entries, list):
        raise BadInput(f"{path}: transform must be an array of tables ([[transform]])")
    steps = []
    for i, entry in enumerate(entries):
        where = f"{path}: transform[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise BadInput(f"{where}: needs name = \"prune\" (transforms: {', '.join(transforms.names())})")
        values = {k: v for k, v in entry.items() if k != "name"}
        steps.append(step(entry["name"], values, where))
    return steps


def to_dict(package_options: dict, steps: list) -> dict:
    """The recipe as the manifest records it (the same tables as the file)."""
    return {"package": dict(package_options), "transform": [s.to_dict() for s in steps]}


def to_toml(recipe: dict) -> str:
    """A manifest's recipe as the text of a recipe file (to edit one a bundle was built with)."""
    from .pipeline import UNSET   # here: pipeline imports this module

    lines = ["[package]"]
    # None, "" and a compatibility keyword's own default are "not set" (pipeline.UNSET): a key left out reads the
    # same, and the recipe reads shorter (a LiteRT bundle's printed OpenVINO's performance_hint = "latency")
    lines += [f"{k} = {toml_value(v)}" for k, v in recipe.get("package", {}).items()
              if v is not None and v != "" and not (k in UNSET and v == UNSET[k])]
    for entry in map(_recorded_entry, recipe.get("transform", [])):
        lines += ["", "[[transform]]"] + [f"{k} = {toml_value(v)}" for k, v in entry.items()]
    return "\n".join(lines) + "\n"


def toml_value(value) -> str:
    """A value as TOML spells it: a recipe's, or a space file's in a message (a Python repr read ['a'] and
    {'low': 1})."""
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (str, int, float)):
        return json.dumps(value)   # numbers and strings: JSON's spelling is TOML's
    return str(value)   # a date or time a space file can hold
