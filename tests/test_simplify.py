"""Graph simplification (edgeopt/simplify.py) with real ONNX Runtime: fewer nodes, same outputs."""
import collections
import pathlib

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings, strategies as st
from onnx import helper

import onnx_graphs
from conftest import CALIB, EVAL, MODEL
from edgeopt.errors import BadInput
from edgeopt.models import fix_input_shapes
from edgeopt.simplify import simplify


def _run(path, feed):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # the file as written
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"]).run(None, feed)


def _ops(path):
    return collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node)


def _simplified(model, tmp_path, shapes=None):
    fix_input_shapes(model, shapes or {})
    src, out = tmp_path / "in.onnx", tmp_path / "out.onnx"
    onnx.save(model, str(src))
    return src, out, simplify(src, out)


def test_shape_chain_of_a_flatten_becomes_a_constant(tmp_path):
    src, out, report = _simplified(onnx_graphs.flatten_chain(), tmp_path)  # dynamic batch fixed to 1
    assert report["nodes_before"] == 7 and report["nodes_after"] == 3
    assert set(report["removed"]) == {"Shape", "Gather", "Unsqueeze", "Concat"}
    assert set(_ops(out)) == {"Conv", "Reshape", "Gemm"}
    x = {"input": np.random.default_rng(0).standard_normal((1, 1, 8, 8)).astype(np.float32)}
    np.testing.assert_allclose(_run(out, x)[0], _run(src, x)[0], rtol=1e-5, atol=1e-5)
    assert report["applied"] and report["tool"] == "onnxruntime-basic" and report["version"] == ort.__version__


def test_dynamo_runtime_bias_and_batchnorm_are_folded_into_the_convs(tmp_path):
    src, out, report = _simplified(onnx_graphs.resnet_style(size=16, widths=(8, 16), runtime_bias=True), tmp_path)
    ops = _ops(out)
    assert not {"BatchNormalization", "CastLike", "Expand", "Shape"} & set(ops)
    assert ops["Conv"] == 6 and all(len(n.input) == 3 for n in onnx.load(str(out)).graph.node if n.op_type == "Conv")
    # Only the default domain is declared: ORT's writer lists every domain it knows.
    assert [(o.domain, o.version) for o in onnx.load(str(out)).opset_import] == [("", 20)]
    x = {"input": np.random.default_rng(1).standard_normal((1, 3, 16, 16)).astype(np.float32)}
    np.testing.assert_allclose(_run(out, x)[0], _run(src, x)[0], rtol=1e-4, atol=1e-4)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), w0=st.sampled_from([2, 4, 8]), w1=st.sampled_from([4, 8]),
       bias=st.booleans(), size=st.sampled_from([8, 12]))
def test_simplification_keeps_outputs(tmp_path_factory, seed, w0, w1, bias, size):
    tmp = tmp_path_factory.mktemp("prop")
    src, out, report = _simplified(onnx_graphs.resnet_style(size, (w0, w1), 5, bias, seed), tmp)
    assert report["nodes_after"] < report["nodes_before"]
    x = {"input": np.random.default_rng(seed).standard_normal((1, 3, size, size)).astype(np.float32)}
    ref = _run(src, x)[0]
    np.testing.assert_allclose(_run(out, x)[0], ref, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(ref).max())))


def test_an_op_ort_would_inline_keeps_the_graph_as_given(tmp_path):
    """ORT's CPU provider has no Bernoulli kernel and inlines its function body; another backend
    (OpenVINO) may convert, or refuse, the op as it is, so the model is kept as given."""
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Bernoulli", ["r"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])])
    src, out = tmp_path / "coin.onnx", tmp_path / "out.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(src))
    report = simplify(src, out)
    assert not report["applied"] and not out.exists()
    assert "Bernoulli" in report["reason"] and "RandomUniformLike" in report["reason"]


TINY_BERT = pathlib.Path(__file__).parent / "assets" / "tiny_bert.onnx"   # assets/make_tiny_bert.py made it


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_a_simplified_graph_ort_cannot_load_keeps_the_graph_as_given(cli, tmp_path, precision):
    """A Hugging Face BERT simplified at ORT's basic level no longer loads at its default level (its
    MatMulAddFusion names an initializer the first pass made): fp32 packaging was a traceback with exit 1, fp16 and
    INT8 a cut "... FAIL :" (a user walkthrough). The graph is kept as given, and said why."""
    report = simplify(TINY_BERT, tmp_path / "out.onnx")
    assert not report["applied"] and not (tmp_path / "out.onnx").exists()
    assert "cannot load the simplified graph at its default level (" in report["reason"]
    assert "Attempt to replace the existing tensor" in report["reason"], report["reason"]
    r = cli("package", TINY_BERT, "--precision", precision, "--budget", "accuracy_drop=none",
            "-o", tmp_path / "bert.edgepkg", "--json")
    assert r.exit_code == 0 and r.json()["parity"]["passed"], r.stderr
    assert r.json()["simplification"]["applied"] is False


def test_an_onnxruntime_error_keeps_its_reason_from_the_line_after_its_heading():
    from edgeopt.errors import first_line
    said = RuntimeError("[ONNXRuntimeError] : 1 : FAIL :\ngraph.cc:4164 Attempt to replace the existing tensor\nmore")
    assert first_line(said) == "[ONNXRuntimeError] : 1 : FAIL : graph.cc:4164 Attempt to replace the existing tensor"


def test_a_model_ort_cannot_load_is_one_line_bad_input(tmp_path):
    node = helper.make_node("Frobnicate", ["x"], ["y"], domain="example.custom")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("example.custom", 1)])
    src = tmp_path / "custom.onnx"
    onnx.save(model, str(src))
    with pytest.raises(BadInput) as e:
        simplify(src, tmp_path / "out.onnx")
    assert "custom.onnx" in str(e.value) and "--no-simplify" in str(e.value) and "\n" not in str(e.value)


def test_package_records_simplification_and_no_simplify_turns_it_off(cli, tmp_path):
    r = cli("package", MODEL, "--quantize", "int8", "--calib", CALIB, "--eval-data", EVAL, "-o", tmp_path / "a.edgepkg",
            "--json")
    assert r.exit_code == 0, r.stderr
    m = r.json()
    s = m["simplification"]
    assert s["applied"] and s["tool"] == "onnxruntime-basic" and s["nodes_after"] <= s["nodes_before"]
    assert m["parity"]["passed"]
    assert m["compression"]["preprocess"] == {"applied": True, "tool": "onnxruntime-basic", "by": "intake simplification"}
    r = cli("package", MODEL, "--no-simplify", "-o", tmp_path / "b.edgepkg", "--json")
    assert r.exit_code == 0, r.stderr
    m = r.json()
    assert m["simplification"] == {"applied": False, "reason": "--no-simplify"} and m["parity"]["passed"]
    assert "--no-simplify" in cli("package", "--help").stdout


def test_an_if_with_a_constant_condition_is_inlined(tmp_path):
    """ORT's basic optimizer inlines an If whose condition folds to a constant; the branch's ops are not new."""
    import onnx
    import onnx.helper as h

    from edgeopt.simplify import simplify

    x = h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])
    y = h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])
    then = h.make_graph([h.make_node("Relu", ["x"], ["t"])], "then", [], [h.make_tensor_value_info("t", 1, [1, 4])])
    other = h.make_graph([h.make_node("Neg", ["x"], ["e"])], "else", [], [h.make_tensor_value_info("e", 1, [1, 4])])
    nodes = [h.make_node("Constant", [], ["c"], value=h.make_tensor("v", onnx.TensorProto.BOOL, [], [True])),
             h.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)]
    onnx.save(h.make_model(h.make_graph(nodes, "g", [x], [y]), opset_imports=[h.make_opsetid("", 17)]),
              tmp_path / "if.onnx")
    done = simplify(tmp_path / "if.onnx", tmp_path / "out.onnx")
    assert done["applied"], done
    assert "If" not in {n.op_type for n in onnx.load(str(tmp_path / "out.onnx")).graph.node}
    assert done["grown"] == {"Relu": 1}   # the branch's op came out of the subgraph: said, not hidden in a count

