"""Generated malformed calibration/eval files through the real `edgeopt package` CLI (in-process): every one
ends in exit 2 and one line naming the file, never a traceback and never a bundle.

Each example starts from a valid sample set for the state + scalar model (tests/sample_models.py) and breaks
it one way, so every generated file is malformed by construction."""
import io
import os
import pathlib
import tempfile
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from sample_models import INPUTS, stacked_samples, write_model

NAMES = list(INPUTS)
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def state_model(tmp_path_factory):
    return write_model(tmp_path_factory.mktemp("fuzz-model") / "state.onnx")


def _bad_shape(draw, name):
    """A shape that fits neither form for the input (rows of `state` do not fit either: its first axis is
    not the batch)."""
    shape, _ = INPUTS[name]
    n = 4
    accepted = {(n, *shape)} | ({(n, *shape[1:])} if name == "image" else set())
    dims = st.lists(st.integers(0, 20), min_size=0, max_size=6).map(tuple)
    return draw(dims.filter(lambda s: s not in accepted and not (len(s) and s[0] == 0)))


@st.composite
def broken(draw):
    """(arrays or raw bytes, the array name the message must carry or None)."""
    arrays = stacked_samples(4, seed=draw(st.integers(0, 3)))
    name = draw(st.sampled_from(NAMES))
    kind = draw(st.sampled_from(["nonfinite", "shape", "dtype", "count", "labels", "missing", "extra", "empty",
                                 "float-to-int", "bytes", "truncated"]))
    if kind == "nonfinite":
        name = draw(st.sampled_from(["image", "state"]))
        flat = arrays[name].reshape(-1).copy()
        flat[draw(st.integers(0, flat.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        arrays[name] = flat.reshape(arrays[name].shape)
    elif kind == "shape":
        arrays[name] = np.zeros(_bad_shape(draw, name), INPUTS[name][1])
    elif kind == "dtype":
        bad = draw(st.sampled_from(["U5", "S3", "complex64", "complex128", "datetime64[s]", "V8",
                                    [("a", "f4"), ("b", "i4")]]))
        arrays[name] = np.zeros(arrays[name].shape, bad)
    elif kind == "count":
        n = draw(st.integers(1, 9).filter(lambda k: k != 4))
        arrays[name] = np.resize(arrays[name], (n, *arrays[name].shape[1:]))
        name = None   # the message lists every array's count
    elif kind == "labels":
        name = "labels"
        arrays["labels"] = draw(st.sampled_from([
            np.zeros((4, 1), np.int64), np.zeros(4, np.float32), np.array(["a"] * 4), np.zeros(3, np.int64),
            np.array(3), np.full(4, -2), np.zeros(4, bool), np.full(4, 2 ** 64 - 1, np.uint64)]))
    elif kind == "missing":
        del arrays[name]
    elif kind == "extra":
        name = draw(st.text(st.characters(codec="ascii", exclude_characters="/\\\x00"), min_size=1, max_size=12)
                    .filter(lambda s: s not in NAMES + ["labels"] and s.strip() == s and s not in (".", "..")))
        arrays[name] = np.zeros(4)
    elif kind == "empty":
        arrays = {k: v[:0] for k, v in arrays.items()}
        name = None
    elif kind == "float-to-int":
        name = "sr"
        arrays["sr"] = arrays["sr"].astype(draw(st.sampled_from(["float32", "float64"]))) + 0.5   # not whole
    elif kind == "bytes":
        return draw(st.binary(max_size=300)), None
    else:
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        data = buf.getvalue()
        return data[:draw(st.integers(0, len(data) - 1))], None
    return arrays, name


def _write(path, content):
    if isinstance(content, bytes):
        path.write_bytes(content)
        return
    with zipfile.ZipFile(path, "w") as z:   # np.savez would refuse some names; write the members directly
        for key, value in content.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asanyarray(value), allow_pickle=False)
            z.writestr(key + ".npy", buf.getvalue())


@pytest.mark.parametrize("flag", ["--calib", "--eval-data"])
@FUZZ
@given(case=broken())
def test_malformed_files_exit_2_with_one_line(cli, state_model, flag, case):
    content, name = case
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        path, out = pathlib.Path(tmp) / "samples.npz", pathlib.Path(tmp) / "x.edgepkg"
        _write(path, content)
        data_args = ["--quantize", "int8", "--calib", path] if flag == "--calib" else ["--eval-data", path]
        r = cli("package", state_model, "--profile", "generic", *data_args, "-o", out, "--quiet")
        assert r.exit_code == 2, (r.exit_code, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("edgeopt: error: ") and str(path) in lines[0], r.stderr
        assert name is None or repr(name) in lines[0] or f" {name}" in lines[0], lines[0]
        assert not os.path.exists(out)


@FUZZ
@given(case=broken())
def test_the_labels_lookup_of_optimize_never_raises(case):
    """optimize looks whether --eval-data holds labels before it reads the file (study._labelled): whatever the
    bytes, an answer; the read that follows refuses a broken file with its name (the test above)."""
    from edgeopt.search.study import _labelled, _sample_count

    content, _ = case
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        path = pathlib.Path(tmp) / "samples.npz"
        _write(path, content)
        labelled = _labelled(path)
        count = _sample_count(path)   # the calibration set's size, read the same way
        assert count is None or (isinstance(count, int) and count >= 0)
        if isinstance(content, dict):
            assert labelled == ("labels" in content)
        else:
            assert labelled in (True, False)
