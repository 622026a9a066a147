"""The one ONNX Runtime session every peer wraps, configured like `modelfleet serve --threads 1`.

Imported by the peer adapters in this directory (each runs in its own virtualenv, all with the
same onnxruntime release as modelfleet): one intra-op thread, one inter-op thread, sequential
execution, all online graph optimizations, CPU provider.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort

# ONNX tensor element types -> Open Inference Protocol datatypes (the ones these models use).
OIP_DATATYPES = {
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(float16)": "FP16",
    "tensor(int64)": "INT64",
    "tensor(int32)": "INT32",
    "tensor(bool)": "BOOL",
}
NUMPY_DTYPES = {"FP32": np.float32, "FP64": np.float64, "FP16": np.float16, "INT64": np.int64,
                "INT32": np.int32, "BOOL": np.bool_}


def session(model_path: str, threads: int = 1) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])


def signature(sess: ort.InferenceSession) -> tuple[list[tuple[str, str, list[Any]]], list[tuple[str, str, list[Any]]]]:
    """(name, OIP datatype, shape) of each input and output."""
    def describe(args: list[Any]) -> list[tuple[str, str, list[Any]]]:
        return [(a.name, OIP_DATATYPES[a.type], list(a.shape)) for a in args]
    return describe(sess.get_inputs()), describe(sess.get_outputs())
