"""Compression passes: quantization (ONNX Runtime here; NNCF and LiteRT come with their backends)."""
