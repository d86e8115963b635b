"""Real OpenSSH servers on loopback addresses, one per emulated device (see ../shared/TESTRIG.md).

Each device has its own address, port, ed25519 host key, authorized_keys and working
directory; they all log in the current user and run the test's own Python as the device's. Each stands in
for a board of its own, so each has its own machine lock (EDGEOPT_MACHINE_LOCK, set by its sshd): with /tmp's
one lock they would be measured one after another, as the devices of one machine are.
"""
import dataclasses
import getpass
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time

import psutil

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"

CONFIG = """\
ListenAddress {host}:{port}
HostKey {dir}/hostkey
PidFile {dir}/sshd.pid
AuthorizedKeysFile {dir}/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
Subsystem sftp internal-sftp
MaxStartups 200
MaxSessions 100
LogLevel ERROR
SetEnv EDGEOPT_MACHINE_LOCK={dir}/machine.lock
"""


def available() -> str:
    """Empty when real sshd devices can run here, else the reason they cannot."""
    if not os.path.exists(SSHD):
        return "sshd not installed (make test installs openssh-server)"
    if not shutil.which("ssh-keygen"):
        return "ssh-keygen not installed"
    return ""


def keygen(path: pathlib.Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip() if path.suffix else pathlib.Path(str(path) + ".pub").read_text().strip()


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclasses.dataclass
class Device:
    name: str
    host: str
    port: int
    dir: pathlib.Path
    host_key: str          # "ssh-ed25519 AAAA..."
    proc: subprocess.Popen = None
    prefix: tuple = ()     # e.g. ("ip", "netns", "exec", NS) to run the device inside a network namespace

    @property
    def known_hosts_line(self) -> str:
        name = self.host if self.port == 22 else f"[{self.host}]:{self.port}"
        return f"{name} {self.host_key}"

    def start(self):
        self.proc = subprocess.Popen([*self.prefix, SSHD, "-f", str(self.dir / "sshd_config"), "-D", "-e"],
                                     stdout=subprocess.DEVNULL, stderr=open(self.dir / "sshd.log", "ab"),
                                     start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection((self.host, self.port), timeout=0.5).close()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"sshd for {self.name} exited: {(self.dir / 'sshd.log').read_text()}")
                time.sleep(0.05)
        raise RuntimeError(f"sshd for {self.name} did not start")

    def kill(self):
        """The device dies: the listener and every session it forked (agent included) are killed."""
        if self.proc is None:
            return
        try:
            procs = [psutil.Process(self.proc.pid)] + psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            procs = []
        for p in procs:
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        self.proc.wait()
        self.proc = None


class Lab:
    """A set of emulated devices plus the client key and known_hosts that reach them."""

    def __init__(self, root: pathlib.Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.client_key = root / "client_key"
        self.client_pub = keygen(self.client_key)
        self.known_hosts = root / "known_hosts"
        self.known_hosts.write_text("")
        self.devices = {}
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", exist_ok=True)

    def add(self, name: str, index: int, authorized: bool = True, known: bool = True, host: str = None,
            prefix: tuple = ()) -> Device:
        host = host or f"127.0.{1 + index // 250}.{2 + index % 250}"
        d = self.root / name
        d.mkdir(parents=True, exist_ok=True)
        host_key = keygen(d / "hostkey")
        host_key = " ".join(host_key.split()[:2])
        (d / "authorized_keys").write_text(self.client_pub + "\n" if authorized else "")
        port = 22 if prefix else free_port(host)
        (d / "sshd_config").write_text(CONFIG.format(host=host, port=port, dir=d))
        device = Device(name, host, port, d, host_key, prefix=prefix).start()
        if known:
            with open(self.known_hosts, "a") as f:
                f.write(device.known_hosts_line + "\n")
        self.devices[name] = device
        return device

    def inventory_entry(self, device: Device, python: str = sys.executable, workdir: str = None) -> dict:
        return {"host": device.host, "port": device.port, "user": getpass.getuser(), "key": str(self.client_key),
                "python": python, "workdir": workdir or str(device.dir / "edgeopt-home")}

    def stop(self):
        for device in self.devices.values():
            device.kill()


class NetnsLink:
    """A network namespace joined to this one by a veth pair: a device "across a real link",
    on addresses that exist only inside this test's own namespaces (TESTRIG.md)."""

    def __init__(self, tag: int):
        self.ns = f"eo{os.getpid() % 100000}x{tag}"
        self.host_if, self.dev_if = f"eoh{os.getpid() % 10000}{tag}", f"eod{os.getpid() % 10000}{tag}"
        self.host_ip, self.device_ip = f"10.213.{tag}.1", f"10.213.{tag}.2"

    @staticmethod
    def unavailable() -> str:
        if os.geteuid() != 0:
            return "network namespaces need root"
        if not shutil.which("ip"):
            return "iproute2 (ip) not installed"
        probe = f"eoprobe{os.getpid() % 100000}"
        p = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
        if p.returncode != 0:
            return f"cannot create a network namespace here: {p.stderr.strip()}"
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
        return ""

    def up(self):
        for cmd in (f"ip netns add {self.ns}",
                    f"ip link add {self.host_if} type veth peer name {self.dev_if}",
                    f"ip link set {self.dev_if} netns {self.ns}",
                    f"ip addr add {self.host_ip}/30 dev {self.host_if}", f"ip link set {self.host_if} up",
                    f"ip netns exec {self.ns} ip addr add {self.device_ip}/30 dev {self.dev_if}",
                    f"ip netns exec {self.ns} ip link set {self.dev_if} up",
                    f"ip netns exec {self.ns} ip link set lo up"):
            subprocess.run(cmd.split(), check=True, capture_output=True)
        return self

    def limit_bandwidth(self, rate: str):
        """tc tbf on the host side: what the host sends to the device goes at most `rate`."""
        subprocess.run(f"tc qdisc add dev {self.host_if} root tbf rate {rate} burst 32kbit latency 400ms".split(),
                       check=True, capture_output=True)

    def drop_percent(self, percent: int):
        """nftables inside the device's namespace drops `percent`% of arriving packets at random."""
        script = (f"add table inet edgeopt_loss; add chain inet edgeopt_loss in {{ type filter hook input priority 0; }}; "
                  f"add rule inet edgeopt_loss in numgen random mod 100 < {percent} drop")
        subprocess.run(["ip", "netns", "exec", self.ns, "nft", script], check=True, capture_output=True)

    def down(self):
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)
