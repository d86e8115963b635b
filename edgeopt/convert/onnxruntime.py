"""ONNX Runtime backend: the portable path. FP32 as is, FP16 weights and compute with float32
I/O, INT8 static (QDQ) or dynamic quantization through onnxruntime.quantization."""
from __future__ import annotations

import shutil

from .base import Backend, Conversion


def ort_session(model_path, threads=0):
    """A host-side session for parity checks: all cores (0), since nothing is timed here."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    return ort.InferenceSession(str(model_path), sess_options=so, providers=["CPUExecutionProvider"])


def ort_runner(model_path, threads=0):
    session = ort_session(model_path, threads)
    return lambda feed: session.run(None, feed)


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    runtime = "onnxruntime"
    precisions = ("fp32", "fp16")
    quantizations = ("none", "dynamic", "int8")

    def _convert(self, source, request, workdir, progress):
        import onnx
        import onnxruntime

        out = workdir / "model.onnx"
        notes, compression = [], {"quantize": request.quantize, "precision": request.precision}
        if request.quantize != "none":
            from ..compress import ort_quantize
            compression.update(ort_quantize.quantize(source, request, out, progress))
            notes += compression.pop("notes", [])
        elif request.precision == "fp16":
            progress.status("converting weights and compute to FP16")
            from onnxruntime.transformers.float16 import convert_float_to_float16
            model = convert_float_to_float16(onnx.load(str(source.onnx_path)), keep_io_types=True)
            onnx.save(model, str(out))
            compression["fp16"] = {"keep_io_types": True, "tool": "onnxruntime.transformers.float16"}
        else:
            shutil.copyfile(source.onnx_path, out)
        tools = {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}
        return Conversion(out, [], {"name": self.runtime, "options": {"providers": ["CPUExecutionProvider"]}},
                          compression, tools, notes)

    def host_runner(self, model_path, options=None):
        return ort_runner(model_path)
