"""`edgeopt package --profile intel-cpu`: the real OpenVINO and NNCF on small models, and bad input."""
import hashlib
import pathlib

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import CALIB, EVAL, MODEL, bundle_manifest, bundle_member, model_bytes
from edgeopt import api

ASSETS = pathlib.Path(__file__).resolve().parent.parent / "assets"





def _save_ir(path, source=MODEL, static=True):
    """An IR of the shipped model made with OpenVINO itself, FP32 weights."""
    import openvino as ov
    model = ov.convert_model(str(source))
    if static:
        model.reshape({"image": [1, 1, 8, 8]})
    ov.save_model(model, str(path), compress_to_fp16=False)
    return path


def ffn_stack(path, seq=16, dims=(128, 512, 128, 512, 128), seed=0):
    """A transformer-FFN-like MatMul stack on [1, seq, hidden]: the weight-compression target."""
    rng = np.random.default_rng(seed)
    nodes, inits, prev = [], [], "x"
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        inits += [numpy_helper.from_array((rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32), f"w{i}"),
                  numpy_helper.from_array(np.zeros(b, np.float32), f"b{i}")]
        nodes += [helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"], name=f"matmul{i}"),
                  helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"])]
        prev = f"a{i}"
        if i < len(dims) - 2:
            nodes.append(helper.make_node("Relu", [prev], [f"r{i}"]))
            prev = f"r{i}"
    graph = helper.make_graph(nodes + [helper.make_node("Identity", [prev], ["hidden"])], "ffn",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, seq, dims[0]])],
                              [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, [1, seq, dims[-1]])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_throughput_hint_goes_into_the_bundle(cli, tmp_path):
    r = cli("package", MODEL, "--profile", "intel-cpu", "--performance-hint", "throughput", "-o", tmp_path / "t.edgepkg",
            "--json")
    assert r.exit_code == 0, r.stderr
    assert r.json()["runtime"]["options"]["performance_hint"] == "THROUGHPUT"


def test_fp32_is_ir_with_fp32_weights_and_a_real_f32_hint(ov_bundles):
    m = bundle_manifest(ov_bundles["fp32"]["path"])
    assert {f["path"] for f in m["files"]} == {"model/model.xml", "model/model.bin", "data/eval.npz"}
    assert m["model"] == "model/model.xml" and m["profile"]["backend"] == "openvino"
    assert m["runtime"]["name"] == "openvino"
    assert m["runtime"]["options"] == {"device": "CPU", "performance_hint": "LATENCY", "inference_precision": "f32",
                                       "model_cache": True}
    assert set(m["compression"]["weights_bytes"]) <= {"f32", "i64", "i32"}  # no FP16 compression for fp32
    p = m["parity"]
    assert p["passed"] and p["max_abs_error"] <= 1e-3 and p["host_inference_precision"] == "f32"
    assert m["inputs"] == [{"name": "image", "shape": [1, 1, 8, 8], "dtype": "float32"}]
    assert m["outputs"] == [{"name": "logits", "shape": [1, 10], "dtype": "float32"}]
    assert m["tools"]["openvino"].count(".") == 2 and "nncf" not in m["tools"]


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_half_precisions_compress_weights_and_say_what_the_host_ran(cli, tmp_path, precision):
    r = cli("package", MODEL, "--profile", "intel-cpu", "--precision", precision, "--eval-data", EVAL,
            "-o", tmp_path / "h.edgepkg", "--json")
    assert r.exit_code == 0, r.stderr
    m = r.json()
    assert m["runtime"]["options"]["inference_precision"] == {"fp16": "f16", "bf16": "bf16"}[precision]
    assert "f16" in m["compression"]["weights_bytes"] and "f32" not in m["compression"]["weights_bytes"]
    p = m["parity"]
    # The CPU plugin may run f16 as bf16 or f32 where the CPU lacks f16; the tolerance follows what ran.
    assert p["host_inference_precision"] in ("f16", "bf16", "f32") and p["passed"]
    assert p["accuracy_delta"] >= -0.01


def test_int8_with_nncf_quantizes_every_compute_op(ov_bundles):
    m8, m32 = ov_bundles["int8"], ov_bundles["fp32"]
    c = m8["compression"]
    assert (c["method"], c["algorithm"], c["preset"], c["subset_size"]) == ("nncf", "quantize", "performance", 200)
    assert c["ops"]["compute_ops"] == 4 and c["ops"]["left_in_float"] == 0 and c["ops"]["fake_quantize"] >= 4
    assert c["ops"]["weights_by_type"] == {"i8": 4}
    assert m8["tools"]["nncf"] and m8["tools"]["openvino"]
    assert m8["parity"]["metric"] == "top1_agreement" and m8["parity"]["accuracy_delta"] >= -0.01
    assert model_bytes(m8) < 0.5 * model_bytes(m32)
    hint = c["host_hint"]   # timed here through the agent's OpenVINO adapter, as ONNX Runtime bundles are
    assert hint["runtime"] == "openvino" and hint["rounds"] >= 5 and hint["ratio"] > 0 and hint["fp32_ms"] > 0


def test_accuracy_aware_int8_holds_the_drop(cli, tmp_path, ov_bundles):
    r = cli("package", MODEL, "--profile", "intel-cpu", "--quantize", "int8", "--calib", CALIB, "--eval-data", EVAL,
            "--max-accuracy-drop", "0", "-o", tmp_path / "aa.edgepkg", "--json")
    assert r.exit_code == 0, r.stderr
    m = r.json()
    assert m["compression"]["algorithm"] == "quantize_with_accuracy_control"
    assert m["compression"]["max_accuracy_drop"] == 0 and m["compression"]["validation"]["samples"] == 360
    assert any("accuracy control chose layers on the --eval-data" in n for n in m["notes"])
    assert m["parity"]["accuracy_delta"] >= 0  # no drop at all on the eval split
    if ov_bundles["int8"]["parity"]["accuracy_delta"] < 0:  # plain INT8 lost accuracy: layers were reverted
        assert m["compression"]["ops"]["left_in_float"] >= 1
        assert all(op.split(":")[0] in ("Convolution", "MatMul") for op in m["compression"]["ops"]["left_in_float_ops"])


def test_int8_weights_compresses_a_matmul_model(cli, tmp_path):
    model = ffn_stack(tmp_path / "ffn.onnx")
    r = cli("package", model, "--profile", "intel-cpu", "--quantize", "int8-weights", "-o", tmp_path / "w8.edgepkg",
            "--json")
    assert r.exit_code == 0, r.stderr
    m = r.json()
    c = m["compression"]
    assert (c["algorithm"], c["mode"]) == ("compress_weights", "int8_asym")
    assert c["ops"]["compute_ops"] == 4 and c["ops"]["left_in_float"] == 0
    assert set(c["ops"]["weights_by_type"]) <= {"u8", "i8"}
    assert model_bytes(m) < 0.3 * model.stat().st_size
    assert m["parity"]["metric"] == "sqnr_db" and m["parity"]["passed"]


def test_int4_weights_on_random_weights_records_its_sqnr(cli, tmp_path):
    """4-bit weights cost ~20 dB of SQNR per weight: on random weights the outputs keep ~15 dB, inside the
    quantized bar (10 dB) and far below int8-weights (~36 dB on the same model, test above)."""
    model = ffn_stack(tmp_path / "ffn.onnx")
    out = tmp_path / "w4.edgepkg"
    r = cli("package", model, "--profile", "intel-cpu", "--quantize", "int4-weights", "-o", out, "--json")
    assert r.exit_code == 0, r.stderr
    parity = r.json()["parity"]
    assert parity["metric"] == "sqnr_db" and 10 <= parity["sqnr_db"] < 25 and parity["passed"]
    c = r.json()["compression"]
    assert c["mode"] == "int4_sym" and c["group_size"] == 128
    assert c["ops"]["weights_by_type"].get("i4", 0) >= 3  # NNCF keeps the last layer in its int8 backup mode
    assert model_bytes(r.json()) < 0.2 * model.stat().st_size


def test_int4_weights_groups_layers_that_128_does_not_divide(cli, tmp_path):
    """NNCF groups INT4 weights by 128 input channels and failed the whole bundle on a layer of 96 (every
    MobileNet has such layers): such a layer is grouped by 32 instead, one of 40 channels stays INT8, and the
    table says what the weights became."""
    model = ffn_stack(tmp_path / "ffn.onnx", dims=(128, 512, 96, 512, 40, 128))
    r = cli("package", model, "--profile", "intel-cpu", "--quantize", "int4-weights", "-o", tmp_path / "w4.edgepkg")
    assert r.exit_code == 0, r.stderr
    m = bundle_manifest(tmp_path / "w4.edgepkg")
    c = m["compression"]
    assert c["group_size_fallback"].startswith("adjust") and c["ops"]["left_in_float"] == 0
    kinds = c["ops"]["weights_by_type"]
    assert (kinds.get("i4"), kinds.get("u8")) == (4, 1), kinds   # the 96-channel layer is among the i4
    assert f"weights: {kinds['i4']} i4, {kinds['u8']} u8" in " ".join(r.stdout.split())
    assert "quantized/float on this host" in r.stdout
    assert any("keep convolutions, embeddings and the last linear layer at INT8" in n for n in m["notes"])


def test_int4_of_a_cnn_says_no_layer_became_4_bit_and_int8_options_are_refused(cli, tmp_path):
    """A user walkthrough: on a CNN every layer stays at NNCF's INT8 backup, and the table read "int4_sym
    weight-only, 4/4 compute ops compressed"; --preset and --subset-size were ignored by weight-only compression
    while the recipe recorded them."""
    r = cli("package", MODEL, "--profile", "intel-cpu", "--quantize", "int4-weights", "-o", tmp_path / "c4.edgepkg",
            "--json")
    assert r.exit_code == 0, r.stderr
    assert any(n.startswith("warning: no layer became 4-bit") and "this is INT8 weight-only" in n
               for n in r.json()["notes"]), r.json()["notes"]
    for flag, value in (("--preset", "mixed"), ("--subset-size", "10")):
        refused = cli("package", MODEL, "--profile", "intel-cpu", "--quantize", "int4-weights", flag, value,
                      "-o", tmp_path / "x.edgepkg")
        assert refused.exit_code == 2 and f"{flag} applies to --quantize int8 on backend openvino" in refused.stderr


def test_an_ir_with_another_backend_than_the_profiles_says_to_leave_it_out(cli, tmp_path):
    """It said "profiles whose backend can: intel-cpu" to a user who had given --profile intel-cpu."""
    ir = _save_ir(tmp_path / "digits.xml")
    r = cli("package", ir, "--profile", "intel-cpu", "--backend", "onnxruntime", "-o", tmp_path / "x.edgepkg")
    assert r.exit_code == 2 and r.stderr.strip().endswith(
        "backend onnxruntime cannot package openvino-ir models; profile intel-cpu's own backend openvino can "
        "(leave --backend out)"), r.stderr


def test_ir_input_is_packaged_as_given(cli, tmp_path):
    ir = _save_ir(tmp_path / "digits.xml")
    r = cli("package", ir, "--profile", "intel-cpu", "--eval-data", EVAL, "-o", tmp_path / "ir.edgepkg", "--json")
    assert r.exit_code == 0, r.stderr
    m = r.json()
    assert m["source"]["format"] == "openvino-ir" and m["compression"]["ir"] == "as given"
    assert hashlib.sha256(bundle_member(m["path"], "model/model.bin")).hexdigest() == hashlib.sha256(ir.with_suffix(".bin").read_bytes()).hexdigest()
    assert m["parity"]["max_abs_error"] == 0.0 and m["source"]["accuracy"]["top1"] > 0.95


def test_ir_input_with_a_dynamic_batch_is_quantized(cli, tmp_path):
    ir = _save_ir(tmp_path / "digits.xml", static=False)
    r = cli("package", ir, "--profile", "intel-cpu", "--quantize", "int8", "--calib", CALIB, "--eval-data", EVAL,
            "-o", tmp_path / "irq.edgepkg", "--json")
    assert r.exit_code == 0, r.stderr
    m = r.json()
    assert "input image: dynamic batch dim, packaged at 1 (--input-shape sets another)" in m["notes"]
    assert m["compression"]["ops"]["left_in_float"] == 0 and m["parity"]["accuracy_delta"] >= -0.01


def test_pytorch_input(cli, tmp_path):
    r = cli("package", f"{ASSETS / 'tiny_torch.py'}:make_cnn", "--profile", "intel-cpu", "--input-shape",
            "pixels=1,3,16,16", "-o", tmp_path / "t.edgepkg", "--json")
    assert r.exit_code == 0, r.stderr
    m = r.json()
    assert m["source"]["format"] == "pytorch-module" and m["parity"]["passed"]
    assert m["inputs"] == [{"name": "pixels", "shape": [1, 3, 16, 16], "dtype": "float32"}]


def _bernoulli_model(path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"), helper.make_node("Bernoulli", ["r"], ["y"], name="coin")]
    onnx.save(helper.make_model(helper.make_graph(nodes, "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)]),
              str(path))
    return path


def _calib(path, n=200, shape=(1, 8, 8)):
    np.savez(path, image=np.random.default_rng(0).standard_normal((n, *shape)).astype(np.float32))
    return path


def _missing_bin(tmp):
    ir = _save_ir(tmp / "m.xml")
    ir.with_suffix(".bin").unlink()
    return [ir]


def _dynamic_ir(path):
    """An IR of the shipped model whose height and width are dynamic too: its Flatten takes 8x8 only."""
    import openvino as ov
    model = ov.convert_model(str(MODEL))
    model.reshape({"image": [-1, 1, -1, -1]})
    ov.save_model(model, str(path), compress_to_fp16=False)
    return path


def _foreign_bin(tmp):
    ir = _save_ir(tmp / "d.xml")
    weights = ir.with_suffix(".bin")
    weights.write_bytes(weights.read_bytes()[::-1])   # as long as its own: its constants read as garbage
    return [ir]


def _truncated_bin(tmp):
    ir = _save_ir(tmp / "t.xml")
    data = ir.with_suffix(".bin").read_bytes()
    ir.with_suffix(".bin").write_bytes(data[: len(data) // 2])
    return [ir]


BAD_INPUTS = {
    "unconvertible op": (lambda tmp: [_bernoulli_model(tmp / "coin.onnx")],
                         "cannot convert this model: ONNX op Bernoulli-17 (node 'coin') has no conversion rule"),
    "calibration of the wrong shape": (lambda tmp: [MODEL, "--quantize", "int8", "--calib", _calib(tmp / "c.npz", shape=(3, 8, 8))],
                                       "array 'image' has shape (200, 3, 8, 8); model input 'image' expects (N, 1, 8, 8)"),
    "calibration too small": (lambda tmp: [MODEL, "--quantize", "int8", "--calib", _calib(tmp / "c.npz", n=40)],
                              "c.npz) has 40 samples; NNCF INT8 needs at least 100"),
    "subset larger than the calibration": (lambda tmp: [MODEL, "--quantize", "int8", "--calib", CALIB, "--subset-size", "300"],
                                           f"the calibration data ({CALIB}) has 200 samples, fewer than --subset-size 300"),
    # OpenVINO's own first line is where in its C++ it was raised: the reason and the node are its last lines
    "IR with another IR's weights": (_foreign_bin, "d.xml: OpenVINO cannot read this IR (is d.bin the weights file "
                                                   "saved with it?): Axis "),
    "IR of shapes it cannot take": (lambda tmp: [_dynamic_ir(tmp / "s.xml"), "--input-shape", "image=1,1,4,4"],
                                    "s.xml: the IR does not take the input shapes image 1,1,4,4: Non-'-1' output "
                                    "dimensions do not evenly divide the input dimensions (node /Flatten)"),
    "IR without its .bin": (_missing_bin, "its weights file m.bin is missing"),
    "IR with a truncated .bin": (_truncated_bin, "t.bin is truncated"),
    "activation range without int8": (lambda tmp: [MODEL, "--backend-option", "activation_range=minmax"],
                                      "backend option activation_range applies to --quantize int8 on backend openvino"),
    "model type without int8": (lambda tmp: [MODEL, "--backend-option", "model_type=transformer"],
                                "backend option model_type applies to --quantize int8 on backend openvino"),
    "unknown activation range": (lambda tmp: [MODEL, "--quantize", "int8", "--calib", CALIB, "--backend-option",
                                              "activation_range=histogram"],
                                 "activation_range: 'histogram' is not one of minmax"),
    "accuracy-aware without labels": (lambda tmp: [MODEL, "--quantize", "int8", "--calib", CALIB, "--max-accuracy-drop", "0.01"],
                                      "--max-accuracy-drop needs labelled eval data"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(cli, tmp_path, case):
    make, message = BAD_INPUTS[case]
    args = make(tmp_path)
    before = sorted(tmp_path.iterdir())
    r = cli("package", *args, "--profile", "intel-cpu", "-o", tmp_path / "out.edgepkg", "--quiet")
    assert r.exit_code == 2
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert sorted(tmp_path.iterdir()) == before  # nothing at the output path, no leftovers beside it


def test_a_small_calibration_set_is_allowed_with_an_explicit_subset(cli, tmp_path):
    r = cli("package", MODEL, "--profile", "intel-cpu", "--quantize", "int8", "--calib", _calib(tmp_path / "c.npz", n=40),
            "--subset-size", "40", "-o", tmp_path / "q.edgepkg", "--json", "--allow-mismatch")
    assert r.exit_code == 0, r.stderr
    assert r.json()["compression"]["subset_size"] == 40


def test_the_onnxruntime_path_refuses_openvino_only_input_and_options(cli, tmp_path):
    ir = _save_ir(tmp_path / "d.xml")
    r = cli("package", ir, "-o", tmp_path / "x.edgepkg")
    assert r.exit_code == 2 and "backend onnxruntime cannot package openvino-ir models; profiles whose backend can: intel-cpu" in r.stderr
    r = cli("package", MODEL, "--quantize", "int8-weights", "-o", tmp_path / "x.edgepkg")
    assert r.exit_code == 2 and "backend onnxruntime supports --quantize none, dynamic, int8, not int8-weights" in r.stderr
    r = cli("package", MODEL, "--quantize", "int8", "--calib", CALIB, "--preset", "mixed", "-o", tmp_path / "x.edgepkg")
    assert r.exit_code == 2 and "backend onnxruntime has no --preset option" in r.stderr
    r = cli("package", MODEL, "--precision", "bf16", "-o", tmp_path / "x.edgepkg")
    assert r.exit_code == 2 and "supports --precision fp32, fp16, not bf16" in r.stderr
    assert not (tmp_path / "x.edgepkg").exists()


def test_inspect_an_ir(cli, tmp_path):
    r = cli("inspect", _save_ir(tmp_path / "d.xml", static=False), "--json")
    assert r.exit_code == 0, r.stderr
    info = r.json()
    assert info["format"] == "openvino-ir" and info["dynamic_dims"] == {"image": ["?"]}
    assert info["inputs"] == [{"name": "image", "shape": [1, 1, 8, 8], "dtype": "float32"}]
    assert info["op_types"]["Convolution"] == 3


def test_an_ir_from_pytorch_with_nameless_outputs_and_dynamic_dims(cli, tmp_path):
    """`ov.convert_model(module)` leaves outputs without a tensor name, and that IR was refused; `inspect` of an IR
    with dynamic spatial dims refused too, where ONNX's reports them. And the weights save_model stores as f16
    by default are said, not read as fp32."""
    import openvino as ov
    import torch

    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    ir = tmp_path / "pt.xml"
    ov.save_model(ov.convert_model(module.eval(), example_input=torch.zeros(1, 3, 16, 16)), str(ir))
    assert not ov.Core().read_model(str(ir)).outputs[0].get_names()   # as OpenVINO makes it
    info = cli("inspect", ir, "--json")
    assert info.exit_code == 0, info.stderr
    assert [o["name"] for o in info.json()["outputs"]] == ["output"] and info.json()["dynamic_dims"]
    assert any("has dynamic dims" in n for n in info.json()["notes"])
    from edgeopt.report.tables import inspect_rows   # an IR names no producer: "—", not an empty row
    assert dict(inspect_rows(info.json()))["producer"] == (info.json()["producer"] or "—") != ""
    r = cli("package", ir, "--profile", "intel-cpu", "--input-shape", f"{info.json()['inputs'][0]['name']}=1,3,16,16",
            "-o", tmp_path / "pt.edgepkg", "--json")
    assert r.exit_code == 0, r.stderr
    m = r.json()
    assert m["outputs"] == [{"name": "output", "shape": [1, 4], "dtype": "float32"}] and m["parity"]["passed"]
    assert any("names no tensor for output" in n for n in m["notes"])
    assert any("stores its weights as f16" in n for n in m["notes"])


def test_inspect_counts_an_int8_irs_weights(cli, tmp_path, ov_bundles):
    """Its weights are i8 constants: counting float constants only read 260 of the model's 25,866."""
    import tarfile

    with tarfile.open(ov_bundles["int8"]["path"]) as tar:
        tar.extractall(tmp_path, filter="data")
    fp32 = cli("inspect", _save_ir(tmp_path / "fp32.xml"), "--json").json()["parameters"]
    int8 = cli("inspect", tmp_path / "model" / "model.xml", "--json").json()["parameters"]
    assert fp32 <= int8 <= 1.02 * fp32, (fp32, int8)   # plus the FakeQuantize ranges


def test_an_ir_quantized_already_is_not_quantized_again(cli, tmp_path, ov_bundles):
    """An INT8 bundle's own model.xml went through NNCF again without a word (a user review)."""
    import tarfile

    with tarfile.open(ov_bundles["int8"]["path"]) as tar:
        tar.extractall(tmp_path, filter="data")
    ir = tmp_path / "model" / "model.xml"
    r = cli("package", ir, "--profile", "intel-cpu", "--quantize", "int8", "--calib", CALIB, "-o", tmp_path / "x.edgepkg")
    assert r.exit_code == 2 and f"{ir}: the model is quantized already (" in r.stderr, r.stderr
    assert "FakeQuantize ops): package it with --quantize none" in r.stderr and not (tmp_path / "x.edgepkg").exists()


def _activation_ranges(bundle) -> dict:
    """{FakeQuantize name: input_high - input_low} of the activation FakeQuantizes of a bundle's IR."""
    import tarfile

    import openvino as ov
    with tarfile.open(bundle) as tar:
        xml, weights = (tar.extractfile(f"model/model.{ext}").read() for ext in ("xml", "bin"))
    model = ov.Core().read_model(xml, ov.Tensor(np.frombuffer(weights, np.uint8)))
    ranges = {}
    for op in model.get_ordered_ops():
        if op.get_type_name() == "FakeQuantize" and op.input_value(0).get_node().get_type_name() != "Constant":
            low, high = (op.input_value(i).get_node().get_data() for i in (1, 2))
            ranges[op.get_friendly_name()] = float((high - low).max())
    return ranges


def test_activation_range_minmax_widens_ranges_and_is_recorded(cli, tmp_path, ov_bundles):
    r = cli("package", MODEL, "--profile", "intel-cpu", "--quantize", "int8", "--calib", CALIB,
            "--backend-option", "activation_range=minmax", "-o", tmp_path / "mm.edgepkg", "--json")
    assert r.exit_code == 0, r.stderr
    m = r.json()
    assert m["compression"]["activation_range"] == "minmax" and m["recipe"]["package"]["activation_range"] == "minmax"
    assert ov_bundles["int8"]["compression"]["activation_range"] == "nncf-default"
    # the default ("" = auto) checked NNCF's ranges on the calibration samples and kept them (>= 10 dB SQNR)
    assert list(ov_bundles["int8"]["compression"]["activation_range_sqnr_db"]) == ["nncf-default"]
    assert ov_bundles["int8"]["compression"]["activation_range_sqnr_db"]["nncf-default"] >= 10
    default, minmax = _activation_ranges(ov_bundles["int8"]["path"]), _activation_ranges(tmp_path / "mm.edgepkg")
    assert default.keys() == minmax.keys() and default
    # The global min/max over every sample covers at least the mean of per-batch extremes, and more somewhere.
    assert all(minmax[k] >= default[k] * (1 - 1e-6) for k in default)
    assert any(minmax[k] > default[k] * 1.05 for k in default)


def test_activation_range_is_a_searched_int8_option():
    from edgeopt.convert import backend_for
    from edgeopt.profiles import load_profile
    from edgeopt.search import space

    dims = {d.name: d for d in space.build(backend_for(load_profile("intel-cpu")), "onnx", True, False, None)}
    assert dims["activation_range"].choices == ("", "minmax") and dims["activation_range"].int8_only
    package, _, _ = space.options(list(dims.values()), {"quantize": "int8", "activation_range": "minmax"})
    assert package["activation_range"] == "minmax"
    package, _, _ = space.options(list(dims.values()), {"quantize": "none", "activation_range": "minmax"})
    assert "activation_range" not in package
    assert "activation_range" not in {d.name for d in space.build(backend_for(load_profile("intel-cpu")), "onnx",
                                                                  False, False, None)}


def test_a_transformer_gets_nncfs_transformer_scheme_and_a_cnn_does_not(tmp_path, ov_bundles):
    """NNCF's documented setting for transformers, chosen by the rule ONNX Runtime's dynamic choice uses."""
    from zoo import ZOO
    from zoo.data import write_files

    files = write_files(ZOO["deit_tiny"], tmp_path, ("legacy",))
    m = api.package(str(files["onnx"]["legacy"]), "intel-cpu", tmp_path / "deit.edgepkg", quantize="int8",
                    calib=str(files["calib"]), subset_size=32, allow_mismatch=True)
    kind = m["compression"]["model_type"]
    assert kind["used"] == "transformer" and kind["matmul_mac_share"] >= 0.5 and m["parity"]["passed"]
    assert ov_bundles["int8"]["compression"]["model_type"]["used"] == "default"   # the digits CNN
    forced = api.package(str(files["onnx"]["legacy"]), "intel-cpu", tmp_path / "d.edgepkg", quantize="int8",
                         calib=str(files["calib"]), subset_size=32, allow_mismatch=True,
                         backend_options={"model_type": "default"})
    assert forced["compression"]["model_type"] == {"requested": "default", "used": "default"}
    # the transformer scheme is the more accurate on this model (29.8 dB against 22.9 when measured)
    assert m["parity"]["sqnr_db"] > forced["parity"]["sqnr_db"]


def test_the_activation_range_check_skips_outputs_whose_length_varies():
    """Detections after NMS: their count differs between calls and runtimes; SQNR cannot subtract them."""
    from edgeopt.compress.nncf_quantize import _min_sqnr

    rows = [np.ones((5, 4), np.float32), np.ones((3, 4), np.float32)]
    fixed = [np.arange(8, dtype=np.float32).reshape(2, 4)] * 2
    noisy = [a + 0.5 for a in fixed]
    assert _min_sqnr([rows], [[rows[0], np.ones((4, 4), np.float32)]]) == 200.0
    assert _min_sqnr([rows, fixed], [[rows[0], rows[1][:2]], noisy]) < 30


@pytest.mark.parametrize("quantize", ["none", "int8"])
def test_one_model_packaged_twice_in_a_process_is_one_ir(tmp_path, quantize):
    """OpenVINO names what it folds from a counter global to the process ("Reshape_15", then "Reshape_2707"):
    every rebuild in optimize read as "its files differ from those measured", and no content key matched."""
    def model_files(name):
        m = api.package(str(MODEL), "intel-cpu", tmp_path / f"{name}.edgepkg", quantize=quantize,
                        calib=str(CALIB) if quantize == "int8" else None, eval_data=str(EVAL))
        return {f["path"]: f["sha256"] for f in m["files"] if f["role"] == "model"}
    first = model_files("a")
    assert first and model_files("b") == first


def test_the_host_hint_leaves_no_compiled_blob_in_the_model_cache(tmp_path, monkeypatch):
    """A large-model walkthrough: one ResNet-50 INT8 bundle left 125 MB of compiled blobs in ~/.cache for good,
    the host hint's compilations of models the host compiles once; the bundle keeps its cache for the device."""
    monkeypatch.setenv("EDGEOPT_AGENT_CACHE", str(tmp_path / "cache"))
    m = api.package(str(MODEL), "intel-cpu", tmp_path / "q.edgepkg", quantize="int8", calib=str(CALIB),
                    eval_data=str(EVAL))
    assert m["compression"]["host_hint"]["ratio"] > 0 and m["runtime"]["options"]["model_cache"] is True
    cache = tmp_path / "cache" / "openvino-model-cache"
    assert not cache.exists() or not any(cache.iterdir())
