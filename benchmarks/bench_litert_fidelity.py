"""Agent fidelity on LiteRT: the agent's p50 vs LiteRT's own `litert-benchmark` median on the same
.tflite (the bundle's model/model.tflite, extracted) and threads (1 and 2), FP32 and full-INT8
(int8 I/O), on the shipped digits CNN and a MobileNetV2-sized CNN, packaged for raspberry-pi-5.

Both sides run a fixed count: the same warm-up runs and the same timed runs (the agent with its
time minimums at zero), each in a fresh process. Each repeat measures every case twice, agent
and litert-benchmark, back to back in alternating order. The figure is the per-repeat ratio
agent_p50 / litert-benchmark median and its median over the repeats (target: within 3% of 1.0);
beside it the ratio of the two sides' minimum latencies. After the repeats, one fresh process per
case times the two tools' calls side by side (`Interpreter.invoke()` vs
`CompiledModel.run_by_name()`), which says how much of a gap is the call itself.

    python benchmarks/bench_litert_fidelity.py [--repeats 8]
"""
from __future__ import annotations

import argparse

import common
import litert_common as lc

FIXED = {"warmup_seconds": 0.0, "min_seconds": 0.0, "max_iterations": 10000000, "max_seconds": 120.0}
LOOPS = {  # same counts on both sides: digits ~6-20 us a run, MobileNetV2 ~2-9 ms
    "digits_cnn": dict(FIXED, warmup_iterations=1000, min_iterations=60000),
    "mobilenet_v2": dict(FIXED, warmup_iterations=10, min_iterations=200),
}
THREADS = (1, 2)
PRECISIONS = {"fp32": "none", "int8": "int8"}


def prepare() -> list:
    """FP32 and full-INT8 bundles with no eval data (both sides feed random input) and their .tflite."""
    cases = []
    for name, info in lc.models().items():
        for label, quantize in PRECISIONS.items():
            manifest = lc.package(f"litert-fidelity-{name}-{label}", info, quantize, eval_data=False)
            tflite = lc.extract_tflite(manifest["path"], common.CACHE / "tflite" / f"fidelity-{name}-{label}.tflite")
            for t in THREADS:
                cases.append({"model": name, "precision": label, "threads": t, "bundle": manifest["path"],
                              "tflite": tflite, "loop": LOOPS[name], "io": manifest["inputs"][0]["dtype"]})
    return cases


def measure_pair(case, agent_first) -> dict:
    """Agent and litert-benchmark back to back, in the given order; repeated if other load interfered."""
    loop, threads = case["loop"], case["threads"]

    def agent():
        doc = common.agent_bench(case["bundle"], threads, loop)
        return doc["latency"], doc["runtime"]["xnnpack"]["applied"]

    def reference():
        return lc.litert_benchmark(case["tflite"], threads, loop["min_iterations"], loop["warmup_iterations"])

    def pair():
        first, second = (agent, reference) if agent_first else (reference, agent)
        x, y = first(), second()
        return (x, y) if agent_first else (y, x)

    ((a, xnnpack), b), foreign, tries = common.checked(pair)
    return {"agent_p50_ms": a["p50_ms"], "reference_median_ms": b["median_ms"], "ratio": a["p50_ms"] / b["median_ms"],
            "min_ratio": a["min_ms"] / b["min_ms"], "agent_n": a["n"], "reference_n": b["num_runs"],
            "agent_xnnpack": xnnpack, "reference_fully_accelerated": b["fully_accelerated"],
            "foreign_cpu": round(foreign, 3), "tries": tries}


def run(repeats=8) -> dict:
    cases = prepare()
    for r in range(repeats):
        for case in cases:
            case.setdefault("repeats", []).append(measure_pair(case, agent_first=r % 2 == 0))
    rows = []
    for c in cases:
        pairs = c["repeats"]
        ratios = [p["ratio"] for p in pairs]
        calls, _, _ = common.checked(lambda: lc.call_overhead(c["tflite"], c["threads"]))
        rows.append({"model": c["model"], "precision": c["precision"], "io": c["io"], "threads": c["threads"],
                     "repeats": pairs, "median_ratio": common.median(ratios), "min_ratio": min(ratios),
                     "max_ratio": max(ratios), "median_min_latency_ratio": common.median(p["min_ratio"] for p in pairs),
                     "median_agent_p50_ms": common.median(p["agent_p50_ms"] for p in pairs),
                     "median_reference_ms": common.median(p["reference_median_ms"] for p in pairs),
                     "calls": calls, "call_ratio": calls["invoke_p50_ms"] / calls["run_by_name_p50_ms"]})
    command = lc.litert_benchmark(cases[0]["tflite"], 1, 10, 1)["command"]
    return {"repeats": repeats, "loops": LOOPS, "reference_command_example": command, "cases": rows}


def markdown(result) -> str:
    rows = []
    for c in result["cases"]:
        per = " ".join(f"{p['ratio']:.3f}" for p in c["repeats"])
        verdict = "yes" if abs(c["median_ratio"] - 1) <= 0.03 else "**no**"
        calls = c["calls"]
        rows.append([c["model"], c["precision"], c["threads"], f"{c['median_agent_p50_ms']:.4g}",
                     f"{c['median_reference_ms']:.4g}", per, f"**{c['median_ratio']:.3f}**", verdict,
                     f"{c['median_min_latency_ratio']:.3f}",
                     f"{calls['invoke_p50_ms'] * 1e3:.4g} / {calls['run_by_name_p50_ms'] * 1e3:.4g} = "
                     f"{c['call_ratio']:.3f}"])
    shares = [p["foreign_cpu"] for c in result["cases"] for p in c["repeats"]]
    table = common.md_table(["model", "bundle", "threads", "agent p50 ms (median)", "litert-benchmark median ms",
                             "ratio per repeat", "median ratio", "within 3%", "min-latency ratio",
                             "invoke() / run_by_name() p50 µs, one process"], rows)
    return f"{table}\n\n{common.disturbed_note(shares)}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=8)
    args = parser.parse_args()
    result = run(args.repeats)
    common.save("litert_fidelity", dict(result, tool_versions=lc.versions()))
    print(markdown(result))


if __name__ == "__main__":
    main()
