"""INT8 vs FP32 on OpenVINO: latency and size ratios of edgeopt's intel-cpu bundles, next to the
same NNCF recipe run by hand (convert_model -> nncf.quantize with its defaults -> save_model), and
the accuracy drop on the shipped model's eval split.

Every IR (edgeopt FP32, edgeopt INT8, hand FP32, hand INT8) is timed by OpenVINO's own
benchmark_app with the same settings (latency hint, 1 thread, INFERENCE_PRECISION_HINT f32),
interleaved over the repeats, so the four are compared under the same machine load.

    python benchmarks/bench_openvino_compression.py [--repeats 3] [--seconds 2]
"""
from __future__ import annotations

import argparse

import common
import openvino_common as ovc

VARIANTS = ("edgeopt-fp32", "edgeopt-int8", "hand-fp32", "hand-int8")


def prepare(name, info) -> dict:
    """The four IRs of one model, plus what packaging recorded."""
    irs, manifests = {}, {}
    for quantize in ("none", "int8"):
        label = "int8" if quantize == "int8" else "fp32"
        manifests[label] = ovc.package(f"ov-compression-{name}-{label}", info, "intel-cpu", quantize)
        irs[f"edgeopt-{label}"] = ovc.extract_ir(manifests[label]["path"], common.CACHE / "ir" / f"compression-{name}-{label}")
        hand = ovc.hand_recipe(info["model"], info["calib"], common.CACHE / "ir" / f"compression-{name}-{label}",
                               int8=quantize == "int8")
        irs[f"hand-{label}"] = hand["xml"]
    return {"irs": irs, "manifests": manifests}


def accuracy(name, info, prepared) -> dict:
    """Top-1 drop on the eval split: edgeopt's (host parity and the agent on this device), the hand INT8's."""
    if info["eval"] is None:
        return {"absent": "random-weight model: no labelled data"}
    parity = prepared["manifests"]["int8"]["parity"]
    doc = common.agent_bench(prepared["manifests"]["int8"]["path"], ovc.THREADS, {"min_iterations": 50, "min_seconds": 0.2})
    hand_fp32, hand_int8 = (ovc.top1(prepared["irs"][k], info["eval"]) for k in ("hand-fp32", "hand-int8"))
    return {"edgeopt_source_top1": parity["source_top1"], "edgeopt_int8_top1_host": parity["artifact_top1"],
            "edgeopt_drop_host": -parity["accuracy_delta"], "edgeopt_drop_agent": doc["accuracy"]["drop"],
            "hand_fp32_top1": hand_fp32, "hand_int8_top1": hand_int8, "hand_drop": hand_fp32 - hand_int8,
            "samples": parity["samples"]}


def run(repeats, seconds) -> dict:
    prepared = {name: (info, prepare(name, info)) for name, info in ovc.models().items()}
    latency = {(name, v): [] for name in prepared for v in VARIANTS}
    for r in range(repeats):
        for name, (_, p) in prepared.items():
            order = VARIANTS if r % 2 == 0 else tuple(reversed(VARIANTS))
            for v in order:
                latency[(name, v)].append(ovc.benchmark_app(p["irs"][v], ovc.THREADS, seconds)["median_ms"])
    rows = []
    for name, (info, p) in prepared.items():
        row = {"model": name, "accuracy": accuracy(name, info, p)}
        for who in ("edgeopt", "hand"):
            fp32, int8 = latency[(name, f"{who}-fp32")], latency[(name, f"{who}-int8")]
            row[who] = {"fp32_ms": common.median(fp32), "int8_ms": common.median(int8),
                        "latency_ratio": common.median(i / f for i, f in zip(int8, fp32)),
                        "latency_ratios": [i / f for i, f in zip(int8, fp32)],
                        "fp32_bytes": ovc.ir_bytes(p["irs"][f"{who}-fp32"]), "int8_bytes": ovc.ir_bytes(p["irs"][f"{who}-int8"])}
            row[who]["size_ratio"] = row[who]["int8_bytes"] / row[who]["fp32_bytes"]
        row["edgeopt_ops"] = p["manifests"]["int8"]["compression"]["ops"]
        rows.append(row)
    return {"repeats": repeats, "seconds": seconds, "threads": ovc.THREADS, "rows": rows}


def markdown(result) -> str:
    rows = []
    for r in result["rows"]:
        e, h = r["edgeopt"], r["hand"]
        rows.append([r["model"], f"{e['fp32_ms']:.4g}", f"{e['int8_ms']:.4g}", f"**{e['latency_ratio']:.3f}**",
                     f"{h['latency_ratio']:.3f}", f"**{e['size_ratio']:.3f}**", f"{h['size_ratio']:.3f}",
                     "yes" if e["latency_ratio"] <= h["latency_ratio"] * 1.03 else "**no**"])
    table = common.md_table(["model", "edgeopt FP32 ms", "edgeopt INT8 ms", "INT8/FP32 latency (edgeopt)",
                             "INT8/FP32 latency (hand)", "INT8/FP32 size (edgeopt)", "INT8/FP32 size (hand)",
                             "edgeopt at least as good (3% noise)"], rows)
    acc = [r for r in result["rows"] if "absent" not in r["accuracy"]]
    lines = [table, ""]
    for r in acc:
        a = r["accuracy"]
        lines.append(f"- {r['model']}: top-1 {a['edgeopt_source_top1']:.4f} → {a['edgeopt_int8_top1_host']:.4f} on "
                     f"{a['samples']} eval samples: drop {a['edgeopt_drop_host'] * 100:.2f} points (host), "
                     f"{a['edgeopt_drop_agent'] * 100:.2f} points (agent); hand recipe drop {a['hand_drop'] * 100:.2f} points")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=2)
    args = parser.parse_args()
    result = run(args.repeats, args.seconds)
    common.save("openvino_compression", dict(result, tool_versions=ovc.versions()))
    print(markdown(result))


if __name__ == "__main__":
    main()
