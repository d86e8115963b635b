"""ONNX If nodes on the intel-cpu profile (OpenVINO): an If whose condition folds once shapes are static
converts; one whose branches differ in rank under a condition on an input (as Silero VAD has on its
sample rate) is refused in one complete line naming the model, the op OpenVINO failed on with its own
reason, the If node and the input its condition reads."""
import numpy as np
import onnxruntime as ort
from zoo.graphs import if_on_input, if_on_shape

from edgeopt.convert.openvino import describe_conversion_failure, first_sentence


def test_ort_runs_the_if_graph_that_openvino_refuses(tmp_path):
    path = if_on_input(tmp_path / "if.onnx")
    y = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"x": np.ones((1, 64), np.float32), "sr": np.array(16000, np.int64)})[0]
    assert y.shape == (1, 4, 64)


def test_an_if_on_an_input_is_refused_in_one_complete_line(cli, tmp_path):
    path = if_on_input(tmp_path / "vad_like.onnx")
    r = cli("package", path, "--profile", "intel-cpu", "-o", tmp_path / "out.edgepkg", "--quiet")
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    line = r.stderr.strip()
    assert str(path) in line and "cannot convert this model: ONNX op Conv-" in line and "(node 'y')" in line   # OpenVINO names a node by its output
    assert "The input data tensor's rank has to be known (static)" in line       # OpenVINO's own sentence
    assert "If node 'pick' whose condition reads input 'sr'" in line
    assert line.endswith("package for --profile generic (ONNX Runtime)")
    assert not (tmp_path / "out.edgepkg").exists()


def test_an_if_whose_condition_folds_converts_with_parity(cli, tmp_path):
    path = if_on_shape(tmp_path / "if_shape.onnx")
    r = cli("package", path, "--profile", "intel-cpu", "-o", tmp_path / "out.edgepkg", "--json")
    assert r.exit_code == 0, r.stderr
    assert r.json()["parity"]["passed"]


def test_a_failure_without_a_named_op_is_openvinos_first_sentence(tmp_path):
    error = RuntimeError("Exception from src/inference/src/cpp/core.cpp:98:\n"
                         "Check 'false' failed at src/frontends/onnx/frontend/src/frontend.cpp:123:\n"
                         "FrontEnd API failed with GeneralFailure:\n"
                         "The model has a subgraph whose inputs e.g. the state are unnamed. Rename them and "
                         "try again, or use version 2.1.\n")
    line = describe_conversion_failure(error, tmp_path / "m.onnx", "user/model.onnx")
    assert line == ("user/model.onnx: OpenVINO " + line.split("OpenVINO ")[1].split()[0] + " cannot convert this "
                    "model: The model has a subgraph whose inputs e.g. the state are unnamed.")


def test_first_sentence():
    assert first_sentence("Rank must be static. Got ?.") == "Rank must be static."
    assert first_sentence("Needs opset 17.1 or newer\n") == "Needs opset 17.1 or newer"
    assert first_sentence("Pick e.g. the state. Next") == "Pick e.g. the state."


def test_an_unrelated_failure_does_not_blame_the_if(tmp_path):
    path = if_on_input(tmp_path / "m.onnx")
    error = RuntimeError("Model wasn't fully converted. Failed operations detailed log:\n-- Bernoulli-17 with a "
                         "message:\n[ONNX Frontend] Conversion failed for Bernoulli-17\nNot implemented for "
                         "this seed.\nSummary:\n-- Conversion is failed for: Bernoulli-17\n")
    line = describe_conversion_failure(error, path, "m.onnx")
    assert "ONNX op Bernoulli-17 failed to convert: Not implemented for this seed." in line and "If node" not in line
    assert describe_conversion_failure(RuntimeError("Check 'x' failed at a.cpp:1:\n"), path, "m.onnx").endswith(
        "cannot convert this model: RuntimeError")
