"""Benchmark one bundle on many devices at once: a bounded pool, every outcome collected,
each result stored the moment it arrives, and `--resume` to finish an interrupted run."""
from __future__ import annotations

import concurrent.futures
import datetime
import json
import pathlib
import threading
import time

from device_agent import RESULT_SCHEMA

from . import bundle as bundles, results
from .errors import EdgeoptError
from .progress import SILENT, DeviceProgress
from .store import Store

RUN_FILE = "run.json"


def failed_document(spec, manifest: dict, message: str, exit_code: int = 3) -> dict:
    """The result of a device that produced none: who, what bundle, why."""
    return {"schema": RESULT_SCHEMA, "status": "failed",
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "device": {"name": spec.name, "host": spec.host},
            "bundle": {"name": manifest["name"], "manifest_sha256": manifest["_manifest_sha256"]},
            "error": {"message": message, "exit_code": exit_code, "kind": "device"}}


class FleetRun:
    """One fleet benchmark: where its results go, which devices are still to do."""

    def __init__(self, bundle_path, manifest, results_dir, resume: bool):
        self.bundle_path, self.manifest = pathlib.Path(bundle_path), manifest
        self.results_dir = pathlib.Path(results_dir)
        base = self.results_dir / "fleet" / results._safe(manifest["name"])
        previous = self._latest(base) if resume else None
        if previous is not None:
            self.run_dir, self.run_id = previous, previous.name
        else:
            self.run_id = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
            self.run_dir = base / self.run_id
        self.run_dir.mkdir(parents=True, exist_ok=True)
        results.write_json_atomic(self.run_dir / RUN_FILE, {
            "run_id": self.run_id, "bundle": manifest["name"], "bundle_sha256": manifest["_manifest_sha256"]})
        self._lock = threading.Lock()

    def _latest(self, base: pathlib.Path):
        """The newest earlier run of this very bundle (same manifest sha256), if any."""
        candidates = sorted((p for p in base.glob("*/" + RUN_FILE)), reverse=True) if base.is_dir() else []
        for run_file in candidates:
            info = json.loads(run_file.read_text())
            if info.get("bundle_sha256") == self.manifest["_manifest_sha256"]:
                return run_file.parent
        return None

    def result_path(self, device: str) -> pathlib.Path:
        return self.run_dir / f"{results._safe(device)}.json"

    def done(self, device: str) -> bool:
        path = self.result_path(device)
        return path.is_file() and json.loads(path.read_text()).get("status") == "ok"

    def record(self, doc: dict, store: Store) -> pathlib.Path:
        """Atomic JSON in the run directory, latest/history copies, a row in the store."""
        path = self.result_path(doc["device"]["name"])
        with self._lock:
            results.write_json_atomic(path, doc)
            doc["_path"] = str(path)
            results.save(doc, self.results_dir)
            store.add(doc, self.run_id)
        return path


def _bench_device(spec, run: FleetRun, transport_for, agent_args, timeout, progress):
    started = time.monotonic()
    progress.device_state(spec.name, "connecting")
    transport = None
    try:
        transport = transport_for(spec)
        doc, _ = transport.bench(run.bundle_path, agent_args, DeviceProgress(progress, spec.name), timeout)
    except EdgeoptError as e:
        doc = failed_document(spec, run.manifest, str(e), e.exit_code)
    except Exception as e:  # a bug or an unforeseen library error on one device must not stop the fleet
        doc = failed_document(spec, run.manifest, f"internal error: {type(e).__name__}: {e}")
    finally:
        if transport is not None:
            transport.close()
    doc.setdefault("device", {})["name"] = spec.name
    doc["fleet"] = {"run_id": run.run_id, "seconds": round(time.monotonic() - started, 3)}
    return doc


def bench(bundle_path, devices: list, transport_for, results_dir, store_url: str, parallel: int = 8,
          agent_args: list | None = None, timeout: float = 900.0, resume: bool = False, progress=SILENT) -> dict:
    """{run_id, run_dir, documents and paths by device, succeeded: [...], failed: {device: reason}, skipped: [...]}."""
    manifest = bundles.read_manifest(bundle_path)
    run = FleetRun(bundle_path, manifest, results_dir, resume)
    store = Store(store_url)
    todo = [d for d in devices if not (resume and run.done(d.name))]
    skipped = [d.name for d in devices if d not in todo]
    documents = {name: json.loads(run.result_path(name).read_text()) for name in skipped}
    for spec in todo:
        progress.device_state(spec.name, "queued")
    for name in skipped:
        progress.device_state(name, "ok", "kept from the earlier run")
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
            futures = {pool.submit(_bench_device, spec, run, transport_for, agent_args or [], timeout, progress): spec
                       for spec in todo}
            for future in concurrent.futures.as_completed(futures):
                doc = future.result()
                run.record(doc, store)
                documents[doc["device"]["name"]] = {k: v for k, v in doc.items() if k != "_path"}
                progress.device_state(doc["device"]["name"], doc["status"], _summary(doc))
    finally:
        store.close()
    order = [d.name for d in devices]
    documents = {name: documents[name] for name in order if name in documents}
    return {"run_id": run.run_id, "run_dir": str(run.run_dir), "documents": documents, "skipped": skipped,
            "paths": {name: str(run.result_path(name)) for name in documents},
            "succeeded": [n for n, d in documents.items() if d.get("status") == "ok"],
            "failed": {n: d["error"]["message"] for n, d in documents.items() if d.get("status") != "ok"}}


def _summary(doc: dict) -> str:
    if doc.get("status") != "ok":
        return doc["error"]["message"]
    return f"p90 {doc['latency'].get('p90_ms', float('nan')):.3f} ms"
