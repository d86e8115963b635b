"""Generated inventories and their oracles, shared by tests/test_inventory_fuzz.py and
benchmarks/bench_inventory_fuzz.py.

Each `check_*` runs edgeopt's reader on one generated inventory and returns an outcome, "accepted" or
"refused" when handled (a result the oracle agrees with, or a one-line BadInput where the oracle expects one),
"traceback" (any other exception), or "wrong" (accepted although the oracle refuses, a result that
differs from the oracle, or a refusal that is not one line / where the oracle accepts).
Oracles: for edgeopt's own YAML, the schema restated plainly (`own_expected`); for Ansible inventories,
the JSON that the real `ansible-inventory --list` printed for that very file.
"""
import json
import os
import shlex
import traceback

from hypothesis import strategies as st

from edgeopt import inventory_ansible
from edgeopt.errors import BadInput
from edgeopt.inventory import load

# --- edgeopt's own YAML ---------------------------------------------------------------------------
NAMES = st.sampled_from(["pi-1", "pi-2", "nuc", "1", 7, True, None, "a b", "x/y", "", "jetson.lab", "-x"])
ODD = st.one_of(st.none(), st.booleans(), st.integers(-5, 70000), st.floats(allow_nan=False, width=16),
                st.text(max_size=6), st.lists(st.integers(0, 3), max_size=2), st.dictionaries(st.text(max_size=3),
                                                                                            st.integers(), max_size=2))
FIELD_VALUES = {
    "host": st.one_of(st.sampled_from(["192.0.2.1", "pi.lab", "a b", "-oProxyCommand=x", "", "[::1]", "::1",
                                       "pi;reboot", "$(id)"]), ODD),
    "port": st.one_of(st.sampled_from([22, 2222, "2201", "ssh", 0, 65535, 65536, True, "٣", " 22"]), ODD),
    "user": st.one_of(st.sampled_from(["pi", "", "  "]), ODD),
    "key": st.one_of(st.sampled_from(["~/.ssh/id", ["~/.ssh/a", "/k/b"], [], ["", "x"]]), ODD),
    "python": st.one_of(st.sampled_from(["python3", "/usr/bin/env python3", "'/opt/my py/bin/python'",
                                         "python3 'unclosed", "   "]), ODD),
    "profile": st.one_of(st.sampled_from(["raspberry-pi-5", "intel-cpu"]), ODD),
    "workdir": st.one_of(st.just("/var/tmp/e"), ODD),
    "proxy_jump": st.one_of(st.sampled_from(["jump", "a,b", "u@a:2200,[::1]:22", "none", "a,,b", "a:99999",
                                             "ssh://u@h:22", "-oX", "a:٣", "[::1]", "u@@a"]), ODD),
    "connection": st.one_of(st.sampled_from(["ssh", "local", "winrm"]), ODD),
    "vars": st.one_of(st.dictionaries(st.sampled_from(["site", "shelf"]), st.integers(), max_size=2), ODD),
    "colour": st.just("red"),
}
FIELDS_DICT = st.one_of(st.none(), st.integers(), st.fixed_dictionaries(
    {}, optional={k: v for k, v in FIELD_VALUES.items()}))


@st.composite
def own_documents(draw):
    doc = {"devices": draw(st.one_of(st.dictionaries(NAMES, FIELDS_DICT, max_size=4),
                                     st.sampled_from([[], "x", None])))}
    if draw(st.booleans()):
        doc["defaults"] = draw(st.one_of(st.fixed_dictionaries({}, optional={k: FIELD_VALUES[k] for k in
                                                                            ("user", "python", "port", "vars")}),
                                         st.sampled_from([None, [], "x"])))
    if draw(st.booleans()):
        doc["groups"] = draw(st.one_of(st.dictionaries(st.sampled_from(["lab", "all", "", 3]),
                                                       st.one_of(st.lists(NAMES, max_size=3), st.just("pi-1")),
                                                       max_size=2), st.just([])))
    return doc


def _valid_field(k, v):
    """The schema, restated plainly: the oracle the reader is checked against."""
    if k == "port":
        if isinstance(v, str) and v.isascii() and v.isdigit():
            v = int(v)
        return type(v) is int and 1 <= v <= 65535
    if k == "key":
        vs = v if isinstance(v, list) else [v]
        return bool(vs) and all(isinstance(x, str) and x for x in vs)
    if k == "vars":
        return isinstance(v, dict) and all(isinstance(x, str) for x in v)
    if not isinstance(v, str) or not v.strip():
        return False
    if k == "python":
        try:
            return bool(shlex.split(v))
        except ValueError:
            return False
    if k == "connection":
        return v in ("ssh", "local")
    if k == "host":   # OpenSSH's valid_hostname characters, and no bracketed address (its port is `port:`)
        return (not v.startswith("-") and not any(c.isspace() or not c.isprintable() for c in v)
                and not (v.startswith("[") and v.endswith("]")) and not set(v) & set("'`\"$\\;&<>|(){}"))
    if k == "user":   # it reaches a ProxyCommand's %r: the host's characters, brackets allowed
        return (not v.startswith("-") and not any(c.isspace() or not c.isprintable() for c in v)
                and not set(v) & set("'`\"$\\;&<>|(){}"))
    if k == "workdir":   # a directory of its own: not the root, the home, a climb out, or another user's home
        parts = [p for p in v.split("/") if p not in ("", ".")]
        return (bool(parts) and parts != ["~"] and ".." not in parts
                and not (parts[0].startswith("~") and not v.startswith("~/")))
    if k == "proxy_jump":
        return v.lower() == "none" or all(_valid_hop(p.strip()) for p in v.split(","))
    return True


def _valid_hop(hop):
    """[ssh://][user@]host[:port] with host a bracketed IPv6 address or a word without @ : , / [ ]."""
    hop = hop[len("ssh://"):] if hop.startswith("ssh://") else hop
    hop = hop[:-1] if hop.endswith("/") else hop
    user, at, rest = hop.rpartition("@")
    if at and (not user or any(c in "@,/" or c.isspace() for c in user)):
        return False
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        if not host or any(c not in "0123456789abcdefABCDEF:." for c in host) or (tail and tail[0] != ":"):
            return False
    else:
        host, _, port = rest.partition(":")
        tail = _ + port
        if not host or host.startswith("-") or any(c in "@:,/[]" or c.isspace() for c in host):
            return False
    if not tail:
        return True
    port = tail[1:]
    return port.isascii() and port.isdigit() and 0 < int(port) < 65536


def _valid_name(n):
    return type(n) in (str, int) and str(n) != "" and not any(c.isspace() or c in "/\\" for c in str(n))


def own_expected(doc):
    """None when the document must be refused, else {device: {field: value}} and {group: [devices]}."""
    devices, defaults, groups = doc.get("devices"), doc.get("defaults") or {}, doc.get("groups")
    if not isinstance(devices, dict) or not isinstance(defaults, dict):
        return None
    if any(k not in FIELD_VALUES or k == "colour" for k in defaults):
        return None
    if any(v is not None and not _valid_field(k, v) for k, v in defaults.items()):   # each default, even unused
        return None
    out = {}
    for name, fields in devices.items():
        if not _valid_name(name) or (fields is not None and not isinstance(fields, dict)) or str(name) in out:
            return None
        merged = dict(defaults, **(fields or {}))
        if merged.get("connection") == "local":   # a local device's python and workdir: its own entry's only
            merged = {k: v for k, v in merged.items() if k not in ("python", "workdir") or k in (fields or {})}
        if "vars" in (fields or {}) and not _valid_field("vars", fields["vars"] or {}):
            return None
        if "vars" in defaults or "vars" in (fields or {}):
            merged["vars"] = dict(defaults.get("vars") or {}, **((fields or {}).get("vars") or {}))
        merged = {k: v for k, v in merged.items() if v is not None}
        if any(k not in FIELD_VALUES or k == "colour" or not _valid_field(k, v) for k, v in merged.items()):
            return None
        if "host" not in merged and merged.get("connection") != "local" and not _valid_field("host", str(name)):
            return None   # its name is its host: judged as one
        out[str(name)] = merged
    group_out = {}
    if groups is not None:
        if not isinstance(groups, dict):
            return None
        for g, members in groups.items():
            if not isinstance(g, str) or g in ("", "all") or not isinstance(members, list):
                return None
            if any(type(m) not in (str, int) or str(m) not in out for m in members):
                return None
            group_out[g] = list(dict.fromkeys(str(m) for m in members))
    return out, group_out


def _own_matches(inv, expected):
    devices, groups = expected
    if list(inv.devices) != list(devices) or inv.groups != groups:
        return False
    for name, fields in devices.items():
        spec = inv.devices[name]
        port = fields.get("port")
        checks = [spec.host == fields.get("host", name), spec.port == (None if port is None else int(port)),
                  spec.user == fields.get("user"), spec.python == fields.get("python"),
                  spec.connection == fields.get("connection", "ssh"), spec.vars == fields.get("vars", {}),
                  spec.proxy_jump == fields.get("proxy_jump"), spec.profile == fields.get("profile"),
                  len(spec.key_files) == len(fields["key"] if isinstance(fields.get("key"), list)
                                             else [fields["key"]] if "key" in fields else [])]
        if not all(checks):
            return False
    return True


def check_own(doc, tmp_dir, text=None):
    """Outcome for one own-format document (or raw YAML `text`, which has no oracle beyond totality)."""
    import yaml
    path = os.path.join(tmp_dir, "fleet.yaml")
    with open(path, "w") as f:
        f.write(text if text is not None else yaml.safe_dump(doc, sort_keys=False))
    outcome, result = _run(path)
    if outcome != "ok":
        return outcome
    if text is not None:
        return "refused" if isinstance(result, BadInput) else "accepted"
    expected = own_expected(doc)
    if isinstance(result, BadInput):
        return "refused" if expected is None else "wrong"
    return "accepted" if expected is not None and _own_matches(result, expected) else "wrong"


def _run(path):
    try:
        return "ok", load(path)
    except BadInput as e:
        return ("ok", e) if "\n" not in str(e) and str(e) else ("wrong", e)
    except Exception:   # noqa: BLE001 - the very thing being counted
        traceback.print_exc()
        return "traceback", None


# --- Ansible inventories ---------------------------------------------------------------------------
HOSTS = st.sampled_from(["pi1", "pi2", "pi[01:03]", "nuc[a:c]", "h:2222", "10.0.0.1", "x[1:0]", "[bad",
                         "---", "a b", "pi1#c"])
GROUPS = st.sampled_from(["pis", "nucs", "lab", "all", "ungrouped", "bad-name", "x:y", "pi1"])
VALUES = st.sampled_from(["192.0.2.1", "2201", "'2201'", "70000", "abc", "/usr/bin/env python3",
                          "'/usr/bin/env python3'", "auto_silent", "\"{{ inventory_hostname }}\"", "True",
                          "[1, 2]", "{'a': 1}", "'-o ProxyJump=j1,j2'", "'-J u@j:2200'", "'-o ProxyCommand=nc'",
                          "'-o StrictHostKeyChecking=no'", "\"unclosed", "1e3", "winrm", "local", "paramiko", ""])
KEYS = st.sampled_from(["ansible_host", "ansible_ssh_host", "ansible_port", "ansible_user",
                        "ansible_python_interpreter", "ansible_connection", "ansible_ssh_common_args",
                        "ansible_ssh_extra_args", "ansible_ssh_private_key_file", "edgeopt_profile",
                        "edgeopt_port", "rack", "ansible_group_priority", "bad key"])
PAIR = st.tuples(KEYS, VALUES).map(lambda kv: f"{kv[0]}={kv[1]}")


@st.composite
def ini_texts(draw):
    lines = []
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["", ":vars", ":children", ":weird", "junk"]))
        group = draw(GROUPS)
        lines.append(f"[{group}{kind}]" if kind != "junk" else draw(st.sampled_from(["[a b]", "# c", "; c", ""])))
        for _ in range(draw(st.integers(0, 3))):
            if kind == ":vars":
                lines.append(draw(PAIR))
            elif kind == ":children":
                lines.append(draw(GROUPS))
            else:
                lines.append(" ".join([draw(HOSTS)] + draw(st.lists(PAIR, max_size=3))))
    return "\n".join(lines) + "\n"


PLAIN_PAIR = st.tuples(st.sampled_from(["ansible_host", "ansible_port", "ansible_user", "ansible_python_interpreter",
                                         "ansible_ssh_common_args", "edgeopt_profile", "rack", "ansible_ssh_host"]),
                       st.sampled_from(["192.0.2.1", "2201", "'2202'", "pi", "/usr/bin/env python3", "'-J j1,j2'",
                                        "'-o ProxyJump=u@j:2200'", "auto_silent", "True", "'row 3'"])).map("=".join)


@st.composite
def ini_texts_plain(draw):
    """Mostly well-formed INI: groups, [g:vars], [g:children], [all:vars], ranges; most are accepted."""
    groups = draw(st.lists(st.sampled_from(["pis", "nucs", "lab"]), min_size=1, max_size=3, unique=True))
    lines = []
    for g in groups:
        lines.append(f"[{g}]")
        for host in draw(st.lists(st.sampled_from(["pi1", "pi2", "pi[01:03]", "nuc1", "h:2222"]), max_size=3)):
            lines.append(" ".join([host] + draw(st.lists(PLAIN_PAIR, max_size=3))))
        if draw(st.booleans()):
            lines += [f"[{g}:vars]"] + draw(st.lists(PLAIN_PAIR, max_size=3))
    if draw(st.booleans()):
        lines += ["[all:vars]"] + draw(st.lists(PLAIN_PAIR, max_size=2))
    if len(groups) > 1 and draw(st.booleans()):
        lines += ["[fleet:children]"] + groups[1:]
    return "\n".join(lines) + "\n"


YAML_VALUE = st.one_of(st.sampled_from(["192.0.2.1", 2201, "2201", 70000, True, None, "/usr/bin/env python3",
                                        "{{ x }}", "-o ProxyJump=j1,j2", "winrm", [1], {"a": 1}, 1.5]))
YAML_VARS = st.dictionaries(KEYS, YAML_VALUE, max_size=3)


@st.composite
def ansible_yaml_docs(draw):
    def group(depth):
        node = {}
        if draw(st.booleans()):
            node["hosts"] = draw(st.one_of(st.dictionaries(st.sampled_from(["pi1", "pi2", "nuc", "pi[1:2]"]),
                                                           st.one_of(st.none(), YAML_VARS), max_size=3),
                                           st.sampled_from([["pi1"], "pi1", None])))
        if draw(st.booleans()):
            node["vars"] = draw(st.one_of(YAML_VARS, st.just([1])))
        if depth < 2 and draw(st.booleans()):
            node["children"] = {draw(GROUPS): group(depth + 1) for _ in range(draw(st.integers(1, 2)))}
        return draw(st.sampled_from([node, node, node, None, "x"]))
    return {draw(GROUPS): group(0) for _ in range(draw(st.integers(1, 3)))}


CONSUMED = {"ansible_host", "ansible_ssh_host", "ansible_port", "ansible_ssh_port", "ansible_user", "ansible_ssh_user",
            "ansible_private_key_file", "ansible_ssh_private_key_file", "ansible_python_interpreter",
            "ansible_connection", "ansible_ssh_args", "ansible_ssh_common_args", "ansible_ssh_extra_args"}


def _last(hv, *names):
    value = None
    for n in names:
        if hv.get(n) is not None:
            value = hv[n]
    return value


def _ansible_matches(inv, listing):
    """Every host of the listing is a device whose fields come from its variables as Ansible's ssh
    connection reads them; every other variable is kept unchanged; groups hold the same hosts."""
    hostvars = listing["_meta"]["hostvars"]
    direct = {g: e.get("hosts", []) for g, e in listing.items() if g != "_meta"}
    kids = {g: e.get("children", []) for g, e in listing.items() if g != "_meta"}

    def members(g, seen=()):
        return set() if g in seen else set(direct.get(g, [])).union(*[members(k, seen + (g,)) for k in kids.get(g, [])])
    # a host edgeopt cannot use is set apart with its reason (refused where chosen), never dropped
    if set(inv.devices) | set(inv.refused) != members("all") | set(hostvars) or set(inv.devices) & set(inv.refused):
        return False
    if any(not isinstance(why, str) or not why.startswith("inventory ") or "\n" in why for why in inv.refused.values()):
        return False
    for g in direct:
        if g != "all" and set(inv.groups.get(g, [])) != members(g):
            return False
    for name, spec in inv.devices.items():
        hv = hostvars.get(name, {})
        host = _last(hv, "ansible_host", "ansible_ssh_host", "edgeopt_host") or name
        port = _last(hv, "ansible_port", "ansible_ssh_port", "edgeopt_port")
        py = _last(hv, "ansible_python_interpreter", "edgeopt_python") or "python3"
        local = _last(hv, "ansible_connection", "edgeopt_connection") == "local"
        py = "python3" if py.startswith("auto") or local and hv.get("edgeopt_python") is None else py
        own = {f"edgeopt_{f}" for f in inventory_ansible.FIELDS if f != "vars"}
        kept = {k: v for k, v in hv.items() if k not in CONSUMED | own}
        text = " ".join(str(v) for v in (spec.host, spec.user, spec.python, spec.proxy_jump))
        if (spec.host != host or spec.port != (None if port is None else int(port)) or spec.python_argv
                != shlex.split(py) or spec.vars != kept or "{{" in text
                or spec.user != _last(hv, "ansible_user", "ansible_ssh_user", "edgeopt_user")):
            return False
    return True


def check_ansible(text, tmp_dir, name):
    """Outcome for one Ansible inventory file; the oracle is the listing ansible-inventory printed for it."""
    path = os.path.join(tmp_dir, name)
    with open(path, "w") as f:
        f.write(text)
    seen = []
    real = inventory_ansible.run_list

    def recording(exe, p):
        seen.append(real(exe, p))
        return seen[-1]
    inventory_ansible.run_list = recording
    try:
        outcome, result = _run(path)
    finally:
        inventory_ansible.run_list = real
    if outcome != "ok":
        return outcome
    if isinstance(result, BadInput):
        return "refused"    # Ansible refused it, or it holds a value edgeopt cannot use: both one line
    return "accepted" if seen and _ansible_matches(result, seen[0]) else "wrong"


def dump_yaml(doc):
    import yaml
    return yaml.safe_dump(doc)


def summary(counts):
    return json.dumps(counts, sort_keys=True)
