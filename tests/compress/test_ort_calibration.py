"""ONNX Runtime's static INT8 calibration holds the activations of a range of model calls at a time, not of every
sample: a calibration file of 2**18 8x8 images reached 4.9 GB (a fuzzing audit). MinMax ranges merge exactly, so
the model is the same."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from conftest import CALIB, MODEL, bundle_member
from edgeopt.compress import ort_quantize
from edgeopt.progress import SILENT
from edgeopt.source import TensorSpec


def test_the_reader_gives_every_call_once_in_ranges_of_a_stride_that_divides_them():
    samples = {"image": np.zeros((200, 1, 8, 8), np.float32)}
    reader = ort_quantize._Reader(samples, [TensorSpec("image", [1, 1, 8, 8], "float32")], SILENT)
    assert len(reader) == 200 and reader.stride() == 25
    seen = 0
    for start in range(0, len(reader), reader.stride()):
        reader.set_range(start, start + reader.stride())
        while reader.get_next() is not None:
            seen += 1
    assert seen == 200


@pytest.mark.slow
def test_calibrating_on_many_samples_holds_little_memory_and_gives_the_same_model(tmp_path, monkeypatch):
    many = tmp_path / "many.npz"
    rng = np.random.default_rng(0)
    np.savez(many, image=rng.random((2 ** 15, 1, 8, 8), dtype=np.float32))
    out = tmp_path / "many.edgepkg"
    # measured by a process of its own whose one child is the packaging: this one's children peak at anything
    measure = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
               "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); print(p.stderr)")
    p = subprocess.run([sys.executable, "-c", measure, sys.executable, "-m", "edgeopt", "package", str(MODEL),
                        "--quantize", "int8", "--calib", str(many), "-o", str(out), "-q"],
                       capture_output=True, text=True, timeout=600)
    code, peak_kb = p.stdout.split("\n", 1)[0].split()
    assert code == "0", p.stdout
    assert int(peak_kb) / 1024 < 400, f"{int(peak_kb) / 1024:.0f} MB to calibrate on 2**15 8x8 images (it was 683)"
    # the same model as calibrating every sample at once (one range)
    from edgeopt import api
    monkeypatch.setattr(ort_quantize, "CALIBRATION_STRIDE", 1)
    one = api.package(str(MODEL), "generic", tmp_path / "one.edgepkg", quantize="int8", calib=CALIB)
    monkeypatch.setattr(ort_quantize, "CALIBRATION_STRIDE", 10 ** 6)
    whole = api.package(str(MODEL), "generic", tmp_path / "whole.edgepkg", quantize="int8", calib=CALIB)
    assert bundle_member(one["path"], "model/model.onnx") == bundle_member(whole["path"], "model/model.onnx")


def test_fewer_calibration_samples_than_a_fixed_batch_is_one_line(cli, tmp_path):
    """A batch-4 model calibrated on 2 samples was ORT's "No data is collected." traceback, exit 1 (a review)."""
    two = tmp_path / "two.npz"
    np.savez(two, image=np.zeros((2, 1, 8, 8), np.float32))
    r = cli("package", MODEL, "--input-shape", "image=4,1,8,8", "--quantize", "int8", "--calib", two, "-o",
            tmp_path / "b4.edgepkg")
    assert r.exit_code == 2 and "--calib: the calibration data holds 2 sample(s), fewer than one call of the model " \
        "takes (4, its fixed batch)" in r.stderr, r.stderr


def test_onnx_runtimes_own_temporary_folders_go_in_the_runs_scratch_folder(tmp_path, monkeypatch):
    """ONNX Runtime's quantizer makes `ort.quant.*` folders (a copy of the model) in the system's temporary folder:
    a package killed meanwhile left them for good (a walkthrough). They go in the package's scratch folder, which
    a later run removes once no process holds it."""
    import tempfile

    from onnxruntime.quantization import quant_utils

    from edgeopt import api
    made = []
    real = tempfile.TemporaryDirectory

    def recorded(*args, **kwargs):
        folder = real(*args, **kwargs)
        made.append(folder.name)
        return folder
    monkeypatch.setattr(quant_utils.tempfile, "TemporaryDirectory", recorded)
    api.package(str(MODEL), "generic", tmp_path / "int8.edgepkg", quantize="int8", calib=CALIB)
    ours = [m for m in made if "/ort.quant." in m]
    assert ours, made   # ONNX Runtime made one: otherwise this test says nothing
    assert all("/edgeopt-package-" in m for m in ours), ours
    assert tempfile.tempdir is None or "edgeopt-package-" not in tempfile.tempdir   # put back after
