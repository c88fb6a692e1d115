"""Serving runtimes: export a classifier to ONNX and run it on onnxruntime.

    from ferkit.runtime import export_onnx, load_onnx_model
    card = export_onnx("default", "fer.onnx")            # + fer.onnx.json; card also inside the file
    model = load_onnx_model("fer.onnx")                  # or load_onnx_model("default"): exported on first use
    ferkit.load_model("default", backend="onnx")         # the same through the main API

The ONNX graph takes float32 ``image`` ``[N, C, H, W]`` with raw pixels in [0, 255] and returns
``probabilities`` (softmax) and ``logits``; normalisation is inside the graph (see
:mod:`ferkit.runtime.export`).
"""

from .export import (DEFAULT_OPSET, INPUT_NAME, OUTPUT_NAMES, ExportError, RangesMisfit, card_path, export_onnx,
                     read_card)
from .onnx_model import (OnnxExpressionModel, cached_onnx, cpu_name, default_threads, load_onnx_model,
                         onnx_cache_dir)

BACKENDS = ("auto", "torch", "onnx", "onnx-int8")

__all__ = ["export_onnx", "read_card", "card_path", "ExportError", "RangesMisfit", "OnnxExpressionModel",
           "load_onnx_model", "cached_onnx", "onnx_cache_dir", "default_threads", "cpu_name", "DEFAULT_OPSET", "INPUT_NAME",
           "OUTPUT_NAMES", "BACKENDS"]
