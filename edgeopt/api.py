"""The public functions. The CLI is a thin layer over these; each is usable from Python.

Each verb returns plain data (dicts and lists of JSON types; a result document is edgeopt.result/1, README
"How it works") and prints nothing. Bad input raises edgeopt.errors.BadInput, a device or transport failure
DeviceFailure; each carries the CLI's `exit_code` (2, 3). Long verbs take `progress`: an edgeopt.progress.Progress
(subclass it; status(text), start/advance/finish and device_state are called as the work goes).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import shlex

from . import bundle as bundles, results, scratch
from .atomic import check_writable, replacing
from .budgets import KINDS, check_result, merged, validate_budgets
from .doctor import same_arch
from .errors import BadInput, CannotWrite, DeviceFailure, EdgeoptError
from .models import inspect_model
from .pipeline import model_reference, package  # noqa: F401 (the public package(): model -> verified bundle)
from .profiles import list_profiles, load_profile
from .progress import SILENT

__all__ = ["inspect", "profiles", "profile", "backend_options", "package", "bench", "fleet_bench", "check",
           "compare", "report", "history", "devices", "device_doctor", "device_clean", "agent_probe", "optimize",
           "demo", "sample_paths"]


def inspect(model: str, input_shapes: dict | None = None, allowed_signers=None) -> dict:
    """A model's inputs, outputs, opset, parameters, FLOPs estimate, dynamic dims and layers (`edgeopt inspect`);
    for a bundle (.edgepkg), inspect_bundle's manifest."""
    model = model_reference(model, "model")   # a Path came back in the answer, which json.dumps then refused
    if str(model).endswith(bundles.SUFFIX):
        if input_shapes:
            raise BadInput(f"{model}: a bundle's input shapes are fixed; --input-shape applies to a model")
        return inspect_bundle(model, allowed_signers)
    if allowed_signers:
        raise BadInput(f"{model}: --allowed-signers checks a bundle's signature; a model carries none")
    with scratch.folder("inspect") as tmp:
        return inspect_model(model, dict(input_shapes or {}), pathlib.Path(tmp))


def inspect_bundle(path, allowed_signers=None) -> dict:
    """A bundle's manifest, every member verified against it first (as the agent does before loading), with
    `path`, `signed`, `signature` (its key; with `allowed_signers`, a file here, the principal it verified as),
    `manifest_sha256` (its identity) and `conversion_seconds` added: what `package` printed."""
    manifest = bundles.read_manifest(path)
    signature = bundles.signature(path)
    if allowed_signers:
        signature = dict(signature or {}, verified=True, principal=bundles.check_signature(path, allowed_signers),
                         allowed_signers=str(allowed_signers))
    return dict(manifest, path=str(path), signed=signature is not None, signature=signature,
                manifest_sha256=manifest.pop("_manifest_sha256"),
                conversion_seconds=(manifest.get("tools") or {}).get("conversion_seconds", 0.0))


def profiles(broken: list | None = None) -> list:
    """Every hardware profile ($EDGEOPT_PROFILES, then the built-in set), as dicts; `shadows`: the built-in file a
    profile of $EDGEOPT_PROFILES takes the place of (its budgets and threads are then not the built-in's).
    broken: a list, to leave out a profile that does not load and append its error there (else BadInput)."""
    from .profiles import shadows_builtin
    return [dict(p.to_dict(), shadows=shadows_builtin(p)) for p in list_profiles(broken)]


def profile(name: str) -> dict:
    """One hardware profile by name or .toml path, as a dict."""
    return load_profile(name).to_dict()


def backend_options(backend: str) -> dict:
    """{option: {"default", "help", "choices" or "range"}} of a backend's own options (--backend-option);
    {} for a backend this version does not implement."""
    from .convert import BACKENDS, _backend_class
    from .options import describe

    target = BACKENDS.get(backend)
    return describe(_backend_class(target).Options) if target else {}


class _Refused(Exception):
    pass


class _RefusingParser(argparse.ArgumentParser):
    """The agent's parser, raising its refusal where argparse would print it and exit."""

    def error(self, message):
        raise _Refused(message)


def _agent_args(threads, loop, sensing=None, allowed_signers=None, manifest=None, timeout=None) -> list:
    """Agent flags from loop and sensing settings: `key=value` -> `--key value`, `key=True` -> `--key`,
    `key=[a, b]` -> `--key a --key b`. allowed_signers is a path on the device. The agent's own parser judges
    them here, before anything is shipped: a misspelt key or a negative time is bad input (exit 2), not a device
    that printed no result (exit 3); so are a minimum above its maximum and, given the bundle's manifest, a
    --runtime-option its runtime does not have (the agent would refuse it only after the result was saved)."""
    args = _agent_flags(threads, loop, sensing, allowed_signers)
    from device_agent.bench import BundleError, check_overrides
    from device_agent.cli import bench_problem, build_parser

    try:   # not by redirecting stderr, which is the process's: measuring threads call this at once (a fleet's
        # trials), and one of them left sys.stderr pointing at its buffer, which swallowed the rest of the run
        parsed = build_parser(_RefusingParser).parse_args(["bench", "BUNDLE", *args])
    except _Refused as e:
        raise BadInput(f"measurement settings (threads, loop, sensing): {e}") from None
    problem = bench_problem(parsed)
    if problem:
        raise BadInput(f"measurement settings: {problem}")
    least = parsed.warmup_seconds + parsed.min_seconds
    if timeout is not None and least >= timeout:   # it ran out the timeout, then saved a failed result (exit 3)
        raise BadInput(f"--timeout {timeout:g} is not longer than the warm-up and timed loop it must hold (at least "
                       f"{least:g} s: --warmup-seconds {parsed.warmup_seconds:g}, --min-seconds {parsed.min_seconds:g})")
    try:
        if manifest is not None:
            check_overrides(manifest, dict(parsed.runtime_option))
    except BundleError as e:
        raise BadInput(str(e)) from None
    return args


def _agent_flags(threads, loop, sensing, allowed_signers) -> list:
    args = [] if threads is None else ["--threads", str(threads)]
    args += ["--allowed-signers", str(allowed_signers)] if allowed_signers else []
    for key, value in list((loop or {}).items()) + list((sensing or {}).items()):
        if value is None or value is False:
            continue
        flag = f"--{key.replace('_', '-')}"
        if isinstance(value, (list, tuple)):
            args += [part for item in value for part in (flag, str(item))]
        else:
            args += [flag] if value is True else [flag, str(value)]
    return args


def _inventory(inventory):
    if inventory is None or not isinstance(inventory, (str, pathlib.Path)):
        return inventory
    from .inventory import load
    return load(inventory)


def _bundle_profile(manifest: dict):
    """The profile a bundle was packaged for, or None where this host does not know it (a custom .toml)."""
    try:
        return load_profile(manifest["profile"]["name"])
    except BadInput:
        return None


def profile_mismatch(manifest: dict, spec) -> tuple:
    """(refused, text) for measuring this bundle on a device whose inventory entry names a profile.

    A bundle is refused where both profiles target particular hardware (arch not `any`) and the bundle's backend
    is none the device's profile runs (its `backends`): a Raspberry Pi (tflite) bundle on an intel-cpu (openvino,
    onnxruntime) box measures nothing anyone will ship.
    A same-backend pair (raspberry-pi-4 vs -5) or a portable `generic` bundle is only a warning."""
    if not spec.profile or spec.profile == manifest["profile"]["name"]:
        return False, None
    ours, theirs = manifest["profile"], inventory_profile(spec)
    mine = _bundle_profile(manifest)
    text = (f"bundle {manifest['name']} was packaged for profile {ours['name']} ({ours['backend']}), device "
            f"{spec.name} is {theirs.name} ({theirs.backend}) in the inventory")
    return backend_refused(ours["backend"], mine.device.arch if mine else "", theirs), text


def inventory_profile(spec):
    """The profile a device's inventory entry names (BadInput naming the field where none by that name loads)."""
    try:
        return load_profile(spec.profile)
    except BadInput as e:
        raise BadInput(f"{spec.field('profile')}: {e}") from None


def backend_refused(backend: str, arch: str, theirs) -> bool:
    """Whether bundles of `backend` for hardware `arch` are refused on a device of profile `theirs`: both target
    particular hardware (arch not `any`) and the device's profile runs no such backend."""
    return backend not in theirs.backends and "any" not in (arch, theirs.device.arch)


def _add_warnings(doc: dict, manifest: dict, mismatch, loop: dict | None):
    """Add the host's warnings to a measured result (the tables show them): a profile or arch mismatch, and a run
    shorter than the --min-seconds asked for."""
    found = [w for w in (mismatch and f"profile mismatch: {mismatch}", _arch_warning(manifest, doc),
                         *_short_run_warnings(doc, loop or {})) if w]
    if found and doc.get("status") == "ok":
        doc["warnings"] = list(doc.get("warnings") or []) + found


def _short_run_warnings(doc: dict, loop: dict) -> list:
    """A --min-seconds the iteration cap cut short (the default 10000 runs of a tiny model took 0.26 s, 3 s asked
    for), in the timed loop or the throughput pass (3111 requests in 0.056 s, 0.3 s asked for, and its FPS passed a
    budget without a word): the run is shorter than asked, and says so. Only where the user asked for a time;
    optimize's short screening loop is short by design."""
    asked = loop.get("min_seconds")
    if asked is None:
        return []
    from device_agent.measure.latency import LoopSettings

    cap = loop.get("max_iterations") or LoopSettings().max_iterations
    out = []
    for section, what, counted in (("latency", "the timed loop", f"{cap} runs"),
                                   ("throughput", "the throughput pass", "{completed} completed requests")):
        figures = doc.get(section) if isinstance(doc.get(section), dict) else {}
        took = figures.get("duration_s")
        if figures.get("stopped_by") == "max_iterations" and isinstance(took, (int, float)) and took < asked:
            out.append(f"{what} stopped at {counted.format(completed=figures.get('completed', '?'))} "
                       f"(--max-iterations) after {took:.3g} s, short of --min-seconds {asked:g}: a larger "
                       "--max-iterations runs it that long")
    return out


def _no_interval_warnings(doc: dict, budget_rows: list) -> list:
    """A tail-latency budget judged on a percentile with no 95% interval, as the agent records it (a p90 of 10 runs
    is an interpolation towards the slowest one; a p99 needs about 300 runs for one): a pass there rests on one
    or two samples, and said so only in the JSON (a review)."""
    lat = results.section(doc, "latency")
    out = []
    for row in budget_rows:
        field = KINDS[row["budget"]].path[-1]
        if row["measured"] is not None and isinstance(lat.get(f"ci95_{field}_absent"), str):
            runs = f"{lat['n']} runs" if isinstance(lat.get("n"), int) else "too few runs"
            out.append(f"{row['budget']} is judged on a {field.split('_')[0]} of {runs}, too few for a 95% "
                       "interval: it rests on the slowest few runs; more runs (bench --min-iterations) give one")
    return out


def _arch_warning(manifest: dict, doc: dict):
    """Known only after the agent probed the device: the bundle's profile arch vs the device's machine."""
    mine, arch = _bundle_profile(manifest), (doc.get("device") or {}).get("arch")
    wanted = mine.device.arch if mine else "any"
    if wanted == "any" or not arch or same_arch(wanted, arch):
        return None
    return (f"profile mismatch: bundle packaged for {mine.name} ({wanted}), measured on a {arch} device; "
            f"the figures are not those of {mine.name} hardware")


def bench(bundle, device: str = "local", results_dir="results", threads: int | None = None,
          loop: dict | None = None, timeout: float = 900.0, progress=SILENT, inventory=None,
          ssh_options=None, store_url: str | None = None, sensing: dict | None = None,
          allowed_signers: str | None = None, allow_profile_mismatch: bool = False, typed_loop: bool = True) -> dict:
    """Measure a bundle on a device. The result is saved (even a failed one) before returning or raising.
    typed_loop: `loop` is the user's (a run it cuts short of its --min-seconds is said), not optimize's own.
    allowed_signers: the device-side OpenSSH allowed-signers file; the agent then runs signed bundles only.

    `loop`: the agent's loop settings (warmup_iterations, warmup_seconds, min_iterations, min_seconds,
    max_iterations, max_seconds, runtime_option=["key=value", ...]) and passes: throughput=True measures FPS even
    where the bundle's performance hint is latency, profile_layers=True the per-layer profile. The agent's own
    parser checks every key and value before anything is shipped (BadInput).
    `progress`: an edgeopt.progress.Progress (subclass it: status(text) and log(text) are called as the work goes).
    Returns the result document (edgeopt.result/1, README "How it works") with `_path`, the file it was saved to,
    and `_history`, its copy under results/history/. Raises BadInput (exit code 2) or DeviceFailure (3).
    `sensing`: power and thermal options for the agent (power_sensor, power_command, power_rate, no_power,
    idle_seconds, cooldown, cooldown_timeout, cooldown_target); left out, the bundle's profile decides.
    A bundle for another backend than the device's inventory profile is refused (see profile_mismatch)
    unless allow_profile_mismatch; a milder mismatch, or an arch one, is a warning in the result."""
    from .fleet import failed_document, name_the_bundle
    from .transport import check_timeout, for_spec, resolve_device

    bundle = pathlib.Path(bundle)
    check_timeout(timeout)   # one too short would fail every device, and save that as its result
    manifest = bundles.read_manifest(bundle)  # refuse a bad bundle here, before anything is shipped
    agent_args = _agent_args(threads, loop, sensing, allowed_signers, manifest, timeout)   # and bad settings for it
    spec = resolve_device(device, _inventory(inventory))   # a device that is not one leaves no results dir
    refused, mismatch = profile_mismatch(manifest, spec)
    if refused and not allow_profile_mismatch:
        raise BadInput(f"{mismatch}; --allow-profile-mismatch measures it anyway")
    transport = for_spec(spec, ssh_options)
    try:
        unreached = _reach_typed_address(transport, spec)   # a typo is bad input before the results store is made
        with _store_beside(results_dir, store_url) as store:  # an unusable store, before measuring
            check_writable(results_dir, "results to", folder=True)   # and a read-only results folder
            store.refuse_unwritable()
            progress.status(f"measuring {bundle.name} on {device}")
            try:
                if unreached is not None:
                    raise unreached
                doc, code = transport.bench(bundle, agent_args, progress, timeout)
            except DeviceFailure as e:
                doc, code = failed_document(spec, manifest, str(e), e.exit_code), e.exit_code
            transport.close()   # before saving: the device is done with
            name_the_bundle(doc, manifest)
            _add_warnings(doc, manifest, mismatch, loop if typed_loop else None)
            _save_or_say_where(doc, results_dir, store)
    finally:
        transport.close()
    if code != 0 or doc.get("status") != "ok":
        message = (doc.get("error") or {}).get("message", f"agent exit code {code}")
        kept = f"; the latest good result {doc['_latest_kept']} is kept" if doc.get("_latest_kept") else ""
        refused = (doc.get("error") or {}).get("kind") == "bundle"  # the agent refused the bundle or an option
        if not message.startswith(f"device {device}"):   # "device busy: ..." said which device by no name
            message = f"device {device}: {message}"
        raise (BadInput if refused else DeviceFailure)(f"{message} (result saved to {doc['_path']}{kept})")
    return doc


def _store_beside(results_dir, store_url):
    """The store (store_url, else the one in results_dir). Where the one in results_dir cannot be opened, a results
    folder that cannot be written is said as such ("Read-only file system"), not as "unable to open database file"
    (a walkthrough); checked only then, since the check makes the folder and a refused store must leave none."""
    from .store import Store, default_url

    try:
        return Store(store_url or default_url(results_dir))
    except BadInput:
        if store_url is None and pathlib.Path(results_dir).is_dir():
            check_writable(results_dir, "results to", folder=True)
        raise


def _reach_typed_address(transport, spec):
    """Connect now to an address typed on the command line: a name that does not resolve is BadInput (ssh_connect)
    raised before anything is made; a device that fails is returned, to be saved as its result as any failure is."""
    if not spec.on_command_line or not hasattr(transport, "connect"):
        return None
    try:
        transport.connect()
    except DeviceFailure as e:
        return e
    return None


def _save_or_say_where(doc: dict, results_dir, store) -> None:
    """_save_and_store; a Ctrl-C in it says where the result got to: one between its history copy and its store row
    read "interrupted" alone, the result in results/history/ only, unseen by `check results/*.json` and the store
    (a walkthrough)."""
    try:
        _save_and_store(doc, results_dir, store)
    except KeyboardInterrupt:
        saved = doc.get("_history")
        if saved is None:
            raise
        raise KeyboardInterrupt(f"the result was saved to {saved}, perhaps not yet to the store: `edgeopt history "
                                f"--add {saved}` adds it if not") from None


def _save_and_store(doc: dict, results_dir, store) -> None:
    """The result as files under results_dir and as a row in the store: what one of them cannot take (a full
    disk), the other keeps, and the error says where the result is."""
    try:
        doc["_path"] = str(results.save(doc, results_dir))
    except CannotWrite as unsaved:
        copy = doc.get("_history")   # written before the disk filled, where it was: the /tmp copy was a duplicate
        kept = f"; the result is saved to {copy}" if copy and pathlib.Path(copy).is_file() else None
        try:
            store.add(doc, path=copy)
        except EdgeoptError as e:
            raise BadInput(f"{unsaved}; nor could the store take it ({e}){kept or results.saved_elsewhere(doc)}") \
                from None
        raise BadInput(f"{unsaved}; the result is in the store {store.name} (edgeopt history shows it)") from None
    try:   # the row names this run's own copy: the latest file is replaced by the next run
        store.add(doc, path=doc.get("_history"))
    except EdgeoptError as e:   # measured and saved, not stored: exit 3, as fleet bench has it, not "bad input"
        copy = doc.get("_history") or doc["_path"]
        raise DeviceFailure(f"{e}; the result is saved to {copy}, but not in the store (`edgeopt history --add "
                            f"{shlex.quote(copy)}` adds it)") from None


def fleet_bench(bundle, inventory, group: str | None = None, parallel: int = 8, results_dir="results",
                threads: int | None = None, loop: dict | None = None, timeout: float = 900.0, resume: bool = False,
                ssh_options=None, store_url: str | None = None, budgets: dict | None = None, progress=SILENT,
                sensing: dict | None = None, allowed_signers: str | None = None,
                allow_profile_mismatch: bool = False) -> dict:
    """Benchmark on every device of an inventory group; see edgeopt.fleet.bench. Adds a budget check.
    A device whose inventory profile the bundle does not fit (profile_mismatch) is a failed device with that
    reason, never reached; the others are measured."""
    from . import fleet
    from .inventory import check_key_files
    from .store import Store, default_url
    from .transport import check_timeout, for_spec

    check_timeout(timeout)   # one too short would fail every device, and save that as its result
    validate_budgets(budgets or {}, field="budgets", dropping=True)   # before run.json records them, and any device
    inv = _inventory(inventory)
    devices = inv.select(group)
    if not devices:
        raise BadInput(f"inventory {inv.source}: group {group or 'all'} has no devices")
    manifest = bundles.read_manifest(bundle)
    asked = budgets if budgets or not resume else fleet.resumed_budgets(results_dir, manifest)   # as FleetRun
    if (asked or {}).get("throughput_fps") is not None:   # a budget on FPS measures it (as a bundle's does)
        loop = dict(loop or {}, throughput=True)
    agent_args = _agent_args(threads, loop, sensing, allowed_signers, manifest, timeout)   # before the store is made
    with Store(store_url or default_url(results_dir)) as store:  # an unusable store, before any device is reached
        store.refuse_unwritable()
    for spec in devices:   # and an inventory defect (a profile that does not exist, a missing key), as bench has it
        profile_mismatch(manifest, spec)
        check_key_files(spec)

    def transport_for(spec):
        refused, mismatch = profile_mismatch(manifest, spec)
        if refused and not allow_profile_mismatch:
            raise BadInput(f"{mismatch}; --allow-profile-mismatch measures it anyway")
        transport = for_spec(spec, ssh_options)
        measure = transport.bench

        def bench_and_warn(*args):  # the result is saved by the fleet run: warn before it is
            doc, code = measure(*args)
            _add_warnings(doc, manifest, mismatch, loop)
            return doc, code
        transport.bench = bench_and_warn
        return transport

    outcome = fleet.bench(bundle, devices, transport_for, results_dir,
                          store_url or default_url(results_dir), parallel,
                          agent_args, timeout,
                          resume, progress, budgets or None)
    outcome["check"] = compare(list(outcome["paths"].values()))   # by the budgets the run records
    return outcome


def budgets_for(doc: dict, overrides: dict, profile_name: str | None = None, run: dict | None = None) -> dict:
    """Budgets in force: the bundle's (profile defaults + package-time), then its fleet run's (`fleet bench
    --budget`), then a profile's, then overrides; a None in the run's or the overrides drops that budget. A
    profile's default adds a budget or tightens one, never loosens it: `check --profile generic` passed a bundle
    packaged with latency_p90_ms=0.001 against generic's 50 ms."""
    own = merged((doc.get("bundle") or {}).get("budgets"), run)
    profile = load_profile(profile_name).budgets if profile_name else {}
    stricter = {k: v if own.get(k) is None or k not in KINDS else
                (max if KINDS[k].higher_is_better else min)(v, own[k]) for k, v in profile.items()}
    return validate_budgets(merged(own, stricter, overrides))


CHECK_SCHEMA = "edgeopt.check/1"   # check's answer (`check --json`), versioned as result and bundle documents are
REPORT_SCHEMA = "edgeopt.report/1"   # report's answer (`report --json`): it had none, unlike check's (a walkthrough)


def check(result_paths, budgets: dict | None = None, profile: str | None = None, baseline=None,
          effect: float | None = None, store_url: str | None = None, results_dir=None,
          limits_by_path: dict | None = None, require_budgets: bool = True, stored: dict | None = None,
          documents: dict | None = None) -> dict:
    """Each result against its budgets and, given a baseline (result files, run directories, or "store":
    the last good result of the same bundle on the same device), the regression gate. exit_code: 0 all
    hold, 1 a budget failed or was unmeasured or a result is significantly slower, 3 a device produced no result,
    2 a result file there cannot be read (its entry's status "unreadable", its reason as the error, the others
    judged beside it).
    limits_by_path: {result path: budgets} over that result's bundle's own, under `budgets` (report --study: the
    limits the chosen bundle carries, for its trial's results). results_dir: where the store of `--baseline store`
    is; None: $EDGEOPT_STORE, else the store beside the result files (as `report` reads it), else results/.
    require_budgets (the `check` verb, and the default):
    a result with no budget to check and no baseline is bad input, since a CI gate that checks nothing must not
    pass; compare and report, which show such a result, pass False. stored: {path: document} read from the store
    for result files that are not on this host (report --study). documents: a dict filled with {path: document}
    as read, for a caller that shows them too (compare, report read and checked every file twice)."""
    if budgets is not None:   # {key: limit}, refused in one line when a caller passes "latency_p90_ms=5"
        validate_budgets(budgets, field="budgets", dropping=True)
    if result_paths is None:
        raise BadInput("check needs at least one result file")
    given = [result_paths] if isinstance(result_paths, (str, os.PathLike)) else list(result_paths)
    run_dirs = [pathlib.Path(p) for p in given if pathlib.Path(p).is_dir()]
    result_paths = results.expand(result_paths)
    if not result_paths:
        raise BadInput("check needs at least one result file")
    entries, docs = [], []
    for path in result_paths:
        doc = (stored or {}).get(str(path)) or results.load_kept(path)
        docs.append(doc)
        if documents is not None:
            documents[str(path)] = doc
        entry = {"result": str(path), "bundle": (doc.get("bundle") or {}).get("name"),
                 "device": (doc.get("device") or {}).get("name"), "status": doc.get("status"),
                 "created": _text(doc.get("created")),
                 "hostname": _text(results.section(doc, "device").get("hostname")),
                 "warnings": doc.get("warnings", []), "throttled": results.throttled(doc)}
        if doc.get("status") != "ok":
            entry["error"] = (doc.get("error") or {}).get("message", "no result")
            entry["budgets"] = []
        else:
            given = dict((limits_by_path or {}).get(str(path), {}), **(budgets or {}))
            run = results.run_budgets(path.parent)
            entry["budgets"] = check_result(doc, budgets_for(doc, given, profile, run))
            entry["warnings"] = list(entry["warnings"]) + _no_interval_warnings(doc, entry["budgets"])
            if require_budgets and not entry["budgets"] and not baseline:
                dropped = [k for k, v in given.items() if v is None]
                had = budgets_for(doc, {}, profile, run)   # before the drops
                why = (f"every budget was dropped ({', '.join(f'{k}=none' for k in dropped)})" if dropped and had
                       else "its bundle carries no budgets and none were given")
                raise BadInput(f"{path}: nothing to check: {why} (--budget KEY=VALUE, --profile NAME or --baseline)")
        entries.append(entry)
    entries += _missing_from_runs(run_dirs, entries)
    report = {"schema": CHECK_SCHEMA, "results": entries}
    if baseline:
        from .regression import gate
        if store_url is None and results_dir is None:   # the store beside the results, as `report` reads it
            store_url = os.environ.get("EDGEOPT_STORE") or _find_store(result_paths)
        report["regressions"] = gate(docs, baseline, effect, store_url, results_dir or "results")
    unreadable = [e["error"] for e in entries if e["status"] == results.UNREADABLE]
    if unreadable and len(unreadable) == len(entries):   # nothing to show beside it: refused, nothing written
        raise BadInput(unreadable[0])
    if unreadable:   # bad input, as a name given wrong is; the others' verdicts are there beside it
        code = 2
        report["headline"] = f"{len(unreadable)} result file{'s' * (len(unreadable) > 1)} cannot be read: " \
            + "; ".join(unreadable)
    elif any(e["status"] != "ok" for e in entries):
        code = 3
    elif any(r["status"] != "pass" for e in entries for r in e["budgets"]):
        code = 1
    elif any(r["verdict"] == "slower" for r in report.get("regressions", [])):
        code = 1   # every budget holds: "a budget failed" headed a report whose one failure was the gate's
        report["headline"] = "every budget holds, but the regression gate found a result significantly slower"
    else:
        code = 0
    # a gate that found no baseline (a first run, a store that holds none) tested nothing: "checked" said it had
    checked = any(e["budgets"] for e in entries) or any(r.get("verdict") != "not tested"
                                                        for r in report.get("regressions") or [])
    if code == 0 and not checked:   # compare and report show such results: they said "every budget holds"
        dropped = [f"{k}=none" for k, v in (budgets or {}).items() if v is None]
        report["headline"] = (f"nothing checked: every budget was dropped ({', '.join(dropped)})" if dropped else
                              "nothing checked: no result's bundle carries a budget and none were given")
        untested = report.get("regressions") or []
        if untested:   # no baseline found, or one without enough samples: its own reason
            report["headline"] += (", and the regression gate found no baseline to compare with"
                                   if not any(r.get("baseline") for r in untested) else
                                   f", and the regression gate tested nothing: {untested[0]['reason']}")
    return dict(report, passed=code == 0, exit_code=code, checked=checked)


def missing_document(entry: dict) -> dict:
    """A failed result standing for a device a fleet run lists and holds no result of (check's "missing" entry),
    for compare's and report's tables: they read the run's files only, and passed it (check exits 3)."""
    return {"schema": results.RESULT_SCHEMA, "status": "failed", "bundle": {"name": entry["bundle"]},
            "device": {"name": entry["device"]}, "error": {"message": entry["error"]}, "warnings": [],
            "_path": str(pathlib.Path(entry["result"]) / f"{entry['device']}.json")}


def _missing_from_runs(run_dirs: list, entries: list) -> list:
    """An entry for each device a fleet run directory given to `check` lists in its run.json and holds no result
    of: a run with a file lost (deleted, or a CI artifact cut short) passed on the files that were left."""
    missing = []
    for run_dir in dict.fromkeys(run_dirs):
        present = {e["device"] for e in entries if pathlib.Path(e["result"]).parent == run_dir}
        bundle, devices = results.run_devices(run_dir)
        if devices is None:   # an older edgeopt's run: a device lost from it passed unsaid (an upgrade walkthrough)
            first = next((e for e in entries if pathlib.Path(e["result"]).parent == run_dir), None)
            if first is not None:
                first["warnings"] = list(first["warnings"]) + [
                    f"{run_dir / 'run.json'} was written by an older edgeopt and lists no devices: a device of "
                    "that run with no result here is not found missing"]
            continue
        for device in devices:
            if device not in present:
                missing.append({"result": str(run_dir), "bundle": bundle, "device": device, "status": "missing",
                                "created": "", "hostname": "", "warnings": [], "throttled": False, "budgets": [],
                                "error": f"{run_dir / 'run.json'} lists {device}, and the run directory "
                                         "holds no result of it"})
    return missing


def compare(result_paths, budgets: dict | None = None, baseline=None, effect: float | None = None,
            store_url: str | None = None, results_dir=None) -> dict:
    """One row per result (device, time, runtime, threads, size, latency percentiles, peak RSS, top-1,
    budget verdict) + the check; with a baseline, the regression gate per device (check's `regressions`)."""
    from .report import rows as report_rows

    read = {}
    report = check(result_paths, budgets, baseline=baseline, effect=effect, store_url=store_url,
                   results_dir=results_dir, require_budgets=False, documents=read)   # run directories as given
    result_paths = results.expand(result_paths)
    rows = []
    missing = [missing_document(e) for e in report["results"][len(result_paths):]]
    for path, entry in zip(result_paths + [d["_path"] for d in missing], report["results"]):
        doc = read.get(str(path)) or next(d for d in missing if d["_path"] == path)
        lat, acc = doc.get("latency", {}), doc.get("accuracy", {})
        missed = [r["budget"] for r in entry["budgets"] if r["status"] == "fail"]
        unmeasured = [r["budget"] for r in entry["budgets"] if r["status"] == "unmeasured"]
        # an unmeasured budget is not a miss (check and report say NOT MEASURED): both fail the gate
        verdict = ("unreadable" if entry["status"] == results.UNREADABLE else
                   "device failed" if entry["status"] != "ok" else "no budgets" if not entry["budgets"] else
                   "all pass" if not missed and not unmeasured else
                   "; ".join(([f"miss: {', '.join(missed)}"] if missed else []) +
                             ([f"not measured: {', '.join(unmeasured)}"] if unmeasured else [])))
        settings = results.section(doc, "settings")
        rows.append({"bundle": entry["bundle"], "device": entry["device"], "result": str(path),
                     "created": _text(doc.get("created")), "threads": _count(settings.get("threads")),
                     "runtime": results.runtime_text(doc),
                     "size_mb": (doc.get("bundle") or {}).get("artifact_mb"), "batch": report_rows.batch(doc),
                     "p50_ms": lat.get("p50_ms"), "p90_ms": lat.get("p90_ms"), "p99_ms": lat.get("p99_ms"),
                     "peak_rss_mb": (doc.get("memory") or {}).get("peak_rss_mb"), "top1": acc.get("top1"),
                     "throughput_fps": results.section(doc, "throughput").get("fps"),
                     # power where it was measured (only fleet bench's table showed it)
                     "power_w": report_rows.figure(doc, "power.mean_w"),
                     "energy_mj": report_rows.figure(doc, "power.energy_mj_per_inference"),
                     "slowest_layer": _slowest_layer(doc),
                     "verdict": verdict, "_doc": doc})
    notes = _quantized_no_faster(rows)
    rows = [{k: v for k, v in r.items() if k != "_doc"} for r in rows]
    return {"rows": rows, "check": report, "regressions": report.get("regressions", []), "notes": notes}


def _quantized_no_faster(rows: list) -> list:
    """A line per quantized result that is not faster than a float bundle of the same model (by the source's
    sha256), profile and transforms on the same device: what a user runs compare for, and INT8 slower than FP32
    on a device is what only measuring there shows (a walkthrough: OpenVINO INT8 1.44x a BERT's FP32)."""
    from .convert.host_hint import HARDLY_FASTER

    def key(doc):
        bundle = results.section(doc, "bundle")
        source = results.section(bundle, "source").get("sha256")
        return (source, (doc.get("device") or {}).get("name"), results.bundle_profile(doc),
                json.dumps(bundle.get("transforms"), sort_keys=True, default=str)) if source else None

    def quantized(doc):
        return results.section(results.section(doc, "bundle"), "compression").get("quantize", "none") != "none"

    # each row's key once, float rows grouped by it: every quantized row against every row was 20 of 30 s of a
    # compare of 890 results (a scale walkthrough)
    keyed = [(r, key(r["_doc"])) for r in rows if r["_doc"].get("status") == "ok" and r.get("p50_ms")]
    fastest_float = {}
    for r, k in keyed:
        if k is not None and not quantized(r["_doc"]) and (
                k not in fastest_float or r["p50_ms"] < fastest_float[k]["p50_ms"]):
            fastest_float[k] = r
    lines = []
    for row, k in keyed:
        if k is None or not quantized(row["_doc"]):
            continue
        fastest = fastest_float.get(k)
        if fastest is not None and row["p50_ms"] / fastest["p50_ms"] >= HARDLY_FASTER:
            noisy = [r["bundle"] for r in (row, fastest) if any(str(w).startswith(results.NOISY)
                                                                for w in r["_doc"].get("warnings") or [])]
            # a conclusion drawn from a run its own warning calls noisy (1.01x, where INT8 measured again was 4x)
            verdict = (f"measured in a run flagged noisy ({', '.join(noisy)}): measure both again before concluding "
                       "that quantization does not pay there" if noisy else "quantization does not pay there")
            lines.append(f"{row['bundle']} is quantized and runs at {row['p50_ms'] / fastest['p50_ms']:.2f}x the p50 "
                         f"of {fastest['bundle']} (float) on {row['device']}: {verdict}")
    return lines


def _count(value) -> int | None:
    """A whole number read from a result, as a number in --json ("threads": "2" read as text), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _slowest_layer(doc: dict) -> str | None:
    """`name (op) share %` of the layer profile's first layer (results.load validated the rows), or None."""
    layers = results.section(doc, "layer_profile").get("layers") or []
    return f"{layers[0]['name']} ({layers[0]['op_type']}) {layers[0]['share_pct']:.0f} %" if layers else None


def _text(value) -> str | None:
    return None if value is None else str(value)


DEMO_VARIANTS = (("fp32", "none"), ("fp16", "none"), ("fp32", "int8"))


def sample_paths() -> dict:
    """The shipped sample: {"model", "calib", "eval"} paths (the digits CNN, its calibration and eval data)."""
    root = pathlib.Path(__file__).resolve().parent / "samples"
    return {"model": root / "digits_cnn.onnx", "calib": root / "digits_calib.npz", "eval": root / "digits_eval.npz"}


def demo(output_dir="demo-out", device: str = "local", progress=SILENT, inventory=None, ssh_options=None) -> dict:
    """The embedded default: the shipped digits CNN packaged FP32, FP16 and INT8 for `generic`,
    each measured on `device` (reached as `bench` reaches it), compared and checked against the profile's budgets."""
    samples = sample_paths()
    out = pathlib.Path(output_dir)
    paths = []
    for precision, quantize in DEMO_VARIANTS:
        name = f"digits_cnn-{quantize if quantize != 'none' else precision}"
        progress.status(f"packaging {name}")
        manifest = package(str(samples["model"]), "generic", out / f"{name}.edgepkg", precision, quantize,
                           calib=samples["calib"], eval_data=samples["eval"], name=name, progress=progress)
        doc = bench(manifest["path"], device, out / "results", progress=progress, inventory=inventory,
                    ssh_options=ssh_options)
        paths.append(doc["_path"])
    return dict(compare(paths), bundles_dir=str(out), results_dir=str(out / "results"))


def device_doctor(device: str, inventory=None, ssh_options=None, progress=SILENT) -> dict:
    """What `device` lacks (Python, numpy, the runtime its profile needs) and how to install it."""
    from . import doctor
    from .transport import for_spec, resolve_device

    spec = resolve_device(device, _inventory(inventory))
    profile, unknown = doctor.device_profile(spec)
    transport = for_spec(spec, ssh_options)
    try:
        checks = unknown + doctor.diagnose(transport, spec, profile, progress)
    finally:
        transport.close()
    # an inventory's unknown profile is the input's defect, exit 2 as bench says it, though doctor goes on past it;
    # a device that also fails a check of its own is the device's failure first (exit 3), as it was
    failed = {c["check"] for c in checks if not c["ok"]}
    return {"device": spec.name, "checks": checks, "ok": not failed,
            "bad_input": bool(unknown) and failed == {"profile"},
            "warnings": list(getattr(transport, "trusted", []))}


def agent_probe(device: str = "local", inventory=None, ssh_options=None, progress=SILENT) -> dict:
    """The agent's facts of `device` (CPU, memory, OS, Python, runtimes), reached as `bench` reaches it: an
    inventory's device runs its own `python` in its own workdir."""
    from .transport import for_spec, resolve_device

    transport = for_spec(resolve_device(device, _inventory(inventory)), ssh_options)
    try:
        return transport.probe(progress)
    finally:
        transport.close()


def device_clean(device: str, inventory=None, ssh_options=None) -> dict:
    """Remove what edgeopt left on a device (cached agents and bundles, stale run directories)."""
    from . import doctor
    from .transport import for_spec, resolve_device

    spec = resolve_device(device, _inventory(inventory))
    transport = for_spec(spec, ssh_options)
    try:
        freed, left = doctor.clean(transport, spec)
    finally:
        transport.close()
    # a key --trust-new-host-keys added is said, with its fingerprint, as bench and doctor say it
    return {"device": spec.name, "freed_bytes": freed, "warnings": list(getattr(transport, "trusted", [])) + left}


def history(results_dir="results", store_url: str | None = None, device: str | None = None,
            bundle: str | None = None, limit: int = 50, since: str | None = None) -> list:
    """Rows of the results store, newest measured first (created, bundle, device, host, status, figures, error,
    path), measured since `since` where given (an age, 7d or 2w, or a date); it reads and creates nothing
    (BadInput where no store or no edgeopt results are there)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise BadInput(f"history limit must be a positive integer, got {limit!r}")
    from .store import Store, default_url
    when = _since(since)
    with Store(store_url or default_url(results_dir), create=False) as store:
        return store.history(device, bundle, limit, when)


def history_count(results_dir="results", store_url: str | None = None, device: str | None = None,
                  bundle: str | None = None, since: str | None = None) -> int:
    """How many rows `history` gives without a limit, of that device and bundle, and since then, where named."""
    from .store import Store, default_url
    when = _since(since)
    with Store(store_url or default_url(results_dir), create=False) as store:
        return store.count(device, bundle, when)


def _since(since: str | None):
    """history's --since as an instant (None: no bound), read as --forget-older-than's age or date is."""
    from .retention import cutoff
    return None if since is None else cutoff(since, "--since")


def forget_results(older_than: str, keep_last: int | None = None, results_dir="results", store_url: str | None = None,
                   dry_run: bool = False, progress=SILENT, device: str | None = None,
                   bundle: str | None = None) -> dict:
    """Forgets the results measured before `older_than` (an age, 180d or 26w, or a date) that nothing keeps (the
    newest `keep_last` good of their series, a study's, their fleet run's: edgeopt.retention): the store's rows and
    the files under results/history and results/fleet; of this device and bundle only, where named. `dry_run` says
    what would go and removes nothing. keep_last: retention.KEEP_LAST where None. {before, forgotten, rows, files,
    bytes, kept: {reason: count}, not_removed, left_*, errors, store, notes}."""
    import datetime
    from . import retention
    from .store import Store, default_url, sqlite_file
    keep_last = retention.KEEP_LAST if keep_last is None else keep_last
    if isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 1:
        raise BadInput(f"--keep-last must be a positive integer, got {keep_last!r}: the newest good result of "
                       "each series is the regression gate's baseline")
    policy = retention.Policy(retention.cutoff(older_than), keep_last, device, bundle)
    url = store_url or default_url(results_dir)
    file, notes = sqlite_file(url), []
    if policy.before > datetime.datetime.now(datetime.timezone.utc):
        notes.append(f"the cut-off {policy.before:%Y-%m-%d %H:%M} UTC is in the future: every result but those "
                     "kept is forgotten")
    named = store_url or os.environ.get("EDGEOPT_STORE")
    if file is not None and not file.exists() and not named:   # the default store never made, or removed
        if not pathlib.Path(results_dir).is_dir():   # a mistyped --results-dir said "forgot 0 of 0"
            raise BadInput(f"no results folder at {results_dir} and no results store in it")
        report = retention.forget(None, results_dir, policy, dry_run, progress)
        return dict(report, notes=notes + [f"no results store at {file}: the files alone"])
    with Store(url, create=False) as store:   # a store named and missing is refused, not taken as none
        return dict(retention.forget(store, results_dir, policy, dry_run, progress), notes=notes)


def add_to_store(result_paths, results_dir="results", store_url: str | None = None) -> dict:
    """Result files (or folders of them: results/history holds every run) added to the results store, each once:
    results measured before the store existed or elsewhere (a CI artifact, a teammate's files for a shared
    PostgreSQL store), or one whose run was killed between its file and its row. {"store", "added", "held" (the
    store had them), "unreadable" (each file's defect: the others are added)}. A name given wrong is refused
    before anything is added."""
    from .store import ADDING_LOCK, Store, default_url

    paths, unreadable = [], []
    for path in results.expand(result_paths):   # a file of another kind is refused here, before anything is added
        try:
            results.load(path)   # read again under the lock, one at a time: 1,781 held 259 MB at once (a walkthrough)
            paths.append(path)
        except results.UnreadableResult as e:
            unreadable.append(str(e))
    added, held, future = [], [], []
    with Store(store_url or default_url(results_dir)) as store:
        store.refuse_unwritable()
        # check and add under one lock: three `--add` of one folder at once stored 495 rows of 415 results (941
        # on PostgreSQL), each process finding a result absent before another added it (a walkthrough)
        try:
            with store.locked(ADDING_LOCK, "cannot lock it for adding"):
                for path in paths:
                    if not os.path.lexists(path):   # a forget removed it since: nothing to add
                        continue
                    try:
                        doc = results.load(path)
                    except results.UnreadableResult as e:   # changed since it was read
                        unreadable.append(str(e))
                        continue
                    if store.holds(doc):
                        held.append(doc["_path"])
                    else:
                        store.add(doc)
                        added.append(doc["_path"])
                        future += _in_the_future(doc)
        except KeyboardInterrupt:   # "interrupted" alone, 12 of 98 added
            raise KeyboardInterrupt(f"{len(added)} of {len(paths)} result(s) added to {store.name} (and {len(held)} "
                                    "held already); the same command adds the rest, each once") from None
        return {"store": store.name, "added": added, "held": held, "unreadable": unreadable, "warnings": future}


def _in_the_future(doc: dict) -> list:
    """A warning for a result dated later than now: one a device's clock dated 2100 (the agent run by hand, bench
    dates by this host's clock) stays at the top of history and is never forgotten (a clock walkthrough)."""
    import datetime
    from .store import parse_created
    from .transport.base import CLOCK_SLACK_SECONDS   # the slack bench allows a device's clock
    now = datetime.datetime.now(datetime.timezone.utc)
    if parse_created(doc.get("created"), now) <= now + datetime.timedelta(seconds=CLOCK_SLACK_SECONDS):
        return []
    return [f"{doc['_path']} is dated {doc['created']}, after this host's clock: it stays at the top of history and "
            "--forget-older-than never forgets it (its device's clock was off?)"]


def devices(inventory, group: str | None = None) -> list:
    """The devices of an inventory (or one group of it) as dicts; it connects to none. `python` and `workdir` are
    what the agent will run with and where (`local`: edgeopt's own interpreter and cache unless told)."""
    import dataclasses
    import shlex
    from .inventory import shown_vars
    from .profiles import find_profile
    from .transport import for_spec
    rows = []
    for spec in _inventory(inventory).select(group):
        transport = for_spec(spec)
        try:   # a profile this machine does not have: a misspelling, or one kept elsewhere ($EDGEOPT_PROFILES)
            profile_here = find_profile(spec.profile) is not None if spec.profile else None
        except BadInput:
            profile_here = False
        rows.append(dict(dataclasses.asdict(spec), vars=shown_vars(spec.vars), workdir=transport.workdir(),
                         python=shlex.join(transport.python_argv()), profile_found=profile_here))
    return rows


def optimize(model: str, profile: str = "generic", devices=("local",), budgets: dict | None = None,
             study: str = "edgeopt", trials: int = 20, sampler: str | None = None, group: str | None = None,
             progress=SILENT, **options) -> dict:
    """Search the compression space for a configuration that meets every budget, each candidate measured on
    the devices (edgeopt/search/). `devices` are device names, or, with `group`, the inventory group's.
    options: Job fields (objective, calib, eval_data, train_data, input_shapes, seed, results_dir, store_url,
    inventory, ssh_options, timeout, output_dir) and study options (space_file, resume, screening,
    multi_objective). The outcome carries `exit_code`: 0 found, 1 none met every budget, 3 device failure."""
    from .search import require_optuna
    require_optuna()
    model = model_reference(model, "model")   # a Path reached the study's JSON attributes: a TypeError, the study left
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:   # as the CLI's Count(min=1): 0 ran
        raise BadInput(f"trials: expected a whole number of at least 1, got {trials!r}")   # nothing and exited 1
    from .search.judging import default_objective
    from .search.study import Job, optimize as run_study

    study_options = {k: options.pop(k) for k in ("space_file", "resume", "screening", "multi_objective")
                     if k in options}
    if group is not None:
        if options.get("inventory") is None:
            raise BadInput(f"--group {group} names an inventory group: give the inventory with --inventory FILE")
        devices = [d.name for d in _inventory(options.get("inventory")).select(group)]
        if not devices:
            raise BadInput(f"inventory group {group} has no devices")
    devices = [devices] if isinstance(devices, str) else list(devices)
    twice = sorted({d for d in devices if devices.count(d) > 1})
    if twice:   # it was measured twice per trial, in parallel: on one host, each run slowing the other
        raise BadInput(f"--device {twice[0]} given twice: name each device once")
    if "output_dir" in options:
        options["output_dir"] = pathlib.Path(options["output_dir"])
    if options.get("objective") is None:
        options["objective"] = default_objective(budgets or {}, options.get("relative_budgets") or {})
    job = Job(model, profile, list(devices), dict(budgets or {}), **options)
    return run_study(job, study, trials, sampler, progress=progress, **study_options)


REPORT_FORMATS = ("html", "markdown", "csv")
STORE_FILE = "edgeopt.db"
HISTORY_LIMIT = 200


def _find_store(result_paths):
    """The results store beside the results: results/edgeopt.db is at most three levels above a result file
    (results/<x>.json, results/history/<x>.json, results/fleet/<bundle>/<run>/<device>.json). Its URL, or None."""
    from .store import file_url

    for path in result_paths:
        for parent in list(pathlib.Path(path).resolve().parents)[:4]:
            if (parent / STORE_FILE).is_file():
                return file_url(parent / STORE_FILE)
    return None


def _report_history(docs: list, store_url: str | None, result_paths) -> tuple:
    """({(bundle, device): store rows} for the results' bundle x device pairs, None, None), or (None, why there is
    none, the store's error where it failed). Without --store or $EDGEOPT_STORE, each result's history is read
    from the store beside it: results from two results folders each have their own (only the first one's was
    read)."""
    url = store_url or os.environ.get("EDGEOPT_STORE")
    if url:
        return _history_from(url, docs)
    by_store = {}
    for doc, path in zip(docs, result_paths):
        by_store.setdefault(_find_store([path]), []).append(doc)
    found = {u: d for u, d in by_store.items() if u is not None}
    if not found:
        return None, (f"no history: no results store ({STORE_FILE}) beside the results; "
                      "pass --store URL to read one elsewhere"), None
    stored, absent, error = {}, None, None
    for url, its_docs in found.items():
        rows, why, failed = _history_from(url, its_docs)
        stored.update(rows or {})
        absent, error = absent or why, error or failed
    return (stored, None, None) if stored or not absent else (None, absent, error)


def _history_from(url, docs: list) -> tuple:
    """_report_history's answer from one store (its URL, text or object)."""
    from .store import Store, parse_url, sqlite_file

    file = sqlite_file(url)
    if file is not None and not file.is_file():   # a mistyped --store: warned
        missing = f"results store {file} {'is a directory, not an SQLite file' if file.is_dir() else 'does not exist'}"
        return None, f"no history: {missing}", missing
    from .regression import hostname

    parse_url(url)   # a malformed URL is the user's to fix (exit 2); a store down or empty only loses the history
    try:
        store = Store(url, create=False)
    except BadInput as e:   # the history is a supplement to the results, which the report still shows
        return None, f"no history: {e}", str(e)
    hosts = {}   # (bundle, device, profile) -> the machines these results ran on: a team's `local` is many machines
    for doc in docs:   # and one bundle name packaged for two profiles is two series, not one 165 % "noise"
        key = ((doc.get("bundle") or {}).get("name"), (doc.get("device") or {}).get("name"),
               results.bundle_profile(doc))
        hosts.setdefault(key, set()).add(hostname(doc))
    try:
        return {(b, d, p): [r for r in store.history(d, b, HISTORY_LIMIT) if (None in seen or r.get("host") in seen
                            or r.get("host") is None) and r.get("profile") in (p, None)]
                for (b, d, p), seen in hosts.items() if b and d}, None, None
    except BadInput as e:
        return None, f"no history: {e}", str(e)
    finally:
        store.close()


def _report_study(name: str, store_url: str | None, result_paths) -> tuple:
    """(the optimize study `name`, its store's URL) from --store, $EDGEOPT_STORE, the store beside the results, or
    results/."""
    from .search import outcome, require_optuna
    from .store import file_url, sqlite_file

    require_optuna()
    url = (store_url or os.environ.get("EDGEOPT_STORE") or _find_store(result_paths)
           or file_url(pathlib.Path("results") / STORE_FILE))
    file = sqlite_file(url)
    if file is not None and not file.is_file():
        raise BadInput(f"--study {name}: no results store at {file}; pass --store URL")
    return outcome.load(url, name), url   # the store opened first: a bad URL refused in one line, password masked


def _study_results(study: dict, url) -> tuple:
    """(paths, {path: document}) of the study's baseline and best trial's results: the files on this host, and
    from the study's store the documents of those that are not (a team's workers each keep their own trials'
    files; the store holds every result document). A note says which were read from the store."""
    from .store import Store

    shown = study["trials"][:1] + ([study["best"]] if study["best"] else [])   # the baseline, then the best
    wanted = list(dict.fromkeys(str(p) for t in shown for p in t["results"] if p))
    elsewhere = [p for p in wanted if not pathlib.Path(p).is_file()]
    stored = {}
    if elsewhere:
        with Store(url, create=False) as store:
            stored = {p: results.validate(doc, f"{store.name}: the result of {p}")
                      for p, doc in store.documents_at(elsewhere).items()}
    if stored:
        study["notes"].append(f"result files not on this host, read from the results store: {', '.join(stored)}")
    return [pathlib.Path(p) for p in wanted if p in stored or p not in elsewhere], stored


def report(result_paths, output=None, fmt: str = "html", budgets: dict | None = None, store_url: str | None = None,
           history: bool = True, title: str = "edgeopt report", study: str | None = None, baseline=None,
           effect: float | None = None) -> dict:
    """Result files or fleet run directories -> one report: a self-contained HTML page, Markdown or CSV.
    Written to `output` when given; the text is returned under `text` either way, with the rows it was made from.
    study: an optimize study in the store, shown with its trials and Pareto front; without result files, the
    report is made of the study's baseline and best trial's results (where they are on this host). baseline, effect:
    the regression gate, as check's (a pull-request comment carried no verdict of it)."""
    from .report import html as html_report, markdown as md_report, rows as report_rows

    if fmt not in REPORT_FORMATS:
        raise BadInput(f"report format {fmt!r} is not one of {', '.join(REPORT_FORMATS)}")
    paths = results.expand(result_paths) if result_paths else []
    if output is not None:   # before any work: a report must not replace what it is made of
        if pathlib.Path(output).is_dir():
            raise BadInput(f"report output {output} is a directory")
        bundles.refuse_to_overwrite(output, "the report", paths)
    found, url = _report_study(study, store_url, paths) if study else (None, None)
    stored = {}
    if found and not paths:
        paths, stored = _study_results(found, url)
    if not paths:
        raise BadInput("report needs at least one result file" + (f" (study {study}'s result files are neither on "
                                                                   "this host nor in its store)" if study else ""))
    read = {}
    verdicts = check(result_paths or paths, budgets, limits_by_path=_study_limits(found), require_budgets=False,
                     stored=stored, baseline=baseline or None, effect=effect, documents=read,
                     store_url=store_url or url)   # run directories as given: check counts the devices their files lack
    if found and not result_paths:   # the study's own results: its verdict, not the baseline's (which sets a ratio)
        verdicts["exit_code"], verdicts["headline"] = _study_verdict(found, verdicts)
        slower = [r for r in verdicts.get("regressions") or [] if r["verdict"] == "slower"]
        if slower and verdicts["exit_code"] == 0:   # --baseline: a slower row beside a pass read as one (a review)
            verdicts["exit_code"] = 1
            verdicts["headline"] += "; but the regression gate found a result significantly slower"
        if any(e["status"] == results.UNREADABLE for e in verdicts["results"]):   # its file cut short: bad input
            verdicts["exit_code"], verdicts["headline"] = 2, f"{verdicts['headline']}; but a result file cannot be read"
    docs = [read.get(str(p)) or stored.get(str(p)) or results.load_kept(p) for p in paths]
    docs += [missing_document(e) for e in verdicts["results"][len(paths):]]
    history_url = store_url or (url if stored else None)   # results from the store: their history is there too
    stored, absent, store_error = (_report_history(docs, history_url, paths) if history
                                   else (None, "history left out (--no-history)", None))
    rows = report_rows.build(docs, verdicts, stored, absent, found)
    text = {"html": lambda: html_report.render(rows, title), "markdown": lambda: md_report.markdown(rows, title),
            "csv": lambda: md_report.csv_text(rows)}[fmt]()
    out = {"schema": REPORT_SCHEMA, "format": fmt, "results": len(docs), "exit_code": verdicts["exit_code"],
           "bytes": len(text.encode("utf-8")), "rows": rows, "text": text, "store_error": store_error}
    if output is not None:
        out["path"] = str(output)
        _write_text(output, text)
    return out


def _study_limits(study: dict | None) -> dict:
    """{result path: limits} for a study's results. The best trial's: what the chosen bundle carries (a paired
    relative budget set from every baseline run at the study's end), where its trial's bundle carried the first
    run's. The baseline's: its relative budgets, which its own bundle cannot carry (it sets them), so a report
    read "every budget holds" beside a baseline the study judged to miss them."""
    if not study:
        return {}
    carried = {key: c["limit"] for key, c in (study.get("carried_limits") or {}).items()}
    first = study.get("baseline_figures") or {}
    relative = {key: carried[key] if key in carried else ratio * first[key]
                for key, ratio in (study.get("relative_budgets") or {}).items() if key in carried or key in first}
    baseline = next((t for t in study.get("trials") or [] if t.get("baseline")), None)
    out = {str(p): relative for p in (baseline or {}).get("results") or [] if p and relative}
    if carried and study.get("best"):
        out.update({str(p): carried for p in study["best"]["results"] if p})
    return out


def _study_verdict(study: dict, verdicts: dict) -> tuple[int, str]:
    """(exit code, headline) of `report --study` alone: 0 where the chosen configuration's results meet every
    budget, 1 where none was chosen or its results miss one here (a --budget), 3 where they hold no result."""
    from .search.judging import median_of_runs

    if not study.get("best"):
        return 1, "no trial of the study met every budget"
    trial = study["best"]["trial"]
    chosen = {str(p) for p in study["best"]["results"] if p}
    entries = [e for e in verdicts["results"] if e["result"] in chosen]
    if not entries:
        return 1, f"the chosen configuration's (trial {trial}) results are neither on this host nor in the store"
    if any(e["status"] != "ok" for e in entries):
        return 3, f"the chosen configuration (trial {trial}) produced no result"
    here = len(entries)   # a study over several devices: one file each, some perhaps on another worker's host
    partly = (f" ({here} of its {len(chosen)} results are on this host or in the store)" if here < len(chosen)
              else "")
    # a best measured again: its objective by the median of its runs' figures, as the study judged it (the files
    # here are its first run's, which a near miss chosen by its runs missed by definition)
    median = median_of_runs(study["best"])
    by_runs = [b for e in entries for b in e["budgets"] if b["budget"] == study["objective"]
               and b["status"] == "fail" and median is not None and median <= b["limit"]]
    if any(b["status"] != "pass" and b not in by_runs for e in entries for b in e["budgets"]):
        return 1, f"the chosen configuration (trial {trial}) misses a budget here{partly}"
    runs = (f"; its {study['objective']} by the median of its {len(study['best']['rechecked'])} runs "
            f"({median:.4g}), since its result file here, its first run, missed it" if by_runs else "")
    return 0, f"the chosen configuration (trial {trial}) meets every budget{partly}{runs}"


def _write_text(path, text: str) -> None:
    """Written whole or not at all: a temp file beside it, then renamed."""
    with replacing(path, "the report", "w", encoding="utf-8") as f:
        f.write(text)
