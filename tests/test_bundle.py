"""Bundles are verified before anything loads: tampering, unsafe tar members, missing files, the
manifest's own digest and fields, signatures."""
import gzip
import hashlib
import io
import json
import pathlib
import shutil
import subprocess
import tarfile

import numpy as np
import pytest

from conftest import CALIB, EVAL, FAST_BENCH_ARGS, MODEL
from device_agent import manifest as agent_manifest


def _rewrite(src, dst, edit):
    """Copy a bundle member by member through `edit(name, data) -> [(name, data, type, linkname)]`."""
    with tarfile.open(src) as tin, tarfile.open(dst, "w") as tout:
        for m in tin.getmembers():
            data = tin.extractfile(m).read()
            for name, payload, kind, link in edit(m.name, data):
                info = tarfile.TarInfo(name)
                info.type, info.linkname, info.size = kind, link, len(payload)
                tout.addfile(info, io.BytesIO(payload) if kind == tarfile.REGTYPE else None)
    return dst


def _keep(name, data):
    return [(name, data, tarfile.REGTYPE, "")]


def reseal(doc) -> bytes:
    """A manifest's canonical bytes with its digest recomputed: what a deliberate tamperer (or a buggy
    writer) produces; only a signature tells it from the real one."""
    doc = dict(doc)
    doc[agent_manifest.DIGEST_FIELD] = agent_manifest.content_digest(doc)
    return agent_manifest.canonical_bytes(doc)


def edit_manifest(change, seal=True):
    """An edit that applies `change(manifest dict)` and writes it back resealed (or with the stale digest)."""
    def edit(name, data):
        if name == "manifest.json":
            doc = json.loads(data)
            change(doc)
            data = reseal(doc) if seal else agent_manifest.canonical_bytes(doc)
        return _keep(name, data)
    return edit


def _flip_byte(name, data):
    if name == "model/model.onnx":
        data = data[:100] + bytes([data[100] ^ 1]) + data[101:]
    return _keep(name, data)


def _add(extra_name, kind=tarfile.REGTYPE, link=""):
    def edit(name, data):
        out = _keep(name, data)
        if name == "manifest.json":
            out.append((extra_name, b"" if kind != tarfile.REGTYPE else b"x", kind, link))
        return out
    return edit


def _drop_eval(name, data):
    return [] if name == "data/eval.npz" else _keep(name, data)


def _bad_manifest(name, data):
    return _keep(name, b"{not json" if name == "manifest.json" else data)


def _twice(target):
    def edit(name, data):
        return _keep(name, data) * (2 if name == target else 1)
    return edit


def _short_eval(name, data):
    return _keep(name, data[:-10] if name == "data/eval.npz" else data)


def _manifest_last(name, data):
    return [] if name == "manifest.json" else _keep(name, data)


def _deep(name, data):
    return _keep(name, b"[" * 100000 + b"]" * 100000 if name == "manifest.json" else data)


def _huge(name, data):
    return _keep(name, data + b" " * (1 << 20) if name == "manifest.json" else data)


def _set(path, value):
    def change(doc):
        *parents, last = path
        for key in parents:
            doc = doc[key]
        doc[last] = value
    return change


def _drop(key):
    return lambda doc: doc.pop(key)


CASES = [
    (_flip_byte, "file model/model.onnx does not match its sha256"),
    (_add("../evil.sh"), "escapes the bundle directory"),
    (_add("/etc/evil"), "has an absolute path"),
    (_add("model/link", tarfile.SYMTYPE, "/etc/passwd"), "is a link"),
    (_add("model/hard", tarfile.LNKTYPE, "manifest.json"), "is a link"),
    (_add("model/fifo", tarfile.FIFOTYPE), "is not a regular file"),
    (_add("model/extra.bin"), "holds model/extra.bin, which its manifest does not list"),
    (_drop_eval, "file data/eval.npz is missing"),
    (_twice("data/eval.npz"), "more than its manifest accounts for"),
    (_twice("manifest.json"), "holds manifest.json, which its manifest does not list"),
    (_short_eval, "file data/eval.npz is 110190 bytes, manifest says 110200"),
    (_manifest_last, "the first member must be the file manifest.json"),
    (_bad_manifest, "manifest.json is not valid JSON"),
    (_deep, "manifest.json is not valid JSON: nested too deeply"),
    (_huge, "more than the 1048576 allowed"),
    (edit_manifest(_set(["schema"], "edgeopt.bundle/99")), 'schema is "edgeopt.bundle/99"'),
    (edit_manifest(_set(["budgets", "peak_rss_mb"], 712.0), seal=False), "does not match its content_sha256"),
    (edit_manifest(_drop("content_sha256"), seal=False), "content_sha256 is missing or not 64 hex digits (a bundle "
     "written by an older edgeopt? package it again: `tar -xOf BUNDLE manifest.json` shows, unverified"),
    # Resealed (digest recomputed): the validator names the field.
    (edit_manifest(_drop("runtime")), "manifest field runtime is missing"),
    (edit_manifest(_set(["runtime", "name"], "tensorrt-x")), "manifest field runtime.name is not a runtime"),
    (edit_manifest(_set(["runtime", "threads"], "4")), "manifest field runtime.threads must be a whole number"),
    (edit_manifest(_set(["runtime", "options", "provider"], ["CPUExecutionProvider"])),
     "manifest field runtime.options.provider is not an option of runtime onnxruntime"),
    (edit_manifest(_set(["inputs"], [{"name": "image"}])), "manifest field inputs[0].shape is missing"),
    (edit_manifest(_set(["inputs", 0, "shape"], [1, -1, 8, 8])), "inputs[0].shape must hold positive whole numbers"),
    (edit_manifest(_set(["inputs", 0, "dtype"], "object")), "inputs[0].dtype must be one of"),
    (edit_manifest(_set(["data", "eval", "path"], "../../../x.npz")),
     "manifest field data.eval.path is not among the bundle's listed, verified files"),
    (edit_manifest(_set(["budgets", "peak_rss_mb"], "512")), "manifest field budgets.peak_rss_mb must be a finite number"),
    (edit_manifest(_set(["budgetz"], {})), 'manifest field budgetz is not a field this agent knows'),
    (edit_manifest(_set(["source", "accuracy", "top1"], 7)), "source.accuracy.top1 must be a number from 0 to 1"),
    (edit_manifest(_set(["name"], "../../x")), "manifest field name must not be a path"),
]


@pytest.mark.parametrize("edit, message", CASES, ids=[c[1][:40] for c in CASES])
def test_bad_bundle_is_refused_by_host_and_agent(cli, bundles, tmp_path, edit, message, capsys):
    bad = _rewrite(bundles["fp32"], tmp_path / "bad.edgepkg", edit)
    r = cli("bench", bad, "--results-dir", tmp_path / "results", *FAST_BENCH_ARGS)
    assert r.exit_code == 2, r.stderr
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f"bundle {bad}: " in r.stderr
    assert not (tmp_path / "evil.sh").exists()
    # The agent on its own (as on a device) refuses the same bundle with the same exit code and line.
    from device_agent.cli import main
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["verify", str(bad), "--workdir", str(tmp_path / "work")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_truncated_non_tar_and_compressed_bundles(cli, bundles, tmp_path):
    cut = tmp_path / "cut.edgepkg"
    cut.write_bytes(bundles["fp32"].read_bytes()[:50000])
    notar = tmp_path / "notar.edgepkg"
    notar.write_text("just text")
    gz = tmp_path / "gz.edgepkg"
    gz.write_bytes(gzip.compress(bundles["fp32"].read_bytes()))
    for path, message in ((cut, "truncated or corrupt"), (notar, "not an edgeopt bundle"),
                          (tmp_path / "missing.edgepkg", "not found"), (gz, "is gzip-compressed")):
        r = cli("bench", path, "--results-dir", tmp_path / "results")
        assert r.exit_code == 2, r.stderr
        assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1


def _sparse_bomb(bundle, tmp_path) -> pathlib.Path:
    """A 10 KB bundle whose resealed manifest declares a 64 MiB model, packed as a GNU sparse (pax 1.0) member:
    tarfile gives its expanded size as its size, and the agent wrote every byte before the sha256 said no."""
    work = tmp_path / "sparse"
    work.mkdir()
    with tarfile.open(bundle) as tar:
        tar.extractall(work, filter="data")
    doc = json.loads((work / "manifest.json").read_text())
    entry = next(e for e in doc["files"] if e["path"] == "model/model.onnx")
    entry["bytes"] = 64 << 20
    (work / "manifest.json").write_bytes(reseal(doc))
    with open(work / "model" / "model.onnx", "r+b") as f:
        f.truncate(0)
        f.truncate(64 << 20)   # all holes
    bomb = tmp_path / "bomb.edgepkg"
    names = ["manifest.json", *(e["path"] for e in doc["files"])]
    subprocess.run(["tar", "--format=posix", "--sparse", "--sparse-version=1.0", "-cf", str(bomb), "-C", str(work),
                    *names], check=True)
    return bomb


def _pax_comment(bundle, tmp_path) -> pathlib.Path:
    """The bundle with a 4 MB pax comment on its second member: tarfile read it whole into memory before the
    manifest bounded the bundle (a 400 MB one cost the agent 1.2 GB)."""
    out = tmp_path / "pax.edgepkg"
    with tarfile.open(bundle) as tin, tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tout:
        for i, m in enumerate(tin.getmembers()):
            if i == 1:
                m.pax_headers = {"comment": "x" * (4 << 20)}
            tout.addfile(m, tin.extractfile(m))
    return out


def _solaris_pax(bundle, tmp_path) -> pathlib.Path:
    """_pax_comment's record typed X (Solaris), which tarfile reads as a pax record too: a walk of the headers
    that knew x, g, L and K passed it (a review of this session's change)."""
    out = _pax_comment(bundle, tmp_path)
    data, offset = bytearray(out.read_bytes()), 0
    while data[offset + 156:offset + 157] != b"x" or offset == 0:
        offset += 512 + (int(data[offset + 124:offset + 136].split(b"\0")[0] or b"0", 8) + 511) // 512 * 512
    data[offset + 156] = ord("X")
    data[offset + 148:offset + 156] = b" " * 8
    data[offset + 148:offset + 156] = b"%06o\0 " % sum(data[offset:offset + 512])
    out.write_bytes(bytes(data))
    return out


@pytest.mark.skipif(shutil.which("tar") is None, reason="GNU tar not installed")
@pytest.mark.parametrize("make, said", [(_sparse_bomb, "member 'model/model.onnx' is a sparse file: refused"),
                                        (_pax_comment, "a tar record of "), (_solaris_pax, "a tar record of ")])
def test_a_sparse_member_or_a_huge_pax_header_is_refused_before_it_costs_disk_or_memory(cli, bundles, tmp_path,
                                                                                       capsys, make, said):
    bad = make(bundles["fp32"], tmp_path)
    assert bad.stat().st_size < 8 << 20
    r = cli("bench", bad, "--results-dir", tmp_path / "results")
    assert r.exit_code == 2 and said in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    from device_agent.cli import main   # the agent on a device says the same, and writes nothing
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["verify", str(bad), "--workdir", str(tmp_path / "work")])
    assert exit_info.value.code == 2 and said in capsys.readouterr().err
    written = sum(f.stat().st_blocks * 512 for f in (tmp_path / "work").rglob("*") if f.is_file())
    assert written < 1 << 20


def _damaged_header(data, offset):
    return data[:offset + 148] + b"garbage!" + data[offset + 156:]   # the header's checksum field


@pytest.mark.parametrize("damage, said", [
    (_damaged_header, "truncated or corrupt: the tar header at byte {offset} is damaged (data/eval.npz not read)"),
    (lambda data, offset: data[:offset], "truncated: it ends at byte {offset}, before the end of its tar archive "
                                         "(data/eval.npz not read)"),
    (lambda data, offset: data[:offset + 300], "truncated: it ends at byte {end}, before the end of its tar archive "
                                               "(data/eval.npz not read)"),
])
def test_a_damaged_or_cut_header_reads_as_a_corrupt_bundle_not_a_missing_file(cli, bundles, tmp_path, capsys,
                                                                              damage, said):
    """tarfile takes a bad header after the first member for the end of the archive: the bundle read as
    intact but for 'file data/eval.npz is missing', as if it had been packaged without it."""
    with tarfile.open(bundles["fp32"]) as tar:
        offset = tar.getmember("data/eval.npz").offset
    bad = tmp_path / "bad.edgepkg"
    bad.write_bytes(damage(bundles["fp32"].read_bytes(), offset))
    message = f"bundle {bad}: " + said.format(offset=offset, end=offset + 300)
    r = cli("bench", bad, "--results-dir", tmp_path / "results")
    assert r.exit_code == 2 and r.stderr.strip() == f"edgeopt: error: {message}", r.stderr
    from device_agent.cli import main   # the agent on a device says the same
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["verify", str(bad), "--workdir", str(tmp_path / "work")])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_intact_bundle_verifies(bundles, tmp_path, capsys):
    from device_agent.cli import main
    with pytest.raises(SystemExit) as exit_info:
        main(["verify", str(bundles["int8"]), "--workdir", str(tmp_path)])
    assert exit_info.value.code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["verified"] is True and doc["files"] == 2 and doc["signature"]["verified"] is False
    assert list(tmp_path.iterdir()) == []  # the unpacked copy is cleaned up


def test_manifest_is_canonical_and_carries_its_own_digest(bundles):
    blob = tarfile.open(bundles["int8"]).extractfile("manifest.json").read()
    doc = json.loads(blob)
    assert agent_manifest.canonical_bytes(doc) == blob
    assert doc["content_sha256"] == agent_manifest.content_digest(doc)
    assert list(doc) == sorted(doc)


def test_host_sends_the_manifest_sha256_and_the_agent_refuses_a_changed_one(bundles, tmp_path, monkeypatch, cli):
    """A bundle that changes between the host's read and the device (resealed, so only the host's sha256
    can tell) is refused by the agent, exit 2, one line."""
    swapped = _rewrite(bundles["fp32"], tmp_path / "swapped.edgepkg", edit_manifest(_set(["budgets", "peak_rss_mb"], 712.0)))
    from edgeopt.transport.local import LocalTransport
    monkeypatch.setattr(LocalTransport, "put", lambda self, local, kind: str(swapped) if kind == "bundle" else str(local))
    r = cli("bench", bundles["fp32"], "--results-dir", tmp_path / "results", "-q", *FAST_BENCH_ARGS)
    assert r.exit_code == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "the host sent" in lines[0] and "changed in transit, refused" in lines[0]
    saved = json.loads((tmp_path / "results" / f"{bundles['fp32'].stem}@local.json").read_text())
    assert saved["status"] == "failed" and saved["error"]["kind"] == "bundle"
    assert saved["bundle"]["manifest_sha256"]  # the identity the host shipped


def test_runtime_option_override_is_checked_like_the_manifest(cli, bundles, tmp_path):
    r = cli("bench", bundles["fp32"], "--results-dir", tmp_path, "-q", "--runtime-option", "xnnpack=false",
            *FAST_BENCH_ARGS)
    assert r.exit_code == 2, r.stderr
    assert "--runtime-option \"xnnpack\"=false: is not an option of runtime onnxruntime" in r.stderr


@pytest.mark.parametrize("args, said", [
    (["--runtime-option", "xnnpack=false"], "--runtime-option \"xnnpack\"=false: is not an option of runtime onnxruntime"),
    (["--timeout", "-5"], "--timeout -5: expected a number of seconds of at least 10"),
    (["--timeout", "0"], "--timeout 0: expected a number of seconds of at least 10"),
    (["--timeout", "0.5"], "--timeout 0.5: expected a number of seconds of at least 10"),   # as optimize's
    (["--timeout", "nan"], "--timeout nan: expected a number of seconds of at least 10"),
    (["--min-iterations", "100", "--max-iterations", "10"], "--min-iterations 100 is above --max-iterations 10"),
    (["--min-iterations", "200", "--max-iterations", "50"],
     "--min-iterations 200 (its default) is above --max-iterations 50"),
])
def test_bad_bench_options_are_refused_before_anything_runs(cli, bundles, tmp_path, args, said):
    """These were a failed result saved and exit 3 (the device "did not finish within -5 s"), or a bench that
    stopped short of its minimum; the agent's refusal of a runtime option came after the result was saved."""
    r = cli("bench", bundles["fp32"], "--results-dir", tmp_path / "results", *FAST_BENCH_ARGS, *args)   # last wins
    assert r.exit_code == 2 and said in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "results").exists()


def test_fleet_bench_takes_the_same_shortest_timeout(cli, bundles, tmp_path):
    inventory = tmp_path / "fleet.yaml"
    inventory.write_text("devices:\n  here: {host: localhost, connection: local}\n")
    r = cli("fleet", "bench", bundles["fp32"], "-i", inventory, "--results-dir", tmp_path / "results",
            "--timeout", "0.5")
    assert r.exit_code == 2 and r.stderr.strip() == "edgeopt: error: --timeout 0.5: expected a number of seconds of " \
        "at least 10 (one measurement starts the agent, loads the bundle, warms up and times it)", r.stderr
    assert not (tmp_path / "results").exists()

@pytest.mark.parametrize("args, said", [
    (["--max-seconds", "0"], "Invalid value for '--max-seconds': 0.0 is not in the range x>0"),   # not --min-seconds
    (["--cooldown-target", "-500"], "Invalid value for '--cooldown-target': -500.0 is not in the range 0<x<=150"),
])
def test_impossible_loop_and_cooling_values_are_refused(cli, bundles, tmp_path, args, said):
    r = cli("bench", bundles["fp32"], "--results-dir", tmp_path / "results", *args)
    assert r.exit_code == 2 and said in r.stderr and "--min-seconds" not in r.stderr, r.stderr


@pytest.mark.parametrize("setting, said", [
    ({"loop": {"max_seconds": 0}}, "argument --max-seconds: must be a finite positive number"),
    ({"sensing": {"cooldown_target": -500}}, "argument --cooldown-target: must be degrees Celsius above 0 and at "
                                             "most 150"),
])
def test_the_agent_refuses_them_from_the_library_too(bundles, tmp_path, setting, said):
    from edgeopt import api
    from edgeopt.errors import BadInput
    with pytest.raises(BadInput, match=said):
        api.bench(bundles["fp32"], "local", tmp_path / "results", **setting)


def test_the_agent_refuses_a_minimum_above_its_maximum(capsys):
    from device_agent.cli import main

    with pytest.raises(SystemExit) as e:
        main(["bench", "b.edgepkg", "--min-seconds", "5", "--max-seconds", "1"])
    assert e.value.code == 2 and "--min-seconds 5 is above --max-seconds 1" in capsys.readouterr().err


# Signed bundles: real OpenSSH keys and ssh-keygen.
needs_keygen = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen (OpenSSH) is not installed")


def _key(path, comment):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True)
    return path


@pytest.fixture(scope="module")
def signing(tmp_path_factory):
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen (OpenSSH) is not installed")
    from edgeopt import api
    d = tmp_path_factory.mktemp("signing")
    mine, other = _key(d / "mine", "ci@lab"), _key(d / "other", "mallory@elsewhere")
    allowed = d / "allowed_signers"
    allowed.write_text('ci@lab namespaces="edgeopt-bundle" ' + (d / "mine.pub").read_text())
    signed = api.package(str(MODEL), "generic", d / "signed.edgepkg", "fp32", "none", calib=CALIB, eval_data=EVAL,
                         sign_key=mine)["path"]
    by_other = api.package(str(MODEL), "generic", d / "other.edgepkg", "fp32", "none", eval_data=EVAL,
                           sign_key=other)["path"]
    return {"dir": d, "key": mine, "allowed": allowed, "signed": signed, "other": by_other}


def _verify(bundle, allowed, capsys, tmp_path):
    from device_agent.cli import main
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["verify", str(bundle), "--workdir", str(tmp_path), "--allowed-signers", str(allowed)])
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err.strip().splitlines()


@needs_keygen
def test_signed_bundle_verifies_and_names_its_signer(signing, capsys, tmp_path):
    with tarfile.open(signing["signed"]) as tar:
        assert tar.getnames()[:2] == ["manifest.json", "manifest.json.sig"]
    code, out, err = _verify(signing["signed"], signing["allowed"], capsys, tmp_path)
    assert code == 0, err
    assert json.loads(out)["signature"] == {"verified": True, "principal": "ci@lab",
                                            "allowed_signers": str(signing["allowed"])}


def _resign_wrong_namespace(src, dst, key):
    """The same manifest signed by the right key for another namespace (a git commit signature, say)."""
    blob = tarfile.open(src).extractfile("manifest.json").read()
    path = dst.parent / "manifest.json"
    path.write_bytes(blob)
    subprocess.run(["ssh-keygen", "-q", "-Y", "sign", "-f", str(key), "-n", "git", str(path)], check=True)
    sig = path.with_name("manifest.json.sig").read_bytes()
    return _rewrite(src, dst, lambda n, d: _keep(n, sig if n == "manifest.json.sig" else d))


@needs_keygen
def test_unsigned_foreign_stale_and_misused_signatures_are_refused(signing, bundles, capsys, tmp_path):
    stale = _rewrite(signing["signed"], tmp_path / "stale.edgepkg", edit_manifest(_set(["budgets", "peak_rss_mb"], 712.0)))
    cases = [(bundles["fp32"], "is not signed (no manifest.json.sig)"),
             (signing["other"], f"its signature is not made by a key in {signing['allowed']}: refused"),
             (stale, f"its signature does not verify against {signing['allowed']} (the manifest or its signature "
                     "changed after signing): refused"),
             (_resign_wrong_namespace(signing["signed"], tmp_path / "ns.edgepkg", signing["key"]),
              "(signed for namespace git, not edgeopt-bundle)")]
    linked = _rewrite(signing["signed"], tmp_path / "linked.edgepkg", lambda n, d: [(n, b"", tarfile.SYMTYPE, "x")]
                      if n == "manifest.json.sig" else _keep(n, d))   # it read "not signed (no manifest.json.sig)"
    cases.append((linked, "member 'manifest.json.sig' is not a regular file: refused"))
    for bundle, message in cases:
        code, _, err = _verify(bundle, signing["allowed"], capsys, tmp_path)
        assert code == 2 and len(err) == 1 and message in err[0], (bundle, err)
    # Its key listed, but the line rules it out, or the file is no allowed-signers file: ssh-keygen's own words say
    # which ("its key is listed, but ... rule it out" was said of all of them, a plain .pub too, spliced with
    # "valid now"; a namespaces= line read as a changed manifest; a directory as a missing file; a review)
    public = (signing["dir"] / "mine.pub").read_text()
    lines = {"expired": ('ci@lab valid-before="20200101" ' + public, "key has expired"),
             "later": ('ci@lab valid-after="20990101" ' + public, "not yet valid"),
             "namespace": ('ci@lab namespaces="git" ' + public,
                           'key is not permitted for use in signature namespace "edgeopt-bundle"'),
             "pub": (public, ":1: invalid key")}
    for name, (line, said) in lines.items():
        (tmp_path / name).write_text(line)
        code, _, err = _verify(signing["signed"], tmp_path / name, capsys, tmp_path)
        assert code == 2 and len(err) == 1 and said in err[0] and "valid now" not in err[0], (name, err)
    code, _, err = _verify(signing["signed"], tmp_path, capsys, tmp_path)
    assert code == 2 and f"{tmp_path} on this device is a directory, not an allowed-signers file" in err[0], err
    # Without an allowed-signers file a signed bundle still verifies by its digests alone.
    from device_agent.cli import main
    with pytest.raises(SystemExit) as exit_info:
        main(["verify", str(stale), "--workdir", str(tmp_path)])
    assert exit_info.value.code == 0


@needs_keygen
def test_bench_passes_allowed_signers_from_option_and_inventory(signing, bundles, cli, tmp_path):
    r = cli("bench", bundles["fp32"], "--allowed-signers", signing["allowed"], "--results-dir", tmp_path, "-q",
            *FAST_BENCH_ARGS)
    assert r.exit_code == 2 and "is not signed" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    inventory = tmp_path / "inv.yaml"
    inventory.write_text(json.dumps({"devices": {"bench-here": {
        "connection": "local", "vars": {"edgeopt_allowed_signers": str(signing["allowed"])}}}}))
    r = cli("bench", bundles["fp32"], "-d", "bench-here", "-i", inventory, "--results-dir", tmp_path, "-q",
            *FAST_BENCH_ARGS)
    assert r.exit_code == 2 and "is not signed" in r.stderr
    r = cli("bench", signing["signed"], "-d", "bench-here", "-i", inventory, "--results-dir", tmp_path, "--json",
            *FAST_BENCH_ARGS)
    assert r.exit_code == 0, r.stderr
    assert r.json()["bundle"]["signature"]["principal"] == "ci@lab"


def test_sign_key_problems_are_one_line(cli, tmp_path):
    r = cli("package", MODEL, "--profile", "generic", "-o", tmp_path / "x.edgepkg", "--sign-key", tmp_path / "nokey")
    assert r.exit_code == 2 and "--sign-key" in r.stderr and "no such key file" in r.stderr
    assert "parity" not in r.stderr   # said before the work, not after the conversion (a walkthrough)
    assert not (tmp_path / "x.edgepkg").exists()


def test_inspect_shows_a_bundle_and_the_recipe_that_rebuilds_it(cli, bundles, tmp_path):
    """There was no way to see what a bundle carries (threads, budgets, recipe) short of untarring it."""
    r = cli("inspect", bundles["int8"])
    assert r.exit_code == 0, r.stderr
    rows = dict(line.split("\t", 1) for line in cli("inspect", bundles["int8"], "-q").stdout.splitlines()
                if "\t" in line)
    assert rows["profile"] == "generic (onnxruntime)" and rows["signed"] == "no"
    # generic's threads = 0: the agent's choice, not "0 threads"
    assert rows["runtime"] == "onnxruntime, one thread per physical core of the device by default (bench --threads " \
        "overrides)"
    assert rows["inputs"] == "image float32[1, 1, 8, 8]" and "latency_p90_ms ≤ " in rows["budgets"]
    assert rows["data"].startswith("eval 360 samples, labelled; calibrated with ") and "(sha256 " in rows["data"]
    recipe = r.stdout[r.stdout.index("[package]"):]
    assert 'quantize = "int8"' in recipe
    (tmp_path / "r.toml").write_text(recipe)   # what it printed is a recipe file as it is
    again = cli("package", MODEL, "--recipe", tmp_path / "r.toml", "--calib", CALIB, "-o", tmp_path / "b.edgepkg",
                "--json")
    assert again.exit_code == 0 and again.json()["compression"]["quantize"] == "int8", again.stderr
    doc = cli("inspect", bundles["int8"], "--json").json()
    assert doc["signed"] is False and len(doc["manifest_sha256"]) == 64 and doc["files"][0]["role"] == "model"


def test_inspect_refuses_a_damaged_bundle_in_one_line(cli, bundles, tmp_path):
    cut = tmp_path / "cut.edgepkg"
    cut.write_bytes(bundles["fp32"].read_bytes()[:3000])
    r = cli("inspect", cut)
    assert r.exit_code == 2 and r.stderr.strip() == f"edgeopt: error: bundle {cut}: truncated or corrupt: unexpected " \
        "end of data", r.stderr


def test_a_directory_given_as_the_bundle_is_called_one(cli, tmp_path, capsys):
    r = cli("bench", tmp_path, "--results-dir", tmp_path / "results")
    assert r.exit_code == 2 and r.stderr.strip() == f"edgeopt: error: bundle {tmp_path}: is a directory, not a bundle " \
        "file", r.stderr   # it read "not found"
    assert not (tmp_path / "results").exists()
    from device_agent.cli import main   # the agent on a device says the same
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["verify", str(tmp_path), "--workdir", str(tmp_path / "work")])
    assert exit_info.value.code == 2 and f"bundle {tmp_path}: is a directory, not a bundle file" in capsys.readouterr().err


@needs_keygen
def test_inspect_and_package_name_the_signing_key_and_inspect_checks_it(cli, signing, bundles, tmp_path):
    """inspect said "signed: yes" of a forged signature as of the real one, named no key and could not check it;
    package said nothing of signing (a review). The key's fingerprint is shown (ssh-keygen -l's), and
    inspect --allowed-signers judges it on this host as the agent does on the device."""
    fingerprint = subprocess.run(["ssh-keygen", "-l", "-f", str(signing["dir"] / "mine.pub")], capture_output=True,
                                 text=True, check=True).stdout.split()[1]
    lines = [line.split("\t", 1) for line in cli("inspect", signing["signed"], "-q").stdout.splitlines()
             if "\t" in line]
    assert [key for key, _ in lines].count("signed") == 1   # it came twice, a duplicate key for scripts
    rows = dict(lines)
    assert rows["signed"].startswith(f"yes, by ssh-ed25519 key {fingerprint}; not verified here"), rows["signed"]
    checked = cli("inspect", signing["signed"], "--allowed-signers", signing["allowed"], "--json")
    assert checked.exit_code == 0 and checked.json()["signature"] == {
        "key": fingerprint, "key_type": "ssh-ed25519", "namespace": "edgeopt-bundle", "matches_manifest": True,
        "verified": True, "principal": "ci@lab", "allowed_signers": str(signing["allowed"])}
    # a manifest changed after signing (the model swapped, the manifest resealed, the signature kept) was shown as
    # signed by its genuine signer (a security review): the signature is checked against the manifest it came with
    stale = _rewrite(signing["signed"], tmp_path / "stale.edgepkg", edit_manifest(_set(["budgets", "peak_rss_mb"], 7.0)))
    shown = cli("inspect", stale, "--json")
    assert shown.exit_code == 0 and shown.json()["signature"]["matches_manifest"] is False
    rows = dict(line.split("\t", 1) for line in cli("inspect", stale, "-q").stdout.splitlines() if "\t" in line)
    assert rows["signed"].startswith("yes, but the signature is not one of this manifest") and fingerprint not in \
        rows["signed"], rows["signed"]
    unsigned = cli("inspect", bundles["fp32"], "--allowed-signers", signing["allowed"])   # said as inspect's
    assert unsigned.exit_code == 2 and unsigned.stderr.strip().endswith(
        f"is not signed (no manifest.json.sig), so no key in {signing['allowed']} signed it"), unsigned.stderr
    missing = cli("inspect", signing["signed"], "--allowed-signers", tmp_path / "nope")
    assert missing.exit_code == 2 and missing.stderr.strip().endswith(
        f"--allowed-signers {tmp_path / 'nope'}: no such file, not an OpenSSH allowed-signers file"), missing.stderr
    from device_agent.bundle import shown_text   # a signer's namespace or key type, shown as data on one line
    assert shown_text("git") == "git" and shown_text("git\nedgeopt: ok\x1b[31m") == '"git\\nedgeopt: ok\\u001b[31m"'
    assert len(shown_text("x" * 500)) == 66
    forged = cli("inspect", signing["other"], "--allowed-signers", signing["allowed"])
    assert forged.exit_code == 2 and forged.stderr.strip() == (
        f"edgeopt: error: bundle {signing['other']}: its signature is not made by a key in {signing['allowed']}: "
        "refused"), forged.stderr
    made = cli("package", MODEL, "-o", tmp_path / "s.edgepkg", "--sign-key", signing["key"], "--json")
    assert made.exit_code == 0 and made.json()["signed"] and made.json()["signature"]["key"] == fingerprint
    locked = _key_with_passphrase(tmp_path / "locked")
    r = cli("package", MODEL, "-o", tmp_path / "l.edgepkg", "--sign-key", locked)
    assert r.exit_code == 2 and r.stderr.strip().splitlines()[-1] == (
        f"edgeopt: error: --sign-key {locked} needs its passphrase, which edgeopt does not ask for: add the key to "
        f"ssh-agent (ssh-add {locked}) and package again"), r.stderr


def _key_with_passphrase(path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "a passphrase", "-f", str(path)], check=True)
    return path


@needs_keygen
def test_the_bench_table_says_who_signed_the_bundle(cli, signing, bundles, tmp_path):
    """The signature's status was in the JSON only (a user walkthrough): the bundle row says it where the bundle
    is signed, and nothing of an unsigned one."""
    from edgeopt.report.tables import _signature_text
    args = ("--results-dir", tmp_path / "r", "--min-iterations", "5", "--min-seconds", "0", "--warmup-iterations", "1",
            "--warmup-seconds", "0")
    checked = cli("bench", signing["signed"], "--allowed-signers", signing["allowed"], *args)
    assert checked.exit_code == 0 and "(signature verified: ci@lab)" in checked.stdout, checked.stdout
    unchecked = cli("bench", signing["signed"], *args, "--json")
    assert unchecked.json()["bundle"]["signature"] == {
        "verified": False, "signed": True, "reason": "signed, but not checked: no allowed-signers file given to the agent"}
    assert _signature_text(unchecked.json()["bundle"]["signature"]) == \
        " (signed, but not checked: no allowed-signers file given to the agent)"
    plain = cli("bench", bundles["fp32"], *args, "--json").json()["bundle"]["signature"]
    assert plain["signed"] is False and _signature_text(plain) == ""


def _with_eval_data(src, dst, npz: bytes):
    """The bundle with its eval data replaced by `npz`, the manifest's digest of it and its own resealed: every
    byte in order, as a deliberate tamperer (or a buggy writer) makes it."""
    def edit(name, data):
        if name == "data/eval.npz":
            return [(name, npz, tarfile.REGTYPE, "")]
        if name == "manifest.json":
            doc = json.loads(data)
            entry = next(f for f in doc["files"] if f["path"] == "data/eval.npz")
            entry.update(sha256=hashlib.sha256(npz).hexdigest(), bytes=len(npz))
            return [(name, reseal(doc), tarfile.REGTYPE, "")]
        return _keep(name, data)
    return _rewrite(src, dst, edit)


def test_eval_data_that_would_unpack_past_its_size_is_refused_before_it_loads(cli, bundles, tmp_path):
    """A 1 MB bundle whose compressed eval data unpacked to 6 GB, its digests in order, ran the agent to 5.9 GB of
    memory (a security review). edgeopt stores eval data uncompressed, so its size is the file's; a compressed
    array, or a header that declares more than its member holds, is refused before anything is loaded."""
    import zipfile
    with tarfile.open(bundles["fp32"]) as tar:
        assert "data/eval.npz" in tar.getnames()
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as z:   # 200 MB of zeros in a few hundred KB
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                      "shape": (781250, 1, 8, 8)})
        with z.open("image.npy", "w", force_zip64=True) as member:
            member.write(header.getvalue())
            for _ in range(50):
                member.write(bytes(4 << 20))
    header = io.BytesIO()   # 9 samples declared, 4 held
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (9, 1, 8, 8)})
    stored = io.BytesIO()
    with zipfile.ZipFile(stored, "w", zipfile.ZIP_STORED) as z:
        z.writestr("image.npy", header.getvalue() + bytes(4 * 64 * 4))
    lying = stored.getvalue()
    cases = {"compressed": (packed.getvalue(), "array image.npy is compressed"),
             "lying": (lying, "array image.npy declares 2304 bytes where it holds 1024")}
    for name, (npz, said) in cases.items():
        bundle = _with_eval_data(bundles["fp32"], tmp_path / f"{name}.edgepkg", npz)
        r = cli("bench", bundle, "--results-dir", tmp_path / "results", *FAST_BENCH_ARGS)
        assert r.exit_code == 2 and f"the bundle's eval data data/eval.npz: {said}" in r.stderr, (name, r.stderr)
