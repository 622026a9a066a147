"""Train the credit-risk example: a scikit-learn pipeline on synthetic tabular data.

Deterministic: the same files come out on every run. Writes, next to this script,
``model.joblib``, ``data/sample.npz`` (parity samples) and ``data/reference.npz`` (drift baseline).
``generate(rows, seed, shift)`` is also imported by tests and the demo to make live traffic,
with ``shift > 0`` moving the income and utilization distributions (drifted traffic).
"""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

HERE = Path(__file__).resolve().parent
NUMERIC = ["age", "income", "debt_ratio", "credit_lines", "late_payments", "utilization"]
CATEGORICAL = ["region", "employment"]
COLUMNS = NUMERIC + CATEGORICAL


def generate(rows: int, seed: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Feature matrix (float32, columns in COLUMNS order) and default labels (0/1)."""
    rng = np.random.default_rng(seed)
    age = rng.normal(42, 12, rows).clip(18, 90)
    income = rng.lognormal(10.8 + shift, 0.5, rows)
    debt_ratio = rng.beta(2, 5, rows)
    credit_lines = rng.poisson(4, rows).astype(float)
    late_payments = rng.poisson(0.6, rows).astype(float)
    utilization = (rng.beta(2, 3, rows) + 0.3 * shift).clip(0, 1.5)
    region = rng.choice(5, rows, p=[0.35, 0.25, 0.2, 0.15, 0.05]).astype(float)
    employment = rng.choice(4, rows, p=[0.6, 0.2, 0.15, 0.05]).astype(float)
    logit = (-1.5 + 2.5 * debt_ratio + 0.8 * late_payments + 1.8 * utilization - 0.35 * np.log(income / 50000)
             - 0.015 * (age - 42) + 0.3 * (employment == 3) + 0.25 * (region == 4))
    labels = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    features = np.column_stack([age, income, debt_ratio, credit_lines, late_payments, utilization, region,
                                employment]).astype(np.float32)
    return features, labels


def build_pipeline() -> Pipeline:
    numeric = list(range(len(NUMERIC)))
    categorical = list(range(len(NUMERIC), len(COLUMNS)))
    preprocess = ColumnTransformer([
        ("scale", StandardScaler(), numeric),
        ("onehot", OneHotEncoder(handle_unknown="ignore"), categorical),
    ])
    return Pipeline([("preprocess", preprocess), ("classify", LogisticRegression(max_iter=500))])


def main() -> None:
    features, labels = generate(20_000, seed=7)
    pipeline = build_pipeline().fit(features, labels)
    joblib.dump(pipeline, HERE / "model.joblib")
    data = HERE / "data"
    data.mkdir(exist_ok=True)
    sample = generate(256, seed=11)[0]
    np.savez(data / "sample.npz", x=sample)
    reference, reference_labels = generate(5_000, seed=13)
    np.savez(data / "reference.npz", x=reference, labels=reference_labels)
    accuracy = float((pipeline.predict(features) == labels).mean())
    print(f"credit-risk: trained on {len(labels)} rows, training accuracy {accuracy:.3f}; wrote {HERE}")


if __name__ == "__main__":
    main()
