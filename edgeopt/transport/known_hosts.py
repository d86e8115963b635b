"""An OpenSSH known_hosts file read as ssh reads it, for one host: the keys it lists for the host and the keys it
revokes. paramiko's own loader stops at the first line it cannot parse (an `@revoked` or `@cert-authority`
marker, both common in a managed ~/.ssh/known_hosts) and matches host names exactly, where ssh matches the
patterns (`*`, `?`, `!negation`) and hashed names (`|1|salt|hash`) of sshd(8), "SSH_KNOWN_HOSTS FILE FORMAT".
"""
from __future__ import annotations

import dataclasses
import re

import paramiko


@dataclasses.dataclass
class HostKeys:
    known: list      # paramiko PKeys the file lists for the host, none of them revoked
    revoked: list    # PKeys an `@revoked` line names for the host: refused even where listed, as ssh does


def read(path: str, host_label: str) -> HostKeys:
    """The keys of `path` for `host_label` (`host`, or `[host]:port` off port 22, as ssh writes them). A line ssh
    would skip (malformed, an unknown key type, a `@cert-authority` line: edgeopt checks no host certificates)
    is skipped here too; the file is the user's, and one odd line must not lock them out of every device."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return HostKeys([], [])
    known, revoked = [], []
    for line in lines:
        marker, key = _entry(line, host_label)
        if key is None or marker == "@cert-authority":
            continue
        (revoked if marker == "@revoked" else known).append(key)
    return HostKeys([k for k in known if not listed(k, revoked)], revoked)


def append(path: str, host_label: str, key) -> None:
    """Pin `key` for `host_label` as a line of its own: a file whose last line has no newline had the new line
    glued onto it, which broke that line (a user's @cert-authority) and left the new key unfound, so the next run
    trusted whatever key the host offered again."""
    with open(path, "a+b") as f:
        f.seek(0, 2)
        if f.tell():
            f.seek(-1, 2)
            if f.read(1) != b"\n":
                f.write(b"\n")
        f.write(f"{host_label} {key.get_name()} {key.get_base64()}\n".encode())


def preferring(known: list):
    """A paramiko transport factory that asks first for the host key types `known` lists (as ssh orders its
    HostKeyAlgorithms): a host pinned by its ssh-rsa key offered its ed25519 key first, and was called unknown."""
    names = {k.get_name() for k in known}

    def make(sock, **kwargs):
        transport = paramiko.Transport(sock, **kwargs)
        options = transport.get_security_options()
        first = [a for a in options.key_types if _key_type(a) in names]
        options.key_types = first + [a for a in options.key_types if a not in first]
        return transport
    return make


def _key_type(algorithm: str) -> str:
    """The key type a host key algorithm signs with: an ssh-rsa key serves the rsa-sha2-* algorithms too."""
    return "ssh-rsa" if algorithm in ("rsa-sha2-256", "rsa-sha2-512") else algorithm


def listed(key, keys: list) -> bool:
    return any(key.get_name() == k.get_name() and key.asbytes() == k.asbytes() for k in keys)


def _entry(line: str, host_label: str):
    """(marker or None, the line's key if its host patterns match host_label, else None)."""
    fields = line.split()
    if not fields or fields[0].startswith("#"):
        return None, None
    marker = fields.pop(0) if fields[0].startswith("@") else None
    if len(fields) < 3 or not matches(fields[0], host_label):
        return marker, None
    try:
        entry = paramiko.hostkeys.HostKeyEntry.from_line(" ".join(fields[:3]))
    except Exception:   # noqa: BLE001 - bad base64 or key bytes: ssh skips the line, and so does this reader
        return marker, None
    return marker, entry.key if entry is not None else None


def matches(patterns: str, host_label: str) -> bool:
    """sshd(8): a comma-separated list of patterns, any of which may be negated with `!`; a negated match
    excludes the host whatever else matches. A hashed name matches only the exact host_label."""
    host, hit = host_label.lower(), False
    for pattern in patterns.split(","):
        if pattern.startswith("|1|"):
            hit = hit or _hashed_match(pattern, host_label)
        elif pattern.startswith("!"):
            if _glob(pattern[1:], host):
                return False
        elif _glob(pattern, host):
            hit = True
    return hit


def _glob(pattern: str, host: str) -> bool:
    """ssh's match_pattern: `*` and `?` only; `[` and `]` are literal (`[host]:port`), unlike fnmatch's sets."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern.lower())
    return re.fullmatch(regex, host, re.DOTALL) is not None


def _hashed_match(pattern: str, host_label: str) -> bool:
    try:
        return paramiko.HostKeys.hash_host(host_label, pattern) == pattern
    except Exception:   # noqa: BLE001 - a malformed hash (bad base64): no match, as ssh
        return False
