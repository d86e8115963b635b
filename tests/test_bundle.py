"""Bundles are verified before anything loads: tampering, unsafe tar members, missing files."""
import io
import json
import tarfile

import pytest

from conftest import FAST_BENCH_ARGS


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


def _wrong_schema(name, data):
    if name == "manifest.json":
        doc = json.loads(data)
        doc["schema"] = "edgeopt.bundle/99"
        data = json.dumps(doc).encode()
    return _keep(name, data)


CASES = [
    (_flip_byte, "bundle file model/model.onnx does not match its sha256"),
    (_add("../evil.sh"), "escapes the bundle directory"),
    (_add("/etc/evil"), "has an absolute path"),
    (_add("model/link", tarfile.SYMTYPE, "/etc/passwd"), "is a link"),
    (_add("model/hard", tarfile.LNKTYPE, "manifest.json"), "is a link"),
    (_add("model/fifo", tarfile.FIFOTYPE), "is not a regular file"),
    (_add("model/extra.bin"), "holds model/extra.bin, which its manifest does not list"),
    (_drop_eval, "bundle file data/eval.npz is missing"),
    (_bad_manifest, "bundle manifest is not valid JSON"),
    (_wrong_schema, "bundle schema is 'edgeopt.bundle/99'"),
]


@pytest.mark.parametrize("edit, message", CASES, ids=[c[1][:30] for c in CASES])
def test_bad_bundle_is_refused_by_host_and_agent(cli, bundles, tmp_path, edit, message):
    bad = _rewrite(bundles["fp32"], tmp_path / "bad.edgepkg", edit)
    r = cli("bench", bad, "--results-dir", tmp_path / "results", *FAST_BENCH_ARGS)
    assert r.exit_code == 2, r.stderr
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "evil.sh").exists()
    # The agent on its own (as on a device) refuses the same bundle with the same exit code.
    from device_agent.cli import main
    with pytest.raises(SystemExit) as exit_info:
        main(["verify", str(bad), "--workdir", str(tmp_path)])
    assert exit_info.value.code == 2


def test_truncated_and_non_tar_bundles(cli, bundles, tmp_path):
    cut = tmp_path / "cut.edgepkg"
    cut.write_bytes(bundles["fp32"].read_bytes()[:50000])
    notar = tmp_path / "notar.edgepkg"
    notar.write_text("just text")
    for path, message in ((cut, "truncated or corrupt"), (notar, "not an edgeopt bundle"),
                          (tmp_path / "missing.edgepkg", "bundle not found")):
        r = cli("bench", path, "--results-dir", tmp_path / "results")
        assert r.exit_code == 2, r.stderr
        assert message in r.stderr


def test_intact_bundle_verifies(bundles, tmp_path, capsys):
    from device_agent.cli import main
    with pytest.raises(SystemExit) as exit_info:
        main(["verify", str(bundles["int8"]), "--workdir", str(tmp_path)])
    assert exit_info.value.code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["verified"] is True and doc["files"] == 2
    assert list(tmp_path.iterdir()) == []  # the unpacked copy is cleaned up
