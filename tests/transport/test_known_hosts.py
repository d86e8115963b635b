"""known_hosts read as ssh reads it (edgeopt/transport/known_hosts.py): markers, patterns, hashed names and odd
lines, then over real OpenSSH: a managed known_hosts with @cert-authority and @revoked lines."""
import paramiko
import pytest
from hypothesis import given, settings, strategies as st

from conftest import write_inventory
from edgeopt.transport import known_hosts



@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """Three real ed25519 public keys as `type base64` text, and their paramiko keys."""
    import sshd
    out = {}
    for name in ("a", "b", "c"):
        text = " ".join(sshd.keygen(tmp_path_factory.mktemp("k") / "key").split()[:2])
        out[name] = (text, paramiko.hostkeys.HostKeyEntry.from_line(f"h {text}").key)
    return out


def _read(tmp_path, text, label):
    path = tmp_path / "known_hosts"
    path.write_text(text)
    return known_hosts.read(str(path), label)


def _names(found, keys):
    return sorted(n for n, (_, k) in keys.items() if known_hosts.listed(k, found))


def test_patterns_negation_and_hashed_names(tmp_path, keys):
    hashed = paramiko.HostKeys.hash_host("[10.0.0.7]:2222")
    text = (f"[10.0.0.?]:2222,!10.0.0.9 {keys['a'][0]}\n"
            f"*.lab,![10.0.0.7]:2222 {keys['b'][0]}\n"
            f"{hashed} {keys['c'][0]}\n")
    assert _names(_read(tmp_path, text, "[10.0.0.7]:2222").known, keys) == ["a", "c"]
    assert _names(_read(tmp_path, text, "pi.lab").known, keys) == ["b"]
    assert _names(_read(tmp_path, text, "[10.0.0.7]:22").known, keys) == []   # another port, another host


def test_markers_and_lines_ssh_skips(tmp_path, keys):
    text = (f"@cert-authority *.example.com {keys['a'][0]}\n"
            f"@revoked * {keys['b'][0]}\n"
            "# a comment\n\n"
            "host ssh-ed25519 not-base64!!\n"
            "host ssh-unknown-type AAAA\n"
            "too few\n"
            f"host   {keys['b'][0]}\n"            # listed and revoked: revoked wins
            f"host\t{keys['c'][0]}\n")
    found = _read(tmp_path, text, "host")
    assert _names(found.known, keys) == ["c"] and _names(found.revoked, keys) == ["b"]
    assert _read(tmp_path, text, "x.example.com").known == []   # a CA key is no host key


def test_a_missing_file_knows_nothing(tmp_path):
    found = known_hosts.read(str(tmp_path / "none"), "host")
    assert found.known == [] and found.revoked == []


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(list("@|!*?,[]:# \t\nAaZz019+/=-.ssh-ed25519revoked")), max_size=200),
       label=st.sampled_from(["host", "[10.0.0.7]:2222", "", "*"]))
def test_the_reader_is_total(tmp_path_factory, text, label):
    path = tmp_path_factory.mktemp("kh") / "known_hosts"
    path.write_text(text)
    found = known_hosts.read(str(path), label)
    assert isinstance(found.known, list) and isinstance(found.revoked, list)


def test_over_ssh_a_managed_known_hosts_works_and_a_revoked_key_is_refused(cli, lab, tmp_path, keys):
    dev = lab.add("pi-managed", 7, known=False)
    inv = write_inventory(tmp_path / "inv.yaml", lab, [dev])
    managed = tmp_path / "known_hosts"
    wildcard = f"[{dev.host.rsplit('.', 1)[0]}.*]:{dev.port}"
    managed.write_text(f"@cert-authority *.example.com {keys['a'][0]}\n@revoked old.example.com {keys['b'][0]}\n"
                       f"{wildcard} {dev.host_key}\n")
    doctor = ("device", "doctor", "pi-managed", "--inventory", inv, "--known-hosts", managed)
    r = cli(*doctor, "--json")
    assert r.exit_code == 0, r.stderr
    managed.write_text(managed.read_text() + f"@revoked {wildcard} {dev.host_key}\n")
    for extra in ((), ("--trust-new-host-keys",)):
        r = cli(*doctor, *extra)   # the table folds the message: the fingerprint is whole, to compare
        assert r.exit_code == 3 and "REVOKED HOST KEY" in r.stdout and "…" not in r.stdout, r.stdout
        quiet = cli(*doctor, *extra, "-q")   # --quiet prints the error, on stderr, as one line
        assert quiet.exit_code == 3 and quiet.stdout == "" and len(quiet.stderr.splitlines()) == 1, quiet.stderr
        assert quiet.stderr.startswith(f"edgeopt: device pi-managed: REVOKED HOST KEY for [{dev.host}]:{dev.port}")
        assert "Traceback" not in r.stderr + quiet.stderr
    assert managed.read_text().count(dev.host_key) == 2   # nothing appended


def test_a_pinned_key_is_a_line_of_its_own(tmp_path, keys):
    """--trust-new-host-keys glued the new key onto a last line without a newline: the user's line broke, and
    the key was never found again (the next run trusted whatever the host offered)."""
    path = tmp_path / "known_hosts"
    path.write_text(f"@cert-authority *.corp {keys['a'][0]}")
    known_hosts.append(str(path), "[10.0.0.7]:2222", keys["b"][1])
    known_hosts.append(str(path), "pi.lab", keys["c"][1])
    assert path.read_text().splitlines() == [f"@cert-authority *.corp {keys['a'][0]}",
                                             f"[10.0.0.7]:2222 {keys['b'][0]}", f"pi.lab {keys['c'][0]}"]
    assert _names(known_hosts.read(str(path), "[10.0.0.7]:2222").known, keys) == ["b"]


def test_a_host_pinned_by_its_rsa_key_is_asked_for_that_key(cli, lab, tmp_path):
    """sshd offers ed25519 first; ssh asks for the key type known_hosts has, and so does edgeopt now (it called
    the host unknown, and its advice would have pinned a second key)."""
    import subprocess

    dev = lab.add("pi-rsa", 8, known=False)
    dev.kill()
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", str(dev.dir / "hostkey_rsa")],
                   check=True)
    config = dev.dir / "sshd_config"
    config.write_text(config.read_text() + f"HostKey {dev.dir / 'hostkey_rsa'}\n")
    dev.start()
    rsa = " ".join((dev.dir / "hostkey_rsa.pub").read_text().split()[:2])
    known = tmp_path / "known_hosts"
    known.write_text(f"[{dev.host}]:{dev.port} {rsa}\n")
    inv = write_inventory(tmp_path / "inv.yaml", lab, [dev])
    r = cli("device", "doctor", "pi-rsa", "--inventory", inv, "--known-hosts", known, "--json")
    assert r.exit_code == 0, r.stdout + r.stderr
    assert known.read_text() == f"[{dev.host}]:{dev.port} {rsa}\n"   # nothing else pinned
