"""One candidate of `edgeopt optimize`: package it through the pipeline, measure it on every device through
the same code as `bench`, and fold the devices' results into the figures the study compares (the worst
device decides each figure, as it decides a budget)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
import time

from ..budgets import KINDS, check_result, lookup
from ..progress import SILENT

# A screening measurement: enough to rank, not to decide (the agent's defaults decide a full one). It skips the
# accuracy pass (the eval data), which the full measurement runs: a candidate ruled out on speed never pays for it.
SCREEN_LOOP = {"min_iterations": 20, "max_iterations": 200, "min_seconds": 0.5, "max_seconds": 3.0,
               "warmup_iterations": 5, "warmup_seconds": 0.2, "no_accuracy": True}
PHASES = ("package", "screen", "measure")   # where a trial's wall time goes (Candidate run's "seconds")
# Figures kept per trial: the budget kinds, plus these headline ones.
HEADLINE = ("latency_p90_ms", "latency_p50_ms", "peak_rss_mb", "size_mb", "accuracy_drop", "min_top1",
            "energy_mj", "throughput_fps")


@dataclasses.dataclass
class Candidate:
    package: dict        # package() options: quantize, precision, and the backend's own (keep_float, preset)
    steps: list          # [(transform, {option: value})]
    threads: int | None

    def key(self, identity: dict) -> str:
        """Content hash of what makes the bundle and its measurement: identical candidates share it."""
        doc = {"identity": identity, "package": self.package, "steps": self.steps, "threads": self.threads}
        return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in self.package.items()]
        parts += [name + ("(" + ",".join(f"{k}={_short(v)}" for k, v in values.items()) + ")" if values else "")
                  for name, values in self.steps]
        if self.threads:
            parts.append(f"threads={self.threads}")
        return " ".join(parts)


def _short(value):
    return f"{value:.3g}" if isinstance(value, float) else value


def package(candidate: Candidate, job, bundle: pathlib.Path, progress) -> dict:
    """Build the candidate's bundle through the pipeline (BadInput: this candidate cannot be built)."""
    from .. import recipe
    from ..pipeline import package as run_pipeline

    steps = [recipe.step(name, values, f"candidate {name}") for name, values in candidate.steps]
    return run_pipeline(job.model, job.profile, bundle, calib=job.calib, eval_data=job.eval_data,
                        input_shapes=job.input_shapes, budgets=job.budgets,
                        train_data=job.train_data if steps else None,  # read only by transforms
                        force=True, steps=steps, seed=job.seed, progress=progress, host_timing=False,
                        **candidate.package)


def measure(bundle: pathlib.Path, threads: int | None, job, loop: dict | None, progress) -> list:
    """Result documents of the bundle on every device, measured at the same time (one thread per device; each
    device runs its own agent). DeviceFailure of the first device that failed, after all have finished."""
    from concurrent.futures import ThreadPoolExecutor

    from ..api import bench

    if "throughput_fps" in job.budgets:   # the pass runs by itself only under a throughput hint
        loop = dict(loop or {}, throughput=True)

    def one(device, shown):
        return bench(bundle, device, job.results_dir, threads, loop, job.timeout, shown, job.inventory,
                     job.ssh_options, job.store_url)

    if len(job.devices) == 1:
        return [one(job.devices[0], progress)]
    progress.status(f"measuring {bundle.name} on {len(job.devices)} devices")
    with ThreadPoolExecutor(max_workers=len(job.devices)) as pool:
        futures = [pool.submit(one, device, SILENT) for device in job.devices]
    return [f.result() for f in futures]


def figures(docs: list, budgets: dict) -> dict:
    """{figure: worst value over the devices} for the headline figures and every budget kind in force."""
    out = {}
    for key in dict.fromkeys(HEADLINE + tuple(budgets)):
        kind = KINDS[key]
        values = [v for v, _ in (lookup(d, kind.path) for d in docs) if v is not None]
        if len(values) == len(docs):
            out[key] = min(values) if kind.higher_is_better else max(values)
    return out


def violations(docs: list, budgets: dict) -> dict:
    """{budget: relative excess (> 0 misses, <= 0 meets)} of the worst device; an unmeasured budget counts as
    missed by 1 (100%): a limit is never passed silently."""
    return {key: max((_excess_of(doc, key, limit) for doc in docs), default=1.0) for key, limit in budgets.items()}


def screen_loop(job) -> dict:
    """The screening run's settings: without the accuracy pass unless the objective is an accuracy figure."""
    from ..pipeline import EVAL_BUDGETS

    return {k: v for k, v in SCREEN_LOOP.items() if k != "no_accuracy" or job.objective not in EVAL_BUDGETS}


def screened(docs: list, budgets: dict) -> tuple:
    """(figures, violations) of a screening run, without the budgets it did not measure (accuracy): those are
    for the full measurement to decide."""
    found = figures(docs, budgets)
    return found, {k: v for k, v in violations(docs, budgets).items() if k in found}


def _excess_of(doc: dict, key: str, limit: float) -> float:
    row = check_result(doc, {key: limit})[0]
    if row["status"] == "unmeasured":
        return 1.0
    return _excess(row["measured"], limit, KINDS[key].higher_is_better)


def excess(measured, limit: float, higher_is_better: bool) -> float:
    """A figure's relative excess over its limit (> 0 misses, <= 0 meets); unmeasured (None) misses by 1."""
    return 1.0 if measured is None else _excess(measured, limit, higher_is_better)


def _excess(measured: float, limit: float, higher_is_better: bool) -> float:
    scale = abs(limit) if limit else 1.0
    return (limit - measured) / scale if higher_is_better else (measured - limit) / scale


def run(candidate: Candidate, job, bundle: pathlib.Path, screen: bool, can_still_win, progress) -> dict:
    """Package and measure one candidate. `can_still_win(figures, violations)` decides, after a screening run,
    whether it earns a full measurement. Returns {"figures", "violations", "measurement" (screening or full),
    "results" (result files), "bundle_sha256", "transforms" (the stages of its manifest), "seconds" (wall
    time of packaging, of the screening run and of the full run)}."""
    clock = _Clock()
    manifest = clock.time("package", package, candidate, job, bundle, progress)
    loop = screen_loop(job) if screen else None
    docs = clock.time("screen" if screen else "measure", measure, bundle, candidate.threads, job, loop, progress)
    measurement = "screening" if screen else "full"
    if screen and can_still_win(*screened(docs, job.budgets)):
        docs = clock.time("measure", measure, bundle, candidate.threads, job, None, progress)
        measurement = "full"
    return {"figures": figures(docs, job.budgets), "violations": violations(docs, job.budgets),
            "measurement": measurement, "results": [d.get("_path") for d in docs],
            "bundle_sha256": manifest["content_sha256"] if "content_sha256" in manifest else None,
            "transforms": manifest.get("transforms", []),
            "seconds": dict(clock.seconds, timed_loop=max(_loop_seconds(d) for d in docs))}


def _loop_seconds(doc: dict) -> float:
    """How long the device's timed loop ran: the part of a measurement that a screening run shortens."""
    value = (doc.get("latency") or {}).get("duration_s")
    return float(value) if isinstance(value, (int, float)) else 0.0


class _Clock:
    """Wall seconds per phase of a trial (what a study spends where: packaging, screening, measuring)."""

    def __init__(self):
        self.seconds = {}

    def time(self, phase: str, fn, *args):
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.seconds[phase] = round(time.perf_counter() - start, 3)

