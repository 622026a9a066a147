"""scikit-learn front end: skl2onnx, classifiers without ZipMap, pipelines included."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from modelfleet.convert.frontends import Arrays, Exported, SourceFiles, require
from modelfleet.errors import ConversionError
from modelfleet.spec import Datatype, ModelSpec


def _initial_types(spec: ModelSpec) -> list[tuple[str, Any]]:
    from skl2onnx.common import data_types

    types = {
        Datatype.FP32: data_types.FloatTensorType,
        Datatype.FP64: data_types.DoubleTensorType,
        Datatype.INT64: data_types.Int64TensorType,
        Datatype.INT32: data_types.Int32TensorType,
        Datatype.BOOL: data_types.BooleanTensorType,
        Datatype.BYTES: data_types.StringTensorType,
    }
    result = []
    for tensor in spec.inputs:
        if tensor.datatype not in types:
            raise ConversionError(f"inputs: {tensor.name!r} has datatype {tensor.datatype.value}, which "
                                  f"skl2onnx cannot take (use one of {[t.value for t in types]})")
        shape = [None if dim == -1 else dim for dim in tensor.shape]
        result.append((tensor.name, types[tensor.datatype](shape)))
    return result


def _classifiers(estimator: Any) -> list[Any]:
    """Every classifier inside ``estimator`` (pipelines and meta-estimators included)."""
    from sklearn.base import is_classifier

    found = [estimator] if is_classifier(estimator) else []
    for step in getattr(estimator, "steps", []):
        found.extend(_classifiers(step[1]))
    return found


def export(spec: ModelSpec, files: SourceFiles, samples: Arrays) -> Exported:
    require("skl2onnx", "sklearn", "sklearn")
    import joblib
    import sklearn
    from skl2onnx import to_onnx

    if len(spec.inputs) != 1:
        raise ConversionError("inputs: a scikit-learn model takes one input tensor (select columns with a "
                              "ColumnTransformer inside the pipeline)")
    try:
        estimator = joblib.load(io.BytesIO(files.model))
    except Exception as exc:  # joblib/pickle raise anything on corrupted input
        raise ConversionError(f"source.path {spec.source.path}: not a loadable joblib/pickle file: "
                              f"{type(exc).__name__}: {exc}") from None
    if not hasattr(estimator, "predict"):
        raise ConversionError(f"source.path {spec.source.path}: holds a {type(estimator).__name__}, "
                              "not a fitted scikit-learn estimator")
    classifiers = _classifiers(estimator)
    if (spec.task.type == "classification") != bool(classifiers):
        raise ConversionError(f"task.type is {spec.task.type}, but the model is a "
                              f"{type(estimator).__name__} ({'a' if classifiers else 'no'} classifier)")
    options = {id(clf): {"zipmap": False} for clf in classifiers}
    try:
        model = to_onnx(estimator, initial_types=_initial_types(spec), target_opset=spec.convert.opset,
                        options=options or None)
    except Exception as exc:  # skl2onnx raises many types for unsupported estimators
        raise ConversionError(f"skl2onnx could not convert {type(estimator).__name__}: "
                              f"{type(exc).__name__}: {exc}") from None
    input_name = spec.inputs[0].name

    def predict(arrays: Arrays) -> list[np.ndarray]:
        features = arrays[input_name]
        if classifiers:
            return [np.asarray(estimator.predict(features)), np.asarray(estimator.predict_proba(features))]
        return [np.asarray(estimator.predict(features), dtype=np.float64).reshape(features.shape[0], -1)]

    return Exported(model=model, predict=predict, framework_version=f"scikit-learn {sklearn.__version__}")
