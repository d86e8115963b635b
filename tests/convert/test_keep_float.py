"""Mixed precision (--keep-float) with real runtimes: named layers stay float in the artifact, `auto`
finds the layers INT8 (or FP16) hurts and recovers the float model's outputs, bad requests exit 2.

The model where quantization hurts is the shipped digits CNN made ill-conditioned without changing its
function: one output channel of the last conv scaled up by SCALE and the head's weights for that
channel scaled down by as much (ReLU and MaxPool commute with a positive scale). In float nothing
changes; per-tensor INT8 of that activation crushes the other 63 channels, and the head's per-channel
INT8 weights round the shrunken ones to zero. Keeping the conv and the head float (ONNX Runtime, LiteRT:
the tensor between them is quantized while either neighbour is) or only the head (OpenVINO: NNCF puts
no FakeQuantize before an ignored op) undoes it.
"""
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import onnx_graphs
from conftest import CALIB, EVAL, MODEL, bundle_member
from edgeopt import api
from edgeopt.convert import tflite_mixed
from edgeopt.errors import BadInput
from edgeopt.progress import Progress

SCALE = 300.0
CHANNEL = 5
CONV, HEAD = "/features/features.7/Conv", "/head/Gemm"


def outlier_model(path, scale=SCALE):
    model = onnx.load(str(MODEL))
    weights = {i.name: i for i in model.graph.initializer}
    conv = next(n for n in model.graph.node if n.name == CONV)
    head = next(n for n in model.graph.node if n.name == HEAD)
    arrays = {name: numpy_helper.to_array(weights[name]).copy() for name in (*conv.input[1:], head.input[1])}
    w, b = conv.input[1:]
    arrays[w][CHANNEL] *= scale
    arrays[b][CHANNEL] *= scale
    per_channel = arrays[head.input[1]].shape[1] // arrays[w].shape[0]   # flattened 2x2 positions
    arrays[head.input[1]][:, CHANNEL * per_channel:(CHANNEL + 1) * per_channel] /= scale
    for name, array in arrays.items():
        weights[name].CopyFrom(numpy_helper.from_array(array.astype(np.float32), name))
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def outlier(tmp_path_factory):
    return outlier_model(tmp_path_factory.mktemp("outlier") / "outlier.onnx")


def _package(model, tmp_path, profile="generic", quantize="int8", budgets=None, **options):
    """Without the bundle's accuracy_drop budget unless given: met by INT8 everywhere, it keeps no layer float
    (test_a_bundle_budget_int8_meets_keeps_every_layer_int8), and these tests are of the choosing itself."""
    out = tmp_path / f"{profile}-{quantize}.edgepkg"
    calib = CALIB if quantize == "int8" else None
    return api.package(str(model), profile, out, quantize=quantize, calib=calib, eval_data=EVAL,
                       allow_mismatch=True, force=True, budgets=budgets or {"accuracy_drop": None}, **options)


def _onnx_artifact(manifest, tmp_path):
    path = tmp_path / "artifact.onnx"
    path.write_bytes(bundle_member(manifest["path"], "model/model.onnx"))
    return onnx.load(str(path))


def _float_weights(model) -> dict:
    """{node: whether its weights are a float initializer (not DequantizeLinear output)} of the compute nodes."""
    inits = {i.name for i in model.graph.initializer}
    return {n.name: n.input[1] in inits for n in model.graph.node if n.op_type in ("Conv", "Gemm")}


def test_onnxruntime_named_layers_stay_float_by_node_or_module_name(tmp_path):
    m = _package(MODEL, tmp_path, keep_float=f"{HEAD},features.3")
    record = m["compression"]["keep_float"]
    assert record == {"mode": "named", "requested": [HEAD, "features.3"],
                      "layers": ["/features/features.3/Conv", HEAD]}
    model = _onnx_artifact(m, tmp_path)
    assert _float_weights(model) == {"/features/features.0/Conv": False, "/features/features.3/Conv": True,
                                     CONV: False, HEAD: True}
    # No QuantizeLinear reads a kept layer's output: what follows it runs on its float result.
    produced_by = {o: n for n in model.graph.node for o in n.output}
    quantized = [n.name for n in model.graph.node if n.op_type == "QuantizeLinear"
                 and produced_by.get(n.input[0]) is not None and produced_by[n.input[0]].name in record["layers"]]
    assert quantized == []
    assert m["parity"]["passed"]


def test_onnxruntime_auto_finds_the_ill_conditioned_pair_and_recovers_top1(outlier, tmp_path):
    plain = _package(outlier, tmp_path)
    m = _package(outlier, tmp_path, keep_float="auto")
    record = m["compression"]["keep_float"]
    assert sorted(record["layers"]) == sorted([CONV, HEAD])
    assert [row["layer"] for row in record["sensitivity"][:2]] == [CONV, HEAD]
    assert record["samples"] == 200 and record["samples_source"] == "eval data"
    assert record["after"]["error"] < 0.1 * record["before"]["error"]
    assert record["after"]["top1"] == record["float_top1"] > record["before"]["top1"]
    # The bundle's own parity check (all 360 eval samples) agrees with the choice.
    assert plain["parity"]["artifact_top1"] < m["parity"]["artifact_top1"] == m["parity"]["source_top1"]
    assert _float_weights(_onnx_artifact(m, tmp_path))[HEAD]
    assert any(n.startswith("--keep-float auto kept 2 of 4 layers float") for n in m["notes"])
    assert any("chose layers on the --eval-data it is then judged on" in n for n in m["notes"])


def test_onnxruntime_auto_keeps_nothing_where_int8_is_fine(tmp_path):
    record = _package(MODEL, tmp_path, keep_float="auto")["compression"]["keep_float"]
    assert record["layers"] == [] and record["after"] == record["before"]
    # the whole model quantized is measured first: fine as it is, no layer is measured alone (minutes, for nothing)
    assert record["sensitivity"] == [] and record["layers_measured"] == 4 and record["trials"] == []
    assert record["rule"].endswith("(none: the error is below 0.02; no layer measured alone)")
    assert record["before"]["error"] < 0.05 and record["before"]["top1"] == record["float_top1"]


def test_onnxruntime_auto_with_a_top1_budget_stops_when_it_is_met(outlier, tmp_path):
    record = _package(outlier, tmp_path, keep_float="auto", max_accuracy_drop=0.0)["compression"]["keep_float"]
    assert record["rule"].startswith("top-1 drop <= 0")
    assert record["float_top1"] - record["after"]["top1"] <= 0.0
    assert len(record["layers"]) == len(record["trials"]) == 2


def test_onnxruntime_fp16_auto_keeps_the_layers_whose_weights_underflow(tmp_path):
    """Scaled by 1e6 the head's weights for one channel fall under FP16's smallest subnormal."""
    model = outlier_model(tmp_path / "underflow.onnx", scale=1e6)
    fp16 = _package(model, tmp_path, quantize="none", precision="fp16", keep_float="auto")["compression"]["fp16"]
    record = fp16["keep_float"]
    assert sorted(record["layers"]) == sorted([CONV, HEAD])
    assert record["after"]["error"] < 0.05 * record["before"]["error"]
    assert record["float_nodes"][0] == CONV and record["float_nodes"][-1] == HEAD   # pools between them too


@pytest.mark.parametrize("args, message", [
    (["--keep-float", "conv9"], "--keep-float 'conv9': no such layer among the model's 10 nodes "
                                "('/features/features.0/Conv'"),
    (["--keep-float", "head,,conv1"], "no empty name"),
    (["--keep-float", "auto", "--quantize", "dynamic"], "--keep-float applies to --quantize int8"),
    (["--keep-float", "head", "--max-accuracy-drop", "0.01"], "applies to --keep-float auto"),
])
def test_bad_keep_float_requests_exit_2_in_one_line(cli, tmp_path, args, message):
    base = ["package", MODEL, "-o", tmp_path / "x.edgepkg", "--quantize", "int8", "--calib", CALIB]
    r = cli(*base, *args)
    errors = [line for line in r.stderr.splitlines() if line.startswith("edgeopt: error:")]
    assert r.exit_code == 2 and len(errors) == 1 and message in errors[0], r.stderr


def test_the_name_check_comes_before_calibration(tmp_path):
    class Recorder(Progress):
        def __init__(self):
            self.started = []

        def start(self, label, total=None, unit=""):
            self.started.append(label)

    progress = Recorder()
    with pytest.raises(BadInput, match="no such layer"):
        _package(MODEL, tmp_path, keep_float="/head/Gemm2", progress=progress)
    assert progress.started == []


def test_openvino_named_layer_is_an_ignored_scope(outlier, tmp_path):
    plain = _package(outlier, tmp_path, "intel-cpu")
    m = _package(outlier, tmp_path, "intel-cpu", keep_float="head")
    assert m["compression"]["keep_float"]["layers"] == [HEAD]
    ops = m["compression"]["ops"]
    assert ops["left_in_float_ops"] == [f"MatMul:{HEAD}/WithoutBiases"]
    assert ops["fake_quantize"] == plain["compression"]["ops"]["fake_quantize"] - 1   # none before the head
    assert m["parity"]["artifact_top1"] >= plain["parity"]["artifact_top1"]


def _tflite_weight_types(manifest, tmp_path) -> dict:
    from ai_edge_litert.interpreter import Interpreter

    path = tmp_path / "artifact.tflite"
    path.write_bytes(bundle_member(manifest["path"], "model/model.tflite"))
    return {tuple(d["shape"]): np.dtype(d["dtype"]).name for d in Interpreter(str(path)).get_tensor_details()
            if len(d["shape"]) >= 2 and d["shape"][0] in (10, 64)}


@pytest.mark.slow
def test_tflite_named_layer_keeps_its_fully_connected_op_float(tmp_path):
    m = _package(MODEL, tmp_path, "raspberry-pi-5", keep_float=HEAD)
    assert m["compression"]["keep_float"]["layers"] == [HEAD]   # ONNX names, matched to the .tflite's ops
    types = _tflite_weight_types(m, tmp_path)
    assert types[(10, 256)] == "float32" and types[(64, 3, 3, 32)] == "int8"
    # Named by op and rank when the ONNX graph does not match the .tflite's compute ops one to one.
    other = tmp_path / "other.onnx"
    onnx.save(onnx_graphs.resnet_style(16, widths=(8,)), str(other))
    artifact = tmp_path / "artifact.tflite"
    assert list(tflite_mixed.layers(artifact, SimpleNamespace(torch_module=None, onnx_path=MODEL))) == [
        "/features/features.0/Conv", "/features/features.3/Conv", CONV, HEAD]
    assert list(tflite_mixed.layers(artifact, SimpleNamespace(torch_module=None, onnx_path=other))) == [
        "DEPTHWISE_CONV_2D:0", "CONV_2D:1", "CONV_2D:2", "FULLY_CONNECTED:3"]


@pytest.mark.slow
def test_tflite_auto_recovers_the_ill_conditioned_model(outlier, tmp_path):
    m = _package(outlier, tmp_path, "raspberry-pi-5", keep_float="auto")
    record = m["compression"]["keep_float"]
    assert sorted(record["layers"]) == sorted([CONV, HEAD])
    assert record["after"]["error"] < 0.1 * record["before"]["error"]
    assert m["parity"]["artifact_top1"] == m["parity"]["source_top1"]


def test_a_bundle_budget_int8_meets_keeps_every_layer_int8(tmp_path):
    """A user walkthrough: the sample on intel-cpu lost no top-1 to INT8 (0.995 both), within the bundle's
    accuracy_drop budget, yet auto kept 2 of 4 layers float for its output error, and INT8's speed with them."""
    m = _package(MODEL, tmp_path, "intel-cpu", keep_float="auto", budgets={"accuracy_drop": 0.01})
    record = m["compression"]["keep_float"]
    assert record["layers"] == [] and "meets the bundle's accuracy_drop budget 0.01" in record["rule"]
    assert record["float_top1"] - record["before"]["top1"] <= 0.01
    assert any("none needed, INT8 everywhere keeps top-1" in n for n in m["notes"]), m["notes"]
    unbudgeted = _package(MODEL, tmp_path, "intel-cpu", keep_float="auto")["compression"]["keep_float"]
    assert "accuracy_drop budget" not in unbudgeted["rule"]   # without one, the error decides, as before


@pytest.mark.slow
def test_openvino_auto_measures_with_nncf_and_keeps_the_head(outlier, tmp_path):
    m = _package(outlier, tmp_path, "intel-cpu", keep_float="auto")
    record = m["compression"]["keep_float"]
    assert record["layers"] == [HEAD] and record["sensitivity"][0]["layer"] == HEAD
    assert record["after"]["error"] < 0.5 * record["before"]["error"]


def test_auto_keeps_layers_float_until_the_parity_checks_top1_agreement_passes():
    """A user review: `--keep-float auto` said "none needed (output error 0.013)", then parity refused the bundle
    at top-1 agreement 0.9688 against the profile's 0.97. The fully quantized model here has a small error but
    flips 4 % of the argmaxes; keeping layer "b" float flips none."""
    from edgeopt.compress import mixed_quantize
    from edgeopt.profiles import load_profile
    from edgeopt.source import TensorSpec

    rng = np.random.default_rng(0)
    n = 100
    x = rng.standard_normal((n, 1, 10)).astype(np.float32)
    logits = np.eye(10, dtype=np.float32)[rng.integers(0, 10, n)] * 10 + rng.standard_normal((n, 10)) * 0.1
    for i in range(4):   # near-ties on 4 samples: swapping their top two is a tiny error and a flipped top-1
        top = int(np.argmax(logits[i]))
        logits[i, (top + 1) % 10] = logits[i, top] - 0.01

    def runner(flipped: int):
        def infer(feed):
            i = int(np.flatnonzero((x.reshape(n, 10) == feed["x"].reshape(1, 10)).all(1))[0])
            out = logits[i].copy()
            if i < flipped:   # the first `flipped` samples' winner swapped with another class: small L2 error
                top = int(np.argmax(out))
                out[top], out[(top + 1) % 10] = out[(top + 1) % 10], out[top]
            return [out.reshape(1, 10)]
        return infer
    trials = mixed_quantize.Trials(reference=runner(0), isolated=lambda layer: runner(4 if layer == "b" else 0),
                                   excluding=lambda layers: runner(0 if "b" in layers else 4))
    request = SimpleNamespace(options=SimpleNamespace(max_accuracy_drop=None), evaluation={"x": x},
                              calibration=None, profile=load_profile("raspberry-pi-5"))
    record = mixed_quantize.choose(["a", "b", "c"], {}, trials, request, [TensorSpec("x", [1, 10], "float32")],
                                   Progress())
    assert record["before"]["agreement"] == 0.96 and record["before"]["error"] < mixed_quantize.INT8_NEGLIGIBLE
    assert record["layers"] == ["b"] and record["after"]["agreement"] == 1.0
    assert not any("none needed" in note for note in mixed_quantize.notes(record))


def test_auto_says_when_no_choice_reaches_parity_and_spares_a_waived_agreement():
    """A code review: where no choice reaches parity's agreement the notes blamed the output error or the
    --max-accuracy-drop; and where parity's agreement is waived (--allow-mismatch, optimize's accuracy budget)
    layers were kept float for it all the same."""
    from edgeopt.compress import mixed_quantize
    from edgeopt.profiles import load_profile
    from edgeopt.source import TensorSpec

    rng = np.random.default_rng(1)
    n = 100
    x = rng.standard_normal((n, 1, 10)).astype(np.float32)
    logits = np.eye(10, dtype=np.float32)[rng.integers(0, 10, n)] * 10 + rng.standard_normal((n, 10)) * 0.1
    for i in range(4):
        top = int(np.argmax(logits[i]))
        logits[i, (top + 1) % 10] = logits[i, top] - 0.01

    def flipping(feed):   # every choice flips the 4 near-ties: none reaches 0.97
        i = int(np.flatnonzero((x.reshape(n, 10) == feed["x"].reshape(1, 10)).all(1))[0])
        out = logits[i].copy()
        if i < 4:
            top = int(np.argmax(out))
            out[top], out[(top + 1) % 10] = out[(top + 1) % 10], out[top]
        return [out.reshape(1, 10)]

    trials = mixed_quantize.Trials(reference=lambda feed: [logits[int(np.flatnonzero(
        (x.reshape(n, 10) == feed["x"].reshape(1, 10)).all(1))[0])].reshape(1, 10)],
        isolated=lambda layer: flipping, excluding=lambda layers: flipping)
    spec = [TensorSpec("x", [1, 10], "float32")]
    request = SimpleNamespace(options=SimpleNamespace(max_accuracy_drop=None), evaluation={"x": x},
                              calibration=None, profile=load_profile("raspberry-pi-5"))
    record = mixed_quantize.choose(["a", "b"], {}, trials, request, spec, Progress())
    assert record["layers"] == [] and "top-1 agreement >= 0.97 not reached" in record["rule"]
    said = mixed_quantize.notes(record)
    assert "none reached parity's top-1 agreement" in said[0] and said[1].startswith("warning: --keep-float auto "
                                                                                     "found no choice")
    waived = mixed_quantize.choose(["a", "b"], {}, trials, SimpleNamespace(**vars(request), agreement_waived=True),
                                   spec, Progress())
    assert waived["rule"].endswith("(none: the error is below 0.02; no layer measured alone)")


def test_a_pytorch_module_path_names_the_layers_under_it():
    """`--keep-float b1.c1` was refused for "/b1/c1/Conv" (only "b1/c1" or a scope torch.onnx had dotted
    itself, "stem.0", matched); a dotted module path is how a PyTorch user names a layer."""
    from edgeopt.compress.mixed_quantize import resolve
    layers = ["/stem/stem.0/Conv", "/b1/c1/Conv", "/b1/c2/Conv", "/layer1/layer1.0/conv1/Conv", "/head/Gemm"]
    assert resolve(["b1.c1"], layers) == ["/b1/c1/Conv"]
    assert resolve(["b1"], layers) == ["/b1/c1/Conv", "/b1/c2/Conv"]
    assert resolve(["layer1.0.conv1", "stem.0"], layers) == ["/stem/stem.0/Conv", "/layer1/layer1.0/conv1/Conv"]
    with pytest.raises(BadInput, match="'b1.c': no such layer"):
        resolve(["b1.c"], layers)   # a prefix of a name is not a module
