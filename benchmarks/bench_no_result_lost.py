"""No result lost (issue 11): result files kept for 20 distinct, collision-prone device names in one
`edgeopt fleet bench` over loopback sshd devices, then what `--resume` skips; and the time to report a
peer that accepts TCP and never speaks SSH, with the default connect timeout (10 s).

    .venv/bin/python benchmarks/bench_no_result_lost.py

Names 0, 4, 8, ... use a Python that does not exist on their device, so they fail; --resume must
skip exactly the others. "main's mapping" is the file-name rule before this change, for comparison.
"""
import argparse
import json
import pathlib
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import sshd  # noqa: E402

from edgeopt import api  # noqa: E402

NAMES = ["pi:1", "pi_1", "设备1", "装置1", "&&id", "|id", "x.", "x", "..", "unnamed", "Pi-1", "pi-1", "run", "café",
         "cafe\u0301", "a@b", "a_b", "node-3", "NODE-3", "kitchen"]
LOOP = ["--min-iterations", "20", "--max-iterations", "20", "--min-seconds", "0", "--warmup-iterations", "2",
        "--warmup-seconds", "0"]


def old_stem(text):
    """results._safe before issue 11."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "unnamed"


def fleet(bundle, inv, lab, results, *extra):
    p = subprocess.run([sys.executable, "-m", "edgeopt", "fleet", "bench", str(bundle), "-i", str(inv),
                        "--known-hosts", str(lab.known_hosts), "--parallel", "4", "--results-dir", str(results),
                        "--json", *LOOP, *extra], capture_output=True, text=True)
    return json.loads(p.stdout)


def names_figures(bundle, lab, tmp):
    good, bad = lab.add("good", 0), lab.add("bad", 1)
    entries = {}
    for i, name in enumerate(NAMES):
        entry = lab.inventory_entry(bad if i % 4 == 0 else good, workdir=str(tmp / f"home{i}"))
        if i % 4 == 0:
            entry["python"] = "/nonexistent/python3"
        entries[name] = entry
    inv = tmp / "names.yaml"
    inv.write_text(yaml.safe_dump({"devices": entries}, allow_unicode=True))
    first = fleet(bundle, inv, lab, tmp / "results")
    run_dir = pathlib.Path(first["run_dir"])
    kept = {json.loads(p.read_text())["device"]["name"] for p in run_dir.glob("*.json") if p.name != "run.json"}
    again = fleet(bundle, inv, lab, tmp / "results", "--resume")
    ok = set(first["succeeded"])
    return {"names": len(NAMES), "main_mapping_files": len({old_stem(n) for n in NAMES}),
            "run_files_kept": len(kept), "latest_files": len(list((tmp / "results").glob("*@*.json"))),
            "ok_first_run": len(ok), "resume_skipped": len(again["skipped"]),
            "resume_skipped_exactly_the_ok_ones": set(again["skipped"]) == ok,
            "resume_same_run_dir": again["run_dir"] == first["run_dir"]}


def silent_peer_seconds(bundle, tmp):
    """`edgeopt bench` against a TCP listener that never speaks, default --connect-timeout."""
    server = socket.socket()
    server.bind(("127.0.9.9", 0))
    server.listen(8)
    held = []
    threading.Thread(target=lambda: [held.append(server.accept()) for _ in range(8)], daemon=True).start()
    host, port = server.getsockname()
    inv = tmp / "silent.yaml"
    inv.write_text(f"devices:\n  mute: {{host: {host}, port: {port}, user: x}}\n")
    start = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "edgeopt", "bench", str(bundle), "-d", "mute", "-i", str(inv),
                        "--known-hosts", str(tmp / "kh"), "--results-dir", str(tmp / "silent"), "--quiet"],
                       capture_output=True, text=True)
    wall = time.perf_counter() - start
    from edgeopt.errors import DeviceFailure
    from edgeopt.inventory import make_device
    from edgeopt.transport.ssh import SshOptions, SshTransport
    transport = SshTransport(make_device("mute", {"host": host, "port": port, "user": "x"}, "bench"),
                             SshOptions(known_hosts=str(tmp / "kh")))
    start = time.perf_counter()
    try:
        transport.connect()
    except DeviceFailure:
        connect = time.perf_counter() - start
    server.close()
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    return {"exit_code": p.returncode, "stderr_lines": len(lines), "message": lines[-1] if lines else "",
            "cli_wall_s": round(wall, 2), "connect_to_failure_s": round(connect, 2),
            "connect_timeout_s": SshOptions().connect_timeout}


def main():
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        bundle = api.package(str(api.sample_paths()["model"]), output=tmp / "tiny.edgepkg",
                             eval_data=api.sample_paths()["eval"])["path"]
        lab = sshd.Lab(tmp / "lab")
        try:
            figures = {"names": names_figures(bundle, lab, tmp), "silent_peer": silent_peer_seconds(bundle, tmp)}
        finally:
            lab.stop()
    print(json.dumps(figures, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    main()
