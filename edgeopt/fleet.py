"""Benchmark one bundle on many devices at once: a bounded pool, every outcome collected,
each result stored the moment it arrives, and `--resume` to finish an interrupted run."""
from __future__ import annotations

import concurrent.futures
import contextlib
import datetime
import hashlib
import pathlib
import re
import threading
import time

from device_agent import RESULT_SCHEMA

from . import bundle as bundles, results
from .atomic import check_writable
from .budgets import shown
from .errors import BadInput, CannotWrite, DeviceFailure, EdgeoptError
from .progress import SILENT, DeviceProgress
from .signals import signals_held
from .store import Store

try:
    import fcntl
except ImportError:  # Windows: run directories are not locked against a concurrent --resume
    fcntl = None

RUN_FILE = "run.json"
LOCK_FILE = ".lock"


def failed_document(spec, manifest: dict, message: str, exit_code: int = 3) -> dict:
    """The result of a device that produced none: who, what bundle, why."""
    return {"schema": RESULT_SCHEMA, "status": "failed",
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "device": {"name": spec.name, "host": spec.host}, "bundle": shipped_bundle(manifest),
            "error": {"message": message, "exit_code": exit_code, "kind": "device"}}


def shipped_bundle(manifest: dict) -> dict:
    """The host's identity of the bundle it shipped; its profile too, as the agent's result has it: without it a
    failure of this bundle was taken for one of another profile's bundle of that name and kept its good result as
    the latest, which `check` then passed."""
    return {"name": manifest["name"], "manifest_sha256": manifest["_manifest_sha256"],
            "profile": manifest["profile"]}


def name_the_bundle(doc: dict, manifest: dict) -> None:
    """A result whose agent refused the bundle (a bad signature, a changed byte) has no bundle identity of its
    own: it takes the shipped one, so that it is saved as BUNDLE@DEVICE and a later good run replaces it."""
    if not isinstance(doc.get("bundle"), dict) or not doc["bundle"].get("name"):
        doc["bundle"] = shipped_bundle(manifest)


def _run_files(base: pathlib.Path, manifest: dict):
    """The run files of this very bundle's earlier runs (same manifest sha256) under `base`, newest first."""
    candidates = sorted((p for p in base.glob("*/" + RUN_FILE)), reverse=True) if base.is_dir() else []
    for run_file in candidates:
        try:
            info = results.read_json(run_file)
        except (OSError, ValueError):
            continue
        if isinstance(info, dict) and info.get("bundle_sha256") == manifest["_manifest_sha256"]:
            yield run_file


def _resumable(base: pathlib.Path, manifest: dict) -> list:
    """The runs a --resume would continue, in the order it tries them: those stopped before every device
    reported (a device still "no result yet": Ctrl-C, SIGTERM, kill -9), newest first, then the newest run. A run
    whose devices all reported, failures included, is continued only as the newest (a review: an old run with a
    failed device was preferred, and refused for its other device set)."""
    runs = [run_file.parent for run_file in _run_files(base, manifest)]
    return [r for r in runs if _interrupted(r)] + runs[:1]


def _interrupted(run_dir: pathlib.Path) -> bool:
    """Whether a run holds a device's placeholder: the run stopped before that device reported."""
    for path in run_dir.glob("*.json"):
        try:
            doc = results.read_json(path)
        except (OSError, ValueError):
            continue
        error = doc.get("error") if isinstance(doc, dict) else None
        said = error.get("message") if isinstance(error, dict) else None
        if isinstance(said, str) and said.startswith(NO_RESULT_YET):
            return True
    return False


def resumed_budgets(results_dir, manifest: dict) -> dict:
    """The budgets the run a --resume would continue began with ({} where there is none): a throughput_fps
    budget there asks the resumed devices for the FPS pass too, or their settings would differ from the run's."""
    runs = _resumable(pathlib.Path(results_dir) / "fleet" / results.file_stem(manifest["name"]), manifest)
    return results.run_budgets(runs[0]) if runs else {}


MAX_THREADS = 256   # a fleet's threads at most (each device waits in one for its machine and its place)
NO_RESULT_YET = "no result yet in fleet run"   # a device's placeholder until its own result replaces it
SECRET_FLAGS = ("--power-command",)   # a shell command that may hold a secret (a meter's Authorization header)
REDACTED = re.compile(r"`[^`]*`( \.\.\.)? \(sha256 [0-9a-f]{16}\)\Z")   # recorded_args' own form


def recorded_args(agent_args, salt: str) -> list:
    """The agent flags as run.json keeps them and a --resume's refusal shows them: a --power-command as its program
    and a digest salted with the run's id, enough to tell a --resume given another command, where the whole command
    (a bearer token and all) was kept in run.json and printed twice by that refusal (a security review)."""
    from device_agent.power.base import shown_command

    recorded = list(agent_args)
    for i in range(len(recorded) - 1):
        if recorded[i] in SECRET_FLAGS and not REDACTED.match(recorded[i + 1]):   # a run file's: shown as kept
            digest = hashlib.sha256(f"{salt}\0{recorded[i + 1]}".encode()).hexdigest()[:16]
            recorded[i + 1] = f"{shown_command(recorded[i + 1])} (sha256 {digest})"
    return recorded


class FleetRun:
    """One fleet benchmark: where its results go, which devices are still to do.

    A run directory belongs to one process at a time (an flock on its .lock file), so two fleets
    started together get separate directories and a --resume never joins a run still in progress.
    Results are keyed by the exact device name inside each document, never by file name."""

    def __init__(self, bundle_path, manifest, results_dir, resume: bool, agent_args: list = (),
                 budgets: dict | None = None, device_names: list = ()):
        self.bundle_path, self.manifest = pathlib.Path(bundle_path), manifest
        self.results_dir = pathlib.Path(results_dir)
        base = self.results_dir / "fleet" / results.file_stem(manifest["name"])
        self._held = None
        previous = self._latest(base) if resume else None
        # an older edgeopt's run file records no settings: its kept results' are unknown, so none are claimed
        self.settings_unknown = False
        if previous is not None:
            self.settings_unknown = not self._check_same_settings(previous, list(agent_args))
            self._check_same_devices(previous, list(device_names))
            self._check_same_budgets(previous, budgets)
        self.resumed = previous is not None
        self.run_dir = previous if previous is not None else self._new_run_dir(base)
        self.run_id = self.run_dir.name
        if budgets is None and previous is not None:   # a resumed run keeps the budgets it began with
            budgets = results.run_budgets(self.run_dir)
        # the budgets its verdicts are by (--budget): `check RUN_DIR` judges by them too, as fleet bench did
        settings = {} if self.settings_unknown else {"agent_args": recorded_args(agent_args, self.run_id)}
        results.write_json_atomic(self.run_dir / RUN_FILE, {
            "run_id": self.run_id, "bundle": manifest["name"], "bundle_sha256": manifest["_manifest_sha256"],
            **settings, "budgets": dict(budgets or {}), "devices": list(device_names)})
        self.documents = self._read_documents()
        self._paths = {}
        self._lock = threading.Lock()
        self._connected = set()   # the transports of the devices being measured now (let_go closes them)
        self.written = set()      # the devices whose result this process wrote to the run directory
        self._let_go = False

    def _hold(self, run_dir: pathlib.Path) -> bool:
        """Take the run directory's lock; False when another process holds it, or the run is gone (a forget
        removed it after it was listed)."""
        try:
            f = open(run_dir / LOCK_FILE, "a")
        except FileNotFoundError:
            return False
        if fcntl is not None:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.close()
                return False
        self._held = f
        return True

    def close(self):
        if self._held is not None:
            self._held.close()   # closing the file releases the flock
            self._held = None

    def _new_run_dir(self, base: pathlib.Path) -> pathlib.Path:
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        base.mkdir(parents=True, exist_ok=True)
        for n in range(1, 1000):
            run_dir = base / (stamp if n == 1 else f"{stamp}-{n}")
            try:
                run_dir.mkdir()    # exclusive: two fleets started in the same microsecond get two directories
            except FileExistsError:
                continue
            self._hold(run_dir)
            return run_dir
        raise OSError(f"no free run directory under {base}")

    def _latest(self, base: pathlib.Path):
        """The earlier run of this very bundle (same manifest sha256) to continue, now held by us: the newest with
        a device left to measure that no other process holds, else the newest. A run killed by SIGTERM, then
        another job's run of the bundle, made --resume continue the other one ("kept", measuring nothing) and the
        killed one could not be resumed at all (a walkthrough)."""
        busy = []
        for run_dir in _resumable(base, self.manifest):
            if self._hold(run_dir):
                return run_dir
            if run_dir.is_dir():
                busy.append(run_dir)
        if busy:
            raise BadInput(f"fleet run {busy[0]} of this bundle is still in progress in another edgeopt "
                           "process; wait for it to end, or start a new run without --resume")
        return None

    def _check_same_settings(self, run_dir: pathlib.Path, agent_args: list) -> bool:
        """One run's devices are measured alike: a --resume with other loop or sensing settings than the run
        began with would put figures of two methods side by side in one table. A run file of an older edgeopt
        records none, and is resumed as it is (False: nothing to check); one that kept a --power-command whole is
        compared whole."""
        shown = recorded_args(agent_args, run_dir.name)
        recorded = self._recorded(run_dir, "agent_args")
        if recorded is not None and recorded not in (shown, agent_args):
            self.close()
            began = " ".join(recorded_args(recorded, run_dir.name)) or "the defaults"
            raise BadInput(f"fleet run {run_dir} was measured with {began}; --resume measures the rest alike, so "
                           f"give the same settings (now: {' '.join(shown) or 'the defaults'}), or start a new "
                           "run without --resume")
        return recorded is not None

    def _check_same_budgets(self, run_dir: pathlib.Path, budgets: dict | None) -> None:
        """A --resume with --budget replaced the budgets the run recorded without a word: a run whose every device
        had failed latency_p90_ms=0.001 passed after `--resume --budget latency_p90_ms=100`, measuring nothing.
        Without --budget the run keeps its own."""
        try:
            recorded = results.read_json(run_dir / RUN_FILE).get("budgets")
        except (OSError, ValueError, AttributeError):
            recorded = None
        if budgets is not None and isinstance(recorded, dict) and recorded != dict(budgets):
            self.close()
            began = " ".join(f"--budget {k}={'none' if v is None else format(v, 'g') if isinstance(v, float) else v}"
                             for k, v in recorded.items()) or "no budgets"
            raise BadInput(f"fleet run {run_dir} was judged by {began}; --resume keeps them (leave --budget out), "
                           f"`edgeopt check {run_dir} --budget ...` judges it by others, or start a new run without "
                           "--resume")

    def _recorded(self, run_dir: pathlib.Path, key: str) -> list | None:
        """A list of text the run file records under `key`; None where it records none (an older edgeopt's). One
        that holds something else is refused, naming the file and field: a --resume was a TypeError traceback
        (a fuzzing audit)."""
        try:
            recorded = results.read_json(run_dir / RUN_FILE)
        except (OSError, ValueError):
            recorded = None
        recorded = recorded.get(key) if isinstance(recorded, dict) else None
        if recorded is None or isinstance(recorded, list) and all(isinstance(v, str) for v in recorded):
            return recorded
        self.close()
        raise BadInput(f"{run_dir / RUN_FILE}: {key} is {shown(recorded)}, not a list of text: the run file "
                       "is damaged; start a new run without --resume")

    def _check_same_devices(self, run_dir: pathlib.Path, names: list) -> None:
        """A --resume measures the devices the run began with: resumed with a smaller group, it measured that
        group's devices, showed only them and exited 0, while `check RUN_DIR` failed the devices left without a
        result. A run file of an older edgeopt records none, and is resumed as it is."""
        recorded = self._recorded(run_dir, "devices")
        if recorded and set(recorded) != set(names):
            self.close()
            missing, extra = sorted(set(recorded) - set(names)), sorted(set(names) - set(recorded))
            # "(now: not dev-a, dev-b; also dev-u)" was hard to read (a walkthrough)
            differ = "; ".join(part for part in (f"{', '.join(missing)} left out" if missing else "",
                                                 f"{', '.join(extra)} added" if extra else "") if part)
            raise BadInput(f"fleet run {run_dir} measures {', '.join(recorded)}, and --resume continues it with the "
                           f"same devices (this command: {', '.join(sorted(names))}; {differ}); give the same "
                           "inventory and group, or start a new run without --resume")

    def connected(self, transport, now: bool) -> None:
        with self._lock:
            if now and self._let_go:   # a device that was still connecting when Ctrl-C came: not measured
                raise DeviceFailure(f"device {transport.device}: interrupted before it was measured")
            (self._connected.add if now else self._connected.discard)(transport)

    def let_go(self) -> None:
        """Ctrl-C: close every device's connection, so that its agent stops and its thread ends now rather than
        when its measurement would have (a minute, with --min-seconds 60). Results already recorded stay."""
        with self._lock:
            connected, self._connected, self._let_go = list(self._connected), set(), True
        for transport in connected:
            try:
                transport.close()
            except Exception:   # noqa: BLE001 - a connection already failing: it is being let go anyway
                pass

    def _read_documents(self) -> dict:
        """Exact device name -> (path, document) for the results already in the run directory."""
        found = {}
        for path in sorted(self.run_dir.glob("*.json")):
            if path.name == RUN_FILE:
                continue
            try:
                doc = results.validate(results.read_json(path), str(path))
            except (OSError, ValueError, BadInput):   # damaged: measured again, then replaced
                continue
            name = (doc.get("device") or {}).get("name") if isinstance(doc, dict) else None
            if isinstance(name, str) and (name not in found or doc.get("status") == "ok"):
                found[name] = (path, doc)
        return found

    def result_path(self, device: str) -> pathlib.Path:
        """The device's file: the one it already has in this run, else one no other device's result holds
        (a file written by an older, lossy naming may hold another device's result: that stays)."""
        if device in self.documents:
            return self.documents[device][0]
        if device not in self._paths:
            taken = {path for path, _ in self.documents.values()} | set(self._paths.values())
            path = self.run_dir / f"{results.file_stem(device)}.json"
            if path in taken:
                path = self.run_dir / f"{results.file_stem(device, hashed=True)}.json"
            self._paths[device] = path
        return self._paths[device]

    def done(self, device: str) -> bool:
        return device in self.documents and self.documents[device][1].get("status") == "ok"

    def pending(self, spec) -> None:
        """A failed result in the device's place until its own replaces it: a run stopped part-way (Ctrl-C, a CI
        job cancelled, the host killed) reads as devices without a result, exit 3, not as a fleet that passed."""
        if spec.name in self.documents:   # an earlier try's failure says more than "no result yet"
            return
        doc = failed_document(spec, self.manifest, f"{NO_RESULT_YET} {self.run_id}: still measuring, or "
                              "the run was interrupted or killed before this device reported (`edgeopt fleet bench "
                              "... --resume` measures it)")
        with self._lock:
            results.write_json_atomic(self.result_path(spec.name), doc)

    def record(self, doc: dict, store: Store) -> pathlib.Path:
        """Atomic JSON in the run directory, latest/history copies, a row in the store."""
        name = doc["device"]["name"]
        with self._lock:
            path = self.result_path(name)
            try:
                results.write_json_atomic(path, doc)
                self.written.add(name)
                results.save(doc, self.results_dir)
                unsaved = None
            except CannotWrite as e:   # a full disk: the store's row still keeps the result
                unsaved = e
            self.documents[name] = (path, doc)
            doc["_path"] = str(path)
            try:
                store.add(doc, self.run_id)
            except EdgeoptError as e:
                raise DeviceFailure(f"{e}; nor could the run directory take it ({unsaved})"
                                    f"{results.saved_elsewhere(doc)}" if unsaved else
                                    f"{e}; the JSON file {path} is kept") from None
            if unsaved:
                raise BadInput(f"{unsaved}; the result of {name} is in the store {store.name}")
        return path


def _machine(spec) -> tuple:
    """The machine a device entry measures on: two entries of one host and port (two venvs of one board compared),
    or two `local` entries, are one machine. Measured at once, each read the other's load (p90 2x, exit 0 and no
    word), and `local` entries queued on its lock while their --timeout ran (a walkthrough)."""
    if spec.connection == "local":
        return ("local",)
    return ("ssh", spec.host, spec.port or 22, spec.proxy_jump)   # a host name behind a jump host is that one's


def _bench_device(spec, run: FleetRun, transport_for, agent_args, timeout, progress):
    started = time.monotonic()
    progress.device_state(spec.name, "connecting")
    transport = None
    try:
        transport = transport_for(spec)
        run.connected(transport, True)
        doc, _ = transport.bench(run.bundle_path, agent_args, DeviceProgress(progress, spec.name), timeout)
    except EdgeoptError as e:
        doc = failed_document(spec, run.manifest, str(e), e.exit_code)
    except Exception as e:  # a bug or an unforeseen library error on one device must not stop the fleet
        doc = failed_document(spec, run.manifest, f"internal error: {type(e).__name__}: {e}")
    finally:
        if transport is not None:
            run.connected(transport, False)
            transport.close()
    doc.setdefault("device", {})["name"] = spec.name
    name_the_bundle(doc, run.manifest)
    doc["fleet"] = {"run_id": run.run_id, "seconds": round(time.monotonic() - started, 3)}
    return doc


def bench(bundle_path, devices: list, transport_for, results_dir, store_url: str, parallel: int = 8,
          agent_args: list | None = None, timeout: float = 900.0, resume: bool = False, progress=SILENT,
          budgets: dict | None = None) -> dict:
    """{run_id, run_dir, documents and paths by device, succeeded: [...], failed: {device: reason}, skipped: [...],
    store_errors: [...] (results not saved in full: a row the store refused, or a file a full disk refused), replaced:
    [...] (latest files that held a result of another profile's bundle of that name)}."""
    bundles.read_manifest(bundle_path)   # a bad bundle refused by the user's name for it, not its pinned copy's
    with bundles.pinned(pathlib.Path(bundle_path)) as pinned:   # every device measures the bundle the run began
        return _bench(pinned, devices, transport_for, results_dir, store_url, parallel, agent_args, timeout, resume,
                      progress, budgets)                         # with, a package meanwhile or not (a review)


def _bench(bundle_path, devices, transport_for, results_dir, store_url, parallel, agent_args, timeout, resume,
           progress, budgets) -> dict:
    manifest = bundles.read_manifest(bundle_path)
    check_writable(results_dir, "results to", folder=True)   # before any device is reached
    devices = list({d.name: d for d in devices}.values())   # a device listed twice is measured once
    run = FleetRun(bundle_path, manifest, results_dir, resume, agent_args or [], budgets, [d.name for d in devices])
    if resume and not run.resumed:   # said, not silent: a typo'd --results-dir measured every device again
        progress.status(f"--resume: no earlier run of this bundle (manifest sha256 "
                        f"{manifest['_manifest_sha256'][:12]}…) under {run.run_dir.parent}: a new run")
    # its kept results at 2 threads beside the rest at 1, and the run file said 1 for all: said with the answer,
    # which --quiet and --json keep (progress they do not)
    warnings = [f"fleet run {run.run_dir} was begun by an older edgeopt, whose run file records no measurement "
                "settings: --resume cannot check that the rest is measured as its kept results were (`edgeopt "
                "compare` shows each result's settings)"] if run.settings_unknown else []
    # entered on Ctrl-C: a second signal is then ignored until the pool has ended, the store is closed and the run
    # directory unlocked, whose work it would otherwise cut short with the --resume line (a walkthrough)
    held = contextlib.ExitStack()
    with held:
        try:
            return dict(_bench_all(run, devices, transport_for, store_url, parallel, agent_args or [], timeout,
                                   resume, progress, held), warnings=warnings)
        finally:
            run.close()


def _bench_all(run, devices, transport_for, store_url, parallel, agent_args, timeout, resume, progress,
               held: contextlib.ExitStack) -> dict:
    store, store_errors, replaced = Store(store_url), [], []
    todo = [d for d in devices if not (resume and run.done(d.name))]
    skipped = [d.name for d in devices if d not in todo]
    documents = {name: run.documents[name][1] for name in skipped}
    for spec in todo:
        run.pending(spec)
        progress.device_state(spec.name, "queued")
    try:
        for name in skipped:
            progress.device_state(name, "ok", "kept from the earlier run" + _store_kept(run, name, store, store_errors))
        machines = {_machine(spec): threading.Lock() for spec in todo}
        measuring = threading.BoundedSemaphore(max(1, parallel))   # --parallel: devices measured at once

        def one_at_a_time(spec):   # devices of one machine after one another, each timed from its own start
            machine = machines[_machine(spec)]
            if not machine.acquire(blocking=False):
                progress.device_state(spec.name, "queued", "after another entry of the same machine")
                machine.acquire()
            try:   # the machine's turn first, then a place among --parallel: one waiting for its machine held a
                with measuring:   # place, and another machine's device waited behind it (a review)
                    return _bench_device(spec, run, transport_for, agent_args, timeout, progress)
            finally:
                machine.release()
        # a thread per device, the waiting ones idle: --parallel is the semaphore's count, not the pool's
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(max(1, len(todo)), MAX_THREADS)) as pool:
            futures = {pool.submit(one_at_a_time, spec): spec for spec in todo}
            def record(doc):
                try:
                    run.record(doc, store)
                except EdgeoptError as e:  # the JSON files are written first: keep collecting the other devices
                    store_errors.append(str(e))
                if doc.get("_replaced"):   # a latest file of another profile's bundle of that name (results.save)
                    replaced.append(doc["_replaced"])
                documents[doc["device"]["name"]] = {k: v for k, v in doc.items() if not k.startswith("_")}
                progress.device_state(doc["device"]["name"], doc["status"], _summary(doc))

            recorded = set()
            try:
                for future in concurrent.futures.as_completed(futures):
                    recorded.add(future)
                    record(future.result())
            except KeyboardInterrupt:   # devices not started stay so; those measuring are let go, not waited for
                # `timeout` signals the process and its group, and Ctrl-C comes twice: a second one inside the
                # let-go (or the pool's end) lost the --resume line below (a walkthrough, 1 run in 3)
                held.enter_context(signals_held())
                pool.shutdown(wait=False, cancel_futures=True)
                # those that finished as Ctrl-C came, not yet collected: their results are kept, not measured again
                for future in [f for f in futures if f not in recorded and f.done() and not f.cancelled()]:
                    if future.exception() is None:
                        record(future.result())
                run.let_go()
                # said with the interruption (the CLI prints it): what is kept, and how to finish the run; a result
                # interrupted on its way to the store is in its file, and counts
                reported = len(set(documents) | run.written)
                raise KeyboardInterrupt(f"{reported} of {len(devices)} devices reported; the others read as "
                                        f"no result in {run.run_dir}; the same command with --resume measures only "
                                        "them") from None
    finally:
        store.close()
    order = [d.name for d in devices]
    documents = {name: documents[name] for name in order if name in documents}
    return {"run_id": run.run_id, "run_dir": str(run.run_dir), "documents": documents, "skipped": skipped,
            "store_errors": store_errors, "replaced": replaced,
            "paths": {name: str(run.result_path(name)) for name in documents},
            "succeeded": [n for n, d in documents.items() if d.get("status") == "ok"],
            "failed": {n: d["error"]["message"] for n, d in documents.items() if d.get("status") != "ok"}}


def _store_kept(run: FleetRun, name: str, store: Store, store_errors: list) -> str:
    """A kept result whose row the store lacks gets it now: a run killed between a device's file and its row (a
    busy store, SIGTERM) left the row out for good, and --resume skipped the device, so history never showed it.
    Returns what to add to the device's line."""
    if store.run_has(run.run_id, name):
        return ""
    path, doc = run.documents[name]
    try:
        store.add(dict(doc, _path=str(path)), run.run_id)
    except EdgeoptError as e:
        store_errors.append(f"{e}; the JSON file {path} is kept")
        return ""
    return "; its row, missing from the store, added"


def _summary(doc: dict) -> str:
    if doc.get("status") != "ok":
        return doc["error"]["message"]
    return f"p90 {doc['latency'].get('p90_ms', float('nan')):.3f} ms"
