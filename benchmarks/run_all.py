"""Run every benchmark and print the figures as markdown (about 7-9 minutes on a 2-core VM).

    python benchmarks/run_all.py [--quick]

Summary figures (no raw samples) go to benchmarks/results/*.json; exported models, bundles
and agent result documents to benchmarks/.cache/ (ignored by git).
"""
from __future__ import annotations

import argparse
import sys
import time

import bench_agent_overhead
import bench_fidelity
import bench_int8
import cnn_models
import common

FULL = {"fidelity": 12, "int8": 5, "overhead": 7}
QUICK = {"fidelity": 2, "int8": 1, "overhead": 2}


def section(title, module, name, repeats) -> str:
    """Run one benchmark, save its summary, return its markdown with how long it took."""
    print(f"running {name} ({repeats} repeats)...", file=sys.stderr)
    start = time.perf_counter()
    result = module.run(repeats)
    common.save(name, result)
    minutes = (time.perf_counter() - start) / 60
    return f"## {title}\n\n{module.markdown(result)}\n\n_{repeats} repeats, {minutes:.1f} min._\n"


def header() -> str:
    env = common.environment()
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
    return (f"# edgeopt benchmarks\n\n{env['date']}, commit {env['commit']}, {env['cpu']} "
            f"({env['logical_cpus']} logical CPUs, {env['machine']}); {versions}\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats: a smoke test, not figures")
    repeats = QUICK if parser.parse_args().quick else FULL
    start = time.perf_counter()
    cnn_models.mobilenet_v2_onnx()  # export once, outside the timed sections
    parts = [header(),
             section("Agent fidelity: agent p50 / bare onnxruntime loop p50", bench_fidelity, "fidelity",
                     repeats["fidelity"]),
             section("INT8 vs FP32 (ONNX Runtime, CPU)", bench_int8, "int8", repeats["int8"]),
             section("Agent overhead", bench_agent_overhead, "agent_overhead", repeats["overhead"])]
    print("\n".join(parts))
    print(f"_total {(time.perf_counter() - start) / 60:.1f} min_")


if __name__ == "__main__":
    main()
