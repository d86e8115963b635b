"""Result documents on disk: each saved atomically the moment it arrives, latest plus history."""
from __future__ import annotations

import datetime
import json
import os
import pathlib
import re
import tempfile

from device_agent import RESULT_SCHEMA

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


def load(path) -> dict:
    path = pathlib.Path(path)
    if not path.is_file():
        raise BadInput(f"result file not found: {path}")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise BadInput(f"{path} is not valid JSON: {e}") from None
    if not isinstance(doc, dict) or doc.get("schema") != RESULT_SCHEMA:
        raise BadInput(f"{path} is not an {RESULT_SCHEMA} document")
    doc["_path"] = str(path)
    return doc


def expand(paths) -> list:
    """Result files as given; a directory (a fleet run) stands for the result documents in it."""
    out = []
    for path in paths:
        path = pathlib.Path(path)
        if path.is_dir():
            found = sorted(p for p in path.glob("*.json") if p.name != "run.json")
            if not found:
                raise BadInput(f"{path} holds no result files")
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
