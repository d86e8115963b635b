"""Result documents on disk: each saved atomically the moment it arrives, latest plus history."""
from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import pathlib
import re
import tempfile

from device_agent import RESULT_SCHEMA

from .budgets import KINDS, describe_range, number_in, shown, validate_budgets
from .errors import BadInput


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "unnamed"


def write_json_atomic(path: pathlib.Path, doc) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def save(doc: dict, results_dir) -> pathlib.Path:
    """results/<bundle>@<device>.json (the latest) and results/history/<bundle>@<device>-<time>.json."""
    results_dir = pathlib.Path(results_dir)
    bundle = (doc.get("bundle") or {}).get("name", "unknown-bundle")
    device = (doc.get("device") or {}).get("name", "unknown-device")
    stem = f"{_safe(bundle)}@{_safe(device)}"
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    write_json_atomic(results_dir / "history" / f"{stem}-{stamp}.json", doc)
    latest = results_dir / f"{stem}.json"
    write_json_atomic(latest, doc)
    return latest


@dataclasses.dataclass(frozen=True)
class Field:
    """One field of a result that check, compare or a report reads."""
    kind: str                  # section | status | text | texts | flag | number | budgets
    low: float = 0.0           # numbers: the inclusive range a finite value must lie in
    high: float = math.inf
    required: str = ""         # "always", or the status under which the field must be present


STATUSES = ("ok", "failed")


def _fields() -> dict:
    """The schema check, compare and report read, declared once (dotted path -> Field), parents before children.
    Anything else in a result is the agent's to add and is not read here. A figure may be absent or null:
    it was not measured, and a budget on it fails as NOT MEASURED. An `ok` result without latency or memory
    is no agent's document (every ok run writes both), so it is refused rather than passed as unmeasured."""
    fields = {"status": Field("status", required="always"),
              "bundle": Field("section"), "bundle.name": Field("text"), "bundle.budgets": Field("budgets"),
              "device": Field("section"), "device.name": Field("text"),
              "error": Field("section"), "error.message": Field("text"),
              "warnings": Field("texts"),
              "thermal": Field("section"), "thermal.throttled": Field("flag"),
              "thermal.frequency_capped": Field("flag"),
              "latency": Field("section", required="ok"), "memory": Field("section", required="ok")}
    for kind in KINDS.values():   # every figure a budget limits, with the range a measured value can have
        section, figure = kind.path
        fields.setdefault(section, Field("section"))
        fields.update({f"{section}.available": Field("flag"), f"{section}.reason": Field("text"),
                       f"{section}.{figure}_absent": Field("text"),
                       f"{section}.{figure}": Field("number", *kind.figure)})
    return fields


FIELDS = _fields()
_SURROGATES = re.compile("[\ud800-\udfff]")


def _text(value) -> bool:
    """A str that can be printed: JSON can carry lone surrogates, which no terminal encoding takes."""
    return isinstance(value, str) and not _SURROGATES.search(value)


_PROBLEMS = {  # kind -> (is the value of that kind, what the message says it must be)
    "section": (lambda v, f: isinstance(v, dict), lambda f: "must be an object"),
    "status": (lambda v, f: isinstance(v, str) and v in STATUSES, lambda f: f"must be one of {', '.join(STATUSES)}"),
    "text": (lambda v, f: _text(v), lambda f: "must be text (valid Unicode)"),
    "texts": (lambda v, f: isinstance(v, list) and all(_text(w) for w in v),
              lambda f: "must be a list of text (valid Unicode)"),
    "flag": (lambda v, f: isinstance(v, bool), lambda f: "must be true or false"),
    "number": (lambda v, f: number_in(v, f.low, f.high) is not None,
               lambda f: f"must be a finite number {describe_range(f.low, f.high)} (or absent: not measured)"),
    "budgets": (lambda v, f: isinstance(v, dict), lambda f: "must be an object of budgets"),
}


def _at(doc: dict, name: str):
    """(present, value) at a dotted path; the parents were validated as objects first."""
    node = doc
    for part in name.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def validate(doc, where: str) -> dict:
    """Refuse, in one line naming `where` (the file) and the field, a result check/compare/report would misread."""
    if not isinstance(doc, dict):
        raise BadInput(f"{where} is not an {RESULT_SCHEMA} document: it holds {shown(doc)}, not an object")
    if doc.get("schema") != RESULT_SCHEMA:
        raise BadInput(f"{where} is not an {RESULT_SCHEMA} document: schema is {shown(doc.get('schema'))}")
    for name, field in FIELDS.items():
        present, value = _at(doc, name)
        if not present or value is None and field.kind == "number":
            if field.required in ("always", doc.get("status")):
                raise BadInput(f"{where}: {name} is missing" +
                               (f" (a status {field.required} result has one)" if field.required != "always" else ""))
            continue
        is_kind, must = _PROBLEMS[field.kind]
        if not is_kind(value, field):
            raise BadInput(f"{where}: {name} {must(field)}, got {shown(value)}")
        if field.kind == "budgets":
            validate_budgets(value, where, name)
    return doc


def _where(path: pathlib.Path) -> str:
    text = str(path)
    return text if text.isprintable() else repr(text)


def load(path) -> dict:
    """A result document, validated (see FIELDS); `_path` added."""
    path = pathlib.Path(path)
    where = _where(path)
    if not path.is_file():
        raise BadInput(f"result file not found: {where}")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise BadInput(f"{where}: cannot read: {e.strerror or e}") from None
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError; RecursionError: absurd nesting
        raise BadInput(f"{where} is not valid JSON: {e}") from None
    doc = validate(doc, where)
    doc["_path"] = str(path)
    return doc


def expand(paths) -> list:
    """Result files as given; a directory (a fleet run) stands for the result documents in it."""
    out = []
    for path in paths:
        path = pathlib.Path(path)
        if path.is_dir():
            found = sorted(p for p in path.glob("*.json") if p.name != "run.json" and p.is_file())
            if not found:
                raise BadInput(f"{_where(path)} holds no result files")
            out += found
        else:
            out.append(path)
    return out


def is_throttle_warning(text: str) -> bool:
    """The agent starts throttling and frequency-cap warnings with these words (device_agent.measure.thermal)."""
    from device_agent.measure.thermal import THROTTLE_WARNINGS
    return text.startswith(THROTTLE_WARNINGS)


def throttled(doc: dict) -> bool:
    """Whether the run was throttled or frequency-capped, so its figures hold only in that state."""
    heat = doc.get("thermal") or {}
    return bool(heat.get("throttled") or heat.get("frequency_capped")
                or any(is_throttle_warning(w) for w in doc.get("warnings", [])))
