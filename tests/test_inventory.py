"""Inventories: edgeopt's own YAML against its declared schema; Ansible inventories exactly as the real
`ansible-inventory --list` reads them; a clear one-line refusal naming the extra without ansible-core."""
import os
import shlex
import subprocess
import sys

import pytest

from edgeopt import inventory_ansible
from edgeopt.errors import BadInput
from edgeopt.inventory import load

OWN = """
defaults:
  user: pi
  python: /home/pi/venv/bin/python
  vars: {site: lab}
devices:
  pi-kitchen: {host: 192.0.2.10, profile: raspberry-pi-5, vars: {shelf: 2}}
  nuc-1: {host: nuc-1.local, port: 2222, user: admin, python: python3, profile: intel-cpu}
  here: {connection: local}
groups:
  lab: [pi-kitchen, nuc-1]
"""

# Everything the issue measured as misread on main: ranges, [all:vars], a child group's vars beating its
# parent's, a multi-word interpreter, ProxyJump in ansible_ssh_common_args.
ANSIBLE_INI = """
# edge fleet
[all:vars]
ansible_user=ops
site=lab

[pis]
pi[01:03] ansible_host=192.0.2.11
pi-b ansible_host=192.0.2.12 edgeopt_profile=raspberry-pi-4 rack="row 3"

[pis:vars]
ansible_user=pi
ansible_python_interpreter=/usr/bin/env python3
edgeopt_workdir=/var/tmp/edgeopt
ansible_ssh_common_args='-o ProxyJump=ops@bastion:2200,inner -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o UserKnownHostsFile=~/.ssh/known_hosts'

[nucs]
nuc1 ansible_host=192.0.2.20 ansible_port=2201 ansible_ssh_private_key_file=~/.ssh/nuc

[fleet:children]
pis
nucs

[fleet:vars]
ansible_user=fleet-user
ansible_port=2222
"""

# A host in two groups (crashed on main), parent vars below child vars.
ANSIBLE_YAML = """
all:
  vars: {ansible_user: ops, shelf: 0}
  children:
    pis:
      vars: {ansible_python_interpreter: /usr/bin/python3, shelf: 1}
      hosts:
        pi1: {ansible_host: 192.0.2.11, ansible_port: 2201}
        pi2: {ansible_host: 192.0.2.12, ansible_user: pi}
    lab:
      vars: {shelf: 2}
      hosts:
        pi2:
        orin1: {ansible_host: 192.0.2.30, edgeopt_profile: jetson-orin-nano}
"""


def _write(tmp_path, name, text, mode=None):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if mode:
        path.chmod(mode)
    return path


def _load_with_listing(path, monkeypatch):
    """load(path), and the very JSON the real `ansible-inventory --list` printed for it."""
    seen = []
    real = inventory_ansible.run_list
    monkeypatch.setattr(inventory_ansible, "run_list", lambda exe, p: seen.append(real(exe, p)) or seen[-1])
    return load(path), seen[0]


def _assert_same_as_ansible(inv, listing):
    """Exactly the hosts, groups and variables that `ansible-inventory --list` gives."""
    hostvars = inventory_ansible._plain(listing["_meta"]["hostvars"])
    hosts = {h for g, e in listing.items() if g != "_meta" for h in e.get("hosts", [])}
    assert set(inv.devices) == hosts | set(hostvars)
    for name, spec in inv.devices.items():
        hv = hostvars.get(name, {})
        assert spec.host == hv.get("ansible_host", name)
        assert spec.port == (int(hv["ansible_port"]) if "ansible_port" in hv else None)
        assert spec.user == hv.get("ansible_user")
        assert spec.python_argv == shlex.split(hv.get("ansible_python_interpreter", "python3"))
        assert spec.vars == {k: v for k, v in hv.items() if not k.startswith(("ansible_", "edgeopt_"))}
    for group, entry in listing.items():
        if group not in ("_meta", "all") and entry.get("hosts") and not entry.get("children"):
            assert inv.groups[group] == entry["hosts"]
    return hostvars


needs_ansible = pytest.mark.skipif(inventory_ansible.find_executable() is None,
                                   reason="ansible-core not installed (pip install 'edgeopt[ansible]')")


def test_own_yaml_with_defaults_and_groups(tmp_path):
    inv = load(_write(tmp_path, "fleet.yaml", OWN))
    pi = inv.devices["pi-kitchen"]
    assert (pi.host, pi.user, pi.python, pi.profile, pi.port) == ("192.0.2.10", "pi", "/home/pi/venv/bin/python",
                                                                   "raspberry-pi-5", None)
    assert pi.vars == {"site": "lab", "shelf": 2}
    nuc = inv.devices["nuc-1"]
    assert (nuc.port, nuc.user, nuc.python_argv) == (2222, "admin", ["python3"])
    assert inv.devices["here"].connection == "local"
    assert [d.name for d in inv.select("lab")] == ["pi-kitchen", "nuc-1"]
    assert len(inv.select(None)) == 3 and [d.name for d in inv.select("nuc-1")] == ["nuc-1"]


def test_own_yaml_needs_no_ansible(tmp_path, monkeypatch):
    monkeypatch.setenv(inventory_ansible.ENV_EXECUTABLE, "")
    assert list(load(_write(tmp_path, "fleet.yaml", OWN)).devices) == ["pi-kitchen", "nuc-1", "here"]


def test_interpreter_is_a_command_line(tmp_path):
    inv = load(_write(tmp_path, "fleet.yaml", "devices:\n  pi: {python: \"/usr/bin/env 'my python3'\"}\n"))
    assert inv.devices["pi"].python_argv == ["/usr/bin/env", "my python3"]


@pytest.mark.parametrize("text, message", [
    ("devices: {pi: {host: x, port: ssh}}", "devices.pi.port: 'ssh' is not a port number"),
    ("devices: {pi: {host: x, colour: red}}", "devices.pi: unknown field 'colour'"),
    ("devices: {pi: {host: x}}\ngroups: {lab: [pi, ghost]}", "groups.lab: group lab names unknown device 'ghost'"),
    ("devices: {pi: {host: x}\n", "is not valid YAML (line"),
    ("devices: [pi]", "`devices` must be a mapping, not list"),
    ("devices: {pi: {host: x, port: 70000}}", "devices.pi.port: port 70000 is out of range"),
    ("devices: {pi: {port: true}}", "devices.pi.port: True is not a port number"),
    ("devices: {pi: {port: 22.5}}", "devices.pi.port: 22.5 is not a port number (a whole number, 1 to 65535)"),
    ("devices: {pi: {python: \"python3 'x\"}}", "devices.pi.python: \"python3 'x\" is not a command line"),
    ("devices: {pi: {host: -oProxyCommand=x}}", "devices.pi.host: host '-oProxyCommand=x' may not start with '-'"),
    ("devices: {pi: {host: 'x;touch${IFS}pwned'}}", "devices.pi.host: host 'x;touch${IFS}pwned' holds '$', which"),
    ("devices: {pi: {host: '[::1]'}}", "devices.pi.host: host '[::1]': give an IPv6 address without brackets (::1)"),
    ("devices: {pi: {proxy_jump: 'a,,b'}}", "devices.pi.proxy_jump: ProxyJump hop '' is not [user@]host[:port]"),
    # a name or a hop reached a ProxyCommand's %h unquoted where paramiko reads the ssh config (a security review)
    ("devices: {'pi$(touch${IFS}x)': {port: 22}}", "(its name is its host): host 'pi$(touch${IFS}x)' holds '$'"),
    ("devices: {pi: {proxy_jump: 'j$(x)'}}", "devices.pi.proxy_jump: ProxyJump hop 'j$(x)': host 'j$(x)' holds '$'"),
    ("devices: {pi: {connection: winrm}}", "devices.pi.connection: connection 'winrm' is not ssh or local"),
    ("devices: {pi: {host: x}, pi: {host: y}}", "duplicate key 'pi'"),
    ("devices: {pi: {workdir: /}}", "devices.pi.workdir: workdir '/' must name a directory of its own"),
    ("devices: {pi: {workdir: '~/'}}", "devices.pi.workdir: workdir '~/' must name a directory of its own"),
    ("devices: {pi: {workdir: ./.}}", "devices.pi.workdir: workdir './.' must name a directory of its own"),
    ("devices: {pi: {workdir: /var/tmp/../..}}", "workdir '/var/tmp/../..' must name a directory of its own"),
    ("devices: {pi: {workdir: '~pi/e'}}", "devices.pi.workdir: workdir '~pi/e': another user's home (~user) is not"),
    # a misspelt or empty signers variable ran unsigned bundles on a device meant to refuse them (a walkthrough)
    ("devices: {pi: {vars: {edgeopt_allowed_signer: /x}}}",
     "devices.pi.vars: edgeopt_allowed_signer: not a variable edgeopt reads; did you mean edgeopt_allowed_signers?"),
    ("devices: {pi: {vars: {edgeopt_allowed_signers: ''}}}", "devices.pi.vars: edgeopt_allowed_signers: '' is no file"),
    ("devices: {pi: {vars: {edgeopt_trusted_signers: /x}}}",
     "devices.pi.vars: edgeopt_trusted_signers: not a variable edgeopt reads; did you mean edgeopt_allowed_signers?"),
    ("devices: {pi: {allowed_signers: /x}}", "the allowed-signers file is vars: {edgeopt_allowed_signers: PATH}"),
    ("devices: {1.5: {host: x}}", "device name 1.5 must be a string"),
    # PostgreSQL's store refused the row after the measurement (VARCHAR(200)); SQLite took it (a code review)
    ("devices: {" + "p" * 201 + ": {host: x}}", "is 201 characters, more than the 200 a results store keeps"),
    ("devices: {pi: {vars: [1]}}", "devices.pi.vars: must be a mapping with string keys"),
    ("devices: {pi: }\ngroups: {all: [pi]}", "group name 'all' must be a non-empty string other than 'all'"),
    ("devices: {pi: }\nfoo: 1", "unknown top-level key 'foo'"),
    ("defaults: {colour: red}\ndevices: {pi: }", "defaults: unknown field 'colour'"),
    ("defaults: {port: abc}\ndevices: {pi: }", "a.yaml: defaults.port: 'abc' is not a port number"),
    ("devices: {a: , b: }\ngroups: {a: [b]}", "groups.a: a device has that name too; name the group apart"),
    ("devices: {a: }\ngroups: {g1: [a, g2], g2: [g1]}", "groups.g1: the group contains itself (g1 -> g2 -> g1)"),
    ("devices: {pi: {user: !vault '$ANSIBLE_VAULT;1.1'}}",
     "devices.pi.user: must be a non-empty string, not <a value tagged !vault>"),
])
def test_own_yaml_refusals_name_file_and_field(tmp_path, text, message):
    path = _write(tmp_path, "a.yaml", text)
    with pytest.raises(BadInput) as e:
        load(path)
    assert str(e.value).startswith(f"inventory {path}") and message in str(e.value) and "\n" not in str(e.value)


def test_a_group_may_name_other_groups(tmp_path):
    """`lab: [kitchen, garage]` of two groups was refused as naming unknown devices."""
    from edgeopt.transport import resolve_device
    inv = load(_write(tmp_path, "a.yaml", "devices: {a: , b: , c: }\n"
                                          "groups: {kitchen: [a], garage: [b, a], lab: [kitchen, garage, c]}"))
    assert [d.name for d in inv.select("lab")] == ["a", "b", "c"]
    with pytest.raises(BadInput) as e:   # a group given where a device belongs: the verb for groups is named
        resolve_device("lab", inv)
    assert "no device 'lab'; lab is a group of a, b, c: name one of them (`fleet bench --group lab` measures them " \
        "all)" in str(e.value)


@needs_ansible
def test_ansible_ini_reads_as_ansible_does(tmp_path, monkeypatch):
    inv, listing = _load_with_listing(_write(tmp_path, "hosts.ini", ANSIBLE_INI), monkeypatch)
    hostvars = _assert_same_as_ansible(inv, listing)
    assert list(inv.devices) == ["pi01", "pi02", "pi03", "pi-b", "nuc1"]          # the range is expanded
    pi = inv.devices["pi02"]
    assert (pi.host, pi.user, pi.port) == ("192.0.2.11", "pi", 2222)               # [pis:vars] beat [fleet:vars]
    assert pi.python_argv == ["/usr/bin/env", "python3"] and pi.workdir == "/var/tmp/edgeopt"
    assert pi.proxy_jump == "ops@bastion:2200,inner" and pi.vars == {"site": "lab"}  # [all:vars] kept
    pi_b = inv.devices["pi-b"]
    assert pi_b.vars == {"site": "lab", "rack": "row 3"} and pi_b.profile == "raspberry-pi-4"
    nuc = inv.devices["nuc1"]
    assert (nuc.user, nuc.port, nuc.proxy_jump) == ("fleet-user", 2201, None)
    assert nuc.key_files[0].endswith("/.ssh/nuc") and not nuc.key_files[0].startswith("~")
    assert [d.name for d in inv.select("fleet")] == ["pi01", "pi02", "pi03", "pi-b", "nuc1"]
    assert hostvars["nuc1"]["ansible_user"] == "fleet-user"


@needs_ansible
def test_ansible_yaml_host_in_two_groups(tmp_path, monkeypatch):
    inv, listing = _load_with_listing(_write(tmp_path, "hosts.yml", ANSIBLE_YAML), monkeypatch)
    _assert_same_as_ansible(inv, listing)
    assert inv.devices["pi1"].user == "ops" and inv.devices["pi2"].user == "pi"
    # pi2 is in pis and lab, both children of all at the same depth: Ansible merges them by name, lab < pis.
    assert inv.devices["pi2"].vars == {"shelf": 1} and inv.devices["orin1"].vars == {"shelf": 2}
    assert [d.name for d in inv.select("lab")] == ["pi2", "orin1"]
    assert inv.devices["orin1"].profile == "jetson-orin-nano" and inv.devices["orin1"].python_argv == ["python3"]


@needs_ansible
def test_ansible_directory_with_group_vars_host_vars_and_constructed(tmp_path, monkeypatch):
    root = tmp_path / "inventory"
    _write(root, "01-hosts.yml", "pis:\n  hosts:\n    pi1: {ansible_host: 192.0.2.11}\n    pi2:\n")
    _write(root, "group_vars/pis.yml", "ansible_user: pi\nansible_port: 2201\n")
    _write(root, "group_vars/all/main.yml", "site: lab\nansible_python_interpreter: /usr/bin/env python3\n")
    _write(root, "host_vars/pi2.yml", "ansible_host: 192.0.2.12\nansible_port: 2202\n")
    _write(root, "zz-constructed.yml", "plugin: ansible.builtin.constructed\nstrict: true\n"
                                        "groups:\n  odd: inventory_hostname.endswith('1')\n"
                                        "compose:\n  edgeopt_profile: \"'raspberry-pi-5'\"\n")
    inv, listing = _load_with_listing(root, monkeypatch)
    _assert_same_as_ansible(inv, listing)
    pi1, pi2 = inv.devices["pi1"], inv.devices["pi2"]
    assert (pi1.host, pi1.port, pi1.user, pi1.profile) == ("192.0.2.11", 2201, "pi", "raspberry-pi-5")
    assert (pi2.host, pi2.port, pi2.vars) == ("192.0.2.12", 2202, {"site": "lab"})
    assert inv.groups["odd"] == ["pi1"] and pi1.python_argv == ["/usr/bin/env", "python3"]


@needs_ansible
def test_ansible_script_inventory(tmp_path, monkeypatch):
    listing = {"lab": {"hosts": ["s1", "s2"], "vars": {"ansible_user": "scripted"}},
               "_meta": {"hostvars": {"s1": {"ansible_host": "192.0.2.40", "ansible_port": 2240}}}}
    script = _write(tmp_path, "inv.py", f"#!{sys.executable}\nimport json, sys\n"
                                        f"print(json.dumps({listing!r}) if '--list' in sys.argv else '{{}}')\n", 0o755)
    inv, listing = _load_with_listing(script, monkeypatch)
    _assert_same_as_ansible(inv, listing)
    assert (inv.devices["s1"].host, inv.devices["s1"].port, inv.devices["s2"].user) == ("192.0.2.40", 2240, "scripted")


@needs_ansible
@pytest.mark.parametrize("text, message", [
    ("[pis]\npi1 ansible_port=ssh", "host pi1: ansible_port: 'ssh' is not a port number"),
    ("[pis]\npi1 ansible_host='{{ inventory_hostname }}.lab'", "host pi1: ansible_host: '{{ inventory_hostname }}.lab' "
                                                              "is a Jinja template"),
    ("[pis]\npi1 ansible_ssh_common_args='-o ProxyCommand=\"nc %h %p\"'", "ssh option 'ProxyCommand' is not honoured"),
    ("[pis]\npi1 ansible_ssh_common_args='-o UserKnownHostsFile=/etc/lab_hosts'",   # checked against another file
     "ssh option UserKnownHostsFile=/etc/lab_hosts is not honoured here: edgeopt would check ~/.ssh/known_hosts"),
    ("[pis\npi1", "ansible-inventory refused it: "),
])
def test_ansible_values_edgeopt_cannot_use_are_refused(tmp_path, text, message):
    path = _write(tmp_path, "hosts", text)
    with pytest.raises(BadInput) as e:
        load(path).select()   # a host refused when chosen: here, with every device
    assert str(e.value).startswith(f"inventory {path}: ") and message in str(e.value) and "\n" not in str(e.value)


def test_a_binary_file_is_refused_without_its_bytes_in_the_message(tmp_path):
    """Ansible's INI plugin quotes the line it choked on: a binary file's bytes (a NUL, escape sequences) reached
    the terminal in the one-line error (a user walkthrough)."""
    path = tmp_path / "bin.yaml"
    path.write_bytes(b"\x01\x1b[31m\x00\xff\x9b zz\n\x07 q\r\n")
    with pytest.raises(BadInput) as e:
        load(path).select()
    assert "ansible-inventory refused it" in str(e.value) and str(e.value).isprintable(), repr(str(e.value))


@pytest.mark.parametrize("name, text", [("hosts.ini", ANSIBLE_INI), ("hosts.yml", ANSIBLE_YAML), ("dir", None)])
def test_without_ansible_core_the_extra_is_named(tmp_path, monkeypatch, name, text):
    monkeypatch.setattr(inventory_ansible, "find_executable", lambda: None)
    path = _write(tmp_path, name, text) if text else tmp_path
    with pytest.raises(BadInput, match=r"needs ansible-core \(ansible-inventory not found\): "
                                       r"pip install 'edgeopt\[ansible\]'"):
        load(path)


def test_without_ansible_core_the_cli_says_one_line(tmp_path):
    path = _write(tmp_path, "hosts.ini", ANSIBLE_INI)
    env = dict(os.environ, **{inventory_ansible.ENV_EXECUTABLE: ""})
    p = subprocess.run([sys.executable, "-m", "edgeopt", "device", "list", "--inventory", str(path)],
                       capture_output=True, text=True, env=env)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1
    assert "pip install 'edgeopt[ansible]'" in p.stderr and "Traceback" not in p.stderr


def test_ansible_is_not_imported_by_edgeopt(tmp_path):
    code = (f"import sys, edgeopt.inventory as i; i.load({str(_write(tmp_path, 'f.yaml', OWN))!r}); "
            "import edgeopt.inventory_ansible, edgeopt.cli; print(any(m.split('.')[0] == 'ansible' for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_unknown_group_and_missing_file(tmp_path, cli, bundles):
    inv = _write(tmp_path, "fleet.yaml", OWN)
    with pytest.raises(BadInput, match="no group or device 'kitchen'; groups: all, lab"):
        load(inv).select("kitchen")
    r = cli("fleet", "bench", bundles["fp32"], "--inventory", tmp_path / "nope.yaml")
    assert r.exit_code == 2 and "inventory not found" in r.stderr
    r = cli("device", "list", "--inventory", inv, "--json")
    assert r.exit_code == 0 and [d["name"] for d in r.json()] == ["pi-kitchen", "nuc-1", "here"]
    # A bare name beside an inventory is one of its devices: a typo is bad input, not an SSH host to look up
    results_dir = tmp_path / "results"
    typo = "no device 'pi-kitchn' (devices: here, nuc-1, pi-kitchen)"
    r = cli("bench", bundles["fp32"], "--device", "pi-kitchn", "--inventory", inv, "--results-dir", results_dir)
    assert r.exit_code == 2 and typo in r.stderr, r.stderr
    assert not results_dir.exists()   # nothing saved under the typo's name
    r = cli("device", "doctor", "pi-kitchn", "--inventory", inv)
    assert r.exit_code == 2 and typo in r.stderr, r.stderr


@pytest.mark.parametrize("host_vars, expected", [
    ({"ansible_host": "a", "ansible_ssh_host": "b"}, {"host": "b"}),        # Ansible's ssh plugin: the last wins
    ({"ansible_port": "2201", "edgeopt_port": 2300}, {"port": 2300}),        # edgeopt_<field> beats ansible_*
    ({"ansible_python_interpreter": "auto_silent"}, {"python": None}),  # discovery: edgeopt's default
    ({"ansible_connection": "paramiko"}, {"connection": "ssh"}),
    ({"ansible_connection": "local"}, {"connection": "local"}),
    # group_vars' interpreter is the boards': a local host runs edgeopt's own unless edgeopt_python names one
    ({"ansible_connection": "local", "ansible_python_interpreter": "/usr/bin/python3"}, {"python": None}),
    ({"ansible_connection": "local", "edgeopt_python": "/opt/v/bin/python"}, {"python": "/opt/v/bin/python"}),
    ({"ansible_ssh_extra_args": "-J u@j1:2200,j2"}, {"proxy_jump": "u@j1:2200,j2"}),
    ({"ansible_ssh_common_args": "-o 'ProxyJump j1' -C -o ControlMaster=auto"}, {"proxy_jump": "j1"}),
    ({"ansible_ssh_common_args": "-oProxyJump=j1", "ansible_ssh_extra_args": "-J j2"}, {"proxy_jump": "j2"}),
    ({"ansible_become": True, "edgeopt_vars": 1}, {"vars": {"ansible_become": True, "edgeopt_vars": 1}}),
    ({"edgeopt_version": "1.2", "edgeopt_role": "x"}, {"vars": {"edgeopt_version": "1.2", "edgeopt_role": "x"}}),
])
def test_ansible_variables_map_as_ansible_reads_them(host_vars, expected):
    spec = inventory_ansible.device_from_vars("pi1", host_vars, "inventory h")
    assert {k: getattr(spec, k) for k in expected} == expected


@pytest.mark.parametrize("host_vars, message", [
    ({"ansible_connection": "winrm"}, "host pi1: ansible_connection: connection 'winrm' is not one edgeopt can use"),
    ({"ansible_connection": [1]}, "host pi1: ansible_connection: connection [1] is not one edgeopt can use"),   # fuzz
    ({"ansible_ssh_extra_args": "-p 2200"}, "ansible_ssh_extra_args: ssh argument '-p' is not honoured"),
    ({"ansible_ssh_common_args": "-o 'unclosed"}, "ansible_ssh_common_args: No closing quotation"),
    ({"ansible_ssh_common_args": "-J a,,b"}, "ProxyJump hop '' is not [user@]host[:port]"),
    ({"ansible_port": True}, "host pi1: ansible_port: True is not a port number"),
    ({"ansible_host": {"__ansible_vault": "$ANSIBLE_VAULT;1.1"}}, "host pi1: ansible_host: must be a non-empty string"),
    ({"ansible_user": "{% if x %}a{% endif %}"}, "ansible_user: '{% if x %}a{% endif %}' is a Jinja template"),
    ({"edgeopt_profil": "raspberry-pi-5"}, "host pi1: edgeopt_profil: not a variable edgeopt reads; did you mean "
                                           "edgeopt_profile? (edgeopt_<field> for the fields host, port,"),
    ({"edgeopt_pyhton": "/x"}, "; did you mean edgeopt_python?"),
])
def test_ansible_variables_edgeopt_cannot_use_are_refused(host_vars, message):
    with pytest.raises(BadInput) as e:
        inventory_ansible.device_from_vars("pi1", host_vars, "inventory h")
    assert str(e.value).startswith("inventory h: ") and message in str(e.value)


def test_a_host_edgeopt_cannot_use_is_refused_only_where_chosen(cli, tmp_path):
    """A team's shared Ansible inventory holds a docker host beside the boards: it refused every group."""
    from edgeopt.transport import resolve_device
    listing = {"_meta": {"hostvars": {"pi1": {"ansible_host": "192.0.2.9"}, "box": {"ansible_connection": "docker"}}},
               "boards": {"hosts": ["pi1"]}, "other": {"hosts": ["box"]}, "all": {"children": ["boards", "other"]}}
    inv = inventory_ansible.from_listing(listing, "h")
    assert [d.name for d in inv.select("boards")] == ["pi1"] and resolve_device("pi1", inv).host == "192.0.2.9"
    said = "inventory h: host box: ansible_connection: connection 'docker' is not one edgeopt can use"
    for chosen in (lambda: inv.select("other"), lambda: inv.select(), lambda: inv.select("box"),
                   lambda: resolve_device("box", inv)):
        with pytest.raises(BadInput) as e:
            chosen()
        assert str(e.value).startswith(said)


def test_unsafe_marks_from_plugins_are_unwrapped():
    listing = {"_meta": {"hostvars": {"s1": {"ansible_host": {"__ansible_unsafe": "192.0.2.9"}, "tags": [
        {"__ansible_unsafe": "a"}]}}}, "lab": {"hosts": ["s1"]}, "all": {"children": ["lab"]}}
    inv = inventory_ansible.from_listing(listing, "x")
    assert inv.devices["s1"].host == "192.0.2.9" and inv.devices["s1"].vars == {"tags": ["a"]}
    assert inv.groups == {"lab": ["s1"]}


@needs_ansible
def test_ansible_yaml_with_tags_a_safe_loader_refuses(tmp_path):
    # a top-level group named `devices` is still Ansible's when it holds only hosts/children/vars
    path = _write(tmp_path, "hosts.yml", "devices:\n  hosts:\n    pi1:\n      ansible_host: !unsafe '192.0.2.5'\n")
    inv = load(path)
    assert inv.devices["pi1"].host == "192.0.2.5" and inv.groups == {"devices": ["pi1"]}


def test_a_workdir_under_the_home_written_with_a_tilde_is_relative_to_it(tmp_path):
    """No shell reads the workdir on the device: `~/edgeopt-x` made a directory named `~` in the home."""
    inv = load(_write(tmp_path, "t.yaml", "devices: {pi: {host: pi.lab, workdir: '~/edgeopt-x'}, "
                                          "nuc: {host: nuc.lab, workdir: '~//a/b'}}\n"))
    assert (inv.devices["pi"].workdir, inv.devices["nuc"].workdir) == ("edgeopt-x", "a/b")


@pytest.mark.parametrize("workdir", ["-cimport os", "~/-x"])
def test_a_workdir_that_begins_with_a_dash_is_refused(tmp_path, workdir):
    """The agent's path begins with the workdir: `-cimport ...` ran as the device's python's own option (a security
    review). Refused, with the way to write it."""
    with pytest.raises(BadInput, match="begins with '-'.*write it ./-"):
        load(_write(tmp_path, "t.yaml", f"devices: {{pi: {{host: pi.lab, workdir: '{workdir}'}}}}\n"))


def test_a_local_device_takes_python_and_workdir_from_its_own_entry_only(tmp_path):
    """defaults: name the boards' venv and folder; a local device inheriting them ran the boards' Python here."""
    inv = load(_write(tmp_path, "a.yaml", "defaults: {python: /home/pi/venv/bin/python, workdir: /data/e}\n"
                                          "devices: {pi: , laptop: {connection: local}, "
                                          "other: {connection: local, python: /opt/v/bin/python}}"))
    pi, laptop, other = (inv.devices[n] for n in ("pi", "laptop", "other"))
    assert (pi.python, pi.workdir) == ("/home/pi/venv/bin/python", "/data/e")
    assert (laptop.python, laptop.workdir) == (None, None) and other.python == "/opt/v/bin/python"


def test_device_list_marks_a_profile_this_machine_does_not_have(cli, tmp_path):
    """Refused when read, a profile kept in another machine's $EDGEOPT_PROFILES stopped every verb on a CI runner
    that benches bundles of that very profile; shown instead, a misspelling is still seen before a bench."""
    inv = _write(tmp_path, "a.yaml", "devices: {pi: {profile: raspbery-pi-5}, nuc: {profile: intel-cpu}, here: }")
    r = cli("device", "list", "-i", inv, "--json")
    assert r.exit_code == 0 and [d["profile_found"] for d in r.json()] == [False, True, None]
    r = cli("device", "list", "-i", inv, "-q")
    assert "raspbery-pi-5 (not found here)" in r.stdout and "intel-cpu (not found here)" not in r.stdout


@needs_ansible
def test_device_list_hides_the_secrets_of_an_ansible_inventory(cli, tmp_path):
    """`device list --json` printed ansible_password and ansible_become_pass as they were."""
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("[lab]\npi ansible_host=192.0.2.1 ansible_password=SuperSecret123 "
                         "ansible_become_pass=Sekrit456 rack=3\n")
    for args in (["--json"], []):
        r = cli("device", "list", "-i", inventory, *args)
        assert r.exit_code == 0, r.stderr
        assert "SuperSecret123" not in r.stdout and "Sekrit456" not in r.stdout
    listed = cli("device", "list", "-i", inventory, "--json").json()[0]["vars"]
    assert listed == {"ansible_password": "***", "ansible_become_pass": "***", "rack": 3}


def test_secret_variables_are_hidden_inside_nested_ones_too():
    """`creds: {api_key: ...}` was printed as it was: only top-level names were matched (a code review)."""
    from edgeopt.inventory import shown_vars
    shown = shown_vars({"creds": {"api_key": "k1", "user": "pi"}, "hops": [{"token": "t1"}, "plain"], "rack": 3,
                        "vault_id": None})
    assert shown == {"creds": {"api_key": "***", "user": "pi"}, "hops": [{"token": "***"}, "plain"], "rack": 3,
                     "vault_id": None}
    # a password by another name, and one in a URL whatever its variable's name (a security review)
    assert shown_vars({"db_pwd": "hunter2", "mirror": "https://u:hunter2@mirror.example/x"}) == \
        {"db_pwd": "***", "mirror": "https://u:***@mirror.example/x"}
    from edgeopt.inventory import hide_secrets   # and what a review of that found still leaked
    for text, shown in (('ansible_password="abc\'def" y=1', "ansible_password=*** y=1"),
                        ("ansible_password=abc'def", "ansible_password=***"),
                        ("ansible_become_pass: hunter2", "ansible_become_pass: ***"),
                        ("https://u:a/b@mirror/x", "https://u:***@mirror/x"),
                        ("https://:ghp_secret@github.com/x", "https://:***@github.com/x"),
                        ("https://u:p@ss@host/x", "https://u:***@host/x"),
                        ("https://host/a:b@c", "https://host/a:b@c")):
        assert hide_secrets(text) == shown, text


@needs_ansible
def test_an_inventory_line_ansible_cannot_parse_is_quoted_without_its_password(tmp_path):
    """Ansible's parse error repeats the host line, ansible_password included: on stderr and in --json's error,
    so in a CI log (a security review)."""
    path = tmp_path / "hosts.ini"
    path.write_text('[lab]\npi ansible_host=192.0.2.1 ansible_password="hunter2 ansible_port=22\n')
    with pytest.raises(BadInput) as e:
        load(path).select()
    assert "hunter2" not in str(e.value) and "ansible_password=***" in str(e.value), str(e.value)
    assert "No closing quotation" in str(e.value)


@needs_ansible
@pytest.mark.parametrize("text, hint", [
    (OWN.replace("\ndevices:", "\ndevice:"), "edgeopt's own inventory lists its devices under `devices:`, not `device:`"),
    ("all:\n  hosts:\n    pi1: {ansible_host: 192.0.2.11}\n  childs:\n    pis: {hosts: {pi2: {}}}\n", ""),
])
def test_a_key_ansible_skips_is_an_error_not_hosts_lost(tmp_path, text, hint):
    """`device:` for `devices:` was an Ansible inventory whose hosts Ansible skipped with a warning: an empty device
    list, exit 0, and `no device 'pi-kitchen' (devices: none)` at bench time (a user walkthrough)."""
    path = _write(tmp_path, "inv.yaml", text)
    with pytest.raises(BadInput) as e:
        load(path)
    said = str(e.value)
    assert said.startswith(f"inventory {path}: ansible-inventory skipped part of it: Skipping ")
    assert said.endswith(f"({hint})" if hint else "are valid") and "\n" not in said


def test_a_key_file_paramiko_cannot_use_is_said_and_an_agent_may_hold_it(tmp_path, monkeypatch):
    """A DSA key (which paramiko dropped) was an UnknownKeyType traceback; a key file paramiko cannot read is
    refused only without an ssh-agent, which paramiko logs in with instead (a code review)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import dsa

    from edgeopt.inventory import _not_a_private_key
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    key = dsa.generate_private_key(key_size=1024)
    (tmp_path / "dsa").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))
    (tmp_path / "junk").write_text("not a key\n")
    assert _not_a_private_key(str(tmp_path / "dsa")).startswith("paramiko cannot use this key type (")
    assert _not_a_private_key(str(tmp_path / "junk")).startswith("paramiko, edgeopt's SSH client, cannot read it (")
    monkeypatch.setenv("SSH_AUTH_SOCK", str(tmp_path / "agent.sock"))
    assert _not_a_private_key(str(tmp_path / "junk")) is None


def test_a_typed_address_is_named_as_typed_when_refused():
    """An address given as --device was refused as "inventory command line: devices.pi@host:99999.port" (and one over
    the store's 200 characters was untested)."""
    from edgeopt.transport import resolve_device
    with pytest.raises(BadInput) as e:
        resolve_device("pi@host:99999")
    assert str(e.value) == "--device pi@host:99999: its port: port 99999 is out of range"
    with pytest.raises(BadInput) as e:
        resolve_device("pi@" + "a" * 200 + ".example")
    assert str(e.value).startswith("--device: device name 'pi@aaa") and "more than the 200 a results store keeps" \
        in str(e.value)


@pytest.mark.parametrize("text", ["", "devices: {}\n", "[lab]\n"])
def test_an_inventory_that_names_no_device_is_refused(tmp_path, text):
    """An empty file was an empty `device list`, exit 0 (a walkthrough): a fleet of none reads as one that passed."""
    path = _write(tmp_path, "inv.ini" if text.startswith("[") else "inv.yaml", text)
    with pytest.raises(BadInput, match=f"inventory {path} names no device"):
        load(path).select()
    assert load(path).devices == {}   # a device given otherwise (--device local, user@host) needs none of it


def test_aliases_are_read_and_an_alias_bomb_is_refused(cli, tmp_path):
    """Nine levels of ten aliases (609 bytes) took over 1 GB and a minute in `device list`, still going (a fuzzing
    audit). Aliases and merge keys a person writes still read."""
    bomb = ["devices:", "  here: {connection: local}", "vars:", "  a0: &a0 [x,x,x,x,x,x,x,x,x,x]"]
    bomb += [f"  a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]
    (tmp_path / "bomb.yaml").write_text("\n".join(bomb) + "\n")
    r = cli("device", "list", "-i", tmp_path / "bomb.yaml")
    assert r.exit_code == 2 and "its aliases expand to more than 1,000,000 values" in r.stderr, r.stderr
    (tmp_path / "ok.yaml").write_text("defaults: &d {connection: local, python: python3}\ndevices:\n  a: *d\n"
                                      "  b: {<<: *d, workdir: /tmp/x}\n")
    r = cli("device", "list", "-i", tmp_path / "ok.yaml", "--json")
    assert r.exit_code == 0 and [d["name"] for d in r.json()] == ["a", "b"], r.stdout
    (tmp_path / "cycle.yaml").write_text("devices: &a\n  - name: x\n    more: *a\n")   # was "RecursionError"
    r = cli("device", "list", "-i", tmp_path / "cycle.yaml")
    assert r.exit_code == 2 and "an alias refers to a value that holds it (a cycle)" in r.stderr, r.stderr
    (tmp_path / "deep.yaml").write_text("devices: " + "[" * 3000 + "]" * 3000 + "\n")
    r = cli("device", "list", "-i", tmp_path / "deep.yaml")
    assert r.exit_code == 2 and "nested too deeply to read" in r.stderr, r.stderr
