"""Opening an SSH connection to a device: ~/.ssh/config, ProxyJump, host-key verification,
keepalive, and errors that say what went wrong and what to do about it."""
from __future__ import annotations

import base64
import hashlib
import os
import socket
import threading
import time

import paramiko

from ..errors import DeviceFailure

_known_hosts_lock = threading.Lock()


class HostKeyRefused(DeviceFailure):
    """The device's host key is unknown or changed: refused, with how to trust it."""


def fingerprint(key) -> str:
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _host_label(host, port):
    return host if port == 22 else f"[{host}]:{port}"


class _RefuseUnknown(paramiko.MissingHostKeyPolicy):
    def __init__(self, device, known_hosts):
        self.device, self.known_hosts = device, known_hosts

    def missing_host_key(self, client, hostname, key):
        host, _, port = hostname.strip("[").partition("]:")
        keyscan = f"ssh-keyscan -p {port} {host}" if port else f"ssh-keyscan {host}"
        raise HostKeyRefused(
            f"device {self.device}: host key of {hostname} is unknown ({key.get_name()} {fingerprint(key)}); "
            f"check it, then add it with `{keyscan} >> {self.known_hosts}` or rerun with --trust-new-host-keys")


class _TrustOnFirstUse(paramiko.MissingHostKeyPolicy):
    """Opt-in only: accept an unknown key and append it to known_hosts. A *changed* key is still refused."""

    def __init__(self, known_hosts):
        self.known_hosts = known_hosts

    def missing_host_key(self, client, hostname, key):
        client.get_host_keys().add(hostname, key.get_name(), key)
        with _known_hosts_lock:
            os.makedirs(os.path.dirname(self.known_hosts) or ".", exist_ok=True)
            with open(self.known_hosts, "a") as f:
                f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


def resolve(spec, options):
    """Host, port, user, key files and jump host after applying ~/.ssh/config to the spec."""
    path = options.ssh_config or os.path.expanduser("~/.ssh/config")
    cfg = {}
    if os.path.isfile(path):
        try:
            cfg = paramiko.SSHConfig.from_path(path).lookup(spec.host)
        except (OSError, paramiko.SSHException, ValueError) as e:
            raise DeviceFailure(f"device {spec.name}: cannot read ssh config {path}: {e}") from None
    return {
        "host": cfg.get("hostname", spec.host),
        "port": spec.port or int(cfg.get("port", 22)),
        "user": spec.user or cfg.get("user") or os.environ.get("USER") or "root",
        "keys": list(spec.key_files) or [os.path.expanduser(k) for k in cfg.get("identityfile", [])
                                          if os.path.isfile(os.path.expanduser(k))],
        "jump": spec.proxy_jump or cfg.get("proxyjump"),
        "proxy_command": cfg.get("proxycommand"),
    }


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


def _jump_socket(spec, target, options):
    """ProxyJump: connect to the (first) jump host, then a direct-tcpip channel to the target."""
    from ..inventory import make_device
    jump_text = target["jump"].split(",")[0].strip()
    user, _, hostport = jump_text.rpartition("@")
    host, _, port = hostport.partition(":")
    jump_spec = make_device(f"{spec.name}-jump", {"host": host, "port": port or None, "user": user or None},
                            "ProxyJump")
    jump = open_client(jump_spec, options)
    channel = jump.get_transport().open_channel("direct-tcpip", (target["host"], target["port"]), ("127.0.0.1", 0),
                                                timeout=options.connect_timeout)
    return channel, jump


def _connect_failure(spec, where, client, error, options) -> str:
    """One line for a failed SSH start. paramiko reports a peer that never spoke SSH (or stalled in the
    key exchange) as a later, misleading error such as "No existing session"; say what happened instead."""
    transport = client.get_transport()
    if transport is not None and not transport.is_authenticated():
        if not transport.remote_version:
            return (f"device {spec.name}: {where} accepted the connection but sent no SSH banner within "
                    f"{options.connect_timeout:g} s (not an SSH server, or the device is hung)")
        if transport.host_key is None:
            return (f"device {spec.name}: SSH key exchange with {where} did not finish within "
                    f"{options.connect_timeout:g} s")
    return f"device {spec.name}: cannot connect to {where}: {error or type(error).__name__}"


def open_client(spec, options) -> paramiko.SSHClient:
    target = resolve(spec, options)
    known_hosts = options.known_hosts or os.path.expanduser("~/.ssh/known_hosts")
    client = paramiko.SSHClient()
    if os.path.isfile(known_hosts):
        client.get_host_keys().load(known_hosts)
    client.set_missing_host_key_policy(_TrustOnFirstUse(known_hosts) if options.trust_new_host_keys
                                       else _RefuseUnknown(spec.name, known_hosts))
    where = f"{target['user']}@{target['host']}:{target['port']}"
    deadline = time.monotonic() + options.connect_timeout  # TCP, banner, key exchange and login together
    try:
        if target["jump"]:
            sock, client._edgeopt_jump = _jump_socket(spec, target, options)
        elif target["proxy_command"]:
            sock = paramiko.ProxyCommand(target["proxy_command"])
        else:
            sock = _tcp(target["host"], target["port"], options)
        left = max(0.1, deadline - time.monotonic())
        # The negotiation wait outlasts the banner wait by a little, so a silent peer is reported as
        # such by the transport rather than surfacing later as paramiko's "No existing session".
        client.connect(target["host"], target["port"], username=target["user"], key_filename=target["keys"] or None,
                       sock=sock, timeout=left + 0.5, banner_timeout=left, auth_timeout=left, allow_agent=True,
                       look_for_keys=not target["keys"])
    except HostKeyRefused:
        client.close()
        raise
    except paramiko.BadHostKeyException as e:
        client.close()
        raise HostKeyRefused(
            f"device {spec.name}: HOST KEY CHANGED for {_host_label(target['host'], target['port'])}: got "
            f"{fingerprint(e.key)}, known_hosts has {fingerprint(e.expected_key)}; refused (if the device was "
            f"reinstalled: ssh-keygen -f {known_hosts} -R '{_host_label(target['host'], target['port'])}')") from None
    except paramiko.AuthenticationException as e:
        client.close()
        raise DeviceFailure(f"device {spec.name}: authentication refused for {where} ({e})") from None
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
