"""Heat and clocks around a run, and every throttling signal the device offers.

Thermal zones and CPU frequency per cpufreq policy at the start and end of the timed loop and sampled
during it (every TIMELINE_PERIOD_S, by the power sampler's thread) into a bounded timeline (measure/timeline.py);
each zone's passive/hot/critical trip points; and throttling from the Raspberry
Pi firmware (`vcgencmd get_throttled`), cpufreq (a policy capped below its hardware maximum, or
falling under load), Jetson's soctherm over-current/under-voltage event counters and active
non-fan cooling devices, and a zone reaching a passive, hot or critical trip point (where the kernel
throttles). A throttled run gets a warning starting with `throttled:` and a capped
one `frequency-capped:`; the host shows both apart from other warnings.
"""
import glob
import os
import shlex

from ..power.base import SensorError, now, optional_text, read_number, run_command
from .timeline import document

TIMELINE_PERIOD_S = 0.25   # 4 Hz: heat moves over seconds; a tick reads a few small sysfs files
TRIP_TYPES = ("passive", "hot", "critical")   # where the kernel throttles or shuts down; "active" starts a fan
FELL_BELOW = 0.90      # last quarter of the loop under 90% of the loop's peak frequency
NEAR_MAX = 0.95        # ... after reaching 95% of the hardware maximum (so an idle policy is ignored)
# get_throttled bits (Raspberry Pi firmware): 0-3 now, 16-19 since boot.
THROTTLE_BITS = {0: "under-voltage detected", 1: "arm frequency capped", 2: "currently throttled",
                 3: "soft temperature limit active"}
THROTTLE_WARNINGS = ("throttled:", "frequency-capped:")


def zones(config):
    """{"thermal_zone0 (cpu-thermal)": °C} for every readable zone."""
    out = {}
    for zone in zone_dirs(config):
        try:
            millideg = read_number(os.path.join(zone, "temp"))
        except SensorError:
            continue  # some zones (e.g. a disabled sensor) refuse reads; the others still count
        out[zone_label(zone)] = millideg / 1000.0
    return out


def zone_dirs(config):
    return sorted(glob.glob(config.path("sys", "class", "thermal", "thermal_zone*")))


def zone_label(zone):
    return "%s (%s)" % (os.path.basename(zone), optional_text(os.path.join(zone, "type"), "?"))


def trip_points(config):
    """{zone: [{"type", "c"}]} of the readable passive/hot/critical trip points."""
    out = {}
    for zone in zone_dirs(config):
        trips = []
        for f in sorted(glob.glob(os.path.join(zone, "trip_point_*_temp"))):
            kind = optional_text(f[:-len("temp")] + "type")
            try:
                if kind in TRIP_TYPES:
                    trips.append({"type": kind, "c": read_number(f) / 1000.0})
            except SensorError:
                continue
        if trips:
            out[zone_label(zone)] = trips
    return out


def policies(config):
    """The cpufreq policy directories under the sysfs root."""
    return sorted(glob.glob(config.path("sys", "devices", "system", "cpu", "cpufreq", "policy*")))


def cpufreq_now(config):
    """{policy: MHz} of scaling_cur_freq for every policy that answers: what the sampler reads during the loop."""
    out = {}
    for p in policies(config):
        try:
            out[os.path.basename(p)] = read_number(os.path.join(p, "scaling_cur_freq")) / 1e3
        except SensorError:
            continue
    return out


def reading(config):
    """One timeline reading: {"t", "zones": {zone: °C}, "cpufreq": {policy: MHz}}; SensorError when nothing answers."""
    out = {"t": now(), "zones": zones(config), "cpufreq": cpufreq_now(config)}
    if not out["zones"] and not out["cpufreq"]:
        raise SensorError("no thermal zone or cpufreq policy answered under %s" % config.path("sys"))
    return out


def policy_mhz(policy, files):
    """{key: MHz} of the (cpufreq file, key) pairs readable in one policy directory (the files hold kHz)."""
    entry = {}
    for name, key in files:
        try:
            entry[key] = read_number(os.path.join(policy, name)) / 1e3
        except SensorError:
            continue
    return entry


def cpufreq_limits(config):
    """{policy: {"cur_mhz", "max_mhz" (policy cap), "hw_max_mhz"}} with what is readable."""
    files = (("scaling_cur_freq", "cur_mhz"), ("scaling_max_freq", "max_mhz"), ("cpuinfo_max_freq", "hw_max_mhz"))
    return {os.path.basename(p): policy_mhz(p, files) for p in policies(config)}


def cooling_devices(config):
    out = {}
    for d in sorted(glob.glob(config.path("sys", "class", "thermal", "cooling_device*"))):
        try:
            state = [int(read_number(os.path.join(d, "cur_state"))), int(read_number(os.path.join(d, "max_state")))]
        except SensorError:
            continue
        out["%s (%s)" % (os.path.basename(d), optional_text(os.path.join(d, "type"), "?"))] = state
    return out


def oc_events(config):
    """Jetson soctherm over-current/under-voltage throttle event counters (hwmon `soctherm_oc`)."""
    out = {}
    for d in sorted(glob.glob(config.path("sys", "class", "hwmon", "hwmon*"))):
        if optional_text(os.path.join(d, "name")) != "soctherm_oc":
            continue
        for f in sorted(glob.glob(os.path.join(d, "oc*_event_cnt"))):
            try:
                out[os.path.basename(f)[:-len("_event_cnt")]] = int(read_number(f))
            except SensorError:
                continue
    return out


def rpi_throttled(config):
    """The get_throttled bit field; None where vcgencmd does not answer on a board that is no Raspberry Pi; on one
    that is (its device tree says so), why it could not be read, as text: "not throttled" was recorded for a Pi
    whose vcgencmd failed (a user outside the video group), under-voltage unknown."""
    try:
        text = run_command(shlex.split(config.vcgencmd) + ["get_throttled"], timeout=2.0)
        _, _, value = text.strip().partition("=")
        return int(value, 0)
    except (SensorError, ValueError) as e:
        error = str(e) if isinstance(e, SensorError) else "vcgencmd get_throttled printed %r" % text.strip()[:80]
    return error if _is_raspberry_pi(config) else None


def _is_raspberry_pi(config):
    try:
        with open(config.path("proc", "device-tree", "model"), "rb") as f:
            return b"Raspberry Pi" in f.read(256)
    except OSError:
        return False


def decode_throttled(value):
    now = [name for bit, name in sorted(THROTTLE_BITS.items()) if value & (1 << bit)]
    since_boot = [name for bit, name in sorted(THROTTLE_BITS.items()) if value & (1 << (bit + 16))]
    return {"raw": "0x%x" % value, "now": now, "since_boot": since_boot}


def snapshot(config):
    return {"zones": zones(config), "cpufreq": cpufreq_limits(config), "cooling": cooling_devices(config),
            "oc": oc_events(config), "rpi": rpi_throttled(config)}


def timeline_source(config):
    """The sampler source that reads zones and CPU frequencies during the loop, or None with neither."""
    if not policies(config) and not zone_dirs(config):
        return None
    return ("thermal", lambda: reading(config), TIMELINE_PERIOD_S)


def section(config, before, after, during, t0=0.0, errors=()):
    """(thermal section, warnings) from the snapshots around the loop and the readings in it (`reading`'s,
    from the sampler whose window opened at t0; `errors` its failed readings)."""
    if not any(before.values()) and not any(after.values()) and not during:
        return {"available": False, "reason": "no thermal zones, cpufreq or throttling status readable under %s"
                % config.path("sys")}, []
    doc, warnings = {}, []
    if before["zones"] or after["zones"]:
        doc["start_c"], doc["end_c"] = before["zones"], after["zones"]
    else:
        doc["start_c_absent"] = "no readable thermal zones under %s" % config.path("sys", "class", "thermal")
    freq = [r["cpufreq"] for r in during]
    for part in (_cpufreq(before["cpufreq"], after["cpufreq"], freq), _cooling(before["cooling"], after["cooling"]),
                 _oc(before["oc"], after["oc"]), _rpi(before["rpi"], after["rpi"]),
                 _trips(trip_points(config), during, after["zones"]), _timeline(during, t0, errors)):
        if part is not None:
            doc.update(part[0])
            warnings += part[1]
    doc["throttled"] = any(w.startswith("throttled:") for w in warnings)
    doc["frequency_capped"] = any(w.startswith("frequency-capped:") for w in warnings)
    return doc, warnings


def _cpufreq(before, after, during):
    if not before and not after:
        return None
    policies, warnings = {}, []
    for name in sorted(set(before) | set(after)):
        b, a = before.get(name, {}), after.get(name, {})
        series = [s[name] for s in during if name in s]
        entry = {"before_mhz": b.get("cur_mhz"), "after_mhz": a.get("cur_mhz"),
                 "max_mhz": a.get("max_mhz", b.get("max_mhz")), "hw_max_mhz": a.get("hw_max_mhz", b.get("hw_max_mhz"))}
        if series:
            entry["during_mhz"] = {"min": min(series), "mean": sum(series) / len(series), "max": max(series),
                                   "samples": len(series)}
        policies[name] = entry
        warnings += _cap_warning(name, b, a) + _fall_warning(name, series, entry["hw_max_mhz"])
    return {"cpufreq": policies}, warnings


def _cap_warning(name, before, after):
    caps = [x["max_mhz"] for x in (before, after) if "max_mhz" in x and "hw_max_mhz" in x]
    hw = after.get("hw_max_mhz", before.get("hw_max_mhz"))
    if not caps or hw is None or min(caps) >= hw:
        return []
    return ["frequency-capped: cpufreq %s limited to %.0f of %.0f MHz during the run (thermal, a power mode or a "
            "user setting); the figures hold only at that cap" % (name, min(caps), hw)]


def _fall_warning(name, series, hw_max):
    if len(series) < 4 or hw_max is None:
        return []
    peak = max(series)
    tail = sorted(series[-max(1, len(series) // 4):])
    late = tail[len(tail) // 2]
    if peak < NEAR_MAX * hw_max or late >= FELL_BELOW * peak:
        return []
    return ["throttled: cpufreq %s fell from %.0f to %.0f MHz under load (thermal or power throttling)"
            % (name, peak, late)]


def _cooling(before, after):
    if not before and not after:
        return None
    doc = {name: {"start": before.get(name), "end": state} for name, state in after.items()}
    warnings = ["throttled: thermal cooling device %s at state %d of %d at the end of the run" % (name, s[0], s[1])
                for name, s in sorted(after.items()) if s[0] > 0 and "fan" not in name.lower()]
    return {"cooling_devices": doc}, warnings


def _oc(before, after):
    if not before and not after:
        return None
    rises = {k: after[k] - before.get(k, after[k]) for k in after if after[k] > before.get(k, after[k])}
    doc = {"jetson_oc_events": {k: {"start": before.get(k), "end": after.get(k)} for k in sorted(set(before) | set(after))}}
    if not rises:
        return doc, []
    text = ", ".join("%s +%d" % (k, v) for k, v in sorted(rises.items()))
    return doc, ["throttled: Jetson soctherm over-current/under-voltage throttling during the run (%s)" % text]


def _rpi(before, after):
    if before is None and after is None:
        return None
    unread = [x for x in (before, after) if isinstance(x, str)]
    if unread:   # a Raspberry Pi whose firmware status could not be read: unknown, not "not throttled"
        return {"rpi_throttled_absent": unread[-1]}, [
            "the Raspberry Pi firmware's throttling status could not be read (%s): under-voltage and throttling "
            "during the run are unknown" % unread[-1]]
    doc = {"rpi_throttled": {"start": decode_throttled(before) if before is not None else None,
                             "end": decode_throttled(after) if after is not None else None}}
    if after is None:
        return doc, []
    end = decode_throttled(after)
    warnings = []
    if end["now"]:
        warnings.append("throttled: Raspberry Pi firmware reports %s at the end of the run (get_throttled=%s)"
                        % (", ".join(end["now"]), end["raw"]))
    new = (after & ~before) >> 16 & 0xF if before is not None else 0
    if new and not end["now"]:
        names = decode_throttled(new << 16)["since_boot"]
        warnings.append("throttled: Raspberry Pi firmware recorded %s during the run (get_throttled %s -> %s)"
                        % (", ".join(names), "0x%x" % before, end["raw"]))
    return doc, warnings


def _trips(trips, during, end):
    """The zones' trip points, and a throttled warning for each one a zone reached during the loop."""
    if not trips:
        return None
    warnings = []
    for zone, points in sorted(trips.items()):
        seen = [r["zones"][zone] for r in during if zone in r["zones"]] + ([end[zone]] if zone in end else [])
        reached = [p for p in points if seen and max(seen) >= p["c"]]
        if reached:
            p = min(reached, key=lambda p: p["c"])
            warnings.append("throttled: thermal zone %s reached its %s trip point %.1f °C during the run (peak "
                            "%.1f °C)" % (zone, p["type"], p["c"], max(seen)))
    return {"trip_points_c": trips}, warnings


def _timeline(during, t0, errors):
    """thermal.timeline (zones_c, cpufreq_mhz per reading) or thermal.timeline_absent with the reason."""
    if not during:
        why = "no reading during the timed loop succeeded" + ("; first failure: " + errors[0][1] if errors else "")
        return {"timeline_absent": why}, []
    during = sorted(during, key=lambda r: r["t"])
    names = {key: sorted(set(n for r in during for n in r[key])) for key in ("zones", "cpufreq")}
    groups = {"zones_c": ({z: [r["zones"].get(z) for r in during] for z in names["zones"]}, 3),
              "cpufreq_mhz": ({p: [r["cpufreq"].get(p) for r in during] for p in names["cpufreq"]}, 1)}
    doc = document([r["t"] - t0 for r in during], groups, len(during), TIMELINE_PERIOD_S)
    doc["failed"] = len(errors)
    return {"timeline": doc}, []
