"""Which columns of a model's inputs and outputs are watched for drift, and how they are read.

One mapping serves the reference profile built at conversion and the drift exporter reading the
payload spool: features come from ``spec.features`` (an input tensor and a column each);
predictions are the predicted label (classification) plus one score column per class, or each
column of the regression output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from modelfleet.spec import ModelSpec
from modelfleet.stats.profile import ColumnProfile, DataProfile, profile_categorical, profile_numeric

Kind = Literal["numeric", "categorical"]
LABEL_COLUMN = "label"


@dataclass(frozen=True)
class Column:
    kind: Kind
    values: npt.NDArray[np.generic]


def _as_2d(array: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
    if array.ndim == 1:
        return array.reshape(-1, 1)
    return array.reshape(array.shape[0], -1)


def feature_columns(spec: ModelSpec, inputs: Mapping[str, npt.NDArray[np.generic]]) -> dict[str, Column]:
    """Each feature's values from a batch of input tensors (rows along the first axis)."""
    columns: dict[str, Column] = {}
    for feature, (tensor, column) in zip(spec.features, spec.feature_locations, strict=True):
        if tensor.name not in inputs:
            raise KeyError(f"feature {feature.name!r} reads input {tensor.name!r}, which is absent")
        matrix = _as_2d(np.asarray(inputs[tensor.name]))
        if column >= matrix.shape[1]:
            raise IndexError(f"feature {feature.name!r} reads column {column} of {tensor.name!r}, "
                             f"which has {matrix.shape[1]} columns")
        columns[feature.name] = Column(feature.type, matrix[:, column])
    return columns


def prediction_columns(spec: ModelSpec, output_names: Sequence[str],
                       outputs: Sequence[npt.NDArray[np.generic]]) -> dict[str, Column]:
    """The prediction columns of a batch of model outputs (in the graph's output order)."""
    by_name = dict(zip(output_names, outputs, strict=True))
    primary = spec.task.output or output_names[0]
    if primary not in by_name:
        raise KeyError(f"task.output {primary!r} is not among the model outputs {list(output_names)}")
    main = np.asarray(by_name[primary])
    if spec.task.type == "regression":
        matrix = _as_2d(main).astype(np.float64)
        if matrix.shape[1] == 1:
            return {primary: Column("numeric", matrix[:, 0])}
        return {f"{primary}[{i}]": Column("numeric", matrix[:, i]) for i in range(matrix.shape[1])}

    labels = list(spec.task.labels or [])
    scores: npt.NDArray[np.generic] | None = None
    if main.dtype.kind == "f" and _as_2d(main).shape[1] == len(labels):
        scores = _as_2d(main)
        predicted: npt.NDArray[np.generic] = np.asarray(labels, dtype=object)[np.argmax(scores, axis=1)]
    else:
        predicted = main.ravel()
        score_name = spec.task.probabilities or next(
            (n for n, a in by_name.items()
             if n != primary and np.asarray(a).dtype.kind == "f" and _as_2d(np.asarray(a)).shape[1] == len(labels)),
            None)
        if score_name is not None:
            scores = _as_2d(np.asarray(by_name[score_name]))
    columns = {LABEL_COLUMN: Column("categorical", predicted)}
    if scores is not None:
        for i, label in enumerate(labels):
            columns[f"score[{label}]"] = Column("numeric", scores[:, i].astype(np.float64))
    return columns


def profile_columns(columns: Mapping[str, Column], bins: int) -> dict[str, ColumnProfile]:
    profiles: dict[str, ColumnProfile] = {}
    for name, column in columns.items():
        if column.kind == "numeric":
            profiles[name] = profile_numeric(column.values, bins)
        else:
            profiles[name] = profile_categorical(column.values)
    return profiles


def build_profile(spec: ModelSpec, inputs: Mapping[str, npt.NDArray[np.generic]],
                  output_names: Sequence[str], outputs: Sequence[npt.NDArray[np.generic]]) -> DataProfile:
    """The reference profile of a model version from reference inputs and the model's outputs on them."""
    rows = int(np.asarray(next(iter(inputs.values()))).shape[0]) if inputs else 0
    return DataProfile(
        rows=rows,
        bins=spec.drift.bins,
        features=profile_columns(feature_columns(spec, inputs), spec.drift.bins),
        predictions=profile_columns(prediction_columns(spec, output_names, outputs), spec.drift.bins),
    )
