"""The ONNX Runtime backend's INT8 recipe on exporter-shaped graphs, with real ORT: quantized after
pre-processing (so every Conv becomes a QLinearConv), and the host-side INT8/FP32 hint."""
import collections

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


def test_int8_not_faster_than_fp32_is_warned(resnet, tmp_path, cli):
    """Dynamic quantization makes a conv net's Conv a ConvInteger: slower than FP32 on CPUs."""
    model, _ = resnet
    r = cli("package", model, "--quantize", "dynamic", "-o", tmp_path / "d.edgepkg", "--allow-mismatch")
    assert r.exit_code == 0, r.stderr
    assert "INT8/FP32 on this host" in r.stdout and "warning" in r.stdout and "not faster" in r.stdout
    m = bundle_manifest(tmp_path / "d.edgepkg")
    assert m["compression"]["host_hint"]["ratio"] >= 1.0
    assert any(n.startswith("warning: the quantized model was not faster") for n in m["notes"])


def test_fp32_bundle_ships_the_simplified_graph_and_passes_parity(resnet, tmp_path):
    m, path = _package(resnet, tmp_path, quantize="none")
    assert m["parity"]["passed"] and m["parity"]["max_abs_error"] <= 1e-4
    s = m["simplification"]
    assert s["applied"] and (s["nodes_before"], s["nodes_after"]) == (58, 22)
    assert "host_hint" not in m["compression"]
    ops = collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node)
    assert ops["Conv"] == 9 and "BatchNormalization" not in ops
