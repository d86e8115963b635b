"""RAPL through powercap: package + DRAM as the total, subzones named, wrap-around, root-only counters."""
import shutil
import subprocess
import sys

import pytest

from device_agent.power.rapl import RaplReader
from powertrees import config, is_root, rapl_zone, tree, write

ROOT_DIR = __import__("pathlib").Path(__file__).resolve().parents[2]


def test_total_is_package_plus_dram_and_subzones_carry_their_package(tmp_path):
    root = tree("rapl-x86", tmp_path)
    reader, reason = RaplReader.probe(config(root))
    assert reason is None
    d = reader.describe()
    assert d["kind"] == "energy" and d["total"] == "package-0 + package-0/dram"
    assert d["rails"] == ["package-0", "package-0/core", "package-0/uncore", "package-0/dram", "psys"]
    write(rapl_zone(root) / "energy_uj", 123456789 + 2000000)          # +2 J package
    write(rapl_zone(root, "intel-rapl:0:2") / "energy_uj", 23456789 + 500000)  # +0.5 J dram
    write(rapl_zone(root, "intel-rapl:1") / "energy_uj", 345678901 + 9000000)  # psys: reported, not added
    s = reader.read()
    assert s.value == pytest.approx(2.5)
    assert s.rails["psys"] == pytest.approx(9.0) and s.rails["package-0/core"] == 0.0


def test_the_mmio_window_onto_the_package_is_not_counted_twice(tmp_path):
    """Recent Intel client CPUs (NUCs, laptops) also expose intel-rapl-mmio:0, named package-0: the package's
    energy read 2x (20 J for 10 J) and the rails showed one package-0. The MSR zones alone count."""
    root = tree("rapl-x86", tmp_path)
    mmio = rapl_zone(root, "intel-rapl-mmio:0")
    mmio.mkdir()
    for name, value in (("name", "package-0"), ("energy_uj", "5000000"), ("max_energy_range_uj", "262143328850"),
                        ("enabled", "1")):
        write(mmio / name, value)
    reader, reason = RaplReader.probe(config(root))
    assert reason is None and reader.describe()["total"] == "package-0 + package-0/dram"
    write(rapl_zone(root) / "energy_uj", 123456789 + 10000000)   # +10 J on the package, through both windows
    write(mmio / "energy_uj", 5000000 + 10000000)
    assert reader.read().value == pytest.approx(10.0)
    shutil.rmtree(root / "sys" / "class" / "powercap")   # a machine with the MMIO window alone reads it
    mmio.mkdir(parents=True)
    for name, value in (("name", "package-0"), ("energy_uj", "5000000"), ("max_energy_range_uj", "262143328850")):
        write(mmio / name, value)
    reader, reason = RaplReader.probe(config(root))
    assert reason is None and reader.describe()["total"] == "package-0"


def test_counter_wraps_at_max_energy_range(tmp_path):
    root = tree("rapl-x86", tmp_path)
    for zone in ("intel-rapl:0", "intel-rapl:0:0", "intel-rapl:0:1", "intel-rapl:0:2", "intel-rapl:1"):
        write(rapl_zone(root, zone) / "max_energy_range_uj", 1000000)
        write(rapl_zone(root, zone) / "energy_uj", 900000)
    reader, _ = RaplReader.probe(config(root))
    assert reader.read().value == 0.0          # the probe's reading is the reference
    write(rapl_zone(root) / "energy_uj", 100000)   # wrapped: 900000 -> 1000000 -> 0 -> 100000
    assert reader.read().rails["package-0"] == pytest.approx(0.2)
    write(rapl_zone(root) / "energy_uj", 700000)   # no wrap: +0.6 J
    assert reader.read().rails["package-0"] == pytest.approx(0.8)


def test_no_powercap_tree_says_so(tmp_path):
    reader, reason = RaplReader.probe(config(tmp_path))
    assert reader is None and "no RAPL zones under" in reason


def _unprivileged(energy_file):
    """Make energy_uj unreadable the way Linux 5.10+ does for non-root users, and the argv prefix that
    runs a process which is denied it: root without CAP_DAC_OVERRIDE when we are root."""
    if not is_root():
        energy_file.chmod(0)
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: cannot drop the capability that bypasses file modes")
    energy_file.chmod(0o400)
    import os
    os.chown(energy_file, 54321, 54321)  # 0400 and owned by someone else: what root loses without DAC override
    return [setpriv, "--bounding-set", "-dac_override,-dac_read_search"]


def test_root_only_counter_is_refused_with_the_reason(tmp_path):
    root = tree("rapl-x86", tmp_path)
    prefix = _unprivileged(rapl_zone(root) / "energy_uj")
    code = ("import sys; from device_agent.power.rapl import RaplReader; from device_agent.power.base import SensorConfig;"
            "r, why = RaplReader.probe(SensorConfig(sysfs_root=sys.argv[1])); print(why)")
    p = subprocess.run(prefix + [sys.executable, "-c", code, str(root)], capture_output=True, text=True,
                       env={"PYTHONPATH": str(ROOT_DIR)}, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "readable by root only since Linux 5.10" in p.stdout and "Permission denied" in p.stdout
