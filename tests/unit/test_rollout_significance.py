"""The statistics behind the canary gates: exact against scipy, coverage by simulation, properties by hypothesis."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from modelfleet.rollout.significance import (
    Histogram,
    format_bucket_ms,
    lower_order,
    proportion_lower,
    proportion_upper,
    quantile_bounds,
    upper_order,
)
from modelfleet.serve.metrics import REQUEST_LATENCY_BUCKETS

BOUNDS = REQUEST_LATENCY_BUCKETS


def histogram_of(latencies: np.ndarray) -> Histogram:
    counts = [(bound, float(np.sum(latencies <= bound))) for bound in BOUNDS]
    return Histogram.from_buckets([*counts, (math.inf, float(latencies.size))])


@pytest.mark.parametrize(("events", "trials"), [(0, 10), (1, 37), (3, 60), (15, 300), (60, 1000), (10, 10)])
@pytest.mark.parametrize("error", [0.05, 0.025, 1e-4])
def test_clopper_pearson_bounds_equal_scipys_exact_interval(events: int, trials: int, error: float) -> None:
    interval = stats.binomtest(events, trials).proportion_ci(confidence_level=1 - 2 * error, method="exact")
    assert proportion_lower(events, trials, error) == pytest.approx(interval.low, abs=1e-12)
    assert proportion_upper(events, trials, error) == pytest.approx(interval.high, abs=1e-12)


def test_proportion_bounds_without_trials_say_nothing() -> None:
    assert proportion_lower(0, 0, 0.05) == 0.0 and proportion_upper(0, 0, 0.05) == 1.0


@pytest.mark.parametrize("n", [1, 10, 100, 298, 299, 367, 1000, 5000])
@pytest.mark.parametrize("error", [0.05, 0.025, 3.5e-5])
def test_order_statistic_indices_match_scipys_binomial(n: int, error: float) -> None:
    q = 0.99
    ks = np.arange(1, n + 1)
    upper = [k for k in ks if stats.binom.sf(k - 1, n, q) <= error]
    lower = [k for k in ks if stats.binom.cdf(k - 1, n, q) <= error]
    assert upper_order(n, q, error) == (int(min(upper)) if upper else None)
    assert lower_order(n, q, error) == (int(max(lower)) if lower else None)


def test_a_p99_needs_about_300_requests_for_an_upper_bound_at_95_percent() -> None:
    assert upper_order(298, 0.99, 0.05) is None and upper_order(299, 0.99, 0.05) == 299


def test_quantile_bounds_cover_the_true_p99_as_often_as_promised() -> None:
    rng = np.random.default_rng(7)
    true_p99 = float(stats.lognorm(0.5, scale=0.002).ppf(0.99))
    misses_low = misses_high = 0
    trials = 2000
    for _ in range(trials):
        hist = histogram_of(rng.lognormal(np.log(0.002), 0.5, size=500))
        bounds = quantile_bounds(hist, 0.99, 0.05, 0.05)
        misses_low += bounds.low >= true_p99
        misses_high += bounds.high < true_p99
    # Each bound may be wrong at most 5% of the time (bucket edges make it rarer).
    assert misses_low / trials <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / trials)
    assert misses_high / trials <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / trials)


def test_histogram_from_prometheus_buckets_rounds_and_keeps_counts_monotonic() -> None:
    hist = Histogram.from_buckets([(0.001, 10.4), (math.inf, 30.2), (0.002, 9.9)])
    assert hist.bounds == (0.001, 0.002) and hist.cumulative == (10, 10) and hist.total == 30
    assert hist.bucket_of(10) == (0.0, 0.001) and hist.bucket_of(11) == (0.002, math.inf)
    assert hist.edge_at_or_above(0.0015) == 0.002 and hist.edge_at_or_above(1) == math.inf


@pytest.mark.parametrize("buckets", [[(0.001, 1.0)], [(0.001, math.nan), (math.inf, 2.0)], [(math.inf, -1.0)]])
def test_unusable_buckets_are_refused(buckets: list[tuple[float, float]]) -> None:
    with pytest.raises(ValueError):
        Histogram.from_buckets(buckets)


def test_every_request_in_the_inf_bucket_bounds_nothing_above() -> None:
    hist = Histogram.from_buckets([(0.01, 0.0), (math.inf, 1000.0)])
    bounds = quantile_bounds(hist, 0.99, 0.05, 0.05)
    assert bounds.low == 0.01 and bounds.high == math.inf and format_bucket_ms(bounds.estimate) == "(10, +Inf] ms"


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2000), st.integers(1, 2000), st.floats(1e-6, 0.2))
def test_proportion_bounds_are_ordered_and_contain_the_estimate(events: int, trials: int, error: float) -> None:
    events = min(events, trials)
    low, high = proportion_lower(events, trials, error), proportion_upper(events, trials, error)
    assert 0.0 <= low <= events / trials <= high <= 1.0


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 1000), st.integers(1, 1000), st.floats(1e-6, 0.2), st.floats(1e-6, 0.2))
def test_a_smaller_error_level_gives_wider_bounds(events: int, trials: int, a: float, b: float) -> None:
    events = min(events, trials)
    small, large = sorted((a, b))
    assert proportion_lower(events, trials, small) <= proportion_lower(events, trials, large) + 1e-12
    assert proportion_upper(events, trials, small) >= proportion_upper(events, trials, large) - 1e-12


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=len(BOUNDS) + 1, max_size=len(BOUNDS) + 1), st.floats(1e-5, 0.2))
def test_quantile_bounds_are_bucket_edges_around_the_sample_quantile(counts: list[int], error: float) -> None:
    cumulative = np.cumsum(counts)
    if cumulative[-1] == 0:
        return
    hist = Histogram.from_buckets([*zip(BOUNDS, cumulative[:-1].astype(float), strict=True),
                                   (math.inf, float(cumulative[-1]))])
    bounds = quantile_bounds(hist, 0.99, error, error)
    edges = {0.0, *BOUNDS, math.inf}
    assert bounds.low in edges and bounds.high in edges
    assert bounds.low <= bounds.estimate[0] and bounds.estimate[1] <= bounds.high
