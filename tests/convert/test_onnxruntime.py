"""The ONNX Runtime backend's INT8 recipe on exporter-shaped graphs, with real ORT: quantized after
pre-processing (so every Conv becomes a QLinearConv), and the host-side INT8/FP32 hint."""
import collections
import pathlib

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import onnx_graphs
from conftest import bundle_manifest, bundle_member
from edgeopt import api

SIZE = 64


@pytest.fixture(scope="module")
def resnet(tmp_path_factory):
    """A ResNet-style CNN on 1x3x64x64 as a dynamo export without its optimizer leaves it (BatchNorm
    unfused, Conv biases built at run time), and calibration samples for it."""
    tmp = tmp_path_factory.mktemp("resnet")
    model, calib = tmp / "resnet.onnx", tmp / "calib.npz"
    onnx.save(onnx_graphs.resnet_style(SIZE, widths=(32, 64, 128), runtime_bias=True), str(model))
    np.savez(calib, input=np.random.default_rng(0).standard_normal((32, 3, SIZE, SIZE)).astype(np.float32))
    return model, calib


def _ort_fused_ops(path, tmp_path):
    """What ORT runs: the graph after its load-time optimizations (ENABLE_ALL), as op counts."""
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "ort-optimized.onnx")
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return collections.Counter(n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node)


def _package(resnet, tmp_path, *flags, quantize="int8"):
    model, calib = resnet
    out = tmp_path / f"{quantize}.edgepkg"
    m = api.package(str(model), "generic", out, quantize=quantize, calib=calib if quantize == "int8" else None,
                    allow_mismatch=True, simplify="--no-simplify" not in flags)
    (tmp_path / "model.onnx").write_bytes(bundle_member(out, "model/model.onnx"))
    return m, tmp_path / "model.onnx"


def test_int8_every_conv_runs_as_qlinearconv_and_beats_fp32_on_the_host(resnet, tmp_path):
    m, path = _package(resnet, tmp_path)
    ops = _ort_fused_ops(path, tmp_path)
    # 9 convs, all integer; no float Conv/BatchNorm left between Q/DQ pairs, so no NCHW<->NHWC
    # Transposes around each conv (what the graph quantized as exported ran with: 4.9x FP32's latency).
    assert ops["QLinearConv"] == 9 and not {"Conv", "FusedConv", "BatchNormalization"} & set(ops)
    assert ops["Transpose"] <= 2
    assert m["compression"]["preprocess"]["by"] == "intake simplification"
    hint = m["compression"]["host_hint"]
    assert hint["threads"] == 1 and hint["rounds"] >= 5 and "device" in hint["note"]
    assert 0 < hint["ratio"] < 1.0, hint
    assert not any(n.startswith("warning: the quantized model") for n in m["notes"])  # (an accuracy-budget one may)


def test_no_simplify_still_quantizes_the_preprocessed_graph(resnet, tmp_path):
    m, path = _package(resnet, tmp_path, "--no-simplify")
    assert m["simplification"] == {"applied": False, "reason": "--no-simplify"}
    pre = m["compression"]["preprocess"]
    assert pre["by"] == "quantization pre-processing" and pre["removed"]["BatchNormalization"] == 9
    assert _ort_fused_ops(path, tmp_path)["QLinearConv"] == 9


@pytest.fixture(scope="module")
def deit(tmp_path_factory):
    """The zoo's reduced DeiT (LayerNorm, attention, GELU MLP: MatMul/Gemm hold 80% of its MACs) as a
    legacy export, with calibration samples."""
    from zoo import ZOO
    from zoo.data import write_files

    files = write_files(ZOO["deit_tiny"], tmp_path_factory.mktemp("deit"), ("legacy",))
    return files["onnx"]["legacy"], files["calib"]


def test_int8_on_a_transformer_is_dynamic_on_its_matmuls_and_static_on_a_cnn(deit, resnet, tmp_path):
    """ORT's documented split: dynamic for transformers, static for CNNs, chosen by where the MACs are."""
    m, path = _package(deit, tmp_path)
    c = m["compression"]
    assert c["method"] == "dynamic" and c["int8_method"]["used"] == "dynamic"
    assert 0.5 <= c["int8_method"]["matmul_mac_share"] < 1.0
    ops = collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node)
    assert ops["MatMulInteger"] >= 6 and not ops["QuantizeLinear"] and not ops["ConvInteger"]
    assert c["integer_ops"] == {"MatMulInteger": ops["MatMulInteger"]}   # what the manifest says ran in integer
    assert ops["Conv"] == 1     # the patch embedding stays float: ConvInteger is slower than float
    assert m["parity"]["passed"] and any(n.startswith("INT8 dynamic: MatMul/Gemm") for n in m["notes"])
    m, _ = _package(resnet, tmp_path / "cnn")
    assert m["compression"]["method"] == "static" and m["compression"]["int8_method"]["used"] == "static"
    assert m["compression"]["int8_method"]["matmul_mac_share"] < 0.05


def test_int8_not_faster_than_fp32_is_warned(deit, tmp_path, cli, monkeypatch):
    """Static QDQ on a small transformer: Q/DQ pairs around every LayerNorm, GELU and residual Add cost more
    than its INT8 MatMuls save (1.4-1.5x float on one x86 host, 1.18x on an AVX-512 VNNI one). How much is the
    CPU's: a host with faster INT8 kernels may read below 1, so the timing is fixed here at 1.4x; the real
    timing's figures are the fp16 test's."""
    from edgeopt.convert import host_hint
    monkeypatch.setattr(host_hint, "time_alternating", lambda paths, feed, **kw: ((1.0, 1.4), 5))
    model, calib = deit
    r = cli("package", model, "--quantize", "int8", "--calib", calib, "--backend-option", "int8_method=static",
            "-o", tmp_path / "s.edgepkg", "--allow-mismatch")
    assert r.exit_code == 0, r.stderr
    assert "INT8/FP32 on this host" in r.stdout and "warning" in r.stdout and "not faster" in r.stdout
    m = bundle_manifest(tmp_path / "s.edgepkg")
    assert m["compression"]["method"] == "static" and m["compression"]["int8_method"]["requested"] == "static"
    assert m["compression"]["host_hint"]["ratio"] == 1.4
    assert any(n.startswith("warning: the quantized model was not faster") for n in m["notes"])


def test_fp16_is_timed_against_fp32_on_this_host_too(resnet, tmp_path, cli):
    """ONNX Runtime's CPU provider has fp16 kernels for few ops (casts around the rest): an fp16 bundle carries the
    same host hint as a quantized one, labelled as what it is."""
    r = cli("package", resnet[0], "--precision", "fp16", "-o", tmp_path / "h.edgepkg")
    assert r.exit_code == 0, r.stderr
    assert "FP16/FP32 on this host" in r.stdout
    hint = bundle_manifest(tmp_path / "h.edgepkg")["compression"]["host_hint"]
    assert hint["fp32_ms"] > 0 and hint["int8_ms"] > 0 and hint["ratio"] == round(hint["int8_ms"] / hint["fp32_ms"], 3)
    assert ("the fp16 model was not faster" in " ".join(r.stdout.split())) == (hint["ratio"] >= 1.0)


def test_int8_method_outside_int8_is_refused(deit, tmp_path, cli):
    model, _ = deit
    r = cli("package", model, "--quantize", "dynamic", "--backend-option", "int8_method=static",
            "-o", tmp_path / "d.edgepkg")
    assert r.exit_code == 2 and "int8_method applies to --quantize int8, not --quantize dynamic" in r.stderr
    assert not (tmp_path / "d.edgepkg").exists()


def test_int8_weight_bits_eight_is_the_full_range_and_only_for_int8(cli, tmp_path):
    """7 bits by default (an AVX2-only CPU's U8S8 kernels saturate 8-bit products); 8 for devices with VNNI."""
    from conftest import CALIB, MODEL
    r = cli("package", MODEL, "--quantize", "int8", "--calib", CALIB, "--backend-option", "int8_weight_bits=8",
            "-o", tmp_path / "full.edgepkg", "-q")
    assert r.exit_code == 0, r.stderr
    assert bundle_manifest(tmp_path / "full.edgepkg")["compression"]["weight_bits"] == 8
    r = cli("package", MODEL, "--backend-option", "int8_weight_bits=8", "-o", tmp_path / "fp32.edgepkg")
    assert r.exit_code == 2 and "int8_weight_bits applies to --quantize int8, not --quantize none" in r.stderr
    r = cli("package", MODEL, "--quantize", "int8", "--calib", CALIB, "--backend-option", "int8_weight_bits=6",
            "-o", tmp_path / "six.edgepkg")
    assert r.exit_code == 2 and "int8_weight_bits" in r.stderr


def test_int8_weight_bits_where_auto_chooses_dynamic_is_said(deit, tmp_path, cli):
    model, _ = deit
    r = cli("package", model, "--quantize", "int8", "--backend-option", "int8_weight_bits=8", "-o",
            tmp_path / "d.edgepkg", "--json")
    assert r.exit_code == 0, r.stderr
    assert any(n.startswith("int8_weight_bits=8 is static INT8's") for n in r.json()["notes"]), r.json()["notes"]


def test_keep_float_names_a_layer_dynamic_quantization_leaves_float(deit, tmp_path):
    model, calib = deit
    graph = onnx.load(str(model), load_external_data=False).graph
    head = [n.name for n in graph.node if n.op_type == "Gemm"][-1]
    m = api.package(str(model), "generic", tmp_path / "k.edgepkg", quantize="int8", calib=calib,
                    keep_float=head, allow_mismatch=True)
    assert m["compression"]["method"] == "dynamic" and m["compression"]["keep_float"]["layers"] == [head]
    quantized = onnx.load_from_string(bundle_member(tmp_path / "k.edgepkg", "model/model.onnx")).graph
    # ORT's dynamic quantizer rewrites every Gemm as MatMul + Add: the float one keeps its MatMul
    assert [n.op_type for n in quantized.node if n.name.startswith(head)] == ["MatMul", "Add"]
    assert sum(n.op_type == "MatMulInteger" for n in quantized.node) >= 6


def test_fp32_bundle_ships_the_simplified_graph_and_passes_parity(resnet, tmp_path):
    m, path = _package(resnet, tmp_path, quantize="none")
    assert m["parity"]["passed"] and m["parity"]["max_abs_error"] <= 1e-4
    s = m["simplification"]
    assert s["applied"] and (s["nodes_before"], s["nodes_after"]) == (58, 22)
    assert "host_hint" not in m["compression"]
    ops = collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node)
    assert ops["Conv"] == 9 and "BatchNormalization" not in ops


@pytest.mark.parametrize("quantize", ["int8", "dynamic"])
def test_quantized_bundles_record_the_fp32_their_float_operators_run_in(resnet, tmp_path, quantize):
    """ORT's quantizers leave the operators they skip in fp32 whatever --precision asked: the bundle says so."""
    model, calib = resnet
    m = api.package(str(model), "generic", tmp_path / "q.edgepkg", "fp16", quantize,
                    calib=calib if quantize == "int8" else None, allow_mismatch=True)
    assert m["profile"]["precision"] == "fp32"
    assert any(n.startswith(f"--precision fp16 with --quantize {quantize}") for n in m["notes"]), m["notes"]
    graph = onnx.load_model_from_string(bundle_member(m["path"], "model/model.onnx")).graph
    floats = {i.data_type for i in graph.initializer}
    assert onnx.TensorProto.FLOAT16 not in floats


@pytest.mark.parametrize("quantize", ["int8", "dynamic"])
def test_a_model_quantized_already_is_not_quantized_again(cli, bundles, tmp_path, quantize):
    """An INT8 bundle's own model.onnx with --quantize int8 ended in a traceback and exit 1 (ONNX Runtime's
    quantizer made an invalid model: "two nodes with same node name"); dynamic quantized it again silently."""
    import tarfile

    from conftest import CALIB
    with tarfile.open(bundles["int8"]) as tar:
        tar.extractall(tmp_path, filter="data")
    model = tmp_path / "model" / "model.onnx"
    r = cli("package", model, "--quantize", quantize, "--calib", CALIB, "-o", tmp_path / "again.edgepkg")
    assert r.exit_code == 2 and f"{model}: the model is quantized already (QuantizeLinear/DequantizeLinear nodes)" \
        in r.stderr and "Traceback" not in r.stderr, r.stderr


def _masked_attention(path):
    """Self-attention over x [1, 6, 8] with an additive mask of -inf where mask [1, 1, 6] is 0, as BERT's export
    makes it (Where(mask == 0, -inf, 0) added to the scores)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    constants = [numpy_helper.from_array(rng.standard_normal((8, 8)).astype(np.float32), "W"),
                 numpy_helper.from_array(rng.standard_normal((8, 5)).astype(np.float32), "V"),
                 numpy_helper.from_array(np.array(-np.inf, np.float32), "ninf"),
                 numpy_helper.from_array(np.array(0.0, np.float32), "zero")]
    nodes = [helper.make_node("MatMul", ["x", "W"], ["q"], name="/q/MatMul"),
             helper.make_node("Transpose", ["q"], ["qt"], perm=[0, 2, 1], name="/qt"),
             helper.make_node("MatMul", ["q", "qt"], ["s"], name="/s/MatMul"),
             helper.make_node("Equal", ["mask", "zero"], ["off"], name="/off"),
             helper.make_node("Where", ["off", "ninf", "zero"], ["bias"], name="/bias"),
             helper.make_node("Add", ["s", "bias"], ["masked"], name="/mask/Add"),
             helper.make_node("Softmax", ["masked"], ["p"], axis=-1, name="/softmax"),
             helper.make_node("MatMul", ["p", "x"], ["c"], name="/c/MatMul"),
             helper.make_node("MatMul", ["c", "V"], ["y"], name="/head/MatMul")]
    graph = helper.make_graph(nodes, "masked", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6, 8]),
                                                helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1, 1, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6, 5])], constants)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_static_int8_leaves_float_the_ops_around_an_infinite_mask(cli, tmp_path):
    """A BERT's additive mask of -inf gave its QuantizeLinear an infinite scale: the INT8 model returned the same
    logits whatever the mask, and parity passed at 12 dB (a user review). Those ops stay float now, and say so."""
    import tarfile

    import onnxruntime as ort
    model = _masked_attention(tmp_path / "masked.onnx")
    rng = np.random.default_rng(1)
    masks = np.ones((64, 1, 6), np.float32)
    masks[::2, :, 3:] = 0   # half the samples mask the last three positions
    np.savez(tmp_path / "calib.npz", x=rng.standard_normal((64, 6, 8)).astype(np.float32), mask=masks)
    r = cli("package", model, "--quantize", "int8", "--calib", tmp_path / "calib.npz", "--backend-option",
            "int8_method=static", "-o", tmp_path / "m.edgepkg", "--json")
    assert r.exit_code == 0, r.stderr
    assert r.json()["compression"]["float_unbounded"] == ["/bias", "/mask/Add", "/softmax"]
    assert any("left float: calibration saw an infinite range there" in n for n in r.json()["notes"])
    with tarfile.open(tmp_path / "m.edgepkg") as tar:
        tar.extractall(tmp_path / "b", filter="data")
    x = rng.standard_normal((1, 6, 8)).astype(np.float32)
    runs = {}
    for name, path in (("source", model), ("int8", tmp_path / "b" / "model" / "model.onnx")):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        runs[name] = [session.run(None, {"x": x, "mask": m})[0] for m in (masks[1:2], masks[0:1])]
    assert not np.allclose(runs["int8"][0], runs["int8"][1], atol=1e-3)   # the mask still matters
    for got, want in zip(runs["int8"], runs["source"]):   # 7-bit weights: 0.70 of 6.7 on an AVX2-only host, where
        assert np.abs(got - want).max() < 0.15 * np.abs(want).max()   # 8 bits saturate there: 3.6


def test_dynamic_quantization_of_a_conv_only_model_warns_that_the_bundle_runs_float(tmp_path):
    """Dynamic quantization leaves Conv float, so a conv-only model's "INT8 dynamic" bundle was the float model,
    packaged with a note that read like a detail."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["input", "w"], ["y"], pads=[1, 1, 1, 1])], "convs",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], [w])
    model = tmp_path / "convs.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(model))
    m = api.package(str(model), "generic", tmp_path / "d.edgepkg", quantize="dynamic")
    assert m["compression"]["integer_ops"] == {}
    assert any(n.startswith("warning: dynamic quantization found no op") and "runs in float" in n for n in m["notes"])
    # a model with a MatMul/Gemm to take is not warned about
    onnx.save(onnx_graphs.flatten_chain(), str(tmp_path / "fc.onnx"))
    m = api.package(str(tmp_path / "fc.onnx"), "generic", tmp_path / "fc.edgepkg", quantize="dynamic",
                    input_shapes={"input": [1, 1, 8, 8]})
    assert m["compression"]["integer_ops"] and not any("found no op" in n for n in m["notes"])


def test_a_quantized_model_hardly_faster_than_float_is_warned_too():
    """A MobileNetV3's INT8 read 0.99x float here and said nothing; on the device it was 1.25x float's latency (a
    user walkthrough). Within 5 % of float is warned, as no faster is."""
    from edgeopt.convert.host_hint import warnings
    assert warnings({"ratio": 0.94}) == []
    assert warnings({"ratio": 0.991})[0].startswith("warning: the quantized model was hardly faster than float on "
                                                    "this host (0.99x the float latency)")
    assert warnings({"ratio": 1.0}, "fp16")[0].startswith("warning: the fp16 model was not faster than float")


def test_int8_that_quantizes_dynamically_needs_no_calibration_data(cli, tmp_path):
    """--quantize int8 of a transformer asked for --calib, then said dynamic INT8 does not use it (a user
    walkthrough); a BERT export's MACs, uncountable in its shape-computing graph, are counted on ONNX Runtime's
    folded copy, so it goes dynamic. A CNN's static INT8 still needs the data."""
    from conftest import MODEL
    bert = pathlib.Path(__file__).resolve().parent.parent / "assets" / "tiny_bert.onnx"
    r = cli("package", bert, "--quantize", "int8", "--budget", "accuracy_drop=none", "-o", tmp_path / "b.edgepkg",
            "--json")
    assert r.exit_code == 0 and r.json()["compression"]["int8_method"]["used"] == "dynamic", r.stderr
    r = cli("package", MODEL, "--quantize", "int8", "-o", tmp_path / "c.edgepkg")
    assert r.exit_code == 2 and "--quantize int8 needs calibration data" in r.stderr, r.stderr


def test_keep_float_auto_on_dynamic_int8_judges_on_the_eval_data_and_rebuilds(deit, cli, tmp_path):
    """--keep-float auto on a transformer's dynamic INT8 judges its layers on the eval data where given: it asked for
    --calib anyway, never read it, and the bundle's recipe could not be rebuilt without it (a walkthrough)."""
    model, samples = deit
    first = cli("package", model, "--quantize", "int8", "--keep-float", "auto", "--eval-data", samples,
                "--calib", samples, "--budget", "accuracy_drop=none", "-o", tmp_path / "a.edgepkg", "--json")
    assert first.exit_code == 0, first.stderr
    assert any(n.startswith("dynamic INT8 calibrates nothing") and "--calib is not used" in n
               for n in first.json()["notes"])   # it went unread, unsaid
    compression = first.json()["compression"]
    assert compression["method"] == "dynamic" and compression["keep_float"]["samples_source"] == "eval data"
    again = cli("package", model, "--recipe", tmp_path / "a.edgepkg", "-o", tmp_path / "b.edgepkg", "--json")
    assert again.exit_code == 0, again.stderr
    assert again.json()["compression"]["keep_float"]["layers"] == compression["keep_float"]["layers"]
    # with no data at all, its layers cannot be judged: still refused
    none = cli("package", model, "--quantize", "int8", "--keep-float", "auto", "-o", tmp_path / "c.edgepkg")
    assert none.exit_code == 2 and "needs calibration data" in none.stderr


def test_static_int8_of_an_opset_11_model_converts_it_to_opset_13_first(tmp_path):
    """Per-channel Q/DQ needs DequantizeLinear's `axis` (opset 13): every opset-11 model of the legacy exporter with a
    Conv or Gemm bias made an artifact onnxruntime refused, its reason cut off the end of the message (a
    walkthrough). onnx's version converter upgrades the graph first, and a note says so."""
    from onnx import TensorProto, helper, numpy_helper

    from device_agent import bounded
    rng = np.random.default_rng(0)
    const = lambda name, *shape: numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
         helper.make_node("GlobalAveragePool", ["r"], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
         helper.make_node("Gemm", ["f", "fc", "fb"], ["y"], transB=1)], "op11",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
        [const("w", 8, 3, 3, 3), const("b", 8), const("fc", 10, 8), const("fb", 10)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 6
    onnx.save(model, str(tmp_path / "op11.onnx"))
    np.savez(tmp_path / "calib.npz", x=rng.standard_normal((16, 3, 16, 16)).astype(np.float32))
    m = api.package(str(tmp_path / "op11.onnx"), "generic", tmp_path / "q.edgepkg", quantize="int8",
                    calib=str(tmp_path / "calib.npz"), budgets={"accuracy_drop": None})
    assert m["compression"]["preprocess"]["opset"] == {"from": 11, "to": 13, "note": m["notes"][0]}, m["notes"]
    artifact = onnx.load_from_string(bundle_member(tmp_path / "q.edgepkg", "model/model.onnx"))
    assert [o.version for o in artifact.opset_import if o.domain in ("", "ai.onnx")] == [13]
    said = bounded("head " + "x" * 500 + " Error Unrecognized attribute: axis for operator DequantizeLinear")
    assert len(said) == 300 and said.startswith("head ") and said.endswith("axis for operator DequantizeLinear")


def test_the_float_artifact_links_the_work_file_and_copies_the_users(tmp_path):
    """A large-model walkthrough: three copies of a 97 MB model in the temporary folder at once, one of them the
    float artifact copied from the simplified work file. The user's own file is copied: nothing may write to it."""
    from edgeopt.convert.base import as_artifact

    work = tmp_path / "work"
    work.mkdir()
    (work / "simplified.onnx").write_bytes(b"model")
    as_artifact(work / "simplified.onnx", work / "model.onnx", work)
    assert (work / "model.onnx").stat().st_ino == (work / "simplified.onnx").stat().st_ino
    users = tmp_path / "mine.onnx"
    users.write_bytes(b"model")
    as_artifact(users, work / "copy.onnx", work)
    assert (work / "copy.onnx").read_bytes() == b"model" and (work / "copy.onnx").stat().st_ino != users.stat().st_ino
