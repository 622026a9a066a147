"""Serving hosts lost mid-rollout (modelfleet.rollout.lost and Engine.analyze's ``reachable``): the rollout
pauses and rolls back on the reachable hosts, without asking Prometheus, naming the lost hosts."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_rollout_engine import T0, FakeClock
from test_rollout_gates import Scenario, make_plan

from modelfleet.rollout.decision import Phase
from modelfleet.rollout.engine import Engine
from modelfleet.rollout.lost import lost_hosts, roll_back_for_lost
from modelfleet.rollout.state import StateStore


@pytest.mark.parametrize(("planned", "reachable", "lost"), [
    (["h1", "h2", "h3"], ["h1", "h3"], ["h2"]),
    (["h1", "h2", "h3"], ["h3"], ["h1", "h2"]),
    (["h1", "h2"], ["h2", "h1"], []),
    (["h1", "h2"], ["h1", "h2", "h9"], []),  # a host added since the start is not lost
    ([], ["h1"], []),  # a plan without hosts: nothing to compare
    (["h1", "h2"], [], []),  # the caller does not say which hosts it reaches
])
def test_lost_hosts(planned: list[str], reachable: list[str], lost: list[str]) -> None:
    assert lost_hosts(planned, reachable) == lost


@pytest.fixture
def started(tmp_path: Path) -> tuple[Engine, StateStore, FakeClock]:
    clock = FakeClock()
    store = StateStore(tmp_path / "rollouts")
    engine = Engine(store, clock)
    engine.start(make_plan(hosts=("h1", "h2", "h3")))
    return engine, store, clock


def test_a_lost_host_rolls_back_without_analysis(started: tuple[Engine, StateStore, FakeClock]) -> None:
    engine, store, clock = started
    scenario = Scenario(make_plan(hosts=("h1", "h2", "h3")))
    outcome = engine.analyze("credit-risk", scenario, reachable=["h1", "h3"])
    assert scenario.calls == []  # Prometheus is not asked, no step window is waited out
    assert clock.sleeps == []
    assert outcome.changed and outcome.decision == "rollback"
    assert "serving host h2 lost mid-rollout" in outcome.reason and "at canary weight 10%" in outcome.reason
    assert "next deploy_model.yml or rollback_model.yml brings h2 in line" in outcome.reason
    assert outcome.warnings == [outcome.reason]
    state = store.load("credit-risk")
    assert state is not None and state.phase is Phase.ROLLING_BACK and state.weight == 0.0
    assert state.decisions.get("rollback") == 1
    assert state.last_reason == outcome.reason and state.last_decision_at == T0
    # The playbook then rolls back on the reachable hosts and records the end.
    finished = engine.finish("credit-risk")
    assert finished.state is not None and finished.state.phase is Phase.ROLLED_BACK


def test_every_reachable_host_analyses_as_before(started: tuple[Engine, StateStore, FakeClock]) -> None:
    engine, _, _ = started
    scenario = Scenario(make_plan(hosts=("h1", "h2", "h3")), up={"h1": 1.0, "h2": 1.0, "h3": 1.0},
                        restarts={"h1": 0.0, "h2": 0.0, "h3": 0.0})
    outcome = engine.analyze("credit-risk", scenario, reachable=["h3", "h2", "h1"])
    assert scenario.calls  # analysed in Prometheus
    assert outcome.decision == "advance", outcome.reason
    assert "lost" not in outcome.reason


def test_check_mode_changes_nothing(started: tuple[Engine, StateStore, FakeClock]) -> None:
    engine, store, _ = started
    outcome = engine.analyze("credit-risk", None, check=True, reachable=["h1"])
    assert not outcome.changed and outcome.decision == "rollback" and "hosts h2, h3 lost" in outcome.reason
    state = store.load("credit-risk")
    assert state is not None and state.phase is Phase.PROGRESSING and state.weight == 10.0


def test_a_rollout_no_longer_progressing_is_left_alone(started: tuple[Engine, StateStore, FakeClock]) -> None:
    engine, store, clock = started
    state = store.load("credit-risk")
    assert state is not None
    assert roll_back_for_lost(state, [], clock.now()) is None
    assert state.phase is Phase.PROGRESSING
    engine.abort("credit-risk", reason="by hand")
    outcome = engine.analyze("credit-risk", None, reachable=["h1"])
    assert not outcome.changed and "nothing to analyze" in outcome.reason
    aborted = store.load("credit-risk")
    assert aborted is not None and aborted.phase is Phase.ABORTED
