"""Model quality over sliding windows, from predictions joined with labels that arrived later.

Classification keeps a confusion matrix per time bucket (the spec's labels plus one "other" row and
column for values outside them); regression keeps the count, the sum of absolute errors and the sum
of squared errors. Both are count vectors in a :class:`BucketRing`, so windows cost the same as for
drift. Precision, recall and F1 follow scikit-learn with ``labels=spec labels`` and
``zero_division=0``: a class never predicted (or never present) scores 0, and macro averages are
plain means over the spec's classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from modelfleet.spec import Task
from modelfleet.stats.profile import category_key
from modelfleet.stats.window import BucketRing


@dataclass(frozen=True)
class QualityResult:
    count: int
    accuracy: float | None = None
    precision: dict[str, float] = field(default_factory=dict)
    recall: dict[str, float] = field(default_factory=dict)
    f1: dict[str, float] = field(default_factory=dict)
    macro_precision: float | None = None
    macro_recall: float | None = None
    macro_f1: float | None = None
    mae: float | None = None
    rmse: float | None = None


def _ratio(numerator: npt.NDArray[np.float64], denominator: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


class QualityWindows:
    """Windowed quality metrics of one model version."""

    def __init__(self, task: Task, bucket_seconds: float, windows: Mapping[str, float]) -> None:
        self.task = task
        self.labels = [category_key(label) or "" for label in (task.labels or [])]
        self.index = {label: i for i, label in enumerate(self.labels)}
        self.size = len(self.labels) + 1  # + "other"
        width = self.size * self.size if task.type == "classification" else 3
        self.ring = BucketRing(width, bucket_seconds, windows)

    def _codes(self, values: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
        other = self.size - 1
        return np.fromiter((self.index.get(category_key(v) or "", other) for v in values.ravel()), dtype=np.int64,
                           count=values.size)

    def add(self, timestamp: float, predicted: npt.ArrayLike, actual: npt.ArrayLike) -> bool:
        """Add joined (prediction, label) pairs that share the bucket of ``timestamp``."""
        predicted_arr, actual_arr = np.asarray(predicted), np.asarray(actual)
        if self.task.type == "classification":
            cells = self._codes(actual_arr) * self.size + self._codes(predicted_arr)
            vector = np.bincount(cells, minlength=self.size * self.size).astype(np.float64)
        else:
            errors = predicted_arr.astype(np.float64).ravel() - actual_arr.astype(np.float64).ravel()
            errors = errors[np.isfinite(errors)]
            vector = np.asarray([errors.size, np.abs(errors).sum(), np.square(errors).sum()], dtype=np.float64)
        return self.ring.add(timestamp, vector)

    def evaluate(self, window: str, now: float) -> QualityResult:
        total = self.ring.window_sum(window, now)
        if self.task.type == "regression":
            count = int(total[0])
            if not count:
                return QualityResult(0)
            return QualityResult(count, mae=float(total[1] / count), rmse=float(np.sqrt(total[2] / count)))
        matrix = total.reshape(self.size, self.size)  # rows: actual, columns: predicted
        count = int(matrix.sum())
        if not count:
            return QualityResult(0)
        classes = len(self.labels)
        correct = np.diag(matrix)[:classes]
        precision = _ratio(correct, matrix[:, :classes].sum(axis=0))
        recall = _ratio(correct, matrix[:classes, :].sum(axis=1))
        f1 = _ratio(2 * precision * recall, precision + recall)
        return QualityResult(
            count, accuracy=float(correct.sum() / count),
            precision=dict(zip(self.labels, precision.tolist(), strict=True)),
            recall=dict(zip(self.labels, recall.tolist(), strict=True)),
            f1=dict(zip(self.labels, f1.tolist(), strict=True)),
            macro_precision=float(precision.mean()), macro_recall=float(recall.mean()), macro_f1=float(f1.mean()))

    def state_dict(self) -> dict[str, npt.NDArray[Any]]:
        return self.ring.state_dict()

    @classmethod
    def from_state(cls, task: Task, state: Mapping[str, npt.NDArray[Any]]) -> QualityWindows:
        ring = BucketRing.from_state(state)
        restored = cls(task, ring.bucket_seconds, ring.windows)
        if ring.width != restored.ring.width:
            raise ValueError("checkpoint quality state does not match the task")
        restored.ring = ring
        return restored
