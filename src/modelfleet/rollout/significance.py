"""Confidence bounds behind the canary gates: from counts and histogram buckets, never from point estimates.

Everything here is exact and distribution-free:

- **A proportion** (errors / requests): Clopper–Pearson bounds, the binomial test inverted. A bound at
  error level ``a`` is wrong with probability at most ``a``, for any sample size.
- **A quantile of a latency histogram**: order-statistic bounds. The k-th fastest of ``n`` requests is
  below the ``q``-quantile exactly when at least ``k`` requests are, which has probability
  ``P(Binomial(n, q) >= k)``; so the k-th request with ``P(Binomial(n, q) >= k) <= a`` is an upper bound
  and the k-th with ``P(Binomial(n, q) <= k - 1) <= a`` a lower bound, each wrong with probability at
  most ``a``. A histogram knows the k-th request only up to its bucket: an upper bound is that bucket's
  upper edge, a lower bound its lower edge. No interpolation inside a bucket, and with too few requests
  there is no bound at all (an upper bound of +Inf, a lower one of 0): a p99 of 37 requests decides nothing.

The error budget that says which ``a`` each gate uses at each look is in :mod:`modelfleet.rollout.traffic_gates`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from scipy import special


def proportion_lower(events: int, trials: int, error: float) -> float:
    """Clopper–Pearson lower bound of a proportion, wrong with probability <= ``error``; 0 without events."""
    if trials <= 0 or events <= 0:
        return 0.0
    events = min(events, trials)
    return float(special.betaincinv(events, trials - events + 1, error))


def proportion_upper(events: int, trials: int, error: float) -> float:
    """Clopper–Pearson upper bound of a proportion, wrong with probability <= ``error``; 1 without trials."""
    if trials <= 0 or events >= trials:
        return 1.0
    events = max(events, 0)
    return float(special.betaincinv(events + 1, trials - events, 1.0 - error))


def _at_least(k: int, n: int, q: float) -> float:
    """P(Binomial(n, q) >= k)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    return float(special.bdtrc(k - 1, n, q))


def _at_most(k: int, n: int, q: float) -> float:
    """P(Binomial(n, q) <= k)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    return float(special.bdtr(k, n, q))


def upper_order(n: int, q: float, error: float) -> int | None:
    """The smallest k (1-based) whose k-th smallest of ``n`` is >= the q-quantile with probability
    >= 1 - ``error``; ``None`` when even the largest is not (too few requests)."""
    if n <= 0 or _at_least(n, n, q) > error:
        return None
    low, high = 1, n  # _at_least(high) <= error; find the smallest such k
    while low < high:
        middle = (low + high) // 2
        if _at_least(middle, n, q) <= error:
            high = middle
        else:
            low = middle + 1
    return low


def lower_order(n: int, q: float, error: float) -> int | None:
    """The largest k (1-based) whose k-th smallest of ``n`` is <= the q-quantile with probability
    >= 1 - ``error``; ``None`` when even the smallest is not."""
    if n <= 0 or _at_most(0, n, q) > error:
        return None
    low, high = 1, n  # _at_most(low - 1) <= error; find the largest such k
    while low < high:
        middle = (low + high + 1) // 2
        if _at_most(middle - 1, n, q) <= error:
            low = middle
        else:
            high = middle - 1
    return low


@dataclass(frozen=True)
class Histogram:
    """Request counts of one step window by latency bucket: cumulative counts at each finite upper bound
    (``le``, seconds, ascending), and ``total`` (the ``+Inf`` bucket: every request)."""

    bounds: tuple[float, ...]
    cumulative: tuple[int, ...]
    total: int

    @classmethod
    def from_buckets(cls, buckets: Iterable[tuple[float, float]]) -> Histogram:
        """From ``(le, count)`` pairs as ``sum by (le) (increase(..._bucket[w]))`` answers them.

        ``increase`` extrapolates to the window's edges, so counts are rounded to whole requests and
        made monotonic (a bucket never holds fewer requests than the one below it).
        """
        pairs = sorted((float(le), float(count)) for le, count in buckets)
        if not pairs or not math.isinf(pairs[-1][0]):
            raise ValueError("a histogram needs its +Inf bucket")
        if any(not math.isfinite(count) or count < 0 for _le, count in pairs):
            raise ValueError("bucket counts must be finite and >= 0")
        running = 0
        counts = []
        for _le, count in pairs:
            running = max(running, round(count))
            counts.append(running)
        return cls(tuple(le for le, _count in pairs[:-1]), tuple(counts[:-1]), counts[-1])

    def bucket_of(self, k: int) -> tuple[float, float]:
        """(lower edge, upper edge] of the bucket holding the k-th smallest request (1-based)."""
        lower = 0.0
        for bound, count in zip(self.bounds, self.cumulative, strict=True):
            if count >= k:
                return lower, bound
            lower = bound
        return lower, math.inf

    def edge_at_or_above(self, value: float) -> float:
        """The smallest bucket bound >= ``value`` (+Inf past the last): ``value`` at this histogram's resolution."""
        return next((bound for bound in self.bounds if bound >= value * (1 - 1e-9)), math.inf)


@dataclass(frozen=True)
class QuantileBounds:
    """Where a quantile of a histogram lies: ``low`` < quantile <= ``high`` (seconds), each bound wrong with
    at most its stated probability; ``estimate`` is the bucket holding the sample quantile (for the record)."""

    q: float
    n: int
    low: float
    high: float
    estimate: tuple[float, float]


def quantile_bounds(histogram: Histogram, q: float, lower_error: float, upper_error: float) -> QuantileBounds:
    """Bounds of the ``q``-quantile of the latency ``histogram`` came from, bucket edges only."""
    n = histogram.total
    k_low = lower_order(n, q, lower_error)
    k_high = upper_order(n, q, upper_error)
    low = histogram.bucket_of(k_low)[0] if k_low is not None else 0.0
    high = histogram.bucket_of(k_high)[1] if k_high is not None else math.inf
    estimate = histogram.bucket_of(max(1, math.ceil(q * n))) if n > 0 else (0.0, math.inf)
    return QuantileBounds(q, n, low, high, estimate)


def format_seconds_ms(seconds: float) -> str:
    """A latency in ms as people write it (``2.5 ms``, ``+Inf ms``)."""
    if math.isinf(seconds):
        return "+Inf ms"
    return f"{seconds * 1000:.4g} ms"


def format_bucket_ms(bucket: tuple[float, float]) -> str:
    """``(0.5, 1] ms``: the bucket that bounds an estimate."""
    low, high = bucket
    upper = "+Inf" if math.isinf(high) else f"{high * 1000:.4g}"
    return f"({low * 1000:.4g}, {upper}] ms"
