"""The bundle manifest's one validator, used by the host before it writes a bundle and by the agent
before it reads one. Total: any JSON value either passes or raises one BundleError naming the field.

A manifest is canonical JSON (`canonical_bytes`) and carries `content_sha256`, the sha256 of the
canonical bytes of every other field, so a manifest changed on disk or in transit is refused like a
changed model. Sections the agent interprets refuse unknown keys: a renamed key is an error, never a
default silently measured instead. Informational sections (compression, parity, tools) are free JSON.
"""
import hashlib
import json
import math
import posixpath
import re

from . import BUNDLE_SCHEMA, AgentError, BundleError

DIGEST_FIELD = "content_sha256"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.json.sig"
RESERVED = (MANIFEST, SIGNATURE)
# stages of a manifest's `transforms` measured for reference, not gone through by the model: the source, and
# distillation's --teacher (the host's transform stage measures it first)
REFERENCE_STAGES = ("source", "teacher")
MAX_FILES, MAX_TENSORS, MAX_RANK, MAX_ELEMENTS = 10000, 256, 8, 1 << 28
INPUT_DTYPES = ("float16", "float32", "float64", "int8", "uint8", "int16", "uint16", "int32", "uint32",
                "int64", "uint64", "bool")
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_WORD = re.compile(r"[A-Za-z0-9_.:-]{1,64}\Z")


def canonical_bytes(doc):
    """The one serialization of a manifest: sorted keys, indent 1, ASCII only, no NaN, newline-terminated."""
    try:
        return (json.dumps(doc, sort_keys=True, indent=1, ensure_ascii=True, allow_nan=False) + "\n").encode("ascii")
    except (ValueError, TypeError) as e:
        raise BundleError("manifest cannot be written as canonical JSON: %s" % e)


def content_digest(manifest):
    """sha256 of the canonical bytes of the manifest without its own digest field."""
    body = dict((k, v) for k, v in manifest.items() if k != DIGEST_FIELD)
    return hashlib.sha256(canonical_bytes(body)).hexdigest()


def seal(manifest):
    """(manifest with its content_sha256, its canonical bytes): validated, ready to write."""
    sealed = dict(manifest)
    sealed[DIGEST_FIELD] = content_digest(sealed)
    validate_manifest(sealed)
    return sealed, canonical_bytes(sealed)


def parse(blob):
    """Manifest bytes -> validated dict; BundleError for bad JSON, non-canonical bytes, a wrong digest
    or a bad field."""
    try:
        manifest = json.loads(blob.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise BundleError("manifest.json is not valid JSON: %s" % str(e).splitlines()[0][:120])
    except RecursionError:
        raise BundleError("manifest.json is not valid JSON: nested too deeply")
    if not isinstance(manifest, dict):
        raise BundleError("manifest.json must hold a JSON object")
    _check_schema(manifest)
    digest = manifest.get(DIGEST_FIELD)
    if not (isinstance(digest, str) and _HEX64.match(digest)):
        raise BundleError("manifest field %s is missing or not 64 hex digits (a bundle written by an older "
                          "edgeopt? package it again: `tar -xOf BUNDLE manifest.json` shows, unverified, what "
                          "it was packaged from and how)" % DIGEST_FIELD)
    if canonical_bytes(manifest) != blob:
        raise BundleError("manifest.json is not in canonical form (sorted keys, indent 1, ASCII): "
                          "it was modified after packaging, refused")
    if content_digest(manifest) != digest:
        raise BundleError("manifest content does not match its %s: the manifest was modified, refused" % DIGEST_FIELD)
    validate_manifest(manifest)
    return manifest


def _short(value, n=60):
    """A value as one short line of JSON (quotes and escapes included: a newline cannot split the message)."""
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= n else text[:n] + "..."


def _fail(path, what, value=None):
    got = "" if value is None else ", got %s" % _short(value)
    raise BundleError("manifest field %s %s%s" % (path, what, got))


def _number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _text(path, v, limit=256, pattern=None):
    if not isinstance(v, str) or not v or len(v) > limit or any(ord(c) < 32 for c in v):
        _fail(path, "must be non-empty text of at most %d characters, no control characters" % limit, v)
    if pattern is not None and not pattern.match(v):
        _fail(path, "must match %s" % pattern.pattern, v)
    return v


def _object(path, v, required, optional=(), free=False):
    """A dict with these keys; unknown keys refused unless `free`."""
    if not isinstance(v, dict):
        _fail(path, "must be an object", v)
    for key in required:
        if key not in v:
            _fail(_join(path, key), "is missing")
    if not free:
        unknown = sorted(k for k in v if k not in required and k not in optional)
        if unknown:
            _fail(_join(path, unknown[0]), "is not a field this agent knows (renamed or misspelt?)")
    return v


def _join(path, key):
    """path.key, the key quoted as JSON unless it is a plain word (so a key cannot break the line)."""
    key = key if _WORD.match(key) else json.dumps(key)
    return "%s.%s" % (path, key) if path else key


def _list(path, v, lo, hi):
    if not isinstance(v, list) or not lo <= len(v) <= hi:
        _fail(path, "must be a list of %d to %d entries" % (lo, hi), v)
    return v


TOP_REQUIRED = ("schema", DIGEST_FIELD, "name", "profile", "runtime", "model", "files", "inputs", "outputs")
TOP_OPTIONAL = ("created", "source", "compression", "simplification", "parity", "budgets", "notes", "tools",
                "data", "recipe", "transforms")


def validate_manifest(m):
    """Check every field the agent or the host reads; BundleError names the first bad one."""
    if not isinstance(m, dict):
        raise BundleError("manifest must be a JSON object, got %s" % _short(m))
    _check_schema(m)
    _object("", m, TOP_REQUIRED, TOP_OPTIONAL)
    _text("name", m["name"], 200)
    if m["name"] in (".", "..") or "/" in m["name"] or "\\" in m["name"]:
        _fail("name", "must not be a path", m["name"])
    if not _HEX64.match(str(m[DIGEST_FIELD])):
        _fail(DIGEST_FIELD, "must be 64 lowercase hex digits", m[DIGEST_FIELD])
    if "created" in m:
        _text("created", m["created"], 64)
    profile = _object("profile", m["profile"], ("name", "backend", "precision"))
    for key in ("name", "backend", "precision"):
        _text("profile." + key, profile[key], 64, _WORD)
    files = _check_files(m["files"])
    _check_model(m["model"], files)
    validate_runtime(m["runtime"])
    _check_tensors("inputs", m["inputs"], True)
    _check_tensors("outputs", m["outputs"], False)
    _check_optional(m, files)


def _check_schema(m):
    if m.get("schema") != BUNDLE_SCHEMA:
        raise BundleError("manifest field schema is %s; this agent reads %r"
                          % (_short(m.get("schema")), BUNDLE_SCHEMA))


def safe_path(name, what="bundle member"):
    """A member name normalised, or BundleError for absolute paths, `..`, backslashes and odd names."""
    if not isinstance(name, str) or not name or "\x00" in name or "\\" in name:
        raise BundleError("%s %s is not a plain relative path: refused" % (what, _short(name)))
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise BundleError("%s %r has an absolute path: refused" % (what, name))
    norm = posixpath.normpath(name)
    if norm == ".." or norm.startswith("../") or "/../" in "/%s/" % name:
        raise BundleError("%s %r escapes the bundle directory: refused" % (what, name))
    return norm


def _check_files(files):
    _list("files", files, 1, MAX_FILES)
    by_path = {}
    for i, entry in enumerate(files):
        where = "files[%d]" % i
        _object(where, entry, ("path", "sha256", "bytes", "role"))
        path = entry["path"]
        _text(where + ".path", path, 1024)
        if safe_path(path, "manifest file") != path or path in RESERVED or path == ".":
            _fail(where + ".path", "must be a normalised relative path other than %s" % " or ".join(RESERVED), path)
        if path in by_path:
            _fail(where + ".path", "lists the same file twice", path)
        if not (isinstance(entry["sha256"], str) and _HEX64.match(entry["sha256"])):
            _fail(where + ".sha256", "must be 64 lowercase hex digits", entry["sha256"])
        if not (_int(entry["bytes"]) and entry["bytes"] >= 0):
            _fail(where + ".bytes", "must be a whole number of bytes, 0 or more", entry["bytes"])
        _text(where + ".role", entry["role"], 32, _WORD)
        by_path[path] = entry
    for path in by_path:  # "model" as a file and "model/x.onnx" cannot both be written
        parent = posixpath.dirname(path)
        while parent:
            if parent in by_path:
                _fail("files", "lists %r both as a file and as the directory of %r" % (parent, path))
            parent = posixpath.dirname(parent)
    return by_path


def _check_model(model, files):
    _text("model", model, 1024)
    if model not in files:
        _fail("model", "is not among the bundle's files", model)
    if files[model]["role"] != "model":
        _fail("model", "names a file whose role is %r, not 'model'" % files[model]["role"], model)


def validate_runtime(runtime):
    """runtime: a known adapter name, thread count, power sensor, and only the options its adapter declares."""
    from .power import CHOICES
    from .runtimes import ADAPTERS

    _object("runtime", runtime, ("name",), ("options", "threads", "power_sensor"))
    name = runtime["name"]
    if not isinstance(name, str) or name not in ADAPTERS:
        _fail("runtime.name", "is not a runtime this agent knows (%s)" % ", ".join(sorted(ADAPTERS)), name)
    threads = runtime.get("threads", 0)
    if not (_int(threads) and 0 <= threads <= 4096):
        _fail("runtime.threads", "must be a whole number from 0 (one per physical core) to 4096", threads)
    sensor = runtime.get("power_sensor")
    if sensor is not None and sensor not in CHOICES:
        _fail("runtime.power_sensor", "must be one of %s" % ", ".join(CHOICES), sensor)
    options = runtime.get("options", {})
    if not isinstance(options, dict):
        _fail("runtime.options", "must be an object", options)
    problem = option_problem(name, options)
    if problem:
        _fail(_join("runtime.options", problem[0]), problem[1], options[problem[0]])


def option_problem(runtime_name, options):
    """(key, what is wrong) for the first option runtime `runtime_name`'s adapter does not declare
    or that has the wrong kind of value; None when all are fine. Also checks --runtime-option."""
    declared = _adapter_options(runtime_name)
    for key, value in sorted(options.items()):
        if key not in declared:
            return key, "is not an option of runtime %s (known: %s)" % (runtime_name, ", ".join(sorted(declared)))
        if not _option_ok(declared[key], value):
            return key, "must be %s" % _option_text(declared[key])
    return None


def canonical_choices(runtime_name, options):
    """{key: the declared choice} for the options whose text value names one in another case."""
    try:
        declared = _adapter_options(runtime_name)
    except AgentError:   # an unknown runtime: option_problem and require_runtime say so
        return {}
    found = {}
    for key, value in options.items():
        kind = declared.get(key)
        if isinstance(kind, tuple) and isinstance(value, str) and value not in kind:
            same = [c for c in kind if isinstance(c, str) and c.lower() == value.lower()]
            if same:
                found[key] = same[0]
    return found


def _adapter_options(name):
    from .runtimes import adapter_class
    return adapter_class(name).options


# The kinds of value an adapter's `options` may declare; a tuple declares the allowed values.
OPTION_KINDS = {
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "text": (lambda v: isinstance(v, str) and 0 < len(v) <= 256, "text"),
    "count": (lambda v: _int(v) and 0 <= v <= 4096, "a whole number from 0 to 4096"),
    "text-list": (lambda v: isinstance(v, list) and len(v) <= 64 and all(isinstance(x, str) and x for x in v),
                  "a list of names"),
    "text-map": (lambda v: isinstance(v, dict) and len(v) <= 4096 and all(isinstance(x, str) and x for x in v.values()),
                 "an object of names"),
    "mib": (lambda v: _int(v) and 1 <= v <= 1 << 20, "a whole number of MiB from 1 to 1048576"),
    "level": (lambda v: _int(v) and 0 <= v <= 5, "a whole number from 0 to 5"),
    "dla-core": (lambda v: _int(v) and -1 <= v <= 7, "a whole number from -1 (the GPU) to 7"),
    "versions": (lambda v: isinstance(v, list) and 0 < len(v) <= 16 and all(isinstance(x, str) and _VERSION.match(x)
                                                                          for x in v),
                 "a list of version numbers like \"8.5\""),
}
_VERSION = re.compile(r"[0-9]+(\.[0-9]+){0,3}\Z")


def _option_ok(kind, value):
    return value in kind if isinstance(kind, tuple) else OPTION_KINDS[kind][0](value)


def _option_text(kind):
    return "one of %s" % ", ".join(map(str, kind)) if isinstance(kind, tuple) else OPTION_KINDS[kind][1]


def _check_tensors(field, tensors, feeds):
    """inputs are fed by the agent: static positive dims and a numeric dtype; outputs are only named."""
    _list(field, tensors, 1, MAX_TENSORS)
    names = set()
    for i, spec in enumerate(tensors):
        where = "%s[%d]" % (field, i)
        _object(where, spec, ("name", "shape", "dtype"), ("layout", "source_layout", "source_dtype", "quantization"))
        _text(where + ".name", spec["name"], 256)
        if spec["name"] in names:
            _fail(where + ".name", "repeats an earlier %s name" % field[:-1], spec["name"])
        names.add(spec["name"])
        _list(where + ".shape", spec["shape"], 0, MAX_RANK)
        if feeds:
            _check_feed_shape(where, spec)
        elif not all((_int(d) and d >= -1) or (isinstance(d, str) and 0 < len(d) <= 64) for d in spec["shape"]):
            _fail(where + ".shape", "must hold whole numbers or dim names", spec["shape"])
        _text(where + ".dtype", spec["dtype"], 32, _WORD)
        if feeds and spec["dtype"] not in INPUT_DTYPES:
            _fail(where + ".dtype", "must be one of %s" % ", ".join(INPUT_DTYPES), spec["dtype"])
        for key, longest in (("layout", 16), ("source_layout", 16), ("source_dtype", 32)):
            if key in spec:
                _text("%s.%s" % (where, key), spec[key], longest, _WORD)
        if "quantization" in spec:
            _check_quantization(where + ".quantization", spec["quantization"])


def _check_feed_shape(where, spec):
    elements = 1
    for d in spec["shape"]:
        if not (_int(d) and d >= 1):
            _fail(where + ".shape", "must hold positive whole numbers (a static shape)", spec["shape"])
        elements *= d
    if elements > MAX_ELEMENTS:
        _fail(where + ".shape", "has %d elements, more than the %d this agent feeds" % (elements, MAX_ELEMENTS))


def _check_quantization(where, q):
    _object(where, q, ("scale", "zero_point"))
    if not (_number(q["scale"]) and q["scale"] > 0):
        _fail(where + ".scale", "must be a positive number", q["scale"])
    if not (_int(q["zero_point"]) and -(1 << 31) <= q["zero_point"] < (1 << 31)):
        _fail(where + ".zero_point", "must be a whole number", q["zero_point"])


def _check_optional(m, files):
    if "source" in m:
        _check_source(m["source"])
    for key in ("compression", "simplification", "parity", "tools", "recipe"):  # records for people, not read here
        if key in m:
            _object(key, m[key], (), free=True)
    if "transforms" in m:  # the stages the model went through before conversion (a record, not read here)
        if not isinstance(m["transforms"], list):
            _fail("transforms", "must be a list", m["transforms"])
    if "budgets" in m:
        _object("budgets", m["budgets"], (), free=True)
        for key, value in m["budgets"].items():
            _text("budgets key", key, 64, re.compile(r"[a-z0-9_]+\Z"))
            if not (_number(value) and value >= 0):
                _fail("budgets." + key, "must be a finite number, 0 or more", value)
    if "notes" in m:
        for i, note in enumerate(_list("notes", m["notes"], 0, 1000)):
            _text("notes[%d]" % i, note, 4096)
    if "data" in m:
        _check_data(m["data"], files)


def _check_source(source):
    _object("source", source, (), ("format", "reference", "sha256", "accuracy", "input_shapes"))
    for key in ("format", "reference", "sha256"):
        if key in source:
            _text("source." + key, source[key], 4096)
    if "input_shapes" in source:   # {input: [dims]}: read by the host's `package --recipe`, not here
        shapes = _object("source.input_shapes", source["input_shapes"], (), free=True)
        for name, dims in shapes.items():
            _text("source.input_shapes", name, 256)
            for dim in _list(_join("source.input_shapes", name), dims, 0, 16):
                if not (_int(dim) and dim > 0):
                    _fail(_join("source.input_shapes", name), "must be a list of whole numbers above 0", dims)
    if "accuracy" in source:
        acc = _object("source.accuracy", source["accuracy"], ("top1",), ("n", "model"))
        if not (_number(acc["top1"]) and 0 <= acc["top1"] <= 1):
            _fail("source.accuracy.top1", "must be a number from 0 to 1", acc["top1"])
        if "n" in acc and not (_int(acc["n"]) and acc["n"] >= 0):
            _fail("source.accuracy.n", "must be a whole number, 0 or more", acc["n"])
        if "model" in acc:  # which model the top-1 is of (the source before transforms, or a teacher)
            _text("source.accuracy.model", acc["model"], 4096)


def _check_data(data, files):
    _object("data", data, (), ("eval",))
    if "eval" not in data:
        return
    entry = _object("data.eval", data["eval"], ("path",), ("samples", "labels"))
    path = entry["path"]
    _text("data.eval.path", path, 1024)
    if path not in files:
        _fail("data.eval.path", "is not among the bundle's listed, verified files", path)
    if files[path]["role"] != "eval-data":
        _fail("data.eval.path", "names a file whose role is %r, not 'eval-data'" % files[path]["role"], path)
    if "samples" in entry and not (_int(entry["samples"]) and entry["samples"] >= 0):
        _fail("data.eval.samples", "must be a whole number, 0 or more", entry["samples"])
    if "labels" in entry and not isinstance(entry["labels"], bool):
        _fail("data.eval.labels", "must be true or false", entry["labels"])
