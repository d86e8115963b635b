"""`pip install .` (a wheel, not editable) must carry everything the tool needs: the profiles that live at
the repository's top level, the shipped sample, the agent. Built and installed into a fresh venv here."""
import json
import pathlib
import subprocess
import sys
import sysconfig

import shutil

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_runs_the_demo(tmp_path):
    # Built from a copy: setuptools reuses an in-tree build/ directory, which could hide a missing file.
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".git", ".venv", ".cache", "build", "results",
                                                               "demo-out", "*.egg-info", "__pycache__"))
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(wheels), str(source)], check=True, capture_output=True, cwd=tmp_path)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    # The dependencies come from the test venv (a plain path, so its editable edgeopt hook is not loaded);
    # edgeopt itself only from the wheel.
    pathlib.Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", site,
                    *map(str, wheels.glob("edgeopt-*.whl"))], check=True, capture_output=True)
    where = subprocess.run([str(python), "-c", "import edgeopt; print(edgeopt.__file__)"], cwd=tmp_path,
                           check=True, capture_output=True, text=True).stdout
    assert where.startswith(site), where
    listed = subprocess.run([str(python), "-m", "edgeopt", "profiles", "list", "--json"], cwd=tmp_path,
                            capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    assert {"generic", "intel-cpu", "raspberry-pi-5"} <= {p["name"] for p in json.loads(listed.stdout)}
    demo = subprocess.run([str(python), "-m", "edgeopt", "demo", "--output-dir", "out", "--json"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert demo.returncode == 0, demo.stderr[-2000:]
    assert len(json.loads(demo.stdout)["rows"]) == 3
    samples = pathlib.Path(site, "edgeopt", "samples")
    shipped = {p.name for p in samples.iterdir()}
    assert {"digits_resnet.py", "digits_resnet.pt", "digits32_train.npz", "digits32_eval.npz"} <= shipped, shipped
