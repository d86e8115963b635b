"""Measurements beyond latency, each a short pass of its own after the timed loop (and its memory and
power readings), so neither disturbs the latency figures: throughput (FPS) and the per-layer profile."""
from dataclasses import dataclass

from ..progress import report
from . import layers, throughput


@dataclass(frozen=True)
class Passes:
    throughput: bool = False      # measure FPS even when the bundle's performance hint is latency
    profile_layers: bool = False  # the runtime profiler's per-layer times

    def to_dict(self):
        return dict(self.__dict__)


def _failed(what, error):
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return {"available": False, "reason": "%s failed: %s" % (what, text[:300])}


def planned(adapter, wanted, fps_budget=False):
    """The sections `run` measures: throughput where asked for, hinted by the bundle or budgeted; layer_profile
    where asked for."""
    return ((["throughput"] if wanted.throughput or adapter.throughput_hint() or fps_budget else [])
            + (["layer_profile"] if wanted.profile_layers else []))


def not_run(adapter, wanted, fps_budget=False):
    """The sections of the passes `run` leaves out, each absent with its reason."""
    unasked = {"throughput": {"available": False, "reason": throughput.NOT_ASKED},
               "layer_profile": {"available": False, "reason": layers.NOT_ASKED}}
    return {k: v for k, v in unasked.items() if k not in planned(adapter, wanted, fps_budget)}


def asked_by(adapter, wanted):
    """Why the throughput pass runs (where `planned` says it does)."""
    return ("--throughput" if wanted.throughput else "the bundle's performance hint" if adapter.throughput_hint()
            else "the bundle's throughput_fps budget")


def run(adapter, feed, settings, wanted, scratch_dir, fps_budget=False, after=None):
    """{"throughput": section, "layer_profile": section}; a pass not asked for, or one that failed, is
    {"available": False, "reason": ...}: the latency figures stand either way. fps_budget: the bundle carries a
    throughput_fps budget, which the pass measures (it was left unasked, and `check` failed it unmeasured).
    after(name, section): called as each pass ends, so that its figures are saved before the next one runs."""
    out = not_run(adapter, wanted, fps_budget)
    todo = planned(adapter, wanted, fps_budget)
    after = after or (lambda name, section: None)
    if "throughput" in todo:
        report("throughput", "concurrent runs, %d+ completed, %.1f+ s" % (settings.min_iterations, settings.min_seconds))
        try:
            out["throughput"] = adapter.throughput(feed, settings)
        except Exception as e:  # a runtime's own error type: the pass is absent with its reason, the run stands
            out["throughput"] = _failed("the throughput pass", e)
        out["throughput"]["asked_by"] = asked_by(adapter, wanted)
        after("throughput", out["throughput"])
    if "layer_profile" in todo:
        runs = layers.profile_runs(settings)
        report("profile", "%d profiled runs" % runs)
        try:
            out["layer_profile"] = adapter.profile_layers(feed, runs, scratch_dir)
        except Exception as e:  # as above
            out["layer_profile"] = _failed("the layer profile", e)
        after("layer_profile", out["layer_profile"])
    return out
