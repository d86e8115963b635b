"""`bench`: verify the bundle, measure it in a fresh process, assemble one result document."""
import dataclasses
import datetime
import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from . import BUNDLE_GONE, RESULT_SCHEMA, AgentError, BundleError, __version__
from .bundle import NO_SPACE_EXIT, NoSpace, unpack
from .lock import MACHINE_LOCK, DeviceLock, MachineLock, remove_stale_runs
from .manifest import REFERENCE_STAGES
from .measure import cooldown as cool, thermal
from .measure.passes import Passes
from .power import CHOICES as POWER_SENSORS
from .power.base import SensorConfig
from .probe import physical_cores, probe
from .progress import Heartbeat, report

NOISY_SPREAD = 0.10   # robust_cv above which a run is flagged noisy
SLOW_SHARE = 0.05     # share of samples above twice the median above which a run is flagged for a slow mode


def _agent_root():
    """The directory (or .pyz file) that holds the device_agent package, for the child's sys.path."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def resolve_threads(manifest, override):
    if override:
        return override, "command line"
    wanted = int(manifest["runtime"].get("threads") or 0)
    if wanted > 0:   # package --threads (optimize's chosen count) is recorded in the recipe; else the profile's
        chosen = ((manifest.get("recipe") or {}).get("package") or {}).get("threads")
        return wanted, "bundle" if chosen else "profile"
    return physical_cores(), "physical cores of this device"


def require_runtime(manifest):
    """Refuse early, with the install command, when this Python lacks the bundle's runtime."""
    from .runtimes import adapter_class
    cls = adapter_class(manifest["runtime"]["name"])
    missing = ([cls.module] if cls.installed_version() is None else []) + cls.missing_helpers()
    if missing:
        note = " (%s)" % cls.install_note if cls.install_note else ""
        raise AgentError("this device's Python (%s) has no %s: install it with `%s -m %s`%s"
                         % (sys.executable, " or ".join(missing), sys.executable, cls.install_hint, note))


def check_overrides(manifest, runtime_options):
    """--runtime-option is held to the rules of the bundle's runtime.options (exit 2, bad input); a choice given
    in another case is taken as the runtime spells it (performance_hint=throughput: package and `profiles show`
    spell it lower-case, OpenVINO upper-case), in place."""
    from .manifest import canonical_choices, option_problem

    if runtime_options:
        runtime_options.update(canonical_choices(manifest["runtime"]["name"], runtime_options))
    problem = option_problem(manifest["runtime"]["name"], runtime_options or {})
    if problem:
        raise BundleError("--runtime-option %s=%s: %s" % (json.dumps(problem[0]), json.dumps(runtime_options[problem[0]]),
                                                           problem[1]))


def sensor_config(requested, manifest):
    """The sensors to use: the command line's choice, else the meter when a command is given, else the
    bundle's profile (`runtime.power_sensor`), else auto. An unknown name is refused before measuring."""
    name = requested.power_sensor
    if name is None:
        name = "external" if requested.power_command else (manifest["runtime"].get("power_sensor") or "auto")
    if name not in POWER_SENSORS:
        raise AgentError("the bundle asks for power sensor %r, which this agent does not know (known: %s)"
                         % (name, ", ".join(POWER_SENSORS)))
    return dataclasses.replace(requested, power_sensor=name)


@dataclasses.dataclass(frozen=True)
class Trust:
    """What the bundle must match beyond its own digests: the manifest sha256 the host read, and an
    allowed-signers file (device-side path) when only signed bundles may run here."""
    manifest_sha256: str = None
    allowed_signers: str = None


@dataclasses.dataclass(frozen=True)
class Sensing:
    """Sensor options from the command line: power_sensor None means the bundle's profile decides."""
    power: SensorConfig = SensorConfig(power_sensor=None)
    cooldown: cool.CooldownSettings = cool.CooldownSettings()


# `python -m device_agent` puts the working directory first on sys.path: a `device_agent` folder there (an old
# checkout beside `--device local`, the device user's home over SSH) was what measured, not the agent that
# verified the bundle. The child drops that entry and runs the package found on PYTHONPATH, the agent's own.
# Under PYTHONSAFEPATH (or -P) there is no such entry, and the first one is the agent's own: only '' is dropped.
_CHILD = ("import runpy, sys; sys.path[:1] = [p for p in sys.path[:1] if p]; "
          "runpy.run_module('device_agent', run_name='__main__', alter_sys=True)")


def _run_child(run_dir, root, threads, settings, with_accuracy, timeout, sensors, runtime_options, passes):
    # The child's document goes in this run's directory (inside --workdir), never the system temp
    # dir: a run killed with the device is then swept with its directory by the next run's
    # remove_stale_runs, and `device clean` reclaims it.
    out_path = os.path.join(run_dir, "measure.json")
    open(out_path, "w").close()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([_agent_root()] + [p for p in [env.get("PYTHONPATH")] if p])
    cmd = [sys.executable, "-c", _CHILD, "_measure", root, out_path, str(threads),
           json.dumps(settings.to_dict()), "1" if with_accuracy else "0", json.dumps(sensors.to_dict()),
           json.dumps(runtime_options), json.dumps(passes.to_dict())]
    try:
        proc = subprocess.run(cmd, env=env, stdout=sys.stderr, timeout=timeout)
        doc = _read_child_output(out_path)
        if "error" in doc:  # the child's own one-line account of what failed
            raise (BundleError if doc.get("bundle") else AgentError)(doc["error"])
        if proc.returncode != 0:
            return _kept(doc, _describe_exit(proc.returncode, run_dir))
        doc.pop("pending", None)
        return doc
    except subprocess.TimeoutExpired:
        return _kept(_read_child_output(out_path), "measuring process exceeded the %.0f s timeout and was killed"
                     % timeout)
    except OSError as e:  # the interpreter could not be started at all (gone, not executable, wrong arch)
        raise AgentError("cannot start the measuring process %s: %s" % (sys.executable, e))
    finally:
        if os.path.exists(out_path):
            os.unlink(out_path)


def _kept(partial, failure):
    """The figures the measuring process saved before it died in a later pass (a runtime's segfault in the eval
    pass, the OOM killer in the throughput pass, the timeout): each pass it did not finish absent with the
    failure as its reason, and a warning. AgentError(failure) where it died before the timed loop ended."""
    pending = partial.pop("pending", None)
    if pending is None:
        raise AgentError(failure)
    if not pending:   # every figure saved, then a crash closing the runtime or at the interpreter's exit
        partial.setdefault("warnings", []).append("%s after it had saved every figure" % failure)
        return partial
    for i, section in enumerate(pending):
        when = "during this pass" if i == 0 else "in the %s pass, before this one" % pending[0].replace("_", " ")
        partial[section] = dict(partial.get(section) or {}, available=False,
                                reason="not measured: %s %s" % (failure, when))
    partial.setdefault("warnings", []).append(
        "%s after the timed loop, in the %s pass: %s not measured; the figures measured before it stand"
        % (failure, pending[0].replace("_", " "), ", ".join(pending)))
    return partial


def _read_child_output(path):
    try:
        with open(path) as f:
            return json.load(f)
    except ValueError:  # empty: the child died before writing anything
        return {}


def _parity_warnings(manifest):
    """A bundle packaged although it failed its parity check (--allow-mismatch) says so wherever it is measured:
    its figures are of an artifact that disagrees with its source."""
    parity = manifest.get("parity") if isinstance(manifest.get("parity"), dict) else {}
    if parity.get("passed") is False:
        return ["the bundle failed its parity check when packaged (allowed by %s): its outputs disagree with the "
                "source model's" % parity.get("allowed_by", "--allow-mismatch")]
    return []


def _asked_sensor_warnings(requested, power):
    """A sensor or meter the user named that read nothing is a warning, not only an absent row: the run exited 0
    and said nothing where someone had asked for power on purpose (a profile's sensor stays a quiet absence)."""
    asked = ("--power-command" if requested.power_command else "--power-sensor %s" % requested.power_sensor
             if requested.power_sensor not in (None, "auto", "none") else None)   # none: --no-power's
    # where no reader opened: one that opened and lost its readings has a warning of its own (power_section)
    if asked and not (power or {}).get("available") and "reader" not in (power or {}):
        return ["power: %s was asked for and measured nothing: %s" % (asked, (power or {}).get("reason", "no reading"))]
    return []


def _unused_option_warnings(runtime_options, throughput):
    """--runtime-option throughput_streams=N shapes the throughput pass only: on a run without one it changed
    nothing, which the user who typed it would not otherwise learn."""
    if "throughput_streams" in runtime_options and not throughput.get("asked_by"):
        return ["--runtime-option throughput_streams=%s changed nothing: only the throughput pass reads it, and "
                "none ran (bench --throughput, or a throughput_fps budget, asks for one)"
                % runtime_options["throughput_streams"]]
    return []


def _thread_warnings(n_threads, source, device):
    """More threads than the device has CPUs (a profile written for a 4-core Pi, run on a 2-core host) makes them
    wait for each other: the figures are of that, not of the model."""
    cpus = device.get("logical_cpus")
    if isinstance(cpus, int) and 0 < cpus < n_threads:
        return ["%d threads (%s) on a device with %d logical CPUs: they wait for each other, and latency says so; "
                "--threads %d fits this device" % (n_threads, source, cpus, cpus)]
    return []


def _threads_ran(runtime, asked):
    """The threads the runtime reports it ran (OpenVINO's INFERENCE_NUM_THREADS, read back), else those asked:
    OpenVINO caps them at the CPUs it finds, and a 2-CPU host ran 2 of --threads 4 (a review)."""
    ran = runtime.get("inference_num_threads") if isinstance(runtime, dict) else None
    return ran if isinstance(ran, int) and not isinstance(ran, bool) and ran > 0 else asked


def _threads_ran_warnings(asked, ran):
    if ran == asked:
        return []
    return ["%d threads asked, %d ran (the runtime's own count, read back): the figures are of %d threads"
            % (asked, ran, ran)]


def _describe_exit(code, run_dir):
    if code == NO_SPACE_EXIT:
        return ("no space left on this device while measuring: the measuring process could not save its figures "
                "in %s (`edgeopt device clean` frees edgeopt's cache there)" % run_dir)
    if code < 0:
        name = signal.Signals(-code).name
        hint = " (the kernel's out-of-memory killer?)" if -code == signal.SIGKILL else ""
        return "measuring process was killed by %s%s" % (name, hint)
    return "measuring process failed with exit code %d (its error is above)" % code


def _warnings(latency, memory):
    out = []
    # The flag reads the robust spread: cv alone fired on every run of a shared VM because a handful
    # of preempted samples among thousands inflate the standard deviation (docs/architecture.md).
    spread = latency.get("robust_cv")
    if spread is not None and spread > NOISY_SPREAD:
        out.append("noisy run: robust spread (1.4826 x MAD / median) %.3f exceeds %.2f (cv %.2f); other load on "
                   "the device?" % (spread, NOISY_SPREAD, latency["cv"]))
    slow = latency.get("slow_share")
    if slow is not None and slow > SLOW_SHARE:
        out.append("slow mode: %.0f%% of runs took more than twice the median (p50 %.4g ms, max %.4g ms), so the "
                   "high percentiles read it; other load on the device, or more threads than cores?"
                   % (100 * slow, latency.get("p50_ms", float("nan")), latency["max_ms"]))
    if latency["stopped_by"] == "max_duration" and latency["n"] < latency.get("min_iterations", 0):
        out.append("stopped by max duration before the minimum iteration count")
    if memory.get("swap_mb"):
        out.append("swap in use during the run (%.1f MiB): latency may include paging" % memory["swap_mb"])
    return out


def signature_status(unpacked, trust):
    if unpacked.signer is not None:
        return {"verified": True, "principal": unpacked.signer, "allowed_signers": trust.allowed_signers}
    if getattr(unpacked, "signed", False):
        return {"verified": False, "signed": True,
                "reason": "signed, but not checked: no allowed-signers file given to the agent"}
    return {"verified": False, "signed": False, "reason": "not signed (and no allowed-signers file given to the agent)"}


def bundle_identity(unpacked, trust=Trust()):
    manifest = unpacked.manifest
    files = manifest["files"]
    size = sum(e["bytes"] for e in files if e.get("role") == "model")
    return {"name": manifest["name"], "manifest_sha256": unpacked.manifest_sha256,
            "model_sha256": model_digest(files),
            "signature": signature_status(unpacked, trust),
            "profile": manifest["profile"], "compression": manifest.get("compression", {}),
            "source": manifest.get("source", {}), "artifact_bytes": size, "artifact_mb": size / 1048576.0,
            "budgets": manifest.get("budgets", {}),
            # the transforms the model went through: its shipped reference outputs are of the model after them
            "transforms": [t.get("stage") for t in manifest.get("transforms") or [] if isinstance(t, dict)
                           and t.get("stage") not in REFERENCE_STAGES],
            # the shapes one call is fed: a [4, ...] input makes every latency a call's of four samples
            "inputs": [{"name": t["name"], "shape": list(t["shape"])} for t in manifest["inputs"]]}


def model_digest(files: list) -> str:
    """sha256 of what the runtime loads (the model files' paths and digests): one model whatever else its bundle
    holds. A rebuild of one model has a new manifest (its `created`), so the regression gate's runs of "the same
    model" (their between-run spread) are told by this, not by manifest_sha256."""
    model = sorted((e["path"], e["sha256"]) for e in files if e.get("role") == "model")
    return hashlib.sha256(json.dumps(model).encode()).hexdigest()


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


def _base_document(device):
    return {"schema": RESULT_SCHEMA, "created": _now(),
            "agent": {"version": __version__}, "device": device, "warnings": []}


def run(bundle_path, settings, threads=None, with_accuracy=True, timeout=600.0, workdir=None, lock=None,
        lock_wait=600.0, sensing=Sensing(), runtime_options=None, trust=Trust(), passes=Passes(),
        machine_lock=MACHINE_LOCK):
    """Returns (result document, exit code). A failure still yields a document, status 'failed'.
    runtime_options override the bundle's runtime.options (e.g. {"xnnpack": False}); passes asks for
    the throughput and layer-profile passes (device_agent.measure.passes)."""
    with Heartbeat():  # probing, verifying, waiting for the lock, cooling down and measuring all show signs of life
        job = (bundle_path, settings, threads, with_accuracy, timeout, workdir, sensing, cool.history_path(lock),
               dict(runtime_options or {}), trust, passes)
        doc = None
        try:
            if lock is None:
                doc = _base_document(probe())
                return _run_unlocked(doc, *job)
            # the lock before anything else: `device clean` takes it too, and one that ran while this probed the
            # device (seconds, importing runtimes) removed the bundle this was about to read; then the machine's,
            # which other workdirs and logins take too, within what is left of the wait: the host gives up on the
            # agent just after lock_wait
            began = time.monotonic()
            with DeviceLock(lock, lock_wait):
                with MachineLock(machine_lock, max(lock_wait - (time.monotonic() - began), 0.0), lock_wait) \
                        as machine:
                    remove_stale_runs(workdir)
                    doc = _base_document(probe())
                    doc["warnings"].extend(machine.warnings)   # a failure's document keeps them
                    result, code = _run_unlocked(doc, *job)
                    # a measured run writes its warnings anew: the lock's were lost from every result (a review)
                    result["warnings"] = machine.warnings + [w for w in result.get("warnings") or []
                                                             if w not in machine.warnings]
                    return result, code
        except AgentError as e:
            return _failed(doc if doc is not None else _base_document(probe()), e)
        except OSError as e:
            # where the run's files, its lock or its temperature history go: a full disk (or no inodes left), a
            # read-only or missing folder. The device's failure, said as one (exit 3), where it was a traceback,
            # exit 1 (a budget missed, to a CI system) and no result; unpacking says its own
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                error = NoSpace("no space left on this device for the run's files (%s): `edgeopt device clean` "
                                "frees edgeopt's cache there" % e)
            else:
                error = AgentError("cannot write the run's files on this device: %s" % e)
            return _failed(doc if doc is not None else _base_document(probe()), error)


def _failed(doc, error):
    doc.update(status="failed", error={"message": str(error), "exit_code": error.exit_code,
                                       "kind": "bundle" if isinstance(error, BundleError) else "device"})
    return doc, error.exit_code


def _cool_down(sensors, settings, history):
    """Wait for the idle temperature when asked; record this run's start temperatures either way."""
    result, warnings = None, []
    if settings.enabled:
        idle = cool.reference(history, sensors.sysfs_root)
        result, warnings = cool.wait(sensors, settings, idle)
    cool.record_start(history, sensors.sysfs_root, thermal.zones(sensors))
    return result, warnings


def _run_unlocked(doc, bundle_path, settings, threads, with_accuracy, timeout, workdir, sensing, history,
                  runtime_options, trust, passes):
    if workdir and not os.path.isdir(workdir):
        os.makedirs(workdir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="edgeopt-run-", dir=workdir)
    root = os.path.join(tmp, "bundle")  # the bundle apart from the measuring process's output
    try:
        report("verify", os.path.basename(bundle_path))
        if not os.path.exists(bundle_path):   # the host stored it here: gone since is the device's doing (exit 3)
            raise AgentError("bundle %s %s (a `device clean` meanwhile?)" % (bundle_path, BUNDLE_GONE))
        unpacked = unpack(bundle_path, root, trust.manifest_sha256, trust.allowed_signers)
        manifest = unpacked.manifest
        doc["bundle"] = bundle_identity(unpacked, trust)
        check_overrides(manifest, runtime_options)
        require_runtime(manifest)
        n_threads, source = resolve_threads(manifest, threads)
        sensors = sensor_config(sensing.power, manifest)
        doc["settings"] = dict(settings.to_dict(), threads=n_threads, threads_source=source,
                               power_sensor=sensors.power_sensor, idle_seconds=sensors.idle_seconds,
                               sysfs_root=sensors.sysfs_root, passes=passes.to_dict())
        if runtime_options:
            doc["settings"]["runtime_options"] = runtime_options
        cooled, cool_warnings = _cool_down(sensors, sensing.cooldown, history)
        # when it was measured, not when it began to wait for the lock or the cool-down: five benches started
        # together were stamped alike, and history's "newest first" put the run saved last below others
        doc["created"] = _now()
        measured = _run_child(tmp, root, n_threads, settings, with_accuracy, timeout, sensors, runtime_options, passes)
        latency = dict(measured["latency"], min_iterations=settings.min_iterations)
        doc.update(status="ok", runtime=measured["runtime"], latency=latency, memory=measured["memory"],
                   accuracy=measured["accuracy"], power=measured["power"], thermal=measured["thermal"])
        doc["environment"] = measured["environment"]
        doc.update(throughput=measured["throughput"], layer_profile=measured["layer_profile"])
        if cooled is not None:
            doc["thermal"]["cooldown"] = cooled
        ran = _threads_ran(measured["runtime"], n_threads)
        doc["warnings"] = (_warnings(latency, measured["memory"]) + _threads_ran_warnings(n_threads, ran)
                           + _thread_warnings(ran, source, doc["device"])
                           + _parity_warnings(manifest) + cool_warnings + measured["warnings"]
                           + _unused_option_warnings(runtime_options or {}, measured["throughput"])
                           + _asked_sensor_warnings(sensing.power, measured["power"]))
        return doc, 0
    except AgentError as e:
        return _failed(doc, e)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
