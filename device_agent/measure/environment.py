"""Power and thermal context of a run. This agent version reads thermal zones; power readers
per sensor family are not in it yet, so power is reported absent with what was found."""
import glob
import os


def thermal_snapshot(sysfs="/sys"):
    zones = {}
    for zone in sorted(glob.glob(os.path.join(sysfs, "class", "thermal", "thermal_zone*"))):
        try:
            with open(os.path.join(zone, "type")) as f:
                kind = f.read().strip()
            with open(os.path.join(zone, "temp")) as f:
                zones["%s (%s)" % (os.path.basename(zone), kind)] = int(f.read().strip()) / 1000.0
        except (OSError, ValueError):
            continue
    return zones


def thermal(start, end):
    if not start:
        return {"available": False, "reason": "no readable thermal zones under /sys/class/thermal"}
    return {"start_c": start, "end_c": end}


def power(sysfs="/sys"):
    found = []
    if os.path.isdir(os.path.join(sysfs, "class", "powercap")):
        found.append("RAPL (/sys/class/powercap)")
    if glob.glob(os.path.join(sysfs, "class", "hwmon", "hwmon*", "power*_input")):
        found.append("hwmon power inputs")
    if not found:
        return {"available": False, "reason": "no power sensor on this device (no RAPL, no hwmon power inputs)"}
    return {"available": False,
            "reason": "this agent version has no reader for the sensors present: %s" % ", ".join(found)}
