"""Windowed quality metrics against scikit-learn on the same joined predictions and labels."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics

from modelfleet.spec import Task
from modelfleet.stats.quality import QualityWindows

CLASSES = [0, 1, 2]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), rows=st.integers(1, 400), noise=st.floats(0, 1))
def test_classification_matches_sklearn(seed: int, rows: int, noise: float) -> None:
    rng = np.random.default_rng(seed)
    actual = rng.choice(CLASSES, rows)
    predicted = np.where(rng.random(rows) < noise, rng.choice(CLASSES, rows), actual)
    windows = QualityWindows(Task(type="classification", labels=CLASSES), 10.0, {"5m": 300.0})
    for start in range(0, rows, 50):  # several batches in several buckets
        windows.add(float(start // 50), predicted[start:start + 50], actual[start:start + 50])
    result = windows.evaluate("5m", 10.0)
    assert result.count == rows
    assert result.accuracy == pytest.approx(metrics.accuracy_score(actual, predicted))
    p, r, f, _ = metrics.precision_recall_fscore_support(actual, predicted, labels=CLASSES, zero_division=0)
    assert [result.precision[str(c)] for c in CLASSES] == pytest.approx(p.tolist())
    assert [result.recall[str(c)] for c in CLASSES] == pytest.approx(r.tolist())
    assert [result.f1[str(c)] for c in CLASSES] == pytest.approx(f.tolist())
    assert result.macro_f1 == pytest.approx(metrics.f1_score(actual, predicted, labels=CLASSES, average="macro",
                                                             zero_division=0))
    assert result.macro_precision == pytest.approx(float(np.mean(p)))
    assert result.macro_recall == pytest.approx(float(np.mean(r)))


def test_labels_outside_the_spec_count_as_wrong() -> None:
    windows = QualityWindows(Task(type="classification", labels=["no", "yes"]), 10.0, {"w": 60.0})
    windows.add(0.0, np.array(["yes", "no", "maybe"], dtype=object), np.array(["yes", "maybe", "no"], dtype=object))
    result = windows.evaluate("w", 0.0)
    assert result.count == 3 and result.accuracy == pytest.approx(1 / 3)
    assert result.recall["no"] == 0.0 and result.precision["yes"] == 1.0


def test_regression_matches_sklearn_and_ignores_nan() -> None:
    rng = np.random.default_rng(0)
    actual = rng.normal(100, 20, 500)
    predicted = actual + rng.normal(0, 5, 500)
    windows = QualityWindows(Task(type="regression"), 10.0, {"w": 60.0})
    windows.add(0.0, predicted, actual)
    windows.add(1.0, np.array([np.nan]), np.array([1.0]))
    result = windows.evaluate("w", 1.0)
    assert result.count == 500
    assert result.mae == pytest.approx(metrics.mean_absolute_error(actual, predicted))
    assert result.rmse == pytest.approx(np.sqrt(metrics.mean_squared_error(actual, predicted)))


def test_window_expiry_and_checkpoint() -> None:
    task = Task(type="classification", labels=CLASSES)
    windows = QualityWindows(task, 10.0, {"1m": 60.0, "1h": 3600.0})
    windows.add(0.0, np.array([0, 1]), np.array([0, 0]))
    windows.add(300.0, np.array([2]), np.array([2]))
    assert windows.evaluate("1m", 300.0).count == 1
    assert windows.evaluate("1h", 300.0).count == 3
    restored = QualityWindows.from_state(task, windows.state_dict())
    assert restored.evaluate("1h", 300.0) == windows.evaluate("1h", 300.0)
    assert windows.evaluate("1m", 1000.0).count == 0 and windows.evaluate("1m", 1000.0).accuracy is None
    with pytest.raises(ValueError, match="does not match"):
        QualityWindows.from_state(Task(type="regression"), windows.state_dict())
