"""The measuring process: one model, loaded once, in a process of its own (started by bench.py).

Order matters for clean memory figures: baseline, runtime import, model load, then the
timed loop with the high-water mark reset just before it.
"""
import errno
import json
import os
import sys
import time

import numpy as np

from .. import samples
from ..progress import report
from ..runtimes import adapter_class
from ..power.base import SensorConfig
from . import accuracy, environment, latency, memory, passes, stats
from .sensing import RunSensors


def example_feed(manifest, root):
    """The first call's worth of eval samples when the bundle has eval data (real data), else seeded random data."""
    eval_path = accuracy.eval_path(manifest, root)
    specs = manifest["inputs"]
    if eval_path:
        with np.load(eval_path, allow_pickle=False) as data:
            arrays = {s["name"]: data[s["name"]].astype(accuracy.feed_dtype(s)) for s in specs if s["name"] in data.files}
        if len(arrays) == len(specs):
            forms, batch = samples.plan({k: v.shape for k, v in arrays.items()}, [(s["name"], s["shape"]) for s in specs])
            _, _, feed = next(samples.calls(arrays, forms, batch))
            # A copy of the one call, not a view: a view kept every eval array alive through the timed loop, whose
            # peak RSS then grew with the eval set shipped (+155 MiB for 1500 samples; a user review).
            # np.array, not ascontiguousarray, which makes a scalar input (silero_vad's sr) 1-D: LiteRT refused it
            return {k: np.array(v, order="C", copy=True) for k, v in feed.items()}, "eval sample"
    rng = np.random.default_rng(0)
    feed = {}
    for spec in specs:
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in spec["shape"]]
        dtype = accuracy.feed_dtype(spec)
        if np.issubdtype(dtype, np.integer):
            feed[spec["name"]] = rng.integers(0, 10, size=shape).astype(dtype)
        else:
            feed[spec["name"]] = rng.standard_normal(shape).astype(dtype)
    return feed, "random, seed 0"


def measure(root, manifest, threads, settings, with_accuracy=True, sensor_config=None, runtime_options=None,
            wanted=passes.Passes(), scratch_dir=None, checkpoint=None):
    """The result's measured sections. checkpoint(doc): called with the figures so far and `pending` (the
    sections still being measured) after the timed loop and as each pass ends, so that a runtime that crashes
    or hangs in a later pass (a segfault, the OOM killer, the timeout) loses that pass only."""
    sensor_config = sensor_config or SensorConfig()
    env = environment.read(sensor_config)  # first, before this process adds its own load
    mem = {"method": "VmRSS/VmHWM (/proc/self/status)"}
    mem["rss_baseline_mb"] = memory.rss_mb()
    cls = adapter_class(manifest["runtime"]["name"])
    report("load", "importing %s" % cls.module)
    adapter = cls(threads, dict(manifest["runtime"].get("options") or {}, **(runtime_options or {})))
    adapter.import_module()
    mem["rss_after_import_mb"] = memory.rss_mb()
    t0 = time.perf_counter()
    adapter.load(os.path.join(root, *manifest["model"].split("/")))
    adapter.follow_outputs([o["name"] for o in manifest["outputs"]])
    load_s = time.perf_counter() - t0
    mem["rss_after_load_mb"] = memory.rss_mb()
    feed, feed_source = example_feed(manifest, root)
    infer = adapter.bind(feed)
    lat = {"load_ms": load_s * 1e3, "first_inference_ms": latency.first_inference_ms(infer), "input": feed_source}
    sensors = RunSensors(sensor_config)
    sensors.idle_baseline()
    sensors.snapshot_before()
    report("warm-up", "%d+ runs, %.1f+ s" % (settings.warmup_min_iterations, settings.warmup_min_seconds))
    lat["warmup_count"], lat["warmup_s"] = latency.warm_up(infer, settings)
    peak_reset = memory.reset_peak()
    adapter.timing(True)
    with sensors.loop():
        samples, lat["stopped_by"], lat["duration_s"] = latency.timed_loop(infer, settings)
    adapter.timing(False)
    sensors.snapshot_after()
    mem["peak_rss_mb"] = memory.peak_mb()
    mem["peak_scope"] = "timed loop" if peak_reset else "whole process (high-water mark could not be reset)"
    mem["swap_mb"] = memory.swap_mb()
    lat.update(stats.summarize(samples))  # here, so the orchestrating parent never imports numpy
    lat["samples_ms"] = samples
    power, heat, warnings = sensors.results(len(samples), lat["duration_s"])
    sensors.close()
    runtime = {"name": cls.name, "version": cls.installed_version()}
    runtime.update(adapter.describe())
    doc = {"latency": lat, "memory": mem, "runtime": runtime, "power": power, "thermal": heat, "environment": env,
           "warnings": warnings, "accuracy": {"available": False, "reason": accuracy.SKIPPED}}
    fps_budget = "throughput_fps" in (manifest.get("budgets") or {})
    doc.update(passes.not_run(adapter, wanted, fps_budget))
    pending = passes.planned(adapter, wanted, fps_budget) + (["accuracy"] if with_accuracy else [])
    if "throughput" in pending:   # why it ran, kept should the pass not finish
        doc["throughput"] = {"available": False, "asked_by": passes.asked_by(adapter, wanted)}
    save = checkpoint or (lambda _: None)

    def done(name, section):   # each pass's figures saved before the next runs
        doc[name] = section
        pending.remove(name)
        save(dict(doc, pending=list(pending)))

    save(dict(doc, pending=list(pending)))
    passes.run(adapter, feed, settings, wanted, scratch_dir or os.path.dirname(root), fps_budget, after=done)
    if with_accuracy:
        done("accuracy", _accuracy(adapter, manifest, root))
    adapter.close()   # after the last save: a runtime that crashes here, or at exit, loses nothing
    return doc


def _accuracy(adapter, manifest, root):
    """The eval pass, last: where it fails, the latency, memory and power already measured are kept and
    the failure is the accuracy section's reason."""
    try:
        return accuracy.evaluate(adapter, manifest, root)
    except Exception as e:  # noqa: BLE001 - any failure of the pass; recorded, never raised past the figures
        return {"available": False, "reason": "the eval pass failed: %s: %s" % (type(e).__name__, e)}


def main(*args):
    """_main, where a disk that fills up under it exits NO_SPACE_EXIT: its figures cannot be saved, nor its
    account of why, and the agent's "its error is above" read of nothing the host shows."""
    from ..bundle import NO_SPACE_EXIT

    try:
        _main(*args)
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        sys.stderr.write("edgeopt-agent: measuring process: %s\n" % e)
        sys.exit(NO_SPACE_EXIT)


def _main(root, out_path, threads, settings_json, with_accuracy, sensors_json, options_json="{}", passes_json="{}"):
    from ..bundle import load_manifest

    manifest = load_manifest(root)
    settings = latency.LoopSettings(**json.loads(settings_json))
    def save(doc):
        tmp = out_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f)
        os.replace(tmp, out_path)

    doc = measure(root, manifest, threads, settings, with_accuracy, SensorConfig.from_dict(json.loads(sensors_json)),
                  json.loads(options_json), passes.Passes(**json.loads(passes_json)), os.path.dirname(out_path),
                  checkpoint=save)
    save(dict(doc, pending=[]))   # nothing pending: a crash at the interpreter's exit keeps the whole result
