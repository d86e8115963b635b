"""Per-layer profile: a short pass with the runtime's own profiler, run after the timed loop (profiling
slows inference, so it never runs during it), summarised as the layers that took the most time.

Adapters hand over per-layer totals over `runs` profiled inferences; this module turns them into the
result's `layer_profile` section: the top layers by time (name, op type, mean ms per inference, share of
the layers' total), the rest as one count, and the total.
"""
TOP = 20            # layers listed by name; the rest are counted
PROFILE_RUNS = 50   # profiled inferences (fewer when the loop settings ask for fewer timed ones)
WARMUP_RUNS = 2     # unprofiled-in-the-figures runs first: the first inference of a fresh session is slow
NOT_ASKED = "not asked (bench --profile-layers measures it)"


def profile_runs(settings):
    return max(1, min(PROFILE_RUNS, settings.min_iterations))


def summarize(totals, runs, method, top=TOP):
    """totals: {layer name: (op type, total ms over `runs` inferences)}. Returns the result section."""
    if not totals:
        return {"available": False, "reason": "the profiler reported no executed layers"}
    total_ms = sum(ms for _, ms in totals.values())
    if total_ms <= 0:  # shares of nothing would be invented
        return {"available": False, "reason": "the profiler timed every layer at 0 (below its resolution)"}
    ranked = sorted(totals.items(), key=lambda item: (-item[1][1], item[0]))
    listed = [{"name": name, "op_type": op, "mean_ms": ms / runs, "share_pct": ms / total_ms * 100.0}
              for name, (op, ms) in ranked[:top]]
    rest = ranked[top:]
    rest_ms = sum(ms for _, (_, ms) in rest)
    return {"available": True, "method": method, "runs": runs, "layer_count": len(ranked),
            "total_ms": total_ms / runs, "layers": listed,
            "others": {"count": len(rest), "mean_ms": rest_ms / runs, "share_pct": rest_ms / total_ms * 100.0}}


def add(totals, name, op_type, ms):
    """Accumulate one layer's time (a layer may run several kernels, or appear once per run)."""
    op, before = totals.get(name, (op_type, 0.0))
    totals[name] = (op, before + ms)
