"""ONNX front end: an existing ONNX file is validated, optimized and stamped like any other source."""

from __future__ import annotations

import numpy as np
import onnx
from google.protobuf.message import DecodeError

from modelfleet.convert.frontends import Arrays, Exported, SourceFiles
from modelfleet.errors import ConversionError
from modelfleet.spec import ModelSpec


def export(spec: ModelSpec, files: SourceFiles, samples: Arrays) -> Exported:
    import onnxruntime as ort

    try:
        model = onnx.load_from_string(files.model)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise ConversionError(f"source.path {spec.source.path}: not a readable ONNX file: {exc}") from None
    if not model.graph.node and not model.graph.output:
        raise ConversionError(f"source.path {spec.source.path}: not an ONNX model (empty graph)")

    def predict(arrays: Arrays) -> list[np.ndarray]:
        # The source as given, without any graph optimization: the baseline for the optimized artifact.
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        session = ort.InferenceSession(files.model, options, providers=["CPUExecutionProvider"])
        return [np.asarray(out) for out in session.run(None, dict(arrays))]

    return Exported(model=model, predict=predict, framework_version=f"onnx {onnx.__version__}")
