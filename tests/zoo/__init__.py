"""A model zoo for tests and benchmarks: real architectures written out in the repo (torchvision,
timm and ultralytics cannot be imported beside the pinned CPU torch), random seeded weights,
nothing downloaded. `ZOO[name]` is an Entry: build() -> torch module in eval mode, inputs() ->
example inputs {name: array}, and zoo.data writes its ONNX files and calibration/eval data.
"""
from __future__ import annotations

import dataclasses

from . import detection, models, models2


@dataclasses.dataclass(frozen=True)
class Input:
    name: str
    shape: tuple
    dtype: str = "float32"
    kind: str = "normal"   # how data.py makes samples: normal | audio | state | sample_rate


@dataclasses.dataclass(frozen=True)
class Entry:
    name: str
    builder: object          # () -> torch module (eval mode)
    inputs_spec: tuple       # Input, in the module's argument order
    outputs: tuple           # output names
    task: str
    follows: str             # the paper or reference config
    signature_ops: tuple = ()  # ONNX ops (legacy export) that make the architecture what it is
    variable_outputs: tuple = ()  # outputs whose first dim depends on the data (detections after NMS)
    exporters: tuple = ("legacy", "dynamo")  # the torch exporters that can export it

    def build(self):
        return self.builder()

    def inputs(self, seed: int = 0) -> dict:
        """One example input per model input (batch 1), seeded."""
        from .data import samples
        return samples(self, 1, seed, stacked=False)


IMG64, IMG96 = (1, 3, 64, 64), (1, 3, 96, 96)


def _image(shape):
    return (Input("input", shape),)


ENTRIES = [
    Entry("mobilenet_v2", lambda: models.mobilenet_v2(width=0.5, input_shape=IMG64), _image(IMG64), ("logits",),
          "classification", "MobileNetV2 (arXiv 1801.04381), width 0.5", ("Conv", "Clip", "Add")),
    Entry("mobilenet_v3_small", lambda: models.mobilenet_v3_small(input_shape=IMG64), _image(IMG64), ("logits",),
          "classification", "MobileNetV3-Small (arXiv 1905.02244)", ("HardSwish", "HardSigmoid", "Mul")),
    Entry("resnet18", lambda: models.resnet18(widths=(16, 32, 64, 128), input_shape=IMG64), _image(IMG64),
          ("logits",), "classification", "ResNet-18 (arXiv 1512.03385), widths / 4", ("MaxPool", "Add", "Relu")),
    Entry("efficientnet_b0", lambda: models.efficientnet_b0(input_shape=IMG64), _image(IMG64), ("logits",),
          "classification", "EfficientNet-B0 (arXiv 1905.11946), width and depth 0.5", ("Sigmoid", "Mul")),
    Entry("shufflenet_v2", lambda: models.shufflenet_v2(input_shape=IMG64), _image(IMG64), ("logits",),
          "classification", "ShuffleNetV2 0.5x (arXiv 1807.11164)", ("Transpose", "Reshape", "Concat")),
    Entry("deit_tiny", models2.deit_tiny, _image(IMG64), ("logits",), "classification",
          "DeiT-Ti / ViT (arXiv 2012.12877), patch 8, dim 64, depth 3",
          ("LayerNormalization", "Softmax", "MatMul", "Erf")),
    Entry("convnext", models2.convnext_tiny, _image(IMG64), ("logits",), "classification",
          "ConvNeXt (arXiv 2201.03545), depths (1,1,2,1), dims (16..128)",
          ("LayerNormalization", "ReduceMean", "Sqrt", "Erf", "Transpose")),
    Entry("yolov8n", models2.yolov8n, _image(IMG96), ("detections",), "detection",
          "YOLOv8n (ultralytics yolov8.yaml, scale n), decoded head",
          ("Split", "Resize", "Concat", "Softmax", "Sigmoid", "MaxPool")),
    Entry("ssdlite_nms", detection.ssdlite_nms, _image(IMG64), ("boxes", "scores", "labels"), "detection",
          "SSDLite (arXiv 1801.04381) on MobileNetV2 0.5, NMS in the graph (torchvision's SSD export)",
          ("NonMaxSuppression", "Softmax", "Exp", "Gather"), variable_outputs=("boxes", "scores", "labels"),
          exporters=("legacy",)),
    Entry("deeplabv3", models2.deeplabv3_mobilenet, _image(IMG96), ("masks",), "segmentation",
          "DeepLabV3 (arXiv 1706.05587) on MobileNetV2 0.5", ("Resize", "Concat", "GlobalAveragePool")),
    Entry("kws_gru", models2.kws_gru, (Input("mfcc", (1, 49, 10)),), ("logits",), "keyword spotting",
          "GRU keyword spotter (Hello Edge, arXiv 1711.07128)", ("GRU",)),
    Entry("silero_vad", models2.silero_vad,
          (Input("input", (1, 512), kind="audio"), Input("state", (2, 1, 128), kind="state"),
           Input("sr", (), "int64", kind="sample_rate")),
          ("output", "stateN"), "voice activity", "Silero VAD v5-like (snakers4/silero-vad)",
          ("LSTM", "Pad", "Sqrt", "Cast")),
]
ZOO = {e.name: e for e in ENTRIES}
