"""`edgeopt package --profile raspberry-pi-5|4`: real litert-torch conversions, real ai-edge-quantizer
INT8, the real LiteRT runtime in the agent, layouts handled, and bad input refused cleanly."""
import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from onnx import TensorProto, helper, numpy_helper

from conftest import CALIB, EVAL, FAST_BENCH_ARGS, MODEL, bundle_member, model_bytes
from edgeopt import api

ASSETS = pathlib.Path(__file__).resolve().parent.parent / "assets"





def test_fp32_is_a_tflite_with_nhwc_input_and_tight_parity(pi_bundles):
    m = pi_bundles["fp32"]
    assert m["model"] == "model/model.tflite" and m["profile"]["backend"] == "tflite"
    assert bundle_member(m["path"], "model/model.tflite")[4:8] == b"TFL3"
    assert m["runtime"]["name"] == "litert" and m["runtime"]["threads"] == 4
    assert m["runtime"]["options"] == {"xnnpack": True, "tensor_names": {"image": "args_0", "logits": "output_0"}}
    assert m["inputs"] == [{"name": "image", "shape": [1, 8, 8, 1], "dtype": "float32", "layout": "NHWC",
                            "source_layout": "NCHW"}]
    assert m["outputs"] == [{"name": "logits", "shape": [1, 10], "dtype": "float32"}]
    assert m["parity"]["passed"] and m["parity"]["max_abs_error"] < 1e-4
    assert set(m["tools"]) >= {"litert-torch", "ai-edge-quantizer", "ai-edge-litert"}


def test_eval_data_is_shipped_in_the_artifacts_layout(pi_bundles):
    import io
    with np.load(io.BytesIO(bundle_member(pi_bundles["fp32"]["path"], "data/eval.npz"))) as shipped, np.load(EVAL) as given:
        assert given["image"].shape[1:] == (1, 8, 8) and shipped["image"].shape[1:] == (8, 8, 1)
        np.testing.assert_array_equal(shipped["image"], given["image"].transpose(0, 2, 3, 1))


def test_full_integer_int8_has_int8_io_with_scale_and_zero_point(pi_bundles):
    m = pi_bundles["int8"]
    (inp,), (out,) = m["inputs"], m["outputs"]
    assert inp["dtype"] == "int8" and out["dtype"] == "int8"
    assert inp["quantization"]["scale"] > 0 and -128 <= inp["quantization"]["zero_point"] <= 127
    assert m["compression"]["io"] == "int8" and m["compression"]["calibration"]["samples"] == 200
    p = m["parity"]
    assert p["passed"] and p["metric"] == "top1_agreement" and p["top1_agreement"] >= 0.97
    assert abs(p["accuracy_delta"]) <= 0.01      # the INT8 drop budget: at most 1 point
    assert model_bytes(m) < 0.4 * model_bytes(pi_bundles["fp32"])
    hint = m["compression"]["host_hint"]   # the int8-I/O .tflite timed against its float twin, LiteRT on this host
    assert hint["runtime"] == "litert" and hint["rounds"] >= 5 and hint["ratio"] > 0
    assert "host_hint" not in pi_bundles["fp32"]["compression"]


def test_int8_float_io_keeps_float_inputs_and_outputs(pi_bundles):
    m = pi_bundles["int8-float-io"]
    assert m["inputs"][0]["dtype"] == "float32" and "quantization" not in m["inputs"][0]
    assert m["outputs"][0]["dtype"] == "float32" and m["compression"]["io"] == "float"
    assert m["parity"]["passed"]


def test_fp16_and_dynamic_shrink_the_weights(pi_bundles):
    fp32 = model_bytes(pi_bundles["fp32"])
    assert model_bytes(pi_bundles["fp16"]) < 0.6 * fp32
    assert model_bytes(pi_bundles["dynamic"]) < 0.4 * fp32
    assert pi_bundles["fp16"]["parity"]["max_abs_error"] < 5e-2 and pi_bundles["dynamic"]["parity"]["passed"]


@pytest.mark.parametrize("key", ["fp32", "int8"])
def test_agent_runs_litert_with_xnnpack_and_gets_the_source_accuracy(cli, pi_bundles, tmp_path, key):
    r = cli("bench", pi_bundles[key]["path"], "--results-dir", tmp_path, "--json", *FAST_BENCH_ARGS)
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    rt = doc["runtime"]
    assert rt["name"] == "litert" and rt["interpreter"] == "ai_edge_litert" and rt["threads"] == 4
    assert rt["xnnpack"] == {"requested": True, "applied": True}
    assert rt["int8_io"] is (key == "int8")
    acc = doc["accuracy"]
    assert acc["n"] == 360 and acc["top1"] > 0.98 and abs(acc["drop"]) <= 0.01


def test_xnnpack_can_be_turned_off_for_a_run(cli, pi_bundles, tmp_path):
    r = cli("bench", pi_bundles["fp32"]["path"], "--results-dir", tmp_path, "--runtime-option", "xnnpack=false",
            "--json", *FAST_BENCH_ARGS)
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    assert doc["runtime"]["xnnpack"] == {"requested": False, "applied": False}
    assert doc["settings"]["runtime_options"] == {"xnnpack": False}
    assert doc["accuracy"]["top1"] > 0.98


def test_a_tflite_is_inspected_and_packaged_as_it_is(cli, pi_bundles, tmp_path):
    model = tmp_path / "digits.tflite"
    model.write_bytes(bundle_member(pi_bundles["int8"]["path"], "model/model.tflite"))
    info = cli("inspect", model, "--json").json()
    ops = info["op_types"]
    assert info["format"] == "tflite" and ops["CONV_2D"] + ops["DEPTHWISE_CONV_2D"] == 3  # a 1-channel conv is depthwise
    assert info["parameters"] > 20000 and info["producer"]
    # the same MACs counted on the converted graph as on its ONNX source (the 1-channel conv as depthwise)
    assert info["flops_estimate"] == cli("inspect", MODEL, "--json").json()["flops_estimate"]
    assert info["inputs"][0]["dtype"] == "int8" and info["inputs"][0]["shape"] == [1, 8, 8, 1]
    # what code feeding it needs, in the table: scale and zero-point (and, of the bundle, the layout it changed)
    scale, zero = info["inputs"][0]["quantization"]["scale"], info["inputs"][0]["quantization"]["zero_point"]
    shown = " ".join(cli("inspect", model).stdout.split())
    assert f"int8[1, 8, 8, 1] (scale {scale:.6g}, zero-point {zero})" in shown, shown
    shown = " ".join(cli("inspect", pi_bundles["int8"]["path"]).stdout.split())
    assert f"int8[1, 8, 8, 1] (NHWC, from the source's NCHW; scale {scale:.6g}, zero-point {zero})" in shown, shown
    # its own shape given is taken (a script passes them always); another one is refused, naming the file's
    name = info["inputs"][0]["name"]
    assert cli("inspect", model, "--input-shape", "1,8,8,1").exit_code == 0
    assert cli("inspect", model, "--input-shape", f"{name}=1,8,8,1").exit_code == 0
    other = cli("inspect", model, "--input-shape", "1,1,8,8")
    assert other.exit_code == 2 and other.stderr.strip() == (
        f"edgeopt: error: {model}: a .tflite has fixed input shapes ({name} 1,8,8,1); --input-shape 1,1,8,8 is not "
        "one of them")
    with np.load(EVAL) as f:  # a .tflite's own layout is the source layout: NHWC here, int8 data given as floats
        np.savez(tmp_path / "eval-nhwc.npz", image=f["image"].transpose(0, 2, 3, 1), labels=f["labels"])
    r = cli("package", model, "--profile", "raspberry-pi-4", "--eval-data", tmp_path / "eval-nhwc.npz",
            "-o", tmp_path / "as-is.edgepkg", "--json")
    assert r.exit_code == 0, r.stderr
    m = r.json()
    assert m["source"]["format"] == "tflite" and m["compression"]["precision"] == "as-is"
    assert m["parity"]["passed"] and m["parity"]["artifact_top1"] > 0.98
    assert bundle_member(m["path"], "model/model.tflite") == model.read_bytes()
    from edgeopt.report.tables import package_rows   # an INT8 .tflite read "compression none", parity "pass"
    rows = dict(package_rows(m))
    assert rows["compression"] == "as given (the model's own, unchanged here)"
    assert rows["parity"].endswith("(the artifact is the given file: this checks that it loads and runs here, not a "
                                   "conversion)")
    bad = cli("package", model, "--profile", "raspberry-pi-4", "--quantize", "dynamic", "-o", tmp_path / "no.edgepkg")
    assert bad.exit_code == 2 and "packaged as it is" in bad.stderr
    # said first, not after a calibration file it would never use was refused for its layout (or asked for)
    for calib in (["--calib", CALIB], []):
        bad = cli("package", model, "--profile", "raspberry-pi-4", "--quantize", "int8", *calib,
                  "-o", tmp_path / "no.edgepkg")
        assert bad.exit_code == 2 and "a .tflite is packaged as it is" in bad.stderr and "loading" not in bad.stderr
    other = cli("package", model, "--profile", "generic", "-o", tmp_path / "no.edgepkg")
    assert other.exit_code == 2 and "cannot package tflite models" in other.stderr and "raspberry-pi-5" in other.stderr
    assert not (tmp_path / "no.edgepkg").exists()


def test_pytorch_module_input_converts_for_the_pi(cli, tmp_path):
    r = cli("package", f"{ASSETS / 'tiny_torch.py'}:make_cnn", "--profile", "raspberry-pi-5",
            "--input-shape", "input=1,3,16,16", "-o", tmp_path / "t.edgepkg", "--json")
    assert r.exit_code == 0, r.stderr
    m = r.json()
    assert m["source"]["format"] == "pytorch-module" and m["inputs"][0]["shape"] == [1, 16, 16, 3]
    assert m["compression"]["converter"] == "pytorch -> litert-torch"   # no ONNX on the way
    assert m["parity"]["passed"] and m["parity"]["max_abs_error"] < 1e-4


def _channels_last_model(path: pathlib.Path) -> None:
    """An ONNX model that takes NHWC images, as a Keras export does: a Transpose to NCHW, then a Conv."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Transpose", ["x"], ["nchw"], perm=[0, 3, 1, 2]),
             helper.make_node("Conv", ["nchw", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("GlobalAveragePool", ["c"], ["g"]),
             helper.make_node("Flatten", ["g"], ["y"])]
    graph = helper.make_graph(nodes, "nhwc", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 16, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
                              [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_an_input_the_source_takes_channels_last_is_kept_as_it_is(cli, tmp_path):
    """A [1, 16, 16, 3] input was permuted as if NCHW to [1, 16, 3, 16], its data with it: parity passed, and an
    application's camera frames were scrambled (a walkthrough). nhwc_inputs=all still permutes it."""
    model = tmp_path / "nhwc.onnx"
    _channels_last_model(model)
    data = tmp_path / "data.npz"
    np.savez(data, x=np.random.default_rng(1).standard_normal((32, 16, 16, 3)).astype(np.float32))
    r = cli("package", model, "--profile", "raspberry-pi-5", "--quantize", "int8", "--calib", data, "-o",
            tmp_path / "kept.edgepkg", "--json")
    assert r.exit_code == 0, r.stderr
    m = r.json()
    assert m["inputs"][0]["shape"] == [1, 16, 16, 3] and "layout" not in m["inputs"][0], m["inputs"]
    assert m["parity"]["passed"], m["parity"]
    assert any(n.startswith("x: channels-last in the source already") for n in m["notes"]), m["notes"]
    import ai_edge_litert.interpreter as litert
    runner = litert.Interpreter(model_content=bundle_member(m["path"], "model/model.tflite"))
    assert list(runner.get_input_details()[0]["shape"]) == [1, 16, 16, 3]
    r = cli("package", model, "--profile", "raspberry-pi-5", "--backend-option", "nhwc_inputs=all", "-o",
            tmp_path / "all.edgepkg", "--json")
    assert r.exit_code == 0, r.stderr
    assert r.json()["inputs"][0]["shape"] == [1, 16, 3, 16] and r.json()["inputs"][0]["layout"] == "NHWC"


def _transformer_int8(cli, tmp_path, *options):
    """The manifest of `package --quantize int8` of a two-block transformer (PyTorch input) for the Pi."""
    calib = tmp_path / "calib.npz"
    np.savez(calib, input=np.random.default_rng(0).standard_normal((16, 8, 32)).astype(np.float32))
    out = tmp_path / f"{len(list(tmp_path.glob('*.edgepkg')))}.edgepkg"
    r = cli("package", f"{ASSETS / 'tiny_torch.py'}:make_transformer_block", "--profile", "raspberry-pi-5",
            "--input-shape", "input=1,8,32", "--quantize", "int8", "--calib", calib, *options, "-o", out, "--json")
    assert r.exit_code == 0, r.stderr
    return r.json()


def test_int8_of_a_transformer_is_dynamic_range_by_default(cli, tmp_path):
    """The rule ONNX Runtime and OpenVINO follow, counted on the float .tflite (PyTorch input has no ONNX here):
    full-integer ConvNeXt ran 3x float on XNNPACK, dynamic range 0.5x."""
    m = _transformer_int8(cli, tmp_path)
    method = m["compression"]["int8_method"]
    assert method["requested"] == "auto" and method["used"] == "dynamic" and method["matmul_mac_share"] > 0.5
    assert "int8_ops" not in m["compression"] and m["compression"]["io"] == "float"
    assert [i["dtype"] for i in m["inputs"]] == ["float32"]
    assert any(n.startswith("INT8 dynamic: fully connected layers hold") for n in m["notes"])
    from edgeopt.report.tables import _compression
    assert _compression(m["compression"]).startswith("INT8 dynamic-range weights")
    assert m["parity"]["passed"]
    # a setting only full-integer INT8 has asks for it
    static = _transformer_int8(cli, tmp_path, "--int8-io", "int8")
    assert static["compression"]["int8_method"] == {"requested": "auto", "used": "static", "because": ["int8_io=int8"]}
    assert static["inputs"][0]["dtype"] == "int8"


def test_int8_method_dynamic_refuses_the_settings_of_full_integer_int8(cli, tmp_path):
    r = cli("package", MODEL, "--profile", "raspberry-pi-5", "--quantize", "int8", "--calib", CALIB,
            "--backend-option", "int8_method=dynamic", "--backend-option", "int8_ops=compute",
            "-o", tmp_path / "x.edgepkg")
    assert r.exit_code == 2 and "int8_ops apply to static INT8, not int8_method=dynamic" in r.stderr
    r = cli("package", MODEL, "--profile", "raspberry-pi-5", "--quantize", "dynamic",
            "--backend-option", "int8_method=static", "-o", tmp_path / "x.edgepkg")
    assert r.exit_code == 2 and "int8_method applies to --quantize int8, not --quantize dynamic" in r.stderr
    assert not (tmp_path / "x.edgepkg").exists()


def test_int8_of_a_transformer_keeps_float_what_xnnpack_cannot_run_in_int8(cli, tmp_path):
    """Full INT8 of LayerNorm, softmax and attention splits the model into many XNNPACK partitions with
    LiteRT's reference kernels between them (DeiT ran 6x slower than float); auto keeps those ops float."""
    made = {ops: _transformer_int8(cli, tmp_path, "--backend-option", f"int8_ops={ops}", "--backend-option",
                                   "int8_method=static", "--int8-io", "float") for ops in ("auto", "all")}
    record = made["auto"]["compression"]["int8_ops"]
    assert record["used"] == "compute" and record["xnnpack_partitions"]["all"] > 1
    assert record["xnnpack_partitions"]["compute"] < record["xnnpack_partitions"]["all"]
    assert any("convolutions and fully connected layers only" in n for n in made["auto"]["notes"])
    assert made["all"]["compression"]["int8_ops"] == {"requested": "all", "used": "all"}
    assert made["auto"]["parity"]["passed"] and made["all"]["parity"]["passed"]


def test_int8_leaves_depthwise_convolutions_wider_than_5x5_float(cli, tmp_path):
    """XNNPACK's int8 kernel for a 7x7 depthwise ran 3-4x slower than float; the 3x3 one stays int8."""
    calib = tmp_path / "calib.npz"
    np.savez(calib, input=np.random.default_rng(0).standard_normal((16, 3, 16, 16)).astype(np.float32))
    made = {}
    for ops in ("auto", "all"):
        r = cli("package", f"{ASSETS / 'tiny_torch.py'}:make_wide_depthwise", "--profile", "raspberry-pi-5",
                "--input-shape", "input=1,3,16,16", "--quantize", "int8", "--calib", calib,
                "--backend-option", f"int8_ops={ops}", "-o", tmp_path / f"{ops}.edgepkg", "--json")
        assert r.exit_code == 0, r.stderr
        made[ops] = r.json()
    assert made["auto"]["compression"]["int8_ops"]["float_depthwise"] == 1
    assert any("1 depthwise convolution(s) wider than 5x5 stay float" in n for n in made["auto"]["notes"])
    assert "float_depthwise" not in made["all"]["compression"]["int8_ops"]
    from edgeopt.report.tables import _compression   # what package's table and the reports print
    assert "full-integer but 1 wide depthwise conv(s) float" in _compression(made["auto"]["compression"])
    assert made["auto"]["parity"]["passed"] and made["all"]["parity"]["passed"]
    assert made["auto"]["compression"]["int8_method"]["used"] == "static"   # convolutions: no dynamic range

    def int8_depthwise(manifest):
        from ai_edge_litert import schema_py_generated as schema

        from edgeopt.litert_model import _flatbuffer
        path = tmp_path / "m.tflite"
        path.write_bytes(bundle_member(manifest["path"], "model/model.tflite"))
        _, model = _flatbuffer(path)
        graph = model.subgraphs[0]
        return sorted(int(graph.tensors[op.inputs[1]].shape[1]) for op in graph.operators
                      if model.operatorCodes[op.opcodeIndex].builtinCode == schema.BuiltinOperator.DEPTHWISE_CONV_2D
                      and graph.tensors[op.inputs[1]].type == schema.TensorType.INT8)

    assert int8_depthwise(made["auto"]) == [3] and int8_depthwise(made["all"]) == [3, 7]


def test_int8_of_a_cnn_xnnpack_runs_whole_stays_full_integer(pi_bundles):
    record = pi_bundles["int8"]["compression"]["int8_ops"]
    assert record == {"requested": "auto", "used": "all", "xnnpack_partitions": {"float": 1, "all": 1}}
    method = pi_bundles["int8"]["compression"]["int8_method"]
    assert method["used"] == "static" and method["matmul_mac_share"] < 0.5


def _unsupported_op_model(path):
    k = numpy_helper.from_array(np.array([2], np.int64), "k")
    nodes = [helper.make_node("TopK", ["x", "k"], ["v", "i"], name="best"),
             helper.make_node("TopK", ["v", "k"], ["v2", "i2"], name="best_again"),
             helper.make_node("Relu", ["v2"], ["r"], name="act"),
             helper.make_node("Hardmax", ["r"], ["y"], name="pick")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], [k])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_ops_the_converter_cannot_handle_are_listed_in_one_line_with_counts(cli, tmp_path):
    model = _unsupported_op_model(tmp_path / "e.onnx")
    r = cli("package", model, "--profile", "raspberry-pi-5", "-o", tmp_path / "e.edgepkg")
    assert r.exit_code == 2
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(f"edgeopt: error: {model}: 3 ONNX ops have no LiteRT mapping: Hardmax x1, TopK x2 "
                           "(first nodes: 'pick', 'best')")
    assert not (tmp_path / "e.edgepkg").exists()


def test_int8_without_calibration_is_refused(cli, tmp_path):
    r = cli("package", MODEL, "--profile", "raspberry-pi-5", "--quantize", "int8", "-o", tmp_path / "x.edgepkg")
    assert r.exit_code == 2 and "--quantize int8 needs calibration data" in r.stderr
    assert not (tmp_path / "x.edgepkg").exists()


def test_int8_asks_for_calibration_only_where_it_calibrates(cli, tmp_path):
    """LiteRT's INT8 of a transformer is dynamic (no calibration), yet it asked for --calib and then said the
    data was not used. An ONNX transformer now packages without it; a PyTorch CNN, whose method is known only
    once converted, is refused after conversion with the same message, and leaves no bundle."""
    r = cli("package", ASSETS / "tiny_bert.onnx", "--profile", "raspberry-pi-5", "--quantize", "int8",
            "--budget", "accuracy_drop=none", "-o", tmp_path / "bert.edgepkg", "--json")
    assert r.exit_code == 0, r.stderr
    assert r.json()["compression"]["int8_method"]["used"] == "dynamic"
    r = cli("package", f"{ASSETS / 'tiny_torch.py'}:make_cnn", "--input-shape", "x=1,3,16,16",
            "--profile", "raspberry-pi-5", "--quantize", "int8", "-o", tmp_path / "cnn.edgepkg")
    assert r.exit_code == 2 and "--quantize int8 needs calibration data" in r.stderr, r.stderr
    assert not (tmp_path / "cnn.edgepkg").exists()


def test_calibration_in_the_wrong_layout_is_named_as_such(cli, tmp_path):
    with np.load(CALIB) as f:
        np.savez(tmp_path / "nhwc.npz", image=f["image"].transpose(0, 2, 3, 1))
    r = cli("package", MODEL, "--profile", "raspberry-pi-5", "--quantize", "int8", "--calib", tmp_path / "nhwc.npz",
            "-o", tmp_path / "x.edgepkg")
    assert r.exit_code == 2
    assert "has shape (200, 8, 8, 1)" in r.stderr and "looks channels-last (NHWC)" in r.stderr
    assert not (tmp_path / "x.edgepkg").exists()


def test_int8_io_flag_needs_int8_and_the_tflite_backend(cli, tmp_path):
    r = cli("package", MODEL, "--profile", "raspberry-pi-5", "--int8-io", "float", "-o", tmp_path / "x.edgepkg")
    assert r.exit_code == 2 and "--int8-io applies to --quantize int8 only" in r.stderr
    r = cli("package", MODEL, "--profile", "generic", "--int8-io", "float", "-o", tmp_path / "x.edgepkg")
    assert r.exit_code == 2 and "backend onnxruntime has no --int8-io option" in r.stderr
    r = cli("package", MODEL, "--profile", "raspberry-pi-5", "--precision", "fp16", "--quantize", "dynamic",
            "-o", tmp_path / "x.edgepkg")
    assert r.exit_code == 2 and "give one or the other" in r.stderr
    assert not (tmp_path / "x.edgepkg").exists()


def _with_custom_op(src: bytes, path):
    """The same model with its first operator turned into a custom op LiteRT has no kernel for,
    written through the TFLite schema's own object API."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(src, 0))
    code = model.operatorCodes[model.subgraphs[0].operators[0].opcodeIndex]
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
    code.customCode = "EdgeoptTestOnlyOp"
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(bytes(builder.Output()))
    return path


def test_a_tflite_needing_a_custom_op_is_refused_at_packaging(cli, pi_bundles, tmp_path):
    model = _with_custom_op(bundle_member(pi_bundles["fp32"]["path"], "model/model.tflite"), tmp_path / "custom.tflite")
    r = cli("package", model, "--profile", "raspberry-pi-5", "-o", tmp_path / "c.edgepkg")
    last = r.stderr.strip().splitlines()[-1]
    assert r.exit_code == 2 and last.startswith("edgeopt: error:") and "unresolved custom op: EdgeoptTestOnlyOp" in last
    assert not (tmp_path / "c.edgepkg").exists()


def test_a_corrupt_tflite_is_refused(cli, tmp_path):
    model = tmp_path / "junk.tflite"
    model.write_bytes(os.urandom(256))
    for verb in (["inspect", model], ["package", model, "--profile", "raspberry-pi-5", "-o", tmp_path / "j.edgepkg"]):
        r = cli(*verb)
        assert r.exit_code == 2 and "is not a TFLite flatbuffer" in r.stderr


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fraction=st.floats(0.01, 0.999))
def test_a_truncated_tflite_is_one_line_for_inspect_and_package(cli, pi_bundles, tmp_path, fraction):
    """A truncated .tflite keeps its identifier: `inspect` read past its end in the flatbuffer tables and gave a
    struct.error traceback with exit 1 (a user's copy cut short)."""
    whole = bundle_member(pi_bundles["int8"]["path"], "model/model.tflite")
    model = tmp_path / "cut.tflite"
    model.write_bytes(whole[: max(8, int(len(whole) * fraction))])
    for verb in (["inspect", model], ["package", model, "--profile", "raspberry-pi-5", "-o", tmp_path / "c.edgepkg"]):
        r = cli(*verb)
        assert r.exit_code in (0, 2) and "Traceback" not in r.stderr, r.stderr
        if r.exit_code == 2:
            errors = [line for line in r.stderr.splitlines() if not line.startswith("· ")]   # progress lines apart
            assert len(errors) == 1 and str(model) in errors[0], r.stderr


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare for a "
                    "network namespace without a network")
def test_conversion_and_int8_calibration_need_no_network(tmp_path):
    """litert-torch and ai-edge-quantizer run with no network at all (onnx2tf would fetch a file here)."""
    cmd = ["unshare", "--net", sys.executable, "-m", "edgeopt", "package", str(MODEL), "--profile", "raspberry-pi-5",
           "--quantize", "int8", "--calib", str(CALIB), "-o", str(tmp_path / "offline.edgepkg"), "--json"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, PYTHONPATH=str(pathlib.Path(api.__file__).parent.parent)))
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["parity"]["passed"]


def test_json_output_stays_clean_while_converters_print(cli_subprocess, tmp_path):
    r = cli_subprocess("package", MODEL, "--profile", "raspberry-pi-5", "--quantize", "dynamic",
                       "-o", tmp_path / "q.edgepkg", "--json")
    assert r.exit_code == 0, r.stderr
    assert r.json()["compression"]["quantize"] == "dynamic"
    assert "LiteRT-Torch" not in r.stdout + r.stderr and "XNNPACK" not in r.stderr


PY38 = os.environ.get("EDGEOPT_PY38_VENV", str(pathlib.Path(api.__file__).parent.parent / ".cache" / "py38" / "bin" / "python"))


@pytest.mark.skipif(not os.path.exists(PY38), reason="no Python 3.8 venv (make test builds one at .cache/py38 "
                    "from pyenv's 3.8.18, with tflite-runtime 2.14)")
@pytest.mark.parametrize("key", ["fp32", "int8"])
def test_agent_falls_back_to_tflite_runtime_on_python_3_8(pi_bundles, tmp_path, key):
    """Boards whose Python predates ai-edge-litert run the same bundle with tflite-runtime 2.14."""
    from edgeopt import agent_zipapp
    agent = agent_zipapp.build(tmp_path / "agent.pyz")
    p = subprocess.run([PY38, str(agent), "bench", pi_bundles[key]["path"], "--min-iterations", "20",
                        "--min-seconds", "0", "--warmup-seconds", "0"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["device"]["python"].startswith("3.8")
    rt = doc["runtime"]
    assert rt["interpreter"] == "tflite_runtime" and rt["version"] == "2.14.0" and rt["xnnpack"]["requested"]
    # Read from the execution plan: tflite-runtime 2.14 delegates the float model, not the full-integer one.
    assert rt["xnnpack"]["applied"] is (key == "fp32")
    assert rt["timed_call"] == "Interpreter.invoke() on inputs set once; outputs not read"   # runtimes time unlike calls
    assert doc["accuracy"]["top1"] > 0.98 and abs(doc["accuracy"]["drop"]) <= 0.01


def test_a_conversion_that_changes_the_outputs_fails_packaging(cli, tmp_path, monkeypatch):
    """A converter bug that silently changes the numbers (here: ReLU mapped to identity) is caught by
    parity against the source model, with the measured error, and no bundle is written."""
    from edgeopt.convert import onnx_torch
    monkeypatch.setitem(onnx_torch.OPS, "Relu", lambda attrs, x: x)
    r = cli("package", MODEL, "--profile", "raspberry-pi-5", "--eval-data", EVAL, "-o", tmp_path / "bad.edgepkg")
    assert r.exit_code == 2
    last = r.stderr.strip().splitlines()[-1]
    assert "packaged artifact disagrees with its source model: max_abs_error" in last and "360 samples" in last
    assert not (tmp_path / "bad.edgepkg").exists()


@given(edits=st.lists(st.tuples(st.integers(0, 40), st.sampled_from(["inputs", "outputs", "shape", "buffer", "code"]),
                                st.lists(st.integers(-3, 1 << 40), max_size=5)), max_size=6))
@settings(max_examples=150, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_mac_counting_is_total_on_any_graph_the_schema_can_hold(pi_bundles, edits):
    """Inspect and the INT8 rule count MACs on a user's .tflite: out-of-range tensor, buffer and opcode
    indices, missing shapes and huge dimensions give a count, never an exception."""
    from ai_edge_litert import schema_py_generated as schema

    from edgeopt.litert_model import _macs_per_op

    src = bundle_member(pi_bundles["int8"]["path"], "model/model.tflite")
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(src, 0))
    graph = model.subgraphs[0]
    for at, field, values in edits:
        op, tensor = graph.operators[at % len(graph.operators)], graph.tensors[at % len(graph.tensors)]
        if field in ("inputs", "outputs"):
            setattr(op, field, values or None)
        elif field == "shape":
            tensor.shape = values or None
        elif field == "buffer":
            tensor.buffer = values[0] if values else -1
        else:
            op.opcodeIndex = values[0] if values else 99
    for name, macs, weights in _macs_per_op(schema, model):
        assert macs >= 0 and isinstance(weights, bool)


def test_a_detector_output_keeps_its_scores_with_float_io_and_says_how_otherwise(cli, tmp_path):
    """Boxes (hundreds) and scores (hundredths) joined by a Concat into one output. With the Pi profile's int8 I/O
    the output is one int8 tensor, one scale: refused, and the refusal names the option that keeps it float.
    With float I/O, the Concat making the output is left float and the scores keep their own scale."""
    import onnx_graphs
    model, calib = tmp_path / "joined.onnx", tmp_path / "calib.npz"
    onnx.save(onnx_graphs.boxes_and_scores(joined=True), model)
    np.savez(calib, x=np.random.default_rng(0).standard_normal((100, 3, 8, 8)).astype(np.float32))
    args = ["package", model, "--profile", "raspberry-pi-5", "--quantize", "int8", "--calib", calib]
    r = cli(*args, "-o", tmp_path / "i.edgepkg")
    error = r.stderr.splitlines()[-1]
    assert r.exit_code == 2 and "lost 3 channels (4..6) of axis 1" in error and not (tmp_path / "i.edgepkg").exists()
    assert "; or keep it float: --int8-io float" in error
    r = cli(*args, "--int8-io", "float", "-o", tmp_path / "f.edgepkg", "--json")
    assert r.exit_code == 0, r.stderr
    manifest = r.json()
    assert manifest["compression"]["float_output_ops"] == 2 and manifest["parity"]["passed"]   # with its TRANSPOSE
    assert any(n.startswith("the CONCATENATION making a model output left float") for n in manifest["notes"])


def test_a_quantizer_error_that_says_nothing_quotes_what_the_quantizer_printed():
    """The captured output was read inside the capture, before its text was set: an empty error read "ValueError"
    where the quantizer had printed why."""
    from edgeopt.convert import tflite

    class Quantizer:
        def quantize(self, calibration, enable_progress_report):
            print("\n  op FULLY_CONNECTED: per-axis scales missing  ")
            raise ValueError()

    with pytest.raises(RuntimeError, match=r"^op FULLY_CONNECTED: per-axis scales missing$"):
        tflite._run_quantizer(Quantizer(), {})


def test_a_scalar_input_is_fed_as_a_scalar(cli, tmp_path):
    """silero_vad's `sr` has shape (): the agent's first feed from the eval data made it 1-D
    (np.ascontiguousarray), and LiteRT refused it ("Dimension mismatch. Got 1 but expected 0"), exit 3."""
    import onnx
    from onnx import TensorProto, helper

    eye = helper.make_tensor("w", TensorProto.FLOAT, [4, 4], np.eye(4, dtype=np.float32).ravel())
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Mul", ["m", "s"], ["y"])], "scaled",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4]),
         helper.make_tensor_value_info("s", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [eye])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "scaled.onnx")
    np.savez(tmp_path / "eval.npz", x=np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32),
             s=np.linspace(0.5, 2, 8).astype(np.float32))   # one scale a sample: (N,) for a scalar input
    for profile in ("raspberry-pi-5", "generic"):
        bundle = tmp_path / f"{profile}.edgepkg"
        r = cli("package", tmp_path / "scaled.onnx", "--profile", profile, "--eval-data", tmp_path / "eval.npz",
                "-o", bundle, "-q")
        assert r.exit_code == 0, r.stderr
        r = cli("bench", bundle, "--results-dir", tmp_path / "results", *FAST_BENCH_ARGS, "--json")
        assert r.exit_code == 0, r.stderr
        assert r.json()["latency"]["input"] == "eval sample"


def test_int8_biases_fit_where_a_layers_input_range_is_tiny(tmp_path):
    """A layer whose input spans ~1e-8 (BatchNorm with untrained statistics) gave ai-edge-quantizer an int32 bias
    scale of ~1e-13, and its biases overflowed to INT32_MIN unclipped: a MobileNetV3's logits read 8.8 dB against
    44 dB on ONNX Runtime. The input's calibrated range is widened until the biases fit."""
    rng = np.random.default_rng(0)
    weights = numpy_helper.from_array((rng.standard_normal((32, 16, 1, 1)) * 0.1).astype(np.float32), "w")
    bias = numpy_helper.from_array((rng.standard_normal(32) * 0.05).astype(np.float32), "b")
    tiny = numpy_helper.from_array(np.array(1e-8, np.float32), "tiny")
    graph = helper.make_graph([helper.make_node("Mul", ["x", "tiny"], ["small"]),
                               helper.make_node("Conv", ["small", "w", "b"], ["y"])], "tiny_input",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32, 4, 4])],
                              [weights, bias, tiny])
    model = tmp_path / "tiny.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), model)
    np.savez(tmp_path / "calib.npz", x=rng.standard_normal((128, 16, 4, 4)).astype(np.float32))
    m = api.package(str(model), "raspberry-pi-5", tmp_path / "t.edgepkg", quantize="int8",
                    calib=tmp_path / "calib.npz")
    assert m["parity"]["passed"] and m["parity"]["outputs"][0]["sqnr_db"] > 30, m["parity"]
    assert m["compression"]["calibration"]["widened_for_bias"] == 1, m["compression"]
    assert any("widened so that their int32 biases fit" in n for n in m["notes"])


def test_a_dead_filter_does_not_widen_its_layers_input():
    """A filter whose weights are all zero (dead, or pruned) fits no input scale: widening for it made a calibrated
    range of [-3, 6] into +-754,022, ruining every other channel. It is left out."""
    from edgeopt.convert.tflite_bias import _needed_input_scale, _widen

    rng = np.random.default_rng(0)
    weights = rng.standard_normal((32, 3, 3, 16)) * 0.1
    weights[5] = 0.0
    bias = np.zeros(32)
    bias[5] = 0.05
    assert _needed_input_scale(weights, bias, 0) == 0.0
    ranges = {"x": {"min": np.float32(-3.0), "max": np.float32(6.0)}}
    assert not _widen(ranges, "x", _needed_input_scale(weights, bias, 0)) and ranges["x"]["max"] == 6.0


def test_a_hugging_face_bert_from_onnx_converts_for_the_pi(cli, tmp_path):
    """Every Hugging Face BERT, DistilBERT and GPT-2 export failed for raspberry-pi-5 from ONNX: IsNaN (their
    attention masks) had no mapping, and GatherElements of a constant buffer (token_type_ids) was read as a list
    (a user walkthrough). Its outputs agree with the ONNX model's, INT8 too."""
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 100, (32, 8)).astype(np.int64)
    mask = np.ones((32, 8), np.int64)
    mask[:, 6:] = 0
    np.savez(tmp_path / "calib.npz", input_ids=ids, attention_mask=mask)
    for quantize in ("none", "int8"):
        r = cli("package", ASSETS / "tiny_bert.onnx", "--profile", "raspberry-pi-5", "--quantize", quantize,
                "--calib", tmp_path / "calib.npz", "--budget", "accuracy_drop=none",
                "-o", tmp_path / f"bert-{quantize}.edgepkg", "--json")
        assert r.exit_code == 0 and r.json()["parity"]["passed"], r.stderr


@pytest.mark.parametrize("share, suggested", [(0.05, False), (None, False), (0.6, True)])
def test_dynamic_is_suggested_only_where_fully_connected_layers_hold_the_macs(monkeypatch, share, suggested):
    """An INT8 CNN no faster than float was told "--quantize dynamic may be faster", where dynamic ran 3.7-4.6x
    float on its convolutions (a walkthrough)."""
    import types

    from edgeopt.convert import host_hint, tflite
    monkeypatch.setattr(host_hint, "measure", lambda *a, **k: {"ratio": 1.01})
    monkeypatch.setattr(host_hint, "warnings", lambda hint: ["warning: the quantized model was not faster"])
    monkeypatch.setattr(host_hint, "feed_of", lambda source, calibration: {})
    request = types.SimpleNamespace(quantize="int8", calibration=None)
    compression = {"int8_method": {"requested": "auto", "used": "static", "matmul_mac_share": share}}
    notes = tflite._host_hint("f.tflite", "q.tflite", None, request, {}, {}, compression, None)
    assert any("--quantize dynamic" in n for n in notes) is suggested, notes


def test_compare_tells_a_run_without_xnnpack_from_a_normal_one():
    """bench --runtime-option xnnpack=false and a normal run both read `litert 2.3.0` in compare (a walkthrough)."""
    from edgeopt.results import runtime_text
    run = {"runtime": {"name": "litert", "version": "2.3.0", "xnnpack": {"requested": True, "applied": True}}}
    assert runtime_text(run) == "litert 2.3.0"
    run["runtime"]["xnnpack"] = {"requested": False, "applied": False}
    assert runtime_text(run) == "litert 2.3.0 (XNNPACK off)"


def test_an_output_made_by_an_unnamed_node_still_gets_the_way_to_keep_it_float():
    """The lost-channel refusal's own "--int8-io float" was left to the pipeline, which gave nothing where the
    output's producer has no name (a review); LiteRT's option needs no node, ONNX Runtime's --keep-float does."""
    import types

    from edgeopt.convert import BACKENDS, _backend_class
    BACKEND_CLASSES = {name: _backend_class(BACKENDS[name]) for name in ("tflite", "onnxruntime")}
    request = types.SimpleNamespace(int8_scheme="full-integer", options=types.SimpleNamespace(int8_io="",
                                                                                             keep_float=""))
    assert BACKEND_CLASSES["tflite"]().float_output_hint(request, "", "").startswith("--int8-io float")
    assert BACKEND_CLASSES["onnxruntime"]().float_output_hint(request, "", "") == ""


def test_a_dict_returning_modules_bundle_is_compared_on_the_device_by_its_own_output_names(cli, tmp_path):
    """LiteRT names a dict-returning module's outputs by its keys (logits, score), its ONNX export output_0 and
    output_1: the eval data's reference outputs were stored under the latter, and the agent's max abs error was
    left out without a reason (a walkthrough). They are stored under the artifact's names now."""
    (tmp_path / "net.py").write_text(
        "import torch\n\n\nclass Net(torch.nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.a, self.b = torch.nn.Linear(8, 3), torch.nn.Linear(8, 2)\n\n    def forward(self, x):\n"
        "        return {'logits': self.a(x), 'score': self.b(x)}\n\n\ndef build():\n    torch.manual_seed(0)\n"
        "    return Net().eval()\n")
    np.savez(tmp_path / "eval.npz", x=np.random.default_rng(0).standard_normal((16, 8)).astype(np.float32))
    bundle = tmp_path / "d.edgepkg"
    r = cli("package", f"{tmp_path / 'net.py'}:build", "--input-shape", "x=1,8", "--profile", "raspberry-pi-5",
            "--eval-data", tmp_path / "eval.npz", "--budget", "accuracy_drop=none", "-o", bundle, "--json")
    assert r.exit_code == 0, r.stderr
    names = [o["name"] for o in r.json()["outputs"]]
    r = cli("bench", bundle, "--results-dir", tmp_path / "results", "--json", *FAST_BENCH_ARGS)
    assert r.exit_code == 0, r.stderr
    accuracy = r.json()["accuracy"]
    assert sorted(accuracy["max_abs_error_by_output"]) == sorted(names) and accuracy["max_abs_error"] < 1e-4, accuracy


def test_a_converter_defect_is_refused_by_the_float_model_before_quantization_hides_it(cli, tmp_path):
    """litert-torch misaligns a nearest resize by a non-whole factor (32 to 80): the fp32 bundle was refused, its
    INT8 bundle passed at 12 dB (a UNet, a walkthrough). The float .tflite the INT8 one is made from is judged
    first; --allow-mismatch packages it, and the parity then reads failed, not the INT8 artifact's pass."""
    (tmp_path / "net.py").write_text(
        "import torch\nimport torch.nn.functional as F\n\n\nclass Net(torch.nn.Module):\n    def __init__(self):\n"
        "        super().__init__()\n        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)\n\n"
        "    def forward(self, x):\n        return F.interpolate(self.conv(x), size=(80, 80), mode='nearest')\n\n\n"
        "def build():\n    torch.manual_seed(0)\n    return Net().eval()\n")
    rng = np.random.default_rng(0)
    smooth = np.cumsum(np.cumsum(rng.standard_normal((16, 3, 32, 32)), axis=2), axis=3) / 32   # images, not noise
    np.savez(tmp_path / "calib.npz", x=smooth.astype(np.float32))
    args = ("package", f"{tmp_path / 'net.py'}:build", "--input-shape", "x=1,3,32,32", "--profile", "raspberry-pi-5",
            "--quantize", "int8", "--calib", tmp_path / "calib.npz", "--budget", "accuracy_drop=none")
    r = cli(*args, "-o", tmp_path / "a.edgepkg")
    assert r.exit_code == 2 and "the float model the artifact was made from already disagrees with the source" \
        in r.stderr, r.stderr
    r = cli(*args, "--allow-mismatch", "-o", tmp_path / "b.edgepkg", "--json")
    assert r.exit_code == 0, r.stderr
    parity = r.json()["parity"]
    assert parity["float_model"]["passed"] is False and parity["float_model"]["max_abs_error"] > 1e-3
    assert parity["passed"] is False and parity["allowed_by"] == "--allow-mismatch"


@pytest.mark.parametrize("outputs", [
    "tuple(torch.nn.functional.linear(x, torch.ones(2, 8) * (i + 1)) for i in range(11))",
    "{'zeta': self.a(x), 'alpha': self.b(x) * 10}",
], ids=["eleven-outputs", "keys-not-in-alphabetical-order"])
def test_outputs_are_paired_in_the_sources_order_not_the_signatures_sorted_one(cli, tmp_path, outputs):
    """LiteRT's signature lists output names sorted as text (output_10 before output_2, alpha before zeta) where
    the source's order is the subgraph's: a module with 11 outputs, or a dict whose keys are not in alphabetical
    order, was refused at fp32 by a parity that paired them by position (a walkthrough)."""
    (tmp_path / "net.py").write_text(
        "import torch\n\n\nclass Net(torch.nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.a, self.b = torch.nn.Linear(8, 3), torch.nn.Linear(8, 2)\n\n    def forward(self, x):\n"
        f"        return {outputs}\n\n\ndef build():\n    torch.manual_seed(0)\n    return Net().eval()\n")
    np.savez(tmp_path / "eval.npz", x=np.random.default_rng(0).standard_normal((16, 8)).astype(np.float32))
    bundle = tmp_path / "d.edgepkg"
    r = cli("package", f"{tmp_path / 'net.py'}:build", "--input-shape", "x=1,8", "--profile", "raspberry-pi-5",
            "--eval-data", tmp_path / "eval.npz", "--budget", "accuracy_drop=none", "-o", bundle, "--json")
    assert r.exit_code == 0, r.stderr
    assert r.json()["parity"]["passed"] is True
    r = cli("bench", bundle, "--results-dir", tmp_path / "results", "--json", *FAST_BENCH_ARGS)
    assert r.exit_code == 0, r.stderr
    assert r.json()["accuracy"]["max_abs_error"] < 1e-4, r.json()["accuracy"]


def test_calibration_data_the_source_itself_fails_on_is_named_when_the_quantizer_fails(cli, tmp_path):
    """Token ids past an embedding's vocabulary failed in ai-edge-quantizer's calibration, and the refusal blamed the
    model and sent the user to another precision; onnxruntime's path named the data (a walkthrough)."""
    (tmp_path / "net.py").write_text(
        "import torch\n\n\nclass Net(torch.nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.emb, self.fc = torch.nn.Embedding(100, 8), torch.nn.Linear(8, 4)\n\n"
        "    def forward(self, ids):\n        return self.fc(self.emb(ids).mean(1))\n\n\n"
        "def build():\n    torch.manual_seed(0)\n    return Net().eval()\n")
    onnx_path = tmp_path / "net.onnx"
    import torch
    sys.path.insert(0, str(tmp_path))
    try:
        import net
        torch.onnx.export(net.build(), (torch.zeros(1, 12, dtype=torch.int64),), str(onnx_path), input_names=["ids"],
                          output_names=["y"], dynamo=False)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("net", None)
    np.savez(tmp_path / "calib.npz", ids=np.full((8, 12), 500, np.int64))
    r = cli("package", onnx_path, "--profile", "raspberry-pi-5", "--quantize", "int8", "--backend-option",
            "int8_method=static", "--calib", tmp_path / "calib.npz", "--budget", "accuracy_drop=none",
            "-o", tmp_path / "q.edgepkg")
    assert r.exit_code == 2 and f"the calibration data ({tmp_path / 'calib.npz'}): the source model itself fails on " \
        "them" in r.stderr and "ai-edge-quantizer" not in r.stderr, r.stderr


def test_a_tflite_of_several_signatures_says_which_one_is_measured(cli, tmp_path):
    """A .tflite exported with `encode` and `encode4` packaged and measured `encode` alone, and said nothing of the
    other (a walkthrough)."""
    import litert_torch
    import torch
    module = torch.nn.Linear(16, 8).eval()
    litert_torch.signature("encode", module, (torch.randn(1, 16),)).signature(
        "encode4", module, (torch.randn(4, 16),)).convert().export(str(tmp_path / "two.tflite"))
    said = "the .tflite has 2 signatures (encode, encode4); edgeopt packages and measures its first subgraph alone"
    shown = cli("inspect", tmp_path / "two.tflite", "--json")
    assert shown.exit_code == 0 and any(n.startswith(said) for n in shown.json()["notes"]), shown.json()["notes"]
    made = cli("package", tmp_path / "two.tflite", "--profile", "raspberry-pi-5", "--budget", "accuracy_drop=none",
               "-o", tmp_path / "two.edgepkg", "--json")
    assert made.exit_code == 0 and any(n.startswith(said) for n in made.json()["notes"]), made.stderr


def test_an_int64_tensor_made_int32_by_litert_says_its_source_type(cli, tmp_path):
    """LiteRT has no int64: token ids and an argmax became int32 with no word in inspect, where a changed layout is
    said (a walkthrough); code that calls the .tflite itself feeds and reads that type."""
    import torch

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(50, 8)

        def forward(self, ids):
            return self.emb(ids).mean(1).argmax(-1)

    torch.manual_seed(0)
    torch.onnx.export(Net().eval(), (torch.zeros(1, 6, dtype=torch.int64),), str(tmp_path / "n.onnx"),
                      input_names=["ids"], output_names=["cls"], dynamo=False)
    made = cli("package", tmp_path / "n.onnx", "--profile", "raspberry-pi-5", "--budget", "accuracy_drop=none",
               "-o", tmp_path / "n.edgepkg", "--json")
    assert made.exit_code == 0, made.stderr
    assert [(t["dtype"], t.get("source_dtype")) for t in made.json()["inputs"] + made.json()["outputs"]] == \
        [("int32", "int64"), ("int32", "int64")]
    rows = dict(line.split("\t", 1) for line in cli("inspect", tmp_path / "n.edgepkg", "-q").stdout.splitlines()
                if "\t" in line)
    assert rows["inputs"] == "ids int32[1, 6] (from the source's int64)", rows["inputs"]


def test_a_bundle_that_lists_its_outputs_in_the_sorted_signature_order_is_still_paired_by_name(cli, tmp_path):
    """Bundles packaged before LiteRT's outputs followed the subgraph list them as the signature sorted them
    (output_10 before output_2); the agent, shipped anew with each run, takes the subgraph's order, and paired their
    eval references with the wrong tensors (a review). It follows the manifest's names."""
    import io
    import tarfile

    from device_agent import manifest as agent_manifest
    (tmp_path / "net.py").write_text(
        "import torch\n\n\nclass Net(torch.nn.Module):\n    def forward(self, x):\n"
        "        return tuple(torch.nn.functional.linear(x, torch.ones(2, 8) * (i + 1)) for i in range(11))\n\n\n"
        "def build():\n    return Net().eval()\n")
    np.savez(tmp_path / "eval.npz", x=np.random.default_rng(0).standard_normal((8, 8)).astype(np.float32))
    made = cli("package", f"{tmp_path / 'net.py'}:build", "--input-shape", "x=1,8", "--profile", "raspberry-pi-5",
               "--eval-data", tmp_path / "eval.npz", "--budget", "accuracy_drop=none", "-o", tmp_path / "new.edgepkg")
    assert made.exit_code == 0, made.stderr
    old = tmp_path / "old.edgepkg"
    with tarfile.open(tmp_path / "new.edgepkg") as tin, tarfile.open(old, "w") as tout:
        for member in tin.getmembers():
            data = tin.extractfile(member).read()
            if member.name == "manifest.json":
                doc = json.loads(data)
                doc["outputs"] = sorted(doc["outputs"], key=lambda o: o["name"])   # as the signature sorted them
                doc[agent_manifest.DIGEST_FIELD] = agent_manifest.content_digest(doc)
                data = agent_manifest.canonical_bytes(doc)
            info = tarfile.TarInfo(member.name)
            info.size = len(data)
            tout.addfile(info, io.BytesIO(data))
    r = cli("bench", old, "--results-dir", tmp_path / "results", "--json", *FAST_BENCH_ARGS)
    assert r.exit_code == 0 and r.json()["accuracy"]["max_abs_error"] < 1e-4, r.json()["accuracy"]
