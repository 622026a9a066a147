"""Framework front ends: each turns source model bytes into an ONNX graph and a reference predictor.

A front end returns an :class:`Exported`: the ONNX model, the framework's version, and a function
that runs the *source* model on input arrays, returning outputs in the ONNX graph's output order,
for numeric parity checks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import onnx

from modelfleet.errors import ConversionError
from modelfleet.spec import Framework, ModelSpec

Arrays = Mapping[str, npt.NDArray[np.generic]]
Predictor = Callable[[Arrays], list[npt.NDArray[np.generic]]]


@dataclass(frozen=True)
class Exported:
    model: onnx.ModelProto
    predict: Predictor
    framework_version: str


@dataclass(frozen=True)
class SourceFiles:
    """The bytes conversion reads, captured once so that every stage sees the same source."""

    model: bytes
    factory: bytes | None = None


def export(spec: ModelSpec, files: SourceFiles, samples: Arrays) -> Exported:
    """Convert the spec's source model to ONNX with the front end of its framework."""
    framework = spec.source.framework
    if framework is Framework.SKLEARN:
        from modelfleet.convert.frontends import sklearn

        return sklearn.export(spec, files, samples)
    if framework is Framework.PYTORCH:
        from modelfleet.convert.frontends import pytorch

        return pytorch.export(spec, files, samples)
    if framework is Framework.ONNX:
        from modelfleet.convert.frontends import onnx_file

        return onnx_file.export(spec, files, samples)
    if framework is Framework.TENSORFLOW:
        from modelfleet.convert.frontends import tensorflow

        return tensorflow.export(spec, files, samples)
    raise ConversionError(f"source.framework: {framework} has no converter")  # pragma: no cover


def require(module: str, framework: str, extra: str) -> None:
    """Fail with an install hint when a converter library is absent."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ConversionError(f"source.framework {framework} needs the Python package {module!r}, which is "
                              f"not installed: pip install 'modelfleet[{extra}]'")
