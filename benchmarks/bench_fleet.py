"""Fleet orchestration on N loopback sshd devices (tests/sshd.py): wall time for 1, 8, 32 and 64
devices with a tiny model and a fixed small iteration count, host-process peak RSS, and the time
to declare a device dead after its network is cut (nftables drop) or its processes freeze.

    .venv/bin/python benchmarks/bench_fleet.py [--sizes 1,8,32,64] [--parallel 32]

Every emulated device runs on this same 2-core machine, so each device's agent work (Python
start, numpy + onnxruntime import, model load) competes with every other's: the script also
reports the agents' own CPU seconds, which bound the achievable wall time from below.
"""
import argparse
import json
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

import psutil
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import sshd  # noqa: E402

from edgeopt import api  # noqa: E402

LOOP = ["--min-iterations", "20", "--max-iterations", "20", "--min-seconds", "0", "--warmup-iterations", "2",
        "--warmup-seconds", "0"]
WRAPPER = ("import atexit, sys\n"
           "def peak():\n"
           "    for line in open('/proc/self/status'):\n"
           "        if line.startswith('VmHWM'): sys.stderr.write('HOST_PEAK_KB ' + line.split()[1] + '\\n')\n"
           "atexit.register(peak)\n"
           "from edgeopt.cli import main\n"
           "main(sys.argv[1:])\n")


def run_fleet(bundle, inventory, lab, results, parallel) -> dict:
    """One `edgeopt fleet bench` in a process of its own: wall time, host peak RSS, device CPU."""
    cpu_before = _device_cpu(lab)
    start = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", WRAPPER, "fleet", "bench", str(bundle), "-i", str(inventory),
                        "--known-hosts", str(lab.known_hosts), "--parallel", str(parallel), "--results-dir",
                        str(results), "--json", *LOOP], capture_output=True, text=True)
    wall = time.perf_counter() - start
    report = json.loads(p.stdout)
    peak = int(next(l.split()[1] for l in p.stderr.splitlines() if l.startswith("HOST_PEAK_KB")))
    reasons = sorted({msg.split(": ", 1)[-1][:120] for msg in report["failed"].values()})
    return {"wall_s": wall, "ok": len(report["succeeded"]), "failed": len(report["failed"]), "reasons": reasons,
            "host_peak_rss_mb": peak / 1024, "device_cpu_s": _device_cpu(lab) - cpu_before}


def _device_cpu(lab) -> float:
    """CPU seconds used so far by every sshd process tree (listeners, sessions, agents: the devices)."""
    total = 0.0
    for device in lab.devices.values():
        try:
            root = psutil.Process(device.proc.pid)
            for p in [root] + root.children(recursive=True):
                t = p.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
        except psutil.NoSuchProcess:
            continue
    return total


def inventory_for(lab, devices, path) -> pathlib.Path:
    path.write_text(yaml.safe_dump({"devices": {d.name: lab.inventory_entry(d) for d in devices}}))
    return path


def time_to_declare_dead(bundle, lab, tmp, how) -> float:
    """Start a long benchmark, cut the device off (`how`), and time until the host reports it failed."""
    device = lab.add(f"victim-{how}", 240 if how == "cut" else 241)
    inv = inventory_for(lab, [device], tmp / f"victim-{how}.yaml")
    host = subprocess.Popen([sys.executable, "-m", "edgeopt", "bench", str(bundle), "-d", device.name, "-i", str(inv),
                             "--known-hosts", str(lab.known_hosts), "--results-dir", str(tmp / "dead"),
                             "--min-seconds", "120", "--max-iterations", "1000000000", "--max-seconds", "300",
                             "--quiet"], stderr=subprocess.PIPE, text=True)
    time.sleep(4)  # connected, uploaded, measuring
    cut_at = time.monotonic()
    if how == "cut":
        _nft(f"add table inet edgeopt_bench; add chain inet edgeopt_bench out {{ type filter hook output priority 0; }}; "
             f"add rule inet edgeopt_bench out tcp sport {device.port} drop; "
             f"add rule inet edgeopt_bench out tcp dport {device.port} drop")
    else:
        for p in [psutil.Process(device.proc.pid)] + psutil.Process(device.proc.pid).children(recursive=True):
            p.send_signal(signal.SIGSTOP)
    _, err = host.communicate(timeout=300)
    detected = time.monotonic() - cut_at
    if how == "cut":
        _nft("delete table inet edgeopt_bench")
    device.kill()
    return detected, err.strip().splitlines()[-1]


def _nft(script):
    subprocess.run(["nft", script], check=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1,8,32,64")
    ap.add_argument("--parallel", type=int, default=32)
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        bundle = api.package(str(api.sample_paths()["model"]), output=tmp / "tiny.edgepkg",
                             eval_data=api.sample_paths()["eval"])["path"]
        lab = sshd.Lab(tmp / "lab")
        devices = [lab.add(f"d{i:02d}", i) for i in range(max(sizes))]
        for n in sizes:
            inv = inventory_for(lab, devices[:n], tmp / f"inv{n}.yaml")
            first = run_fleet(bundle, inv, lab, tmp / f"r{n}", args.parallel)   # deploys agent + bundle
            again = run_fleet(bundle, inv, lab, tmp / f"r{n}", args.parallel)   # everything cached
            figures[n] = {"first": first, "cached": again}
            print(f"{n} devices: {first} / cached {again}", file=sys.stderr)
        for how in ("cut", "freeze"):
            try:
                figures[f"dead_{how}"] = time_to_declare_dead(bundle, lab, tmp, how)
            except (subprocess.CalledProcessError, FileNotFoundError) as e:
                figures[f"dead_{how}"] = (None, f"not measured: {e}")
        lab.stop()
    (ROOT / "benchmarks" / "results").mkdir(exist_ok=True)
    (ROOT / "benchmarks" / "results" / "fleet.json").write_text(json.dumps(figures, indent=1, default=str))
    print_table(figures, sizes, args.parallel)


def print_table(figures, sizes, parallel):
    one = figures[sizes[0]]["cached"]["wall_s"]
    print("| devices | ok | wall s (first, deploys) | wall s (cached) | ratio vs 1 (cached) | devices' CPU s | host peak RSS MiB |")
    print("|---|---|---|---|---|---|---|")
    for n in sizes:
        f, c = figures[n]["first"], figures[n]["cached"]
        print(f"| {n} | {c['ok']}/{n} | {f['wall_s']:.1f} | {c['wall_s']:.1f} | {c['wall_s'] / one:.1f}x | "
              f"{c['device_cpu_s']:.1f} | {max(f['host_peak_rss_mb'], c['host_peak_rss_mb']):.0f} |")
    for how, label in (("dead_cut", "network cut (nftables drop)"), ("dead_freeze", "device frozen (SIGSTOP)")):
        seconds, message = figures[how]
        shown = "—" if seconds is None else f"{seconds:.1f} s"
        print(f"\n{label}: declared dead after {shown}: `{message}`")


if __name__ == "__main__":
    main()
