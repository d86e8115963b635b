"""Result documents on disk: each saved atomically the moment it arrives, latest plus history.

File names: every distinct device (or bundle) name gets its own file, on any file system. A name that
is already a safe lowercase file name is used as it is; any other name (capitals, punctuation,
non-ASCII) becomes a readable ASCII slug plus `~` and a hash of the exact name. Nothing that reads
results relies on the file name: the document itself names its device and bundle."""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import json
import math
import os
import pathlib
import re
import tempfile

from device_agent import RESULT_SCHEMA

from .atomic import replacing, temp_beside
from .budgets import KINDS, describe_range, number_in, numbers_in, shown, validate_budgets
from .errors import BadInput, CannotWrite

try:
    import fcntl
except ImportError:  # not on Windows: saves there are not serialized between processes
    fcntl = None

# Lowercase only, so two plain names never differ only by case (macOS and Windows fold case);
# no `~` or `@`, so a plain name never equals a hashed one and `<bundle>@<device>` splits one way.
_PLAIN = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_RESERVED = {"run"}   # run.json describes a fleet run, beside its devices' results
LOCK_FILE = ".save.lock"


def file_stem(name: str, hashed: bool = False) -> str:
    """A file-name stem for a device or bundle name: distinct names give distinct stems.
    `hashed` forces the slug~hash form (for a plain name whose file an older version gave another name)."""
    name = str(name)
    if not hashed and _PLAIN.fullmatch(name) and not name.endswith(".") and name not in _RESERVED:
        return name
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-")[:40] or "name"
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{slug}~{digest}"


def _write_temp(path: pathlib.Path, doc) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_beside(path)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def read_json(path) -> object:
    """A JSON file's value: an OSError as it came, and any content JSON cannot read as a ValueError (bad UTF-8,
    bad JSON, or nested past the parser's recursion limit, which is a RecursionError where it is not caught)."""
    text = pathlib.Path(path).read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply to read") from None


def write_json_atomic(path: pathlib.Path, doc) -> None:
    with replacing(path, "the result", "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


def write_json_new(path: pathlib.Path, doc) -> pathlib.Path:
    """Write `doc` to `path`, or to `path` with -2, -3... before the suffix when that name is taken:
    never over an existing file (two runs saving in the same microsecond keep both)."""
    path = pathlib.Path(path)
    try:
        tmp = _write_temp(path, doc)
    except OSError as e:
        raise CannotWrite("the result", path, e) from None
    try:
        for n in range(1, 1000):
            target = path if n == 1 else path.with_name(f"{path.stem}-{n}{path.suffix}")
            try:
                os.link(tmp, target)   # atomic, and fails instead of replacing
                return target
            except FileExistsError:
                continue
            except OSError:            # a file system without hard links: reserve the name, then fill it
                try:
                    os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
                except FileExistsError:
                    continue
                os.replace(tmp, target)
                return target
        raise OSError(f"no free file name for {path}")
    except OSError as e:
        raise CannotWrite("the result", path, e) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def _save_lock(results_dir: pathlib.Path):
    """Serializes the look-at-latest-then-replace step between processes saving into one directory."""
    results_dir.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield
        return
    with _lock_file(results_dir / LOCK_FILE) as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _lock_file(path: pathlib.Path):
    """The lock file, open: for writing where it can be, else for reading (flock takes either). In a folder a team
    shares, another login's lock file (0644) was a PermissionError traceback after the measurement, and its result
    never reached the store (a walkthrough). Any other refusal is CannotWrite, which the store's row outlives."""
    try:
        return open(path, "a")
    except PermissionError as denied:
        try:
            return open(path)
        except OSError:   # none there to read (a folder this login may not write): the denial is the cause
            raise CannotWrite("the results folder's lock", path, denied) from None
    except OSError as e:
        raise CannotWrite("the results folder's lock", path, e) from None


def _read_latest(path: pathlib.Path) -> dict | None:
    """The latest result file about to be replaced, as a document, or None (missing or unreadable)."""
    try:
        old = read_json(path)
    except (OSError, ValueError):   # corrupt: replaced, not a traceback
        return None
    return old if isinstance(old, dict) else None


def _is_good_result_of(old: dict | None, bundle: str, device: str, with_accuracy: bool = False,
                       profile: str | None = None) -> bool:
    """Whether `old` (the latest file's document) is an ok result of this bundle on this device (`with_accuracy`:
    one whose accuracy was measured, or not skipped: a bundle without eval data has none to measure). `profile`: the
    new result's bundle's, where it says; a bundle of that name for another profile is another bundle."""
    return (old is not None and old.get("status") == "ok" and not (with_accuracy and _skipped_accuracy(old))
            and (old.get("device") or {}).get("name") == device and (old.get("bundle") or {}).get("name") == bundle
            and not (profile and bundle_profile(old) not in (None, profile)))


def bundle_profile(doc: dict) -> str | None:
    """The profile the result's bundle was made for (its manifest's, as the agent copied it), or None."""
    profile = (doc.get("bundle") or {}).get("profile") if isinstance(doc.get("bundle"), dict) else None
    name = profile.get("name") if isinstance(profile, dict) else None
    return name if isinstance(name, str) else None


def bundle_variant(doc: dict) -> str | None:
    """What the result's bundle was made into, as its manifest says: "int8", "fp16", "int8 + prune + distill"
    (quantization, else precision, then the model transforms in order); None for a result that does not say."""
    bundle = doc.get("bundle") if isinstance(doc.get("bundle"), dict) else {}
    compression = bundle.get("compression") if isinstance(bundle.get("compression"), dict) else {}
    quantize, precision = compression.get("quantize"), compression.get("precision")
    head = quantize if isinstance(quantize, str) and quantize != "none" else precision
    if not isinstance(head, str):
        return None
    transforms = bundle.get("transforms") if isinstance(bundle.get("transforms"), list) else []
    # the agent copies the stages' names (strings); a manifest holds the stages themselves ({"stage": ...})
    names = [t if isinstance(t, str) else t.get("stage") if isinstance(t, dict) else None for t in transforms]
    return " + ".join([head, *(n for n in names if isinstance(n, str) and n != "source")])


def _other_bundle_replaced(latest: pathlib.Path, old: dict | None, doc: dict) -> str | None:
    """What an ok result about to replace `latest` (whose document is `old`) replaces, where that is a result of
    another bundle that has the same name (one file name packaged for two profiles, or as fp32 and INT8, in two
    folders): said, not silently lost. A new build of the same kind (a retrained model) replaces it silently."""
    if old is None:
        return None
    for what, before, now in (("profile ", bundle_profile(old), bundle_profile(doc)),
                              ("", bundle_variant(old), bundle_variant(doc))):
        if before and now and before != now:
            return (f"{latest} held a result of another bundle of that name ({what}{before}; this one {now}), kept "
                    f"in {latest.parent / 'history'}; give each its own --name to keep both latest")
    return None


def _skipped_accuracy(doc: dict) -> bool:
    from device_agent.measure.accuracy import SKIPPED

    accuracy = doc.get("accuracy")
    return isinstance(accuracy, dict) and accuracy.get("available") is False and accuracy.get("reason") == SKIPPED


def save(doc: dict, results_dir) -> pathlib.Path:
    """results/history/<bundle>@<device>-<time>.json always, and results/<bundle>@<device>.json (the
    latest) unless this run failed and the latest is a good result of the same bundle and device: a
    failure never replaces a good result. Nor does a latency-only run (optimize's repeats) replace a good
    result that measured the accuracy: `check` of a study's trial reads its full run. Returns where this
    document is; when the latest was kept,
    doc["_latest_kept"] says which file that is. doc["_history"] is this run's own file, which no later run
    replaces."""
    results_dir = pathlib.Path(results_dir)
    bundle = str((doc.get("bundle") or {}).get("name", "unknown-bundle"))
    device = str((doc.get("device") or {}).get("name", "unknown-device"))
    stem = f"{file_stem(bundle)}@{file_stem(device)}"
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    body = {k: v for k, v in doc.items() if not k.startswith("_")}
    history = write_json_new(results_dir / "history" / f"{stem}-{stamp}.json", body)
    doc["_history"] = str(history)
    latest = results_dir / f"{stem}.json"
    with _save_lock(results_dir):
        old = _read_latest(latest)
        if (doc.get("status") != "ok" or _skipped_accuracy(doc)) and _is_good_result_of(
                old, bundle, device, with_accuracy=doc.get("status") == "ok", profile=bundle_profile(doc)):
            doc["_latest_kept"] = str(latest)
            return history
        replaced = _other_bundle_replaced(latest, old, doc) if doc.get("status") == "ok" else None
        if replaced:
            doc["_replaced"] = replaced
        write_json_atomic(latest, body)
    return latest


@dataclasses.dataclass(frozen=True)
class Field:
    """One field of a result that check, compare or a report reads."""
    kind: str                  # section | status | text | name | texts | flag | number | numbers | time | budgets |
                               # layers
    low: float = 0.0           # numbers: the inclusive range a finite value must lie in
    high: float = math.inf
    required: str = ""         # "always", or the status under which the field must be present


STATUSES = ("ok", "failed")
TIME_YEARS = (1970, 9998)   # what a result's time may convert to in UTC (results.is_time)


def _fields() -> dict:
    """The schema check, compare and report read, declared once (dotted path -> Field), parents before children.
    Anything else in a result is the agent's to add and is not read here. A figure may be absent or null:
    it was not measured, and a budget on it fails as NOT MEASURED. An `ok` result without latency or memory
    is no agent's document (every ok run writes both), so it is refused rather than passed as unmeasured."""
    fields = {"status": Field("status", required="always"), "created": Field("time"),
              "bundle": Field("section", required="ok"), "bundle.name": Field("name", required="ok"),
              "bundle.budgets": Field("budgets"),
              "device": Field("section", required="ok"), "device.name": Field("name", required="ok"),
              "error": Field("section"), "error.message": Field("text"),
              "warnings": Field("texts"),
              "thermal": Field("section"), "thermal.throttled": Field("flag"),
              "thermal.frequency_capped": Field("flag"), "thermal.available": Field("flag"),
              "thermal.reason": Field("text"), "thermal.start_c_absent": Field("text"),
              "thermal.start_c": Field("section"), "thermal.end_c": Field("section"),
              "thermal.cpufreq": Field("section"),
              # the regression gate's notes: what differed in the device's state, and the model packaged
              "environment": Field("section"), "environment.cpufreq": Field("section"),
              "bundle.source": Field("section"), "bundle.source.reference": Field("text"),
              "latency": Field("section", required="ok"), "memory": Field("section", required="ok"),
              # read by the regression gate, compare's runtime column and the report: refused alike by every verb
              "latency.samples_ms": Field("numbers"), "runtime": Field("section"), "runtime.name": Field("text"),
              "runtime.version": Field("text")}
    for kind in KINDS.values():   # every figure a budget limits, with the range a measured value can have
        section, figure = kind.path
        fields.setdefault(section, Field("section"))
        fields.update({f"{section}.available": Field("flag"), f"{section}.reason": Field("text"),
                       f"{section}.{figure}_absent": Field("text"),
                       f"{section}.{figure}": Field("number", *kind.figure)})
    fields.update({"throughput.completed": Field("number"), "throughput.duration_s": Field("number"),
                   "throughput.concurrency": Field("number", 1.0), "throughput.method": Field("text"),
                   "layer_profile": Field("section"), "layer_profile.available": Field("flag"),
                   "layer_profile.reason": Field("text"), "layer_profile.method": Field("text"),
                   "layer_profile.runs": Field("number", 1.0), "layer_profile.layer_count": Field("number"),
                   "layer_profile.total_ms": Field("number"), "layer_profile.layers": Field("layers"),
                   "layer_profile.others": Field("section"), "layer_profile.others.count": Field("number"),
                   "layer_profile.others.mean_ms": Field("number"),
                   "layer_profile.others.share_pct": Field("number", 0.0, 100.0)})
    return fields



FIELDS = _fields()
_SURROGATES = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")   # Unicode's Cc: C0, DEL and C1


def _text(value) -> bool:
    """A str that can be printed: JSON can carry lone surrogates, which no terminal encoding takes."""
    return isinstance(value, str) and not _SURROGATES.search(value)


_LAYER_ROW = {"name": (_text, "must be text (valid Unicode)"), "op_type": (_text, "must be text (valid Unicode)"),
              "mean_ms": (lambda v: number_in(v, 0.0, math.inf) is not None, "must be a finite number >= 0"),
              "share_pct": (lambda v: number_in(v, 0.0, 100.0) is not None, "must be a finite number in [0, 100]")}


def validate_layers(rows: list, where: str, name: str) -> None:
    """Each row of layer_profile.layers (device_agent.measure.layers.summarize), refused naming the row and key."""
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise BadInput(f"{where}: {name}[{i}] must be an object, got {shown(row)}")
        for key, (ok, must) in _LAYER_ROW.items():
            if key not in row:
                raise BadInput(f"{where}: {name}[{i}].{key} is missing")
            if not ok(row[key]):
                raise BadInput(f"{where}: {name}[{i}].{key} {must}, got {shown(row[key])}")


_PROBLEMS = {  # kind -> (is the value of that kind, what the message says it must be)
    "section": (lambda v, f: isinstance(v, dict), lambda f: "must be an object"),
    "status": (lambda v, f: isinstance(v, str) and v in STATUSES, lambda f: f"must be one of {', '.join(STATUSES)}"),
    "text": (lambda v, f: _text(v), lambda f: "must be text (valid Unicode)"),
    # a name is printed in every table: an escape sequence in it (a\x1b[31m) reached the terminal as such. Control
    # characters only, as inventories refuse them: any other character a device name may hold is kept
    "name": (lambda v, f: _text(v) and not _CONTROL.search(v), lambda f: "must be text without control characters"),
    "texts": (lambda v, f: isinstance(v, list) and all(_text(w) for w in v),
              lambda f: "must be a list of text (valid Unicode)"),
    "flag": (lambda v, f: isinstance(v, bool), lambda f: "must be true or false"),
    "number": (lambda v, f: number_in(v, f.low, f.high) is not None,
               lambda f: f"must be a finite number {describe_range(f.low, f.high)} (or absent: not measured)"),
    "numbers": (lambda v, f: numbers_in(v, f.low, f.high),
                lambda f: f"must be a non-empty list of finite numbers {describe_range(f.low, f.high)}"),
    "time": (lambda v, f: is_time(v), lambda f: "must be an ISO 8601 time (2026-12-05T18:58:15+00:00) of the "
             f"years {TIME_YEARS[0]} to {TIME_YEARS[1]}"),
    "budgets": (lambda v, f: isinstance(v, dict), lambda f: "must be an object of budgets"),
    "layers": (lambda v, f: isinstance(v, list), lambda f: "must be a list of layers"),
}


def parse_time(value) -> datetime.datetime | None:
    """An ISO 8601 time as a datetime (with its zone, where it names one), else None."""
    if not _text(value):
        return None
    try:   # "Z" as UTC: Python before 3.11 reads only "+00:00"
        return datetime.datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
    except ValueError:
        return None


def is_time(value) -> bool:
    """An ISO 8601 time that converts to UTC within the years TIME_YEARS: year 1 or 9999 with an offset was an
    OverflowError traceback in compare, report and check --junit, and 9999-12-31 sorted as the oldest row on SQLite
    (a clock walkthrough). 1970 stays: a board without a real-time clock reads it until NTP runs."""
    when = parse_time(value)
    if when is None:
        return False
    try:
        when = when.astimezone(datetime.timezone.utc) if when.tzinfo else when
    except OverflowError:
        return False
    return TIME_YEARS[0] <= when.year <= TIME_YEARS[1]


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
        what = (f"schema is {shown(doc['schema'])}" if "schema" in doc
                else "it has no schema field (not an edgeopt result)")
        raise BadInput(f"{where} is not an {RESULT_SCHEMA} document: {what}")
    for name, field in FIELDS.items():
        present, value = _at(doc, name)
        if not present or value is None and field.kind in ("number", "numbers", "time"):
            if field.required in ("always", doc.get("status")):
                raise BadInput(f"{where}: {name} is missing" +
                               (f" (a status {field.required} result has one)" if field.required != "always" else ""))
            continue
        is_kind, must = _PROBLEMS[field.kind]
        if not is_kind(value, field):
            raise BadInput(f"{where}: {name} {must(field)}, got {shown(value)}")
        if field.kind == "budgets":
            validate_budgets(value, where, name)
        if field.kind == "layers":
            validate_layers(value, where, name)
    _check_latency_order(doc, where)
    return doc


PERCENTILES = ("p50_ms", "p90_ms", "p95_ms", "p99_ms")


def _check_latency_order(doc: dict, where: str) -> None:
    """Percentiles that fall (a p50 of 100 over a p90 of 0.033) and a 95 % interval whose low end is over its high
    end are no measurement: a hand-edited file was shown as "50 [0.03317-0.03329]". Refused, naming the field."""
    lat = doc.get("latency") if isinstance(doc.get("latency"), dict) else {}
    figures = [(k, lat[k]) for k in PERCENTILES if number_in(lat.get(k), 0.0, math.inf) is not None]
    for (low_key, low), (high_key, high) in zip(figures, figures[1:]):
        if low > high:
            raise BadInput(f"{where}: latency.{low_key} {low:g} is above latency.{high_key} {high:g}: a higher "
                           "percentile is never lower")
    intervals = lat.get("ci95") if isinstance(lat.get("ci95"), dict) else {}
    for key, pair in intervals.items():
        ends = pair if isinstance(pair, list) and len(pair) == 2 else []
        if all(number_in(e, 0.0, math.inf) is not None for e in ends) and ends and ends[0] > ends[1]:
            raise BadInput(f"{where}: latency.ci95.{key} {shown(pair)}: its low end is above its high end")


def _where(path: pathlib.Path) -> str:
    text = str(path)
    return text if text.isprintable() else repr(text)


def _refuse_bundle(path: pathlib.Path, where: str) -> None:
    """A bundle given where a result belongs: measure it first, unless it would not verify (a truncated copy)."""
    from .bundle import read_manifest
    try:
        read_manifest(path)
    except BadInput as e:
        raise BadInput(f"{where} is a bundle file, not a result, and it does not verify ({e}): package or copy it "
                       "again") from None
    raise BadInput(f"{where} is a bundle, not a result: measure it first (edgeopt bench {where} --device NAME)")


# how the agent's warnings about a run's spread begin (device_agent/bench.py): a wide robust spread, and a share of
# runs over twice the median, which p90 then reads (a study's p90 was 7x what the host can do in slow mode, unsaid)
NOISY = ("noisy run", "slow mode")
UNREADABLE = "unreadable"   # the status of a result file that is there and cannot be read as one (load_kept)


class UnreadableResult(BadInput):
    """A result file that is there and holds no readable result (not JSON, a field out of range): check, compare and
    report show the others' verdicts beside it (load_kept), where a name given wrong (none there, a bundle, the
    store) is refused before anything is read."""


def load(path) -> dict:
    """A result document, validated (see FIELDS); `_path` added."""
    path = pathlib.Path(path)
    where = _where(path)
    if not path.is_file():
        raise BadInput(f"result file {where} is not a regular file" if path.exists() else
                       f"result file not found: {where}")
    if path.suffix == ".edgepkg":   # the bundle itself, not a result of it: the likeliest slip after optimize
        _refuse_bundle(path, where)
    try:
        with open(path, "rb") as f:
            head = f.read(16)
        if head == b"SQLite format 3\x00":   # "not valid JSON: 'utf-8' codec can't decode"
            from .store import file_url   # its URL as the store builds one: a path with '?', '#' or '%' escaped
            url = file_url(path.resolve()).render_as_string(hide_password=False)
            raise BadInput(f"{where} is an SQLite database (the results store?), not a result file: `edgeopt "
                           f"history --store {url}` lists what it holds")
        doc = read_json(path)
    except OSError as e:
        raise UnreadableResult(f"{where}: cannot read: {e.strerror or e}") from None
    except ValueError as e:
        raise UnreadableResult(f"{where} is not valid JSON: {e}") from None
    try:
        doc = validate(doc, where)
    except BadInput as e:
        if not isinstance(doc, dict) or doc.get("schema") != RESULT_SCHEMA:   # no result at all: a name given wrong
            raise
        raise UnreadableResult(str(e)) from None
    doc["_path"] = str(path)
    return doc


def load_kept(path) -> dict:
    """load's document, or, for a file there that cannot be read as a result, one with status "unreadable" and
    the reason as its error: one damaged file (a fleet run's device file cut short) among many gave no verdict on
    the others (a walkthrough). Its bundle and device are told from where it lies, as bench names the file."""
    try:
        return load(path)
    except UnreadableResult as e:
        path = pathlib.Path(path)
        bundle, device = path.stem.rpartition("@")[::2] if "@" in path.stem else (None, path.stem)
        if bundle is None and (path.parent / "run.json").is_file():   # a fleet run's file: DEVICE.json
            bundle = run_devices(path.parent)[0]
        return {"schema": RESULT_SCHEMA, "status": UNREADABLE, "bundle": {"name": bundle or "?"},
                "device": {"name": device}, "error": {"message": str(e)}, "warnings": [], "_path": str(path)}


def expand(paths) -> list:
    """Result files as given (one path, or several); a directory (a fleet run) stands for the result documents in
    it. One result given twice is read once (unique)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out = []
    for path in paths:
        path = pathlib.Path(path)
        if path.is_dir():
            found = sorted(p for p in path.glob("*.json") if p.name != "run.json" and p.is_file())
            if not found:
                runs = sorted(p.parent for p in path.glob("*/run.json"))   # results/fleet/BUNDLE: its runs
                newest = f": it holds fleet runs; give one, such as the newest, {_where(runs[-1])}" if runs else ""
                raise BadInput(f"{_where(path)} holds no result files{newest}")
            out += found
        else:
            out.append(path)
    return unique(out)


def run_budgets(folder) -> dict:
    """The budgets `fleet bench --budget` judged a fleet run's results by, where `folder` is a run directory that
    records them (its run.json); else {}. `check RUN_DIR` passed a run that fleet bench failed."""
    recorded = _run_file(folder)
    if recorded is None:
        return {}
    run = pathlib.Path(folder) / "run.json"
    return validate_budgets(recorded.get("budgets") or {}, where=_where(run), field="budgets", dropping=True)


def run_devices(folder) -> tuple:
    """(bundle name, devices) that a fleet run directory's run.json says the run measures; (None, []) for a folder
    that is no run, and devices None for a run file of an older edgeopt, which records none."""
    recorded = _run_file(folder) or {"devices": []}
    devices, bundle = recorded.get("devices"), recorded.get("bundle")
    if devices is None:
        return (bundle if isinstance(bundle, str) else None), None
    if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
        raise BadInput(f"{_where(pathlib.Path(folder) / 'run.json')}: devices must be a list of device names")
    return (bundle if isinstance(bundle, str) else None), devices


def _run_file(folder) -> dict | None:
    run = pathlib.Path(folder) / "run.json"
    if not run.is_file():
        return None
    try:
        recorded = read_json(run)
    except (OSError, ValueError) as e:
        raise BadInput(f"{_where(run)}: not a readable fleet run file ({type(e).__name__})") from None
    if not isinstance(recorded, dict):
        raise BadInput(f"{_where(run)}: a fleet run file is a JSON object")
    return recorded


def unique(paths: list) -> list:
    """Byte-identical result files once: a fleet run saves each device's result in its run directory and again as
    the latest result, so `report results/*.json results/fleet/B/RUN/` named every fleet result twice. The copy in
    a run directory is the one kept (it names its run). A file that cannot be read is kept for its reader to
    refuse."""
    out, seen = [], {}
    for path in paths:
        try:
            if not path.is_file():   # a pipe or a device (/dev/zero filled the memory): its reader refuses it
                raise FileNotFoundError(path)
            digest = hashlib.sha256(path.read_bytes()).digest()
        except OSError:
            out.append(path)
            continue
        if digest not in seen:
            seen[digest] = len(out)
            out.append(path)
        elif _in_run_directory(path) and not _in_run_directory(out[seen[digest]]):
            out[seen[digest]] = path
    return out


def _in_run_directory(path: pathlib.Path) -> bool:
    return (path.parent / "run.json").is_file()


def is_throttle_warning(text: str) -> bool:
    """The agent starts throttling and frequency-cap warnings with these words (device_agent.measure.thermal)."""
    from device_agent.measure.thermal import THROTTLE_WARNINGS
    return text.startswith(THROTTLE_WARNINGS)


def section(doc: dict, name: str) -> dict:
    """A part of a result that only tables show (not in FIELDS): anything but an object reads as absent."""
    value = doc.get(name)
    return value if isinstance(value, dict) else {}


def runtime_text(doc: dict) -> str | None:
    """The runtime a result ran on, as `onnxruntime 1.32.0`, `litert 2.3.0 (XNNPACK off)`; None where the result
    does not say. A LiteRT run without XNNPACK (bench --runtime-option xnnpack=false, to compare) read as the
    normal one in compare, 6x slower."""
    runtime = section(doc, "runtime")
    text = " ".join(str(runtime[k]) for k in ("name", "version") if runtime.get(k)) or None
    xnnpack = runtime.get("xnnpack") if isinstance(runtime.get("xnnpack"), dict) else {}
    if text and xnnpack.get("applied") is False:
        text += " (XNNPACK off)" if xnnpack.get("requested") is False else " (XNNPACK not applied)"
    return text


def thermal_measured(doc: dict) -> bool:
    """Whether the run read its throttling state: a thermal section that says throttled (true or false) or a throttle
    warning. A device with nothing readable has `available: false` and no such field."""
    heat = section(doc, "thermal")
    return "throttled" in heat or "frequency_capped" in heat or throttled(doc)


def throttled(doc: dict) -> bool:
    """Whether the run was throttled or frequency-capped, so its figures hold only in that state."""
    heat = doc.get("thermal") or {}
    return bool(heat.get("throttled") or heat.get("frequency_capped")
                or any(is_throttle_warning(w) for w in doc.get("warnings", [])))


def saved_elsewhere(doc: dict) -> str:
    """The last resort for a measurement that neither the results folder nor the store could take (both on one
    full disk): a file in the temporary folder, which is often another file system; said where it went."""
    body = {k: v for k, v in doc.items() if not k.startswith("_")}
    try:
        fd, name = tempfile.mkstemp(prefix="edgeopt-result-", suffix=".json")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(body, f, indent=1)
        except BaseException:
            os.unlink(name)   # no half-written file left for `check` to call corrupt
            raise
    except (OSError, ValueError) as e:
        return f": this run's result is lost (nor could {tempfile.gettempdir()} take it: {e})"
    return f"; the result is saved to {name} instead (`edgeopt check` reads it; move it to the results folder)"
