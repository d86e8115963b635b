"""NVIDIA Jetson facts that change its numbers: JetPack/L4T, TensorRT and CUDA versions, the nvpmodel power mode,
whether jetson_clocks locked the clocks, GPU and EMC frequencies.

Files are read through the agent's sysfs root (SensorConfig.path), so a recorded tree is read by the same code as
a board: /etc/nv_tegra_release ("# R35 (release), REVISION: 4.1, ..."), dpkg's status database for the
nvidia-l4t-core / nvidia-jetpack / TensorRT package versions, /usr/local/cuda/version.json (or version.txt), the
GPU's devfreq directory and the EMC clock in debugfs. `nvpmodel -q` and `jetson_clocks --show` are run (found on
PATH); what cannot be read is absent with the reason. Every parser here is total: text in, a dict out.
"""
import glob
import json
import os
import re

from ..power.base import SensorError, optional_text, run_command

RELEASE = re.compile(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([0-9.]+)")
TRT_PACKAGES = ("tensorrt", "libnvinfer10", "libnvinfer8", "nvidia-tensorrt")
GPU_DEVFREQ = re.compile(r"gpu|ga10b|gv11b|gp10b|gm20b")
EMC_RATE_FILES = (("sys", "kernel", "debug", "bpmp", "debug", "clk", "emc", "rate"),   # Xavier, Orin
                  ("sys", "kernel", "debug", "clk", "emc", "clk_rate"))                # Nano, TX1/TX2


def is_jetson(config):
    return os.path.isfile(config.path("etc", "nv_tegra_release"))


def parse_release(text):
    """{"l4t": "35.4.1", "board": ...} from /etc/nv_tegra_release's first line, {} when it is not one."""
    m = RELEASE.search(text or "")
    if not m:
        return {}
    out = {"l4t": "%s.%s" % (m.group(1), m.group(2))}
    board = re.search(r"BOARD:\s*([A-Za-z0-9_.-]+)", text)
    if board:
        out["board"] = board.group(1)
    return out


def dpkg_versions(text, names):
    """{package: version} for the installed packages among `names` in dpkg's status file (Debian control format)."""
    out = {}
    for stanza in re.split(r"\n\s*\n", text or ""):
        fields = dict(re.findall(r"^([A-Za-z-]+):[ \t]*(.*)$", stanza, flags=re.M))
        if fields.get("Package") in names and "installed" in fields.get("Status", "").split():
            out[fields["Package"]] = fields.get("Version", "")
    return out


def cuda_version(config):
    """The CUDA toolkit version from version.json (CUDA 11.1+) or version.txt (older); None when neither reads."""
    text = optional_text(config.path("usr", "local", "cuda", "version.json"))
    if text:
        try:
            return str(json.loads(text)["cuda"]["version"])
        except (ValueError, KeyError, TypeError):
            pass
    m = re.search(r"CUDA Version\s+([0-9.]+)", optional_text(config.path("usr", "local", "cuda", "version.txt"), ""))
    return m.group(1) if m else None


def parse_nvpmodel(text):
    """{"mode": name, "id": n} from `nvpmodel -q` ("NV Power Mode: MAXN" then the id line), {} otherwise."""
    m = re.search(r"NV Power Mode:\s*(\S+)(?:\s*\n\s*(\d+))?", text or "")
    if not m:
        return {}
    out = {"mode": m.group(1)}
    if m.group(2):
        out["id"] = int(m.group(2))
    return out


def parse_clocks(text):
    """jetson_clocks --show -> {"gpu": {min,max,cur MHz}, "emc": {...}, "cpu_locked", "gpu_locked", "locked"}."""
    out = {}
    for unit in ("GPU", "EMC"):
        m = re.search(r"^%s MinFreq=(\d+) MaxFreq=(\d+) CurrentFreq=(\d+)" % unit, text or "", flags=re.M)
        if m:
            out[unit.lower()] = dict(zip(("min_mhz", "max_mhz", "cur_mhz"), (int(g) / 1e6 for g in m.groups())))
    # "cpu0: Online=1 Governor=... MinFreq=.." (JetPack 4.2+); TX1-era lines have no Online= field
    cpus = [(lo, hi) for online, lo, hi in re.findall(r"^cpu\d+:(?: Online=(\d))? \S+ MinFreq=(\d+) MaxFreq=(\d+)",
                                                       text or "", flags=re.M) if online != "0"]
    if cpus:
        out["cpu_locked"] = all(lo == hi for lo, hi in cpus)
    if "gpu" in out:
        out["gpu_locked"] = out["gpu"]["min_mhz"] == out["gpu"]["max_mhz"]
    override = re.search(r"^EMC .*FreqOverride=(\d)", text or "", flags=re.M)
    if override:
        out["emc_locked"] = override.group(1) == "1"
    flags = [out[k] for k in ("cpu_locked", "gpu_locked", "emc_locked") if k in out]
    if flags:
        out["locked"] = all(flags)
    return out


def gpu_devfreq(config):
    """{"device", "cur_mhz", "min_mhz", "max_mhz", "governor"} of the GPU's devfreq node, or None."""
    dirs = sorted(glob.glob(config.path("sys", "devices", "gpu.0", "devfreq", "*")))
    dirs += [d for d in sorted(glob.glob(config.path("sys", "class", "devfreq", "*")))
             if GPU_DEVFREQ.search(os.path.basename(d))]
    for d in dirs:
        entry = {"device": os.path.basename(d)}
        for f in ("cur_freq", "min_freq", "max_freq"):
            value = optional_text(os.path.join(d, f))
            if value and value.isdigit():
                entry[f.replace("_freq", "_mhz")] = int(value) / 1e6
        governor = optional_text(os.path.join(d, "governor"))
        if governor:
            entry["governor"] = governor
        if len(entry) > 1:
            return entry
    return None


def emc_mhz(config):
    for parts in EMC_RATE_FILES:
        value = optional_text(config.path(*parts))
        if value and value.isdigit():
            return int(value) / 1e6
    return None


def _command(argv, parse):
    """(parsed output, None) or (None, why): a command absent, refused (jetson_clocks --show needs root) or mute."""
    try:
        parsed = parse(run_command(argv, timeout=10.0))
    except SensorError as e:
        return None, str(e)
    return (parsed, None) if parsed else (None, "%s printed nothing this agent reads" % " ".join(argv))


def software(config):
    """{"l4t", "board", "jetpack", "tensorrt", "cuda", "packages"}: the versions files say (no command is run)."""
    out = dict(parse_release(optional_text(config.path("etc", "nv_tegra_release"), "")))
    status = optional_text(config.path("var", "lib", "dpkg", "status"), "")
    packages = dpkg_versions(status, ("nvidia-l4t-core", "nvidia-jetpack") + TRT_PACKAGES)
    if packages:
        out["packages"] = packages
    if "nvidia-jetpack" in packages:
        out["jetpack"] = packages["nvidia-jetpack"].split("+")[0].split("-")[0]
    trt = next((packages[p] for p in TRT_PACKAGES if p in packages), None)
    if trt:
        out["tensorrt"] = trt.split("+")[0].split("-")[0]
    cuda = cuda_version(config)
    if cuda:
        out["cuda"] = cuda
    return out


def read(config):
    """The result's environment.jetson section (only on a Jetson: /etc/nv_tegra_release exists)."""
    out = software(config)
    for key, argv, parse in (("power_mode", ["nvpmodel", "-q"], parse_nvpmodel),
                             ("clocks", ["jetson_clocks", "--show"], parse_clocks)):
        value, why = _command(argv, parse)
        out[key] = value if value is not None else {"available": False, "reason": why}
    gpu = gpu_devfreq(config)
    out["gpu_freq"] = gpu or {"available": False, "reason": "no GPU devfreq node under %s" % config.path("sys")}
    emc = emc_mhz(config)
    out["emc_mhz"] = emc if emc is not None else {"available": False, "reason": "no EMC clock rate readable "
                                                   "(debugfs needs root)"}
    return out
