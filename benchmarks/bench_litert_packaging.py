"""Packaging time on LiteRT: `edgeopt package --profile raspberry-pi-5` against the same converter chain
run by hand (torch module -> litert_torch.convert(...).export() -> ai-edge-quantizer static_wi8_ai8,
the quantizer's default calibrate, quantize, write), MobileNetV2-sized CNN, full INT8 on its 64
calibration samples and FP32, each side in a fresh process with torch, litert-torch and
ai-edge-quantizer imported before the clock starts.

Figures per run: edgeopt `package` (the whole CLI command: intake checks, ONNX -> torch, conversion,
quantization, the parity run of source and artifact on the calibration samples, the bundle with
its sha256s), edgeopt `conversion` (its backend's own clock), the hand recipe's time, and each
process's whole wall time (imports and interpreter start included). Medians over the repeats,
the side that goes first alternating (target: edgeopt INT8 package <= 30 s on this machine).

    python benchmarks/bench_litert_packaging.py [--repeats 3]
"""
from __future__ import annotations

import argparse

import cnn_models
import common
import litert_common as lc

TARGET_S = 30.0


def run(repeats=3) -> dict:
    cnn_models.mobilenet_v2_onnx()  # exported (edgeopt's input) and saved (the hand recipe's) once,
    cnn_models.mobilenet_v2_state_dict()  # outside every clock
    out = common.CACHE / "packaging-litert"
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for mode in ("int8", "fp32"):
        runs = []
        for r in range(repeats):
            def both(edgeopt_first=r % 2 == 0):
                if edgeopt_first:
                    edge = lc.edgeopt_recipe(mode, out)
                    return edge, lc.hand_recipe(mode, out)
                hand = lc.hand_recipe(mode, out)
                return lc.edgeopt_recipe(mode, out), hand

            (edge, hand), foreign, tries = common.checked(both)
            runs.append({"hand_s": hand["seconds"], "hand_convert_s": hand["convert_s"],
                         "edgeopt_package_s": edge["package_s"], "edgeopt_conversion_s": edge["conversion_s"],
                         "hand_process_s": hand["process_s"], "edgeopt_process_s": edge["process_s"],
                         "hand_imports_s": hand["imports_s"], "edgeopt_imports_s": edge["imports_s"],
                         "foreign_cpu": round(foreign, 3), "tries": tries})
        med = {k: common.median(r[k] for r in runs) for k in runs[0] if k not in ("foreign_cpu", "tries")}
        rows.append(dict(med, model="mobilenet_v2", precision=mode, runs=runs, command=edge["command"],
                         package_ratio=common.median(r["edgeopt_package_s"] / r["hand_s"] for r in runs),
                         conversion_ratio=common.median(r["edgeopt_conversion_s"] / r["hand_s"] for r in runs),
                         process_ratio=common.median(r["edgeopt_process_s"] / r["hand_process_s"] for r in runs)))
    return {"repeats": repeats, "calibration_samples": cnn_models.CALIB_SAMPLES, "target_s": TARGET_S, "rows": rows}


def markdown(result) -> str:
    rows = []
    for r in result["rows"]:
        verdict = ("yes" if r["edgeopt_process_s"] <= TARGET_S else "**no**") if r["precision"] == "int8" else ""
        rows.append([r["model"], r["precision"], f"{r['edgeopt_package_s']:.1f}", f"{r['edgeopt_conversion_s']:.1f}",
                     f"{r['hand_s']:.1f}", f"**{r['package_ratio']:.2f}**", f"{r['conversion_ratio']:.2f}",
                     f"{r['edgeopt_process_s']:.1f}", f"{r['hand_process_s']:.1f}", f"{r['process_ratio']:.2f}",
                     verdict])
    shares = [x["foreign_cpu"] for r in result["rows"] for x in r["runs"]]
    table = common.md_table(["model", "bundle", "edgeopt package s", "edgeopt conversion s",
                             "by hand s (convert+export[+calibrate+quantize+write])", "package / hand",
                             "conversion / hand", "edgeopt whole process s", "by-hand whole process s",
                             "process ratio", f"whole edgeopt process <= {TARGET_S:.0f} s"], rows)
    return f"{table}\n\n{common.disturbed_note(shares)}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    result = run(args.repeats)
    common.save("litert_packaging", dict(result, tool_versions=lc.versions()))
    print(markdown(result))


if __name__ == "__main__":
    main()
