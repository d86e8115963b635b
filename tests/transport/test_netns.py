"""Devices across a real (virtual) link: a bandwidth-limited one (tc tbf) and a lossy one
(nftables drop), each in a network namespace of the test's own. Skipped where the machine
cannot make namespaces; netem is absent here, so delay is not emulated (TESTRIG.md)."""
import pathlib

import numpy as np
import pytest

import sshd
from conftest import FAST_LOOP, MODEL, write_inventory
from edgeopt import api
from edgeopt.transport.ssh import SshOptions


@pytest.fixture(scope="module")
def big_bundle(tmp_path_factory):
    """About 4 MB: the sample model with random eval samples that do not compress."""
    tmp = tmp_path_factory.mktemp("big")
    n = 4_000_000 // 256
    rng = np.random.default_rng(0)
    np.savez(tmp / "eval.npz", image=rng.random((n, 1, 8, 8), dtype=np.float32), labels=rng.integers(0, 10, n))
    return pathlib.Path(api.package(str(MODEL), output=tmp / "big.edgepkg", eval_data=tmp / "eval.npz")["path"])


def _link(lab, tag):
    reason = sshd.NetnsLink.unavailable()
    if reason:
        pytest.skip(reason)
    link = sshd.NetnsLink(tag).up()
    device = lab.add(f"netns-{tag}", 0, host=link.device_ip, prefix=("ip", "netns", "exec", link.ns))
    return link, device


def _bench(lab, device, bundle, tmp_path):
    inv = write_inventory(tmp_path / "inv.yaml", lab, [device])
    loop = dict(FAST_LOOP, min_iterations=20, max_iterations=20)
    return api.bench(bundle, device.name, tmp_path, loop=loop, inventory=inv,
                     ssh_options=SshOptions(known_hosts=str(lab.known_hosts)))


def test_bandwidth_limited_link(lab, big_bundle, tmp_path):
    link, device = _link(lab, 1)
    try:
        link.limit_bandwidth("16mbit")
        doc = _bench(lab, device, big_bundle, tmp_path)
        upload = next(t for t in doc["transport"]["transfers"] if t["kind"] == "bundle")
        rate = upload["bytes"] / upload["seconds"]
        assert doc["status"] == "ok" and upload["sent_bytes"] == big_bundle.stat().st_size
        assert rate < 16e6 / 8 * 1.3, f"{rate / 1e6:.1f} MB/s is faster than the 2 MB/s link"
    finally:
        device.kill()
        link.down()


def test_lossy_link(lab, big_bundle, tmp_path):
    link, device = _link(lab, 2)
    try:
        link.drop_percent(5)
        doc = _bench(lab, device, big_bundle, tmp_path)
        assert doc["status"] == "ok" and doc["latency"]["n"] == 20
        sent = {t["kind"]: t["sent_bytes"] for t in doc["transport"]["transfers"]}
        assert sent["bundle"] == big_bundle.stat().st_size
    finally:
        device.kill()
        link.down()
