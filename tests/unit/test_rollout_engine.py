"""The rollout actions over a real state directory, a fake clock and a fake Prometheus.

Covers waiting for the step window, extra waiting while inconclusive, resume after an interruption,
conflicting starts, idempotent finish/abort, check mode, and the metrics text (checked by promtool).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from test_rollout_gates import Scenario, Version, make_plan

from modelfleet.rollout.decision import Phase
from modelfleet.rollout.describe import describe_plan
from modelfleet.rollout.engine import Engine, Outcome, keep_waiting, plan_outcome
from modelfleet.rollout.gates import GateResult, Verdict
from modelfleet.rollout.plan import RolloutError, RolloutPlan
from modelfleet.rollout.state import RolloutState, StateStore

T0 = 1_700_000_000.0


class FakeClock:
    def __init__(self, start: float = T0) -> None:
        self.time = start
        self.sleeps: list[float] = []
        self.on_sleep: Callable[[FakeClock], None] | None = None

    def now(self) -> float:
        return self.time

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.time += max(0.0, seconds)
        if self.on_sleep is not None:
            self.on_sleep(self)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    return StateStore(tmp_path / "rollouts")


@pytest.fixture
def engine(store: StateStore, clock: FakeClock) -> Engine:
    return Engine(store, clock)


def _plan(**changes: object) -> RolloutPlan:
    return make_plan(**changes)


def _loaded(store: StateStore) -> RolloutState:
    state = store.load("credit-risk")
    assert state is not None
    return state


# -- start, resume, conflicts -------------------------------------------------------------------------------


def test_start_writes_the_state_and_rerun_resumes(engine: Engine, store: StateStore) -> None:
    started = engine.start(_plan())
    assert started.changed and started.decision == "start"
    result = started.result()
    assert (result["phase"], result["step"], result["weight"], result["stable_weight"]) == ("progressing", 1, 10, 90)
    assert "action" not in result
    assert _loaded(store).weight == 10.0
    again = engine.start(_plan())
    assert not again.changed and again.decision == "resume" and "step 1/3" in again.reason


def test_resume_keeps_the_started_plan_and_warns_about_differences(engine: Engine, store: StateStore) -> None:
    engine.start(_plan())
    resumed = engine.start(_plan(steps=(20.0, 100.0)))
    assert resumed.decision == "resume" and resumed.state is not None
    assert resumed.state.plan.steps == (10.0, 50.0, 100.0)
    assert any("continues with the plan it started with" in w for w in resumed.warnings)


def test_another_canary_while_one_is_in_progress_is_refused_unless_forced(engine: Engine, store: StateStore) -> None:
    engine.start(_plan())
    with pytest.raises(RolloutError, match=r"in progress: canary 3 .*with force"):
        engine.start(_plan(canary="4"))
    forced = engine.start(_plan(canary="4"), force=True)
    assert forced.changed and forced.state is not None and forced.state.plan.canary == "4"
    assert any("aborted and replaced" in w for w in forced.warnings)
    archived = list((store.directory / "archive").glob("*.json"))
    assert len(archived) == 1 and "-2-to-3-" in archived[0].name and archived[0].name.endswith("-aborted.json")
    old = json.loads(archived[0].read_text())
    assert old["phase"] == "aborted" and old["decisions"] == {"abort": 1}


def test_canary_since_resumes_a_rollout_started_after_the_canary(engine: Engine, store: StateStore,
                                                                   clock: FakeClock) -> None:
    engine.start(_plan())
    resumed = engine.start(_plan(), canary_since=T0 - 30)
    assert not resumed.changed and resumed.decision == "resume"
    assert not (store.directory / "archive").exists()


def test_canary_since_makes_an_older_rollout_history(engine: Engine, store: StateStore, clock: FakeClock) -> None:
    engine.start(_plan())
    clock.time += 600
    # The hosts started canary 3 again after the state was written (a fleet rebuilt under it): start afresh.
    again = engine.start(_plan(), canary_since=T0 + 300)
    assert again.changed and again.decision == "start" and _loaded(store).started_at == T0 + 600
    archived = list((store.directory / "archive").glob("*.json"))
    assert len(archived) == 1 and archived[0].name.endswith("-aborted.json")


def test_canary_since_makes_an_ended_rollout_history(engine: Engine, store: StateStore, clock: FakeClock) -> None:
    engine.start(_plan())
    engine.abort("credit-risk")
    # Without canary_since the rerun is a no-op; with it (the same versions deployed again) it starts afresh.
    assert engine.start(_plan()).decision == "none"
    clock.time += 60
    again = engine.start(_plan(), canary_since=0)
    assert again.changed and again.decision == "start" and _loaded(store).phase is Phase.PROGRESSING
    assert len(list((store.directory / "archive").glob("*.json"))) == 1


def test_canary_since_in_check_mode_changes_nothing(engine: Engine, store: StateStore, clock: FakeClock) -> None:
    engine.start(_plan())
    engine.abort("credit-risk")
    before = (store.directory / "credit-risk.json").read_text()
    would = engine.start(_plan(), canary_since=0, check=True)
    assert would.changed and would.decision == "start"
    assert (store.directory / "credit-risk.json").read_text() == before


def test_same_canary_from_another_stable_while_in_progress_is_refused(engine: Engine) -> None:
    engine.start(_plan())
    with pytest.raises(RolloutError, match="in progress"):
        engine.start(_plan(stable="1"))


def test_check_mode_start_writes_nothing_and_shows_the_plan(engine: Engine, store: StateStore) -> None:
    outcome = engine.start(_plan(), check=True)
    assert outcome.changed and outcome.reason.startswith("would start")
    assert outcome.queries is not None and outcome.queries[0]["name"] == "canary_up"
    assert not store.directory.exists()


def test_plan_action_describes_steps_gates_and_hosts() -> None:
    plan = _plan(steps=(5.0, 25.0, 50.0))
    outcome = plan_outcome(plan)
    described = describe_plan(plan)
    assert not outcome.changed and "5% -> 25% -> 50% -> promotion 100%" in outcome.reason
    assert described["steps"][0] == {"step": 1, "weight": 5, "stable_weight": 95}
    assert described["hosts"] == ["h1", "h2"] and described["promotion_weight"] == 100
    assert all("[60s]" in g["query"] or "window=" in g["query"] for g in described["gates"])
    judgement = described["judgement"]
    # 7 statistical gates x 3 steps x (failure_limit 1 + inconclusive_limit 2) x 4 looks share alpha 1%.
    assert (judgement["alpha"], judgement["statistical_gates"], judgement["looks_per_gate"]) == (0.01, 7, 36)
    assert judgement["fail_error_per_look"] == pytest.approx(0.01 / 252)


def test_start_when_the_canary_is_already_stable(engine: Engine) -> None:
    outcome = engine.already_stable("credit-risk", "3")
    result = outcome.result()
    assert not outcome.changed and result["phase"] == "promoted" and result["weight"] == 100


# -- analyze: the wait, the window, the decision ------------------------------------------------------------


def test_analyze_waits_the_interval_from_the_first_call_then_advances(
    engine: Engine, clock: FakeClock, store: StateStore
) -> None:
    engine.start(_plan())
    scenario = Scenario(_plan())
    outcome = engine.analyze("credit-risk", scenario)
    assert clock.sleeps == [60.0]
    assert {at for _, at in scenario.calls} == {T0 + 60}
    assert all("[60s]" in promql for promql, _ in scenario.calls if "[" in promql)
    result = outcome.result()
    assert (result["decision"], result["verdict"], result["weight"], result["step"]) == ("advance", "pass", 50, 2)
    assert result["window_seconds"] == 60 and result["waited_seconds"] == 60.0
    assert {g["name"]: g["verdict"] for g in result["gates"]}["requests"] == "pass"
    state = _loaded(store)
    assert state.window_start is None and len(state.history) == 1
    assert state.history[0]["gates"][2]["query"].startswith("sum(increase(")
    assert state.decisions == {"advance": 1} and state.verdicts == {"pass": 1}


def test_analyze_counts_the_window_from_weights_set_at(engine: Engine, clock: FakeClock) -> None:
    engine.start(_plan())
    scenario = Scenario(_plan())
    engine.analyze("credit-risk", scenario, weights_set_at=T0 - 20)
    assert clock.sleeps == [40.0]
    with pytest.raises(RolloutError, match="future"):
        engine.analyze("credit-risk", scenario, weights_set_at=clock.now() + 3600)


def test_a_hold_analyses_a_fresh_window(engine: Engine, clock: FakeClock, store: StateStore) -> None:
    engine.start(_plan(failure_limit=3))
    bad = Scenario(_plan(), canary=Version(error_ratio=0.5))
    first = engine.analyze("credit-risk", bad)
    assert first.decision == "hold" and first.result()["failures"] == 1 and first.result()["weight"] == 10
    assert any("error_rate: canary errors 500/1000 = 50%" in w for w in first.warnings)
    assert _loaded(store).window_start == T0 + 60
    clock.time += 5
    second = engine.analyze("credit-risk", Scenario(_plan()))
    assert clock.sleeps == [60.0, 55.0]
    assert second.decision == "advance" and second.result()["failures"] == 1


def test_whole_rollout_promotes_and_finish_is_idempotent(engine: Engine, store: StateStore) -> None:
    engine.start(_plan())
    decisions = [engine.analyze("credit-risk", Scenario(_plan())).decision for _ in range(3)]
    assert decisions == ["advance", "advance", "promote"]
    state = _loaded(store)
    assert state.phase is Phase.PROMOTING and state.weight == 100.0
    # The last step is at 100%: the stable got no traffic, so comparisons did not apply.
    last = {g["name"]: g["verdict"] for g in state.history[-1]["gates"]}
    assert last["latency_vs_stable"] == "not_applicable"
    assert engine.analyze("credit-risk", Scenario(_plan())).decision == "none"
    finished = engine.finish("credit-risk")
    assert finished.changed and finished.decision == "promoted" and finished.result()["phase"] == "promoted"
    assert finished.result()["stable_weight"] == 0
    again = engine.finish("credit-risk")
    assert not again.changed and again.decision == "none"
    rerun = engine.start(_plan())
    assert not rerun.changed and rerun.decision == "none" and "already ended (promoted)" in rerun.reason
    assert engine.abort("credit-risk").decision == "none"


def test_a_failure_rolls_back_and_rollback_is_idempotent(engine: Engine, store: StateStore) -> None:
    engine.start(_plan())
    outcome = engine.analyze("credit-risk", Scenario(_plan(), canary=Version(p99_ms=500.0)))
    result = outcome.result()
    assert (result["decision"], result["phase"], result["weight"], result["stable_weight"]) == (
        "rollback",
        "rolling_back",
        0,
        100,
    )
    assert "p99_latency_ms: canary p99 in (400, 500] ms (1000 requests), above 400 ms" in result["reason"]
    assert ">= limit 100 ms" in result["reason"]
    assert engine.finish("credit-risk").result()["phase"] == "rolled_back"
    assert not engine.finish("credit-risk").changed
    assert (
        'modelfleet_rollout_role{model="credit-risk",role="rejected",version="3"} 1.0'
        in engine.status("credit-risk").result()["metrics"]
    )


def test_prometheus_down_holds_then_rolls_back_after_the_inconclusive_limit(engine: Engine, clock: FakeClock) -> None:
    engine.start(_plan(inconclusive_limit=2))
    down = Scenario(_plan(), down=True)
    results = [engine.analyze("credit-risk", down, max_wait=0).result() for _ in range(3)]
    assert [r["decision"] for r in results] == ["hold", "hold", "rollback"]
    assert [r["inconclusive"] for r in results] == [1, 2, 3]
    assert "unreachable" in results[0]["reason"] and "exceed inconclusive_limit 2" in results[2]["reason"]


def test_too_few_requests_keep_waiting_up_to_max_wait(engine: Engine, clock: FakeClock) -> None:
    engine.start(_plan())
    scenario = Scenario(_plan(), canary=Version(requests=20.0))

    def traffic_arrives(now: FakeClock) -> None:
        if now.time >= T0 + 140:
            scenario.canary = Version(requests=1000.0)

    clock.on_sleep = traffic_arrives
    # At most 4 looks an analysis (the error budget counts on it): polls 120 s / 3 apart.
    outcome = engine.analyze("credit-risk", scenario, max_wait=120)
    assert clock.sleeps == [60.0, 40.0, 40.0]
    assert outcome.decision == "advance" and outcome.window_seconds == 140


def test_too_few_requests_until_max_wait_is_inconclusive(engine: Engine, clock: FakeClock) -> None:
    engine.start(_plan())
    outcome = engine.analyze("credit-risk", Scenario(_plan(), canary=Version(requests=20.0)), max_wait=20)
    assert clock.sleeps == pytest.approx([60.0, 20 / 3, 20 / 3, 20 / 3])
    assert outcome.decision == "hold" and outcome.verdict == "inconclusive" and outcome.window_seconds == 80
    assert "only 20 canary requests in 80 s" in outcome.reason


def test_a_health_failure_does_not_wait_for_more_traffic(engine: Engine, clock: FakeClock) -> None:
    engine.start(_plan())
    scenario = Scenario(_plan(), canary=Version(requests=3.0), up={"h1": 0.0, "h2": 1.0})
    outcome = engine.analyze("credit-risk", scenario, max_wait=300)
    assert clock.sleeps == [60.0] and outcome.decision == "rollback"


def _gate(name: str, verdict: Verdict) -> GateResult:
    return GateResult(name, verdict, None, None, "<=", "q", "d")


def test_keep_waiting_rules() -> None:
    inconclusive, fail, ok = Verdict.INCONCLUSIVE, Verdict.FAIL, Verdict.PASS
    assert keep_waiting([_gate("requests", inconclusive), _gate("error_rate", ok)])
    # A traffic gate fails only with significance, whatever the sample size: a failure decides at once.
    assert not keep_waiting([_gate("requests", inconclusive), _gate("error_rate", fail)])
    assert not keep_waiting([_gate("requests", ok), _gate("error_rate", fail)])
    assert not keep_waiting([_gate("requests", inconclusive), _gate("canary_restarts", fail)])
    assert not keep_waiting([_gate("requests", ok), _gate("error_rate", ok)])


# -- interruptions -------------------------------------------------------------------------------------------


def test_an_interrupted_analysis_resumes_its_window(store: StateStore, clock: FakeClock) -> None:
    Engine(store, clock).start(_plan())

    def interrupted(now: FakeClock) -> None:
        raise KeyboardInterrupt

    clock.on_sleep = interrupted
    with pytest.raises(KeyboardInterrupt):
        Engine(store, clock).analyze("credit-risk", Scenario(_plan()))
    assert _loaded(store).window_start == T0
    clock.on_sleep = None
    clock.time = T0 + 100  # the first sleep ran to its end; 40 s more pass before the re-run
    clock.sleeps.clear()
    outcome = Engine(store, clock).analyze("credit-risk", Scenario(_plan()))
    assert clock.sleeps == [0.0] and outcome.window_seconds == 100 and outcome.decision == "advance"


def test_a_stale_window_starts_afresh(store: StateStore, clock: FakeClock) -> None:
    engine = Engine(store, clock)
    engine.start(_plan())
    state = _loaded(store)
    state.window_start = T0 - 86400
    store.save(state)
    outcome = engine.analyze("credit-risk", Scenario(_plan()))
    assert any("fresh window" in w for w in outcome.warnings) and outcome.window_seconds == 60


# -- finish, abort, status, check mode --------------------------------------------------------------------


def test_finish_while_progressing_and_actions_without_state_are_errors(engine: Engine) -> None:
    with pytest.raises(RolloutError, match="run action start first"):
        engine.analyze("credit-risk", Scenario(_plan()))
    with pytest.raises(RolloutError, match="no rollout"):
        engine.finish("credit-risk")
    assert engine.status("credit-risk").result()["phase"] == "none"
    assert not engine.abort("credit-risk").changed
    engine.start(_plan())
    with pytest.raises(RolloutError, match="still progressing"):
        engine.finish("credit-risk")
    with pytest.raises(RolloutError, match="prometheus_url"):
        engine.analyze("credit-risk", None)


def test_abort_sets_weight_zero_once(engine: Engine, store: StateStore) -> None:
    engine.start(_plan())
    check = engine.abort("credit-risk", reason="pager", check=True)
    assert check.changed and check.result()["phase"] == "aborted"
    assert _loaded(store).phase is Phase.PROGRESSING
    aborted = engine.abort("credit-risk", reason="pager")
    result = aborted.result()
    assert (result["phase"], result["weight"], result["stable_weight"]) == ("aborted", 0, 100)
    assert "aborted by the operator: pager" in result["reason"]
    assert _loaded(store).decisions == {"abort": 1}
    assert not engine.abort("credit-risk").changed
    assert engine.start(_plan(canary="4")).decision == "start"
    assert len(list((store.directory / "archive").glob("*-aborted.json"))) == 1


def test_check_mode_analyze_neither_waits_nor_queries(engine: Engine, clock: FakeClock, store: StateStore) -> None:
    engine.start(_plan())
    before = (store.directory / "credit-risk.json").read_bytes()
    scenario = Scenario(_plan())
    outcome = engine.analyze("credit-risk", scenario, check=True)
    assert clock.sleeps == [] and scenario.calls == []
    assert not outcome.changed and outcome.would_wait_seconds == 60.0
    assert outcome.queries is not None and "[60s]" in outcome.queries[2]["query"]
    assert (store.directory / "credit-risk.json").read_bytes() == before


def test_check_mode_finish_writes_nothing(engine: Engine, store: StateStore) -> None:
    engine.start(_plan(steps=(100.0,)))
    engine.analyze("credit-risk", Scenario(_plan(steps=(100.0,))))
    outcome = engine.finish("credit-risk", check=True)
    assert outcome.changed and outcome.result()["phase"] == "promoted"
    assert _loaded(store).phase is Phase.PROMOTING


def test_status_returns_the_history(engine: Engine) -> None:
    engine.start(_plan())
    engine.analyze("credit-risk", Scenario(_plan()))
    outcome = engine.status("credit-risk")
    assert outcome.state is not None and len(outcome.state.history) == 1
    assert outcome.result()["rollout"]["analyses"] == 1 and "history" not in outcome.result()["rollout"]


# -- the state file -----------------------------------------------------------------------------------------


def test_state_file_is_json_and_damage_is_reported(engine: Engine, store: StateStore) -> None:
    engine.start(_plan())
    path = store.path("credit-risk")
    data = json.loads(path.read_text())
    assert data["format"] == 1 and data["canary"] == "3" and data["phase"] == "progressing"
    assert not list(store.directory.glob(".*.tmp"))
    path.write_text("{not json")
    with pytest.raises(RolloutError, match="invalid JSON"):
        engine.status("credit-risk")
    path.write_text(json.dumps({**data, "format": 99}))
    with pytest.raises(RolloutError, match="format 99"):
        engine.status("credit-risk")
    path.write_text(json.dumps({**data, "plan": {**data["plan"], "model": "other"}}))
    with pytest.raises(RolloutError, match="not 'credit-risk'"):
        engine.status("credit-risk")
    with pytest.raises(RolloutError, match="cannot name a state file"):
        store.path("../etc/passwd")


# -- metrics ---------------------------------------------------------------------------------------------------


def _metric_states(store: StateStore, clock: FakeClock) -> list[str]:
    engine = Engine(store, clock)
    texts = [engine.start(_plan()).result()["metrics"]]
    texts.append(engine.analyze("credit-risk", Scenario(_plan(), feature_psi={"age": 0.5})).result()["metrics"])
    texts.append(engine.finish("credit-risk").result()["metrics"])
    engine.start(_plan(canary="4"))
    engine.analyze("credit-risk", Scenario(replace(_plan(), canary="4")))
    texts.append(engine.abort("credit-risk").result()["metrics"])
    return texts


def test_metrics_describe_the_decision(store: StateStore, clock: FakeClock) -> None:
    started, rolled_back_step, rolled_back, aborted = _metric_states(store, clock)
    assert 'modelfleet_rollout_step{model="credit-risk"} 1.0' in started
    assert 'modelfleet_rollout_weight{model="credit-risk",version="3"} 10.0' in started
    assert 'modelfleet_rollout_weight{model="credit-risk",version="2"} 90.0' in started
    assert 'modelfleet_rollout_role{model="credit-risk",role="canary",version="3"} 1.0' in started
    assert (
        'modelfleet_rollout_decisions_total{model="credit-risk",result="rollback",version="3"} 1.0' in rolled_back_step
    )
    assert 'modelfleet_rollout_gate_value{gate="drift_psi",model="credit-risk",version="3"} 0.5' in rolled_back_step
    assert (
        'modelfleet_rollout_gate_verdict{gate="drift_psi",model="credit-risk",verdict="fail",version="3"} 1.0'
        in rolled_back_step
    )
    # T0 + 60 in Go's float format, as prometheus_client writes it.
    assert 'modelfleet_rollout_last_decision_timestamp_seconds{model="credit-risk"} 1.70000006e+09' in rolled_back_step
    assert 'modelfleet_rollout_phase{model="credit-risk",phase="rolled_back",version="3"} 1.0' in rolled_back
    assert 'modelfleet_rollout_decisions_total{model="credit-risk",result="abort",version="4"} 1.0' in aborted


def test_metrics_pass_promtool_check_metrics(store: StateStore, clock: FakeClock, promtool: str) -> None:
    for text in _metric_states(store, clock):
        done = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout + done.stderr == ""


def test_results_are_json_serialisable(engine: Engine) -> None:
    outcomes: list[Outcome] = [
        engine.start(_plan()),
        engine.analyze("credit-risk", Scenario(_plan())),
        engine.status("credit-risk"),
        plan_outcome(_plan()),
    ]
    for outcome in outcomes:
        json.dumps(outcome.result(), allow_nan=False)


def test_a_step_not_yet_decided_keeps_its_window_across_holds(engine: Engine, clock: FakeClock) -> None:
    """Evidence accumulates: after an inconclusive hold the next look is one interval later, over the whole step."""
    engine.start(_plan(inconclusive_limit=3))
    few = Scenario(_plan(), canary=Version(requests=150.0))
    first = engine.analyze("credit-risk", few, max_wait=0)
    assert first.decision == "hold" and first.window_seconds == 60
    second = engine.analyze("credit-risk", few, max_wait=0)
    assert second.decision == "hold" and second.window_seconds == 120 and clock.sleeps == [60.0, 60.0]
    decided = engine.analyze("credit-risk", Scenario(_plan()), max_wait=0)
    assert decided.decision == "advance" and decided.window_seconds == 180
