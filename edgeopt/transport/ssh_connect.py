"""Opening an SSH connection to a device: ssh config (ssh_config.py), ProxyJump chains, host-key verification,
keepalive, and errors that say what went wrong and what to do about it."""
from __future__ import annotations

import base64
import difflib
import hashlib
import os
import shlex
import socket
import threading
import time

import paramiko

from ..errors import BadInput, DeviceFailure
from . import known_hosts as known_hosts_file
from .known_hosts import listed
from .ssh_config import last_hop, resolve

_known_hosts_lock = threading.Lock()


class HostKeyRefused(DeviceFailure):
    """The device's host key is unknown or changed: refused, with how to trust it."""


def fingerprint(key) -> str:
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _host_label(host, port):
    return host if port == 22 else f"[{host}]:{port}"


class _VerifyHostKey(paramiko.MissingHostKeyPolicy):
    """Every host key is judged here, as ssh judges it against known_hosts (known_hosts.read): paramiko is
    given no keys, so it asks this policy about each one. A revoked key is refused; a listed one accepted (any
    line that names it, where paramiko would keep one key per type); another key of a listed type is a changed
    key, refused; an unknown key is refused, or with --trust-new-host-keys (opt-in) appended to known_hosts."""

    def __init__(self, device, known_hosts, keys, trust_new: bool):
        self.device, self.known_hosts, self.keys, self.trust_new = device, known_hosts, keys, trust_new
        self.trusted = []   # what --trust-new-host-keys added, said in the result: ssh says "Permanently added"

    def missing_host_key(self, client, hostname, key):
        if listed(key, self.keys.revoked):
            raise HostKeyRefused(f"device {self.device}: REVOKED HOST KEY for {hostname} ({key.get_name()} "
                                 f"{fingerprint(key)}): an @revoked line of {self.known_hosts} names it; refused")
        if listed(key, self.keys.known):
            return
        # any key listed for the host and this one not: changed, whatever its type. A man in the middle of a host
        # pinned by its ed25519 key offered an ECDSA one, which read as "unknown" (and --trust-new-host-keys added
        # it). Stricter than OpenSSH, which asks (or with accept-new adds) a key of a type it does not know yet
        expected = next((k for k in self.keys.known if k.get_name() == key.get_name()), None) or \
            next(iter(self.keys.known), None)
        if expected is not None:
            raise paramiko.BadHostKeyException(hostname, key, expected)
        if not self.trust_new:
            host, _, port = hostname.strip("[").partition("]:")
            keyscan = f"ssh-keyscan -p {port} {host}" if port else f"ssh-keyscan {host}"
            # a mistyped --known-hosts reads as empty: every host is "unknown", and this says why
            absent = "" if os.path.exists(self.known_hosts) else f" ({self.known_hosts} does not exist)"
            # a new user's (or CI runner's) ~/.ssh may not exist: the `>>` alone then failed in the shell
            folder = os.path.dirname(self.known_hosts)
            mkdir = f"mkdir -p -m 700 {shlex.quote(folder)} && " if folder and not os.path.isdir(folder) else ""
            raise HostKeyRefused(
                f"device {self.device}: host key of {hostname} is unknown{absent} ({key.get_name()} "
                f"{fingerprint(key)}); check it, then add it with `{mkdir}{keyscan} >> "
                f"{shlex.quote(self.known_hosts)}` or rerun with --trust-new-host-keys")
        with _known_hosts_lock:
            os.makedirs(os.path.dirname(self.known_hosts) or ".", mode=0o700, exist_ok=True)   # as ssh makes ~/.ssh
            known_hosts_file.append(self.known_hosts, hostname, key)
        self.keys.known.append(key)
        self.trusted.append(f"trusted the new host key of {hostname} ({key.get_name()} {fingerprint(key)}) and added "
                            f"it to {self.known_hosts} (--trust-new-host-keys): compare it with the device's own")


def _tcp(host, port, options):
    """A TCP socket that the kernel declares dead after `dead_peer_timeout` s without acknowledgement."""
    sock = socket.create_connection((host, port), timeout=options.connect_timeout)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    if hasattr(socket, "TCP_KEEPIDLE"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, max(1, int(options.keepalive)))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, max(1, int(options.dead_peer_timeout) - 1))
    if hasattr(socket, "TCP_USER_TIMEOUT"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(options.dead_peer_timeout * 1000))
    return sock


def _jump_socket(spec, target, options, depth, opened: list):
    """ProxyJump a,b,...: a client to the last hop (itself reached through the hops before it), then a
    direct-tcpip channel from there to the target: multi-hop chains paramiko channels as `ssh -J` does."""
    jump = open_client(last_hop(spec, target["jump"], depth), options, depth + 1, opened)   # Ctrl-C closes it too
    try:
        channel = jump.get_transport().open_channel("direct-tcpip", (target["host"], target["port"]),
                                                    ("127.0.0.1", 0), timeout=options.connect_timeout)
    except (OSError, paramiko.SSHException, EOFError) as e:
        jump.close()
        raise DeviceFailure(f"device {spec.name}: jump host {jump.edgeopt_address} cannot reach "
                            f"{target['host']}:{target['port']}: {e or type(e).__name__}") from None
    return channel, jump


def _connect_failure(spec, where, client, error, options) -> str:
    """One line for a failed SSH start. paramiko reports a peer that never spoke SSH (or stalled in the
    key exchange) as a later, misleading error such as "No existing session"; say what happened instead."""
    transport = client.get_transport()
    if transport is not None and not transport.is_authenticated():
        if not transport.remote_version and isinstance(error.__context__, (EOFError, ConnectionError)):
            # at once, where "within 10 s" sent the user after a hung device (a web server on that port)
            return (f"device {spec.name}: {where} accepted the connection and closed it without an SSH banner "
                    "(not an SSH server: the wrong port?)")
        if not transport.remote_version:
            return (f"device {spec.name}: {where} accepted the connection but sent no SSH banner within "
                    f"{options.connect_timeout:g} s (not an SSH server, or the device is hung)")
        if transport.host_key is None:
            return (f"device {spec.name}: SSH key exchange with {where} did not finish within "
                    f"{options.connect_timeout:g} s")
    return f"device {spec.name}: cannot connect to {where}: {error or type(error).__name__}{_password_hint(spec, error)}"


# Ansible's password variables, which edgeopt does not use: it logs in with keys and ssh-agent only
PASSWORD_VARS = ("ansible_password", "ansible_ssh_pass", "ansible_ssh_password")


def _keys_tried(target: dict) -> str:
    """Which keys a refused login offered: with many boards and keys, "Authentication failed." alone does not say
    which key to authorize."""
    agent = " and ssh-agent's" if os.environ.get("SSH_AUTH_SOCK") else ""
    if target["keys"]:
        return f"keys tried: {', '.join(target['keys'])}{agent}"
    return f"keys tried: ~/.ssh/id_* (no key: given){agent}"


def _password_hint(spec, error) -> str:
    """Why a login found "No authentication methods available": an inventory's password, which edgeopt does not
    use, or no key at all (a new user or CI runner with no ~/.ssh/id_* and no ssh-agent: the bare message said
    nothing of what to give)."""
    if "authentication" not in str(error).lower():
        return ""
    if any(spec.vars.get(v) for v in PASSWORD_VARS):
        return ("; edgeopt logs in with keys and ssh-agent only, not the inventory's password: give a key "
                "(ansible_ssh_private_key_file, key:) or load one into ssh-agent")
    if "no authentication methods" in str(error).lower():
        agent = "ssh-agent offers none" if os.environ.get("SSH_AUTH_SOCK") else "no ssh-agent runs"
        return (f"; no private key was found (~/.ssh/id_*, or a `key` the inventory gives) and {agent}: give the "
                "device a `key` in an inventory or an IdentityFile in ~/.ssh/config, or load one with ssh-add")
    return ""


class _Client(paramiko.SSHClient):
    """Closing a device's client also closes the jump hosts' clients it was reached through."""
    edgeopt_jump = None

    def close(self):
        super().close()
        if self.edgeopt_jump is not None:
            self.edgeopt_jump.close()
            self.edgeopt_jump = None


def open_client(spec, options, depth: int = 0, opened: list | None = None) -> paramiko.SSHClient:
    """A connected, host-key-verified client; on failure the jump hosts opened on the way are closed.
    opened: a list the clients being opened are added to as they are made, so that another thread can close them
    (Ctrl-C in a fleet run: a device whose sshd does not answer held it for --connect-timeout)."""
    opened = [] if opened is None else opened
    try:
        return _open_client(spec, options, depth, opened)
    except BaseException:
        for client in opened:
            client.close()
        raise


def _open_client(spec, options, depth, opened) -> paramiko.SSHClient:
    target = resolve(spec, options)
    known_hosts = options.known_hosts or target["known_hosts"] or os.path.expanduser("~/.ssh/known_hosts")
    client = _Client()
    opened.append(client)
    keys = known_hosts_file.read(known_hosts, _host_label(target["host"], target["port"]))
    policy = _VerifyHostKey(spec.name, known_hosts, keys, options.trust_new_host_keys)
    client.set_missing_host_key_policy(policy)
    client.edgeopt_trusted = policy.trusted   # the jump hosts' first (_jump_socket)
    where = f"{target['user']}@{target['host']}:{target['port']}"
    deadline = time.monotonic() + options.connect_timeout  # TCP, banner, key exchange and login together
    try:
        if target["jump"]:
            sock, client.edgeopt_jump = _jump_socket(spec, target, options, depth, opened)
            policy.trusted[:0] = getattr(client.edgeopt_jump, "edgeopt_trusted", [])
        elif target["proxy_command"]:
            sock = paramiko.ProxyCommand(target["proxy_command"])
        else:
            sock = _tcp(target["host"], target["port"], options)
        left = max(0.1, deadline - time.monotonic())
        # The negotiation wait outlasts the banner wait by a little, so a silent peer is reported as
        # such by the transport rather than surfacing later as paramiko's "No existing session".
        client.connect(target["host"], target["port"], username=target["user"], key_filename=target["keys"] or None,
                       sock=sock, timeout=left + 0.5, banner_timeout=left, auth_timeout=left, allow_agent=True,
                       look_for_keys=not target["keys"], transport_factory=known_hosts_file.preferring(keys.known))
    except HostKeyRefused:
        client.close()
        raise
    except paramiko.BadHostKeyException as e:
        client.close()
        raise HostKeyRefused(
            f"device {spec.name}: HOST KEY CHANGED for {_host_label(target['host'], target['port'])}: got "
            f"{e.key.get_name()} {fingerprint(e.key)}, known_hosts has {e.expected_key.get_name()} "
            f"{fingerprint(e.expected_key)}; refused (if the device was "
            f"reinstalled: ssh-keygen -f {known_hosts} -R '{_host_label(target['host'], target['port'])}')") from None
    except paramiko.PasswordRequiredException:
        client.close()
        raise DeviceFailure(f"device {spec.name}: the key for {where} is encrypted, and edgeopt asks for no "
                            "passphrase: load it into ssh-agent (ssh-add KEY), which edgeopt uses") from None
    except paramiko.AuthenticationException as e:
        client.close()
        raise DeviceFailure(f"device {spec.name}: authentication refused for {where} ({e}; {_keys_tried(target)})"
                            f"{_password_hint(spec, e)}") from None
    except socket.gaierror as e:
        client.close()
        if spec.on_command_line and not target["jump"] and not target["proxy_command"]:
            # `bench s.edgepkg --device lcoal`: exit 3 and a failed result saved under that name, which then
            # failed every `check results/*.json` with exit 3 (a user review)
            meant = " (did you mean `local`?)" if difflib.get_close_matches(spec.name, ["local"], cutoff=0.6) else ""
            raise BadInput(f"device {spec.name}: no inventory names it and the host {target['host']} does not "
                           f"resolve ({e.strerror or e}){meant}; a device is `local`, a name from --inventory, an "
                           "~/.ssh/config alias, or a reachable host name or address") from None
        raise DeviceFailure(f"device {spec.name}: the host {target['host']} does not resolve "
                            f"({e.strerror or e})") from None
    except (socket.timeout, TimeoutError):
        client.close()
        raise DeviceFailure(f"device {spec.name}: no answer from {where} within {options.connect_timeout:g} s") from None
    except (OSError, paramiko.SSHException, EOFError) as e:
        message = _connect_failure(spec, where, client, e, options)
        client.close()
        raise DeviceFailure(message) from None
    transport = client.get_transport()
    transport.set_keepalive(max(1, int(options.keepalive)))
    client.edgeopt_address = where
    return client
