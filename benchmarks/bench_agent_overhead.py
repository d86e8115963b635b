"""The agent's own overhead: start-up time and resident memory with no model loaded.

Start-up: wall time of `python agent.pyz probe` and of `python agent.pyz bench` with a tiny
loop on the digits bundle (the time spent measuring, from the result, subtracted), next to
bare interpreters importing numpy and onnxruntime. Each repeat runs every command once, in
turn. Memory: the measuring process's RSS steps from the result, the agent's parent process
peak (VmHWM, polled while it runs), and bare interpreters' VmRSS after the same imports.

    python benchmarks/bench_agent_overhead.py [--repeats 7]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import time

import common
from edgeopt.agent_zipapp import build
from edgeopt.api import sample_paths

TINY = {"warmup_iterations": 1, "warmup_seconds": 0, "min_iterations": 10, "min_seconds": 0}
TINY_LOOP = [a for k, v in TINY.items() for a in (f"--{k.replace('_', '-')}", str(v))] + ["--no-accuracy"]
RSS = "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmRSS')][0])"
BARE = {"python -c pass": "pass",
        "python -c 'import numpy'": "import numpy",
        "python -c 'import numpy, onnxruntime'": "import numpy, onnxruntime"}


def timed_process(argv) -> dict:
    """Wall seconds, stdout and the process's own peak RSS (its VmHWM, polled every 5 ms)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    hwm = 0
    while proc.poll() is None:
        try:
            with open(f"/proc/{proc.pid}/status") as f:
                hwm = max([hwm] + [int(line.split()[1]) for line in f if line.startswith("VmHWM")])
        except (OSError, ValueError):
            pass
        time.sleep(0.005)
    out = proc.stdout.read()
    return {"wall_s": time.perf_counter() - start, "stdout": out, "peak_rss_mb": hwm / 1024}


def one_repeat(agent, bundle) -> dict:
    """Every command once: bare interpreters, agent probe, agent bench with a tiny loop, api.bench."""
    row = {label: timed_process([common.PYTHON, "-c", code])["wall_s"] for label, code in BARE.items()}
    row["agent probe"] = timed_process([common.PYTHON, str(agent), "probe"])["wall_s"]
    bench = timed_process([common.PYTHON, str(agent), "bench", str(bundle)] + TINY_LOOP)
    lat = json.loads(bench["stdout"])["latency"]
    measuring = lat["load_ms"] / 1e3 + lat["first_inference_ms"] / 1e3 + lat["warmup_s"] + lat["duration_s"]
    row.update({"agent bench (tiny loop)": bench["wall_s"], "measuring inside bench": measuring,
                "agent bench minus measuring": bench["wall_s"] - measuring,
                "agent parent peak RSS": bench["peak_rss_mb"]})
    start = time.perf_counter()
    common.agent_bench(bundle, None, TINY)  # the host side too: agent lookup, bundle check, transport
    row["edgeopt.api.bench (tiny loop)"] = time.perf_counter() - start
    return row


def bare_rss() -> dict:
    out = {}
    for label, code in BARE.items():
        kb = subprocess.run([common.PYTHON, "-c", f"{code}\n{RSS}"], check=True, capture_output=True, text=True)
        out[label] = int(kb.stdout) / 1024
    return out


def run(repeats=7) -> dict:
    agent = build()
    bundle = common.package(sample_paths()["model"], "overhead-digits-fp32")["path"]
    rows = []
    for _ in range(repeats):
        row, foreign, _ = common.checked(lambda: one_repeat(agent, bundle), max_foreign=0.10)
        rows.append(dict(row, foreign_cpu=foreign))
    timing = {k: common.median(r[k] for r in rows) for k in rows[0] if k != "foreign_cpu"}
    memory_doc = common.agent_bench(bundle, 1, {"min_iterations": 200, "min_seconds": 0.5})["memory"]
    memory = {k: v for k, v in memory_doc.items() if k.endswith("_mb") and k != "swap_mb"}
    return {"repeats": repeats, "foreign_cpu": [round(r["foreign_cpu"], 3) for r in rows],
            "agent_pyz_bytes": agent.stat().st_size, "median_seconds": timing,
            "agent_process_memory_mb": memory, "bare_rss_mb": bare_rss()}


def markdown(result) -> str:
    t = result["median_seconds"]
    rows = [[k, f"{v * 1e3:.0f}"] for k, v in t.items() if "RSS" not in k]
    timing = common.md_table(["command (median of %d repeats)" % result["repeats"], "wall time ms"], rows)
    m, bare = result["agent_process_memory_mb"], result["bare_rss_mb"]
    rows = [["measuring process, baseline (python + numpy + agent, no runtime)", f"{m['rss_baseline_mb']:.1f}"],
            ["measuring process, after `import onnxruntime`", f"{m['rss_after_import_mb']:.1f}"],
            ["measuring process, after loading the digits model", f"{m['rss_after_load_mb']:.1f}"],
            ["measuring process, peak during the timed loop", f"{m['peak_rss_mb']:.1f}"],
            ["agent parent process (`bench`), peak", f"{t['agent parent peak RSS']:.1f}"]]
    rows += [[f"bare `{k}`", f"{v:.1f}"] for k, v in bare.items()]
    memory = common.md_table(["process", "RSS MiB"], rows)
    note = common.disturbed_note(result["foreign_cpu"], 0.10)
    return f"{timing}\n\n{note}\n\n{memory}\n\nagent zipapp: {result['agent_pyz_bytes'] / 1024:.0f} KiB"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    result = run(args.repeats)
    common.save("agent_overhead", result)
    print(markdown(result))


if __name__ == "__main__":
    main()
