"""Streaming drift statistics against the exact scipy computation on the same raw data."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.spatial.distance import jensenshannon

from modelfleet.stats.binning import bin_counts
from modelfleet.stats.drift import (
    PSI_EPSILON,
    detections,
    ks_error_bound,
    ks_pvalue,
    ks_pvalues,
)
from modelfleet.stats.profile import profile_categorical, profile_numeric
from modelfleet.stats.window import DriftWindows

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _sample(kind: str, rng: np.random.Generator, size: int, shift: float, scale: float) -> np.ndarray:
    if kind == "normal":
        return rng.normal(shift, scale, size)
    if kind == "lognormal":
        return rng.lognormal(shift, 0.5 * scale, size)
    if kind == "uniform":
        return rng.uniform(shift, shift + 3 * scale, size)
    return np.concatenate([rng.normal(shift, scale, size // 2), rng.normal(shift + 4, scale, size - size // 2)])


def _window(reference: np.ndarray, current: np.ndarray, bins: int = 10):
    profile = profile_numeric(reference, bins)
    windows = DriftWindows({"x": profile}, 10.0, {"w": 60.0})
    windows.add(5.0, {"x": current})
    return profile, windows.evaluate("w", 5.0)["x"]


def _exact_psi(reference: np.ndarray, current: np.ndarray, edges: list[float]) -> float:
    e = bin_counts(reference, np.asarray(edges)) / np.isfinite(reference).sum()
    a = bin_counts(current, np.asarray(edges)) / np.isfinite(current).sum()
    e, a = np.maximum(e, PSI_EPSILON), np.maximum(a, PSI_EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


distributions = st.sampled_from(["normal", "lognormal", "uniform", "mixture"])


@SETTINGS
@given(kind=distributions, seed=st.integers(0, 2**31), shift=st.floats(-0.5, 0.5), scale=st.floats(0.7, 1.5),
       bins=st.integers(2, 20))
def test_psi_is_identical_to_the_exact_computation_on_the_same_bins(kind: str, seed: int, shift: float,
                                                                     scale: float, bins: int) -> None:
    rng = np.random.default_rng(seed)
    reference = _sample(kind, rng, 5000, 0.0, 1.0)
    current = _sample(kind, rng, 3000, shift, scale)
    profile, drift = _window(reference, current, bins)
    assert drift.psi == pytest.approx(_exact_psi(reference, current, profile.edges), abs=1e-9)


@SETTINGS
@given(kind=distributions, seed=st.integers(0, 2**31), shift=st.floats(-0.3, 0.3), scale=st.floats(0.8, 1.25))
def test_ks_statistic_within_001_of_scipy_for_windows_of_10k_rows(kind: str, seed: int, shift: float,
                                                                  scale: float) -> None:
    rng = np.random.default_rng(seed)
    reference = _sample(kind, rng, 20_000, 0.0, 1.0)
    current = _sample(kind, rng, 10_000, shift, scale)
    profile, drift = _window(reference, current)
    exact = stats.ks_2samp(reference, current)
    assert drift.ks_statistic is not None
    assert abs(drift.ks_statistic - exact.statistic) <= min(0.01, ks_error_bound(profile) + 1e-12)


def test_ks_is_exact_on_discrete_data() -> None:
    rng = np.random.default_rng(1)
    reference = rng.poisson(3, 8000).astype(float)
    current = rng.poisson(3.3, 4000).astype(float)
    _profile, drift = _window(reference, current)
    assert drift.ks_statistic == pytest.approx(stats.ks_2samp(reference, current).statistic, abs=1e-12)


def test_ks_pvalue_matches_scipy_asymptotic() -> None:
    for d, n, m in [(0.01, 10_000, 20_000), (0.02, 5_000, 5_000), (0.2, 30, 40), (0.004, 100_000, 50_000)]:
        expected = stats.kstwo.sf(d, round(n * m / (n + m)))
        assert ks_pvalue(d, n, m) == pytest.approx(expected, abs=0.002)
        assert ks_pvalues([d], [n], [m])[0] == pytest.approx(expected, abs=0.002)


def test_decisions_agree_with_exact_ks_in_99_percent_of_cases() -> None:
    """Randomised windows, half undrifted, half shifted by up to 0.3 sd (many near the alpha 0.05 threshold):
    the same drift/no-drift call as scipy's ks_2samp."""
    rng = np.random.default_rng(2024)
    agree, trials = 0, 400
    for _ in range(trials):
        kind = str(rng.choice(["normal", "lognormal", "uniform", "mixture"]))
        reference = _sample(kind, rng, 12_000, 0.0, 1.0)
        shift = 0.0 if rng.random() < 0.5 else float(rng.uniform(0, 0.3))
        current = _sample(kind, rng, 10_000, shift, 1.0)
        _profile, drift = _window(reference, current)
        exact = stats.ks_2samp(reference, current, method="asymp").pvalue
        assert drift.ks_pvalue is not None
        agree += (drift.ks_pvalue < 0.05) == (exact < 0.05)
    assert agree / trials >= 0.99


@SETTINGS
@given(seed=st.integers(0, 2**31), shift=st.floats(-1, 1))
def test_wasserstein_normed_close_to_scipy(seed: int, shift: float) -> None:
    rng = np.random.default_rng(seed)
    reference = rng.normal(0, 1, 10_000)
    current = rng.normal(shift, 1.2, 5_000)
    _profile, drift = _window(reference, current)
    exact = stats.wasserstein_distance(reference, current) / reference.std()
    assert drift.wasserstein_normed == pytest.approx(exact, rel=0.1, abs=0.01)


def test_out_of_range_and_missing_ratios() -> None:
    reference = np.linspace(0, 10, 1001)
    current = np.array([-1.0, 5.0, 11.0, np.nan, np.inf, 3.0, np.nan, 12.0])
    _profile, drift = _window(reference, current)
    assert drift.rows == 8
    assert drift.missing_ratio == pytest.approx(2 / 8)
    assert drift.out_of_range_ratio == pytest.approx(4 / 6)


@SETTINGS
@given(seed=st.integers(0, 2**31), categories=st.integers(2, 8), unseen=st.integers(0, 50))
def test_categorical_chi2_psi_js_match_scipy(seed: int, categories: int, unseen: int) -> None:
    rng = np.random.default_rng(seed)
    reference = rng.integers(0, categories, 4000).astype(float)
    current = np.concatenate([rng.integers(0, categories, 2000), np.full(unseen, 99)]).astype(float)
    profile = profile_categorical(reference)
    windows = DriftWindows({"c": profile}, 10.0, {"w": 60.0})
    windows.add(1.0, {"c": current})
    drift = windows.evaluate("w", 1.0)["c"]
    keys = [int(c) for c in profile.categories]
    ref_counts = np.array([np.sum(reference == k) for k in keys] + [0])
    cur_counts = np.array([np.sum(current == k) for k in keys] + [unseen])
    table = np.vstack([ref_counts, cur_counts])
    table = table[:, table.sum(axis=0) > 0]
    chi2, pvalue, _dof, _expected = stats.chi2_contingency(table, correction=False)
    assert drift.chi2_statistic == pytest.approx(chi2, rel=1e-9)
    assert drift.chi2_pvalue == pytest.approx(pvalue, rel=1e-6, abs=1e-12)
    assert drift.unseen_ratio == pytest.approx(unseen / current.size)
    e, a = ref_counts / ref_counts.sum(), cur_counts / cur_counts.sum()
    assert drift.js_distance == pytest.approx(jensenshannon(e, a, base=2), abs=1e-9)
    e, a = np.maximum(e, PSI_EPSILON), np.maximum(a, PSI_EPSILON)
    assert drift.psi == pytest.approx(np.sum((a - e) * np.log(a / e)), abs=1e-9)


def test_string_categories_and_codes_meet() -> None:
    profile = profile_categorical(np.array(["a", "b", "b", "c"], dtype=object))
    windows = DriftWindows({"c": profile}, 10.0, {"w": 60.0})
    windows.add(1.0, {"c": np.array(["b", b"a", "zz", None], dtype=object)})
    drift = windows.evaluate("w", 1.0)["c"]
    assert drift.rows == 4 and drift.missing_ratio == pytest.approx(0.25)
    assert drift.unseen_ratio == pytest.approx(1 / 3)


def test_sliding_window_keeps_only_its_buckets_and_memory_is_fixed() -> None:
    rng = np.random.default_rng(3)
    reference = rng.normal(0, 1, 5000)
    profile = profile_numeric(reference, 10)
    windows = DriftWindows({"x": profile}, 10.0, {"1m": 60.0, "5m": 300.0})
    footprint = windows.ring.nbytes
    batches = {}
    for second in range(0, 600, 10):
        batch = rng.normal(0.0 if second < 540 else 2.0, 1, 500)
        batches[second] = batch
        windows.add(float(second), {"x": batch})
    now = 595.0
    last_minute = np.concatenate([batches[s] for s in batches if s > now - 60 - 10 + 5])
    recent = windows.evaluate("1m", now)["x"]
    assert recent.rows == last_minute.size == 6 * 500
    assert recent.ks_statistic is not None
    assert abs(recent.ks_statistic - stats.ks_2samp(reference, last_minute).statistic) <= 0.01
    assert windows.evaluate("5m", now)["x"].rows == 30 * 500
    assert recent.psi is not None and recent.psi > windows.evaluate("5m", now)["x"].psi  # type: ignore[operator]
    assert windows.rows("1m", 10_000.0) == 0  # everything expired
    for second in range(10_000, 10_000 + 3600, 10):  # an hour more: the ring does not grow
        windows.add(float(second), {"x": rng.normal(0, 1, 100)})
    assert windows.ring.nbytes == footprint
    assert windows.rows("5m", 10_000.0 + 3595) == 30 * 100


def test_window_equals_batch_over_the_same_rows() -> None:
    rng = np.random.default_rng(4)
    reference = rng.normal(0, 1, 8000)
    profile = profile_numeric(reference, 10)
    windows = DriftWindows({"x": profile}, 1.0, {"w": 30.0})
    rows = []
    for second in range(100):
        batch = rng.normal(0.2, 1, 200)
        windows.add(float(second), {"x": batch})
        if second > 99 - 30:
            rows.append(batch)
    streaming = windows.evaluate("w", 99.5)["x"]
    once = DriftWindows({"x": profile}, 1.0, {"w": 30.0})
    once.add(99.0, {"x": np.concatenate(rows)})
    batch = once.evaluate("w", 99.5)["x"]
    assert streaming == batch


def test_late_records_beyond_the_ring_are_dropped_and_counted() -> None:
    profile = profile_numeric(np.arange(100.0), 4)
    windows = DriftWindows({"x": profile}, 10.0, {"w": 60.0})
    assert windows.add(1000.0, {"x": np.ones(3)})
    assert not windows.add(100.0, {"x": np.ones(3)})
    assert windows.ring.dropped_late == 1


def test_checkpoint_round_trip_gives_the_same_window() -> None:
    rng = np.random.default_rng(5)
    profiles = {"x": profile_numeric(rng.normal(0, 1, 3000), 10),
                "c": profile_categorical(rng.integers(0, 4, 3000).astype(float))}
    windows = DriftWindows(profiles, 10.0, {"5m": 300.0, "1h": 3600.0})
    for second in range(0, 900, 10):
        windows.add(float(second), {"x": rng.normal(0.1, 1, 50), "c": rng.integers(0, 5, 50).astype(float)})
    before = {w: windows.evaluate(w, 905.0) for w in windows.windows}
    restored = DriftWindows.from_state(profiles, windows.state_dict())
    assert {w: restored.evaluate(w, 905.0) for w in restored.windows} == before
    with pytest.raises(ValueError, match="columns"):
        DriftWindows.from_state({"x": profiles["x"]}, windows.state_dict())


def test_no_data_is_not_a_result() -> None:
    profile = profile_numeric(np.arange(10.0), 4)
    drift = DriftWindows({"x": profile}, 10.0, {"w": 60.0}).evaluate("w", 0.0)["x"]
    assert drift.rows == 0 and drift.psi is None and drift.ks_pvalue is None and drift.pvalue is None


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=30), st.floats(0.001, 0.2))
def test_multiple_testing_corrections(pvalues: list[float], alpha: float) -> None:
    named = {f"f{i}": p for i, p in enumerate(pvalues)}
    m = len(pvalues)
    assert detections(named, "bonferroni", alpha) == {n: p < alpha / m for n, p in named.items()}
    assert detections(named, "none", alpha) == {n: p < alpha for n, p in named.items()}
    adjusted = stats.false_discovery_control(np.asarray(pvalues), method="bh")
    expected = {n: bool(a <= alpha) for n, a in zip(named, adjusted, strict=True)}
    assert detections(named, "fdr", alpha) == expected


def test_untested_columns_are_never_detections() -> None:
    assert detections({"a": None, "b": 0.0001, "c": float("nan")}, "bonferroni", 0.05) == \
        {"a": False, "b": True, "c": False}
