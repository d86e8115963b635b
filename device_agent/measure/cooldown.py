"""`--cooldown`: wait, bounded, until the device is back at its idle temperature before a run.

Idle, per thermal zone, is the lowest temperature recorded at the start of this device's last
HISTORY_RUNS runs (thermal-idle.json beside the device lock; every run records its start,
with or without --cooldown), plus --cooldown-margin. --cooldown-target sets one limit for every
zone instead. With neither (a device's first run) the wait ends when the zones stop falling: no
zone dropped more than STEADY_DROP_C over the last STEADY_WINDOW_S. At --cooldown-timeout the
run goes ahead with a warning saying how warm it started. The agent's heartbeat keeps beating.
"""
import datetime
import json
import math
import os
import time
from dataclasses import dataclass

from ..progress import report
from . import thermal

HISTORY_RUNS = 10
HISTORY_ROOTS = 8  # other sysfs roots kept besides "/" (tests use recorded trees): least recently used go
STEADY_WINDOW_S = 20.0
STEADY_DROP_C = 0.5
POLL_S = 1.0
REPORT_EVERY_S = 5.0


@dataclass(frozen=True)
class CooldownSettings:
    enabled: bool = False
    margin_c: float = 2.0
    timeout_s: float = 300.0
    target_c: float = None


def history_path(lock):
    return os.path.join(os.path.dirname(os.path.abspath(lock)), "thermal-idle.json") if lock else None


def _load(path):
    """{sysfs root: [runs]}, the file's well-formed entries only: a damaged history costs its reference temperatures,
    never the run (`{"/": 5}` failed every later bench on the device until the file was removed by hand: a fuzzing
    audit)."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError, RecursionError):
        return {}
    if not isinstance(doc, dict):
        return {}
    return {root: [run for run in runs if _well_formed(run)] for root, runs in doc.items() if isinstance(runs, list)}


def _well_formed(run):
    zones = run.get("zones") if isinstance(run, dict) else None
    return isinstance(zones, dict) and all(
        isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t) for t in zones.values())


def reference(path, sysfs_root):
    """{zone: lowest recorded start temperature} for this sysfs root, {} without a history."""
    runs = _load(path).get(sysfs_root, []) if path else []
    out = {}
    for run in runs:
        for zone, temp in run.get("zones", {}).items():
            out[zone] = min(temp, out.get(zone, temp))
    return out


def record_start(path, sysfs_root, temps):
    """Keep this run's start temperatures (the last HISTORY_RUNS per sysfs root), written atomically."""
    if not path or not temps:
        return
    doc = _load(path)
    runs = doc.get(sysfs_root, [])[-(HISTORY_RUNS - 1):]
    runs.append({"time": datetime.datetime.now(datetime.timezone.utc).isoformat(), "zones": temps})
    doc.pop(sysfs_root, None)
    doc[sysfs_root] = runs  # last in order: the most recently used root
    others = [r for r in doc if r != "/"]
    for stale in others[:-HISTORY_ROOTS]:
        del doc[stale]
    tmp = "%s.%d.tmp" % (path, os.getpid())
    with open(tmp, "w") as f:
        json.dump(doc, f)
    os.replace(tmp, path)


def limits(settings, idle):
    if settings.target_c is not None:
        return "target", lambda zone: settings.target_c
    if idle:
        return "idle", lambda zone: idle[zone] + settings.margin_c if zone in idle else None
    return "steady", None


def _over(temps, limit):
    out = {}
    for zone, temp in temps.items():
        goal = limit(zone)
        if goal is not None and temp > goal:
            out[zone] = (temp, goal)
    return out


def _steady(history, t):
    """True once the zones stopped falling: none dropped more than STEADY_DROP_C in the last window."""
    if t < STEADY_WINDOW_S:
        return False
    old = next(temps for when, temps in history if when >= t - STEADY_WINDOW_S)
    now = history[-1][1]
    return all(old[z] - now.get(z, old[z]) <= STEADY_DROP_C for z in old)


def wait(config, settings, idle, clock=time.monotonic, sleep=time.sleep):
    """Block until the zones are cool (or the timeout passes); returns (cooldown section, warnings)."""
    rule, limit = limits(settings, idle)
    start, history, last_report = clock(), [], None
    while True:
        temps = thermal.zones(config)
        t = clock() - start
        if not temps:
            reason = "no readable thermal zones under %s to watch" % config.path("sys", "class", "thermal")
            return {"reached": False, "reason": reason, "waited_s": t}, ["cooldown: skipped, " + reason]
        history.append((t, temps))
        over = _over(temps, limit) if limit else {}
        if (not over) if limit else _steady(history, t):
            return _section(rule, True, history, limit, settings), []
        if t >= settings.timeout_s:
            hot = ", ".join("%s %.1f °C > %.1f" % (z, v[0], v[1]) for z, v in sorted(over.items())) or "still falling"
            return (_section(rule, False, history, limit, settings),
                    ["cooldown: not back at idle after %.0f s (%s); measured warm" % (t, hot)])
        if last_report is None or t - last_report >= REPORT_EVERY_S:
            report("cooldown", _progress(rule, temps, over, t, settings.timeout_s))
            last_report = t
        sleep(min(POLL_S, max(0.0, settings.timeout_s - t)))


def _progress(rule, temps, over, t, timeout):
    if over:
        zone, (temp, goal) = max(over.items(), key=lambda kv: kv[1][0] - kv[1][1])
        return "%s at %.1f °C, waiting for <= %.1f °C (%.0f/%.0f s)" % (zone, temp, goal, t, timeout)
    hottest = max(temps.items(), key=lambda kv: kv[1])
    return "%s at %.1f °C, waiting until no zone is falling (%s, %.0f/%.0f s)" % (hottest[0], hottest[1], rule, t, timeout)


def _section(rule, reached, history, limit, settings):
    doc = {"rule": rule, "reached": reached, "waited_s": history[-1][0], "start_c": history[0][1],
           "end_c": history[-1][1], "timeout_s": settings.timeout_s}
    if limit:
        doc["limits_c"] = {z: limit(z) for z in history[-1][1] if limit(z) is not None}
    if rule == "idle":
        doc["margin_c"] = settings.margin_c
    return doc
