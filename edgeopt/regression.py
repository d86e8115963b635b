"""The regression gate: is a candidate's latency on a device slower than a baseline's by a meaningful amount?

Two things must agree before a result is called slower (or faster):
- a rank test: Mann-Whitney U, two-sided, at `alpha`, on *block medians*, not raw samples; and
- the size: a circular block-bootstrap 95 % interval of the p50 or p90 ratio (candidate / baseline) that
  lies entirely beyond 1 + effect (or below 1 / (1 + effect) for faster).

Why blocks: consecutive latency samples are autocorrelated (the machine's load drifts; on this VM the
rank autocorrelation is still 0.4 fifty samples apart), so 10 000 samples carry far less information
than 10 000 independent draws. A test on raw samples calls a 0.5 % drift significant; one on block
medians, and a bootstrap that resamples whole blocks, see the drift as the noise it is. The block length
is the first lag at which the rank autocorrelation falls below ACF_LIMIT, at most n / MIN_BLOCKS.
docs/architecture.md ("Regression gate") says why the interval rule and not the point estimate.
"""
from __future__ import annotations

import datetime
import json
import math
import pathlib

import numpy as np

from . import results
from .errors import BadInput

EFFECT = 0.05           # the smallest slowdown worth failing a build for (settable: --min-effect)
ALPHA = 0.05
CONFIDENCE = 0.95
RESAMPLES = 1000
MIN_BLOCKS = 20         # never fewer blocks than this per side, however long the autocorrelation
ACF_LIMIT = 0.1
DRIFTING_BLOCK = 20     # samples per block from which a run's load is said to drift
MIN_SAMPLES = 20
LOAD_CHANGE = 0.5       # a 1-minute load average that moved by half the CPU count is worth a note
FLOOR_RUNS = 5          # runs of the baseline's model (itself and earlier) from which its between-run spread is read
FLOOR_WINDOW = 20       # the newest this many of them
FLOOR_SIGMAS = 3.0      # the spread: this many standard deviations of two runs' difference of log quantiles
# The fields of a result's runtime section that say how it was set up (device_agent/runtimes/*.py describe()), for
# runs of one model as measured; the others are figures of the run (OpenVINO's read_ms, TensorRT's gpu_compute)
RUNTIME_SETUP = ("name", "version", "providers", "threads", "inter_op_threads", "execution_mode", "graph_optimization",
                 "device", "options", "performance_hint", "num_streams", "inference_precision", "inference_num_threads",
                 "execution_precisions", "int8_io", "interpreter", "xnnpack", "api", "settings", "gpu",
                 "compute_capability")
QUANTILES = (("p50", 50.0), ("p90", 90.0))
RULES = ("interval", "point")
SLOWER, FASTER, SAME, UNTESTED = "slower", "faster", "no significant change", "not tested"
INCONCLUSIVE = "inconclusive"   # a quantile's estimate beyond the effect, something moved, the size unconfirmed
_CHUNK = 2_000_000      # bootstrap values held in memory at once


def block_length(samples: np.ndarray) -> int:
    """Samples per block: the first lag where the rank autocorrelation drops below ACF_LIMIT, capped."""
    n = len(samples)
    cap = max(1, n // MIN_BLOCKS)
    ranks = np.unique(samples, return_inverse=True)[1].astype(np.float64)   # ties share a rank
    ranks -= ranks.mean()
    spectrum = np.fft.rfft(ranks, 2 * n)
    acf = np.fft.irfft(spectrum * np.conj(spectrum))[:cap + 1]
    if acf[0] <= 0:          # all samples equal: nothing is correlated
        return 1
    below = np.nonzero(acf[1:] / acf[0] < ACF_LIMIT)[0]
    return int(below[0] + 1) if below.size else cap


def block_medians(samples: np.ndarray, length: int) -> np.ndarray:
    whole = (len(samples) // length) * length
    return np.median(samples[:whole].reshape(-1, length), axis=1)


def bootstrap_quantiles(samples: np.ndarray, length: int, resamples: int, rng) -> np.ndarray:
    """(resamples, len(QUANTILES)) quantiles of circular block-bootstrap resamples of `samples`."""
    n = len(samples)
    blocks = math.ceil(n / length)
    wrapped = np.concatenate([samples, samples[:length]])
    offsets = np.arange(length)
    out = np.empty((resamples, len(QUANTILES)))
    step = max(1, _CHUNK // n)
    for start in range(0, resamples, step):
        m = min(step, resamples - start)
        idx = (rng.integers(0, n, size=(m, blocks))[:, :, None] + offsets).reshape(m, -1)[:, :n]
        out[start:start + m] = np.percentile(wrapped[idx], [q for _, q in QUANTILES], axis=1).T
    return out


def _direction(point: float, low: float, high: float, effect: float, rule: str, floor: float = 0.0) -> str:
    """Slower or faster where the change clears both the effect and the between-run floor (between_run_floor);
    inconclusive where its point estimate is beyond the effect but that is not confirmed."""
    up, down = 1.0 + max(effect, floor), 1.0 / (1.0 + max(effect, floor))
    if rule == "interval":
        shown = SLOWER if low > up else FASTER if high < down else SAME
    else:
        shown = SLOWER if point > up and low > 1.0 else FASTER if point < down and high < 1.0 else SAME
    # A point beyond the effect that the interval (or the runs' own spread) does not confirm is no evidence of "no
    # change" either.
    return INCONCLUSIVE if shown == SAME and not 1.0 / (1.0 + effect) <= point <= 1.0 + effect else shown


def compare_samples(baseline, candidate, effect: float = EFFECT, alpha: float = ALPHA, rule: str = "interval",
                    resamples: int = RESAMPLES, seed: int = 0, floor: dict | None = None) -> dict:
    """The gate on two sample series (in measurement order, milliseconds). Seeded: the same inputs give
    the same verdict, as a CI gate must. floor: the baseline model's between-run spread (between_run_floor), which a
    change must clear beside the effect."""
    from scipy.stats import mannwhitneyu

    base, cand = (np.asarray(s, dtype=np.float64) for s in (baseline, candidate))
    sides = {"baseline": base, "candidate": cand}
    if min(len(base), len(cand)) < MIN_SAMPLES:
        return {"verdict": UNTESTED, "reason": f"fewer than {MIN_SAMPLES} samples on a side"}
    lengths = {k: block_length(v) for k, v in sides.items()}
    medians = {k: block_medians(v, lengths[k]) for k, v in sides.items()}
    p_value = float(mannwhitneyu(medians["candidate"], medians["baseline"], alternative="two-sided").pvalue)
    rng = np.random.default_rng(seed)
    boot = {k: bootstrap_quantiles(v, lengths[k], resamples, rng) for k, v in sides.items()}
    tail = (1 - CONFIDENCE) / 2 * 100
    out = {"test": "Mann-Whitney U, two-sided, on block medians", "p_value": p_value, "alpha": alpha,
           "effect": effect, "rule": rule, "resamples": resamples,
           "bootstrap": "circular block bootstrap, percentile interval",
           "samples": {k: {"n": int(len(v)), "block_length": lengths[k], "blocks": int(len(medians[k]))}
                       for k, v in sides.items()}}
    if floor is not None:
        out["between_runs"] = floor
    for i, (name, q) in enumerate(QUANTILES):
        b, c = float(np.percentile(base, q)), float(np.percentile(cand, q))
        ratios = boot["candidate"][:, i] / boot["baseline"][:, i]
        low, high = (float(x) for x in np.percentile(ratios, [tail, 100 - tail]))
        point = c / b if b > 0 else math.inf
        out[name] = {"baseline_ms": b, "candidate_ms": c, "ratio": point, "ci95": [low, high],
                     "direction": _direction(point, low, high, effect, rule, (floor or {}).get(name, 0.0))}
    out["verdict"], out["reason"] = _verdict(out, p_value, alpha, effect)
    for name, _ in QUANTILES:   # a quantile's interval beyond the effect that the rank test did not confirm
        if out[name]["direction"] in (SLOWER, FASTER) and out["verdict"] not in (SLOWER, FASTER):
            out[name]["direction"] = INCONCLUSIVE   # read "slower" beside the verdict "inconclusive" (a walkthrough)
    return out


def _verdict(out: dict, p_value: float, alpha: float, effect: float) -> tuple:
    directions = {name: out[name]["direction"] for name, _ in QUANTILES}
    if p_value < alpha:
        for verdict in (SLOWER, FASTER):   # slower first: a gate fails on a tail that grew even if the median fell
            which = [name for name, d in directions.items() if d == verdict]
            grew = [name for name, d in directions.items() if d == INCONCLUSIVE and out[name]["ratio"] > 1]
            if which and verdict == FASTER and grew:
                # "faster" of a p50 -8 % beside a p90 +54 % whose interval, +5 %…+59 %, reached inside the effect
                # (a CI walkthrough): a tail that may have grown is no speed-up
                reason = _inconclusive_reason(out, _largest(out, grew), p_value, alpha, effect)
                return INCONCLUSIVE, f"{' and '.join(which)} faster, but {reason}"
            if which:
                return verdict, (f"p={p_value:.3g}; {' and '.join(which)} ratio beyond the {effect:.0%} effect"
                                 f"{_floor_text(out, which, ' and ')} at 95% confidence")
    # Not "no change" either: a point estimate beyond the effect that its interval does not confirm, where the rank
    # test is significant or the interval at least excludes no change (a busy spell moved the tail, not the bulk
    # the rank test reads: p90 +45 %, its interval +41 %…+47 %, p=0.23)
    # Only a slowdown is: a speed-up its interval does not confirm is no regression, and was a skipped JUnit case
    # with "measure again" (a walkthrough: p90 -5.8 %, its interval -11 %…-3 %).
    beyond = [name for name, d in directions.items() if d != SAME]
    moved = [name for name in beyond if out[name]["ratio"] > 1 and (p_value < alpha or _excludes_one(out[name]))]
    if moved:
        return INCONCLUSIVE, _inconclusive_reason(out, _largest(out, moved), p_value, alpha, effect)
    if beyond:   # +57 % read "no significant change" with no word why (a walkthrough)
        return SAME, _unconfirmed_reason(out, _largest(out, beyond), p_value, alpha, effect)
    if p_value >= alpha:
        return SAME, f"rank test not significant (p={p_value:.3g})"
    return SAME, f"significant (p={p_value:.3g}) but within the {effect:.0%} effect"


def _largest(out: dict, names: list) -> str:
    return max(names, key=lambda name: abs(math.log(max(out[name]["ratio"], 1e-12))))


def _unconfirmed_reason(out: dict, name: str, p_value: float, alpha: float, effect: float) -> str:
    """Why a quantile beyond the effect is no verdict: a speed-up not confirmed, or a change the runs cannot tell from
    no change at all (its interval reaches across 1, the rank test sees nothing)."""
    q = out[name]
    low, high = q["ci95"]
    shown = f"p={p_value:.3g}; {name} {q['ratio'] - 1:+.1%}, its 95% interval {low - 1:+.1%}…{high - 1:+.1%}"
    if q["ratio"] < 1:
        held = _floor_text(out, [name], " but within ") if high < 1 / (1 + effect) else ""   # cleared the effect only
        return f"{shown}: faster beyond the {effect:.0%} effect{held}, not confirmed; no slowdown"
    return (f"{shown} includes no change and the rank test on block medians is not significant: these runs cannot "
            f"tell a change from noise; measure baseline and candidate back to back on a quiet device, or for longer")


def _floor_text(out: dict, names: list, joined: str) -> str:
    """The between-run floor a change was held to, where it exceeds the effect: said with the verdict."""
    floor = out.get("between_runs")
    over = [name for name in names if floor and floor[name] > out["effect"]]
    if not over:
        return ""
    spread = "/".join(f"{name} ±{floor[name]:.0%}" for name in over)
    return (f"{joined}the model's own spread between runs ({spread}: {FLOOR_SIGMAS:g} SD of two runs' difference, "
            f"from its {floor['runs']} runs on this device)")


def _excludes_one(q: dict) -> bool:
    """Whether a quantile's interval lies wholly on one side of no change (1.0)."""
    low, high = q["ci95"]
    return low > 1.0 or high < 1.0


def _inconclusive_reason(out: dict, name: str, p_value: float, alpha: float, effect: float) -> str:
    """Why a change beyond the effect was not called slower or faster: its interval (and the runs' drift that
    widened it), or the rank test that did not see it."""
    q = out[name]
    low, high = q["ci95"]
    interval = f"its 95% interval {low - 1:+.1%}…{high - 1:+.1%}"
    reach = max(effect, out.get("between_runs", {}).get(name, 0.0))
    why = f"{interval} reaches inside the {effect:.0%} effect{_floor_text(out, [name], ' or ')}" \
        if low <= 1 + reach and high >= 1 / (1 + reach) else interval
    if p_value >= alpha:
        why += " and the rank test on block medians is not significant: the tail moved, not the bulk"
    lengths = [s["block_length"] for s in out["samples"].values()]
    drift = (f" (the runs drift: blocks of {lengths[0]} and {lengths[1]} samples)"
             if max(lengths) >= DRIFTING_BLOCK else "")
    return (f"p={p_value:.3g}; {name} {q['ratio'] - 1:+.1%}, {why}{drift}; to tell, measure baseline and candidate "
            "back to back on a quiet device, or for longer")


def pick_baseline(candidate: dict, baselines: list) -> tuple:
    """(the baseline document for a candidate, or None and why): the newest of the same device, preferring
    the same bundle name. Another device's result is never a baseline: its speed says nothing of this one's."""
    device = (candidate.get("device") or {}).get("name")
    bundle = (candidate.get("bundle") or {}).get("name")
    # the candidate itself, or its copy in history/ (`--baseline results/`), is no baseline: the gate would
    # compare a measurement with itself and always pass
    others = [b for b in baselines if not same_measurement(b, candidate)]
    of_device = [b for b in others if (b.get("device") or {}).get("name") == device]
    same_device = [b for b in of_device if same_machine(b, candidate)]
    same_bundle = [b for b in same_device if (b.get("bundle") or {}).get("name") == bundle]
    for group in (same_bundle, same_device):
        if group:
            return _newest_before(group, candidate), ""
    # the device's name on another host or other hardware: said, beside (or instead of) the candidate found again
    elsewhere = [b for b in of_device if not same_machine(b, candidate)]
    if len(others) < len(baselines) and not elsewhere:
        return None, (f"the only result of device {device} given as a baseline is this measurement itself (or its "
                      "copy in history/): give an earlier run's result")
    why = "".join(f"; {b.get('_path', 'a baseline')} ran{_elsewhere(b, candidate)}: another machine's speed is no "
                  "baseline" for b in elsewhere[:3])
    return None, f"no baseline result for device {device}" + _on_host(candidate) + why


def same_measurement(a: dict, b: dict) -> bool:
    """Whether two result documents are one measurement (a file and its copy in history/): the same creation
    time, to the microsecond, of the same bundle build on the same device and host, with the same samples."""
    def identity(doc):
        return (doc.get("created"), results.section(doc, "device").get("name"), hostname(doc),
                results.section(doc, "bundle").get("manifest_sha256"), results.section(doc, "latency").get("samples_ms"))
    return a.get("created") is not None and identity(a) == identity(b)


def _newest_before(group: list, candidate: dict) -> dict:
    """The newest result created before the candidate; where none is older (baseline files measured after it,
    an A/B in either order), the newest of them. By time, not text: "…Z" and "+02:00" sort as they should."""
    created = _when(candidate)
    older = [b for b in group if created is not None and (_when(b) or created) < created]
    return max(older or group, key=lambda b: _when(b) or datetime.datetime.min.replace(tzinfo=datetime.timezone.utc))


def _when(doc: dict):
    """A result's `created` as an aware time (a zoneless one taken as UTC), or None where it has none."""
    when = results.parse_time(doc.get("created"))
    return when.replace(tzinfo=datetime.timezone.utc) if when is not None and when.tzinfo is None else when


def hostname(doc: dict):
    """The machine a result was measured on, as its agent saw it; None for a result that does not say."""
    name = (doc.get("device") or {}).get("hostname") if isinstance(doc.get("device"), dict) else None
    return name if isinstance(name, str) and name else None


def same_host(a: dict, b: dict) -> bool:
    """Whether two results of one device name ran on one machine: `local` is every teammate's laptop and every
    CI runner, so a device name alone is no device. A result that records no host matches any (older files)."""
    return hostname(a) is None or hostname(b) is None or hostname(a) == hostname(b)


def _on_host(doc: dict) -> str:
    return f" on host {hostname(doc)}" if hostname(doc) else ""


# What a machine's speed rests on, as its agent records it: a CI runner of one host name on another VM type (an
# 8-CPU Xeon's store, then a 2-CPU EPYC) was called 20 % slower without a word (a CI walkthrough)
HARDWARE = (("cpu_model", "CPU"), ("arch", "arch"), ("logical_cpus", "logical CPUs"), ("usable_cpus", "usable CPUs"))


def hardware(doc: dict) -> dict:
    """The device's hardware as the result records it (HARDWARE's fields that it has)."""
    device = doc.get("device") if isinstance(doc.get("device"), dict) else {}
    return {key: device[key] for key, _ in HARDWARE if isinstance(device.get(key), (str, int))
            and not isinstance(device.get(key), bool)}


def same_hardware(a: dict, b: dict) -> bool:
    """Whether two results ran on the same hardware, by every field both record (an older file records fewer)."""
    ha, hb = hardware(a), hardware(b)
    return all(ha[k] == hb[k] for k in ha.keys() & hb.keys())


def hardware_text(doc: dict) -> str:
    h = hardware(doc)
    return ", ".join(f"{h[key]} {name}" if isinstance(h[key], int) else str(h[key]) for key, name in HARDWARE
                     if key in h) or "unrecorded hardware"


def same_machine(a: dict, b: dict) -> bool:
    """Whether two results of one device name ran on one machine: its host and its hardware."""
    return same_host(a, b) and same_hardware(a, b)


def _elsewhere(base: dict, candidate: dict) -> str:
    """Where a result of the candidate's device name ran that is no baseline for it: another host, or other
    hardware under the same host name."""
    if not same_host(base, candidate):
        return _on_host(base)
    return f"{_on_host(base)} on {hardware_text(base)}, this run on {hardware_text(candidate)}"


# "store": the last good result of the bundle on its device, host and hardware; "store:hardware": of any host of the
# same hardware, for CI runners whose host name changes every job (the gate tested nothing there, and passed)
STORE_BASELINES = ("store", "store:last-good", "store:hardware")


def gate(docs: list, baseline, effect: float | None = None, store_url: str | None = None,
         results_dir="results") -> list:
    """The gate for each ok candidate document against its baseline: result files or run directories
    (`baseline` a path or a list of them), or "store" (the last good result in the results store)."""
    effect = EFFECT if effect is None else effect
    if not (isinstance(effect, (int, float)) and 0 <= effect < 10):
        raise BadInput(f"--min-effect must be a fraction in [0, 10), got {effect!r}")
    specs = [baseline] if isinstance(baseline, (str, pathlib.Path)) else list(baseline)
    store = None
    if any(str(s) in STORE_BASELINES for s in specs):
        if len(specs) > 1:
            raise BadInput("--baseline store cannot be combined with baseline files")
        from .store import Store, default_url
        store = Store(store_url or default_url(results_dir), create=False)   # a mistyped one is no baseline
        any_host = str(specs[0]) == "store:hardware"
        find = lambda doc: _store_baseline(store, doc, any_host)
        found_in = "the results store"
    else:
        try:
            pool = [results.load(p) for p in results.expand(specs)] + _histories(specs, docs)
        except BadInput as e:   # "result file not found: x.json" said not which of the command's files it was
            raise BadInput(f"--baseline: {e}") from None
        ok = [b for b in pool if b.get("status") == "ok"]
        find = lambda doc: (*pick_baseline(doc, ok), ok)
        found_in = "the baseline files"
    try:
        found = [(doc, *find(doc)) for doc in docs if doc.get("status") == "ok"]
    finally:
        if store is not None:
            store.close()
    if store is None and found and all(base is None for _, base, _, _ in found):
        # baseline files given by hand that match no result: the gate would test nothing and pass quietly
        raise BadInput(f"--baseline {', '.join(map(str, specs))}: no baseline for any result given ({found[0][2]})")
    entries = [_regression_entry(doc, base, why, effect, between_run_floor(base, runs, found_in, doc))
               for doc, base, why, runs in found]
    if store is None and entries and all(e.get("no_samples") for e in entries):   # nor any it can compare
        raise BadInput(f"--baseline {', '.join(map(str, specs))}: no result could be tested ({entries[0]['reason']})")
    return entries


def _histories(specs: list, docs: list) -> list:
    """The documents of the earlier runs of the candidates' bundles that a results folder given as the baseline
    keeps in its history/ (results.save): `--baseline results/` found only each bundle's latest file, which is the
    candidate itself, and took another bundle measured after it."""
    stems = {f"{results.file_stem(str((d.get('bundle') or {}).get('name')))}@"
             f"{results.file_stem(str((d.get('device') or {}).get('name')))}-" for d in docs}
    found = []
    for spec in specs:
        history = pathlib.Path(spec) / "history"
        if pathlib.Path(spec).is_dir() and history.is_dir():
            found += sorted(p for p in history.glob("*.json") if p.is_file() and p.name.startswith(tuple(stems)))
    loaded = []
    for path in found:   # files the user did not name: one unreadable old run is no reason to refuse the gate
        try:
            loaded.append(results.load(path))
        except BadInput:
            continue
    return loaded


def _store_baseline(store, doc: dict, any_host: bool = False) -> tuple:
    """(the last good result of the candidate's bundle on its device, host (any host with any_host) and hardware,
    created before it, or None; why not; those results before it, for the model's between-run spread)."""
    bundle, device = (doc.get("bundle") or {}).get("name"), (doc.get("device") or {}).get("name")
    profile = results.bundle_profile(doc)
    texts = {k: v for k, v in hardware(doc).items() if isinstance(v, str)}   # in SQL; the CPU counts below
    found = lambda host, alike: store.good_results(bundle, device, str(doc.get("created") or ""), host, profile,
                                                   limit=3 * FLOOR_WINDOW,   # room for other models of that name
                                                   hardware=texts if alike else None)
    runs = [r for r in found(None if any_host else hostname(doc), True) if same_hardware(r, doc)]
    if runs:
        return results.validate(runs[0], f"{runs[0]['_path']} (from the results store)"), "", runs
    made_for = f" for profile {profile}" if profile else ""
    host = None if any_host or not hostname(doc) else f"host {hostname(doc)}"
    why = (f"the store holds no ok result of {bundle}{made_for} on {device} "
           f"({'; '.join(filter(None, (host, hardware_text(doc))))}) before this one")
    other = [] if any_host else found(hostname(doc), False)
    if other:   # one host name, other hardware: a CI runner's name on another VM type
        why += f" (its results of {device}{_on_host(doc)} ran on {hardware_text(other[0])})"
    elif not any_host and hostname(doc):   # a host name that changes every job: the gate never tested anything
        alike = [r for r in found(None, True) if same_hardware(r, doc)]
        if alike:
            hosts = sorted({hostname(r) or "?" for r in alike})
            why += (f"; it holds {len(alike)} of other hosts of the same hardware ({', '.join(hosts[:3])}"
                    f"{', …' if len(hosts) > 3 else ''}): `--baseline store:hardware` compares with those (CI "
                    "runners whose host name changes every job)")
    return None, why, []


def _samples(doc: dict) -> np.ndarray | None:
    """latency.samples_ms as floats; None if the result has none. A malformed list is refused."""
    raw = results.section(doc, "latency").get("samples_ms")
    if raw is None:
        return None
    ok = isinstance(raw, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in raw)
    arr = np.asarray(raw, dtype=np.float64) if ok else None
    if arr is None or not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise BadInput(f"{doc.get('_path', 'a result')}: latency.samples_ms must be a list of finite numbers >= 0")
    return arr


def _regression_entry(doc: dict, base: dict | None, why: str, effect: float, floor: dict | None = None) -> dict:
    entry = {"result": doc.get("_path"), "bundle": (doc.get("bundle") or {}).get("name"),
             "device": (doc.get("device") or {}).get("name"), "created": doc.get("created")}
    if base is None:
        return dict(entry, verdict=UNTESTED, reason=why)
    entry["baseline"] = {"result": base.get("_path"), "bundle": (base.get("bundle") or {}).get("name"),
                         "created": base.get("created")}
    cand_samples, base_samples = _samples(doc), _samples(base)
    if cand_samples is None or base_samples is None:
        lacking = [d.get("_path") or what for d, what, samples in ((base, "the baseline", base_samples),
                                                                  (doc, "the result", cand_samples)) if samples is None]
        return dict(entry, verdict=UNTESTED, reason=f"no latency.samples_ms in {' and '.join(map(str, lacking))}",
                    no_samples=True)
    return dict(entry, notes=environment_notes(base, doc),
                **compare_samples(base_samples, cand_samples, effect, floor=floor))


def between_run_floor(baseline: dict | None, pool: list, found_in: str, candidate: dict) -> dict | None:
    """How far the baseline's model moves between runs on its device, per quantile, as a fraction: FLOOR_SIGMAS
    standard deviations of the difference of two runs' log p50/p90, the deviation estimated from the newest
    FLOOR_WINDOW runs up to the baseline in `pool` (the store's rows or the baseline files and their history/): the
    runs' MAD x 1.4826, corrected for few runs (x n/(n - 0.8)), x sqrt(2) since the gate compares two runs, not a run
    with a known level. None with fewer than FLOOR_RUNS dated runs, or where the baseline or the candidate has no
    time (no run could be told as before the baseline, nor the candidate told apart). The candidate is none of them.
    Why: the bootstrap sees one run's noise; on a shared VM the same bundle's p50 moved 0.018-0.030 ms between runs
    seconds apart, and a 5% effect called unchanged runs slower (docs/architecture.md, "Regression gate")."""
    key, until = (_measured_as(baseline), _when(baseline)) if baseline is not None else ((None,), None)
    if key[0] is None or until is None or _when(candidate) is None:
        return None
    runs = {}
    for doc in pool:
        when = _when(doc)
        if doc.get("status") != "ok" or when is None or when > until or _measured_as(doc) != key \
                or same_measurement(doc, candidate):
            continue
        try:
            samples = _samples(doc)
        except BadInput:   # another run's malformed samples: left out of the spread, not a refusal of the gate
            continue
        if samples is not None and len(samples) >= MIN_SAMPLES and np.all(samples > 0):
            runs[(when, hostname(doc))] = samples   # a file and its copy in history/: one run
    newest = [runs[k] for k in sorted(runs, key=lambda k: k[0], reverse=True)[:FLOOR_WINDOW]]
    if len(newest) < FLOOR_RUNS:
        return None
    n = len(newest)
    floor = {"runs": n, "from": found_in}
    for name, q in QUANTILES:
        logs = np.log([np.percentile(samples, q) for samples in newest])
        sd = 1.4826 * float(np.median(np.abs(logs - np.median(logs)))) * n / (n - 0.8)
        floor[name] = math.expm1(FLOOR_SIGMAS * math.sqrt(2) * sd)
    return floor


def _measured_as(doc: dict) -> tuple:
    """What a run measured, for runs of one model: its model files (model_sha256; the bundle's manifest for results
    before it), device, host, the runtime as configured (name, version, providers, execution settings: a CUDA run
    beside CPU runs made every slowdown look like noise) and the settings that change what runs (threads, runtime
    options). A first element None: the result does not say."""
    bundle, settings, runtime = (results.section(doc, k) for k in ("bundle", "settings", "runtime"))
    setup = {k: runtime.get(k) for k in RUNTIME_SETUP}   # not its per-run figures (read_ms, gpu_compute, model_cache)
    configured = json.dumps([setup, settings.get("threads"), settings.get("runtime_options")], sort_keys=True,
                            default=str)
    return (bundle.get("model_sha256") or bundle.get("manifest_sha256"), results.section(doc, "device").get("name"),
            hostname(doc), configured)


def _source_model(doc: dict) -> str | None:
    """The model a result's bundle was packaged from, as its file name (a CI runner's checkout moves between runs)
    and callable: `nets.py:lstm`, `model.onnx`."""
    reference = results.section(results.section(doc, "bundle"), "source").get("reference")   # a store's row too
    if not isinstance(reference, str) or not reference:
        return None
    path, sep, attribute = reference.rpartition(":")
    return f"{pathlib.PurePath(path).name}:{attribute}" if sep and path.endswith(".py") else \
        pathlib.PurePath(reference).name


def environment_notes(base: dict, cand: dict) -> list:
    """What differed in the device's state at the two starts (results' `environment`): the gate compares
    runs, and a run on a busier device or under another governor is slower for that reason alone."""
    envs = [d.get("environment") if isinstance(d.get("environment"), dict) else {} for d in (base, cand)]
    cpus = (cand.get("device") or {}).get("logical_cpus")
    notes = []
    loads = [e.get("load_1m") for e in envs]
    if all(isinstance(x, (int, float)) for x in loads) and isinstance(cpus, int) and cpus > 0 \
            and abs(loads[1] - loads[0]) > LOAD_CHANGE * cpus:
        notes.append(f"load average {loads[0]:.1f} -> {loads[1]:.1f} on {cpus} CPUs: part of the change may be "
                     f"the device's other work")
    governors = [sorted({str(p.get("governor")) for p in results.section(e, "cpufreq").values()
                         if isinstance(p, dict)}) for e in envs]
    if all(governors) and governors[0] != governors[1]:
        notes.append(f"CPU governor {'/'.join(governors[0])} -> {'/'.join(governors[1])}")
    for what, (was, now) in (("threads", [results.section(d, "settings").get("threads") for d in (base, cand)]),
                             ("runtime", [results.runtime_text(d) for d in (base, cand)])):
        if was is not None and now is not None and was != now:
            notes.append(f"{what} {was} -> {now}: part of the change may be the setting's, not the model's")
    for which, doc in (("baseline", base), ("candidate", cand)):   # the agent's own doubt, beside the verdict
        noisy = [w for w in doc.get("warnings") or [] if isinstance(w, str) and w.startswith(results.NOISY)]
        if noisy:   # a CI job's run flagged noisy was called 29 % slower with no word of it (a walkthrough)
            notes.append(f"the {which}'s run was flagged by its agent ({noisy[0]}): the verdict rests on a run "
                         "whose spread is wide")
    was, now = (_when(d) for d in (base, cand))
    if was is not None and now is not None and was > now:   # an A/B in either order; or a report of history/,
        notes.append("the baseline was measured after the candidate: the verdict reads the change backwards in "
                     "time")   # whose oldest run was gated against a later one unsaid (a clock walkthrough)
    was, now = (_source_model(d) for d in (base, cand))
    if was is not None and now is not None and was != now:   # one bundle name packaged from two models
        notes.append(f"source {was} -> {now}: the baseline was packaged from another model under that bundle name")
    was, now = (results.bundle_variant(d) for d in (base, cand))
    if was is not None and now is not None and was != now:   # one name, two kinds of bundle (-o a/model, b/model)
        names = [(d.get("bundle") or {}).get("name") for d in (base, cand)]
        of = "of that name" if names[0] == names[1] else f"({names[0]})"
        notes.append(f"bundle {was} -> {now}: the baseline is another kind of bundle {of}, so the change is "
                     "mostly the compression's")
    return notes
