"""Each backend's own typed Options: built and refused before any work, handed to the backend unopened,
recorded in the recipe, and searched where they declare a range."""
import dataclasses

import pytest

from conftest import MODEL, bundle_manifest
from edgeopt import api
from edgeopt.convert import BACKENDS, _backend_class
from edgeopt.errors import BadInput
from edgeopt.options import fields
from edgeopt.search import space

BACKEND_CLASSES = {name: _backend_class(target) for name, target in BACKENDS.items() if target}


def test_every_backend_declares_frozen_options_the_recipe_can_carry():
    for name, cls in BACKEND_CLASSES.items():
        options = cls().options({})
        assert dataclasses.is_dataclass(options) and options == cls.Options()
        with pytest.raises(dataclasses.FrozenInstanceError):
            options.keep_float = "auto"
        for f in fields(cls.Options):
            assert f.metadata["help"]
        assert set(cls.int8_options) <= {f.name for f in fields(cls.Options)}, name


def test_options_are_typed_bounded_and_refused_as_flags():
    ov = BACKEND_CLASSES["openvino"]()
    assert ov.options({"preset": "mixed", "subset_size": "40"}) == ov.Options(preset="mixed", subset_size=40)
    for given, message in (({"subset_size": 0}, "backend openvino: subset_size: 0 is out of range (>= 1)"),
                           ({"preset": "fast"}, "backend openvino: preset: 'fast' is not one of performance, mixed"),
                           ({"max_accuracy_drop": 2.0}, "max_accuracy_drop: 2.0 is out of range (<= 1.0)"),
                           ({"int8_io": "int8"}, "backend openvino has no --int8-io option (tflite's); its "
                                                 "options: ")):
        with pytest.raises(BadInput, match=message.replace("(", r"\(").replace(")", r"\)")):
            ov.options(given)
    with pytest.raises(BadInput, match="backend onnxruntime has no --performance-hint option"):
        BACKEND_CLASSES["onnxruntime"]().options({"performance_hint": "throughput"})
    with pytest.raises(BadInput, match="backend tflite has no --subset-size option"):
        BACKEND_CLASSES["tflite"]().options({"subset_size": 10})


def test_a_mistyped_backend_option_is_named_as_typed_with_the_closest_key():
    """int8_metod is no backend's option, so no flag: it was reported as "--int8-metod", a flag nobody typed."""
    with pytest.raises(BadInput, match=r"backend onnxruntime has no option 'int8_metod'; its options: "
                                       r"int8_method, int8_weight_bits, keep_float, max_accuracy_drop "
                                       r"\(did you mean int8_method\?\)"):
        BACKEND_CLASSES["onnxruntime"]().options({"int8_metod": "static"})
    with pytest.raises(BadInput, match=r"has no option 'zzz'; its options: [a-z0-9_, ]+$") as refused:
        BACKEND_CLASSES["onnxruntime"]().options({"zzz": "1"})
    assert "did you mean" not in str(refused.value)


def test_an_unknown_option_is_refused_before_the_model_is_read(tmp_path):
    missing = str(tmp_path / "absent.onnx")      # never opened: the option is refused first
    with pytest.raises(BadInput, match="backend onnxruntime has no --preset option"):
        api.package(missing, "generic", tmp_path / "x.edgepkg", preset="mixed")
    with pytest.raises(BadInput, match="backend onnxruntime has no --subset-size option"):
        api.package(missing, "generic", tmp_path / "x.edgepkg", backend_options={"subset_size": 10})
    with pytest.raises(BadInput, match="--keep-float auto and --backend-option keep_float=x disagree: give one"):
        api.package(missing, "generic", tmp_path / "x.edgepkg", keep_float="auto", backend_options={"keep_float": "x"})


def test_backend_options_reach_the_backend_and_the_recipe(tmp_path):
    m = api.package(str(MODEL), "intel-cpu", tmp_path / "t.edgepkg", backend_options={"performance_hint": "throughput"})
    assert m["runtime"]["options"]["performance_hint"] == "THROUGHPUT"
    package = bundle_manifest(m["path"])["recipe"]["package"]
    assert package["performance_hint"] == "throughput" and package["preset"] == "" and package["keep_float"] == ""
    # the defaults of the compatibility keywords count as not set, on a backend that lacks the option too
    m = api.package(str(MODEL), "generic", tmp_path / "g.edgepkg", performance_hint="latency", preset="", int8_io=None)
    assert m["recipe"]["package"]["performance_hint"] == "latency"


def test_search_dimensions_come_from_the_backend_options():
    ov = BACKEND_CLASSES["openvino"]()
    dims = {d.name: d for d in space.build(ov, "onnx", True, False, None)}
    assert dims["preset"].choices == ("performance", "mixed") and dims["keep_float"].choices == ("", "auto")
    assert "performance_hint" not in dims and "max_accuracy_drop" not in dims and "subset_size" not in dims
    # int8-only options are no dimension without calibration data (no int8)
    assert not {"preset", "keep_float"} & {d.name for d in space.build(ov, "onnx", False, False, None)}
    dims = list(dims.values())
    package, steps, _ = space.options(dims, {"quantize": "int8", "preset": "mixed", "keep_float": "", "precision": "fp32"})
    assert package == {"quantize": "int8", "preset": "mixed", "precision": "fp32"} and steps == []
    package, _, _ = space.options(dims, {"quantize": "none", "preset": "mixed", "keep_float": "auto", "precision": "fp16"})
    assert package == {"quantize": "none", "precision": "fp16"}
    ort = [d.name for d in space.build(BACKEND_CLASSES["onnxruntime"](), "onnx", True, False, None)]
    assert ort == ["quantize", "keep_float", "precision"]


def test_a_space_file_narrows_a_backend_option(tmp_path):
    f = tmp_path / "space.toml"
    f.write_text('preset = ["mixed"]\n')
    dims = {d.name: d for d in space.build(BACKEND_CLASSES["openvino"](), "onnx", True, False, None, f)}
    assert dims["preset"].choices == ("mixed",)
    f.write_text('preset = ["fast"]\n')
    with pytest.raises(BadInput, match='preset: "fast" is not one of performance, mixed'):
        space.build(BACKEND_CLASSES["openvino"](), "onnx", True, False, None, f)
    f.write_text('preset = ["mixed"]\n')
    with pytest.raises(BadInput, match="preset: not a dimension of this search"):
        space.build(BACKEND_CLASSES["onnxruntime"](), "onnx", True, False, None, f)
