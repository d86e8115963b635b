"""Transports move the agent and the bundle to a device and run the agent there.

`local` runs here; anything else is an SSH device: a name from the inventory, or an
~/.ssh/config alias / hostname, optionally `user@host:port`.
"""
from __future__ import annotations

import math
import re

from ..errors import BadInput


# The shortest --timeout: one run of the agent takes its idle baseline (1 s), warm-up (0.2 s) and timed loop (1 s) by
# default, besides starting it and loading the bundle; 0 or 0.01 s failed every trial of a study on the device
# (exit 3), and `bench --timeout 0.5` every run.
MIN_TIMEOUT = 10.0


def check_timeout(timeout) -> None:
    """--timeout of every verb that measures: a number of seconds of at least MIN_TIMEOUT (nan and inf refused)."""
    if not (isinstance(timeout, (int, float)) and MIN_TIMEOUT <= timeout < math.inf):
        shown = f"{timeout:g}" if isinstance(timeout, (int, float)) else repr(timeout)   # "60" from a caller: no :g
        raise BadInput(f"--timeout {shown}: expected a number of seconds of at least {MIN_TIMEOUT:g} (one "
                       "measurement starts the agent, loads the bundle, warms up and times it)")


def resolve_device(name: str, inventory=None):
    """The DeviceSpec for `name`: from the inventory when it has one, else an SSH address."""
    from ..inventory import make_device
    if inventory is not None and (name in inventory.devices or name in inventory.refused):
        return inventory.device(name)
    if name == "local":
        return make_device("local", {"connection": "local"}, "built-in")
    if inventory is not None and re.fullmatch(r"[^@.:\[\]]+", name):
        # A bare name beside an inventory is meant as one of its devices: a typo must not become an SSH host
        # (a DNS lookup, exit 3 and a result file under that name). Hosts outside it: user@host or a dotted name.
        known = ", ".join(sorted(inventory.devices)[:20]) or "none"
        if name in inventory.groups:
            members = ", ".join(d.name for d in inventory.select(name)[:20])
            raise BadInput(f"inventory {inventory.source}: no device {name!r}; {name} is a group of {members}: name "
                           f"one of them (`fleet bench --group {name}` measures them all)")
        raise BadInput(f"inventory {inventory.source}: no device {name!r} (devices: {known}); "
                       f"a host outside the inventory is user@{name}")
    match = re.fullmatch(r"(?:(?P<user>[^@\s]+)@)?(?P<host>[A-Za-z0-9_.\-]+|\[[0-9A-Fa-f:]+\])(?::(?P<port>\d+))?", name)
    if not match:
        raise BadInput(f"device {name!r} is not in the inventory and is not an SSH address (host, user@host:port)")
    return make_device(name, {"host": match["host"].strip("[]"), "user": match["user"], "port": match["port"]},
                       "command line")


def for_spec(spec, ssh_options=None):
    if spec.connection == "local":
        from .local import LocalTransport
        transport = LocalTransport(spec.name)
        transport.spec = spec  # its inventory vars (edgeopt_allowed_signers) apply as on an SSH device
        return transport
    from .ssh import SshTransport
    return SshTransport(spec, ssh_options)


def for_device(name: str, inventory=None, ssh_options=None):
    return for_spec(resolve_device(name, inventory), ssh_options)
