"""Property tests of bundle trust (hypothesis): every tampered manifest is refused, every malformed
manifest is one BundleError naming a field, and a bundle never writes more than its manifest declares.

`pytest tests/test_bundle_fuzz.py -s` prints the tampering figures (refused out of tried)."""
import bz2
import contextlib
import gzip
import hashlib
import io
import json
import lzma
import os
import tarfile
import tempfile

import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from device_agent import BundleError, bundle as agent_bundle, manifest as agent_manifest
from device_agent.cli import main as agent_main

def fast(examples):
    return settings(max_examples=examples, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
TALLY = {}
# Tampered bundles tried per test; raise it for a figure (EDGEOPT_TAMPER_EXAMPLES=2000).
TAMPER_EXAMPLES = int(os.environ.get("EDGEOPT_TAMPER_EXAMPLES", "200"))


class Members(list):
    def __repr__(self):  # hypothesis prints the arguments of a failing example: keep it short
        return "<members %s>" % ", ".join(name for name, _ in self)


@pytest.fixture(scope="module")
def real(bundles):
    """The fp32 bundle's members as (name, bytes), in order, manifest first."""
    with tarfile.open(bundles["fp32"]) as tar:
        return Members((m.name, tar.extractfile(m).read()) for m in tar.getmembers())


@pytest.fixture(scope="module", autouse=True)
def print_tally():
    yield
    for name, (refused, tried) in sorted(TALLY.items()):
        print("\n%s: %d refused out of %d" % (name, refused, tried))


def _count(name, refused):
    done, tried = TALLY.get(name, (0, 0))
    TALLY[name] = (done + bool(refused), tried + 1)


def _tar(members, dest_path):
    """A plain tar of (name, bytes), as edgeopt writes them."""
    with tarfile.open(dest_path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return dest_path


def _agent(*argv):
    """The agent's CLI in-process: (exit code, stderr lines)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            agent_main(list(argv))
        except SystemExit as e:
            code = e.code
    return code, err.getvalue().strip().splitlines()


def _refused_once(code, lines):
    """Exit 2 with one `edgeopt-agent: error: bundle ...` line, never a traceback (bench's progress
    lines, `[agent] ...`, are not errors)."""
    lines = [line for line in lines if not line.startswith("[agent")]
    return code == 2 and len(lines) == 1 and lines[0].startswith("edgeopt-agent: error: bundle ")


# -- (1) tampering -------------------------------------------------------------------------------

@fast(TAMPER_EXAMPLES)
@given(data=st.data())
def test_every_byte_flip_in_the_manifest_is_refused(real, tmp_path, data):
    blob = real[0][1]
    at = data.draw(st.integers(0, len(blob) - 1), label="offset")
    mask = data.draw(st.integers(1, 255), label="xor")
    flipped = blob[:at] + bytes([blob[at] ^ mask]) + blob[at + 1:]
    path = _tar([("manifest.json", flipped)] + real[1:], tmp_path / "flip.edgepkg")
    code, lines = _agent("verify", str(path), "--workdir", str(tmp_path / "w"))
    _count("byte flips in manifest.json (agent verify)", _refused_once(code, lines))
    assert _refused_once(code, lines), (at, mask, code, lines)


def _leaves(doc, path=()):
    """Every (path, value) of a JSON document, containers included."""
    yield path, doc
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for key, value in items:
        yield from _leaves(value, path + (key,))


def _edited(doc, path, how, draw):
    """The manifest with one field changed as a tamperer would: a number moved, a text changed,
    a flag flipped, a key renamed or dropped. None when the edit changes nothing."""
    doc = json.loads(json.dumps(doc))
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    value = parent[key]
    if how == "rename" and isinstance(parent, dict):
        parent[key + draw(st.sampled_from(["_", "s", "2"]))] = parent.pop(key)
    elif how == "drop":
        parent.pop(key) if isinstance(parent, dict) else parent.pop(key)
    elif isinstance(value, bool):
        parent[key] = not value
    elif isinstance(value, (int, float)):
        parent[key] = value + draw(st.sampled_from([1, 200, -1, 0.5]))
    elif isinstance(value, str):
        parent[key] = value + draw(st.sampled_from(["x", "/..", " "]))
    else:
        return None
    return doc


@fast(TAMPER_EXAMPLES)
@given(data=st.data())
def test_every_field_edit_is_refused_sealed_or_not(real, tmp_path, data):
    """A field edit with the stale digest is refused by the digest; with the digest recomputed, by the
    manifest sha256 the host sent (`bench --manifest-sha256`, as edgeopt bench passes it)."""
    blob = real[0][1]
    doc = json.loads(blob)
    how = data.draw(st.sampled_from(["value", "rename", "drop"]), label="edit")
    paths = [p for p, v in _leaves(doc) if p and p[-1] != "content_sha256"
             and (how != "value" or not isinstance(v, (dict, list)))
             and (how != "rename" or isinstance(p[-1], str))]
    path = data.draw(st.sampled_from(paths), label="field")
    edited = _edited(doc, path, how, data.draw)
    assume(edited is not None and edited != doc)
    resealed = data.draw(st.booleans(), label="digest recomputed")
    if resealed:
        edited["content_sha256"] = agent_manifest.content_digest(edited)
    tampered = _tar([("manifest.json", agent_manifest.canonical_bytes(edited))] + real[1:], tmp_path / "edit.edgepkg")
    sent = hashlib.sha256(blob).hexdigest()
    code, lines = _agent("bench", str(tampered), "--workdir", str(tmp_path / "w"), "--manifest-sha256", sent,
                         "--no-power", "--idle-seconds", "0")
    _count("field edits of manifest.json (agent bench, host sha256 sent)", _refused_once(code, lines))
    assert _refused_once(code, lines), (path, code, lines)
    if not resealed:  # the manifest's own digest refuses it even with no host to compare with
        code, lines = _agent("verify", str(tampered), "--workdir", str(tmp_path / "w"))
        assert _refused_once(code, lines), lines


@pytest.fixture(scope="module")
def signed(real, tmp_path_factory):
    """The real bundle signed by a fresh ed25519 key, and an allowed-signers file naming that key."""
    import shutil
    import subprocess
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen (OpenSSH) is not installed")
    d = tmp_path_factory.mktemp("sig")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ci@lab", "-f", str(d / "key")], check=True)
    (d / "allowed").write_text('ci@lab namespaces="edgeopt-bundle" ' + (d / "key.pub").read_text())
    (d / "manifest.json").write_bytes(real[0][1])
    subprocess.run(["ssh-keygen", "-q", "-Y", "sign", "-f", str(d / "key"), "-n", agent_bundle.SIGN_NAMESPACE,
                    str(d / "manifest.json")], check=True)
    return {"allowed": str(d / "allowed"), "sig": (d / "manifest.json.sig").read_bytes()}


@fast(TAMPER_EXAMPLES // 4)
@given(data=st.data())
def test_every_resealed_edit_of_a_signed_bundle_is_refused_by_its_signature(real, signed, tmp_path, data):
    """Digest recomputed and no host sha256 to compare with: only the signature can tell, and does."""
    doc = json.loads(real[0][1])
    paths = [p for p, v in _leaves(doc) if p and p[-1] != "content_sha256" and not isinstance(v, (dict, list))]
    edited = _edited(doc, data.draw(st.sampled_from(paths), label="field"), "value", data.draw)
    assume(edited is not None and edited != doc)
    edited["content_sha256"] = agent_manifest.content_digest(edited)
    members = [("manifest.json", agent_manifest.canonical_bytes(edited)), ("manifest.json.sig", signed["sig"])]
    path = _tar(members + real[1:], tmp_path / "signed.edgepkg")
    code, lines = _agent("verify", str(path), "--workdir", str(tmp_path / "w"), "--allowed-signers", signed["allowed"])
    _count("resealed field edits of a signed bundle (agent verify --allowed-signers)", _refused_once(code, lines))
    assert _refused_once(code, lines), lines


def test_the_signed_bundle_itself_verifies(real, signed, tmp_path):
    intact = _tar([("manifest.json", real[0][1]), ("manifest.json.sig", signed["sig"])] + real[1:], tmp_path / "ok.edgepkg")
    assert _agent("verify", str(intact), "--workdir", str(tmp_path / "w"), "--allowed-signers", signed["allowed"]) == (0, [])


# -- (2) malformed manifests ----------------------------------------------------------------------

JSON = st.recursive(st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.floats(allow_nan=False)
                    | st.text(max_size=12),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=12)


def _mutate(doc, data):
    """The real manifest with 1-3 random changes: any field replaced by any JSON, dropped, or a key added."""
    doc = json.loads(json.dumps(doc))
    for _ in range(data.draw(st.integers(1, 3), label="changes")):
        paths = [p for p, v in _leaves(doc)]
        path = data.draw(st.sampled_from(paths), label="at")
        if not path:
            doc = data.draw(JSON, label="whole") if data.draw(st.booleans()) else doc
            if not isinstance(doc, dict):
                return doc
            continue
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        action = data.draw(st.sampled_from(["replace", "drop", "add"]), label="action")
        if action == "replace":
            parent[path[-1]] = data.draw(JSON, label="value")
        elif action == "drop":
            parent.pop(path[-1])
        elif isinstance(parent, dict):
            parent[data.draw(st.text(max_size=8), label="key")] = data.draw(JSON, label="value")
    return doc


@fast(300)
@given(data=st.data())
def test_malformed_manifests_are_one_bundle_error_naming_the_field(real, data):
    doc = _mutate(json.loads(real[0][1]), data)
    try:
        agent_manifest.validate_manifest(doc)
    except BundleError as e:
        message = str(e)
        assert "\n" not in message and message.startswith("manifest "), message
        return
    # Accepted: what the agent reads has the types it needs (no later crash, no silent default).
    from device_agent.bench import resolve_threads
    assert resolve_threads(doc, None)[0] >= 1
    for spec in doc["inputs"]:
        assert all(isinstance(d, int) and d >= 1 for d in spec["shape"]) and isinstance(spec["dtype"], str)
    assert doc["model"] in {f["path"] for f in doc["files"]}


@fast(100)
@given(data=st.data())
def test_malformed_sealed_manifests_through_the_agent_are_exit_2_one_line(real, tmp_path, data):
    """Resealed (digest recomputed) so the field checks, not the digest, decide."""
    doc = _mutate(json.loads(real[0][1]), data)
    try:
        blob = agent_manifest.canonical_bytes(dict(doc, content_sha256=agent_manifest.content_digest(doc))
                                              if isinstance(doc, dict) else doc)
    except BundleError:
        return  # not representable as canonical JSON: the host refuses to write it (seal)
    path = _tar([("manifest.json", blob)] + real[1:], tmp_path / "m.edgepkg")
    code, lines = _agent("verify", str(path), "--workdir", str(tmp_path / "w"))
    assert code == 0 or _refused_once(code, lines), (code, lines)


def test_deep_and_huge_manifests(real, tmp_path):
    for blob, message in ((b"[" * 100000 + b"]" * 100000, "nested too deeply"),
                          (b"{" + b" " * (agent_bundle.MAX_MANIFEST_BYTES + 1) + b"}", "more than the")):
        path = _tar([("manifest.json", blob)] + real[1:], tmp_path / "d.edgepkg")
        code, lines = _agent("verify", str(path), "--workdir", str(tmp_path / "w"))
        assert _refused_once(code, lines) and message in lines[0], lines


# -- (3) nothing written beyond what the manifest declares ---------------------------------------

def _written(dest):
    total, names = 0, []
    for root, _, files in os.walk(dest):
        for name in files:
            path = os.path.join(root, name)
            total += os.path.getsize(path)
            names.append(os.path.relpath(path, dest).replace(os.sep, "/"))
    return total, sorted(names)


COMPRESSORS = {"gzip": gzip.compress, "xz": lzma.compress, "bzip2": bz2.compress}


@fast(9)
@given(kind=st.sampled_from(sorted(COMPRESSORS)), bomb_mb=st.sampled_from([0, 2, 16]))
def test_compressed_bundles_are_refused_before_writing_a_byte(real, tmp_path, kind, bomb_mb):
    members = list(real) + ([("model/zeros.bin", bytes(bomb_mb << 20))] if bomb_mb else [])
    plain = _tar(members, tmp_path / "plain.tar")
    packed = tmp_path / ("c-%s.edgepkg" % kind)
    packed.write_bytes(COMPRESSORS[kind](plain.read_bytes()))
    dest = tempfile.mkdtemp(dir=str(tmp_path))
    with pytest.raises(BundleError, match="is %s-compressed; edgeopt bundles are plain tar" % kind):
        agent_bundle.unpack(str(packed), dest)
    assert _written(dest) == (0, [])


def _sealed(real, files):
    """A valid manifest (the real one's fields) listing `files` [(path, bytes)], and its bytes."""
    doc = json.loads(real[0][1])
    doc.pop("data", None)
    doc["files"] = [{"path": p, "role": "model", "bytes": len(d), "sha256": hashlib.sha256(d).hexdigest()}
                    for p, d in files]
    doc["model"] = files[0][0]
    doc.pop("content_sha256")
    return agent_manifest.seal(doc)[1]


FILE = st.tuples(st.sampled_from(["model/a.onnx", "model/b.bin", "data/c.npz", "d"]), st.binary(max_size=3000))


@fast(150)
@given(listed=st.lists(FILE, min_size=1, max_size=4, unique_by=lambda f: f[0]),
       shipped_edit=st.sampled_from(["grow", "shrink", "swap", "extra", "same"]), grow=st.integers(1, 200000),
       data=st.data())
def test_members_are_checked_before_writing_and_bounded_by_declared_sizes(real, tmp_path, listed, shipped_edit,
                                                                         grow, data):
    blob = _sealed(real, listed)
    shipped = list(listed)
    i = data.draw(st.integers(0, len(shipped) - 1), label="member")
    name, content = shipped[i]
    if shipped_edit == "grow":
        shipped[i] = (name, content + b"\0" * grow)
    elif shipped_edit == "shrink" and content:
        shipped[i] = (name, content[:-1])
    elif shipped_edit == "swap":
        shipped[i] = (name, bytes(b ^ 1 for b in content) or b"x")
    elif shipped_edit == "extra":
        shipped.append(("model/unlisted.bin", b"\0" * grow))
    path = _tar([("manifest.json", blob)] + shipped, tmp_path / "s.edgepkg")
    dest = tempfile.mkdtemp(dir=str(tmp_path))
    declared = len(blob) + sum(len(d) for _, d in listed)
    try:
        agent_bundle.unpack(str(path), dest)
        accepted = True
    except BundleError as e:
        accepted = False
        assert str(e).startswith("bundle %s: " % path) and "\n" not in str(e)
    total, names = _written(dest)
    assert total <= declared and set(names) <= {"manifest.json"} | {p for p, _ in listed}
    assert accepted == (shipped == listed)
