"""Inventories: edgeopt's YAML, Ansible INI and YAML, read with real parsers; bad ones refused clearly."""
import pytest

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

ANSIBLE_INI = """
# edge fleet
[pis]
pi1 ansible_host=192.0.2.11 ansible_port=2201 ansible_user=pi ansible_python_interpreter=/opt/venv/bin/python3
pi2 ansible_host=192.0.2.12 edgeopt_profile=raspberry-pi-4 rack="row 3"

[nucs]
nuc1 ansible_host=192.0.2.20 ansible_ssh_private_key_file=~/.ssh/nuc

[pis:vars]
ansible_user=pi-default
edgeopt_workdir=/var/tmp/edgeopt

[fleet:children]
pis
nucs
"""

ANSIBLE_YAML = """
all:
  vars: {ansible_user: ops}
  children:
    pis:
      vars: {ansible_python_interpreter: /usr/bin/python3}
      hosts:
        pi1: {ansible_host: 192.0.2.11, ansible_port: 2201}
        pi2: {ansible_host: 192.0.2.12, ansible_user: pi}
    jetsons:
      hosts:
        orin1: {ansible_host: 192.0.2.30, edgeopt_profile: jetson-orin-nano}
"""


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_own_yaml_with_defaults_and_groups(tmp_path):
    inv = load(_write(tmp_path, "fleet.yaml", OWN))
    pi = inv.devices["pi-kitchen"]
    assert (pi.host, pi.user, pi.python, pi.profile, pi.port) == ("192.0.2.10", "pi", "/home/pi/venv/bin/python",
                                                                   "raspberry-pi-5", None)
    assert pi.vars == {"site": "lab", "shelf": 2}
    nuc = inv.devices["nuc-1"]
    assert (nuc.port, nuc.user, nuc.python) == (2222, "admin", "python3")
    assert inv.devices["here"].connection == "local"
    assert [d.name for d in inv.select("lab")] == ["pi-kitchen", "nuc-1"]
    assert len(inv.select(None)) == 3 and [d.name for d in inv.select("nuc-1")] == ["nuc-1"]


def test_ansible_ini_used_unchanged(tmp_path):
    inv = load(_write(tmp_path, "hosts.ini", ANSIBLE_INI))
    pi1, pi2, nuc1 = inv.devices["pi1"], inv.devices["pi2"], inv.devices["nuc1"]
    assert (pi1.host, pi1.port, pi1.user, pi1.python) == ("192.0.2.11", 2201, "pi", "/opt/venv/bin/python3")
    assert (pi2.user, pi2.profile, pi2.workdir, pi2.vars) == ("pi-default", "raspberry-pi-4", "/var/tmp/edgeopt",
                                                              {"rack": "row 3"})
    assert nuc1.key_files[0].endswith("/.ssh/nuc") and not nuc1.key_files[0].startswith("~")
    assert [d.name for d in inv.select("fleet")] == ["pi1", "pi2", "nuc1"]
    assert [d.name for d in inv.select("pis")] == ["pi1", "pi2"]


def test_ansible_yaml_used_unchanged(tmp_path):
    inv = load(_write(tmp_path, "hosts.yml", ANSIBLE_YAML))
    assert inv.devices["pi1"].user == "ops" and inv.devices["pi2"].user == "pi"
    assert inv.devices["pi1"].python == "/usr/bin/python3" and inv.devices["pi1"].port == 2201
    assert inv.devices["orin1"].profile == "jetson-orin-nano" and inv.devices["orin1"].python == "python3"
    assert [d.name for d in inv.select("pis")] == ["pi1", "pi2"]
    assert {d.name for d in inv.select("all")} == {"pi1", "pi2", "orin1"}


@pytest.mark.parametrize("name, text, message", [
    ("a.yaml", "devices: {pi: {host: x, port: ssh}}", "port 'ssh' is not a number"),
    ("a.yaml", "devices: {pi: {host: x, colour: red}}", "unknown field 'colour'"),
    ("a.yaml", "devices: {pi: {host: x}}\ngroups: {lab: [pi, ghost]}", "group lab names unknown device 'ghost'"),
    ("a.yaml", "devices: {pi: {host: x}\n", "is not valid YAML (line"),
    ("a.yaml", "devices: [pi]", "`devices` and `defaults` must be mappings"),
    ("a.yaml", "devices: {pi: {host: x, port: 70000}}", "port 70000 is out of range"),
    ("a.yaml", "- just\n- a list", "expected an Ansible YAML inventory"),
    ("h.ini", "[pis]\npi1 ansible_port=22 junk", "'junk' is not key=value"),
    ("h.ini", "[pis:weird]\nx", "unknown section kind [pis:weird]"),
    ("h.ini", "[pis]\npi1 ansible_host=\"unclosed", "No closing quotation"),
])
def test_malformed_inventories(tmp_path, name, text, message):
    with pytest.raises(BadInput, match=message.replace("[", r"\[").replace("(", r"\(")):
        load(_write(tmp_path, name, text))


def test_unknown_group_and_missing_file(tmp_path, cli, bundles):
    inv = _write(tmp_path, "fleet.yaml", OWN)
    with pytest.raises(BadInput, match="no group or device 'kitchen'; groups: all, lab"):
        load(inv).select("kitchen")
    r = cli("fleet", "bench", bundles["fp32"], "--inventory", tmp_path / "nope.yaml")
    assert r.exit_code == 2 and "inventory not found" in r.stderr
    r = cli("device", "list", "--inventory", inv, "--json")
    assert r.exit_code == 0 and [d["name"] for d in r.json()] == ["pi-kitchen", "nuc-1", "here"]
