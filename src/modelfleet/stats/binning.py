"""Histogram binning shared by the reference profile and the streaming drift statistics.

Bins are cut at reference quantiles. With interior edges ``e[0] < e[1] < … < e[k-2]`` a value ``v``
falls in bin ``i = #{j : e[j] <= v}``: bin 0 is ``(-inf, e[0])``, bin ``k-1`` is ``[e[k-2], +inf)``.
NaN is never binned; callers count it as missing.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Probabilities of the quantile grid stored in every numeric profile (KS and Wasserstein against the
#: reference). 501 points: at most 0.2% of the reference lies strictly between two grid values
#: (for continuous data), which bounds the KS error of the streaming computation.
QUANTILE_PROBS: FloatArray = np.linspace(0.0, 1.0, 501)


def finite(values: npt.ArrayLike) -> FloatArray:
    """The values as float64 with NaN removed (infinities are kept: they are out of range, not missing)."""
    array = np.asarray(values, dtype=np.float64).ravel()
    return array[~np.isnan(array)]


def quantile_edges(values: npt.ArrayLike, bins: int) -> FloatArray:
    """Interior bin edges at the ``1/bins … (bins-1)/bins`` quantiles, ties merged.

    A feature with few distinct values yields fewer edges (and bins); a constant feature yields none.
    """
    if bins < 2:
        raise ValueError("bins must be at least 2")
    data = finite(values)
    data = data[np.isfinite(data)]
    if data.size == 0:
        return np.empty(0, dtype=np.float64)
    probs = np.arange(1, bins) / bins
    edges = np.quantile(data, probs, method="linear")
    edges = np.unique(edges)
    # An edge at the minimum would leave bin 0 empty by construction; drop it.
    return np.asarray(edges[edges > data.min()], dtype=np.float64)


def bin_counts(values: npt.ArrayLike, edges: FloatArray) -> IntArray:
    """Counts per bin (``len(edges) + 1`` bins) of the non-NaN values."""
    data = finite(values)
    index = np.searchsorted(edges, data, side="right")
    return np.bincount(index, minlength=edges.size + 1).astype(np.int64)


def fractions(counts: npt.ArrayLike) -> FloatArray:
    """Counts normalised to sum to one (all zeros stay zeros)."""
    array = np.asarray(counts, dtype=np.float64)
    total = array.sum()
    return array / total if total > 0 else np.zeros_like(array)
