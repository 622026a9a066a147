"""Unit tests of modelfleet.durations: the one duration grammar of the spec, the rollout and the commands."""

from __future__ import annotations

import argparse
import math
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelfleet.alerting.command import duration, positive_duration
from modelfleet.durations import UNITS, duration_argument, parse_duration
from modelfleet.rollout.plan import RolloutError, parse_wait

positive = st.integers(min_value=1, max_value=10**9)
unit = st.sampled_from(sorted(UNITS))


@given(positive)
def test_duration_units(n: int) -> None:
    assert parse_duration(f"{n}s") == n == parse_duration(str(n))
    assert parse_duration(f" {n}m ") == 60 * n
    assert parse_duration(f"{n}h") == 3600 * n
    assert parse_duration(f"{n}d") == 86400 * n
    assert parse_duration(f"{n}ms") == pytest.approx(n / 1000)
    assert parse_duration(n) == n and parse_duration(n / 4) == n / 4


@given(st.integers(min_value=1, max_value=10**6), st.integers(min_value=0, max_value=99), unit)
def test_fractional_duration(whole: int, hundredths: int, name: str) -> None:
    expected = UNITS[name] * (whole + hundredths / 100)
    assert parse_duration(f"{whole}.{hundredths:02d}{name}") == pytest.approx(expected)


@given(st.one_of(st.text(alphabet=string.ascii_letters + " -_:", max_size=12),
                 st.integers(min_value=1).map(lambda n: f"{n} parsecs"),
                 st.integers(min_value=1).map(lambda n: f"-{n}s"),
                 st.integers(min_value=1).map(lambda n: f"{n}w"),
                 st.sampled_from(["1e3", ".5s", "1.s", "inf", "nan", "5 m"])),
       st.booleans())
def test_garbage_is_not_a_duration(text: str, allow_zero: bool) -> None:
    with pytest.raises(ValueError, match=r"^'.*' is not a duration like 250ms, 60s, 5m, 1h or 1d$"):
        parse_duration(text, allow_zero=allow_zero)


@pytest.mark.parametrize("value", [True, None, [1], b"1s"])
def test_other_types_are_not_durations(value: object) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(value)  # type: ignore[arg-type]


@given(st.sampled_from(["0", "0s", "0.0m", "00ms", " 0d ", 0, 0.0]))
def test_zero_only_where_allowed(value: str | float) -> None:
    with pytest.raises(ValueError, match=r"is not a positive duration$"):
        parse_duration(value)
    assert parse_duration(value, allow_zero=True) == 0.0


@given(st.one_of(st.floats(max_value=-1e-9), st.sampled_from([math.inf, -math.inf, math.nan])), st.booleans())
def test_negative_and_non_finite_numbers_are_refused(value: float, allow_zero: bool) -> None:
    with pytest.raises(ValueError, match=r"is not a (positive duration|duration >= 0)$"):
        parse_duration(value, allow_zero=allow_zero)


@given(positive, unit, st.booleans())
def test_every_caller_agrees(n: int, name: str, allow_zero: bool) -> None:
    text = f"{n}{name}"
    seconds = parse_duration(text)
    assert parse_wait(text, 1.0) == seconds
    assert duration(text) == seconds == positive_duration(text)
    assert duration_argument(allow_zero=allow_zero)(text) == seconds


def test_callers_keep_their_zero_rule_and_error_type() -> None:
    assert parse_wait("0", 7.0) == 0.0 == duration("0s")
    assert parse_wait(None, 7.0) == 7.0
    for bad in ("soon", -1.0, "-1s", math.nan):
        with pytest.raises(RolloutError, match="is not a"):
            parse_wait(bad, 1.0)
    with pytest.raises(argparse.ArgumentTypeError, match="'0' is not a positive duration"):
        positive_duration("0")
    with pytest.raises(argparse.ArgumentTypeError, match="'5 minutes' is not a duration like"):
        duration("5 minutes")
