"""The report as format-neutral rows: plain dicts and lists that html.py, markdown.py and csvfile.py render.

Built from result documents (validated by edgeopt.results.load), their budget check (edgeopt.api.check) and
the results store's history rows. Nothing here formats text or draws. Fields the shared result schema
(results.FIELDS) does not declare but the report reads — raw samples, memory steps, idle power,
temperatures — are checked here, and a malformed one is refused in one line naming the file and field.
"""
from __future__ import annotations

import datetime
import math
import pathlib

import numpy as np

from .. import results
from ..budgets import number_in, shown
from ..errors import BadInput
from ..regression import hostname
from . import timelines
from .changes import change_points, noise, segments

EXIT_MEANING = {0: "every budget holds", 1: "a budget failed or was not measured", 3: "a device produced no result (one or more)"}

ECDF_POINTS = 300       # enough for a smooth step curve at screen width; keeps the SVG small
TIMELINE_BINS = 120     # latency over the run: median and p10-p90 per bin of consecutive runs
PERCENTILES = ("p50_ms", "p90_ms", "p99_ms")


def figure(doc: dict, dotted: str, low: float = 0.0, high: float = math.inf):
    """A number the report reads beyond results.FIELDS: None when absent or null, refused when malformed."""
    node = doc
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return checked(doc, dotted, node, low, high)


def _object(doc: dict, name: str, value) -> dict:
    """`value` (field `name` of `doc`) as an object; {} when null; refused, naming the file and field, otherwise."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadInput(f"{doc.get('_path', 'result')}: {name} must be an object, got {shown(value)}")
    return value


def checked(doc: dict, name: str, value, low: float = 0.0, high: float = math.inf):
    """`value` (field `name` of `doc`) as a float; None when null; refused, naming the file and field, when malformed."""
    if value is None:
        return None
    number = number_in(value, low, high)
    if number is None:
        raise BadInput(f"{doc.get('_path', 'result')}: {name} must be a finite number in [{low:g}, {high:g}], "
                       f"got {shown(value)}")
    return number


def samples(doc: dict):
    """latency.samples_ms in run order as an array, or (None, reason)."""
    lat = doc.get("latency") or {}
    raw = lat.get("samples_ms")
    if raw is None:
        why = "the run failed" if doc.get("status") != "ok" else "no raw samples in the result (latency.samples_ms)"
        return None, why
    where = doc.get("_path", "result")
    if not isinstance(raw, list) or not raw:
        raise BadInput(f"{where}: latency.samples_ms must be a non-empty list of numbers, got {shown(raw)}")
    bad = next((i for i, v in enumerate(raw) if number_in(v, 0.0, math.inf) is None), None)   # bools too
    if bad is not None:
        raise BadInput(f"{where}: latency.samples_ms must hold finite numbers >= 0, got {shown(raw[bad])} "
                       f"(sample {bad})")
    return np.asarray(raw, dtype=np.float64), None


def label(doc: dict) -> dict:
    """Who and where: bundle, device, fleet run id (a result inside a fleet run directory), file. `device` is the
    name the HTML and Markdown show, with the bundle's profile and/or the run's time where other results of the
    report share its bundle and device name (`distinguish`); `device_name` the device's own, which CSV and JSON
    give (`machine_rows`); `profile_apart`: the profile, where profiles tell it apart."""
    path = pathlib.Path(doc.get("_path", ""))
    run = path.parent.name if (path.parent / "run.json").is_file() else None
    device = (doc.get("device") or {}).get("name") or "?"
    return {"bundle": (doc.get("bundle") or {}).get("name") or "?",
            "device": f"{device} ({doc['_apart']})" if doc.get("_apart") else device, "device_name": device,
            "profile": results.bundle_profile(doc), "profile_apart": doc.get("_profile_apart"), "run": run,
            "result": str(path), "created": doc.get("created") if isinstance(doc.get("created"), str) else None}


def distinguish(docs: list) -> None:
    """Results of one bundle name on one device (one name packaged for several profiles, or runs of one bundle)
    were shown alike: a legend of "local local local", three identical drift panels. Each such result gets what
    tells it apart as doc["_apart"]: its bundle's profile where profiles differ, its host where hosts do, its run's
    time (UTC) where these leave two alike."""
    alike = {}
    for doc in docs:
        key = ((doc.get("bundle") or {}).get("name"), (doc.get("device") or {}).get("name"))
        alike.setdefault(key, []).append(doc)
    for group in (g for g in alike.values() if len(g) > 1):
        profiles = [results.bundle_profile(d) for d in group]
        hosts = [hostname(d) for d in group]   # `local` of two machines in one second read alike (a walkthrough)
        by_profile, by_host = len(set(profiles)) > 1, len(set(hosts)) > 1
        kinds = [(p if by_profile else None, h if by_host else None) for p, h in zip(profiles, hosts)]
        for doc, (profile, host) in zip(group, kinds):
            when = utc_time(doc.get("created"), seconds=True)
            parts = [x for x in (profile, host) if x] + ([when] if when and kinds.count((profile, host)) > 1 else [])
            doc["_apart"] = ", ".join(parts) or None
            doc["_profile_apart"] = profile


def utc_time(created, seconds: bool = False) -> str | None:
    """An ISO time as `YYYY-MM-DD HH:MM[:SS]` in UTC (a time with another offset converted), None if absent; text
    that is no time, cut as it stands."""
    if not isinstance(created, str) or not created:
        return None
    when = results.parse_time(created)
    if when is None:
        return created[:19 if seconds else 16].replace("T", " ")
    if when.tzinfo is not None:
        when = when.astimezone(datetime.timezone.utc)
    return when.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def quantile_change(q: dict) -> str:
    """A regression gate's quantile, to 4 significant figures: `0.02 → 0.024 (+20.0%, CI +18.1%…+22.0%)`
    (`.4f` wrote a 1 s model's p90 as 1000.8804, which pushed the verdict off a report's page: a walkthrough)."""
    low, high = q["ci95"]
    return (f"{q['baseline_ms']:.4g} → {q['candidate_ms']:.4g} ({q['ratio'] - 1:+.1%}, "
            f"CI {low - 1:+.1%}…{high - 1:+.1%})")


def within_effect(e: dict) -> str | None:
    """"no change beyond the 5% effect" for a significant change inside --min-effect, else None."""
    if e["verdict"] == "no significant change" and e["p_value"] < e["alpha"] and not undecided(e):
        return f"no change beyond the {e['effect']:.0%} effect"
    return None


def undecided(e: dict) -> str | None:
    """"inconclusive", "not confirmed" (a quantile beyond the effect, no verdict), or None: a verdict whose reason
    is shown beside it."""
    if e["verdict"] == "inconclusive":
        return "inconclusive"
    moved = e["verdict"] == "no significant change" and any(
        (e.get(q) or {}).get("direction") == "inconclusive" for q in ("p50", "p90"))
    return "not confirmed" if moved else None


def machine_rows(summary: list) -> list:
    """The summary rows for CSV and JSON: each device by its own name (the shown one under `shown`)."""
    return [dict(r, device=r["device_name"], shown=r["device"]) for r in summary]


def samples_per_call(doc: dict) -> int | None:
    """The samples one timed call carries: the leading dim the bundle's inputs share (1 included). None for
    inputs that disagree, or a result of an agent that did not record the inputs."""
    inputs = (doc.get("bundle") or {}).get("inputs") if isinstance(doc.get("bundle"), dict) else None
    if not isinstance(inputs, list) or not inputs:
        return None
    leading = {i["shape"][0] if isinstance(i, dict) and isinstance(i.get("shape"), list) and i["shape"]
               and isinstance(i["shape"][0], int) and not isinstance(i["shape"][0], bool) else None for i in inputs}
    return next(iter(leading)) if len(leading) == 1 else None


def batch(doc: dict) -> int | None:
    """samples_per_call where it is above 1 (`package --input-shape image=4,...`), so that a latency is read as a
    call's, not a sample's; else None."""
    n = samples_per_call(doc)
    return n if n is not None and n > 1 else None


def verdict(entry: dict) -> str:
    """unreadable (its file) | failed (no result) | fail | unmeasured | pass | none (no budgets)."""
    if entry["status"] == results.UNREADABLE:
        return "unreadable"
    if entry["status"] != "ok":
        return "failed"
    states = {r["status"] for r in entry["budgets"]}
    for state in ("fail", "unmeasured", "pass"):
        if state in states:
            return state
    return "none"


def summary_row(doc: dict, entry: dict) -> dict:
    lat = doc.get("latency") or {}
    ci = lat.get("ci95") if isinstance(lat.get("ci95"), dict) else {}
    p90_ci = ci.get("p90_ms") if isinstance(ci.get("p90_ms"), list) and len(ci["p90_ms"]) == 2 else None
    if figure(doc, "latency.p90_ms") is None:   # an interval around an absent figure read "— [0.0191–0.0192]"
        p90_ci = None
    if p90_ci is not None:
        p90_ci = [checked(doc, "latency.ci95.p90_ms", v) for v in p90_ci]
    return dict(label(doc), status=doc.get("status"), verdict=verdict(entry), budgets=entry["budgets"], batch=batch(doc),
                call_samples=samples_per_call(doc),
                n=None if figure(doc, "latency.n") is None else int(figure(doc, "latency.n")), p50_ms=figure(doc, "latency.p50_ms"), p90_ms=figure(doc, "latency.p90_ms"),
                p90_ci95=p90_ci, p99_ms=figure(doc, "latency.p99_ms"), mean_ms=figure(doc, "latency.mean_ms"),
                cv=figure(doc, "latency.cv"), first_inference_ms=figure(doc, "latency.first_inference_ms"),
                peak_rss_mb=figure(doc, "memory.peak_rss_mb"), size_mb=figure(doc, "bundle.artifact_mb"),
                top1=figure(doc, "accuracy.top1", 0.0, 1.0), power_w=figure(doc, "power.mean_w"),
                energy_mj=figure(doc, "power.energy_mj_per_inference"), throughput_fps=figure(doc, "throughput.fps"),
                throttled=results.throttled(doc), thermal_measured=results.thermal_measured(doc),
                runtime=_runtime(doc),
                # check's: the result's own and those check adds (a tail budget on a percentile with no interval)
                warnings=list(entry.get("warnings", doc.get("warnings")) or []), error=(doc.get("error") or {}).get("message"),
                absent=_absent_reasons(doc))


def _runtime(doc: dict) -> str | None:
    """`onnxruntime 1.32.0 ×2`: a LiteRT bundle measured beside ONNX Runtime ones looked like them in the summary."""
    threads = results.section(doc, "settings").get("threads")
    runtime = results.runtime_text(doc)
    return None if runtime is None else runtime + (f" ×{threads}" if isinstance(threads, int) else "")


def _absent_reasons(doc: dict) -> dict:
    """{column: why it is empty} for the summary's figures a result says it left out (p99 on too few samples, FPS
    not asked, top-1 not evaluated), so that a table's "—" can be read."""
    lat, thr, acc, power = (doc.get(k) if isinstance(doc.get(k), dict) else {}
                            for k in ("latency", "throughput", "accuracy", "power"))
    reasons = {"p99": lat.get("p99_ms_absent") if lat.get("p99_ms") is None else None,
               "FPS": thr.get("reason") if thr.get("available") is False else None,
               "top-1": acc.get("reason") if acc.get("available") is False else None,
               "W": power.get("reason") if power.get("available") is False else None,
               "mJ / inference": power.get("energy_mj_per_inference_absent")}
    return {k: v for k, v in reasons.items() if isinstance(v, str) and v}


def ecdf(sorted_ms: np.ndarray, points: int = ECDF_POINTS) -> list:
    """[(ms, fraction <= ms)] at up to `points` evenly spaced ranks, always including min and max."""
    n = sorted_ms.size
    idx = np.unique(np.linspace(0, n - 1, min(n, points)).round().astype(int))
    return [(float(sorted_ms[i]), (i + 1) / n) for i in idx]


def timeline(run_ms: np.ndarray, bins: int = TIMELINE_BINS) -> dict:
    """Latency over the run: per bin of consecutive runs the p10, median and p90; and the drift, the median of
    the last quarter of runs against the first quarter (a rise means slowing down: heat, throttling, other load)."""
    n = run_ms.size
    edges = np.linspace(0, n, min(n, bins) + 1).round().astype(int)
    rows = []
    for a, b in zip(edges, edges[1:]):
        if b > a:
            p10, med, p90 = np.percentile(run_ms[a:b], (10, 50, 90))
            rows.append({"start": int(a), "end": int(b), "p10": float(p10), "median": float(med), "p90": float(p90)})
    quarter = max(1, n // 4)
    first, last = float(np.median(run_ms[:quarter])), float(np.median(run_ms[-quarter:]))
    out = {"n": int(n), "bins": rows, "first_quarter_median_ms": first, "last_quarter_median_ms": last,
           "drift_pct": (last / first - 1.0) * 100.0 if first > 0 else None}
    if n < MIN_DRIFT_RUNS:   # one run read "drift +0.0 %", three "-45.5 %": a figure of nothing
        out.update(drift_pct=None, drift_absent=f"{n} run{'s' if n != 1 else ''}: drift needs {MIN_DRIFT_RUNS} or more "
                                                f"(a median of {MIN_DRIFT_RUNS // 4} runs in each quarter)")
    return out


MIN_DRIFT_RUNS = 40


def latency_row(doc: dict) -> dict:
    row = label(doc)
    run_ms, reason = samples(doc)
    if run_ms is None:
        return dict(row, absent=reason)
    lat = doc["latency"]
    ci = lat.get("ci95") if isinstance(lat.get("ci95"), dict) else {}
    marks = {}
    for key in PERCENTILES:
        value = figure(doc, f"latency.{key}")
        if value is not None:
            interval = ci.get(key)   # a pair, or no interval: a list of another length was indexed as one
            interval = ([checked(doc, f"latency.ci95.{key}", v) for v in interval]
                        if isinstance(interval, list) and len(interval) == 2 else None)
            marks[key] = {"value": value, "ci95": interval}
        else:
            marks[key] = {"absent": lat.get(f"{key}_absent", "not in the result")}
    sorted_ms = np.sort(run_ms)
    return dict(row, n=int(run_ms.size), ecdf=ecdf(sorted_ms), percentiles=marks, timeline=timeline(run_ms),
                throttled=results.throttled(doc),
                min_ms=float(sorted_ms[0]), max_ms=float(sorted_ms[-1]),
                p999_ms=float(np.percentile(sorted_ms, 99.9)), stopped_by=lat.get("stopped_by"))


def power_row(doc: dict) -> dict:
    p = doc.get("power") if isinstance(doc.get("power"), dict) else {}
    row = dict(label(doc), throttled=results.throttled(doc))
    if doc.get("status") != "ok" or not p:
        return dict(row, available=False, reason="the run failed" if doc.get("status") != "ok" else "no power section")
    if p.get("available") is False:
        return dict(row, available=False, reason=p.get("reason", "not measured"))
    return dict(row, **timelines.power(doc, p), available=True, sensor=f"{p.get('reader', '?')}: {p.get('total', '?')}",
                idle_w=figure(doc, "power.idle_w"), mean_w=figure(doc, "power.mean_w"), peak_w=figure(doc, "power.peak_w"),
                energy_mj=figure(doc, "power.energy_mj_per_inference"),
                dynamic_energy_mj=figure(doc, "power.dynamic_energy_mj_per_inference", -math.inf),
                samples=figure(doc, "power.samples"))


def thermal_row(doc: dict) -> dict:
    t = doc.get("thermal") if isinstance(doc.get("thermal"), dict) else {}
    row = dict(label(doc), throttled=results.throttled(doc))
    if doc.get("status") != "ok" or not t or t.get("available") is False:
        return dict(row, available=False, reason=t.get("reason", "the run failed" if doc.get("status") != "ok"
                                                       else "no thermal section"))
    start, end = t.get("start_c") or {}, t.get("end_c") or {}   # objects: results.FIELDS
    zones = {z: tuple(checked(doc, f"thermal.{side}[{z!r}]", part.get(z), -273.15, 1000.0)
                      for side, part in (("start_c", start), ("end_c", end)))
             for z in sorted(set(start) | set(end))}
    freq = {}
    for name, f in (t.get("cpufreq") or {}).items():
        f = _object(doc, f"thermal.cpufreq[{name!r}]", f)
        during = _object(doc, f"thermal.cpufreq[{name!r}].during_mhz", f.get("during_mhz"))
        freq[name] = {k: checked(doc, f"thermal.cpufreq[{name!r}].{k}", v) for k, v in
                      (("before_mhz", f.get("before_mhz")), ("after_mhz", f.get("after_mhz")),
                       ("hw_max_mhz", f.get("hw_max_mhz")), ("min", during.get("min")), ("mean", during.get("mean")),
                       ("max", during.get("max")))}
    lines = timelines.thermal(doc, t, {name: f["hw_max_mhz"] for name, f in freq.items()})
    return dict(row, **lines, available=True, zones=zones, cpufreq=freq,
                reason=None if zones else t.get("start_c_absent", "no thermal zones"))


def _unmeasured(doc: dict, name: str):
    """(section, None) when measured, else (None, the reason it is absent) for a pass's section."""
    section = doc.get(name) if isinstance(doc.get(name), dict) else None
    if section is None:
        return None, f"no {name} section (measured by an agent before the {name} pass existed)"
    if section.get("available") is False:
        return None, section.get("reason", "not measured")
    return section, None


def throughput_row(doc: dict) -> dict:
    """FPS with several inferences in flight, and how it was run; or the reason it is absent."""
    t, reason = _unmeasured(doc, "throughput")
    if t is None:
        return dict(label(doc), available=False, reason=reason)
    return dict(label(doc), available=True, fps=figure(doc, "throughput.fps"), reason=t.get("fps_absent"),
                completed=figure(doc, "throughput.completed"), duration_s=figure(doc, "throughput.duration_s"),
                concurrency=figure(doc, "throughput.concurrency", 1.0), method=t.get("method"),
                request_latency_median_ms=figure(doc, "throughput.request_latency_median_ms"))


def layer_profile_row(doc: dict) -> dict:
    """The top layers by time (validated by results.load: layer_profile.layers) and the rest as one count."""
    p, reason = _unmeasured(doc, "layer_profile")
    if p is None:
        return dict(label(doc), available=False, reason=reason)
    return dict(label(doc), available=True, method=p.get("method"), runs=figure(doc, "layer_profile.runs", 1.0),
                total_ms=figure(doc, "layer_profile.total_ms"), layers=list(p.get("layers") or []),
                others_count=int(figure(doc, "layer_profile.others.count") or 0),
                others_share_pct=figure(doc, "layer_profile.others.share_pct", 0.0, 100.0))


MEMORY_STEPS = (("rss_baseline_mb", "process start"), ("rss_after_import_mb", "runtime imported"),
                ("rss_after_load_mb", "model loaded"), ("peak_rss_mb", "peak during inference"))


def memory_row(doc: dict) -> dict:
    row = label(doc)
    if doc.get("status") != "ok":
        return dict(row, absent="the run failed")
    return dict(row, steps=[(name, figure(doc, f"memory.{key}")) for key, name in MEMORY_STEPS],
                peak_scope=(doc.get("memory") or {}).get("peak_scope"))


def fleet_groups(summary: list) -> list:
    """Per bundle measured on two or more devices: its devices side by side, a fleet run's alone (results given
    beside the run were ranked in its table) and separate benches per profile (a LiteRT bundle measured on x86 was
    the "fastest device" of an OpenVINO one)."""
    by_bundle = {}
    for row in summary:
        by_bundle.setdefault((row["bundle"], row["profile"], row["run"]), []).append(row)
    groups = []
    for (bundle, profile, run), rows in by_bundle.items():
        if len({r["device_name"] for r in rows}) < 2:
            continue
        groups.append({"bundle": bundle, "profile": profile, "runs": [run] if run else [],
                       "devices": sorted(rows, key=lambda r: (r["p90_ms"] is None, r["p90_ms"] or 0))})
    return groups


def history_series(bundle: str, device: str, rows: list) -> dict:
    """One bundle x device's p90 over past runs (oldest first) with its change points and levels."""
    points = [{"created": r.get("created") or "", "p90_ms": r.get("p90_ms"), "run_id": r.get("run_id"),
               "status": r.get("status")} for r in sorted(rows, key=lambda r: (r.get("created") or "", r.get("id") or 0))]
    usable = [p for p in points if p["status"] == "ok" and number_in(p["p90_ms"], 1e-12, math.inf) is not None]
    out = {"bundle": bundle, "device": device, "points": usable, "failed_runs": len(points) - len(usable)}
    if len(usable) < 2:
        return dict(out, change_points=[], levels=[], absent=f"{len(usable)} usable run(s) in the store: no trend")
    series = np.asarray([p["p90_ms"] for p in usable])
    found = change_points(series)
    levels = [{"start": a, "end": b, "median_p90_ms": m} for a, b, m in segments(series, found)]
    changes = [{"index": i, "created": usable[i]["created"], "from_ms": levels[k]["median_p90_ms"],
                "to_ms": levels[k + 1]["median_p90_ms"],
                "change_pct": (levels[k + 1]["median_p90_ms"] / levels[k]["median_p90_ms"] - 1) * 100}
               for k, i in enumerate(found)]
    return dict(out, change_points=changes, levels=levels, noise_pct=(math.exp(noise(np.log(series))) - 1) * 100)


def _history(history: dict) -> list:
    """One series per bundle x device x profile (store rows by key); a device shown with the profile where one
    bundle name on it has several."""
    pairs = [(b, d) for b, d, _ in history]
    return [history_series(b, f"{d} ({p})" if p and pairs.count((b, d)) > 1 else d, rows)
            for (b, d, p), rows in history.items()]


def build(docs: list, check: dict, history: dict | None, history_absent: str | None = None, study=None) -> dict:
    """The whole report. `check` is edgeopt.api.check's answer for the same documents, in order; `history` maps
    (bundle, device, profile) -> store rows. `study`: an optimize study (edgeopt.search.study.load), or None."""
    distinguish(docs)
    summary = [summary_row(doc, entry) for doc, entry in zip(docs, check["results"])]
    ok = [doc for doc in docs if doc.get("status") == "ok"]
    return {"summary": summary, "exit_code": check["exit_code"],
            "headline": check.get("headline") or EXIT_MEANING[check["exit_code"]],
            "checked": check.get("checked", True),
            "latency": [latency_row(doc) for doc in docs],
            "power": [power_row(doc) for doc in ok], "thermal": [thermal_row(doc) for doc in ok],
            "memory": [memory_row(doc) for doc in ok], "fleet": fleet_groups(summary),
            "throughput": [throughput_row(doc) for doc in ok], "layer_profile": [layer_profile_row(doc) for doc in ok],
            "history": _history(history or {}),
            "history_absent": history_absent, "study": study, "regressions": check.get("regressions") or []}
