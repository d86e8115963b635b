"""Ansible inventories, read by Ansible: `ansible-inventory -i PATH --list` as a subprocess.

We run Ansible's own executable rather than importing it: its GPL code stays out of edgeopt's import
graph, and everything Ansible reads comes for free and exactly (host ranges, [all:vars], group depth and
ansible_group_priority precedence, group_vars/ and host_vars/, inventory plugins such as `constructed`,
executable script inventories). Without ansible-core there is no fallback reader: Ansible's precedence
and typing rules are too many to copy without drifting, so we refuse, naming the extra to install.
"""
from __future__ import annotations

import json
import os
import pathlib
import shlex
import shutil
import subprocess
import sys

from .errors import BadInput
from .inventory import (FIELDS, Inventory, _check_field, check_name, file_head, hide_secrets, make_device,
                        refuse_unknown_own_vars)

INSTALL_HINT = "pip install 'edgeopt[ansible]'"
ENV_EXECUTABLE = "EDGEOPT_ANSIBLE_INVENTORY"   # path to ansible-inventory; empty: behave as if not installed
TIMEOUT_S = 300                                 # dynamic inventories may query a cloud API
# edgeopt field <- Ansible variables, in the order Ansible's ssh plugin reads them: the last one set wins.
ANSIBLE_VARS = {"host": ("ansible_host", "ansible_ssh_host"), "port": ("ansible_port", "ansible_ssh_port"),
                "user": ("ansible_user", "ansible_ssh_user"),
                "key": ("ansible_private_key_file", "ansible_ssh_private_key_file"),
                "python": ("ansible_python_interpreter",), "connection": ("ansible_connection",)}
SSH_ARG_VARS = ("ansible_ssh_args", "ansible_ssh_common_args", "ansible_ssh_extra_args")
CONNECTIONS = {"ssh": "ssh", "paramiko": "ssh", "paramiko_ssh": "ssh", "smart": "ssh", "local": "local",
               "ansible.builtin.ssh": "ssh", "ansible.builtin.paramiko_ssh": "ssh", "ansible.builtin.local": "local"}
# ssh options that tune or relax the OpenSSH client but do not change where or as whom we connect.
# StrictHostKeyChecking and UserKnownHostsFile=/dev/null only relax host key checking, which edgeopt never does: left
# without effect. A UserKnownHostsFile that names a file is refused: checked against ~/.ssh/known_hosts instead, its
# hosts read as unknown with a hint at the wrong file (a walkthrough); ~/.ssh/config's is honoured.
HARMLESS_OPTIONS = {"stricthostkeychecking", "controlmaster", "controlpersist", "controlpath",
                    "serveraliveinterval", "serveralivecountmax", "connecttimeout", "loglevel", "compression",
                    "forwardagent", "identitiesonly", "preferredauthentications", "pubkeyauthentication",
                    "passwordauthentication", "kbdinteractiveauthentication", "gssapiauthentication",
                    "tcpkeepalive", "hashknownhosts", "checkhostip", "batchmode", "addkeystoagent"}
HARMLESS_FLAGS = {"-C", "-q", "-v", "-vv", "-vvv", "-A", "-a", "-T", "-t", "-tt", "-x", "-X", "-Y", "-n"}


def find_executable() -> str | None:
    """ansible-inventory beside this Python (the venv edgeopt runs in), else on PATH."""
    override = os.environ.get(ENV_EXECUTABLE)
    if override is not None:
        return override or None
    beside = pathlib.Path(sys.executable).parent / "ansible-inventory"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("ansible-inventory")


def load_ansible(path: pathlib.Path) -> Inventory:
    exe = find_executable()
    if exe is None:
        raise BadInput(f"inventory {path}: not edgeopt's YAML format, so it is read as an Ansible inventory, which "
                       f"needs ansible-core (ansible-inventory not found): {INSTALL_HINT}")
    return from_listing(run_list(exe, path), path)


def run_list(exe: str, path: pathlib.Path) -> dict:
    # A source Ansible cannot parse is an error, not a warning followed by an empty inventory.
    env = dict(os.environ, ANSIBLE_INVENTORY_UNPARSED_FAILED="1", ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED="1",
               ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    try:
        proc = subprocess.run([exe, "-i", str(path), "--list"], capture_output=True, text=True, env=env,
                              stdin=subprocess.DEVNULL, timeout=TIMEOUT_S, errors="replace")
    except subprocess.TimeoutExpired:
        raise BadInput(f"inventory {path}: ansible-inventory did not finish within {TIMEOUT_S} s") from None
    except OSError as e:
        raise BadInput(f"inventory {path}: cannot run {exe}: {e.strerror or e} ({INSTALL_HINT})") from None
    if proc.returncode != 0:
        raise BadInput(f"inventory {path}: ansible-inventory refused it: {_reason(proc.stderr)}")
    skipped = [line.split("]:", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("[WARNING]: Skipping")]
    if skipped:   # a key Ansible skips is a host or group lost without a word: `device:` for `devices:` listed none
        raise BadInput(f"inventory {path}: ansible-inventory skipped part of it: {skipped[0]}{_own_format_hint(path)}")
    try:
        listing = json.loads(proc.stdout)
    except ValueError:
        raise BadInput(f"inventory {path}: ansible-inventory printed no JSON: {_reason(proc.stderr)}") from None
    if not isinstance(listing, dict) or not isinstance(listing.get("_meta", {}).get("hostvars", {}), dict):
        raise BadInput(f"inventory {path}: ansible-inventory's output has no _meta.hostvars mapping")
    return listing


def _own_format_hint(path: pathlib.Path) -> str:
    """A hint where a top-level key of the file is a misspelling of edgeopt's own `devices`."""
    import difflib
    import re

    head = file_head(path) if path.is_file() else None
    keys = re.findall(r"^([A-Za-z_][\w-]*)\s*:", head or "", re.MULTILINE)
    near = difflib.get_close_matches("devices", keys, n=1, cutoff=0.75)
    return f" (edgeopt's own inventory lists its devices under `devices:`, not `{near[0]}:`)" if near else ""


def _reason(stderr: str) -> str:
    """Ansible's stderr in one line: the error, then each plugin's own reason."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line.split(":", 1)[1].strip() for line in lines if line.startswith("[ERROR]:")]
    plugins = [line.split("]:", 1)[1].strip() for line in lines
               if line.startswith("[WARNING]: Failed to parse") or line.startswith("[WARNING]:  * Failed to parse")]
    parts = list(dict.fromkeys(errors + plugins)) or lines[-1:] or ["no message"]
    # the INI plugin quotes the line it choked on: a binary file's bytes reached the terminal as they were, and
    # its ansible_password="..." a CI log
    return hide_secrets("".join(c if c.isprintable() else "?" for c in "; ".join(parts)[:1000]))


def from_listing(listing: dict, path) -> Inventory:
    """Hosts, groups (with every descendant group's hosts) and DeviceSpecs from `--list` JSON."""
    source = f"inventory {path}"
    hostvars = _plain(listing.get("_meta", {}).get("hostvars", {}))
    direct, children = {}, {}
    for group, entry in listing.items():
        if group == "_meta":
            continue
        entry = entry if isinstance(entry, dict) else {}
        direct[group] = [str(h) for h in entry.get("hosts") or []]
        children[group] = [str(c) for c in entry.get("children") or []]
    groups = {g: _members(g, direct, children) for g in direct if g != "all"}
    order = _members("all", direct, children) + [h for g in groups.values() for h in g] + sorted(hostvars)
    devices, refused = {}, {}
    for host in dict.fromkeys(order):
        try:
            devices[check_name(host, source)] = device_from_vars(host, hostvars.get(host) or {}, source)
        except BadInput as e:   # refused where it is chosen (Inventory.select), not for every group
            refused[host] = str(e)
    return Inventory(devices, {g: m for g, m in groups.items() if m}, str(path), refused)


def _plain(value):
    """Ansible's JSON marks a value from a plugin or script as {"__ansible_unsafe": value} (not to be
    templated); the value itself is what we use. Vault-encrypted values stay marked and are refused
    where a field needs a string."""
    if isinstance(value, dict):
        if len(value) == 1 and "__ansible_unsafe" in value:
            return _plain(value["__ansible_unsafe"])
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _members(group, direct, children, seen=()) -> list:
    if group in seen:
        return []
    out = list(direct.get(group, []))
    for kid in children.get(group, []):
        out += _members(kid, direct, children, seen + (group,))
    return list(dict.fromkeys(out))


def device_from_vars(name: str, host_vars: dict, source: str):
    """A DeviceSpec from one host's variables, as Ansible's ssh connection would read them."""
    where = f"{source}: host {name}"
    refuse_unknown_own_vars(host_vars, where)
    fields, used = {}, set(SSH_ARG_VARS)
    for field, names in ANSIBLE_VARS.items():
        used.update(names)
        for var in names:
            if host_vars.get(var) is not None:
                fields[field], origin = host_vars[var], var
        if field in fields:
            fields[field] = _ansible_value(field, fields[field], f"{where}: {origin}")
    jump = _jump_from_ssh_args(host_vars, where)
    if jump:
        fields["proxy_jump"] = jump
    for field in FIELDS:
        var = f"edgeopt_{field}"
        if field != "vars":
            used.add(var)
            if host_vars.get(var) is not None:
                fields[field] = _ansible_value(field, host_vars[var], f"{where}: {var}")
    fields["vars"] = {k: v for k, v in host_vars.items() if k not in used}
    if host_vars.get("edgeopt_python") is None and (
            str(fields.get("python", "")).startswith("auto") or fields.get("connection") == "local"):
        # Ansible's interpreter discovery, or a local host's ansible_python_interpreter (group_vars set it for the
        # boards): edgeopt's default, python3 over SSH and its own on `local`; edgeopt_python still names one
        fields.pop("python", None)
    return make_device(name, fields, source)


def _ansible_value(field, value, where):
    if isinstance(value, str) and ("{{" in value or "{%" in value):
        raise BadInput(f"{where}: {value!r} is a Jinja template; ansible-inventory --list does not evaluate "
                       "templates and neither does edgeopt: give the value itself")
    if field == "connection":
        if not isinstance(value, str) or value not in CONNECTIONS:   # a list was a TypeError's traceback
            raise BadInput(f"{where}: connection {value!r} is not one edgeopt can use (ssh, paramiko, smart, local)")
        return CONNECTIONS[value]
    if field == "python" and isinstance(value, str) and value.startswith("auto"):
        return value
    return _check_field(field, value, where)


def _jump_from_ssh_args(host_vars: dict, where) -> str | None:
    """ProxyJump from ansible_ssh_*args (`-J a,b` or `-o ProxyJump=a,b`); any option that would change the
    connection and that edgeopt does not honour is refused rather than dropped."""
    jump = None
    for var in SSH_ARG_VARS:
        value = host_vars.get(var)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise BadInput(f"{where}: {var}: must be a string of ssh arguments")
        try:
            words = shlex.split(value)
        except ValueError as e:
            raise BadInput(f"{where}: {var}: {e}") from None
        jump = _walk_ssh_words(words, f"{where}: {var}") or jump
    return jump


def _walk_ssh_words(words, where):
    jump, i = None, 0
    while i < len(words):
        word = words[i]
        if word in ("-o", "-J") and i + 1 < len(words):
            word, i = word + words[i + 1], i + 1
        if word.startswith("-J") and len(word) > 2:
            jump = word[2:]
        elif word.startswith("-o") and len(word) > 2:
            key, _, value = word[2:].strip().replace("=", " ", 1).partition(" ")
            if key.lower() == "proxyjump":
                jump = value.strip()
            elif key.lower() == "userknownhostsfile" and value.strip() != "/dev/null" and \
                    os.path.expanduser(value.strip()) != os.path.expanduser("~/.ssh/known_hosts"):   # the one checked
                raise BadInput(f"{where}: ssh option UserKnownHostsFile={value.strip()} is not honoured here: edgeopt "
                               "would check ~/.ssh/known_hosts instead; set it in ~/.ssh/config (which edgeopt reads "
                               "through `ssh -G`) or remove it")
            elif key.lower() not in HARMLESS_OPTIONS | {"userknownhostsfile"}:
                raise BadInput(f"{where}: ssh option {key!r} is not honoured by edgeopt's SSH client; "
                               "put it in ~/.ssh/config (read through `ssh -G`) or remove it")
        elif word not in HARMLESS_FLAGS:
            raise BadInput(f"{where}: ssh argument {word!r} is not honoured by edgeopt's SSH client; "
                           "put the setting in ~/.ssh/config (read through `ssh -G`) or remove it")
        i += 1
    if jump is not None:
        _check_field("proxy_jump", jump, f"{where}: ProxyJump")
    return jump
