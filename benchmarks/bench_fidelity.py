"""Agent fidelity: the agent's p50 vs a bare onnxruntime loop on the same .onnx file and threads.

Each repeat measures every (model, threads) pair twice, agent and bare loop, back to back and
in alternating order, each in a fresh process. The figure is the per-repeat ratio
agent_p50 / bare_p50 and its median over the repeats (target: within 3% of 1.0); beside it
the best-of ratio, fastest agent p50 / fastest bare p50, which ignores one-sided slowdowns.

    python benchmarks/bench_fidelity.py [--repeats 12]
"""
from __future__ import annotations

import argparse

import cnn_models
import common
from edgeopt.api import sample_paths

WARMUP = {"warmup_iterations": 10, "warmup_seconds": 0.5, "max_iterations": 1000000, "max_seconds": 60.0}
LOOPS = {  # fixed loops: MobileNetV2 ~5-9 ms per run, the digits CNN ~0.02 ms
    "digits_cnn": dict(WARMUP, min_iterations=20000, min_seconds=0.75),
    "mobilenet_v2": dict(WARMUP, min_iterations=75, min_seconds=0.75),
}
THREADS = (1, 2)


def prepare() -> list:
    """FP32 bundles (no eval data: both sides feed the same seeded random input) and their .onnx."""
    sources = {"digits_cnn": sample_paths()["model"], "mobilenet_v2": cnn_models.mobilenet_v2_onnx()["model"]}
    models = []
    for name, source in sources.items():
        manifest = common.package(source, f"fidelity-{name}-fp32")
        onnx = common.extract_model(manifest["path"], common.CACHE / f"fidelity-{name}-fp32.onnx")
        models.append({"name": name, "bundle": manifest["path"], "onnx": onnx, "loop": LOOPS[name]})
    return models


def measure_pair(model, threads, agent_first) -> dict:
    """Agent and bare loop back to back, in the given order; repeated if other load interfered."""
    def agent():
        return common.agent_bench(model["bundle"], threads, model["loop"])["latency"]["p50_ms"]

    def bare():
        return common.bare_loop(model["onnx"], threads, model["loop"])["p50_ms"]

    def pair():
        first, second = (agent, bare) if agent_first else (bare, agent)
        x, y = first(), second()
        return (x, y) if agent_first else (y, x)

    (a, b), foreign, tries = common.checked(pair)
    return {"agent_p50_ms": a, "bare_p50_ms": b, "ratio": a / b, "foreign_cpu": round(foreign, 3), "tries": tries}


def run(repeats=12, threads=THREADS) -> dict:
    models = prepare()
    rows = {(m["name"], t): [] for m in models for t in threads}
    for r in range(repeats):
        for m in models:
            for t in threads:
                rows[(m["name"], t)].append(measure_pair(m, t, agent_first=r % 2 == 0))
    cases = []
    for (name, t), pairs in rows.items():
        ratios = [p["ratio"] for p in pairs]
        cases.append({"model": name, "threads": t, "repeats": pairs, "median_ratio": common.median(ratios),
                      "min_ratio": min(ratios), "max_ratio": max(ratios),
                      "best_ratio": min(p["agent_p50_ms"] for p in pairs) / min(p["bare_p50_ms"] for p in pairs),
                      "median_agent_p50_ms": common.median(p["agent_p50_ms"] for p in pairs),
                      "median_bare_p50_ms": common.median(p["bare_p50_ms"] for p in pairs)})
    return {"repeats": repeats, "loops": LOOPS, "cases": cases}


def markdown(result) -> str:
    rows = []
    for c in result["cases"]:
        per = " ".join(f"{p['ratio']:.3f}" for p in c["repeats"])
        verdict = "yes" if abs(c["median_ratio"] - 1) <= 0.03 else "**no**"
        rows.append([c["model"], c["threads"], f"{c['median_agent_p50_ms']:.4g}", f"{c['median_bare_p50_ms']:.4g}",
                     per, f"**{c['median_ratio']:.3f}**", f"{c['best_ratio']:.3f}", verdict])
    shares = [p["foreign_cpu"] for c in result["cases"] for p in c["repeats"]]
    table = common.md_table(["model", "threads", "agent p50 ms (median)", "bare p50 ms (median)",
                             "ratio agent/bare per repeat", "median ratio", "best-of ratio", "median within 3%"], rows)
    return f"{table}\n\n{common.disturbed_note(shares)}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=12)
    args = parser.parse_args()
    result = run(args.repeats)
    common.save("fidelity", result)
    print(markdown(result))


if __name__ == "__main__":
    main()
