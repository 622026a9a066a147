"""Reference data profiles: the fixed-size summaries that drift is measured against.

A profile is built once from reference data at conversion time (``profile.json`` in the artifact)
and read by the drift exporter. Numeric columns keep quantile-cut bins with their reference
fractions (for PSI), the exact reference CDF at the distinct values of a 501-point quantile grid (for
KS and Wasserstein) and moments; categorical
columns keep category frequencies (for chi-squared, PSI, JS), folding the rarest into ``__other__``.
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from modelfleet.stats.binning import QUANTILE_PROBS, bin_counts, finite, fractions, quantile_edges

OTHER_CATEGORY = "__other__"
MAX_CATEGORIES = 100
PROFILE_FORMAT: Literal[2] = 2
_HUGE = 1e150


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NumericProfile(_Frozen):
    type: Literal["numeric"] = "numeric"
    count: int = Field(ge=0, description="non-missing values")
    missing: int = Field(ge=0, description="NaN values")
    min: float | None
    max: float | None
    mean: float | None
    std: float | None
    edges: list[float] = Field(description="interior bin edges (reference quantiles)")
    fractions: list[float] = Field(description="reference fraction per bin, len(edges) + 1")
    grid: list[float] = Field(description="distinct reference quantiles at QUANTILE_PROBS, ascending "
                                          "(first = min, last = max; empty without finite data)")
    cdf: list[float] = Field(description="fraction of finite reference values <= grid[k]")
    cdf_below: list[float] = Field(description="fraction of finite reference values < grid[k]")


class CategoricalProfile(_Frozen):
    type: Literal["categorical"] = "categorical"
    count: int = Field(ge=0)
    missing: int = Field(ge=0)
    categories: list[str] = Field(description="most frequent first; OTHER_CATEGORY last if present")
    fractions: list[float]


ColumnProfile = Annotated[NumericProfile | CategoricalProfile, Field(discriminator="type")]


class DataProfile(_Frozen):
    """Profiles of every feature and every prediction column of one model version."""

    format: Literal[2] = PROFILE_FORMAT
    rows: int = Field(ge=0)
    bins: int = Field(ge=2)
    features: dict[str, ColumnProfile]
    predictions: dict[str, ColumnProfile]


def profile_numeric(values: npt.ArrayLike, bins: int) -> NumericProfile:
    """Profile of a numeric column; NaN counts as missing."""
    raw = np.asarray(values, dtype=np.float64).ravel()
    data = finite(raw)
    missing = int(raw.size - data.size)
    if data.size == 0:
        return NumericProfile(count=0, missing=missing, min=None, max=None, mean=None, std=None,
                              edges=[], fractions=[1.0], grid=[], cdf=[], cdf_below=[])
    edges = quantile_edges(data, bins)
    counts = bin_counts(data, edges)
    usable = data[np.isfinite(data)]
    if not usable.size:
        return NumericProfile(count=int(data.size), missing=missing, min=None, max=None, mean=None, std=None,
                              edges=edges.tolist(), fractions=fractions(counts).tolist(), grid=[], cdf=[],
                              cdf_below=[])
    # Values near the float64 limit overflow differences and squares: summarise them scaled down.
    scale = float(np.abs(usable).max())
    scale = scale if scale > _HUGE else 1.0
    scaled = usable / scale
    grid, cdf, cdf_below = _reference_cdf(usable, scaled, scale)
    return NumericProfile(
        count=int(data.size),
        missing=missing,
        min=float(usable.min()),
        max=float(usable.max()),
        mean=float(scaled.mean()) * scale,
        std=float(scaled.std()) * scale,
        edges=edges.tolist(),
        fractions=fractions(counts).tolist(),
        grid=grid,
        cdf=cdf,
        cdf_below=cdf_below,
    )


def _reference_cdf(usable: npt.NDArray[np.float64], scaled: npt.NDArray[np.float64],
                   scale: float) -> tuple[list[float], list[float], list[float]]:
    """Distinct quantile-grid values and the exact reference CDF just below and at each of them."""
    ordered = np.sort(usable)
    grid = np.unique(np.quantile(scaled, QUANTILE_PROBS) * scale)
    # Interpolated quantiles can fall between data points; keep min and max exact.
    grid[0], grid[-1] = ordered[0], ordered[-1]
    grid = np.unique(grid)
    n = ordered.size
    return (grid.tolist(), (np.searchsorted(ordered, grid, side="right") / n).tolist(),
            (np.searchsorted(ordered, grid, side="left") / n).tolist())


def category_key(value: object) -> str | None:
    """The text form under which a category is counted; ``None`` for a missing value.

    Integral floats are written without a fraction (``2.0`` → ``"2"``) so that codes sent as FP32 and
    codes sent as INT64 or as strings meet in the same category.
    """
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, float | np.floating):
        if np.isnan(value):
            return None
        if float(value).is_integer():
            return str(int(value))
        # Shortest text that round-trips in the value's own precision: float32(0.1) and 0.1 meet.
        return np.format_float_positional(value, trim="-")
    if isinstance(value, np.generic):
        return str(value.item())
    return str(value)


def category_keys(values: npt.ArrayLike) -> list[str | None]:
    """:func:`category_key` of every value, vectorised for integer and integral-float arrays."""
    array = np.asarray(values).ravel()
    if array.dtype.kind == "b":
        return list(array.astype(str).tolist())
    if array.dtype.kind in "iu":
        return list(array.astype(np.int64).astype(str).tolist())
    if (array.dtype.kind == "f" and np.isfinite(array).all() and (np.abs(array) < 2**53).all()
            and (array == np.round(array)).all()):
        return list(array.astype(np.int64).astype(str).tolist())
    return [category_key(v) for v in array]


def profile_categorical(values: npt.ArrayLike, max_categories: int = MAX_CATEGORIES) -> CategoricalProfile:
    """Profile of a categorical column (codes or strings); ``None``/NaN count as missing."""
    keys = [category_key(v) for v in np.asarray(values, dtype=object).ravel()]
    present = [k for k in keys if k is not None]
    counter = Counter(present)
    ranked = sorted(counter.items(), key=lambda item: (-item[1], item[0]))
    kept = ranked[:max_categories]
    other = sum(count for _name, count in ranked[max_categories:])
    categories = [name for name, _count in kept]
    counts = [count for _name, count in kept]
    if other:
        categories.append(OTHER_CATEGORY)
        counts.append(other)
    return CategoricalProfile(count=len(present), missing=len(keys) - len(present), categories=categories,
                              fractions=fractions(counts).tolist() if counts else [])
