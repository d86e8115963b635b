"""`edgeopt device doctor`: what a device lacks to run benchmarks, and how to install it."""
from __future__ import annotations

import re

from device_agent import MIN_PYTHON

from .agent_zipapp import REMOVE_PARTIAL
from .errors import BadInput, DeviceFailure
from .progress import SILENT

# Profile backend -> the runtime adapters that can run its artifacts, with the pip package to suggest.
RUNTIME_FOR_BACKEND = {"onnxruntime": [("onnxruntime", "onnxruntime")], "openvino": [("openvino", "openvino")],
                       "tflite": [("litert", "ai-edge-litert  (on a Python too old for it: tflite-runtime)")],
                       "tensorrt": [("tensorrt", "tensorrt cuda-python  (on a Jetson TensorRT ships with JetPack: "
                                                 "sudo apt install python3-libnvinfer)")]}
PY_VERSION = "import sys; print('%d.%d.%d' % sys.version_info[:3])"
# Free bytes where the workdir is (or would be made: its nearest existing parent)
FREE_SPACE = ("import os, sys\np = os.path.abspath(os.path.expanduser(sys.argv[1]))\n"
              "while not os.path.exists(p) and os.path.dirname(p) != p:\n    p = os.path.dirname(p)\n"
              "s = os.statvfs(p)\nprint(s.f_bavail * s.f_frsize)")
# Who holds the device's benchmark lock, if anyone: a shared flock tried and let go at once (a benchmark's exclusive
# one conflicts with it), then the holder's line the lock file keeps (device_agent/lock.py)
LOCK_HOLDER = ("import fcntl, os, sys\np = os.path.expanduser(sys.argv[1])\nif not os.path.exists(p):\n"
               "    print('FREE'); sys.exit(0)\nfd = os.open(p, os.O_RDONLY)\ntry:\n"
               "    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB); print('FREE')\nexcept OSError:\n"
               "    print('HELD ' + (open(p).read().strip() or 'unknown holder'))")
# Below this, a bench can fail to store or unpack a bundle (a MobileNet's is ~15 MB, unpacked beside its copy)
MIN_FREE_MB = 100


def _check(name, ok, detail, hint="", note=False):
    """note: something the device lacks that nothing needs (an optional backend, a power sensor): not a failure."""
    return {"check": name, "ok": bool(ok), "detail": detail, "hint": hint, **({"note": True} if note else {})}


def device_profile(spec) -> tuple:
    """(the profile the inventory names for the device, or None; [a failed check where it names none that loads]):
    doctor is for finding what is wrong, so an unknown profile is one finding, and the device is diagnosed without
    it, not refused before it is reached."""
    from .profiles import load_profile

    try:
        return (load_profile(spec.profile) if spec.profile else None), []
    except BadInput as e:
        where = f" (field `profile` of inventory {spec.inventory})" if spec.inventory else ""
        # the line names the device and the check already: "device d1: profile: device d1 (inventory …)" read twice
        return None, [_check("profile", False, f"{e}{where}",
                             "name a profile of `edgeopt profiles list`, or a profile's .toml file")]


def diagnose(transport, spec, profile=None, progress=SILENT) -> list:
    """Ordered checks; stops at the first one that makes the rest meaningless (no connection, no Python)."""
    argv = transport.python_argv()   # the interpreter the agent runs with: `local` is this host's own, not python3
    py = " ".join(argv)
    checks = []
    local = spec.connection == "local"
    reached = "runs on this machine (no SSH)" if local else "reachable, host key verified"
    try:
        code, out = transport.run(argv + ["-c", PY_VERSION], lambda line: None, 30)
    except DeviceFailure as e:
        if not local:
            return [_check("connection", False, str(e), "see the message; `ssh` to the device by hand to compare")]
        return [_check("connection", True, f"{spec.host} {reached}"),   # nothing to connect to: the interpreter failed
                _check("python", False, str(e), "set the device's `python` in the inventory to an interpreter here")]
    where = getattr(transport, "address", spec.host)
    trusted = getattr(transport, "trusted", [])
    if trusted:   # --trust-new-host-keys on the first command a new board meets: its key is shown, as bench shows it
        checks.append(_check("connection", True, f"{where} reachable; {'; '.join(trusted)}",
                             "compare it with the device's own: ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub "
                             "on its console", note=True))
    else:
        checks.append(_check("connection", True, f"{where} {reached}"))
    if code != 0:
        return checks + [_check("python", False, f"{py!r} did not run (exit {code})",
                                "install Python 3.8+ or set the device's `python` in the inventory")]
    said = re.findall(r"^(\d+)\.(\d+)\.(\d+)$", out, re.MULTILINE)
    if not said:
        lines = out.strip().splitlines()
        said_instead = f"its output began {lines[0][:120]!r}" if lines else "no output"
        return checks + [_check("python", False, f"{py!r} printed no version ({said_instead})",
                                "a login script or wrapper that prints on stdout? the agent's output would be "
                                "mixed with it")]
    version = tuple(int(x) for x in said[-1])
    checks.append(_check("python", version >= MIN_PYTHON, f"{py} is Python {'.'.join(said[-1])}",
                         "" if version >= MIN_PYTHON else f"the agent needs Python {'.'.join(map(str, MIN_PYTHON))} or newer"))
    if version < MIN_PYTHON:
        return checks
    try:
        facts = transport.probe(progress, power_sensor=profile.runtime.power_sensor if profile else "auto")
    except DeviceFailure as e:
        hint = (f"edgeopt keeps its agent and bundles under {transport.workdir()} on the device: give the inventory's "
                "`workdir` a folder the login user can write" if "cannot store the" in str(e)
                else "rerun with --debug to see the agent's output")
        return checks + [_check("agent", False, str(e), hint)]
    checks.append(_check("agent", True, f"agent runs from {transport.agent_home()}"))
    checks += _disk_checks(transport, argv) + _lock_checks(transport, argv)
    checks.append(_check("numpy", bool(facts.get("numpy")), f"numpy {facts.get('numpy') or 'missing'}",
                         "" if facts.get("numpy") else f"{py} -m pip install numpy"))
    checks += _arch_checks(facts.get("arch"), spec, profile)
    checks += _runtime_checks(facts.get("runtimes") or {}, py, profile)
    checks += other_backend_checks(facts.get("runtimes") or {}, py, profile)
    checks += software_checks(facts.get("software") or {}, profile)
    checks += power_checks(facts.get("power"), profile)
    return checks


def _lock_checks(transport, argv) -> list:
    """A benchmark holding the device now, said with its holder: a stuck agent kept the device's lock, every later
    bench waited on it, and doctor read all ok (a walkthrough)."""
    try:
        code, out = transport.run(argv + ["-c", LOCK_HOLDER, transport.lock_path()], lambda line: None, 30)
    except DeviceFailure:
        return []   # the checks before and after say what is wrong with the device
    said = (out.strip().splitlines() or [""])[-1]
    if code != 0 or not said.startswith("HELD "):
        return []
    return [_check("benchmark", True, f"one holds the device now ({said[5:]})",
                   "the next bench waits for it; if that process is stuck, stop it on the device", note=True)]


def _disk_checks(transport, argv) -> list:
    """Free space where bundles are stored and unpacked: a device with 60 KiB free passed every check, and the
    bench then failed to unpack (a user walkthrough)."""
    workdir = transport.workdir()
    try:
        code, out = transport.run(argv + ["-c", FREE_SPACE, workdir], lambda line: None, 30)
    except DeviceFailure as e:
        return [_check("disk", False, f"cannot read the free space of {workdir}: {e}")]
    free = (out.strip().splitlines() or [""])[-1]
    if code != 0 or not free.isdigit():
        return [_check("disk", False, f"cannot read the free space of {workdir} (exit {code})")]
    mib = int(free) / 2**20
    enough = mib >= MIN_FREE_MB
    return [_check("disk", enough, f"{mib:,.0f} MiB free for {workdir}",
                   "" if enough else f"under {MIN_FREE_MB} MiB: a bundle may not fit; `edgeopt device clean` frees "
                                     "edgeopt's cache there, or set the device's `workdir` to a larger disk")]


def power_reader_for(power: dict | None, wanted: str = "auto") -> tuple:
    """(the power reader a bundle asking for `wanted` gets on a device whose probe, asked for `wanted`, says
    `power`, or None; why not)."""
    found = (power or {}).get("reader")
    if wanted == "none":
        return None, "the profile measures no power (power_sensor none)"
    if found is None:
        return None, (power or {}).get("reason") or "its agent does not say which power sensor it reads"
    if wanted not in ("auto", found):   # asked for one, it answered with another: not what bench will read
        return None, f"it reads {found}, and the profile's bundles ask for {wanted}"
    return found, ""


def power_checks(power: dict | None, profile) -> list:
    """Whether power and energy are measured there: a note, never a failure (latency needs no sensor)."""
    wanted = profile.runtime.power_sensor if profile else "auto"
    found, why = power_reader_for(power, wanted)
    if found:
        return [_check("power", True, f"{found}: {(power or {}).get('sensor') or found}")]
    if "found but unreadable" in str(why):   # the board's own sensor is there: mend its access, not buy a meter
        return [_check("power", True, f"not measured: {why}",
                       "power_w and energy_mj budgets read NOT MEASURED until it reads: check the file or command "
                       "named and who may read it (RAPL's energy_uj is root's on recent kernels; vcgencmd needs the "
                       "video group)", note=True)]
    return [_check("power", True, f"not measured: {why}",
                   "power_w and energy_mj budgets read NOT MEASURED; `bench --power-command CMD` reads an external "
                   "meter", note=True)]


def version_matches(version: str, prefixes) -> bool:
    """Whether `version` ("10.3.0.30") starts with one of the dotted `prefixes` ("8.5", "10.3")."""
    have = version.split(".")
    return any(have[:len(p.split("."))] == p.split(".") for p in prefixes)


def software_checks(software: dict, profile) -> list:
    """One check per version the profile's [software] names: the device's must match one of them (a TensorRT
    engine, a JetPack power mode table and the CUDA kernels all change with them)."""
    if profile is None or not profile.software:
        return []
    checks = []
    for key, wanted in profile.software.items():
        have = software.get(key)
        expected = ", ".join(wanted)
        if not have:
            checks.append(_check(key, False, f"not found on the device; profile {profile.name} expects {expected}",
                                 "is this a Jetson with JetPack installed?"))
            continue
        ok = version_matches(str(have), wanted)
        checks.append(_check(key, ok, f"{have}; profile {profile.name} expects {expected}",
                             "" if ok else f"numbers from this device will not compare with {profile.name}'s: "
                                           f"install a JetPack with {key} {expected}, or use a profile made for {have}"))
    return checks


def same_arch(a: str, b: str) -> bool:
    # platform.machine() says arm64 on macOS and some BSDs, AMD64 on Windows
    alias = {"arm64": "aarch64", "amd64": "x86_64", "x64": "x86_64"}
    return alias.get(a.lower(), a.lower()) == alias.get(b.lower(), b.lower())


def _arch_checks(arch, spec, profile) -> list:
    """The inventory's profile for the device against the machine the agent found: an x86_64 host listed as
    raspberry-pi-5 would pass every other check and measure the wrong hardware."""
    if profile is None or profile.device.arch == "any":
        return []
    ok = bool(arch) and same_arch(profile.device.arch, arch)
    return [_check("arch", ok, f"{arch or 'unknown'}; profile {profile.name} is {profile.device.arch}",
                   "" if ok else f"fix the `profile` of {spec.name} in the inventory (or the `host` it points at)")]


def _runtime_checks(runtimes: dict, py: str, profile) -> list:
    if profile is None:
        present = {k: v for k, v in runtimes.items() if v}
        return [_check("runtime", bool(present), ", ".join(f"{k} {v}" for k, v in present.items()) or "none",
                       "" if present else f"{py} -m pip install onnxruntime (or the runtime of your profile)")]
    wanted = RUNTIME_FOR_BACKEND.get(profile.backend, [])
    found = installed(runtimes, profile.backend)
    if found:
        return [_check("runtime", True, f"{found[0]} {found[1]} for profile {profile.name}")]
    known = [name for name, _ in wanted if name in runtimes]
    hint = f"{py} -m pip install {wanted[0][1]}" if wanted else ""
    detail = (f"profile {profile.name} needs {' or '.join(n for n, _ in wanted)}; not installed"
              if known or not wanted else f"this agent version has no adapter for {profile.backend} yet")
    return [_check("runtime", False, detail, hint)]


def installed(runtimes: dict, backend: str):
    """(runtime, version) of the first adapter a probe found that runs the backend's artifacts, or None."""
    return next(((name, runtimes[name]) for name, _ in RUNTIME_FOR_BACKEND.get(backend, []) if runtimes.get(name)),
                None)


def other_backend_checks(runtimes: dict, py: str, profile) -> list:
    """The profile's other backends, which `optimize` searches where the device has their runtime: a note each,
    never a failure (the profile's own backend is what `bench` needs)."""
    if profile is None:
        return []
    out = []
    for backend in profile.backends[1:]:
        wanted = RUNTIME_FOR_BACKEND.get(backend, [])
        found = installed(runtimes, backend)
        detail = (f"{found[0]} {found[1]}: `optimize` also tries backend {backend}" if found else
                  f"no {' or '.join(n for n, _ in wanted) or backend}: `optimize` leaves backend {backend} out")
        hint = "" if found or not wanted else f"{py} -m pip install {wanted[0][1]} (optional)"
        out.append(_check(f"backend {backend}", True, detail, hint, note=not found))
    return out


CLEAN_SCRIPT = REMOVE_PARTIAL + r"""
import errno, fcntl, os, re, shutil, sys, time
root, lock_path = sys.argv[1], sys.argv[2]
# The device's lock first, the one a benchmark takes (device_agent/lock.py; a `local` device's is the host's, not
# in its workdir): a clean while one ran removed its files, and the benchmark failed with its result lost. Held
# until the script exits, with who holds it written as a benchmark writes it (one waiting then says so).
if os.path.isdir(os.path.dirname(lock_path) or "."):
    try:
        lock = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        print("LOCK %s: %s" % (lock_path, e.strerror or e))
        sys.exit(76)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno not in (errno.EAGAIN, errno.EACCES):
            raise
        with open(lock_path) as f:
            print("BUSY " + (f.read().strip() or "unknown holder"))
        sys.exit(75)
    os.ftruncate(lock, 0)
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    os.write(lock, ("edgeopt device clean, pid %d since %s" % (os.getpid(), since)).encode())
# Only what edgeopt put there: the content-addressed agents and bundles of store/ (and partial uploads of them),
# the agent's run directories in runs/. Anything else in those directories is the user's, and stays.
OURS = {"store": re.compile(r"[0-9a-f]{64}\.(pyz|edgepkg)(\.[0-9]+\.partial)?$"), "runs": re.compile(r"edgeopt-run-")}

def size(path):
    try:
        return os.lstat(path).st_size
    except OSError:
        return 0

freed, left = 0, 0
for sub, ours in OURS.items():
    d = os.path.join(root, sub)
    if not os.path.isdir(d) or os.path.islink(d):
        continue
    for name in os.listdir(d):
        path = os.path.join(d, name)
        if not ours.match(name):
            continue
        if name.endswith(".partial"):
            gone = remove_partial(path)
            left += gone is None
            freed += gone or 0
            continue
        if os.path.isdir(path) and not os.path.islink(path):
            freed += sum(size(os.path.join(p, f)) for p, _, files in os.walk(path) for f in files)
            shutil.rmtree(path, ignore_errors=True)
        else:
            freed += size(path)
            try:
                os.unlink(path)
            except OSError:
                pass
    try:
        os.rmdir(d)   # only where nothing else is left in it
    except OSError:
        pass
if left:
    print("UPLOADING %d" % left)
print(freed)
"""


def clean(transport, spec) -> tuple:
    """Remove the device's cached agents, bundles and leftover run directories; returns (bytes freed, what was
    left and why)."""
    code, out = transport.run(transport.python_argv() + ["-c", CLEAN_SCRIPT, transport.workdir(),
                                                         transport.lock_path()], lambda line: None, 120)
    said = {line.partition(" ")[0]: line.partition(" ")[2] for line in out.splitlines()
            if line.partition(" ")[0] in ("BUSY", "LOCK", "UPLOADING")}
    if code == 75 and "BUSY" in said:
        raise DeviceFailure(f"device {spec.name}: a benchmark is running on it ({said['BUSY']}); nothing was "
                            "removed: clean it once the benchmark has ended")
    if code == 76 and "LOCK" in said:
        raise DeviceFailure(f"device {spec.name}: cannot take the device's lock {said['LOCK']}; nothing was removed")
    if code != 0:
        raise DeviceFailure(f"device {spec.name}: clean-up failed (exit {code})")
    last = (out.strip().splitlines() or ["0"])[-1]   # the script's count, after whatever a login script printed
    if not last.isdigit():
        raise DeviceFailure(f"device {spec.name}: clean-up printed {last[:120]!r}, not the bytes it freed")
    left = int(said.get("UPLOADING", "0") or 0)
    return int(last), [f"{left} upload{'s' * (left > 1)} in progress there (another host's) left alone"] if left else []
