"""A Debian bookworm arm64 userland (the base of 64-bit Raspberry Pi OS) run under qemu user-mode
emulation, with real aarch64 wheels of numpy, ONNX Runtime and LiteRT (see ../shared/TESTRIG.md).

Built once per machine (debootstrap, its second stage under emulation, pip for the wheels: ~4 min)
and cached as a tarball outside the clone; each test session unpacks its own copy (3-17 s).

Programs run in it by `chroot`. The kernel's binfmt_misc hands every aarch64 ELF file to
qemu-aarch64-static, so a process the emulated program starts is emulated too: the agent's
measuring child (`sys.executable -m device_agent _measure`) runs unchanged. Without binfmt that
exec fails with ENOEXEC, and debootstrap's second stage cannot run either.

`python tests/arm64.py` builds the cache with its progress on stderr (`make test` does this first).
"""
import fcntl
import hashlib
import importlib.metadata
import json
import os
import pathlib
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
DEB_PACKAGES = ("python3",)
# Pinned so the cache key says what is inside. numpy comes as a wheel, not python3-numpy: the wheel
# bundles its own OpenBLAS (no LD_LIBRARY_PATH) and is what `pip install` gives a Pi user.
WHEELS = ("numpy==2.4.6", "onnxruntime==1.32.0", "ai-edge-litert==2.3.0")
PYTHON_VERSION = "3.11"  # bookworm's python3
# bookworm's glibc is 2.36, so pip on the device accepts manylinux_2_17 .. manylinux_2_36. pip given
# `--platform` does not widen a tag to the older glibcs, and the legacy manylinux2014_aarch64 alone
# finds no ai-edge-litert (its wheel is manylinux_2_27; onnxruntime's is manylinux_2_28).
GLIBC_MINOR = 36
WHEEL_PLATFORMS = tuple(f"manylinux_2_{minor}_aarch64" for minor in range(GLIBC_MINOR, 16, -1)) + (
    "manylinux2014_aarch64", "linux_aarch64")
# Where `pip install` on the device puts packages; on Debian python3's default sys.path.
SITE_PACKAGES = f"usr/local/lib/python{PYTHON_VERSION}/dist-packages"
RECIPE_VERSION = 1  # bump when a build step below changes what ends up in the rootfs

QEMU = "qemu-aarch64-static"
BINFMT = pathlib.Path("/proc/sys/fs/binfmt_misc")
BINFMT_CONF = pathlib.Path("/usr/lib/binfmt.d/qemu-aarch64.conf")  # shipped by qemu-user-static
ELF_MACHINES = {0xB7: "aarch64", 0x3E: "x86_64"}
# A login's environment on the device; nothing of the host's (PYTHONPATH, EDGEOPT_*) leaks in.
DEVICE_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
              "LANG": "C.UTF-8"}
# A private mount namespace gets a fresh /proc (the agent reads cpuinfo, meminfo, /proc/self/status);
# it vanishes with the process, so no mount outlives a killed run. /sys stays unmounted on purpose:
# qemu-user shows the guest the host's x86 /proc/cpuinfo, and with /sys present too ONNX Runtime's
# cpuinfo library takes its ARM path on those x86 facts and segfaults (with either one missing it
# warns and carries on). The host here has no power or thermal sensors in /sys anyway.
IN_ROOT = 'mount -t proc proc "$0/proc" && exec chroot "$0" "$@"'


def recipe() -> dict:
    return {"version": RECIPE_VERSION, "suite": SUITE, "variant": "minbase", "deb": DEB_PACKAGES,
            "wheels": WHEELS, "python": PYTHON_VERSION, "platforms": WHEEL_PLATFORMS, "site": SITE_PACKAGES}


def cache_dir() -> pathlib.Path:
    """$EDGEOPT_ARM64_CACHE, else arm64/ in edgeopt's cache: outside the clone, so a fresh clone reuses it."""
    if os.environ.get("EDGEOPT_ARM64_CACHE"):
        return pathlib.Path(os.environ["EDGEOPT_ARM64_CACHE"])
    root = os.environ.get("EDGEOPT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "edgeopt")
    return pathlib.Path(root, "arm64")


def tarball_path() -> pathlib.Path:
    key = hashlib.sha256(json.dumps(recipe(), sort_keys=True).encode()).hexdigest()[:12]
    return cache_dir() / f"{SUITE}-arm64-{key}.tar.gz"


def unavailable() -> str:
    """Empty when an arm64 userland can run here, else the reason (something outside the project)."""
    if os.geteuid() != 0:
        return "debootstrap, chroot and binfmt_misc need root"
    if platform.machine() != "aarch64" and not shutil.which(QEMU):
        return f"{QEMU} not installed (make test installs qemu-user-static)"
    if not tarball_path().exists() and not shutil.which("debootstrap"):
        return "debootstrap not installed (make test installs it) and no cached arm64 rootfs"
    return enable_binfmt()


def enable_binfmt() -> str:
    """Have the kernel run aarch64 ELF files with qemu, as systemd-binfmt does at boot on a Debian host
    with qemu-user-static (no systemd runs here). Machine-wide, harmless, left in place for later
    sessions. Empty when done, else why it cannot be."""
    if platform.machine() == "aarch64":
        return ""
    if not (BINFMT / "register").exists():
        p = subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], capture_output=True,
                           text=True)
        if p.returncode != 0:
            return f"cannot mount binfmt_misc at {BINFMT}: {p.stderr.strip()}"
    entry = BINFMT / "qemu-aarch64"
    if not entry.exists():
        if not BINFMT_CONF.exists():
            return f"{BINFMT_CONF} missing (qemu-user-static ships it)"
        try:
            (BINFMT / "register").write_text(BINFMT_CONF.read_text().strip())
        except OSError as e:
            return f"cannot register qemu-aarch64 with binfmt_misc: {e}"
    state = entry.read_text()
    if not state.startswith("enabled"):
        return f"binfmt_misc's qemu-aarch64 entry is disabled ({entry})"
    if "F" not in re.search(r"^flags: *(\S*)", state, re.M).group(1):
        return "qemu-aarch64 is registered without the F flag: a chroot cannot reach its interpreter"
    return ""


def ensure_tarball(log=lambda line: None) -> pathlib.Path:
    """The cached rootfs tarball, built first when missing. One builder at a time per cache."""
    target = tarball_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".lock", "w") as lock:
        if not target.exists():
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log("arm64 rootfs: another process is building it; waiting")
                fcntl.flock(lock, fcntl.LOCK_EX)
        else:
            fcntl.flock(lock, fcntl.LOCK_EX)
        if not target.exists():
            build_tarball(target, log)
    return target


def build_tarball(target: pathlib.Path, log):
    """Build in a temp dir next to the cache, tar to .partial, rename: an interrupted build leaves
    no tarball, only a build-* directory that the next build removes."""
    for stale in target.parent.glob("build-*"):
        remove_tree(stale)
    build = pathlib.Path(tempfile.mkdtemp(prefix="build-", dir=target.parent))
    root, started = build / "root", time.monotonic()
    try:
        step = _stepper(log, build / "build.log", started)
        step("debootstrap, first stage (downloads ~60 MB)", ["debootstrap", "--arch=arm64", "--variant=minbase",
             "--include=" + ",".join(DEB_PACKAGES), "--foreign", SUITE, str(root), MIRROR])
        step("debootstrap, second stage under emulation (~3 min)",
             ["unshare", "--mount", "--propagation", "private", "chroot", str(root),
              "/debootstrap/debootstrap", "--second-stage"])
        step("aarch64 wheels: " + " ".join(WHEELS), pip_command(root / SITE_PACKAGES))
        trim(root)
        (root / "etc" / "edgeopt-arm64.json").write_text(json.dumps(recipe(), indent=1) + "\n")
        partial = target.with_name(target.name + ".partial")
        step("tarball " + target.name, ["tar", "-C", str(root), "--numeric-owner", "-czf", str(partial), "."])
        os.replace(partial, target)
        log(f"arm64 rootfs: cached {target} ({target.stat().st_size / 1e6:.0f} MB) "
            f"in {time.monotonic() - started:.0f} s")
    finally:
        remove_tree(build)


def _stepper(log, log_file: pathlib.Path, started: float):
    """A function that runs one build step, its output appended to log_file; a failure raises with
    the output's tail (a broken build fails loudly, it does not skip)."""
    def step(what, cmd):
        log(f"arm64 rootfs: {what} [{time.monotonic() - started:.0f} s]")
        with open(log_file, "a") as out:
            p = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT)
        if p.returncode != 0:
            tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-30:])
            raise RuntimeError(f"arm64 rootfs: {what} failed (exit {p.returncode}):\n{tail}")
    return step


def pip_command(site: pathlib.Path) -> list:
    """The host's pip fetching cp311 aarch64 wheels (and their dependencies) straight into the
    rootfs's site-packages: what `pip install` on the device would install, without emulating pip."""
    platforms = [arg for tag in WHEEL_PLATFORMS for arg in ("--platform", tag)]
    return [sys.executable, "-m", "pip", "install", "--quiet", "--no-warn-conflicts", "--progress-bar", "off",
            "--target", str(site), *platforms, "--python-version", PYTHON_VERSION, "--implementation", "cp",
            "--only-binary=:all:", *WHEELS]


def trim(root: pathlib.Path):
    """Drop apt's downloaded .debs and package lists (~85 MB): nothing here installs with apt."""
    for pattern in ("var/cache/apt/archives/*.deb", "var/lib/apt/lists/*"):
        for path in root.glob(pattern):
            if path.is_file():
                path.unlink()


def remove_tree(path: pathlib.Path):
    """rm -rf that refuses to walk into a mount: a host /proc or /dev left mounted inside a rootfs
    would otherwise be 'deleted' through."""
    path = pathlib.Path(path)
    with open("/proc/self/mounts") as f:
        inside = [m for m in (line.split()[1] for line in f) if m == str(path) or m.startswith(f"{path}/")]
    if inside:
        raise RuntimeError(f"not removing {path}: mounted inside it: {', '.join(inside)}")
    subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=True)  # ~6x faster than rmtree here


def normalized(dist_name: str) -> str:
    """A distribution's name as pip compares it (PEP 503): ai_edge_litert == ai-edge-litert."""
    return re.sub(r"[-_.]+", "-", dist_name).lower()


def elf_machine(path: pathlib.Path) -> str:
    """The architecture an ELF file is built for (e_machine, a little-endian u16 at byte 18)."""
    header = pathlib.Path(path).read_bytes()[:20]
    assert header[:4] == b"\x7fELF", f"{path} is not an ELF file"
    code = int.from_bytes(header[18:20], "little")
    return ELF_MACHINES.get(code, hex(code))


class Rootfs:
    """An unpacked arm64 userland; programs run in it by chroot, as root, with a private /proc."""

    def __init__(self, path: pathlib.Path):
        self.path = pathlib.Path(path)

    @classmethod
    def unpack(cls, tarball: pathlib.Path, dest: pathlib.Path) -> "Rootfs":
        dest.mkdir(parents=True, exist_ok=True)
        subprocess.run(["tar", "-C", str(dest), "--numeric-owner", "-xzf", str(tarball)], check=True)
        return cls(dest)

    def put(self, src: pathlib.Path, name: str) -> str:
        """Copy a host file to /root/edgeopt/<name> in the rootfs (what an upload to the device does);
        returns its path as the device sees it."""
        inside = pathlib.PurePosixPath("/root/edgeopt", name)
        dest = self.path / inside.relative_to("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        return str(inside)

    def run(self, *args, timeout=600) -> subprocess.CompletedProcess:
        cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c", IN_ROOT, str(self.path), *args]
        return subprocess.run(cmd, capture_output=True, text=True, env=DEVICE_ENV, timeout=timeout)

    def installed(self) -> dict:
        """{distribution name, normalized: version} of the wheels in the rootfs's site-packages."""
        dists = importlib.metadata.distributions(path=[str(self.path / SITE_PACKAGES)])
        return {normalized(d.metadata["Name"]): d.version for d in dists}

    def remove(self):
        remove_tree(self.path)


def main() -> int:
    reason = unavailable()
    if reason:
        print(f"arm64 rootfs: not built: {reason} (the arm64 tests will skip)", file=sys.stderr)
        return 0
    path = ensure_tarball(lambda line: print(line, file=sys.stderr, flush=True))
    print(f"arm64 rootfs: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
