"""Hardware profiles: one TOML file each, validated into frozen dataclasses before any work starts."""
from __future__ import annotations

import dataclasses
import os
import pathlib
import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

from device_agent.power import CHOICES as POWER_SENSORS  # the agent's reader registry: the one list of names

from .budgets import validate_budget_keys
from .errors import BadInput

SCHEMA = "edgeopt.profile/1"
PRECISIONS = ("fp32", "fp16", "bf16")
# Backends a profile may name; edgeopt.convert says which of them this version can convert for.
BACKENDS = ("onnxruntime", "openvino", "tflite", "tensorrt")


@dataclasses.dataclass(frozen=True)
class DeviceFacts:
    arch: str
    cpu: str
    cores: int
    ram_mb: tuple
    accelerator: str = ""


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

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["device"]["ram_mb"] = list(self.device.ram_mb)
        return d


def profile_dirs() -> list:
    """Where profiles are looked up, first match wins: $EDGEOPT_PROFILES, then the built-in set."""
    dirs = [pathlib.Path(p) for p in os.environ.get("EDGEOPT_PROFILES", "").split(os.pathsep) if p]
    here = pathlib.Path(__file__).resolve().parent
    dirs += [here.parent / "profiles", here / "profiles"]
    return [d for d in dirs if d.is_dir()]


def list_profiles() -> list:
    names = {}
    for d in profile_dirs():
        for f in sorted(d.glob("*.toml")):
            names.setdefault(f.stem, f)
    return [load_profile(str(f)) for f in names.values()]


def load_profile(name_or_path: str) -> Profile:
    """Load a profile by name (`generic`) or by path to a .toml file."""
    path = _find(name_or_path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise BadInput(f"profile {path}: not valid TOML: {e}") from None
    return _validate(data, path)


def _find(name_or_path: str) -> pathlib.Path:
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


class _Section:
    """Reads one TOML table, rejecting unknown keys and wrong types with the file and key named."""

    def __init__(self, data, where: str, path: pathlib.Path):
        if not isinstance(data, dict):
            raise BadInput(f"profile {path}: [{where}] must be a table")
        self.data, self.where, self.path, self.used = data, where, path, set()

    def get(self, key, kind, default=dataclasses.MISSING, choices=None):
        self.used.add(key)
        if key not in self.data:
            if default is dataclasses.MISSING:
                raise BadInput(f"profile {self.path}: missing key {self._name(key)}")
            return default
        value = self.data[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            raise BadInput(f"profile {self.path}: {self._name(key)} must be {kind.__name__}, got {value!r}")
        if choices is not None and value not in choices:
            raise BadInput(f"profile {self.path}: {self._name(key)}={value!r} is not one of {', '.join(choices)}")
        return value

    def finish(self):
        extra = sorted(set(self.data) - self.used)
        if extra:
            raise BadInput(f"profile {self.path}: unknown key {self._name(extra[0])}")

    def _name(self, key):
        return f"{self.where}.{key}" if self.where else key


def _validate(data: dict, path: pathlib.Path) -> Profile:
    top = _Section(data, "", path)
    if top.get("schema", str) != SCHEMA:
        raise BadInput(f"profile {path}: schema must be {SCHEMA!r}")
    dev = _Section(top.get("device", dict), "device", path)
    device = DeviceFacts(dev.get("arch", str), dev.get("cpu", str), dev.get("cores", int),
                         tuple(dev.get("ram_mb", list)), dev.get("accelerator", str, ""))
    dev.finish()
    rt = _Section(top.get("runtime", dict), "runtime", path)
    runtime = RuntimeSettings(rt.get("threads", int), rt.get("power_sensor", str, choices=POWER_SENSORS))
    rt.finish()
    if runtime.threads < 0:
        raise BadInput(f"profile {path}: runtime.threads must be >= 0 (0 = one per physical core)")
    par = _Section(top.get("parity", dict), "parity", path)
    parity = ParityTolerance(par.get("fp32_max_abs_error", float), par.get("fp16_max_abs_error", float),
                             par.get("quantized_min_top1_agreement", float), par.get("bf16_max_abs_error", float, None))
    par.finish()
    budgets = top.get("budgets", dict, {})
    try:
        validate_budget_keys(budgets)
    except BadInput as e:
        raise BadInput(f"profile {path}: {e}") from None
    profile = Profile(
        name=top.get("name", str), description=top.get("description", str),
        backend=top.get("backend", str, choices=BACKENDS),
        default_precision=top.get("default_precision", str, choices=PRECISIONS),
        int8_scheme=top.get("int8_scheme", str), device=device, runtime=runtime,
        budgets={k: float(v) for k, v in budgets.items()}, parity=parity, path=str(path))
    top.finish()
    return profile
