"""Deterministic benchmark data: 20 numeric features of mixed shapes, 5 of which drift in the stream.

Numpy only, so that it imports in every interpreter. The orchestrator's ``prepare`` step (modelfleet's
interpreter) writes the reference and the stream pool to ``.npy`` files that every library reads, so
all libraries see byte-identical data whatever their numpy version. The 10M-row streaming worker
regenerates stream batches with :func:`stream_batch` (same definition as the pool: batch ``b`` comes
from its own seed, so batch ``b`` of the long stream equals rows ``b·B … (b+1)·B`` of the pool).

Drifts are moderate, each a ~10% change of one parameter (the realised KS statistic and normed
Wasserstein distance of every feature are measured by the exact scipy worker and reported).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
Sampler = Callable[[np.random.Generator, int], FloatArray]
SEED = 20261125
REFERENCE_STREAM = 0
DRIFT_STREAM = 1


def _bimodal(w: float, left: float, right: float, scale: float) -> Sampler:
    def sample(rng: np.random.Generator, n: int) -> FloatArray:
        pick = rng.random(n) < w
        return np.where(pick, rng.normal(left, scale, n), rng.normal(right, scale, n))
    return sample


def _trimodal(rng: np.random.Generator, n: int) -> FloatArray:
    centre = rng.choice(np.array([-5.0, 0.0, 6.0]), size=n, p=[0.3, 0.5, 0.2])
    return centre + rng.normal(0.0, 1.0, n)


@dataclass(frozen=True)
class Feature:
    name: str
    family: str
    reference: Sampler
    drifted: Sampler | None = None  # None: same distribution in the stream
    drift: str = ""

    @property
    def drifts(self) -> bool:
        return self.drifted is not None


FEATURES: tuple[Feature, ...] = (
    Feature("f00", "normal(0, 1)", lambda r, n: r.normal(0.0, 1.0, n)),
    Feature("f01", "normal(10, 2)", lambda r, n: r.normal(10.0, 2.0, n),
            lambda r, n: r.normal(10.3, 2.0, n), "mean +0.15 sd (10 -> 10.3)"),
    Feature("f02", "lognormal(0, 1)", lambda r, n: r.lognormal(0.0, 1.0, n)),
    Feature("f03", "uniform(-1, 1)", lambda r, n: r.uniform(-1.0, 1.0, n)),
    Feature("f04", "lognormal(1, 0.6)", lambda r, n: r.lognormal(1.0, 0.6, n),
            lambda r, n: r.lognormal(1.0, 0.66, n), "sigma x1.1 (0.6 -> 0.66)"),
    Feature("f05", "bimodal 0.3 N(-3,1) + 0.7 N(2,1.5)", _bimodal(0.3, -3.0, 2.0, 1.2)),
    Feature("f06", "exponential(1)", lambda r, n: r.exponential(1.0, n)),
    Feature("f07", "uniform(0, 100)", lambda r, n: r.uniform(0.0, 100.0, n),
            lambda r, n: r.uniform(5.0, 105.0, n), "range shifted by 5% (0..100 -> 5..105)"),
    Feature("f08", "student-t(3)", lambda r, n: r.standard_t(3.0, n)),
    Feature("f09", "gamma(0.5, 2)", lambda r, n: r.gamma(0.5, 2.0, n)),
    Feature("f10", "bimodal 0.5 N(-2,1) + 0.5 N(2,1)", _bimodal(0.5, -2.0, 2.0, 1.0),
            _bimodal(0.4, -2.0, 2.0, 1.0), "mode weights 50/50 -> 40/60"),
    Feature("f11", "beta(2, 5)", lambda r, n: r.beta(2.0, 5.0, n)),
    Feature("f12", "poisson(4) (integer, ties)", lambda r, n: r.poisson(4.0, n).astype(np.float64)),
    Feature("f13", "laplace(0, 1)", lambda r, n: r.laplace(0.0, 1.0, n)),
    Feature("f14", "gamma(2, 3)", lambda r, n: r.gamma(2.0, 3.0, n),
            lambda r, n: r.gamma(2.0, 3.3, n), "scale x1.1 (3 -> 3.3)"),
    Feature("f15", "weibull(1.5)", lambda r, n: r.weibull(1.5, n)),
    Feature("f16", "normal(-50, 10)", lambda r, n: r.normal(-50.0, 10.0, n)),
    Feature("f17", "logistic(0, 1)", lambda r, n: r.logistic(0.0, 1.0, n)),
    Feature("f18", "trimodal 0.3/0.5/0.2 at -5/0/6", _trimodal),
    Feature("f19", "chi-square(3)", lambda r, n: r.chisquare(3.0, n)),
)
NAMES = [f.name for f in FEATURES]


def _generate(rng_key: tuple[int, ...], rows: int, drifted: bool) -> FloatArray:
    out = np.empty((rows, len(FEATURES)), dtype=np.float64)
    for index, feature in enumerate(FEATURES):
        sampler = feature.drifted if drifted and feature.drifted is not None else feature.reference
        out[:, index] = sampler(np.random.default_rng([SEED, *rng_key, index]), rows)
    return out


def reference(rows: int) -> FloatArray:
    """The reference data set, ``rows`` × 20, C order."""
    return _generate((REFERENCE_STREAM,), rows, drifted=False)


def stream_batch(batch: int, rows: int) -> FloatArray:
    """Batch ``batch`` of the serving stream (5 features drifted), ``rows`` × 20."""
    return _generate((DRIFT_STREAM, rows, batch), rows, drifted=True)


def stream(rows: int, batch_rows: int) -> FloatArray:
    """The first ``rows`` rows of the stream, as consecutive :func:`stream_batch` batches."""
    batches = -(-rows // batch_rows)
    return np.concatenate([stream_batch(b, batch_rows) for b in range(batches)])[:rows]


def prepare(directory: str, reference_rows: int, pool_rows: int, step_rows: int, window_rows: int) -> dict[str, object]:
    """Write ``reference.npy``, ``stream.npy`` (the pool) and ``meta.json`` into ``directory``."""
    import json
    from pathlib import Path

    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / "reference.npy", reference(reference_rows))
    np.save(root / "stream.npy", stream(pool_rows, step_rows))
    meta: dict[str, object] = {
        "seed": SEED, "names": NAMES, "reference_rows": reference_rows, "pool_rows": pool_rows,
        "step_rows": step_rows, "window_rows": window_rows,
        "features": [{"name": f.name, "family": f.family, "drifted": f.drifts, "drift": f.drift} for f in FEATURES]}
    (root / "meta.json").write_text(json.dumps(meta, indent=1))
    return meta


if __name__ == "__main__":
    import json
    import sys

    spec = json.loads(sys.argv[1])
    print(json.dumps(prepare(spec["data_dir"], spec["reference_rows"], spec["pool_rows"], spec["step_rows"],
                             spec["window_rows"])))
