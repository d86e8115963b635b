"""Hardware profiles: one TOML file each, validated into frozen dataclasses before any work starts."""
from __future__ import annotations

import dataclasses
import math
import os
import pathlib
import re
import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

from device_agent.power import CHOICES as POWER_SENSORS  # the agent's reader registry: the one list of names

from .budgets import describe_range, shown, validate_budgets
from .errors import BadInput

SCHEMA = "edgeopt.profile/1"
PRECISIONS = ("fp32", "fp16", "bf16")
# Backends a profile may name; edgeopt.convert says which of them this version can convert for.
BACKENDS = ("onnxruntime", "openvino", "tflite", "tensorrt")
# The int8 schemes each backend reads (edgeopt.compress.ort_quantize.SCHEMES, nncf_quantize.SCHEME_PRESETS,
# convert/tflite.py; a test keeps this in step with them without importing the heavy modules here).
INT8_SCHEMES = {"onnxruntime": ("u8s8", "s8s8", "s8s8-symmetric"), "openvino": ("nncf-performance", "nncf-mixed"),
                "tflite": ("full-integer",), "tensorrt": ("tensorrt-qdq",)}
# an earlier edgeopt's names, said as such: a profile written for it read "is not one of tensorrt-qdq" alone
RENAMED_INT8_SCHEMES = {"tensorrt-ptq": "tensorrt-qdq (TensorRT INT8 is now built from a QDQ model, which edgeopt "
                                        "quantizes, not by TensorRT's own calibrator)"}
# [software]: the versions a profile's bundles are made for, each key a comma-separated list of version
# prefixes ("8.5, 10.3"); `device doctor` flags a device whose versions match none of them.
SOFTWARE = ("jetpack", "l4t", "tensorrt", "cuda")
VERSIONS = re.compile(r"\d+(\.\d+)*(\s*,\s*\d+(\.\d+)*)*")
# platform.machine() of the devices edgeopt targets; "any" for a profile that fits all.
ARCHES = ("any", "x86_64", "aarch64", "armv7l", "armv6l", "riscv64")
MAX_THREADS = 1024          # cores and threads: far above any edge board, far below a typo
MAX_RAM_MB = 1 << 24        # 16 TiB
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # typed on command lines and written into manifests


@dataclasses.dataclass(frozen=True)
class DeviceFacts:
    arch: str
    cpu: str
    cores: int
    ram_mb: tuple
    accelerator: str = ""
    dla_cores: int = 0      # NVIDIA Deep Learning Accelerator cores (Orin NX / AGX Orin: 2, Orin Nano: 0)


@dataclasses.dataclass(frozen=True)
class RuntimeSettings:
    threads: int
    power_sensor: str


@dataclasses.dataclass(frozen=True)
class ParityTolerance:
    fp32_max_abs_error: float
    fp16_max_abs_error: float
    quantized_min_top1_agreement: float
    bf16_max_abs_error: float | None = None  # optional; absent = the fp16 tolerance

    def max_abs_error(self, precision: str) -> float:
        if precision == "bf16" and self.bf16_max_abs_error is not None:
            return self.bf16_max_abs_error
        return self.fp16_max_abs_error if precision in ("fp16", "bf16") else self.fp32_max_abs_error


@dataclasses.dataclass(frozen=True)
class Profile:
    name: str
    description: str
    backend: str
    default_precision: str
    int8_scheme: str
    device: DeviceFacts
    runtime: RuntimeSettings
    budgets: dict
    parity: ParityTolerance
    path: str
    software: dict = dataclasses.field(default_factory=dict)  # [software] key -> (version prefix, ...)
    # Every backend whose runtime this hardware runs, `backend` (the default) first: `optimize` searches
    # among them, `package --backend` picks one.
    backends: tuple = ()

    def __post_init__(self):
        if not self.backends:
            object.__setattr__(self, "backends", (self.backend,))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["device"]["ram_mb"] = list(self.device.ram_mb)
        return d


def profile_dirs() -> list:
    """Where profiles are looked up, first match wins: $EDGEOPT_PROFILES, then the built-in set. A folder named
    in $EDGEOPT_PROFILES that is not one is bad input: ignored, a mistyped path left every profile in it unknown
    (or a built-in used in its place) without a word."""
    dirs = [pathlib.Path(p) for p in os.environ.get("EDGEOPT_PROFILES", "").split(os.pathsep) if p]
    for d in dirs:
        if not d.is_dir():
            raise BadInput(f"$EDGEOPT_PROFILES names {d}, which is not a folder of profile .toml files")
    return dirs + builtin_dirs()


def builtin_dirs() -> list:
    here = pathlib.Path(__file__).resolve().parent
    # a wheel's copy (setup.py), else the repository's
    return [d for d in (here / "profiles", here.parent / "profiles") if d.is_dir()]


def shadows_builtin(profile) -> str | None:
    """The built-in profile file a profile of the same name from $EDGEOPT_PROFILES takes the place of, or None."""
    path = pathlib.Path(profile.path).resolve()
    for d in builtin_dirs():
        builtin = d / f"{profile.name}.toml"
        if builtin.is_file() and builtin.resolve() != path:
            return str(builtin)
    return None


def list_profiles(broken: list | None = None) -> list:
    """Every profile, first found by name; with `broken` (a list), a profile that does not load is left out and
    its error appended there (one bad file of $EDGEOPT_PROFILES hid every profile from `profiles list`)."""
    names = {}
    for d in profile_dirs():
        for f in sorted(d.glob("*.toml")):
            names.setdefault(f.stem, f)
    out = []
    for f in names.values():
        try:
            out.append(load_profile(str(f)))
        except BadInput as e:
            if broken is None:
                raise
            broken.append(str(e))
    return out


def load_profile(name_or_path: str) -> Profile:
    """Load a profile by name (`generic`) or by path to a .toml file."""
    path = find_profile(name_or_path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError) as e:   # arrays 500 deep
        raise BadInput(f"profile {path}: not valid TOML: {e}") from None
    return _validate(data, path)


def find_profile(name_or_path: str) -> pathlib.Path:
    """The file of a profile named (`generic`) or given by path; BadInput naming the known ones."""
    p = pathlib.Path(name_or_path)
    if p.suffix == ".toml":
        if not p.is_file():
            raise BadInput(f"profile file not found: {p}")
        return p
    for d in profile_dirs():
        candidate = d / f"{name_or_path}.toml"
        if candidate.is_file():
            return candidate
    known = sorted({f.stem for d in profile_dirs() for f in d.glob("*.toml")})
    raise BadInput(f"unknown profile {name_or_path!r}; known profiles: {', '.join(known)}")


REQUIRED = object()


@dataclasses.dataclass(frozen=True)
class Key:
    """One profile key: its TOML type, the inclusive range of a number (or of each list item), its choices."""
    kind: type
    low: float = -math.inf
    high: float = math.inf
    choices: tuple = ()
    default: object = REQUIRED
    pattern: re.Pattern | None = None


TOLERANCE = Key(float, 0.0)   # a max abs error: finite, >= 0
TEXT = Key(str, pattern=re.compile(r"[^\r\n]+"))   # one line: shown in tables and written into results

# The profile schema, declared once: [section] -> key -> Key ("" is the top level). int8_scheme's choices
# depend on the backend and ram_mb's 0 ("not fixed") must stand alone: _validate checks those two.
KEYS = {
    "": {"schema": Key(str, choices=(SCHEMA,)), "name": Key(str, pattern=NAME), "description": Key(str),
         "backend": Key(str, choices=BACKENDS), "default_precision": Key(str, choices=PRECISIONS),
         "int8_scheme": Key(str), "device": Key(dict), "runtime": Key(dict), "parity": Key(dict),
         "budgets": Key(dict, default={}), "software": Key(dict, default={}),
         "backends": Key(tuple, default=())},   # other backends the hardware runs (_backends checks the names)
    "device": {"arch": Key(str, choices=ARCHES), "cpu": TEXT, "accelerator": Key(str, default=""),
               "cores": Key(int, 0, MAX_THREADS),            # 0: whatever the device has
               "ram_mb": Key(list, 0, MAX_RAM_MB),           # [0]: not fixed by the profile
               "dla_cores": Key(int, 0, 8, default=0)},
    "runtime": {"threads": Key(int, 0, MAX_THREADS),        # 0: one per physical core, resolved by the agent
                "power_sensor": Key(str, choices=POWER_SENSORS)},
    "parity": {"fp32_max_abs_error": TOLERANCE, "fp16_max_abs_error": TOLERANCE,
               "bf16_max_abs_error": Key(float, 0.0, default=None),
               "quantized_min_top1_agreement": Key(float, 0.0, 1.0)},
    "software": {k: Key(str, default=None, pattern=VERSIONS) for k in SOFTWARE},
}
_PATTERN_TEXT = {NAME.pattern: "must be a non-empty name of letters, digits, '.', '_' or '-'",
                 VERSIONS.pattern: "must be version numbers separated by commas, like \"8.5, 10.3\"",
                 TEXT.pattern.pattern: "must be one line of text, not empty"}
_TYPE_NAMES = {str: "text", int: "an integer", float: "a number", list: "a non-empty list of integers", dict: "a table",
               tuple: "a list of backend names"}


class _Section:
    """Reads one TOML table against its KEYS entry, refusing unknown keys, wrong types and out-of-range values
    with the file and key named."""

    def __init__(self, data, where: str, path: pathlib.Path):
        self.data, self.where, self.path = data, where, path
        extra = sorted(set(data) - set(KEYS[where]))
        if extra:
            raise BadInput(f"profile {path}: unknown key {self.name(extra[0])}")

    def __getitem__(self, key):
        spec = KEYS[self.where][key]
        if key not in self.data:
            if spec.default is REQUIRED:
                raise BadInput(f"profile {self.path}: missing key {self.name(key)}")
            return spec.default
        value = self.data[key]
        if spec.kind is tuple:   # a list of names
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                self.refuse(key, f"must be {_TYPE_NAMES[tuple]}")
            return tuple(value)
        if spec.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value) if abs(value) < 1e300 else math.inf  # refused below, without an OverflowError
        items = value if isinstance(value, list) else [value]
        if not isinstance(value, spec.kind) or isinstance(value, bool) or spec.kind is list and (
                not value or any(isinstance(i, bool) or not isinstance(i, int) for i in value)):
            self.refuse(key, f"must be {_TYPE_NAMES[spec.kind]}")
        if spec.kind in (int, float, list) and not all(spec.low <= i <= spec.high and math.isfinite(i) for i in items):
            finite = "finite and " if spec.kind is float else ""
            self.refuse(key, f"must be {finite}{describe_range(spec.low, spec.high)}")
        if spec.choices and value not in spec.choices:
            self.refuse(key, f"is not one of {', '.join(spec.choices)}")
        if spec.pattern is not None and not spec.pattern.fullmatch(value):
            self.refuse(key, _PATTERN_TEXT.get(spec.pattern.pattern, "must not be empty"))
        return tuple(value) if spec.kind is list else value

    def refuse(self, key, must: str):
        raise BadInput(f"profile {self.path}: {self.name(key)} {must}, got {shown(self.data[key])}")

    def name(self, key):
        key = key if key.isprintable() else repr(key)  # the message stays one line
        return f"{self.where}.{key}" if self.where else key


def _validate(data: dict, path: pathlib.Path) -> Profile:
    top = _Section(data, "", path)
    top["schema"]
    dev, rt, par = (_Section(top[k], k, path) for k in ("device", "runtime", "parity"))
    device = DeviceFacts(dev["arch"], dev["cpu"], dev["cores"], dev["ram_mb"], dev["accelerator"], dev["dla_cores"])
    if 0 in device.ram_mb and device.ram_mb != (0,):
        dev.refuse("ram_mb", "must be [0] (not fixed) or sizes > 0")
    backend = top["backend"]
    if top["int8_scheme"] not in INT8_SCHEMES[backend]:
        renamed = RENAMED_INT8_SCHEMES.get(top["int8_scheme"]) if backend == "tensorrt" else None
        top.refuse("int8_scheme", f"is an earlier edgeopt's name: it is now {renamed}" if renamed else
                   f"is not one of {', '.join(INT8_SCHEMES[backend])} (backend {backend})")
    profile = Profile(
        name=top["name"], description=top["description"], backend=backend,
        default_precision=top["default_precision"], int8_scheme=top["int8_scheme"], device=device,
        runtime=RuntimeSettings(rt["threads"], rt["power_sensor"]),
        budgets=validate_budgets(top["budgets"], f"profile {path}"),
        parity=ParityTolerance(par["fp32_max_abs_error"], par["fp16_max_abs_error"],
                               par["quantized_min_top1_agreement"], par["bf16_max_abs_error"]),
        path=str(path), software=_software(_Section(top["software"], "software", path)),
        backends=_backends(top, backend))
    if profile.name != path.stem:   # a bundle records the name, and --profile NAME finds the file by it
        top.refuse("name", f"must be the file's own name ({path.stem!r}): bundles record it, and `--profile NAME` "
                           "and `check --profile` find a profile by its file")
    return profile


def _backends(top, backend: str) -> tuple:
    """`backend`, then the other backends the profile lists (each a known backend, none twice)."""
    others = top["backends"]
    for name in others:
        if name not in BACKENDS:
            top.refuse("backends", f"names {name!r}, not one of {', '.join(BACKENDS)}")
    if len(set(others)) != len(others):
        top.refuse("backends", "names a backend twice")
    return (backend,) + tuple(n for n in others if n != backend)


def _software(section) -> dict:
    """{key: (version prefix, ...)} of the keys the [software] table sets."""
    return {k: tuple(v.strip() for v in section[k].split(",")) for k in SOFTWARE if section[k] is not None}
