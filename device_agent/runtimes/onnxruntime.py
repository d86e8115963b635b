"""ONNX Runtime adapter (CPU execution provider unless the bundle asks for another)."""
import functools

from .. import AgentError
from .base import RuntimeAdapter


class OnnxRuntimeAdapter(RuntimeAdapter):
    name = "onnxruntime"
    module = "onnxruntime"
    distributions = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml")
    install_hint = "pip install onnxruntime"
    options = {"providers": "text-list"}

    def load(self, model_path):
        import onnxruntime as ort

        so = ort.SessionOptions()
        # Set explicitly, never left to the runtime's default: recorded in the result.
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        providers = self.options.get("providers") or ["CPUExecutionProvider"]
        missing = [p for p in providers if p not in ort.get_available_providers()]
        if missing:
            raise AgentError("onnxruntime on this device lacks execution provider(s) %s" % ", ".join(missing))
        try:
            self.session = ort.InferenceSession(model_path, sess_options=so, providers=providers)
        except Exception as e:  # ORT raises its own Fail/InvalidGraph/NotImplemented types
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise AgentError("onnxruntime %s cannot load the model: %s" % (ort.__version__, first[:300]))
        self.providers = self.session.get_providers()

    def infer(self, feed):
        return self.session.run(None, feed)

    def bind(self, feed):
        return functools.partial(self.session.run, None, feed)

    def close(self):
        self.session = None

    def describe(self):
        import onnxruntime as ort

        return {"threads": self.threads, "inter_op_threads": 1, "execution_mode": "sequential",
                "graph_optimization": "all", "providers": self.providers, "version": ort.__version__}
