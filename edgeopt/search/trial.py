"""One candidate of `edgeopt optimize`: package it through the pipeline, measure it on every device through
the same code as `bench`, and fold the devices' results into the figures the study compares (the worst
device decides each figure, as it decides a budget)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import pathlib
import time

from ..budgets import KINDS, check_result, lookup
from ..errors import BadInput
from ..results import NOISY
from ..progress import SILENT

# A screening measurement: enough to rank, not to decide (the agent's defaults decide a full one). It skips the
# accuracy pass (the eval data), which the full measurement runs: a candidate ruled out on speed never pays for it.
SCREEN_LOOP = {"min_iterations": 20, "max_iterations": 200, "min_seconds": 0.5, "max_seconds": 3.0,
               "warmup_iterations": 5, "warmup_seconds": 0.2, "no_accuracy": True}
# where a trial's wall time goes (Candidate run's "seconds"); "reference": the baseline measured beside it
PHASES = ("package", "screen", "measure", "reference")
# A paired baseline run this many times off the study's first baseline run is measured again (Reference.measure):
# quiet runs of one bundle read within 0.8-1.28x of each other here (docs/benchmarks.md), a burst 5x; at 1.5x a
# 20 us model's p90 from a short screening loop already strayed past it against its first full run
OFF_BY = 2.0
ACCURACY_JUDGES = "the study's accuracy_drop budget"   # what lets a candidate through parity's top-1 agreement
# Figures kept per trial: the budget kinds, plus these headline ones.
HEADLINE = ("latency_p90_ms", "latency_p50_ms", "peak_rss_mb", "size_mb", "accuracy_drop", "min_top1",
            "energy_mj", "throughput_fps")


@dataclasses.dataclass
class Candidate:
    package: dict        # package() options: backend (of several), quantize, precision, the backend's own (preset)
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


@dataclasses.dataclass
class Reference:
    """The study's baseline bundle, measured again on the same devices with the same loop right before each
    candidate, so that a relative budget compares two runs made together: one baseline run measured minutes
    earlier is no steady reference where the host's or the board's speed drifts (the same INT8 bundle read
    0.23x to 0.46x of single baseline runs here: benchmarks/results/optimize-relative.md)."""
    bundle: pathlib.Path
    threads: int | None
    ratios: dict      # {budget: ratio}: the relative budgets
    expected: dict | None = None   # {budget: the baseline's figure at the study's start}

    def measure(self, job, loop: dict | None, progress) -> list:
        """The reference's documents: its figures only (its accuracy is known from the study's first run). A run
        that reads more than OFF_BY times away from the study's first baseline run is measured once more and the
        closer of the two kept: a burst on a shared host made one baseline read 5.7 ms against its usual 1.0, and a
        candidate 0.03x of it (a drift that lasts reads the same twice, and is kept)."""
        progress.status(f"measuring the baseline beside the candidate ({self.bundle.name})")
        loop = dict(loop or {}, no_accuracy=True)
        docs = measure(self.bundle, self.threads, job, loop, progress)
        if self._off(docs) <= math.log(OFF_BY):
            return docs
        progress.status(f"the baseline read far from its first run: measuring it again ({self.bundle.name})")
        again = measure(self.bundle, self.threads, job, loop, progress)
        return min((docs, again), key=self._off)

    def _off(self, docs: list) -> float:
        """How far (|log ratio|, the worst budget) a run of the reference reads from the study's first one."""
        now = self.figures(docs)
        return max((abs(math.log(now[k] / v)) for k, v in (self.expected or {}).items() if now.get(k) and v),
                   default=0.0)

    def judge(self, docs: list, reference_docs: list) -> dict:
        """{budget: (the worst device's candidate/reference ratio or None unmeasured, its excess over the
        budget's ratio)}: each device's candidate against its own reference; the worst device decides."""
        out = {}
        for key, ratio in self.ratios.items():
            path = KINDS[key].path   # every relative kind is lower-is-better (budgets.RELATIVE_KINDS)
            pairs = [(lookup(d, path)[0], lookup(r, path)[0]) for d, r in zip(docs, reference_docs)]
            if not pairs or any(c is None or not ref for c, ref in pairs):
                out[key] = (None, 1.0)   # unmeasured misses, as in violations()
                continue
            worst = max(c / ref for c, ref in pairs)
            out[key] = (worst, (worst - ratio) / ratio)
        return out

    def figures(self, reference_docs: list) -> dict:
        """{budget: the reference's figure on the worst device} of one run: the readings the chosen bundle's
        limit is set from (outcome._carried_limits), as the baseline's first run sets the study's."""
        return {k: v for k, v in figures(reference_docs, self.ratios).items() if k in self.ratios}


def _short(value):
    return f"{value:.3g}" if isinstance(value, float) else value


def package(candidate: Candidate, job, bundle: pathlib.Path, progress, name: str | None = None) -> dict:
    """Build the candidate's bundle through the pipeline (BadInput: this candidate cannot be built). `name`: the
    bundle's, which its results are filed under (default: the file's stem)."""
    from .. import recipe
    from ..pipeline import package as run_pipeline
    from ..transform import reads_training_data

    steps = [recipe.step(name, values, f"candidate {name}") for name, values in candidate.steps]
    # every sampled option but backend, quantize and precision is one of the backend's own (int8_ops,
    # activation_range, keep_float, ...): package() takes those as backend_options, not as keywords of its own
    options = dict(candidate.package)
    settings = {key: options.pop(key) for key in ("backend", "quantize", "precision") if key in options}
    if job.backend:   # the devices lack the profile's own backend: a candidate that names none takes the search's
        settings.setdefault("backend", job.backend)
    # With labelled eval data the study's accuracy budget measures each candidate's top-1 on the device, the
    # tolerance the user gave: parity's top-1 agreement (the profile's, stricter) does not refuse it first.
    judged_by = ACCURACY_JUDGES if "accuracy_drop" in job.budgets else None
    return run_pipeline(job.model, job.profile, bundle, calib=job.calib, eval_data=job.eval_data,
                        input_shapes=job.input_shapes, budgets=job.budgets, profile_budgets=False, name=name,
                        train_data=job.train_data if reads_training_data(steps) else None,   # else refused
                        force=True, steps=steps, seed=job.seed, progress=progress, host_timing=False,
                        backend_options=options or None, transform_cache=job.transforms, top1_judged_by=judged_by,
                        threads=candidate.threads,   # each trial's own bundle (its key holds the threads): a front
                        **settings)                  # member's bundle taken from the table runs as it was measured


def measure(bundle: pathlib.Path, threads: int | None, job, loop: dict | None, progress) -> list:
    """Result documents of the bundle on every device, measured at the same time (one thread per device; each
    device runs its own agent). DeviceFailure of the first device that failed, after all have finished."""
    from concurrent.futures import ThreadPoolExecutor

    from ..api import bench

    if "throughput_fps" in job.budgets:   # the pass runs by itself only under a throughput hint
        loop = dict(loop or {}, throughput=True)

    def one(device, shown):
        return bench(bundle, device, job.results_dir, threads, loop, job.timeout, shown, job.inventory,
                     job.ssh_options, job.store_url, typed_loop=False)   # the screening loop is short by design

    if len(job.devices) == 1:
        return [one(job.devices[0], progress)]
    progress.status(f"measuring {bundle.name} on {len(job.devices)} devices")
    with ThreadPoolExecutor(max_workers=len(job.devices)) as pool:
        futures = [pool.submit(one, device, SILENT) for device in job.devices]
    return [f.result() for f in futures]


def figures(docs: list, budgets: dict) -> dict:
    """{figure: worst value over the devices} for the headline figures and every budget kind in force."""
    return {key: values[worst] for key, values, worst in _worst(docs, budgets)}


def worst_devices(docs: list, budgets: dict) -> dict:
    """{figure: the device that read it worst} where the devices read it differently (an accuracy every device
    reads alike names none), over several devices; empty over one."""
    if len(docs) < 2:
        return {}
    return {key: device_label(docs[worst].get("device") or {}) for key, values, worst in _worst(docs, budgets)
            if len(set(values)) > 1}


def _worst(docs: list, budgets: dict):
    """(figure, its value on each device, the index of the worst) for the headline figures and every budget kind
    in force that every device measured."""
    for key in dict.fromkeys(HEADLINE + tuple(budgets)):
        kind = KINDS[key]
        values = [v for v, _ in (lookup(d, kind.path) for d in docs)]
        if values and None not in values:
            pick = min if kind.higher_is_better else max
            yield key, values, values.index(pick(values))


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


def artifact_key(manifest: dict, threads: int | None) -> str:
    """What a measurement depends on: the bundle's files (model and data, by their sha256), the runtime it
    records and the thread count. Two configurations that package to the same artifact (LiteRT's int8_ops=auto
    and all on a CNN) share it, while their manifests, which record what was asked, differ."""
    import hashlib
    import json

    files = sorted((f["path"], f["sha256"]) for f in manifest.get("files", []))
    text = json.dumps([files, manifest.get("runtime"), threads], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def run(candidate: Candidate, job, bundle: pathlib.Path, screen: bool, can_still_win, progress,
        reference: Reference | None = None, twin=None, name: str | None = None) -> dict:
    """Package and measure one candidate. `can_still_win(figures, violations, ratios)` decides, after a screening
    run, whether it earns a full measurement (ratios: to the reference, with one). With a reference, the relative
    budgets are judged against the baseline measured right before each run of the candidate. Returns {"figures",
    "violations", "measurement" (screening or full), "paired" ({budget: candidate/reference ratio}, with a
    reference), "baseline_beside" ({budget: the reference's figure in its last run}, with one), "results" (this
    run's own result files, the history copies: the baseline measured again beside each candidate rewrites its
    latest file), "artifact" (artifact_key), "transforms" (the stages of its manifest), "parity" (the top-1
    agreement that missed the profile's and was left to the accuracy budget, or None), "seconds" (wall time of
    packaging, of the screening run, of the full run and of the reference's runs)}.
    `twin(artifact key)`: a finished trial's outcome for the same artifact, which then answers for this one without
    measuring it again."""
    clock = _Clock()
    untrained = _trained_steps(candidate) if screen and "no_accuracy" in screen_loop(job) else []
    if untrained:
        try:
            ruled_out = _screen_before_training(candidate, untrained, job, bundle, can_still_win, progress,
                                                reference, clock, name)
        except BadInput as e:   # the untrained model cannot be packaged (its parity, say): the trained one is
            progress.status(f"screening before training left out: {e}")
        else:
            if ruled_out is not None:
                return ruled_out
            screen = False   # it can still win: trained, it is measured fully without a second screening
    manifest = clock.time("package", package, candidate, job, bundle, progress, name)
    artifact = artifact_key(manifest, candidate.threads)
    answered = twin(artifact) if twin is not None else None
    if answered is not None:
        progress.status(f"the same bundle as trial {answered['twin_of']}: its measurement answers")
        return dict(answered, artifact=artifact, seconds=dict(clock.seconds),
                    transforms_reused=manifest.get("transforms_reused", False),
                    transforms=manifest.get("transforms", []), parity=_parity_missed(manifest))
    docs, paired, beside = _measure_beside(candidate, job, bundle, screen_loop(job) if screen else None, reference,
                                           clock, "screen" if screen else "measure", progress)
    measurement = "screening" if screen else "full"
    if screen:
        found, missed = screened(docs, job.budgets)
        if can_still_win(found, {**missed, **_excesses(paired)}, _ratios(paired)):
            docs, paired, beside = _measure_beside(candidate, job, bundle, None, reference, clock, "measure",
                                                   progress)
            measurement = "full"
    return dict(_outcome(job, docs, paired, beside, reference, clock, measurement, manifest), artifact=artifact)


def device_label(device: dict) -> str:
    """A device as a study names it: its inventory name, and `local` with its host's name (each worker's `local` is
    its own machine)."""
    name = device.get("name") or "?"
    return f"local on {device.get('hostname') or '?'}" if name == "local" else name


def _outcome(job, docs: list, paired: dict, beside: dict, reference, clock, measurement: str, manifest: dict) -> dict:
    out = {"figures": figures(docs, job.budgets),
           "violations": {**violations(docs, job.budgets), **_excesses(paired)},
           "measurement": measurement, "results": [d.get("_history") or d.get("_path") for d in docs],
           "devices": [device_label(d.get("device") or {}) for d in docs],
           "worst_devices": worst_devices(docs, job.budgets),
           "transforms": manifest.get("transforms", []),
           "transforms_reused": manifest.get("transforms_reused", False), "parity": _parity_missed(manifest),
           "seconds": dict(clock.seconds, timed_loop=max(_loop_seconds(d) for d in docs)),
           "noisy": sorted({w for d in docs for w in d.get("warnings", []) if w.startswith(NOISY)})}
    if reference is not None:
        out["paired"], out["baseline_beside"] = _ratios(paired), beside
    return out


def _trained_steps(candidate: Candidate) -> list:
    """The candidate's steps that train weights and can make their graph without training (distillation, QAT)."""
    from ..compress import base as transforms

    return [name for name, _ in candidate.steps if transforms.get(name).screens_untrained]


def _untrained(candidate: Candidate) -> Candidate:
    """The candidate with every training step untrained: left out (distillation) or run without its epochs (QAT's
    quantizers calibrated); its latency, size and memory are the trained candidate's."""
    from ..compress import base as transforms

    steps = []
    for name, values in candidate.steps:
        transform = transforms.get(name)
        values = transform.untrained(values) if transform.screens_untrained else values
        if values is not None:
            steps.append((name, values))
    return Candidate(candidate.package, steps, candidate.threads)


def _screen_before_training(candidate: Candidate, untrained: list, job, bundle: pathlib.Path, can_still_win,
                            progress, reference, clock, name) -> dict | None:
    """Screen the candidate without its training, which does not change its latency, size or memory: the
    outcome of a candidate ruled out there ("untrained": the steps whose training never ran), or None where it can
    still win. In a study of a trained EfficientNet, 348 of 514 s of packaging trained two candidates a 1-s
    screening run then ruled out (prune + distill + QAT at 2.29x, 14 epochs of distillation at 1.20x, against
    0.6x)."""
    probe = _untrained(candidate)
    path = bundle.with_name(f"{bundle.stem}-untrained{bundle.suffix}")
    progress.status(f"screening before training: the same graph, {', '.join(untrained)} not trained")
    try:
        manifest = clock.time("package", package, probe, job, path, progress, name)
        docs, paired, beside = _measure_beside(probe, job, path, screen_loop(job), reference, clock, "screen",
                                               progress)
    finally:
        path.unlink(missing_ok=True)
    found, missed = screened(docs, job.budgets)
    if can_still_win(found, {**missed, **_excesses(paired)}, _ratios(paired)):
        return None
    # no artifact key: the probe is not the candidate's bundle, and no later trial may be answered by it
    return dict(_outcome(job, docs, paired, beside, reference, clock, "screening", manifest), artifact=None,
                parity=None, untrained=untrained)


def _parity_missed(manifest: dict) -> str | None:
    """The parity verdict the study's accuracy budget let through ("top1_agreement 0.9667 (tolerance 0.97)")."""
    from ..parity import headline

    parity = manifest.get("parity") or {}
    return None if parity.get("passed", True) else headline(parity)


def _excesses(paired: dict) -> dict:
    """{budget: excess} of Reference.judge's {budget: (ratio, excess)}."""
    return {key: excess for key, (_, excess) in paired.items()}


def _ratios(paired: dict) -> dict:
    """{budget: candidate/reference ratio} of Reference.judge's {budget: (ratio, excess)}."""
    return {key: ratio for key, (ratio, _) in paired.items()}


def _measure_beside(candidate: Candidate, job, bundle: pathlib.Path, loop, reference, clock, phase: str,
                    progress) -> tuple:
    """(the candidate's documents, {budget: (ratio, excess)} against the reference measured just before it,
    {budget: the reference's figure}; both empty without a reference)."""
    if reference is None:
        return clock.time(phase, measure, bundle, candidate.threads, job, loop, progress), {}, {}
    reference_docs = clock.time("reference", reference.measure, job, loop, progress)
    docs = clock.time(phase, measure, bundle, candidate.threads, job, loop, progress)
    return docs, reference.judge(docs, reference_docs), reference.figures(reference_docs)


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
        finally:   # a phase run twice (the reference beside a screening and a full run) adds up
            self.seconds[phase] = round(self.seconds.get(phase, 0.0) + time.perf_counter() - start, 3)

