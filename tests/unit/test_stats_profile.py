"""Unit tests of modelfleet.stats: quantile binning, column profiles and the spec-driven column mapping."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelfleet.spec import ModelSpec, parse_spec
from modelfleet.stats.binning import QUANTILE_PROBS, bin_counts, fractions, quantile_edges
from modelfleet.stats.columns import build_profile, feature_columns, prediction_columns
from modelfleet.stats.profile import (
    OTHER_CATEGORY,
    CategoricalProfile,
    DataProfile,
    NumericProfile,
    category_key,
    category_keys,
    profile_categorical,
    profile_numeric,
)

# Bounded so that differences of values cannot overflow (see test_extreme_values_survive_json).
reals = st.floats(min_value=-1e100, max_value=1e100, allow_nan=False)
values_with_gaps = st.lists(st.one_of(reals, reals, reals, st.just(math.nan), st.sampled_from([math.inf, -math.inf])),
                            max_size=80)
bin_numbers = st.integers(min_value=2, max_value=20)
quick = settings(deadline=None, max_examples=150)


def usable(values: list[float]) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    return array[np.isfinite(array)]


# --- binning -------------------------------------------------------------------------------------------------


@quick
@given(values_with_gaps, bin_numbers)
def test_quantile_edges_are_increasing_interior_and_few(values: list[float], bins: int) -> None:
    edges = quantile_edges(values, bins)
    data = usable(values)
    assert len(edges) <= bins - 1
    assert np.all(np.diff(edges) > 0)
    if data.size:
        assert np.all(edges > data.min()) and np.all(edges <= data.max())
    else:
        assert len(edges) == 0


@quick
@given(reals, st.integers(min_value=1, max_value=50), bin_numbers)
def test_constant_data_has_no_edges(value: float, n: int, bins: int) -> None:
    assert quantile_edges([value] * n + [math.nan], bins).size == 0


@quick
@given(st.lists(reals, max_size=60), st.integers(min_value=0, max_value=10), bin_numbers)
def test_nan_does_not_move_edges(values: list[float], nans: int, bins: int) -> None:
    np.testing.assert_array_equal(quantile_edges(values + [math.nan] * nans, bins), quantile_edges(values, bins))


def test_quantile_edges_need_two_bins() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        quantile_edges([1.0, 2.0], 1)


@quick
@given(values_with_gaps, st.lists(reals, max_size=8, unique=True).map(sorted))
def test_bin_counts_follow_the_documented_convention(values: list[float], edges: list[float]) -> None:
    counts = bin_counts(values, np.asarray(edges, dtype=np.float64))
    expected = np.zeros(len(edges) + 1, dtype=np.int64)
    for v in values:
        if not math.isnan(v):
            expected[sum(1 for e in edges if e <= v)] += 1
    np.testing.assert_array_equal(counts, expected)
    assert counts.sum() == sum(1 for v in values if not math.isnan(v))


@given(st.lists(st.integers(min_value=0, max_value=10**6), max_size=20))
def test_fractions_sum_to_one_or_stay_zero(counts: list[int]) -> None:
    result = fractions(counts)
    assert len(result) == len(counts)
    if sum(counts):
        assert math.isclose(result.sum(), 1.0)
        np.testing.assert_allclose(result * sum(counts), counts)
    else:
        assert not result.any()


@quick
@given(st.integers(min_value=2, max_value=20).flatmap(
    lambda bins: st.tuples(st.just(bins), st.lists(st.integers(-10**6, 10**6), unique=True,
                                                   min_size=3 * bins, max_size=400))))
def test_reference_bins_of_distinct_values_are_near_equal(case: tuple[int, list[int]]) -> None:
    bins, values = case
    n = len(values)
    profile = profile_numeric(np.asarray(values, dtype=np.float64) / 7.0, bins)
    assert len(profile.edges) == bins - 1
    # Exactly, quantile cuts of n distinct values give each bin within one value of n/bins; allow one
    # more value for the rounding of a cut that falls exactly on a sample.
    for fraction in profile.fractions:
        assert abs(fraction - 1 / bins) <= 2 / n


# --- numeric profiles -------------------------------------------------------------------------------------------


@quick
@given(values_with_gaps, bin_numbers)
def test_profile_numeric_counts_and_ranges(values: list[float], bins: int) -> None:
    profile = profile_numeric(values, bins)
    data = usable(values)
    assert profile.missing == sum(1 for v in values if math.isnan(v))
    assert profile.count == len(values) - profile.missing
    assert len(profile.fractions) == len(profile.edges) + 1
    if data.size:
        assert profile.min == data.min() and profile.max == data.max()
        assert 1 <= len(profile.grid) <= len(QUANTILE_PROBS)
        assert profile.grid[0] == data.min() and profile.grid[-1] == data.max()
        assert all(a < b for a, b in itertools.pairwise(profile.grid))
        ordered = np.sort(data)
        # The stored CDF is exact at every grid value, just below it and at it.
        assert profile.cdf == (np.searchsorted(ordered, profile.grid, side="right") / data.size).tolist()
        assert profile.cdf_below == (np.searchsorted(ordered, profile.grid, side="left") / data.size).tolist()
        assert profile.cdf[-1] == 1.0 and profile.cdf_below[0] == 0.0
        assert profile.mean is not None and math.isfinite(profile.mean)
    else:
        assert profile.min is profile.max is profile.mean is profile.std is None
        assert profile.grid == profile.cdf == profile.cdf_below == []
    if profile.count:
        assert math.isclose(sum(profile.fractions), 1.0)


def test_infinities_are_counted_in_the_outer_bins_but_not_in_the_range() -> None:
    profile = profile_numeric([-math.inf, 1.0, 2.0, 3.0, 4.0, math.inf, math.nan], bins=2)
    assert (profile.count, profile.missing) == (6, 1)
    assert (profile.min, profile.max, profile.mean) == (1.0, 4.0, 2.5)
    assert profile.edges == [2.5]
    assert profile.fractions == [0.5, 0.5]


def test_empty_and_all_nan_columns() -> None:
    empty = profile_numeric([], bins=10)
    assert (empty.count, empty.missing, empty.edges, empty.grid, empty.min) == (0, 0, [], [], None)
    nans = profile_numeric([math.nan] * 3, bins=10)
    assert (nans.count, nans.missing, nans.mean) == (0, 3, None)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_extreme_values_survive_json() -> None:
    profile = DataProfile(rows=3, bins=4, predictions={},
                          features={"a": profile_numeric([-1e308, 1e308, 1e308], bins=4)})
    assert DataProfile.model_validate_json(profile.model_dump_json()) == profile


# --- categorical profiles -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [2, 2.0, np.float32(2), np.float64(2), np.int64(2), np.int8(2), "2", b"2",
                                   np.str_("2"), np.bytes_(b"2")])
def test_category_key_meets_codes_of_every_type(value: object) -> None:
    assert category_key(value) == "2"


@pytest.mark.parametrize("value", [None, math.nan, np.float32("nan"), np.float64("nan")])
def test_category_key_missing(value: object) -> None:
    assert category_key(value) is None


def test_category_key_keeps_fractions_apart() -> None:
    assert category_key(2.5) == "2.5" != category_key(2.0)


categories = st.lists(st.sampled_from(["a", "b", "c", "d", "e", "f", "g"]), max_size=60)


@given(categories, st.integers(min_value=1, max_value=8), st.integers(min_value=0, max_value=5))
def test_profile_categorical_ranks_and_folds(values: list[str], max_categories: int, missing: int) -> None:
    profile = profile_categorical(np.asarray([*values, *[None] * missing], dtype=object), max_categories=max_categories)
    ranked = sorted(Counter(values).items(), key=lambda item: (-item[1], item[0]))
    kept, rest = ranked[:max_categories], ranked[max_categories:]
    assert (profile.count, profile.missing) == (len(values), missing)
    expected = [name for name, _ in kept] + ([OTHER_CATEGORY] if rest else [])
    assert profile.categories == expected
    expected_counts = [c for _, c in kept] + ([sum(c for _, c in rest)] if rest else [])
    np.testing.assert_allclose(profile.fractions, [c / len(values) for c in expected_counts])


def test_profile_categorical_ties_break_by_name_and_codes_merge() -> None:
    profile = profile_categorical(np.asarray([2.0, "2", b"2", "b", "a", "b", "a", math.nan], dtype=object),
                                  max_categories=2)
    assert profile.categories == ["2", "a", OTHER_CATEGORY]
    assert profile.fractions == pytest.approx([3 / 7, 2 / 7, 2 / 7])
    assert (profile.count, profile.missing) == (7, 1)


@quick
@given(values_with_gaps, categories, bin_numbers)
def test_data_profile_json_round_trip(numbers: list[float], labels: list[str], bins: int) -> None:
    profile = DataProfile(rows=len(numbers), bins=bins, features={"x": profile_numeric(numbers, bins)},
                          predictions={"label": profile_categorical(labels)})
    restored = DataProfile.model_validate_json(profile.model_dump_json())
    assert restored == profile
    assert isinstance(restored.features["x"], NumericProfile)
    assert isinstance(restored.predictions["label"], CategoricalProfile)


# --- columns ------------------------------------------------------------------------------------------


def make_spec(**fields: Any) -> ModelSpec:
    data: dict[str, Any] = {"name": "m", "version": "1", "source": {"framework": "onnx", "path": "m.onnx"},
                            "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}],
                            "task": {"type": "regression"}}
    data.update(fields)
    return parse_spec(data, Path("/base"))


def tensor(name: str, datatype: str, shape: list[int]) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape}


PROBS = np.asarray([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6]], dtype=np.float32)


def floats(values: Any) -> Any:
    return np.asarray(values, dtype=np.float64)


@pytest.mark.parametrize("named", [True, False])
def test_classifier_with_label_and_probabilities(named: bool) -> None:
    task = {"type": "classification", "labels": [0, 1], "output": "label"}
    spec = make_spec(outputs=[tensor("label", "INT64", [-1]), tensor("probabilities", "FP32", [-1, 2])],
                     task={**task, "probabilities": "probabilities"} if named else task)
    label = np.asarray([0, 1, 1], dtype=np.int64)
    columns = prediction_columns(spec, ["label", "probabilities"], [label, PROBS])
    assert list(columns) == ["label", "score[0]", "score[1]"]
    assert columns["label"].kind == "categorical"
    np.testing.assert_array_equal(columns["label"].values, label)
    assert columns["score[1]"].kind == "numeric" and columns["score[1]"].values.dtype == np.float64
    np.testing.assert_allclose(floats(columns["score[1]"].values), floats(PROBS[:, 1]))


def test_classifier_with_only_scores_predicts_the_argmax_label() -> None:
    spec = make_spec(outputs=[tensor("probabilities", "FP32", [-1, 2])],
                     task={"type": "classification", "labels": ["no", "yes"]})
    columns = prediction_columns(spec, ["probabilities"], [PROBS])
    assert list(columns) == ["label", "score[no]", "score[yes]"]
    assert list(columns["label"].values) == ["no", "yes", "yes"]
    np.testing.assert_allclose(floats(columns["score[no]"].values), floats(PROBS[:, 0]))


@pytest.mark.parametrize("shape", [(4,), (4, 1)])
def test_regression_with_one_column(shape: tuple[int, ...]) -> None:
    spec = make_spec(outputs=[tensor("y", "FP32", [-1, 1])])
    y = np.arange(4, dtype=np.float32).reshape(shape)
    columns = prediction_columns(spec, ["y"], [y])
    assert list(columns) == ["y"] and columns["y"].kind == "numeric"
    np.testing.assert_array_equal(columns["y"].values, [0.0, 1.0, 2.0, 3.0])


def test_regression_with_two_columns() -> None:
    spec = make_spec(outputs=[tensor("y", "FP32", [-1, 2])])
    y = np.asarray([[1.0, 10.0], [2.0, 20.0]], dtype=np.float32)
    columns = prediction_columns(spec, ["y"], [y])
    assert list(columns) == ["y[0]", "y[1]"]
    np.testing.assert_array_equal(columns["y[1]"].values, [10.0, 20.0])


def test_missing_task_output_is_a_clear_error() -> None:
    spec = make_spec(outputs=[tensor("y", "FP32", [-1])], task={"type": "regression", "output": "y"})
    with pytest.raises(KeyError, match=r"task\.output 'y' is not among the model outputs"):
        prediction_columns(spec, ["z"], [np.zeros(2)])


TWO_INPUTS = [tensor("x", "FP32", [-1, 3]), tensor("c", "BYTES", [-1])]
FEATURES = [{"name": "a", "type": "numeric"}, {"name": "region", "type": "categorical", "input": "c"},
            {"name": "b", "type": "numeric", "column": 2}]
X = np.asarray([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=np.float32)
C = np.asarray([b"north", b"south"])


def test_feature_columns_read_the_mapped_columns() -> None:
    spec = make_spec(inputs=TWO_INPUTS, features=FEATURES)
    columns = feature_columns(spec, {"x": X, "c": C})
    assert list(columns) == ["a", "region", "b"]
    np.testing.assert_array_equal(columns["a"].values, [1.0, 4.0])
    np.testing.assert_array_equal(columns["b"].values, [3.0, 6.0])
    assert columns["region"].kind == "categorical" and list(columns["region"].values) == [b"north", b"south"]


def test_feature_columns_name_a_missing_input() -> None:
    spec = make_spec(inputs=TWO_INPUTS, features=FEATURES)
    with pytest.raises(KeyError, match="feature 'region' reads input 'c', which is absent"):
        feature_columns(spec, {"x": X})


def test_feature_columns_name_a_short_input() -> None:
    spec = make_spec(inputs=TWO_INPUTS, features=FEATURES)
    with pytest.raises(IndexError, match="feature 'b' reads column 2 of 'x', which has 2 columns"):
        feature_columns(spec, {"x": X[:, :2], "c": C})


def test_build_profile_end_to_end() -> None:
    spec = make_spec(inputs=[tensor("x", "FP32", [-1, 2])],
                     features=[{"name": "age", "type": "numeric"}, {"name": "region", "type": "categorical"}],
                     outputs=[tensor("probabilities", "FP32", [-1, 2])],
                     task={"type": "classification", "labels": [0, 1]}, drift={"bins": 4})
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.normal(40, 10, 200), rng.integers(0, 3, 200)]).astype(np.float32)
    x[0, 0] = np.nan
    p1 = rng.uniform(size=200)
    probs = np.column_stack([1 - p1, p1]).astype(np.float32)
    profile = build_profile(spec, {"x": x}, ["probabilities"], [probs])
    assert (profile.rows, profile.bins) == (200, 4)
    age = profile.features["age"]
    assert isinstance(age, NumericProfile) and (age.count, age.missing, len(age.edges)) == (199, 1, 3)
    region = profile.features["region"]
    assert isinstance(region, CategoricalProfile) and sorted(region.categories) == ["0", "1", "2"]
    assert set(profile.predictions) == {"label", "score[0]", "score[1]"}
    label = profile.predictions["label"]
    assert isinstance(label, CategoricalProfile)
    assert dict(zip(label.categories, label.fractions, strict=True))["1"] == pytest.approx(np.mean(p1 > 0.5))
    assert DataProfile.model_validate_json(profile.model_dump_json()) == profile


@quick
@given(st.one_of(
    st.lists(st.integers(-10**12, 10**12), max_size=20).map(lambda v: np.asarray(v, dtype=np.int64)),
    st.lists(st.floats(allow_infinity=False, width=32), max_size=20).map(lambda v: np.asarray(v, dtype=np.float32)),
    st.lists(st.sampled_from([0.0, 1.0, 2.0, 3.5, math.nan]), max_size=20).map(np.asarray),
    st.lists(st.booleans(), max_size=20).map(np.asarray),
    st.lists(st.sampled_from(["a", "b", None, 3, 2.0]), max_size=20).map(lambda v: np.asarray(v, dtype=object)),
))
def test_vectorised_category_keys_equal_the_scalar_ones(values: np.ndarray) -> None:
    assert category_keys(values) == [category_key(v) for v in values]
