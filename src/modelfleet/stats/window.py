"""Streaming windows: fixed-size, mergeable column sketches in time buckets, summed per window.

A :class:`ColumnSketch` turns a batch of one column's values into a fixed-width count vector
against that column's reference profile. Vectors add up (they are counts), so a window is the sum
of its buckets. :class:`BucketRing` keeps the buckets of the longest window in a ring and, for
every window length, a running sum that buckets enter when written and leave when they fall out
of the window: evaluating a window costs one vector, whatever its length or traffic. Memory is
``slots × width`` floats, fixed at start; it does not grow with the stream.

Numeric sketch layout (``B`` PSI bins, ``K`` grid values ``u``):
``[B PSI bin counts | 2K+1 grid cells | missing | Σ(u0 - x) below u0 | Σ(x - u_K-1) above]`` where
grid cell ``2k+1`` counts values equal to ``u_k`` and cell ``2k`` the open interval below it
(cell 0: below the reference minimum, cell 2K: above the maximum).
Categorical layout (``C`` reference categories): ``[C category counts | unseen | missing]``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt

from modelfleet.stats.binning import finite
from modelfleet.stats.drift import ColumnDrift, NumericReference, categorical_drift, ks_pvalues, numeric_drift
from modelfleet.stats.profile import OTHER_CATEGORY, ColumnProfile, NumericProfile, category_key

FloatArray = npt.NDArray[np.float64]
MAX_BUCKETS_PER_WINDOW = 60


class ColumnSketch:
    """Counts one column's values against its reference profile, as a fixed-width vector."""

    def __init__(self, profile: ColumnProfile) -> None:
        self.profile = profile
        if isinstance(profile, NumericProfile):
            self.kind = "numeric"
            self.reference = NumericReference.of(profile)
            self.edges = np.asarray(profile.edges, dtype=np.float64)
            self.grid = np.asarray(profile.grid, dtype=np.float64)
            self.psi_bins = self.edges.size + 1
            self.cells = 2 * self.grid.size + 1
            self.width = self.psi_bins + self.cells + 3
        else:
            self.kind = "categorical"
            self.categories = list(profile.categories)
            self.index = {name: i for i, name in enumerate(self.categories)}
            self.other = self.index.get(OTHER_CATEGORY)
            self.numeric_codes = _numeric_codes(self.categories)
            self.width = len(self.categories) + 2

    def count(self, values: npt.ArrayLike) -> FloatArray:
        """The count vector of a batch of values."""
        vector = np.zeros(self.width, dtype=np.float64)
        if self.kind == "numeric":
            self._count_numeric(np.asarray(values, dtype=np.float64).ravel(), vector)
        else:
            self._count_categorical(np.asarray(values).ravel(), vector)
        return vector

    def _count_numeric(self, raw: FloatArray, vector: FloatArray) -> None:
        data = finite(raw)
        vector[self.psi_bins + self.cells] = raw.size - data.size  # missing
        if not data.size:
            return
        vector[: self.psi_bins] = np.bincount(np.searchsorted(self.edges, data, side="right"),
                                              minlength=self.psi_bins)
        grid = self.grid
        if not grid.size:
            vector[self.psi_bins] = data.size
            return
        position = np.searchsorted(grid, data, side="left")
        equal = (position < grid.size) & (grid[np.minimum(position, grid.size - 1)] == data)
        vector[self.psi_bins: self.psi_bins + self.cells] = np.bincount(2 * position + equal, minlength=self.cells)
        below = data[(data < grid[0]) & np.isfinite(data)]
        above = data[(data > grid[-1]) & np.isfinite(data)]
        vector[-2] = float(np.sum(grid[0] - below))
        vector[-1] = float(np.sum(above - grid[-1]))

    def _count_categorical(self, values: npt.NDArray[Any], vector: FloatArray) -> None:
        known = len(self.categories)
        if self.numeric_codes is not None and values.dtype.kind in "biuf":
            as_float = values.astype(np.float64)
            missing = np.isnan(as_float)
            codes, order = self.numeric_codes
            position = np.searchsorted(codes, as_float[~missing])
            hit = (position < codes.size) & (codes[np.minimum(position, codes.size - 1)] == as_float[~missing])
            vector[:known] = np.bincount(order[position[hit]], minlength=known)
            misses = int((~hit).sum())
            vector[known + 1] = int(missing.sum())
        else:
            misses = 0
            for value in values:
                key = category_key(value)
                if key is None:
                    vector[known + 1] += 1
                elif (slot := self.index.get(key)) is not None:
                    vector[slot] += 1
                else:
                    misses += 1
        if self.other is not None:  # rare reference categories were folded: unseen ones can't be told apart
            vector[self.other] += misses
        else:
            vector[known] += misses


def _numeric_codes(categories: list[str]) -> tuple[FloatArray, npt.NDArray[np.int64]] | None:
    """Sorted numeric values of the categories (and their positions) when every category is a number."""
    try:
        values = np.asarray([float(c) for c in categories if c != OTHER_CATEGORY], dtype=np.float64)
    except ValueError:
        return None
    positions = np.asarray([i for i, c in enumerate(categories) if c != OTHER_CATEGORY], dtype=np.int64)
    order = np.argsort(values, kind="stable")
    return values[order], positions[order]


class _Ring:
    """One window: a ring of time buckets and the running sum of those inside the window."""

    def __init__(self, width: int, bucket_seconds: float, span: int) -> None:
        self.bucket_seconds = bucket_seconds
        self.span = span  # buckets per window
        self.slots = span + 1
        self.counts = np.zeros((self.slots, width), dtype=np.float64)
        self.bucket_ids = np.full(self.slots, -1, dtype=np.int64)
        self.running = np.zeros(width, dtype=np.float64)
        self.low = -1  # buckets with id > low are in the running sum
        self.newest = -1

    def add(self, timestamp: float, vector: FloatArray) -> bool:
        bucket = int(timestamp // self.bucket_seconds)
        if bucket <= self.newest - self.slots:
            return False
        slot = bucket % self.slots
        if self.bucket_ids[slot] != bucket:
            if self.bucket_ids[slot] > self.low:
                self.running -= self.counts[slot]
            self.counts[slot] = 0.0
            self.bucket_ids[slot] = bucket
        self.counts[slot] += vector
        if bucket > self.low:
            self.running += vector
        self.newest = max(self.newest, bucket)
        return True

    def window_sum(self, now: float) -> FloatArray:
        target = int(now // self.bucket_seconds) - self.span
        if target > self.low:
            if target - self.low >= self.slots:
                live = self.bucket_ids > target
                self.running[:] = self.counts[live].sum(axis=0) if live.any() else 0.0
            else:
                for bucket in range(self.low + 1, target + 1):
                    slot = bucket % self.slots
                    if self.bucket_ids[slot] == bucket:
                        self.running -= self.counts[slot]
            self.low = target
        return self.running.copy()

    def resum(self) -> None:
        live = self.bucket_ids > self.low
        self.running[:] = self.counts[live].sum(axis=0) if live.any() else 0.0


class BucketRing:
    """Count vectors in time buckets for several sliding windows at once.

    Each window keeps its own ring of at most ``max_buckets`` buckets: the bucket length is
    ``max(bucket_seconds, window / max_buckets)``, so a 1h window next to a 5m one costs no more
    memory than the 5m one, at the price of a coarser edge (one bucket) for the long window.
    Evaluating a window is one vector copy: buckets enter the running sum when written and leave it
    when they fall out of the window.
    """

    def __init__(self, width: int, bucket_seconds: float, windows: Mapping[str, float],
                 max_buckets: int = MAX_BUCKETS_PER_WINDOW) -> None:
        if bucket_seconds <= 0 or not windows:
            raise ValueError("need a positive bucket length and at least one window")
        self.width = width
        self.bucket_seconds = bucket_seconds
        self.max_buckets = max_buckets
        self.windows = dict(windows)
        self.rings: dict[str, _Ring] = {}
        for name, seconds in self.windows.items():
            length = max(bucket_seconds, seconds / max_buckets)
            self.rings[name] = _Ring(width, length, max(1, math.ceil(seconds / length)))
        self.dropped_late = 0

    @property
    def nbytes(self) -> int:
        return sum(r.counts.nbytes + r.running.nbytes for r in self.rings.values())

    def add(self, timestamp: float, vector: FloatArray) -> bool:
        """Add a count vector at ``timestamp``; False (and counted) when it is too old for every window."""
        added = [ring.add(timestamp, vector) for ring in self.rings.values()]
        if not any(added):
            self.dropped_late += 1
        return any(added)

    def window_sum(self, name: str, now: float) -> FloatArray:
        """Sum of the buckets in window ``name`` ending at ``now`` (the bucket holding ``now`` included)."""
        return self.rings[name].window_sum(now)

    def state_dict(self) -> dict[str, npt.NDArray[Any]]:
        names = sorted(self.windows)
        state: dict[str, npt.NDArray[Any]] = {
            "width": np.asarray(self.width), "bucket_seconds": np.asarray(self.bucket_seconds),
            "max_buckets": np.asarray(self.max_buckets), "window_names": np.asarray(names),
            "window_seconds": np.asarray([self.windows[n] for n in names]),
            "dropped_late": np.asarray(self.dropped_late)}
        for index, name in enumerate(names):
            ring = self.rings[name]
            state[f"w{index}.counts"] = ring.counts
            state[f"w{index}.bucket_ids"] = ring.bucket_ids
            state[f"w{index}.scalars"] = np.asarray([ring.low, ring.newest])
        return state

    @classmethod
    def from_state(cls, state: Mapping[str, npt.NDArray[Any]]) -> BucketRing:
        names = [str(n) for n in state["window_names"]]
        windows = dict(zip(names, (float(s) for s in state["window_seconds"]), strict=True))
        ring = cls(int(state["width"]), float(state["bucket_seconds"]), windows, int(state["max_buckets"]))
        ring.dropped_late = int(state["dropped_late"])
        for index, name in enumerate(names):
            target = ring.rings[name]
            counts = state[f"w{index}.counts"]
            if counts.shape != target.counts.shape:
                raise ValueError(f"checkpoint window {name!r} has shape {counts.shape}, expected {target.counts.shape}")
            target.counts[:] = counts
            target.bucket_ids[:] = state[f"w{index}.bucket_ids"]
            target.low, target.newest = (int(v) for v in state[f"w{index}.scalars"])
            target.resum()
        return ring


class DriftWindows:
    """Sliding windows of every watched column of one model version, evaluated against its profile."""

    def __init__(self, profiles: Mapping[str, ColumnProfile], bucket_seconds: float,
                 windows: Mapping[str, float]) -> None:
        self.profiles = dict(profiles)
        self.sketches = {name: ColumnSketch(profile) for name, profile in self.profiles.items()}
        self.offsets: dict[str, tuple[int, int]] = {}
        start = 0
        for name, sketch in self.sketches.items():
            self.offsets[name] = (start, start + sketch.width)
            start += sketch.width
        self.ring = BucketRing(start, bucket_seconds, windows)

    @property
    def windows(self) -> list[str]:
        return list(self.ring.windows)

    def add(self, timestamp: float, columns: Mapping[str, npt.ArrayLike]) -> bool:
        """Add a batch of rows that share the bucket of ``timestamp`` (absent columns count nothing)."""
        vector = np.zeros(self.ring.width, dtype=np.float64)
        for name, (start, end) in self.offsets.items():
            if name in columns:
                vector[start:end] = self.sketches[name].count(columns[name])
        return self.ring.add(timestamp, vector)

    def evaluate(self, window: str, now: float) -> dict[str, ColumnDrift]:
        total = self.ring.window_sum(window, now)
        result: dict[str, ColumnDrift] = {}
        for name, (start, end) in self.offsets.items():
            profile, vector = self.profiles[name], total[start:end]
            if isinstance(profile, NumericProfile):
                result[name] = numeric_drift(self.sketches[name].reference, vector, with_pvalue=False)
            else:
                result[name] = categorical_drift(profile, vector)
        tested = [name for name, r in result.items() if r.kind == "numeric" and r.ks_statistic is not None]
        if tested:
            pvalues = ks_pvalues([result[n].ks_statistic or 0.0 for n in tested],
                                 [result[n].rows - result[n].rows * (result[n].missing_ratio or 0.0) for n in tested],
                                 [self.profiles[n].count for n in tested])
            for name, pvalue in zip(tested, pvalues, strict=True):
                result[name] = replace(result[name], ks_pvalue=float(pvalue))
        return result

    def rows(self, window: str, now: float) -> int:
        """Rows in the window (of the first column: every spooled row carries every column)."""
        if not self.offsets:
            return 0
        name, (start, end) = next(iter(self.offsets.items()))
        sketch = self.sketches[name]
        vector = self.ring.window_sum(window, now)[start:end]
        if sketch.kind == "numeric":  # grid cells + missing
            return int(vector[sketch.psi_bins: sketch.psi_bins + sketch.cells + 1].sum())
        return int(vector[: len(sketch.categories) + 2].sum())  # categories + unseen + missing

    def state_dict(self) -> dict[str, npt.NDArray[Any]]:
        state = {f"ring.{k}": v for k, v in self.ring.state_dict().items()}
        state["columns"] = np.asarray(list(self.offsets))
        state["widths"] = np.asarray([end - start for start, end in self.offsets.values()])
        return state

    @classmethod
    def from_state(cls, profiles: Mapping[str, ColumnProfile], state: Mapping[str, npt.NDArray[Any]]) -> DriftWindows:
        ring = BucketRing.from_state({k.removeprefix("ring."): v for k, v in state.items() if k.startswith("ring.")})
        restored = cls(profiles, ring.bucket_seconds, ring.windows)
        widths = [end - start for start, end in restored.offsets.values()]
        if list(state["columns"]) != list(restored.offsets) or list(state["widths"]) != widths:
            raise ValueError("checkpoint columns do not match the profile")
        restored.ring = ring
        return restored
