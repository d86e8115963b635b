"""Devices and groups: edgeopt's own YAML inventory, Ansible INI and YAML inventories, and
~/.ssh/config aliases. Everything becomes a DeviceSpec, validated before any connection."""
from __future__ import annotations

import configparser
import dataclasses
import os
import pathlib
import re
import shlex

from .errors import BadInput

DEFAULT_WORKDIR = ".cache/edgeopt"   # relative paths are relative to the remote user's home
ANSIBLE_KEYS = {"ansible_host": "host", "ansible_ssh_host": "host", "ansible_port": "port",
                "ansible_ssh_port": "port", "ansible_user": "user", "ansible_ssh_user": "user",
                "ansible_python_interpreter": "python", "ansible_ssh_private_key_file": "key",
                "ansible_connection": "connection"}
OWN_KEYS = {"host", "port", "user", "key", "python", "profile", "workdir", "proxy_jump", "vars", "connection"}


@dataclasses.dataclass(frozen=True)
class DeviceSpec:
    name: str
    host: str
    port: int | None = None          # None: from ~/.ssh/config, else 22
    user: str | None = None
    key_files: tuple = ()
    python: str = "python3"
    profile: str | None = None
    workdir: str = DEFAULT_WORKDIR
    proxy_jump: str | None = None
    connection: str = "ssh"          # ssh | local
    vars: dict = dataclasses.field(default_factory=dict, hash=False)


@dataclasses.dataclass
class Inventory:
    devices: dict                    # name -> DeviceSpec
    groups: dict                     # name -> [device names]
    source: str

    def select(self, group: str | None = None) -> list:
        if group in (None, "all"):
            return list(self.devices.values())
        if group in self.groups:
            return [self.devices[n] for n in self.groups[group]]
        if group in self.devices:
            return [self.devices[group]]
        known = ", ".join(sorted(set(self.groups) | {"all"}))
        raise BadInput(f"inventory {self.source}: no group or device {group!r}; groups: {known}")


def load(path) -> Inventory:
    path = pathlib.Path(path)
    if not path.is_file():
        raise BadInput(f"inventory not found: {path}")
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix.lower() in (".yaml", ".yml"):
        data = _yaml(text, path)
        if isinstance(data, dict) and "devices" in data:
            return _own_format(data, path)
        return _ansible_yaml(data, path)
    return _ansible_ini(text, path)


def _yaml(text, path):
    import yaml
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise BadInput(f"inventory {path} is not valid YAML{where}: {getattr(e, 'problem', e)}") from None


def make_device(name: str, fields: dict, source) -> DeviceSpec:
    """One validated DeviceSpec from edgeopt's field names; unknown or ill-typed fields are refused."""
    if not isinstance(name, str) or not name or not re.fullmatch(r"[^\s/\\]+", name):
        raise BadInput(f"inventory {source}: device name {name!r} must be non-empty with no spaces or slashes")
    unknown = set(fields) - OWN_KEYS
    if unknown:
        raise BadInput(f"inventory {source}: device {name}: unknown field {sorted(unknown)[0]!r}")
    port = fields.get("port")
    try:
        port = None if port is None else int(port)
    except (TypeError, ValueError):
        raise BadInput(f"inventory {source}: device {name}: port {port!r} is not a number") from None
    if port is not None and not 0 < port < 65536:
        raise BadInput(f"inventory {source}: device {name}: port {port} is out of range")
    key = fields.get("key")
    keys = tuple(str(k) for k in (key if isinstance(key, list) else [key] if key else []))
    spec_vars = fields.get("vars") or {}
    if not isinstance(spec_vars, dict):
        raise BadInput(f"inventory {source}: device {name}: vars must be a mapping")
    connection = str(fields.get("connection") or "ssh")
    if connection not in ("ssh", "local"):
        raise BadInput(f"inventory {source}: device {name}: connection {connection!r} is not ssh or local")
    return DeviceSpec(name=name, host=str(fields.get("host") or name), port=port, user=_opt(fields, "user"),
                      key_files=tuple(os.path.expanduser(k) for k in keys), python=str(fields.get("python") or "python3"),
                      profile=_opt(fields, "profile"), workdir=str(fields.get("workdir") or DEFAULT_WORKDIR),
                      proxy_jump=_opt(fields, "proxy_jump"), connection=connection, vars=dict(spec_vars))


def _opt(fields, key):
    value = fields.get(key)
    return None if value is None else str(value)


def _own_format(data: dict, path) -> Inventory:
    """devices: {name: {host, port, user, key, python, profile, workdir, proxy_jump, vars}},
    defaults: {...}, groups: {name: [device, ...]}"""
    defaults = data.get("defaults") or {}
    devices_raw = data.get("devices")
    if not isinstance(devices_raw, dict) or not isinstance(defaults, dict):
        raise BadInput(f"inventory {path}: `devices` and `defaults` must be mappings")
    unknown = set(data) - {"devices", "defaults", "groups"}
    if unknown:
        raise BadInput(f"inventory {path}: unknown top-level key {sorted(unknown)[0]!r}")
    devices = {}
    for name, fields in devices_raw.items():
        if fields is not None and not isinstance(fields, dict):
            raise BadInput(f"inventory {path}: device {name} must be a mapping of fields")
        merged = dict(defaults, **(fields or {}))
        merged["vars"] = dict(defaults.get("vars") or {}, **((fields or {}).get("vars") or {}))
        devices[str(name)] = make_device(str(name), merged, path)
    groups = {}
    for group, members in (data.get("groups") or {}).items():
        if not isinstance(members, list):
            raise BadInput(f"inventory {path}: group {group} must be a list of device names")
        missing = [m for m in members if m not in devices]
        if missing:
            raise BadInput(f"inventory {path}: group {group} names unknown device {missing[0]!r}")
        groups[str(group)] = [str(m) for m in members]
    return Inventory(devices, groups, str(path))


def _from_ansible_vars(name, host_vars: dict, path) -> DeviceSpec:
    fields, extra = {}, {}
    for key, value in host_vars.items():
        if key in ANSIBLE_KEYS:
            fields[ANSIBLE_KEYS[key]] = value
        elif key.startswith("edgeopt_") and key[8:] in OWN_KEYS:
            fields[key[8:]] = value
        else:
            extra[key] = value
    if fields.get("connection") not in (None, "ssh", "local"):
        fields["connection"] = "ssh"  # paramiko / smart etc. all mean SSH to us
    fields["vars"] = extra
    return make_device(name, fields, path)


def _ansible_yaml(data, path) -> Inventory:
    if not isinstance(data, dict):
        raise BadInput(f"inventory {path}: expected an Ansible YAML inventory (a mapping of groups) "
                       "or edgeopt's format (with `devices:`)")
    host_vars, groups = {}, {}

    def walk(group, node, inherited):
        if node is None:
            node = {}
        if not isinstance(node, dict):
            raise BadInput(f"inventory {path}: group {group} must be a mapping")
        group_vars = dict(inherited, **(node.get("vars") or {}))
        members = groups.setdefault(group, [])
        for host, hv in (node.get("hosts") or {}).items():
            host_vars[str(host)] = dict(group_vars, **host_vars.get(str(host), {}), **(hv or {}))
            members.append(str(host))
        for child, sub in (node.get("children") or {}).items():
            walk(str(child), sub, group_vars)
            members.extend(m for m in groups[str(child)] if m not in members)

    for group, node in data.items():
        walk(str(group), node, {})
    devices = {h: _from_ansible_vars(h, v, path) for h, v in host_vars.items()}
    return Inventory(devices, {g: list(dict.fromkeys(m)) for g, m in groups.items()}, str(path))


def _ansible_ini(text, path) -> Inventory:
    """Ansible's INI: [group] host lines with key=value pairs, [group:vars], [group:children].
    configparser reads the sections; each host line is split with shlex."""
    parser = configparser.ConfigParser(allow_no_value=True, delimiters=("\x00",), interpolation=None,
                                       comment_prefixes=("#", ";"), strict=False)
    parser.optionxform = str
    try:
        parser.read_string("[ungrouped]\n" + text, source=str(path))
    except configparser.Error as e:
        raise BadInput(f"inventory {path} is not a valid INI inventory: {str(e).splitlines()[0]}") from None
    host_vars, groups, group_vars, children = {}, {}, {}, {}
    for section in parser.sections():
        group, _, kind = section.partition(":")
        lines = list(parser[section].keys())
        if kind == "vars":
            group_vars[group] = dict(_pair(line, path) for line in lines)
        elif kind == "children":
            children[group] = lines
        elif kind:
            raise BadInput(f"inventory {path}: unknown section kind [{section}]")
        else:
            for line in lines:
                try:
                    words = shlex.split(line)
                except ValueError as e:
                    raise BadInput(f"inventory {path}: [{section}] line {line!r}: {e}") from None
                host_vars.setdefault(words[0], {}).update(dict(_pair(w, path) for w in words[1:]))
                groups.setdefault(group, []).append(words[0])
    for group, kids in children.items():
        for kid in kids:
            for host in _expand(kid, groups, children):
                groups.setdefault(group, []).append(host)
    devices = {}
    for host, hv in host_vars.items():
        merged = {}
        for group, members in groups.items():
            if host in members:
                merged.update(group_vars.get(group, {}))
        merged.update(hv)
        devices[host] = _from_ansible_vars(host, merged, path)
    return Inventory(devices, {g: list(dict.fromkeys(m)) for g, m in groups.items() if m}, str(path))


def _expand(group, groups, children, seen=()):
    if group in seen:
        return []
    out = list(groups.get(group, []))
    for kid in children.get(group, []):
        out += _expand(kid, groups, children, seen + (group,))
    return out


def _pair(word, path):
    key, sep, value = word.partition("=")
    if not sep:
        raise BadInput(f"inventory {path}: {word!r} is not key=value")
    return key.strip(), value.strip()
