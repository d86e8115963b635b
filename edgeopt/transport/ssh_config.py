"""Where an SSH device really is: the inventory's fields over the ssh config, resolved by OpenSSH itself.

`ssh -G HOST` prints the configuration ssh would use (Include, Match, Host patterns, tokens, defaults),
so with the OpenSSH client installed we ask it. Without it paramiko's reader is used, which has no
`Include`: a config that uses Include is then refused rather than half read.
"""
from __future__ import annotations

import functools
import os
import re
import shlex
import shutil
import subprocess

from ..errors import BadInput, DeviceFailure
from ..inventory import check_host, check_key_files

MAX_HOPS = 8   # a ProxyJump chain longer than this is almost surely a loop in the ssh config
_HOP = re.compile(r"(?:ssh://)?(?:(?P<user>[^@\s,/]+)@)?"
                  r"(?P<host>\[[0-9A-Fa-f:.]+\]|[^\s@:,/\[\]]+)(?::(?P<port>[0-9]+))?/?")


def parse_jump(text: str, where: str) -> list:
    """`[user@]host[:port]` hops (also `ssh://` URIs), comma separated, first hop first."""
    hops = []
    for part in text.split(","):
        match = _HOP.fullmatch(part.strip())
        if not match or match["host"].startswith("-"):
            raise BadInput(f"{where}: ProxyJump hop {part.strip()!r} is not [user@]host[:port]")
        for kind in ("host", "user"):   # as a device's own: they reach a ProxyCommand's %h and %r too
            if match[kind] is not None and not match[kind].startswith("["):
                check_host(match[kind], f"{where}: ProxyJump hop {part.strip()!r}", kind)
        port = int(match["port"]) if match["port"] else None
        if port is not None and not 0 < port < 65536:
            raise BadInput(f"{where}: ProxyJump hop {part.strip()!r}: port {port} is out of range")
        hops.append((match["user"], match["host"].strip("[]"), port))
    return hops


def config_path(options) -> str:
    return options.ssh_config or os.path.expanduser("~/.ssh/config")


def lookup(spec, options) -> dict:
    """The ssh config's answer for spec.host: lower-case keys; identityfile is a list."""
    path = config_path(options)
    ssh = shutil.which("ssh")
    if ssh:
        return _ssh_g(ssh, path, spec)
    return _paramiko_lookup(path, spec)


def _ssh_g(ssh, path, spec) -> dict:
    # -F always: ssh would read the passwd entry's ~/.ssh/config, not $HOME's, and /etc/ssh/ssh_config too.
    argv = [ssh, "-G", "-F", path if os.path.isfile(path) else os.devnull]
    if spec.port:
        argv += ["-p", str(spec.port)]
    if spec.user:
        argv += ["-l", spec.user]
    try:
        proc = subprocess.run(argv + ["--", spec.host], capture_output=True, text=True, timeout=30,
                              stdin=subprocess.DEVNULL, errors="replace")
    except (OSError, subprocess.TimeoutExpired) as e:
        raise DeviceFailure(f"device {spec.name}: cannot run `ssh -G` on ssh config {path}: {e}") from None
    if proc.returncode != 0:
        message = " ".join(proc.stderr.split())[:300] or f"exit {proc.returncode}"
        # "PATH line 3: Bad number 'abc'.", "PATH: line 2: Bad configuration option": the file's defect (or an
        # Include'd file's), bad input; it was exit 3 and a failed result saved
        kind = BadInput if re.search(r"\bline \d+: |bad configuration option", proc.stderr, re.IGNORECASE) \
            else DeviceFailure
        raise kind(f"device {spec.name}: ssh config {path} for {spec.host}: {message}")
    cfg = {"identityfile": []}
    for line in proc.stdout.splitlines():
        key, _, value = line.partition(" ")
        key = key.lower()
        if key == "identityfile":
            cfg["identityfile"].append(value)
        elif key in ("hostname", "port", "user", "proxyjump", "proxycommand", "userknownhostsfile"):
            cfg[key] = value
    return cfg


def _paramiko_lookup(path, spec) -> dict:
    if not os.path.isfile(path):
        return {}
    import paramiko
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        if re.search(r"^\s*include\b", text, re.IGNORECASE | re.MULTILINE):
            raise DeviceFailure(f"device {spec.name}: ssh config {path} uses Include, which only OpenSSH's "
                                "`ssh -G` resolves; install the OpenSSH client (e.g. apt install openssh-client)")
        return paramiko.SSHConfig.from_text(text).lookup(spec.host)
    except (OSError, paramiko.SSHException, ValueError) as e:
        raise BadInput(f"device {spec.name}: cannot read ssh config {path}: {e}") from None


def _port(value: str, path: str, spec) -> int:
    """The config's Port for the host, where ssh -G has not checked it already (paramiko's reading of it does not:
    `Port abc` was a ValueError traceback)."""
    if not str(value).isascii() or not str(value).isdigit() or not 0 < int(value) < 65536:
        raise BadInput(f"device {spec.name}: ssh config {path}: Port {value!r} for {spec.host} is not a port number")
    return int(value)


def resolve(spec, options) -> dict:
    """Host, port, user, key files and jump hosts: the inventory's fields win over the ssh config."""
    check_key_files(spec)
    cfg = lookup(spec, options)
    jump = spec.proxy_jump or cfg.get("proxyjump")
    proxy_command = cfg.get("proxycommand")
    target = {
        "host": cfg.get("hostname", spec.host),
        "port": spec.port or _port(cfg.get("port", "22"), config_path(options), spec),
        "user": spec.user or cfg.get("user") or os.environ.get("USER") or "root",
        "keys": list(spec.key_files) or [os.path.expanduser(k) for k in cfg.get("identityfile", [])
                                          if os.path.isfile(os.path.expanduser(k))],
        "jump": None if not jump or jump.lower() == "none" else jump,
        # where --known-hosts gives none: an alias that worked for ssh was refused as "unknown" against the default
        "known_hosts": _known_hosts_file(cfg.get("userknownhostsfile")),
    }
    target["proxy_command"] = (None if not proxy_command or proxy_command.lower() == "none"
                               else expand_tokens(proxy_command, target, spec.host))
    return target


def _known_hosts_file(value: str | None) -> str | None:
    """The ssh config's UserKnownHostsFile, its first file, where it names one of its own; else None (the
    default, ~/.ssh/known_hosts under $HOME). `ssh -G` prints ssh's default too, expanded from the passwd entry's
    home, not $HOME: that is left to the default, as the config path is. Its list is printed unquoted, so a path
    with spaces is the longest run of words that names a file. `none` and /dev/null (no known hosts: every key
    unknown, and --trust-new-host-keys would trust every one) are no file of their own either."""
    words = (value or "").split()
    if not words or words[0].lower() == "none" or value == _ssh_default_known_hosts():
        return None
    path = next((p for p in (os.path.expanduser(" ".join(words[:n])) for n in range(len(words), 0, -1))
                 if os.path.isfile(p)), os.path.expanduser(words[0]))
    return None if os.path.realpath(path) == os.path.realpath(os.devnull) else path


@functools.lru_cache(maxsize=1)
def _ssh_default_known_hosts() -> str | None:
    """What `ssh -G` prints for UserKnownHostsFile with no config at all (None without OpenSSH)."""
    ssh = shutil.which("ssh")
    if not ssh:
        return None
    try:
        out = subprocess.run([ssh, "-G", "-F", os.devnull, "--", "edgeopt-default"], capture_output=True, text=True,
                             timeout=30, stdin=subprocess.DEVNULL, errors="replace").stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return next((line.partition(" ")[2] for line in out.splitlines()
                 if line.lower().startswith("userknownhostsfile ")), None)


def expand_tokens(command: str, target: dict, original: str) -> str:
    """ProxyCommand's %h, %p, %r, %n and %% as ssh expands them: `ssh -G` prints them unexpanded, and a
    `ProxyCommand ssh -W %h:%p jump` asked the jump host for the literal "%h:%p" and never connected."""
    # each value quoted: paramiko splits the command into arguments (no shell), and a value must stay one
    tokens = {"h": shlex.quote(target["host"]), "p": str(target["port"]), "r": shlex.quote(target["user"]),
              "n": shlex.quote(original), "%": "%"}
    return re.sub(r"%(.)", lambda m: tokens.get(m.group(1), m.group(0)), command)


def last_hop(spec, jump: str, depth: int):
    """The DeviceSpec of the hop nearest the target; the hops before it become its own ProxyJump,
    as `ssh -J a,b` does (b is reached through a; b's own config ProxyJump is then overridden)."""
    from ..inventory import DeviceSpec
    if depth >= MAX_HOPS:
        raise DeviceFailure(f"device {spec.name}: ProxyJump chain deeper than {MAX_HOPS} hops "
                            "(a loop in the ssh config?)")
    hops = parse_jump(jump, f"device {spec.name}")
    user, host, port = hops[-1]
    before = ",".join(_hop_text(h) for h in hops[:-1]) or None
    device = spec.name.split(" (jump host ")[0]    # messages name the device and the hop that failed
    return DeviceSpec(name=f"{device} (jump host {host})", host=host, port=port, user=user, proxy_jump=before)


def _hop_text(hop) -> str:
    user, host, port = hop
    host = f"[{host}]" if ":" in host else host
    return (f"{user}@" if user else "") + host + (f":{port}" if port else "")
