"""Packaging time on OpenVINO: edgeopt (intel-cpu) against calling openvino.convert_model +
nncf.quantize (+ save_model) directly, per model, FP32 and INT8, each in a fresh process with
openvino and nncf imported before the clock starts on both sides.

Two edgeopt figures: `conversion` is the same work as the hand recipe (convert, quantize, save;
edgeopt's own clock around its backend), `package` is the whole `edgeopt package` (intake checks,
conversion, the parity run of source and artifact on the calibration/eval samples, the bundle
with sha256s). Overhead ratio = edgeopt / hand, median over the repeats (target <= 1.1 for
conversion + quantization).

    python benchmarks/bench_openvino_packaging.py [--repeats 3]
"""
from __future__ import annotations

import argparse

import common
import openvino_common as ovc


def run(repeats) -> dict:
    rows = []
    for name, info in ovc.models().items():
        for int8 in (False, True):
            out = common.CACHE / "packaging" / name
            out.mkdir(parents=True, exist_ok=True)
            runs = []
            for r in range(repeats):
                if r % 2 == 0:  # alternate which side goes first
                    hand = ovc.hand_recipe(info["model"], info["calib"], out, int8)
                    edge = ovc.edgeopt_recipe(info["model"], info["calib"], out, int8)
                else:
                    edge = ovc.edgeopt_recipe(info["model"], info["calib"], out, int8)
                    hand = ovc.hand_recipe(info["model"], info["calib"], out, int8)
                runs.append({"hand_s": hand["seconds"], "edgeopt_conversion_s": edge["conversion_s"],
                             "edgeopt_hint_s": edge["hint_s"],
                             "edgeopt_package_s": edge["package_s"], "hand_process_s": hand["process_s"],
                             "edgeopt_process_s": edge["process_s"]})
            rows.append({"model": name, "precision": "int8" if int8 else "fp32", "runs": runs,
                         "hand_s": common.median(r["hand_s"] for r in runs),
                         "edgeopt_conversion_s": common.median(r["edgeopt_conversion_s"] for r in runs),
                         "edgeopt_hint_s": common.median(r["edgeopt_hint_s"] for r in runs),
                         "edgeopt_package_s": common.median(r["edgeopt_package_s"] for r in runs),
                         "conversion_ratio": common.median(r["edgeopt_conversion_s"] / r["hand_s"] for r in runs),
                         "package_ratio": common.median(r["edgeopt_package_s"] / r["hand_s"] for r in runs),
                         "process_ratio": common.median(r["edgeopt_process_s"] / r["hand_process_s"] for r in runs)})
    return {"repeats": repeats, "rows": rows}


def markdown(result) -> str:
    rows = []
    for r in result["rows"]:
        rows.append([r["model"], r["precision"], f"{r['hand_s']:.2f}", f"{r['edgeopt_conversion_s']:.2f}",
                     f"**{r['conversion_ratio']:.2f}**", f"{r['edgeopt_hint_s']:.2f}", f"{r['edgeopt_package_s']:.2f}",
                     f"{r['package_ratio']:.2f}", f"{r['process_ratio']:.2f}"])
    return common.md_table(["model", "bundle", "hand s (convert+quantize+save)", "edgeopt conversion s (no hint)",
                            "conversion ratio", "host hint s", "edgeopt package s (all)", "package ratio",
                            "whole-process ratio"], rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    result = run(args.repeats)
    common.save("openvino_packaging", dict(result, tool_versions=ovc.versions()))
    print(markdown(result))


if __name__ == "__main__":
    main()
