"""Upload throughput of edgeopt's SSH deploy against `scp` of the same file, same link, same run.

    .venv/bin/python benchmarks/bench_ssh_upload.py [--mb 50] [--repeats 5]

A real sshd on a loopback address (tests/sshd.py), a bundle of MB megabytes (random eval data,
so it does not compress), alternating edgeopt upload and scp. Then a second, cached deploy:
bytes sent and time. Prints a markdown table; JSON figures to benchmarks/results/ssh_upload.json.
"""
import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import sshd  # noqa: E402

from edgeopt import api  # noqa: E402
from edgeopt.inventory import make_device  # noqa: E402
from edgeopt.transport.ssh import SshOptions, SshTransport  # noqa: E402


def big_bundle(tmp: pathlib.Path, mb: int) -> pathlib.Path:
    """The sample model with enough random eval samples to weigh `mb` MB."""
    samples = api.sample_paths()
    n = mb * 1_000_000 // (64 * 4)
    rng = np.random.default_rng(0)
    np.savez(tmp / "eval.npz", image=rng.random((n, 1, 8, 8), dtype=np.float32), labels=rng.integers(0, 10, n))
    return pathlib.Path(api.package(str(samples["model"]), output=tmp / "big.edgepkg", eval_data=tmp / "eval.npz",
                                    allow_mismatch=True)["path"])


def edgeopt_upload(lab, device, bundle, workdir) -> tuple:
    spec = make_device(device.name, dict(lab.inventory_entry(device), workdir=workdir), "bench")
    t = SshTransport(spec, SshOptions(known_hosts=str(lab.known_hosts)))
    t.connect()
    start = time.perf_counter()
    t.put(bundle, "bundle")
    seconds = time.perf_counter() - start
    t.close()
    return seconds, t.transfers[-1]["sent_bytes"]


def sftp_upload(lab, device, bundle, dest) -> float:
    """paramiko's SFTP put (pipelined writes) on a fresh connection: the alternative we measured against."""
    spec = make_device(device.name, lab.inventory_entry(device), "bench")
    t = SshTransport(spec, SshOptions(known_hosts=str(lab.known_hosts)))
    sftp = t.connect().open_sftp()
    start = time.perf_counter()
    sftp.put(str(bundle), dest)
    seconds = time.perf_counter() - start
    t.close()
    return seconds


def scp_upload(lab, device, bundle, dest) -> float:
    entry = lab.inventory_entry(device)
    start = time.perf_counter()
    subprocess.run(["scp", "-q", "-P", str(device.port), "-i", entry["key"], "-o", f"UserKnownHostsFile={lab.known_hosts}",
                    "-o", "StrictHostKeyChecking=yes", str(bundle), f"{entry['user']}@{device.host}:{dest}"], check=True)
    return time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        bundle = big_bundle(tmp, args.mb)
        size = bundle.stat().st_size
        lab = sshd.Lab(tmp / "lab")
        device = lab.add("uplink", 200)
        ours, theirs, sftp = [], [], []
        for i in range(args.repeats):  # interleaved; a fresh workdir each time so nothing is cached
            ours.append(edgeopt_upload(lab, device, bundle, str(tmp / f"w{i}"))[0])
            theirs.append(scp_upload(lab, device, bundle, str(tmp / f"scp{i}.edgepkg")))
            sftp.append(sftp_upload(lab, device, bundle, str(tmp / f"sftp{i}.edgepkg")))
        cached_s, cached_sent = edgeopt_upload(lab, device, bundle, str(tmp / "w0"))
        lab.stop()
    mbps = lambda s: size / s / 1e6
    fig = {"bundle_bytes": size, "edgeopt_s": ours, "scp_s": theirs, "sftp_s": sftp,
           "sftp_MBps_median": mbps(statistics.median(sftp)),
           "edgeopt_MBps_median": mbps(statistics.median(ours)), "scp_MBps_median": mbps(statistics.median(theirs)),
           "ratios": [t / o for o, t in zip(ours, theirs)], "cached_seconds": cached_s, "cached_sent_bytes": cached_sent}
    fig["ratio_median"] = statistics.median(fig["ratios"])
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "ssh_upload.json").write_text(json.dumps(fig, indent=1))
    print(f"| bundle | edgeopt MB/s (median) | scp MB/s | paramiko SFTP MB/s | throughput ratio edgeopt/scp (median of {args.repeats}) | per-repeat ratios | cached re-deploy |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {size / 1e6:.1f} MB | {fig['edgeopt_MBps_median']:.1f} | {fig['scp_MBps_median']:.1f} | {fig['sftp_MBps_median']:.1f} | "
          f"**{fig['ratio_median']:.2f}x** | {', '.join(f'{r:.2f}' for r in fig['ratios'])} | "
          f"{cached_sent} bytes sent, {cached_s * 1000:.0f} ms |")


if __name__ == "__main__":
    main()
