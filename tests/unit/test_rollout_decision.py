"""Decision logic and plan validation: limits, steps, promotion, rollback; invariants with hypothesis."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelfleet.rollout.decision import Phase, Result, decide
from modelfleet.rollout.gates import GateResult, Verdict
from modelfleet.rollout.plan import (
    RolloutError,
    RolloutPlan,
    parse_wait,
    rollout_settings,
    shortest_window,
    validate_steps,
    window_label,
)
from modelfleet.spec import Gates, Rollout


def plan(
    steps: tuple[float, ...] = (10.0, 50.0, 100.0), failure_limit: int = 1, inconclusive_limit: int = 2
) -> RolloutPlan:
    return RolloutPlan(
        model="m",
        stable="1",
        canary="2",
        steps=steps,
        interval_seconds=30.0,
        min_requests=100,
        failure_limit=failure_limit,
        inconclusive_limit=inconclusive_limit,
    )


def gates(*verdicts: Verdict) -> list[GateResult]:
    names = ["requests", "error_rate", "p99_latency_ms", "latency_vs_stable"]
    return [
        GateResult(names[i % len(names)], v, 1.0, 1.0, "<=", "q", f"{names[i % len(names)]} is {v}")
        for i, v in enumerate(verdicts)
    ]


PASS, FAIL, INC, NA = Verdict.PASS, Verdict.FAIL, Verdict.INCONCLUSIVE, Verdict.NOT_APPLICABLE


# -- single decisions ------------------------------------------------------------------------------------------


def test_all_pass_advances_to_the_next_weight() -> None:
    decision = decide(plan(), 0, 0, 0, gates(PASS, PASS, NA))
    assert (decision.result, decision.phase, decision.step, decision.weight) == (
        Result.ADVANCE,
        Phase.PROGRESSING,
        1,
        50.0,
    )
    assert "advancing to step 2/3 at 50%" in decision.reason and "not applicable" in decision.reason


def test_pass_on_the_last_step_promotes() -> None:
    decision = decide(plan(), 2, 0, 0, gates(PASS))
    assert (decision.result, decision.phase, decision.weight) == (Result.PROMOTE, Phase.PROMOTING, 100.0)
    assert "promotion sets" not in decision.reason


def test_promotion_sets_100_when_the_last_step_is_lower() -> None:
    decision = decide(plan(steps=(5.0, 25.0, 50.0)), 2, 0, 0, gates(PASS))
    assert decision.result is Result.PROMOTE and decision.weight == 100.0
    assert "last step was 50%; promotion sets 100%" in decision.reason


def test_a_failure_at_the_limit_rolls_back() -> None:
    decision = decide(plan(failure_limit=1), 1, 0, 1, gates(PASS, FAIL, INC))
    assert (decision.result, decision.phase, decision.weight, decision.failures) == (
        Result.ROLLBACK,
        Phase.ROLLING_BACK,
        0.0,
        1,
    )
    assert "error_rate is fail" in decision.reason and "failure_limit 1" in decision.reason
    assert decision.inconclusive == 0


def test_a_failure_below_the_limit_holds_the_step() -> None:
    decision = decide(plan(failure_limit=3), 1, 1, 0, gates(FAIL))
    assert (decision.result, decision.step, decision.weight, decision.failures) == (Result.HOLD, 1, 50.0, 2)
    assert decide(plan(failure_limit=3), 1, 2, 0, gates(FAIL)).result is Result.ROLLBACK


def test_failures_count_over_the_whole_rollout() -> None:
    p = plan(failure_limit=2)
    first = decide(p, 0, 0, 0, gates(FAIL))
    advanced = decide(p, first.step, first.failures, first.inconclusive, gates(PASS))
    assert advanced.failures == 1
    assert decide(p, advanced.step, advanced.failures, 0, gates(FAIL)).result is Result.ROLLBACK


@pytest.mark.parametrize(
    ("limit", "streak", "result"),
    [(2, 0, Result.HOLD), (2, 1, Result.HOLD), (2, 2, Result.ROLLBACK), (0, 0, Result.ROLLBACK)],
)
def test_inconclusive_holds_until_the_limit_is_exceeded(limit: int, streak: int, result: Result) -> None:
    decision = decide(plan(inconclusive_limit=limit), 0, 0, streak, gates(PASS, INC, NA))
    assert decision.result is result and decision.inconclusive == streak + 1
    assert decision.weight == (10.0 if result is Result.HOLD else 0.0)
    assert "requests" not in decision.reason or "is inconclusive" in decision.reason


def test_a_pass_resets_the_inconclusive_streak() -> None:
    assert decide(plan(), 0, 0, 2, gates(PASS)).inconclusive == 0


def test_only_not_applicable_gates_are_inconclusive() -> None:
    decision = decide(plan(), 0, 0, 0, gates(NA, NA))
    assert decision.verdict is INC and "no gate passed" in decision.reason


def test_no_gates_at_all_is_inconclusive() -> None:
    assert decide(plan(), 0, 0, 0, []).verdict is INC


def test_decide_rejects_a_step_outside_the_plan() -> None:
    with pytest.raises(ValueError, match="outside"):
        decide(plan(), 3, 0, 0, gates(PASS))


# -- a whole rollout, simulated ----------------------------------------------------------------------------


@settings(max_examples=300)
@given(
    steps=st.lists(st.floats(min_value=0.5, max_value=100), min_size=1, max_size=6, unique=True).map(sorted),
    failure_limit=st.integers(1, 3),
    inconclusive_limit=st.integers(0, 3),
    outcomes=st.lists(st.sampled_from([PASS, FAIL, INC]), min_size=1, max_size=40),
)
def test_simulated_rollouts_keep_their_invariants(
    steps: list[float], failure_limit: int, inconclusive_limit: int, outcomes: list[Verdict]
) -> None:
    p = plan(tuple(steps), failure_limit, inconclusive_limit)
    step, failures, streak = 0, 0, 0
    passes_per_step = [0] * len(steps)
    for outcome in outcomes:
        decision = decide(p, step, failures, streak, gates(outcome))
        assert decision.weight in (*steps, 0.0, 100.0)
        assert decision.failures <= failure_limit and decision.inconclusive <= inconclusive_limit + 1
        if outcome is PASS:
            passes_per_step[step] += 1
            assert decision.result in (Result.ADVANCE, Result.PROMOTE)
        else:
            assert decision.result in (Result.HOLD, Result.ROLLBACK)
        if decision.result is Result.ROLLBACK:
            assert decision.weight == 0.0
            assert decision.failures >= failure_limit or decision.inconclusive > inconclusive_limit
            break
        if decision.result is Result.PROMOTE:
            assert all(passes_per_step) and decision.weight == 100.0
            break
        if decision.result is Result.HOLD:
            assert decision.step == step and decision.weight == steps[step]
        else:
            assert decision.step == step + 1 and decision.weight == steps[step + 1]
        step, failures, streak = decision.step, decision.failures, decision.inconclusive


# -- plan validation -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "problem"),
    [
        ((), "at least one step"),
        ((0.0, 50.0), "steps[0] = 0.0 must be a weight in (0, 100]"),
        ((10.0, 101.0), "steps[1] = 101.0 must be a weight"),
        ((50.0, 25.0), "steps[1] = 25 must be greater than steps[0] = 50"),
        ((10.0, 10.0), "steps[1] = 10 must be greater than steps[0] = 10"),
        ((math.nan,), "must be a weight"),
        ((-5.0,), "must be a weight"),
    ],
)
def test_invalid_steps_are_refused(steps: tuple[float, ...], problem: str) -> None:
    assert any(problem in p for p in validate_steps(steps))
    with pytest.raises(RolloutError, match="invalid rollout plan"):
        plan(steps)


def test_plan_refuses_bad_fields() -> None:
    with pytest.raises(RolloutError) as info:
        RolloutPlan(
            model="",
            stable="1",
            canary="1",
            steps=(10.0,),
            interval_seconds=0.0,
            min_requests=-1,
            failure_limit=0,
            inconclusive_limit=-1,
        )
    text = str(info.value)
    for expected in (
        "model: must not be empty",
        "is the stable version itself",
        "interval",
        "min_requests",
        "failure_limit",
        "inconclusive_limit",
    ):
        assert expected in text


def test_plan_round_trips_through_a_dict() -> None:
    original = replace(plan(), hosts=("a", "b"), drift_window="1h")
    assert RolloutPlan.from_dict(original.to_dict()) == original
    assert original.differences(replace(original, steps=(10.0, 100.0))) == [
        "steps: [10.0, 50.0, 100.0] -> [10.0, 100.0]"
    ]
    with pytest.raises(RolloutError, match="not usable"):
        RolloutPlan.from_dict({"model": "m"})


def test_rollout_settings_merge_and_validate_like_the_spec() -> None:
    base = Rollout(steps=[5, 25, 50, 100], interval="60s", gates=Gates(error_rate=0.02, drift_psi=0.3))
    merged = rollout_settings(base, {"min_requests": 10, "gates": {"drift_psi": None}}, "5m")
    assert merged.steps == [5, 25, 50, 100] and merged.min_requests == 10 and merged.interval_seconds == 300
    assert merged.gates.error_rate == 0.02 and merged.gates.drift_psi is None
    with pytest.raises(RolloutError) as info:
        rollout_settings(base, {"steps": [50, 25], "gates": {"typo": 1}})
    text = str(info.value)
    assert "rollout.steps: steps[1] = 25 must be greater than steps[0] = 50" in text
    assert "rollout.gates.typo" in text
    assert rollout_settings(None).steps == [10.0, 50.0, 100.0]


def test_drift_window_labels_and_waits() -> None:
    assert shortest_window(["1h", "5m", 120]) == "120s"
    assert shortest_window([]) == "5m"
    assert window_label(90.0) == "90s"
    assert parse_wait(None, 7.0) == 7.0
    assert parse_wait("0", 7.0) == 0.0 and parse_wait("0s", 7.0) == 0.0 and parse_wait("2m", 7.0) == 120.0
    with pytest.raises(RolloutError):
        parse_wait("soon", 1.0)
    with pytest.raises(RolloutError):
        parse_wait(-1.0, 1.0)
