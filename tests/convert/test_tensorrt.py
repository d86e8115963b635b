"""The tensorrt backend (jetson-orin-nano) and the agent's tensorrt adapter, everything that needs no GPU: bundle
contents and build settings, the opset fitted to the profile's TensorRT versions, a symmetric INT8 QDQ graph,
parity on ONNX Runtime, bad options refused in one line, the engine cache key and the version-dependent API
choices, and `bench` on a machine without TensorRT. The GPU path is the last test, skipped without one."""
import json
import os

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from conftest import CALIB, MODEL, bundle_manifest, bundle_member
from device_agent import BundleError, AgentError
from device_agent.runtimes import tensorrt as agent_trt
from edgeopt import api
from edgeopt.convert.tensorrt import QDQ_OPS, opset_range, target_opset

PROFILE = "jetson-orin-nano"


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trt")
    fp16 = api.package(str(MODEL), PROFILE, tmp / "fp16.edgepkg")
    int8 = api.package(str(MODEL), PROFILE, tmp / "int8.edgepkg", precision="fp32", quantize="int8", calib=str(CALIB))
    return {"fp16": (tmp / "fp16.edgepkg", fp16), "int8": (tmp / "int8.edgepkg", int8)}


def test_fp16_bundle_holds_the_fp32_onnx_and_the_build_settings(bundles):
    path, m = bundles["fp16"]
    assert m["profile"] == {"name": PROFILE, "backend": "tensorrt", "precision": "fp16"}
    assert m["runtime"]["name"] == "tensorrt"
    assert m["runtime"]["options"] == {"fp16": True, "int8": False, "workspace_mib": 1024,
                                       "builder_optimization_level": 3, "dla_core": -1, "gpu_fallback": True,
                                       "library_tactics": "default", "tf32": True,
                                       "tensorrt_versions": ["8.5", "10.3"]}
    model = onnx.load_from_string(bundle_member(path, "model/model.onnx"))
    assert all(n.op_type not in ("Cast",) for n in model.graph.node)          # FP32 ONNX: FP16 is a builder flag
    assert all(d.dim_value > 0 for i in model.graph.input for d in i.type.tensor_type.shape.dim)  # static shapes
    assert 9 <= m["compression"]["opset"]["opset"] <= 17
    assert m["simplification"]["applied"] is True
    assert "fp16 tolerance" in m["compression"]["parity_note"] and any("ONNX Runtime" in n for n in m["notes"])
    assert m["parity"]["passed"] and m["parity"]["tolerance"] == 5e-2


def test_int8_is_a_symmetric_qdq_graph_per_channel_weights_per_tensor_activations(bundles):
    path, m = bundles["int8"]
    assert m["runtime"]["options"]["int8"] is True and m["runtime"]["options"]["fp16"] is False
    assert m["compression"]["scheme"] == "s8s8-symmetric" and m["compression"]["symmetric"] is True
    model = onnx.load_from_string(bundle_member(path, "model/model.onnx"))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    weights = {n.input[0] for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")}
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert qdq
    for n in qdq:
        zero = inits[n.input[2]]
        assert zero.dtype == np.int8 and not zero.any(), n.name            # INT8, zero point 0: symmetric
    per_channel = [n for n in qdq if n.op_type == "DequantizeLinear" and n.input[0] in inits and inits[n.input[1]].ndim]
    activations = [n for n in qdq if n.op_type == "QuantizeLinear"]
    assert per_channel and all(inits[n.input[1]].ndim == 0 for n in activations)
    assert not any(inits[n.input[0]].dtype == np.int32 for n in qdq if n.input[0] in inits)  # bias stays float
    assert weights  # the graph still has its compute nodes between the pairs
    assert m["parity"]["passed"] and "top1_agreement" in m["parity"]
    assert m["compression"]["op_types"] == list(QDQ_OPS)
    assert _fed_by_dequantize(model) <= set(QDQ_OPS)


def _fed_by_dequantize(model):
    """The op types that take an input from a DequantizeLinear."""
    dequantized = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return {n.op_type for n in model.graph.node if n.op_type != "QuantizeLinear" and dequantized & set(n.input)}


def test_int8_quantizes_the_inputs_of_weighted_ops_only(tmp_path):
    """SiLU (Sigmoid x Mul) between two convolutions, as in YOLOv8: TensorRT 8.5.3 built no engine for YOLOv8n
    when ONNX Runtime's default put Q/DQ around its Sigmoid and Mul too (docs/benchmarks.md). Q/DQ now go on
    the convolutions' inputs, as TensorRT's placement guide says; the SiLU between stays float for TensorRT."""
    rng = np.random.default_rng(0)
    w1, w2 = (numpy_helper.from_array(rng.standard_normal((8, c, 3, 3)).astype(np.float32) * 0.2, name)
              for c, name in ((3, "w1"), (8, "w2")))
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node("Sigmoid", ["c1"], ["s1"], name="sigmoid"),
             helper.make_node("Mul", ["c1", "s1"], ["m1"], name="silu"),
             helper.make_node("Conv", ["m1", "w2"], ["y"], pads=[1, 1, 1, 1], name="conv2")]
    graph = helper.make_graph(nodes, "silu", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 8, 8, 8])], [w1, w2])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "silu.onnx"))
    np.savez(tmp_path / "calib.npz", x=rng.standard_normal((16, 3, 8, 8)).astype(np.float32))
    api.package(str(tmp_path / "silu.onnx"), PROFILE, tmp_path / "silu.edgepkg", quantize="int8",
                calib=str(tmp_path / "calib.npz"))
    model = onnx.load_from_string(bundle_member(tmp_path / "silu.edgepkg", "model/model.onnx"))
    assert _fed_by_dequantize(model) == {"Conv"}
    assert sum(n.op_type == "QuantizeLinear" for n in model.graph.node) == 2   # the two convolutions' inputs


def _model_with_opset(path, opset):
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), str(path))


def test_a_newer_opset_is_converted_to_what_tensorrt_8_5_parses(tmp_path):
    _model_with_opset(tmp_path / "m.onnx", 20)
    m = api.package(str(tmp_path / "m.onnx"), PROFILE, tmp_path / "m.edgepkg", precision="fp32")
    assert m["compression"]["opset"]["source_opset"] == 20 and m["compression"]["opset"]["opset"] == 17
    assert m["compression"]["opset"]["converted"] is True
    model = onnx.load_from_string(bundle_member(tmp_path / "m.edgepkg", "model/model.onnx"))
    assert model.opset_import[0].version == 17


def test_opset_ranges():
    assert opset_range("8.5.2.2") == (9, 17) and opset_range("10.3.0") == (9, 20)
    assert target_opset(("8.5", "10.3")) == (9, 17) and target_opset(("10.3",)) == (9, 20)
    with pytest.raises(Exception, match="TensorRT 7.1"):
        opset_range("7.1")


@pytest.mark.parametrize("args, message", [
    (["--backend-option", "dla_core=0"], "profile jetson-orin-nano has 0 DLA cores"),
    (["--backend-option", "workspace_mib=8"], "workspace_mib: 8 is out of range"),
    (["--backend-option", "builder_optimization_level=9"], "builder_optimization_level: 9 is out of range"),
    (["--backend-option", "no_such=1"], "backend tensorrt has no option 'no_such'"),
    (["--quantize", "dynamic"], "backend tensorrt supports --quantize none, int8, not dynamic"),
    (["--backend-option", "gpu_fallback=false"], "--backend-option gpu_fallback=false applies to a DLA build"),
    (["--backend-option", "library_tactics=maybe"], "library_tactics: 'maybe' is not one of default, on, off"),
])
def test_bad_options_exit_2_with_one_line(cli, tmp_path, args, message):
    r = cli("package", MODEL, "--profile", PROFILE, "-o", tmp_path / "x.edgepkg", *args)
    assert r.exit_code == 2, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("edgeopt: error")]
    assert len(errors) == 1 and message in errors[0], r.stderr   # (progress lines may come before it)
    assert not (tmp_path / "x.edgepkg").exists()


def test_manifest_checks_know_the_tensorrt_options():
    from device_agent.manifest import option_problem
    good = {"fp16": True, "int8": False, "workspace_mib": 2048, "builder_optimization_level": 5, "dla_core": 1,
            "gpu_fallback": True, "tensorrt_versions": ["8.5", "10.3"]}
    assert option_problem("tensorrt", good) is None
    assert option_problem("tensorrt", {"dla_core": True})[0] == "dla_core"   # a bool is not a core number
    assert option_problem("tensorrt", {"workspace_mib": 0})[0] == "workspace_mib"
    assert option_problem("tensorrt", {"tensorrt_versions": ["eight"]})[0] == "tensorrt_versions"
    assert option_problem("tensorrt", {"calibration_cache": "x"})[0] == "calibration_cache"
    assert option_problem("tensorrt", {"library_tactics": "off", "tf32": False}) is None
    assert option_problem("tensorrt", {"tf32": "no"})[0] == "tf32"
    assert option_problem("tensorrt", {"library_tactics": False}) == ("library_tactics",
                                                                      "must be one of default, on, off")


# --- the agent's adapter: pure parts -----------------------------------------------------------------------

def test_cache_key_changes_with_every_part_and_only_with_build_settings():
    settings = agent_trt.validate_settings({"fp16": True})
    key = agent_trt.engine_cache_key("a" * 64, "10.3.0.30", "Orin", (8, 7), settings)
    assert len(key) == 64 and key == agent_trt.engine_cache_key("a" * 64, "10.3.0.30", "Orin", (8, 7), dict(settings))
    variants = [("b" * 64, "10.3.0.30", "Orin", (8, 7), settings), ("a" * 64, "8.5.2.2", "Orin", (8, 7), settings),
                ("a" * 64, "10.3.0.30", "NVIDIA H200", (8, 7), settings), ("a" * 64, "10.3.0.30", "Orin", (9, 0), settings),
                ("a" * 64, "10.3.0.30", "Orin", (8, 7), dict(settings, workspace_mib=2048)),
                ("a" * 64, "10.3.0.30", "Orin", (8, 7), dict(settings, library_tactics="off")),
                ("a" * 64, "10.3.0.30", "Orin", (8, 7), dict(settings, tf32=False))]
    assert len({key} | {agent_trt.engine_cache_key(*v) for v in variants}) == 8
    # tensorrt_versions is what the host packaged for, not a build setting: the same engine
    with_versions = agent_trt.validate_settings({"fp16": True, "tensorrt_versions": ["8.5"]})
    assert agent_trt.engine_cache_key("a" * 64, "10.3.0.30", "Orin", (8, 7), with_versions) == key


def test_settings_validation():
    assert agent_trt.validate_settings({}) == agent_trt.BUILD_DEFAULTS
    with pytest.raises(BundleError, match="gpu_fallback=false applies to a DLA build"):
        agent_trt.validate_settings({"gpu_fallback": False})
    with pytest.raises(BundleError, match="the DLA runs FP16 or INT8 only"):
        agent_trt.validate_settings({"dla_core": 0})
    assert agent_trt.validate_settings({"dla_core": 0, "int8": True})["dla_core"] == 0


def test_api_choices_by_version():
    v10 = agent_trt.api_choices("10.3.0.30", has_execute_v3=True)
    assert v10["execute"] == "execute_async_v3" and not v10["explicit_batch_flag"] and v10["optimization_level"]
    v85 = agent_trt.api_choices("8.5.2.2", has_execute_v3=True)
    assert v85["execute"] == "execute_async_v3" and v85["explicit_batch_flag"] and not v85["optimization_level"]
    old_binding = agent_trt.api_choices("8.5.1", has_execute_v3=False)
    assert old_binding["execute"] == "execute_async_v2" and old_binding["io"].startswith("bindings")
    assert agent_trt.api_choices("10.0", has_execute_v3=False)["execute"] == "execute_async_v3"
    assert agent_trt.api_choices("8.6.2", True)["optimization_level"]
    with pytest.raises(AgentError, match="older than 8.5"):
        agent_trt.api_choices("8.4.1")


class _Enum(object):
    """A stand-in for one member of a pybind11 enum of TensorRT (its .name, and int() its value)."""

    def __init__(self, name, value=0):
        self.name, self.value = name, value

    def __int__(self):
        return self.value


def test_numpy_dtype_needs_no_trt_nptype():
    # TensorRT 8.5's trt.nptype names np.bool, gone from numpy 1.24 to 1.26: the adapter maps names itself
    assert agent_trt.numpy_dtype(_Enum("FLOAT")) == np.float32 and agent_trt.numpy_dtype(_Enum("HALF")) == np.float16
    assert agent_trt.numpy_dtype(_Enum("BOOL")) == np.bool_ and agent_trt.numpy_dtype(_Enum("INT8")) == np.int8
    with pytest.raises(AgentError, match="tensor type FP8 has no numpy counterpart"):
        agent_trt.numpy_dtype(_Enum("FP8"))


class _Config(object):
    def __init__(self, sources):
        self.sources = sources

    def get_tactic_sources(self):
        return self.sources

    def set_tactic_sources(self, sources):
        self.sources = sources


def test_library_tactics_clear_or_set_only_the_library_sources():
    """TacticSource values of TensorRT 8.5 (CUBLAS 0, CUBLAS_LT 1, CUDNN 2, EDGE_MASK 3, JIT 4); a version
    that dropped a deprecated member (CUDNN here) is left alone for it."""
    class Trt85(object):
        TacticSource = type("TacticSource", (), {n: _Enum(n, i) for i, n in enumerate(
            ("CUBLAS", "CUBLAS_LT", "CUDNN", "EDGE_MASK_CONVOLUTIONS", "JIT_CONVOLUTIONS"))})

    every = 0b11111
    for choice, want in (("off", 0b11000), ("default", every)):
        config = _Config(every)
        agent_trt.set_library_tactics(Trt85, config, choice)
        assert config.sources == want, choice
    config = _Config(0b11000)
    agent_trt.set_library_tactics(Trt85, config, "on")
    assert config.sources == every
    del Trt85.TacticSource.CUDNN
    config = _Config(every)
    agent_trt.set_library_tactics(Trt85, config, "off")
    assert config.sources == 0b11100


class _TimingCache(object):
    def __init__(self, blob):
        self.blob = blob

    def serialize(self):
        return self.blob + b"|timed"


class _BuilderConfig(object):
    """IBuilderConfig's timing-cache calls (TensorRT cannot run here): a cache whose bytes start with b"other"
    is another version's, refused by set_timing_cache; one that starts with b"damaged" makes
    create_timing_cache raise."""
    def __init__(self):
        self.cache = None

    def create_timing_cache(self, blob):
        if bytes(blob).startswith(b"damaged"):
            raise RuntimeError("deserialization failed")
        return _TimingCache(bytes(blob))

    def set_timing_cache(self, cache, ignore_mismatch):
        assert ignore_mismatch is False
        if cache.blob.startswith(b"other"):
            return False
        self.cache = cache
        return True

    def get_timing_cache(self):
        return self.cache


def test_timing_cache_per_tensorrt_and_gpu_read_then_extended(tmp_path, monkeypatch):
    monkeypatch.setenv(agent_trt.CACHE_ENV, str(tmp_path))
    path = agent_trt.timing_cache_path("8.5.3.1", "NVIDIA H200", (9, 0))
    assert path.startswith(agent_trt.engine_dir())
    assert len({path, agent_trt.timing_cache_path("10.3.0", "NVIDIA H200", (9, 0)),
                agent_trt.timing_cache_path("8.5.3.1", "Orin", (9, 0)),
                agent_trt.timing_cache_path("8.5.3.1", "NVIDIA H200", (8, 7))}) == 4
    config = _BuilderConfig()   # the first build: no file, an empty cache; what it timed is saved
    assert agent_trt.use_timing_cache(config, path) == {"path": path, "loaded_bytes": 0, "note": None}
    assert config.cache.blob == b""
    agent_trt.save_timing_cache(config, path)
    with open(path, "rb") as f:
        assert f.read() == b"|timed"
    config = _BuilderConfig()   # the next build starts from it
    assert agent_trt.use_timing_cache(config, path)["loaded_bytes"] == len(b"|timed")
    assert config.cache.blob == b"|timed"
    with open(path, "wb") as f:
        f.write(b"other version's")
    config = _BuilderConfig()   # refused: built with an empty cache, and said so
    info = agent_trt.use_timing_cache(config, path)
    assert info["loaded_bytes"] == 0 and "refused" in info["note"] and config.cache.blob == b""
    with open(path, "wb") as f:
        f.write(b"damaged")
    config = _BuilderConfig()   # TensorRT raising on a damaged file: the same
    info = agent_trt.use_timing_cache(config, path)
    assert info["loaded_bytes"] == 0 and "refused" in info["note"] and config.cache.blob == b""


def test_cuda_python_failing_without_a_driver_is_one_agent_line():
    class NoDriver(object):
        @staticmethod
        def cudaGetDevice():
            raise RuntimeError("Failed to dlopen libcuda.so.1")

    cuda = agent_trt.Cuda.__new__(agent_trt.Cuda)
    cuda.rt = NoDriver
    with pytest.raises(AgentError, match=r"CUDA cudaGetDevice failed: Failed to dlopen libcuda.so.1 \(is the NVIDIA"):
        cuda.device()


def test_version_note():
    assert agent_trt.version_note("10.3.0.30", ["8.5", "10.3"]) is None
    assert "packaged for TensorRT 8.5" in agent_trt.version_note("8.6.2", ["8.5"])
    assert agent_trt.parse_version("8.5.2.2") == (8, 5, 2, 2) and agent_trt.parse_version("x") == ()


def test_bench_without_tensorrt_names_what_to_install(cli, bundles, tmp_path):
    if agent_trt.TensorRtAdapter.installed_version() and not agent_trt.TensorRtAdapter.missing_helpers():
        pytest.skip("TensorRT and cuda-python are installed here")
    r = cli("bench", bundles["fp16"][0], "--device", "local", "--results-dir", tmp_path, "--json")
    assert r.exit_code == 3, r.stderr
    error = [line for line in r.stderr.strip().splitlines() if "tensorrt" in line]
    assert len(error) == 1 and "install it with" in error[0] and "pip install tensorrt cuda-python" in error[0]
    assert "python3-libnvinfer" in error[0]


def _gpu_available():
    try:
        import tensorrt  # noqa: F401
        agent_trt.Cuda().device()
        return True
    except Exception:
        return False


@pytest.mark.skipif(not _gpu_available(), reason="needs an NVIDIA GPU with TensorRT and cuda-python importable")
def test_gpu_build_cache_and_infer(bundles, tmp_path, monkeypatch):
    """On a GPU: build, cache hit on the second load, outputs equal to ONNX Runtime's within the fp16 tolerance."""
    import tarfile

    monkeypatch.setenv(agent_trt.CACHE_ENV, str(tmp_path / "cache"))
    with tarfile.open(bundles["fp16"][0]) as tar:
        tar.extractall(tmp_path / "b")
    m = bundle_manifest(bundles["fp16"][0])
    feed = {m["inputs"][0]["name"]: np.random.default_rng(0).standard_normal(m["inputs"][0]["shape"]).astype(np.float32)}
    first = agent_trt.TensorRtAdapter(1, m["runtime"]["options"])
    first.load(str(tmp_path / "b" / "model" / "model.onnx"))
    assert first.infer(feed)[0].shape[0] == 1
    assert not first.describe()["engine"]["cache_hit"] and first.describe()["engine"]["build_s"] > 0
    assert first.describe()["engine"]["timing_cache"]["loaded_bytes"] == 0
    assert os.path.getsize(first.describe()["engine"]["timing_cache"]["path"]) > 0
    first.close()
    second = agent_trt.TensorRtAdapter(1, m["runtime"]["options"])
    second.load(str(tmp_path / "b" / "model" / "model.onnx"))
    assert second.describe()["engine"]["cache_hit"]
    from edgeopt.convert.onnxruntime import ort_runner
    ref = ort_runner(tmp_path / "b" / "model" / "model.onnx")(feed)
    assert np.max(np.abs(second.infer(feed)[0] - ref[0])) < 5e-2
    second.timing(True)
    second.infer(feed)
    second.timing(False)
    second.infer(feed)   # after the timed loop (an accuracy pass, say): not GPU time of the loop
    assert second.describe()["gpu_compute"]["n"] == 1
    second.close()
    json.dumps(second.describe())


def test_onnxruntime_execution_provider_option_and_the_missing_provider_line():
    from device_agent.manifest import option_problem
    from device_agent.runtimes.onnxruntime import missing_providers, wanted_providers
    assert wanted_providers({"execution_provider": "tensorrt", "providers": ["CPUExecutionProvider"]})[0] == \
        "TensorrtExecutionProvider"
    assert wanted_providers({"execution_provider": "cpu"}) == ["CPUExecutionProvider"]
    assert wanted_providers({}) == ["CPUExecutionProvider"]
    line = missing_providers(wanted_providers({"execution_provider": "cuda"}), ["CPUExecutionProvider"])
    assert line.startswith("onnxruntime on this device lacks execution provider(s) CUDAExecutionProvider")
    assert "(available: CPUExecutionProvider)" in line and "\n" not in line
    assert option_problem("onnxruntime", {"execution_provider": "rocm"})[0] == "execution_provider"
