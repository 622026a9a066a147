"""Offline graph optimization with ONNX Runtime, optional FP16 conversion, and running a graph.

Offline optimization is capped: ``all`` adds layout transforms specific to the building machine's
CPU, and ``extended`` fuses into CPU-only kernels, which a GPU host may lack (ONNX Runtime's docs
say to optimize offline on the target's hardware). So the artifact carries at most ``extended``
(``basic`` when the spec lists GPU providers) and the server applies the requested level online at
load time on its own hardware. The manifest records both.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx

from modelfleet.errors import ValidationError
from modelfleet.spec import ModelSpec

LEVELS = ("disable", "basic", "extended", "all")


def offline_level(spec: ModelSpec) -> str:
    requested = spec.convert.optimize
    cap = "basic" if any(p != "cpu" for p in spec.serving.providers) else "extended"
    return min(requested, cap, key=LEVELS.index)


def _ort_level(level: str) -> Any:
    import onnxruntime as ort

    return {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]


def optimize(model: onnx.ModelProto, level: str) -> onnx.ModelProto:
    """The graph as ONNX Runtime optimizes it offline at ``level`` (unchanged for ``disable``)."""
    if level == "disable":
        return model
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="modelfleet-opt-") as scratch:
        target = Path(scratch) / "optimized.onnx"
        options = ort.SessionOptions()
        options.graph_optimization_level = _ort_level(level)
        options.optimized_model_filepath = str(target)
        try:
            ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own exception types on invalid graphs
            raise ValidationError("optimization", f"ONNX Runtime cannot load the graph: {exc}") from None
        return onnx.load(str(target))


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """FP16 weights and compute with FP32 inputs and outputs kept (for GPU targets)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    try:
        converted: onnx.ModelProto = convert_float_to_float16(model, keep_io_types=True)
    except Exception as exc:  # the converter raises many types on unsupported graphs
        raise ValidationError("fp16", f"cannot convert the graph to FP16: {type(exc).__name__}: {exc}") from None
    return converted


def run(model: onnx.ModelProto, inputs: Mapping[str, npt.NDArray[np.generic]]) -> tuple[list[str],
                                                                                        list[npt.NDArray[Any]]]:
    """Output names and outputs of ``model`` on ``inputs`` with ONNX Runtime on the CPU."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        return names, [np.asarray(o) for o in session.run(names, dict(inputs))]
    except Exception as exc:  # ORT raises its own exception types
        raise ValidationError("onnx runtime", f"{type(exc).__name__}: {str(exc).strip()[:500]}") from None
