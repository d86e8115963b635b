"""TensorRT adapter: builds the engine on the device from the bundle's ONNX and build settings, caches it.

An engine is specific to the GPU, the TensorRT version and the build settings, so the cache key is the sha256
over (ONNX sha256, TensorRT version, GPU name, compute capability, build settings) and the engine file lives
in the agent's cache dir ($EDGEOPT_AGENT_CACHE or ~/.cache/edgeopt-agent)/tensorrt-engines. Build time and
whether the cache was hit are reported apart from inference (describe()["engine"]). Every build also reads and
extends a timing cache per TensorRT version and GPU beside the engines (trtexec's --timingCacheFile): a build
times only the layers no earlier build here has timed, so the next `optimize` candidate, or the FP16 engine after
the FP32 one, builds in a fraction of the time.

Buffers and timing go through cuda-python (`cuda.bindings.runtime`, or `cuda.cudart` of older cuda-python):
no hand-written CUDA and no pycuda. The timed call is end-to-end like trtexec's "Latency": host-to-device
copies of the inputs, the inference, device-to-host copies of the outputs, one stream synchronisation; CUDA
events around the inference alone give the GPU compute time (trtexec's "GPU Compute Time").

Version-dependent API (api_choices): TensorRT 8.5 introduced the name-based tensor API (num_io_tensors,
set_tensor_address, execute_async_v3) beside the binding one (num_bindings, execute_async_v2); TensorRT 10
removed the binding API, the EXPLICIT_BATCH network flag's meaning (explicit batch is the only mode) and
max_workspace_size; builder_optimization_level exists from 8.6. Each choice is made from the version, and
the result records which was used. TensorRT 8.5 times cuBLAS/cuBLASLt/cuDNN kernels by default and 8.6 does
not; the library_tactics setting turns them on or off whatever the version (the default leaves the version's).
"""
import ctypes
import hashlib
import json
import os
import statistics
import time

from .. import AgentError, BundleError, bounded
from .base import RuntimeAdapter

CACHE_ENV = "EDGEOPT_AGENT_CACHE"
ENGINE_DIR = "tensorrt-engines"
OLDEST = (8, 5)   # JetPack 5's TensorRT: the oldest this adapter drives
# The build settings (runtime.options) and their values when a bundle leaves one out.
BUILD_DEFAULTS = {"fp16": False, "int8": False, "workspace_mib": 1024, "builder_optimization_level": 3,
                  "dla_core": -1, "gpu_fallback": True, "library_tactics": "default", "tf32": True}
# The tactic sources that are other libraries (trtexec --tacticSources): TensorRT 8.5 times their kernels by
# default, 8.6 and later do not. Each costs GPU memory when loaded (cuDNN several hundred MiB on a Jetson).
LIBRARY_TACTICS = ("CUBLAS", "CUBLAS_LT", "CUDNN")
# TensorRT DataType name -> numpy dtype name. Not trt.nptype: TensorRT 8.5's names np.bool, which numpy 1.24
# removed, so it fails for every type there.
NUMPY_DTYPES = {"FLOAT": "float32", "HALF": "float16", "INT8": "int8", "INT32": "int32", "INT64": "int64",
                "BOOL": "bool", "UINT8": "uint8"}


def parse_version(text):
    """(major, minor, ...) of a version string such as "10.3.0.30" or "8.5.2.2"; () when it has no number."""
    out = []
    for part in str(text).split("."):
        digits = "".join(c for c in part if c.isdigit()) if part[:1].isdigit() else ""
        if not digits:
            break
        out.append(int(digits))
    return tuple(out)


def api_choices(version, has_execute_v3=True):
    """Which TensorRT Python API calls this version takes; AgentError for a version older than 8.5."""
    v = parse_version(version)
    if v[:2] < OLDEST:
        raise AgentError("TensorRT %s is older than 8.5, the oldest this agent drives (JetPack 5); "
                         "upgrade JetPack or use --runtime-option execution_provider=... with onnxruntime" % version)
    modern = v[0] >= 10 or has_execute_v3   # 10.x: the binding API is gone; 8.5-9.x: both exist
    return {"io": "named tensors (num_io_tensors, set_tensor_address)" if modern else "bindings (num_bindings)",
            "execute": "execute_async_v3" if modern else "execute_async_v2",
            "explicit_batch_flag": v[0] < 10,        # 8.x needs the flag for an ONNX network; 10 has only explicit
            "workspace": "set_memory_pool_limit",    # since 8.4; max_workspace_size is gone in 10
            "optimization_level": v[:2] >= (8, 6)}


def validate_settings(options):
    """The build settings from runtime.options (defaults filled in); BundleError for a combination TensorRT
    refuses. The kinds of each value are checked by device_agent.manifest against `options` below."""
    s = dict(BUILD_DEFAULTS)
    s.update((k, v) for k, v in options.items() if k in BUILD_DEFAULTS)
    if s["dla_core"] < 0 and not s["gpu_fallback"]:
        raise BundleError("runtime option gpu_fallback=false applies to a DLA build (dla_core 0 or more)")
    if s["dla_core"] >= 0 and not (s["fp16"] or s["int8"]):
        raise BundleError("runtime option dla_core=%d: the DLA runs FP16 or INT8 only; set fp16 or int8"
                          % s["dla_core"])
    return s


def engine_cache_key(onnx_sha256, tensorrt_version, gpu_name, compute_capability, settings):
    """sha256 (hex) naming the engine built from this ONNX with this TensorRT, GPU and these build settings."""
    doc = {"onnx_sha256": onnx_sha256, "tensorrt": str(tensorrt_version), "gpu": str(gpu_name),
           "compute_capability": "%d.%d" % tuple(compute_capability),
           "settings": dict((k, settings[k]) for k in sorted(BUILD_DEFAULTS))}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


def engine_dir():
    root = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "edgeopt-agent")
    return os.path.join(root, ENGINE_DIR)


def timing_cache_path(tensorrt_version, gpu_name, compute_capability):
    """The builder's timing cache for this TensorRT and GPU, in the engine cache dir. Timings of one GPU and
    TensorRT version are not another's, so each has its own file."""
    doc = [str(tensorrt_version), str(gpu_name), "%d.%d" % tuple(compute_capability)]
    key = hashlib.sha256(json.dumps(doc).encode("utf-8")).hexdigest()[:16]
    return os.path.join(engine_dir(), "timing-%s.cache" % key)


def use_timing_cache(config, path):
    """Give the builder config the timing cache at `path`, or an empty one where there is none or TensorRT
    refuses it (unreadable, or another version's). What happened, for describe()["engine"]["timing_cache"]."""
    blob = b""
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError:
        pass
    try:   # a damaged file may make TensorRT raise rather than refuse: the build goes on with an empty cache
        loaded = bool(blob) and bool(config.set_timing_cache(config.create_timing_cache(blob), False))
    except Exception:  # noqa: BLE001 - TensorRT's own exception types differ by version
        loaded = False
    if not loaded:
        config.set_timing_cache(config.create_timing_cache(b""), False)
    return {"path": path, "loaded_bytes": len(blob) if loaded else 0,
            "note": None if loaded or not blob else "TensorRT refused the timing cache; built with an empty one"}


def save_timing_cache(config, path):
    """Write the builder's timing cache, what this build timed added, for the next build (atomically: two agents
    building at once leave one whole file)."""
    cache = config.get_timing_cache()
    if cache is not None:
        _write_atomically(path, bytes(cache.serialize()))


def version_note(device_version, bundle_versions):
    """A note when the device's TensorRT is none of the versions the bundle was packaged for, else None."""
    have = parse_version(device_version)
    for wanted in bundle_versions or ():
        w = parse_version(wanted)
        if w and have[:len(w)] == w:
            return None
    return ("the bundle was packaged for TensorRT %s; this device has %s (its ONNX opset may not parse)"
            % (", ".join(bundle_versions or ["(not recorded)"]), device_version)) if bundle_versions else None


def cudart():
    """cuda-python's runtime module: cuda.bindings.runtime (cuda-python >= 12.6) or cuda.cudart (older)."""
    try:
        from cuda.bindings import runtime
        return runtime
    except ImportError:
        from cuda import cudart as runtime
        return runtime


def has_cuda_python():
    import importlib.util
    try:
        return importlib.util.find_spec("cuda") is not None
    except (ImportError, ValueError):
        return False


class Cuda(object):
    """The few CUDA runtime calls the adapter makes, each checked: a failure is one AgentError line."""

    def __init__(self):
        self.rt = cudart()

    def __call__(self, name, *args):
        try:
            result = getattr(self.rt, name)(*args)
        except RuntimeError as e:   # cuda-python's own, e.g. "Failed to dlopen libcuda.so.1" without a driver
            raise AgentError("CUDA %s failed: %s (is the NVIDIA driver installed and the GPU visible?)" % (name, e))
        err, rest = (result[0], result[1:]) if isinstance(result, tuple) else (result, ())
        if int(err) != 0:
            raise AgentError("CUDA %s failed: %s" % (name, getattr(err, "name", err)))
        return rest[0] if len(rest) == 1 else rest

    def device(self):
        """(GPU name, (major, minor)) of the current device."""
        dev = self("cudaGetDevice")
        props = self("cudaGetDeviceProperties", dev)
        name = props.name.decode("utf-8", "replace").rstrip("\x00") if isinstance(props.name, bytes) else str(props.name)
        return name, (int(props.major), int(props.minor))

    def used_mb(self):
        free, total = self("cudaMemGetInfo")
        return (total - free) / 1048576.0


class _Tensor(object):
    """One I/O tensor: a pinned host array and a device buffer of its size."""

    def __init__(self, cuda, name, is_input, shape, dtype):
        import numpy as np

        if any(d < 0 for d in shape):
            raise AgentError("TensorRT engine tensor %r has a dynamic shape %s; the bundle must have static shapes"
                             % (name, list(shape)))
        self.name, self.is_input, self.dtype = name, is_input, np.dtype(dtype)
        self.nbytes = max(1, int(np.prod(shape)) * self.dtype.itemsize)
        self.host_ptr = cuda("cudaMallocHost", self.nbytes)
        raw = (ctypes.c_byte * self.nbytes).from_address(int(self.host_ptr))
        self.host = np.frombuffer(raw, dtype=self.dtype, count=int(np.prod(shape))).reshape(shape)
        self.device = cuda("cudaMalloc", self.nbytes)


class TensorRtAdapter(RuntimeAdapter):
    name = "tensorrt"
    module = "tensorrt"
    distributions = ("tensorrt", "tensorrt-cu12", "tensorrt-cu11", "tensorrt_cu12", "tensorrt_cu11")
    install_hint = "pip install tensorrt cuda-python"
    install_note = "on a Jetson TensorRT comes with JetPack: sudo apt install python3-libnvinfer, then pip install cuda-python"
    options = {"fp16": "bool", "int8": "bool", "workspace_mib": "mib", "builder_optimization_level": "level",
               "dla_core": "dla-core", "gpu_fallback": "bool", "library_tactics": ("default", "on", "off"),
               "tf32": "bool", "tensorrt_versions": "versions"}

    @classmethod
    def missing_helpers(cls):
        """Further modules the adapter needs beside tensorrt itself."""
        return [] if has_cuda_python() else ["cuda-python"]

    def load(self, model_path):
        trt = self.import_module()
        self.trt, self.cuda = trt, Cuda()
        self.settings = validate_settings(self.options)
        self.choices = api_choices(trt.__version__, hasattr(trt.IExecutionContext, "execute_async_v3"))
        self.gpu, self.capability = self.cuda.device()
        self.gpu_mb_before = self.cuda.used_mb()
        self.engine_info = self._engine(model_path)
        self.context = self.engine.create_execution_context()
        self.tensors = [_Tensor(self.cuda, *io) for io in self._io()]
        if self.choices["execute"] == "execute_async_v3":
            for t in self.tensors:
                self.context.set_tensor_address(t.name, int(t.device))
        self.stream = self.cuda("cudaStreamCreate")
        self.events = (self.cuda("cudaEventCreate"), self.cuda("cudaEventCreate"))
        self.gpu_ms, self.gpu_mb_after, self.timed = [], self.cuda.used_mb(), False

    def _engine(self, model_path):
        """Deserialize the cached engine, or build, cache and deserialize it; what happened, timed."""
        with open(model_path, "rb") as f:
            onnx_sha = hashlib.sha256(f.read()).hexdigest()
        key = engine_cache_key(onnx_sha, self.trt.__version__, self.gpu, self.capability, self.settings)
        path = os.path.join(engine_dir(), key + ".engine")
        info = {"cache_key": key, "path": path, "cache_hit": os.path.isfile(path)}
        if not info["cache_hit"]:
            t0 = time.perf_counter()
            blob, info["timing_cache"] = build_engine(self.trt, model_path, self.settings, self.choices,
                                                      timing_cache_path(self.trt.__version__, self.gpu,
                                                                        self.capability))
            info["build_s"] = time.perf_counter() - t0
            _write_atomically(path, blob)
        t0 = time.perf_counter()
        with open(path, "rb") as f:
            self.engine = self.trt.Runtime(_logger(self.trt)).deserialize_cuda_engine(f.read())
        if self.engine is None:
            raise AgentError("TensorRT %s cannot deserialize the cached engine %s; delete it to rebuild"
                             % (self.trt.__version__, path))
        info["deserialize_s"] = time.perf_counter() - t0
        return info

    def _io(self):
        """[(name, is_input, shape, numpy dtype)] through the API this version has."""
        trt, e = self.trt, self.engine
        if self.choices["execute"] == "execute_async_v3":
            names = [e.get_tensor_name(i) for i in range(e.num_io_tensors)]
            return [(n, e.get_tensor_mode(n) == trt.TensorIOMode.INPUT, tuple(e.get_tensor_shape(n)),
                     numpy_dtype(e.get_tensor_dtype(n))) for n in names]
        return [(e.get_binding_name(i), e.binding_is_input(i), tuple(e.get_binding_shape(i)),
                 numpy_dtype(e.get_binding_dtype(i))) for i in range(e.num_bindings)]

    def _fill(self, feed):
        import numpy as np

        for t in self.tensors:
            if t.is_input:
                np.copyto(t.host, np.asarray(feed[t.name]).reshape(t.host.shape), casting="same_kind")

    def _run(self):
        """Inputs to the device, the inference between two CUDA events, outputs back, one synchronisation."""
        cuda, stream, (start, end) = self.cuda, self.stream, self.events
        h2d, d2h = self.cuda.rt.cudaMemcpyKind.cudaMemcpyHostToDevice, self.cuda.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        for t in self.tensors:
            if t.is_input:
                cuda("cudaMemcpyAsync", t.device, t.host_ptr, t.nbytes, h2d, stream)
        cuda("cudaEventRecord", start, stream)
        if self.choices["execute"] == "execute_async_v3":
            ok = self.context.execute_async_v3(int(stream))
        else:
            ok = self.context.execute_async_v2([int(t.device) for t in self.tensors], int(stream))
        cuda("cudaEventRecord", end, stream)
        for t in self.tensors:
            if not t.is_input:
                cuda("cudaMemcpyAsync", t.host_ptr, t.device, t.nbytes, d2h, stream)
        cuda("cudaStreamSynchronize", stream)
        if not ok:
            raise AgentError("TensorRT %s failed to enqueue the inference" % self.choices["execute"])
        if self.timed:
            self.gpu_ms.append(float(cuda("cudaEventElapsedTime", start, end)))

    def infer(self, feed):
        self._fill(feed)
        self._run()
        return [t.host.copy() for t in self.tensors if not t.is_input]

    def bind(self, feed):
        """The timed call: inputs filled once (as trtexec's host buffers are), copies and inference each call."""
        self._fill(feed)
        return self._run

    def timing(self, on):
        if on:
            self.gpu_ms = []
        self.timed = on

    def close(self):
        for t in getattr(self, "tensors", []):
            self.cuda("cudaFree", t.device)
            self.cuda("cudaFreeHost", t.host_ptr)
        self.tensors, self.context, self.engine = [], None, None

    def describe(self):
        ms = self.gpu_ms
        compute = {"method": "CUDA events around %s, each call of the timed loop (trtexec's GPU Compute Time)"
                   % self.choices["execute"], "n": len(ms)}
        if ms:
            compute.update(median_ms=statistics.median(ms), mean_ms=statistics.mean(ms), min_ms=min(ms),
                           max_ms=max(ms))
        device_bytes = getattr(self.engine, "device_memory_size", None) if self.engine is not None else None
        out = {"version": self.trt.__version__, "gpu": self.gpu, "compute_capability": "%d.%d" % self.capability,
               "settings": self.settings, "api": self.choices, "engine": self.engine_info, "gpu_compute": compute,
               "latency_scope": "end-to-end: host-to-device copies, inference, device-to-host copies, stream sync",
               "gpu_memory": {"method": "cudaMemGetInfo (device-wide; on a Jetson the GPU shares system RAM)",
                              "used_before_load_mb": self.gpu_mb_before, "used_after_load_mb": self.gpu_mb_after,
                              "engine_device_memory_mb": device_bytes / 1048576.0 if device_bytes else None}}
        if not self.choices["optimization_level"]:
            out["settings_not_applied"] = {"builder_optimization_level": "TensorRT %s has no builder optimization "
                                           "level (8.6 and later)" % self.trt.__version__}
        note = version_note(self.trt.__version__, self.options.get("tensorrt_versions"))
        if note:
            out["version_note"] = note
        return out


def _logger(trt):
    return trt.Logger(trt.Logger.WARNING)


def numpy_dtype(trt_dtype):
    """The numpy dtype of a TensorRT DataType; AgentError for one numpy has no counterpart of."""
    import numpy as np

    name = getattr(trt_dtype, "name", str(trt_dtype).rsplit(".", 1)[-1])
    if name not in NUMPY_DTYPES:
        raise AgentError("TensorRT engine tensor type %s has no numpy counterpart here" % name)
    return np.dtype(NUMPY_DTYPES[name])


def set_library_tactics(trt, config, choice):
    """Turn the cuBLAS/cuBLASLt/cuDNN tactic sources on or off ("default": as this TensorRT version does)."""
    if choice == "default":
        return
    sources = config.get_tactic_sources()
    for name in LIBRARY_TACTICS:
        member = getattr(trt.TacticSource, name, None)   # a later TensorRT may drop a deprecated one
        if member is not None:
            bit = 1 << int(member)
            sources = sources | bit if choice == "on" else sources & ~bit
    config.set_tactic_sources(sources)


def build_engine(trt, onnx_path, settings, choices, timing_cache=None):
    """(The serialized engine of the ONNX at `onnx_path` with these build settings, what the timing cache at path
    `timing_cache` gave: None where none is used)."""
    logger = _logger(trt)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH) if choices["explicit_batch_flag"] else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        first = str(parser.get_error(0)).strip().splitlines()[0] if parser.num_errors else "no error recorded"
        raise AgentError("TensorRT %s cannot parse the bundle's ONNX: %s" % (trt.__version__, bounded(first)))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings["workspace_mib"] << 20)
    for flag in ("fp16", "int8"):
        if settings[flag]:
            config.set_flag(getattr(trt.BuilderFlag, flag.upper()))
    if not settings["tf32"]:   # TensorRT allows TF32 for FP32 layers by default (Ampere and newer: the Orin too)
        config.clear_flag(trt.BuilderFlag.TF32)
    if choices["optimization_level"]:
        config.builder_optimization_level = settings["builder_optimization_level"]
    set_library_tactics(trt, config, settings["library_tactics"])
    timing = use_timing_cache(config, timing_cache) if timing_cache else None
    if settings["dla_core"] >= 0:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = settings["dla_core"]
        if settings["gpu_fallback"]:
            config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    blob = builder.build_serialized_network(network, config)
    if blob is None:
        raise AgentError("TensorRT %s could not build an engine from the bundle's ONNX (settings %s)"
                         % (trt.__version__, json.dumps(settings, sort_keys=True)))
    if timing_cache:
        save_timing_cache(config, timing_cache)
    return bytes(blob), timing


def _write_atomically(path, blob):
    d = os.path.dirname(path)
    if not os.path.isdir(d):
        os.makedirs(d, exist_ok=True)   # two processes building engines at once
    tmp = "%s.%d.tmp" % (path, os.getpid())
    with open(tmp, "wb") as f:
        f.write(blob)
    os.replace(tmp, path)
