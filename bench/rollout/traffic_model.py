"""Synthetic step windows for the rollout simulation: per-second request, error, latency-bucket and feature counts.

Latencies come from a histogram recorded from the real model server under load (``record.py``): a request's
latency is drawn from a recorded bucket (log-uniform inside it), then the case's change is applied (× factor,
+ offset) and it is counted in the server's own bucket grid. Per-second counts are multinomial draws from the
resulting bucket probabilities, so nested windows (a step, then the same step extended) are consistent.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from modelfleet.stats.profile import NumericProfile, profile_numeric
from modelfleet.stats.window import ColumnSketch

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class LatencyModel:
    """A recorded latency histogram: finite upper bounds (seconds) and the requests in each bucket (+Inf last)."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    source: str

    @classmethod
    def load(cls, path: Path) -> LatencyModel:
        data = json.loads(path.read_text())
        return cls(tuple(data["bounds"]), tuple(data["counts"]), str(data.get("source", path.name)))

    def scaled(self, factor: float) -> LatencyModel:
        """The same distribution with every latency × ``factor`` (bucket edges scaled)."""
        if factor == 1.0:
            return self
        return LatencyModel(tuple(b * factor for b in self.bounds), self.counts, f"{self.source}, scaled x{factor:g}")

    def sample(self, size: int, rng: np.random.Generator) -> FloatArray:
        """Latencies (seconds): a recorded bucket by its share, then log-uniform inside it."""
        probabilities = np.asarray(self.counts, dtype=np.float64) / sum(self.counts)
        index = rng.choice(len(self.counts), size=size, p=probabilities)
        uppers = np.asarray((*self.bounds, self.bounds[-1] * 2), dtype=np.float64)
        lowers = np.concatenate(([self.bounds[0] / 1.26], uppers[:-1]))
        low, high = np.log(lowers[index]), np.log(uppers[index])
        return np.asarray(np.exp(low + (high - low) * rng.random(size)), dtype=np.float64)

    def bucket_probabilities(self, grid: tuple[float, ...], factor: float, offset: float,
                             rng: np.random.Generator, draws: int = 400_000) -> FloatArray:
        """P(request in each bucket of ``grid`` (+Inf last)) after ``latency × factor + offset``."""
        latencies = self.sample(draws, rng) * factor + offset
        index = np.searchsorted(np.asarray(grid), latencies, side="left")
        return np.bincount(index, minlength=len(grid) + 1).astype(np.float64) / draws


@dataclass(frozen=True)
class Behaviour:
    """What a version does: its latency bucket probabilities, error probability and feature shift."""

    buckets: FloatArray
    error_probability: float = 0.0
    drift: bool = False


@dataclass
class Features:
    """The canary's input columns as the drift exporter sketches them: a continuous one and a discrete
    Poisson(3) one, whose drift (× 1.05 + 0.1) stays inside its quantile bins (PSI blind, KS not)."""

    rng: np.random.Generator
    profiles: dict[str, NumericProfile] = field(default_factory=dict)
    sketches: dict[str, ColumnSketch] = field(default_factory=dict)

    @classmethod
    def build(cls, rng: np.random.Generator, reference_rows: int = 100_000) -> Features:
        features = cls(rng)
        reference = features.rows(reference_rows, drift=False)
        for name, values in reference.items():
            features.profiles[name] = profile_numeric(values, bins=10)
            features.sketches[name] = ColumnSketch(features.profiles[name])
        return features

    def rows(self, size: int, *, drift: bool) -> dict[str, FloatArray]:
        income = self.rng.normal(50_000.0, 12_000.0, size)
        late = self.rng.poisson(3.0, size).astype(np.float64)
        if drift:
            late = late * 1.05 + 0.1
        return {"income": income, "late_payments": late}

    def count(self, size: int, *, drift: bool) -> dict[str, FloatArray]:
        rows = self.rows(size, drift=drift)
        return {name: self.sketches[name].count(values) for name, values in rows.items()}


class VersionTraffic:
    """Cumulative per-second counts of one version: requests, errors, latency buckets (and feature sketches)."""

    def __init__(self, behaviour: Behaviour, rng: np.random.Generator, features: Features | None) -> None:
        self.behaviour = behaviour
        self.rng = rng
        self.features = features
        width = behaviour.buckets.size
        self.requests: list[int] = [0]
        self.errors: list[int] = [0]
        self.buckets: list[IntArray] = [np.zeros(width, dtype=np.int64)]
        self.sketch: dict[str, FloatArray] = {}

    def add_second(self, rate: float) -> None:
        n = int(self.rng.poisson(rate)) if rate > 0 else 0
        errors = int(self.rng.binomial(n, self.behaviour.error_probability)) if n else 0
        counts = self.rng.multinomial(n, self.behaviour.buckets) if n else np.zeros_like(self.buckets[-1])
        self.requests.append(self.requests[-1] + n)
        self.errors.append(self.errors[-1] + errors)
        self.buckets.append(self.buckets[-1] + counts)
        if self.features is not None and n:
            for name, vector in self.features.count(n, drift=self.behaviour.drift).items():
                self.sketch[name] = self.sketch.get(name, 0.0) + vector

    def window(self, at: int, seconds: int) -> tuple[int, int, IntArray]:
        """(requests, errors, bucket counts) in the ``seconds`` before second ``at``."""
        start = max(0, at - seconds)
        return (self.requests[at] - self.requests[start], self.errors[at] - self.errors[start],
                self.buckets[at] - self.buckets[start])


def cumulative_at(counts: IntArray, grid: tuple[float, ...], subset: tuple[float, ...]) -> list[tuple[float, float]]:
    """Prometheus' ``le`` series of the bucket counts (in ``grid``), at the bounds of ``subset`` (+Inf last)."""
    running = np.cumsum(counts)
    position = {bound: i for i, bound in enumerate(grid)}
    pairs = [(bound, float(running[position[bound]])) for bound in subset]
    return [*pairs, (math.inf, float(running[-1]))]
