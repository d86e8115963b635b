"""Devices and groups. Two sources, each read by its owner's rules:

- edgeopt's own YAML inventory (`devices:`, `defaults:`, `groups:`), validated here against the declared
  schema below: every refusal is one line naming the file and the field;
- any Ansible inventory (INI, YAML, a directory with group_vars/ and host_vars/, an inventory plugin config,
  an executable script), read by `ansible-inventory --list` itself (edgeopt/inventory_ansible.py).

Everything becomes a DeviceSpec, validated before any connection."""
from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
import re
import shlex
import warnings

from .errors import BadInput, first_line

DEFAULT_WORKDIR = ".cache/edgeopt"   # relative paths are relative to the remote user's home
DEFAULT_PYTHON = "python3"
# The declared schema of a device's fields (own format, `defaults:`, and `edgeopt_*` Ansible variables).
FIELDS = {"host": "string", "port": "port", "user": "string", "key": "strings", "python": "command",
          "profile": "string", "workdir": "string", "proxy_jump": "jump", "connection": "connection",
          "vars": "mapping"}
OWN_KEYS = set(FIELDS)
ALLOWED_SIGNERS_VAR = "edgeopt_allowed_signers"   # a device var: the device-side allowed-signers file
# A `local` device takes these from its own entry only: `defaults:` (or Ansible's ansible_python_interpreter, which
# group_vars set for every host) name the boards' venv and folder, and on this host they would run another Python.
LOCAL_OWN_ONLY = ("python", "workdir")
TOP_LEVEL = ("devices", "defaults", "groups")


# Inventory variables edgeopt shows with their value hidden: an Ansible inventory holds connection and vault
# secrets (ansible_password, ansible_become_pass), and `device list --json` printed them as they are.
SECRET_VAR = re.compile(r"pass|pwd|secret|token|credential|vault|api_?key", re.I)
# the password of a URL's user (https://u:hunter2@mirror, https://:token@host, one holding / or @): hidden
# whatever the variable's name, up to the URL's last @
URL_PASSWORD = re.compile(r"(://[^/\s:@]*:)\S*@")
# `name=value` (or `name: value`, YAML's) where the name is secret-like, as Ansible quotes an inventory line it
# cannot parse: a quoted value to its closing quote, an unclosed one to the `':` that ends Ansible's quote of the
# line (its reason follows), a bare one to the next space
SECRET_ASSIGNMENT = re.compile(r"(\b[\w.-]*(?:pass|pwd|secret|token|credential|vault|api_?key)[\w.-]*\s*[=:]\s*)"
                               r"(\"[^\"]*\"|'[^']*'|\"[^\"]*?(?='\s*:|$)|'[^']*?(?='\s*:|$)|\S+?(?='\s*:\s|\s|$))",
                               re.I)


def hide_secrets(text: str) -> str:
    """`text` with secret-like assignments' values and URLs' passwords as ***."""
    return URL_PASSWORD.sub(r"\1***@", SECRET_ASSIGNMENT.sub(r"\1***", text))


def shown_vars(host_vars: dict) -> dict:
    """A device's variables as edgeopt prints them: secret-like ones as "***", inside nested ones too
    (`creds: {api_key: ...}`, a list of such mappings)."""
    def shown(value):
        if isinstance(value, dict):
            return shown_vars(value)
        if isinstance(value, (list, tuple)):
            return [shown(v) for v in value]
        return URL_PASSWORD.sub(r"\1***@", value) if isinstance(value, str) else value
    return {k: "***" if SECRET_VAR.search(str(k)) and v is not None else shown(v) for k, v in host_vars.items()}


@dataclasses.dataclass(frozen=True)
class DeviceSpec:
    name: str
    host: str
    port: int | None = None          # None: from ~/.ssh/config, else 22
    user: str | None = None
    key_files: tuple = ()
    # a command line ("/usr/bin/env python3" is two words); None: python3 over SSH, edgeopt's own on `local`
    python: str | None = None
    profile: str | None = None
    workdir: str | None = None       # None: DEFAULT_WORKDIR over SSH, edgeopt's cache on `local`
    proxy_jump: str | None = None
    connection: str = "ssh"          # ssh | local
    vars: dict = dataclasses.field(default_factory=dict, hash=False)
    # an address typed on the command line, in no inventory: a name that does not resolve is then a typo (bad
    # input), not a device that failed
    on_command_line: bool = dataclasses.field(default=False, compare=False)
    inventory: str = dataclasses.field(default="", compare=False)   # the file it came from, for its errors

    def field(self, name: str) -> str:
        """How an error names one of its fields: `device pi (inventory fleet.yaml): field `key``."""
        return f"device {self.name}{f' (inventory {self.inventory})' if self.inventory else ''}: field `{name}`"

    @property
    def python_argv(self) -> list:
        """The interpreter command as argv; each word is quoted again on the remote side."""
        return shlex.split(self.python or DEFAULT_PYTHON)


def check_key_files(spec: DeviceSpec) -> None:
    """An inventory's `key` that is not a file on this host is bad input (exit 2), said before any connection,
    not a device that cannot be reached (exit 3)."""
    for path in spec.key_files:
        if not os.path.isfile(path):
            raise BadInput(f"{spec.field('key')}: no such file: {path}")
        if _public_key(path):   # paramiko said "not a valid OPENSSH private key file", as a device failure
            private = path[:-4] if path.endswith(".pub") else "its private key"
            raise BadInput(f"{spec.field('key')}: {path} is a public key; give the private key ({private})")
        unreadable = _not_a_private_key(path)
        if unreadable:   # was a device failure (exit 3) per device, and the fleet went on without any
            raise BadInput(f"{spec.field('key')}: {path} is no private key edgeopt can use: {unreadable}")
        st = os.stat(path)
        if st.st_uid == os.getuid() and st.st_mode & 0o077:   # OpenSSH's own rule (sshkey_perm_ok)
            raise BadInput(f"{spec.field('key')}: {path} is readable by others (mode {st.st_mode & 0o777:04o}): "
                           f"a private key must be yours alone, as ssh refuses it otherwise; chmod 600 {path}")


def _not_a_private_key(path: str) -> str | None:
    """Why paramiko, which connects, cannot read `path` as a private key; None where it can, where the key only
    lacks its passphrase, or where an ssh-agent runs: paramiko then passes over a key file it cannot read (a
    PKCS#8 RSA key OpenSSH takes) and logs in with the agent's keys, which may hold it."""
    import paramiko

    if os.environ.get("SSH_AUTH_SOCK"):
        return None
    try:
        with warnings.catch_warnings():   # cryptography's "DSA is deprecated": the answer below says more
            warnings.simplefilter("ignore")
            paramiko.PKey.from_path(path)
    except TypeError as e:   # paramiko's "Key is password-protected, but password was not provided."
        return None if "password" in str(e).lower() else str(e)
    except paramiko.PasswordRequiredException:
        return None
    except paramiko.UnknownKeyType as e:   # DSA (paramiko 4 dropped it), Ed448
        kind = getattr(e.key_type, "__name__", None) or str(e.key_type or "unknown")
        return f"paramiko cannot use this key type ({kind}): give an ed25519, ecdsa or rsa key"
    except (paramiko.SSHException, ValueError, UnicodeDecodeError) as e:
        reason = str(e).split(". See ")[0]   # cryptography's "Unable to load PEM file. See https://... for details"
        return (f"paramiko, edgeopt's SSH client, cannot read it ({reason}); an OpenSSH key in another format "
                "converts with `ssh-keygen -p -f KEY`")
    except OSError as e:
        return e.strerror or str(e)
    return None


def _public_key(path: str) -> bool:
    """Whether a key file holds an OpenSSH public key line (ssh-ed25519 AAAA..., ecdsa-sha2-...)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return False
    return re.match(rb"(ssh-[a-z0-9-]+|ecdsa-sha2-[a-z0-9-]+|sk-[a-z0-9@.-]+) AAAA", head) is not None


@dataclasses.dataclass
class Inventory:
    devices: dict                    # name -> DeviceSpec
    groups: dict                     # name -> [device names]
    source: str
    # name -> why edgeopt cannot use the host (an Ansible inventory's docker host, say): refused only where chosen,
    # since a team's shared inventory holds hosts of every kind beside the boards
    refused: dict = dataclasses.field(default_factory=dict)

    def select(self, group: str | None = None) -> list:
        if not self.devices and not self.refused:   # an empty file listed nothing, exit 0: a fleet of none "passed"
            raise BadInput(f"inventory {self.source} names no device")
        if group in (None, "all"):
            names = list(self.devices) + list(self.refused)
        elif group in self.groups:
            names = self.groups[group]
        elif group in self.devices or group in self.refused:
            names = [group]
        else:
            known = ", ".join(sorted(set(self.groups) | {"all"}))
            raise BadInput(f"inventory {self.source}: no group or device {group!r}; groups: {known}")
        return [self.device(n) for n in names]

    def device(self, name: str) -> DeviceSpec:
        if name in self.refused:
            raise BadInput(self.refused[name])
        return self.devices[name]


def load(path) -> Inventory:
    """edgeopt's own YAML when the file is one (a mapping whose keys are among devices/defaults/groups,
    `devices` included); anything else is an Ansible inventory, read by ansible-inventory."""
    path = pathlib.Path(path)
    if not path.exists():
        raise BadInput(f"inventory not found: {path}")
    return _load(path)


def _load(path: pathlib.Path) -> Inventory:
    if path.is_file() and path.suffix.lower() in (".yaml", ".yml"):
        try:
            data = _yaml(path)
        except BadInput:
            # Ansible YAML may hold what a safe loader refuses (`!vault`, `!unsafe`): only a file that
            # looks like ours gets our YAML error; Ansible judges the rest.
            if _looks_own(path):
                raise
            data = None
        if is_own_format(data):
            return own_format(data, path)
    from .inventory_ansible import load_ansible
    return load_ansible(path)


def is_own_format(data) -> bool:
    """A mapping with `devices`, unless `devices` is plainly an Ansible group (only hosts/children/vars)."""
    if not isinstance(data, dict) or "devices" not in data:
        return False
    group = data["devices"]
    return not (isinstance(group, dict) and group and all(k in ("hosts", "children", "vars") for k in group))


def _looks_own(path) -> bool:
    head = file_head(path)
    return head is None or re.search(r"^devices\s*:", head, re.MULTILINE) is not None


def file_head(path) -> str | None:
    """The first 64 KiB of an inventory file as text, where its top-level keys are; None where it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read(65536).decode("utf-8", errors="replace")
    except OSError:
        return None


def _yaml(path):
    import yaml
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise BadInput(f"inventory {path}: cannot read: {e}") from None
    try:
        return yaml.load(text, Loader=_unique_key_loader())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        problem = getattr(e, "problem", None) or first_line(e)
        raise BadInput(f"inventory {path} is not valid YAML{where}: {problem}") from None
    except RecursionError:
        raise BadInput(f"inventory {path} is not valid YAML: it is nested too deeply to read") from None
    except (ValueError, TypeError) as e:   # e.g. a date or timestamp YAML cannot build
        raise BadInput(f"inventory {path} is not valid YAML: {type(e).__name__}: {e}") from None


@functools.lru_cache(maxsize=None)
def _unique_key_loader():
    import yaml

    class Loader(yaml.SafeLoader):
        """PyYAML keeps the last of two equal keys silently; a duplicated device would vanish unseen."""

        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                if isinstance(key_node, yaml.ScalarNode):
                    key = (key_node.tag, key_node.value)
                    if key in seen:
                        raise yaml.constructor.ConstructorError(
                            None, None, f"duplicate key {key_node.value!r}", key_node.start_mark)
                    seen.add(key)
            return super().construct_mapping(node, deep=deep)

        def compose_document(self):
            """Aliases kept, their expansion bounded: nine levels of ten aliases each (609 bytes) expand to a
            billion values when the devices are listed (a fuzzing audit: over 1 GB and a minute, still going)."""
            node = super().compose_document()
            if node is not None and _expanded_size(node, {}) > MAX_EXPANDED_NODES:
                raise yaml.composer.ComposerError(None, None, f"its aliases expand to more than {MAX_EXPANDED_NODES:,} "
                                                  "values (an alias bomb?)", node.start_mark)
            return node

    # Ansible's tags (`!vault`, `!unsafe`) load as a marker, so an Ansible YAML file can still be told
    # apart from ours; our schema refuses the marker where a field needs a plain value.
    Loader.add_multi_constructor("!", lambda loader, suffix, node: Tagged(f"!{suffix}"))
    return Loader


MAX_EXPANDED_NODES = 1_000_000   # values in an inventory with its aliases expanded: a fleet of thousands fits


def _expanded_size(node, sizes: dict) -> int:
    """The values `node` holds with every alias expanded, each shared node counted once per use (`sizes`: by id;
    None while its children are counted, so an alias inside the node it names is found, not a RecursionError)."""
    if id(node) not in sizes:
        sizes[id(node)] = None
        children = (node.value if isinstance(node.value, list) else [])
        pairs = [part for child in children for part in (child if isinstance(child, tuple) else (child,))]
        sizes[id(node)] = 1 + sum(_expanded_size(child, sizes) for child in pairs)
    elif sizes[id(node)] is None:
        import yaml   # here, not in every call of a walk over up to a million values
        raise yaml.composer.ComposerError(None, None, "an alias refers to a value that holds it (a cycle)",
                                          node.start_mark)
    return sizes[id(node)]


class Tagged(str):
    """A YAML value behind a tag edgeopt does not read (`!vault ...`)."""

    def __repr__(self):
        return f"<a value tagged {str(self)}>"


# --- the own format's schema ------------------------------------------------------------------------
def _check_field(field, value, where):
    kind = FIELDS[field]
    if kind == "port":
        if isinstance(value, str) and value.isascii() and value.isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadInput(f"{where}: {value!r} is not a port number (a whole number, 1 to 65535)")
        if not 0 < value < 65536:
            raise BadInput(f"{where}: port {value} is out of range")
        return value
    if kind == "strings":
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(v, str) and v for v in values):
            raise BadInput(f"{where}: must be a path or a list of paths")
        return values
    if kind == "mapping":
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise BadInput(f"{where}: must be a mapping with string keys")
        return dict(value)
    if not isinstance(value, str) or isinstance(value, Tagged) or not value.strip():
        raise BadInput(f"{where}: must be a non-empty string, not {value!r}")
    if kind == "command":
        try:
            words = shlex.split(value)
        except ValueError as e:
            raise BadInput(f"{where}: {value!r} is not a command line: {e}") from None
        if not words:
            raise BadInput(f"{where}: {value!r} is an empty command")
    elif kind == "connection" and value not in ("ssh", "local"):
        raise BadInput(f"{where}: connection {value!r} is not ssh or local")
    elif kind == "jump" and value.lower() != "none":
        from .transport.ssh_config import parse_jump
        parse_jump(value, where)
    elif field == "host":
        check_host(value, where)
    elif field == "user":   # it reaches a ProxyCommand's %r, split into arguments
        check_host(value, where, "user")
    elif field == "workdir":
        return _check_workdir(value, where)
    return value


# Characters OpenSSH refuses in a host name (its valid_hostname): said when the inventory is read, not as a failed
# result of that device at run time, with exit 3 and a message naming an ssh config that did not exist.
HOST_REFUSED = set("'`\"$\\;&<>|(){}")


def check_host(value: str, where, kind: str = "host") -> None:
    if value.startswith("-") or any(c.isspace() or not c.isprintable() for c in value):
        raise BadInput(f"{where}: {kind} {value!r} may not start with '-' or hold spaces")
    if kind == "host" and value.startswith("[") and value.endswith("]"):
        raise BadInput(f"{where}: host {value!r}: give an IPv6 address without brackets ({value[1:-1]}), its "
                       "port as `port:`")
    bad = sorted(set(value) & HOST_REFUSED)
    if bad:
        raise BadInput(f"{where}: {kind} {value!r} holds {bad[0]!r}, which no {kind} name or address has")


def _check_workdir(value: str, where) -> str:
    """A directory edgeopt owns on the device: it caches bundles there and `device clean` empties its store, so
    not the root, the home itself (`.`, `~`) or a path that climbs out with `..`. `~/x` is `x`, relative to the
    home, as the shell reads it: no shell reads it on the device, where it made a directory named `~`."""
    parts = [p for p in value.split("/") if p not in ("", ".")]
    if not parts or parts == ["~"] or ".." in parts:
        raise BadInput(f"{where}: workdir {value!r} must name a directory of its own (such as {DEFAULT_WORKDIR}, "
                       "relative to the home), not the root, the home itself or a path with '..'")
    if parts[0].startswith("~") and not value.startswith("~/"):
        raise BadInput(f"{where}: workdir {value!r}: another user's home (~user) is not read on the device; give "
                       "a path relative to the login's home, or an absolute one")
    workdir = value[2:].lstrip("/") if value.startswith("~/") else value
    if workdir.startswith("-"):   # the agent's path begins with it: the device's python read it as its own option
        raise BadInput(f"{where}: workdir {value!r} begins with '-', which the device's programs read as an option; "
                       f"write it ./{workdir}")
    return workdir


MAX_DEVICE_NAME = 200


def check_name(name, where) -> str:
    if isinstance(name, bool) or not isinstance(name, (str, int)):
        raise BadInput(f"{where}: device name {name!r} must be a string")
    name = str(name)
    if not name or any(c.isspace() or c in "/\\" for c in name):
        raise BadInput(f"{where}: device name {name!r} must be non-empty with no spaces or slashes")
    if len(name) > MAX_DEVICE_NAME:   # the store's column: PostgreSQL refused the row after the measurement
        raise BadInput(f"{where}: device name {name[:40]!r}... is {len(name)} characters, more than the "
                       f"{MAX_DEVICE_NAME} a results store keeps")
    return name


_UNSET = object()


def refuse_unknown_own_vars(host_vars: dict, where: str) -> None:
    """`edgeopt_profil=...` was kept as a plain variable and never used, where the own format refuses an unknown
    field; so was `edgeopt_allowed_signer`, which ran unsigned bundles on a device meant to refuse them. Refused
    where it is close to one edgeopt reads; another edgeopt_ name (a role's own, edgeopt_version) stays a plain
    variable. An empty edgeopt_allowed_signers is refused too: it read as "no signature required"."""
    import difflib
    known = [f"edgeopt_{f}" for f in FIELDS] + [ALLOWED_SIGNERS_VAR]
    for var in host_vars:
        if isinstance(var, str) and var.startswith("edgeopt_") and var not in known:
            close = difflib.get_close_matches(var, known, n=1, cutoff=0.9)   # edgeopt_role is no edgeopt_profile
            if "signer" in var.lower():   # edgeopt_signers, edgeopt_trusted_signers: any slip here runs unsigned
                close = [ALLOWED_SIGNERS_VAR]
            if close:
                raise BadInput(f"{where}: {var}: not a variable edgeopt reads; did you mean {close[0]}? (edgeopt_<field> "
                               f"for the fields {', '.join(FIELDS)}, or {ALLOWED_SIGNERS_VAR})")
    signers = host_vars.get(ALLOWED_SIGNERS_VAR, _UNSET)
    if signers is not _UNSET and (not isinstance(signers, str) or not signers.strip()):
        raise BadInput(f"{where}: {ALLOWED_SIGNERS_VAR}: {signers!r} is no file: give the device-side allowed-signers "
                       "file, or leave the variable out to run unsigned bundles")


def make_device(name, fields: dict, source) -> DeviceSpec:
    """One validated DeviceSpec from edgeopt's field names; unknown or ill-typed fields are refused.
    The message names `source` and the field: "inventory F: devices.pi.port: ..."."""
    prefix = "--device" if source == "command line" else \
        source if str(source).startswith("inventory ") else f"inventory {source}"
    name = check_name(name, prefix)
    typed = source == "command line"   # an address typed as --device: named as the user gave it
    where = f"--device {name}" if typed else f"{prefix}: devices.{name}"
    unknown = sorted((k for k in fields if k not in OWN_KEYS), key=str)
    if unknown:
        signers = f"; the allowed-signers file is vars: {{{ALLOWED_SIGNERS_VAR}: PATH}}" \
            if "signer" in str(unknown[0]) else ""
        raise BadInput(f"{where}: unknown field {unknown[0]!r} (known: {', '.join(FIELDS)}){signers}")
    ok = {k: _check_field(k, v, f"{where}: its {k}" if typed else f"{where}.{k}") for k, v in fields.items()
          if v is not None}
    if "host" not in ok and ok.get("connection") != "local":   # the name is the host: judged as one (its `$(...)`
        check_host(name, f"{where} (its name is its host)")   # reached a ProxyCommand's %h unquoted)
    refuse_unknown_own_vars(ok.get("vars", {}), f"{where}.vars")
    return DeviceSpec(name=name, host=ok.get("host", name), port=ok.get("port"), user=ok.get("user"),
                      key_files=tuple(os.path.expanduser(k) for k in ok.get("key", [])),
                      python=ok.get("python"), profile=ok.get("profile"),
                      workdir=ok.get("workdir"), proxy_jump=ok.get("proxy_jump"),
                      connection=ok.get("connection", "ssh"), vars=ok.get("vars", {}),
                      on_command_line=source == "command line",
                      inventory=str(source)[len("inventory "):] if str(source).startswith("inventory ") else "")


def own_format(data: dict, path) -> Inventory:
    """devices: {name: {host, port, user, key, python, profile, workdir, proxy_jump, connection, vars}},
    defaults: {the same fields}, groups: {name: [device or group, ...]}. A device's `vars` extend the defaults'."""
    source = f"inventory {path}"
    unknown = [k for k in data if k not in TOP_LEVEL]
    if unknown:
        raise BadInput(f"{source}: unknown top-level key {unknown[0]!r} (edgeopt's format has {', '.join(TOP_LEVEL)}; "
                       "an Ansible inventory keeps groups under `all:` or has no `devices` group)")
    defaults = data.get("defaults") or {}
    bad = [k for k in (defaults if isinstance(defaults, dict) else {}) if k not in OWN_KEYS]
    if bad:
        raise BadInput(f"{source}: defaults: unknown field {bad[0]!r} (known: {', '.join(FIELDS)})")
    devices_raw = data.get("devices")
    for key, value in (("devices", devices_raw), ("defaults", defaults)):
        if not isinstance(value, dict):
            raise BadInput(f"{source}: `{key}` must be a mapping, not {type(value).__name__}")
    for key, value in defaults.items():   # a bad default named where it is written, not at each device
        if value is not None:
            _check_field(key, value, f"{source}: defaults.{key}")
    devices = {}
    for raw_name, fields in devices_raw.items():
        name = check_name(raw_name, source)
        if name in devices:
            raise BadInput(f"{source}: device {name!r} is listed twice")
        if fields is not None and not isinstance(fields, dict):
            raise BadInput(f"{source}: devices.{name}: must be a mapping of fields, not {type(fields).__name__}")
        merged = dict(defaults, **{str(k): v for k, v in (fields or {}).items()})
        if merged.get("connection") == "local":   # the boards' interpreter and folder are not this host's
            for key in LOCAL_OWN_ONLY:
                if key not in (fields or {}):
                    merged.pop(key, None)
        if "vars" in defaults or "vars" in (fields or {}):
            own_vars = _check_field("vars", (fields or {}).get("vars") or {}, f"{source}: devices.{name}.vars")
            merged["vars"] = dict(defaults.get("vars") or {}, **own_vars)
        devices[name] = make_device(name, merged, source)
    return Inventory(devices, _own_groups(data.get("groups"), devices, source), str(path))


def _own_groups(raw, devices, source) -> dict:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise BadInput(f"{source}: `groups` must be a mapping of group name to device names")
    for group, members in raw.items():
        if not isinstance(group, str) or not group or group == "all":
            raise BadInput(f"{source}: groups: group name {group!r} must be a non-empty string other than 'all'")
        if group in devices:   # `-g NAME` and `-d NAME` would each mean something else
            raise BadInput(f"{source}: groups.{group}: a device has that name too; name the group apart")
        if not isinstance(members, list):
            raise BadInput(f"{source}: groups.{group}: must be a list of device or group names")
        for member in members:
            if isinstance(member, bool) or not isinstance(member, (str, int)) or (
                    str(member) not in devices and str(member) not in raw):
                raise BadInput(f"{source}: groups.{group}: group {group} names unknown device {member!r}")
    return {group: _group_devices(group, raw, devices, source, ()) for group in raw}


def _group_devices(group: str, raw: dict, devices: dict, source, within: tuple) -> list:
    """A group's devices, a member that names another group standing for that group's devices (as Ansible's
    children); a group within itself is refused."""
    if group in within:
        raise BadInput(f"{source}: groups.{group}: the group contains itself ({' -> '.join(within + (group,))})")
    out = []
    for member in map(str, raw[group]):
        out += [member] if member in devices else _group_devices(member, raw, devices, source, within + (group,))
    return list(dict.fromkeys(out))
