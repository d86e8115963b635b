"""The Raspberry Pi (LiteRT) path beyond plain CNNs, per structure (tests/assets/litert_models.py):
attention + LayerNorm, an FPN with Resize, a YOLO-style Split head, a GRU, a state + scalar model;
from ONNX (both torch exporters) and from PyTorch straight to litert-torch; FP32 and full-integer
INT8, each packaged only when parity with the source passes. Two representatives run by default;
the whole grid is `slow`."""
import importlib.util
import pathlib
import warnings

import numpy as np
import pytest

from edgeopt import api

ASSETS = pathlib.Path(__file__).resolve().parent.parent / "assets"
MODELS_FILE = ASSETS / "litert_models.py"
CALIB_SAMPLES = 32


def _assets():
    spec = importlib.util.spec_from_file_location("litert_models", MODELS_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _onnx(name, exporter, tmp_path):
    import torch

    models = _assets()
    path = tmp_path / f"{name}-{exporter}.onnx"
    args = tuple(torch.randn(*s) for s in models.SHAPES[name])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "legacy":
            torch.onnx.export(getattr(models, name)(), args, str(path), opset_version=17, dynamo=False,
                              input_names=["input"])
        else:
            torch.onnx.export(getattr(models, name)(), args, str(path), dynamo=True, external_data=False,
                              verbose=False, input_names=["input"])
    return path


def _calib(tmp_path, shapes, names=("input",)):
    rng = np.random.default_rng(3)
    path = tmp_path / "calib.npz"
    np.savez(path, **{n: rng.standard_normal((CALIB_SAMPLES * s[0], *s[1:])).astype(np.float32)
                      for n, s in zip(names, shapes)})
    return path


def _package(model, tmp_path, quantize, shapes, **kwargs):
    calib = {"calib": _calib(tmp_path, shapes), "allow_mismatch": True} if quantize == "int8" else {}
    return api.package(str(model), "raspberry-pi-5", tmp_path / f"m-{quantize}.edgepkg", quantize=quantize,
                       **calib, **kwargs)


def _parity_holds(parity):
    """FP32 within the profile's tolerance; INT8 within it or, on these random-weight models (int8
    attention flips 1 of 32 near-tied argmaxes at times), top-1 agreement >= 0.9."""
    return parity["passed"] or parity.get("top1_agreement", 0.0) >= 0.9


def test_attention_onnx_packages_in_fp32_and_int8_with_parity(tmp_path):
    """Shape/Gather/Concat chains (folded), LayerNormalization, MatMul attention, Softmax, Erf GELU."""
    path = _onnx("attention", "legacy", tmp_path)
    for quantize in ("none", "int8"):
        m = _package(path, tmp_path, quantize, _assets().SHAPES["attention"])
        assert _parity_holds(m["parity"]), m["parity"]
        assert m["inputs"][0]["layout"] == "NHWC" and m["inputs"][0]["shape"] == [1, 16, 16, 3]
    assert m["compression"]["converter"] == "onnx -> torch -> litert-torch"


def test_a_pytorch_source_goes_straight_to_litert_torch(tmp_path, monkeypatch):
    """No ONNX export on the way (torch.onnx.export would raise), the module itself is the parity
    reference, and the image input is NHWC."""
    import torch

    def no_export(*a, **k):
        raise AssertionError("the LiteRT path exported a PyTorch source to ONNX")
    monkeypatch.setattr(torch.onnx, "export", no_export)
    m = _package(f"{MODELS_FILE}:fpn", tmp_path, "none", None, input_shapes={"input": [1, 3, 16, 16]})
    assert m["compression"]["converter"] == "pytorch -> litert-torch"
    assert m["source"]["format"] == "pytorch-module"
    assert m["inputs"][0]["shape"] == [1, 16, 16, 3] and m["outputs"][0]["shape"] == [1, 3, 16, 16]
    assert m["parity"]["passed"] and m["parity"]["max_abs_error"] < 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("quantize", ["none", "int8"])
@pytest.mark.parametrize("exporter", ["legacy", "dynamo"])
@pytest.mark.parametrize("name", ["attention", "fpn", "split_head", "gru"])
def test_each_structure_converts_from_both_onnx_exports(tmp_path, name, exporter, quantize):
    m = _package(_onnx(name, exporter, tmp_path), tmp_path, quantize, _assets().SHAPES[name])
    assert _parity_holds(m["parity"]), m["parity"]


@pytest.mark.slow
@pytest.mark.parametrize("quantize", ["none", "int8"])
@pytest.mark.parametrize("name", ["attention", "split_head", "gru"])
def test_each_structure_converts_from_pytorch(tmp_path, name, quantize):
    shape = _assets().SHAPES[name][0]
    m = _package(f"{MODELS_FILE}:{name}", tmp_path, quantize, [shape], input_shapes={"input": list(shape)})
    assert _parity_holds(m["parity"]), m["parity"]
    assert m["compression"]["converter"] == "pytorch -> litert-torch"


@pytest.mark.slow
def test_an_exported_program_with_state_and_scalar_inputs(tmp_path):
    """A .pt2 keeps its own example inputs (float audio, float state, int64 scalar); names come from
    the program's signature and the state output is the second output."""
    import torch

    models = _assets()
    pt2 = tmp_path / "vad.pt2"
    torch.export.save(torch.export.export(models.vad_like(), models.vad_inputs()), str(pt2))
    m = api.package(str(pt2), "raspberry-pi-5", tmp_path / "vad.edgepkg")
    assert [i["name"] for i in m["inputs"]] == ["x", "state", "sr"]
    assert [i["dtype"] for i in m["inputs"]] == ["float32", "float32", "int32"]   # litert-torch narrows int64
    assert [o["shape"] for o in m["outputs"]] == [[1, 1], [2, 1, 8]]
    assert m["parity"]["passed"] and m["compression"]["converter"] == "pytorch -> litert-torch"
    # INT8: the int64 scalar is calibrated as the int32 LiteRT input it became (stacked sample sets)
    rng = np.random.default_rng(4)
    calib = tmp_path / "vad_calib.npz"
    np.savez(calib, x=(rng.standard_normal((CALIB_SAMPLES, 1, 64)) * 0.1).astype(np.float32),
             state=(rng.standard_normal((CALIB_SAMPLES, 2, 1, 8)) * 0.1).astype(np.float32),
             sr=np.full(CALIB_SAMPLES, 16000, np.int64))
    q = api.package(str(pt2), "raspberry-pi-5", tmp_path / "vad-int8.edgepkg", quantize="int8", calib=calib,
                    allow_mismatch=True)
    assert q["compression"]["quantize"] == "int8" and q["inputs"][2]["dtype"] == "int32"


def test_an_exported_image_model_converts(tmp_path):
    """An image .pt2 is wrapped channel-last and set to eval mode; torch forbids eval() on an ExportedProgram's
    module, which failed the conversion with "Calling train() is not supported yet"."""
    import torch

    spec = importlib.util.spec_from_file_location("tiny_torch", ASSETS / "tiny_torch.py")
    tiny = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tiny)
    pt2 = tmp_path / "cnn.pt2"
    torch.export.save(torch.export.export(tiny.make_cnn(), (torch.randn(1, 3, 16, 16),)), str(pt2))
    m = api.package(str(pt2), "raspberry-pi-5", tmp_path / "cnn.edgepkg")
    assert m["parity"]["passed"] and m["inputs"][0]["shape"] == [1, 16, 16, 3]


def test_a_quantizer_failure_is_one_line_saying_what_still_works(monkeypatch):
    from types import SimpleNamespace

    from edgeopt.convert import tflite
    from edgeopt.errors import BadInput

    def fails(*args):
        raise NotImplementedError("op TFL_UNIDIRECTIONAL_SEQUENCE_LSTM has no int8 policy\ntraceback-ish detail")
    monkeypatch.setattr(tflite, "_quantize", fails)
    with pytest.raises(BadInput) as e:
        tflite._quantize_or_explain(None, None, SimpleNamespace(reference="m.onnx"),
                                    SimpleNamespace(quantize="int8", calibration=None), {}, None)
    assert str(e.value) == ("m.onnx: ai-edge-quantizer cannot make full-integer INT8 of this model: op "
                            "TFL_UNIDIRECTIONAL_SEQUENCE_LSTM has no int8 policy; the float model converts "
                            "(--precision fp32 or fp16, or --quantize dynamic)")


def test_nms_inside_the_graph_is_padded_counted_and_trimmed_by_the_agent(tmp_path):
    """An SSD-like head with ONNX NonMaxSuppression and GatherND (tests/zoo/graphs.py): the .tflite has
    static-length outputs and a count; through the bundle's runtime options the agent's LiteRT adapter
    gives ONNX Runtime's detections, row for row, on inputs parity never saw."""
    import onnxruntime as ort
    from device_agent.bundle import extract
    from zoo.graphs import NMS_INPUT, NMS_OUTPUTS, nms_detector

    from edgeopt.errors import BadInput
    from edgeopt.litert_model import adapter

    source = nms_detector(tmp_path / "nms.onnx")
    manifest = api.package(str(source), "raspberry-pi-5", output=tmp_path / "nms.edgepkg")
    assert manifest["parity"]["passed"]
    options = manifest["runtime"]["options"]
    assert options["valid_rows"] == {name: "output_3" for name in NMS_OUTPUTS}
    extract(tmp_path / "nms.edgepkg", tmp_path / "unpacked")
    model = tmp_path / "unpacked" / next(f["path"] for f in manifest["files"] if f["role"] == "model")
    runner = adapter(model, options)
    session = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"])
    rng, counts = np.random.default_rng(7), set()
    for _ in range(8):
        x = rng.standard_normal(NMS_INPUT[1]).astype(np.float32)
        ref = session.run(None, {NMS_INPUT[0]: x})
        got = runner.infer({NMS_INPUT[0]: x.transpose(0, 2, 3, 1)})   # the bundle takes NHWC
        assert [g.shape for g in got] == [r.shape for r in ref]
        np.testing.assert_array_equal(got[0], ref[0])
        np.testing.assert_allclose(got[1], ref[1], atol=1e-4)
        np.testing.assert_allclose(got[2], ref[2], atol=1e-5)
        counts.add(len(ref[0]))
    assert len(counts) > 1   # the number of detections varied, and the trimming followed it
    with pytest.raises(BadInput, match=r"model.tflite: the model has no output output_9, which runtime option valid_rows"):
        adapter(model, dict(options, valid_rows={"boxes": "output_9"}))
