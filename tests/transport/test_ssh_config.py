"""ssh config resolved by OpenSSH (`ssh -G`: Include, Match), multi-hop ProxyJump through real loopback
sshd instances, and an interpreter given as a command line, end to end from an Ansible inventory."""
import shlex
import shutil
import sys

import pytest

from edgeopt import inventory_ansible
from edgeopt.errors import BadInput, DeviceFailure
from edgeopt.inventory import load, make_device
from edgeopt.transport import ssh_config
from edgeopt.transport.ssh import SshOptions, SshTransport
from edgeopt.transport.ssh_config import parse_jump
from edgeopt.transport.ssh_connect import open_client

needs_ssh = pytest.mark.skipif(shutil.which("ssh") is None, reason="OpenSSH client (ssh -G) not installed")


def _options(lab, config, **kw):
    return SshOptions(known_hosts=str(lab.known_hosts), ssh_config=str(config), connect_timeout=5, **kw)


def _chain(client):
    out = []
    while client is not None:
        out.append(client.edgeopt_address)
        client = client.edgeopt_jump
    return out


@pytest.fixture(scope="module")
def hops(lab):
    """Two jump hosts and a target, each its own sshd on loopback."""
    return [lab.devices.get(n) or lab.add(n, i) for n, i in (("hop-1", 60), ("hop-2", 61), ("behind-2", 62))]


def test_parse_jump():
    assert parse_jump("a,u@b:2200,ssh://v@c:22,[::1]:2222", "x") == [
        (None, "a", None), ("u", "b", 2200), ("v", "c", 22), (None, "::1", 2222)]
    for bad in ("a,,b", "-oProxyCommand=x", "a:70000", "a b"):
        with pytest.raises(BadInput, match="ProxyJump hop"):
            parse_jump(bad, "x")


@needs_ssh
def test_two_hop_proxy_jump_chains_channels(lab, hops, tmp_path):
    one, two, target = hops
    user = lab.inventory_entry(one)["user"]
    config = tmp_path / "ssh_config"
    config.write_text("".join(f"Host {d.name}\n  HostName {d.host}\n  Port {d.port}\n  User {user}\n"
                              f"  IdentityFile {lab.client_key}\n" for d in hops))
    spec = make_device("behind-2", {"proxy_jump": "hop-1,hop-2"}, "test")
    client = open_client(spec, _options(lab, config))
    jumps = [client.edgeopt_jump, client.edgeopt_jump.edgeopt_jump]
    try:
        assert _chain(client) == [f"{user}@{d.host}:{d.port}" for d in (target, two, one)]
        transport = SshTransport(spec, _options(lab, config))
        transport.client = client
        assert transport.run(["echo", "through two hops"], lambda line: None, 30) == (0, "through two hops\n")
    finally:
        client.close()
    assert [j.get_transport() for j in jumps] == [None, None]   # closing the device closed its hops


@needs_ssh
def test_dead_first_hop_fails_the_chain_in_one_line(lab, tmp_path):
    one = lab.add("hop-dead", 63)
    target = lab.devices.get("behind-2") or lab.add("behind-2", 62)
    user = lab.inventory_entry(one)["user"]
    config = tmp_path / "ssh_config"
    config.write_text(f"Host *\n  User {user}\n  IdentityFile {lab.client_key}\n")
    one.kill()
    spec = make_device("far", {"host": target.host, "port": target.port,
                               "proxy_jump": f"{one.host}:{one.port},{target.host}:{target.port}"}, "test")
    expected = rf"device far \(jump host {one.host}\): cannot connect to {user}@{one.host}:{one.port}"
    with pytest.raises(DeviceFailure, match=expected):
        open_client(spec, _options(lab, config))


@needs_ssh
def test_include_and_match_are_resolved_by_ssh(lab, hops, tmp_path):
    target = hops[2]
    user = lab.inventory_entry(target)["user"]
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "lab.conf").write_text(f"Host aliased\n  HostName {target.host}\n  User {user}\n"
                                                  f"  IdentityFile {lab.client_key}\n")
    config = tmp_path / "ssh_config"
    config.write_text(f"Include {tmp_path}/conf.d/*.conf\nMatch originalhost aliased\n  Port {target.port}\n")
    spec = make_device("aliased", {}, "test")
    resolved = ssh_config.resolve(spec, _options(lab, config))
    assert (resolved["host"], resolved["port"], resolved["keys"]) == (target.host, target.port, [str(lab.client_key)])
    client = open_client(spec, _options(lab, config))
    client.close()


def test_without_ssh_an_include_is_refused_not_half_read(tmp_path, monkeypatch):
    config = tmp_path / "ssh_config"
    config.write_text("Include other.conf\nHost x\n  Port 2200\n")
    monkeypatch.setattr(ssh_config.shutil, "which", lambda name: None)
    with pytest.raises(DeviceFailure, match="uses Include, which only OpenSSH's `ssh -G` resolves"):
        ssh_config.resolve(make_device("x", {}, "test"), SshOptions(ssh_config=str(config)))
    config.write_text("Host x\n  Port 2200\n")
    assert ssh_config.resolve(make_device("x", {}, "test"), SshOptions(ssh_config=str(config)))["port"] == 2200


@pytest.mark.parametrize("with_openssh", [True, False])
def test_a_bad_port_in_the_ssh_config_is_bad_input_naming_the_file(tmp_path, monkeypatch, with_openssh):
    """`Port abc`: exit 3 and a failed result saved where OpenSSH read it, a ValueError traceback where paramiko
    did (a fuzzing audit). The config is the user's input: exit 2, naming it."""
    if with_openssh and not shutil.which("ssh"):
        pytest.skip("no OpenSSH client")
    if not with_openssh:
        monkeypatch.setattr(ssh_config.shutil, "which", lambda name: None)
    config = tmp_path / "ssh_config"
    for text in ("Host pi-alias\n  Port abc\n", "Host pi-alias\n  Prot 22\n"):   # a bad number, a typo'd keyword
        config.write_text(text)
        if not with_openssh and "Prot" in text:
            continue   # paramiko keeps an unknown keyword
        with pytest.raises(BadInput, match=f"ssh config {config}"):
            ssh_config.resolve(make_device("pi-alias", {}, "test"), SshOptions(ssh_config=str(config)))


@needs_ssh
@pytest.mark.skipif(inventory_ansible.find_executable() is None, reason="ansible-core not installed")
def test_ansible_inventory_end_to_end_over_two_hops(cli, lab, hops, tmp_path):
    """ProxyJump from ansible_ssh_common_args, an interpreter with two words (and a space in a path)."""
    one, two, target = hops
    user = lab.inventory_entry(target)["user"]
    spaced = tmp_path / "my python" / "python"
    spaced.parent.mkdir()
    spaced.symlink_to(sys.executable)
    inventory = tmp_path / "hosts"
    interpreter = f"/usr/bin/env {shlex.quote(str(spaced))}"
    inventory.write_text(
        f"[edge]\nfar ansible_host={target.host} ansible_port={target.port}\n"
        f"[edge:vars]\nansible_user={user}\nansible_ssh_private_key_file={lab.client_key}\n"
        f"ansible_python_interpreter=\"{interpreter}\"\nedgeopt_workdir={tmp_path}/work\n"
        f"ansible_ssh_common_args='-J {one.host}:{one.port},{two.host}:{two.port} -o StrictHostKeyChecking=yes'\n")
    spec = load(inventory).devices["far"]
    assert spec.python_argv == ["/usr/bin/env", str(spaced)] and spec.proxy_jump.count(",") == 1
    config = tmp_path / "ssh_config"
    config.write_text(f"Host 127.*\n  User {user}\n  IdentityFile {lab.client_key}\n")
    r = cli("device", "doctor", "far", "--inventory", inventory, "--ssh-config", config,
            "--known-hosts", lab.known_hosts, "--json")
    checks = {c["check"]: c for c in r.json()["checks"]}
    assert checks["connection"]["ok"] and checks["python"]["ok"], checks
    assert checks["agent"]["ok"], checks


def test_a_proxy_command_from_ssh_g_gets_its_tokens_expanded():
    """`ssh -G` prints ProxyCommand's %h/%p unexpanded: `ssh -W %h:%p jump` asked the jump host for "%h:%p"."""
    from edgeopt.transport.ssh_config import expand_tokens

    target = {"host": "10.0.0.7", "port": 2222, "user": "pi"}
    assert expand_tokens("ssh -W %h:%p -l %r jump # %n 100%%", target, "pi-kitchen") == \
        "ssh -W 10.0.0.7:2222 -l pi jump # pi-kitchen 100%"
    assert expand_tokens("nc %x", target, "a") == "nc %x"   # a token ssh has and this does not: left as it is


@needs_ssh
def test_a_proxy_command_with_tokens_reaches_the_device(lab, hops, tmp_path):
    """The standard `ProxyCommand ssh -W %h:%p jump` through a real jump host, resolved by `ssh -G` (which leaves
    the tokens to the caller): it never connected, and the error blamed the device's banner."""
    one, _, target = hops
    user = lab.inventory_entry(one)["user"]
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host proxied\n  HostName {target.host}\n  Port {target.port}\n  User {user}\n  IdentityFile {lab.client_key}\n"
        f"  ProxyCommand ssh -F /dev/null -i {lab.client_key} -o UserKnownHostsFile={lab.known_hosts} "
        f"-o StrictHostKeyChecking=yes -o BatchMode=yes -p {one.port} -W %h:%p {user}@{one.host}\n")
    spec = make_device("proxied", {}, "test")
    assert ssh_config.resolve(spec, _options(lab, config))["proxy_command"].endswith(
        f"-W {target.host}:{target.port} {user}@{one.host}")
    client = open_client(spec, _options(lab, config))
    try:
        transport = SshTransport(spec, _options(lab, config))
        transport.client = client
        assert transport.run(["echo", "through a proxy command"], lambda line: None, 30) == (0, "through a proxy command\n")
    finally:
        client.close()


@needs_ssh
def test_the_configs_known_hosts_file_is_read_where_no_known_hosts_is_given(lab, hops, tmp_path):
    """An alias that worked for ssh, with UserKnownHostsFile in its config, was refused: the default file does not
    exist (a user walkthrough). --known-hosts still wins over it."""
    device = hops[0]
    config = tmp_path / "ssh_config"
    config.write_text(f"Host board\n  HostName {device.host}\n  Port {device.port}\n  User "
                      f"{lab.inventory_entry(device)['user']}\n  IdentityFile {lab.client_key}\n"
                      f"  UserKnownHostsFile {lab.known_hosts}\n")
    spec = make_device("board", {}, "test")
    client = open_client(spec, SshOptions(ssh_config=str(config), connect_timeout=5))
    client.close()
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    with pytest.raises(DeviceFailure, match=f"is unknown.*>> {empty}"):
        open_client(spec, SshOptions(ssh_config=str(config), known_hosts=str(empty), connect_timeout=5))


def test_only_a_known_hosts_file_of_the_configs_own_is_taken(tmp_path, monkeypatch):
    """`ssh -G` prints ssh's default file as well, from the passwd entry's home, not $HOME (it replaced the
    default under a $HOME of its own); `none` and /dev/null name no file; a path with spaces is printed unquoted
    (a code review)."""
    monkeypatch.setattr(ssh_config, "_ssh_default_known_hosts", lambda: "/root/.ssh/known_hosts /root/.ssh/known_hosts2")
    spaced = tmp_path / "with space" / "kh"
    spaced.parent.mkdir()
    spaced.write_text("")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert ssh_config._known_hosts_file("/root/.ssh/known_hosts /root/.ssh/known_hosts2") is None
    assert ssh_config._known_hosts_file("none") is None and ssh_config._known_hosts_file("/dev/null") is None
    assert ssh_config._known_hosts_file(f"{spaced} /etc/other") == str(spaced)
    assert ssh_config._known_hosts_file("~/lab/known_hosts") == str(tmp_path / "lab" / "known_hosts")
    assert ssh_config._known_hosts_file(None) is None
