"""Device facts: what the result document says about the machine that measured."""
import os
import platform
import socket
import sys


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace").replace("\x00", "").strip()
    except OSError:
        return None


def _cpuinfo():
    return _read("/proc/cpuinfo") or ""


def cpu_model():
    info = _cpuinfo()
    for key in ("model name", "Model", "Hardware", "cpu model"):
        for line in info.splitlines():
            if line.split(":")[0].strip() == key:
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def physical_cores():
    """Cores this process may use, counting SMT siblings once."""
    try:
        import psutil
        physical = psutil.cpu_count(logical=False)
    except ImportError:
        pairs = set()
        phys = core = None
        for line in _cpuinfo().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "physical id":
                phys = value.strip()
            elif key == "core id":
                core = value.strip()
                pairs.add((phys, core))
        physical = len(pairs) or None
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(x for x in (physical, usable, os.cpu_count()) if x))


def ram_mb():
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024.0
    return None


def os_name():
    for line in (_read("/etc/os-release") or "").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return platform.system()


def board_model():
    """Single-board computers name themselves in the device tree (Raspberry Pi, Jetson)."""
    return _read("/proc/device-tree/model")


def _version(dist):
    """A distribution's version without importing it (the agent's start-up stays light)."""
    try:
        import importlib.metadata as metadata
        return metadata.version(dist)
    except ImportError:
        return None
    except Exception:  # PackageNotFoundError; its import path differs across versions
        return None


def probe(power_sensor="auto"):
    from .runtimes import available

    numpy_version = _version("numpy")
    facts = {
        "hostname": socket.gethostname(),
        "arch": platform.machine(),
        "cpu_model": cpu_model(),
        "logical_cpus": os.cpu_count(),
        # those this process may run on (taskset, a container's cpuset): fewer than logical_cpus where pinned
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "physical_cores": physical_cores(),
        "ram_mb": ram_mb(),
        "os": os_name(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "numpy": numpy_version,
        "runtimes": available(),
        "power": power_reader(power_sensor),
    }
    board = board_model()
    if board:
        facts["board"] = board
    software = jetson_software()
    if software:
        facts["software"] = software
    return facts


def power_reader(power_sensor="auto"):
    """What `bench` with this power sensor reads here: {"reader": name, "sensor": words}, or {"reader": None,
    "reason": why}. A host decides from it whether energy is measured before it measures anything (optimize puts
    energy in its Pareto front only then); it asks for the sensor the profile's bundles name."""
    from .power import open_reader, unavailable
    from .power.base import SYSFS_ROOT_ENV, TEGRASTATS_ENV, VCGENCMD_ENV, SensorConfig

    config = SensorConfig(power_sensor=power_sensor, sysfs_root=os.environ.get(SYSFS_ROOT_ENV, "/"),
                          vcgencmd=os.environ.get(VCGENCMD_ENV, "vcgencmd"),
                          tegrastats=os.environ.get(TEGRASTATS_ENV, "tegrastats"))
    try:  # a reader's failure is not to end the probe: the facts say why instead
        reader, tried = open_reader(config)
        if reader is None:
            return {"reader": None, "reason": unavailable(config, tried)["reason"]}
        try:
            return {"reader": reader.name, "sensor": reader.sensor()}
        finally:
            reader.close()
    except Exception as e:
        return {"reader": None, "reason": "probing the power readers failed: %s" % e}


def jetson_software():
    """A Jetson's L4T/JetPack/TensorRT/CUDA versions from its files (read under $EDGEOPT_SYSFS_ROOT, as the
    sensors are), the TensorRT Python module's version where dpkg names none; {} elsewhere."""
    from .measure import jetson
    from .power.base import SYSFS_ROOT_ENV, SensorConfig

    config = SensorConfig(sysfs_root=os.environ.get(SYSFS_ROOT_ENV, "/"))
    if not jetson.is_jetson(config):
        return {}
    found = jetson.software(config)
    found.pop("packages", None)
    if "tensorrt" not in found:
        from .runtimes import adapter_class
        version = adapter_class("tensorrt").installed_version()
        if version:
            found["tensorrt"] = version
    return found
