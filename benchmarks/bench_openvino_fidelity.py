"""Agent fidelity on OpenVINO: the agent's p50 vs benchmark_app's median on the same IR, threads
and hint (latency, 1 thread, INFERENCE_PRECISION_HINT f32), FP32 and NNCF INT8, on a
MobileNetV2-sized and a ResNet-18-sized CNN.

Each repeat runs every (model, precision) pair twice, agent and benchmark_app, back to back in
alternating order, each in a fresh process. The figure is the per-repeat ratio
agent_p50 / benchmark_app_median and its median over the repeats (target: within 3% of 1.0).

    python benchmarks/bench_openvino_fidelity.py [--repeats 9] [--seconds 1]
"""
from __future__ import annotations

import argparse

import common
import openvino_common as ovc

WARMUP = {"warmup_iterations": 10, "warmup_seconds": 0.5, "max_iterations": 1000000, "max_seconds": 60.0}


def prepare(names) -> list:
    cases = []
    for name, info in ovc.models(names).items():
        for quantize in ("none", "int8"):
            label = "int8" if quantize == "int8" else "fp32"
            manifest = ovc.package(f"ov-fidelity-{name}-{label}", info, "intel-cpu", quantize)
            xml = ovc.extract_ir(manifest["path"], common.CACHE / "ir" / f"fidelity-{name}-{label}")
            cases.append({"model": name, "precision": label, "bundle": manifest["path"], "xml": xml})
    return cases


def measure_pair(case, seconds, agent_first) -> dict:
    """Agent and benchmark_app back to back; the load average before says how busy the machine was."""
    loop = dict(WARMUP, min_iterations=50, min_seconds=seconds)

    def agent():
        doc = common.agent_bench(case["bundle"], ovc.THREADS, loop)
        return doc["latency"], doc["runtime"]["inference_precision"]

    def bapp():
        return ovc.benchmark_app(case["xml"], ovc.THREADS, seconds)

    with ovc.BackgroundLoad() as first_load:
        first = agent() if agent_first else bapp()
    with ovc.BackgroundLoad() as second_load:
        second = bapp() if agent_first else agent()
    (a, precision), b = (first, second) if agent_first else (second, first)
    loads = (first_load.fraction, second_load.fraction) if agent_first else (second_load.fraction, first_load.fraction)
    return {"agent_p50_ms": a["p50_ms"], "benchmark_app_median_ms": b["median_ms"],
            "ratio": a["p50_ms"] / b["median_ms"], "min_ratio": a["min_ms"] / b["min_ms"],
            "agent_precision": precision, "background_load": {"agent": loads[0], "benchmark_app": loads[1]}}


def run(repeats, seconds, names=("mobilenet_v2", "resnet18")) -> dict:
    cases = prepare(names)
    for r in range(repeats):
        for case in cases:
            case.setdefault("repeats", []).append(measure_pair(case, seconds, agent_first=r % 2 == 0))
    rows = []
    for c in cases:
        ratios = [p["ratio"] for p in c["repeats"]]
        rows.append({"model": c["model"], "precision": c["precision"], "threads": ovc.THREADS, "repeats": c["repeats"],
                     "median_ratio": common.median(ratios), "min_ratio": min(ratios), "max_ratio": max(ratios),
                     "median_of_min_latency_ratios": common.median(p["min_ratio"] for p in c["repeats"]),
                     "median_agent_p50_ms": common.median(p["agent_p50_ms"] for p in c["repeats"]),
                     "median_benchmark_app_ms": common.median(p["benchmark_app_median_ms"] for p in c["repeats"])})
    command = ovc.benchmark_app(cases[0]["xml"], ovc.THREADS, 1)["command"]
    return {"repeats": repeats, "seconds": seconds, "benchmark_app_command": command, "cases": rows}


def markdown(result) -> str:
    rows = []
    for c in result["cases"]:
        per = " ".join(f"{p['ratio']:.3f}" for p in c["repeats"])
        verdict = "yes" if abs(c["median_ratio"] - 1) <= 0.03 else "**no**"
        rows.append([c["model"], c["precision"], c["threads"], f"{c['median_agent_p50_ms']:.3f}",
                     f"{c['median_benchmark_app_ms']:.3f}", per, f"**{c['median_ratio']:.3f}**", verdict,
                     f"{c['median_of_min_latency_ratios']:.3f}"])
    return common.md_table(["model", "bundle", "threads", "agent p50 ms", "benchmark_app median ms",
                            "ratio per repeat", "median ratio", "within 3%", "min-latency ratio"], rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--seconds", type=int, default=1)
    args = parser.parse_args()
    result = run(args.repeats, args.seconds)
    common.save("openvino_fidelity", dict(result, tool_versions=ovc.versions()))
    print(markdown(result))


if __name__ == "__main__":
    main()
