"""The canary gates: PromQL, thresholds at/above/below, no data, NaN, ±Inf, Prometheus down, not-applicable cases.

``Scenario`` is a fake Prometheus that answers exactly the queries the gates build (for any window)
from per-version figures; the engine tests use it too.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelfleet.rollout.gates import (
    ERROR_RATIO_FLOOR,
    GateResult,
    Queries,
    Verdict,
    evaluate_gates,
    gate_definitions,
    label_value,
    overall_verdict,
)
from modelfleet.rollout.plan import RolloutPlan, Thresholds
from modelfleet.rollout.prometheus import PrometheusError, Sample

ALL_GATES = Thresholds(
    error_rate=0.01,
    p99_latency_ms=100.0,
    latency_vs_stable=1.5,
    error_rate_vs_stable=2.0,
    drift_psi=0.2,
    prediction_psi=0.25,
    min_accuracy=0.8,
)


def make_plan(**changes: object) -> RolloutPlan:
    base = RolloutPlan(
        model="credit-risk",
        stable="2",
        canary="3",
        steps=(10.0, 50.0, 100.0),
        interval_seconds=60.0,
        min_requests=100,
        failure_limit=1,
        inconclusive_limit=2,
        thresholds=ALL_GATES,
        hosts=("h1", "h2"),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


@dataclass
class Version:
    requests: float | None = 1000.0
    error_ratio: float | None = 0.001
    p99_ms: float | None = 20.0


def _vector(value: float | None) -> list[Sample]:
    return [] if value is None else [Sample({}, value)]


def _by(label: str, values: dict[str, float] | None) -> list[Sample]:
    return [Sample({label: k}, v) for k, v in (values or {}).items()]


@dataclass
class Scenario:
    """A fake Prometheus for one plan: what every gate query answers."""

    plan: RolloutPlan
    canary: Version = field(default_factory=Version)
    stable: Version = field(default_factory=Version)
    up: dict[str, float] | None = field(default_factory=lambda: {"h1": 1.0, "h2": 1.0})
    restarts: dict[str, float] | None = field(default_factory=lambda: {"h1": 0.0, "h2": 0.0})
    feature_psi: dict[str, float] | None = field(default_factory=lambda: {"age": 0.05, "region": 0.02})
    prediction_psi: dict[str, float] | None = field(default_factory=lambda: {"label": 0.03})
    # Columns whose drift test rejects; None: those with PSI > 0.1 (a large shift on enough rows).
    detected: set[str] | None = None
    labelled_rows: float | None = 500.0
    accuracy: float | None = 0.9
    down: bool = False
    failing: dict[str, str] = field(default_factory=dict)
    calls: list[tuple[str, float]] = field(default_factory=list)

    def _detected(self, psi: dict[str, float] | None) -> dict[str, float]:
        return {k: float(k in self.detected if self.detected is not None else v > 0.1) for k, v in (psi or {}).items()}

    def answers(self, window: int) -> dict[str, list[Sample]]:
        q = Queries(self.plan, window)
        plan = self.plan
        return {
            q.requests(plan.canary): _vector(self.canary.requests),
            q.requests(plan.stable): _vector(self.stable.requests),
            q.error_ratio(plan.canary): _vector(self.canary.error_ratio),
            q.error_ratio(plan.stable): _vector(self.stable.error_ratio),
            q.p99_ms(plan.canary): _vector(self.canary.p99_ms),
            q.p99_ms(plan.stable): _vector(self.stable.p99_ms),
            q.up(): _by("host", self.up),
            q.restarts(): _by("host", self.restarts),
            q.psi("modelfleet_feature_psi", "feature"): _by("feature", self.feature_psi),
            q.psi("modelfleet_prediction_psi", "output"): _by("output", self.prediction_psi),
            q.drift_detected("modelfleet_feature_psi", "feature"): _by("feature", self._detected(self.feature_psi)),
            q.drift_detected("modelfleet_prediction_psi", "output"): _by("output", self._detected(self.prediction_psi)),
            q.labelled_rows(): _vector(self.labelled_rows),
            q.accuracy(): _vector(self.accuracy),
        }

    def query(self, promql: str, at: float) -> list[Sample]:
        self.calls.append((promql, at))
        if self.down:
            raise PrometheusError("Prometheus at http://prom:9090 is unreachable: connection refused", unreachable=True)
        for fragment, message in self.failing.items():
            if fragment in promql:
                raise PrometheusError(f"Prometheus answered HTTP 422: execution: {message}")
        windows = {int(w) for w in re.findall(r"\[(\d+)s\]", promql)} or {60}
        assert len(windows) == 1, promql
        answers = self.answers(windows.pop())
        assert promql in answers, f"unexpected query {promql}"
        return answers[promql]


def run(scenario: Scenario, weight: float = 10.0, window: int = 60) -> dict[str, GateResult]:
    return {g.name: g for g in evaluate_gates(scenario.plan, scenario, weight=weight, window_seconds=window, at=1000.0)}


def verdicts(results: dict[str, GateResult]) -> dict[str, str]:
    return {name: str(g.verdict) for name, g in results.items()}


# -- the healthy case and the queries -------------------------------------------------------------------------


def test_healthy_canary_passes_every_gate() -> None:
    results = run(Scenario(make_plan()))
    assert list(results) == [
        "canary_up",
        "canary_restarts",
        "requests",
        "error_rate",
        "p99_latency_ms",
        "latency_vs_stable",
        "error_rate_vs_stable",
        "drift_psi",
        "prediction_psi",
        "min_accuracy",
    ]
    assert set(verdicts(results).values()) == {"pass"}
    assert overall_verdict(list(results.values())) is Verdict.PASS
    assert results["requests"].value == 1000 and "1000 canary requests in 60 s" in results["requests"].detail
    assert results["drift_psi"].value == 0.05 and "'age'" in results["drift_psi"].detail


def test_queries_use_the_step_window_labels_and_drift_window() -> None:
    plan = make_plan(drift_window="10m")
    queries = {g.name: g.query for g in gate_definitions(plan, 90)}
    assert queries["requests"] == (
        'sum(increase({__name__=~"nv_inference_request_(success|failure)_total",'
        'job="modelfleet-serve",model="credit-risk",version="3"}[90s]))'
    )
    # Errors as the recording rules count them: every failure but a client's invalid request.
    assert queries["error_rate"].startswith(
        '(sum(increase(nv_inference_request_failure_total{job="modelfleet-serve",model="credit-risk",version="3",'
        'reason!="invalid_request"}[90s])) or vector(0)) / '
    )
    assert queries["p99_latency_ms"] == (
        "histogram_quantile(0.99, sum by (le) (increase(modelfleet_request_duration_seconds_bucket"
        '{job="modelfleet-serve",model="credit-risk",version="3"}[90s]))) * 1000'
    )
    assert queries["canary_up"] == (
        'min by (host) (min_over_time(up{job="modelfleet-serve",model="credit-risk",version="3"}[90s]))'
    )
    assert 'version="2"' in queries["latency_vs_stable"] and 'version="3"' in queries["latency_vs_stable"]
    assert queries["drift_psi"] == (
        'max by (feature) (modelfleet_feature_psi{model="credit-risk",version="3",window="10m"})'
    )
    assert 'window="10m"' in queries["min_accuracy"]


def test_serve_job_is_configurable() -> None:
    queries = {g.name: g.query for g in gate_definitions(make_plan(serve_job="triton"), 60)}
    assert 'job="triton"' in queries["canary_up"] and 'job="triton"' in queries["requests"]
    assert "job=" not in queries["drift_psi"]


def test_disabled_gates_are_not_evaluated() -> None:
    plan = make_plan(thresholds=Thresholds(error_rate=None, latency_vs_stable=None, drift_psi=None))
    assert [g.name for g in gate_definitions(plan, 60)] == ["canary_up", "canary_restarts", "requests"]


def test_label_values_are_escaped() -> None:
    assert label_value('a"b\\c') == '"a\\"b\\\\c"'


def test_queries_are_evaluated_at_one_time_and_each_only_once() -> None:
    scenario = Scenario(make_plan())
    run(scenario)
    assert {at for _, at in scenario.calls} == {1000.0}
    promqls = [p for p, _ in scenario.calls]
    assert len(promqls) == len(set(promqls))


# -- thresholds: below, at, above ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ratio", "verdict"), [(0.0, "pass"), (0.0099, "pass"), (0.01, "pass"), (0.0101, "fail"), (1.0, "fail")]
)
def test_error_rate_threshold(ratio: float, verdict: str) -> None:
    result = run(Scenario(make_plan(), canary=Version(error_ratio=ratio)))["error_rate"]
    assert str(result.verdict) == verdict and result.value == ratio and result.threshold == 0.01


@pytest.mark.parametrize(("p99", "verdict"), [(99.0, "pass"), (100.0, "pass"), (100.5, "fail")])
def test_p99_threshold(p99: float, verdict: str) -> None:
    results = run(Scenario(make_plan(), canary=Version(p99_ms=p99), stable=Version(p99_ms=p99)))
    assert str(results["p99_latency_ms"].verdict) == verdict
    assert results["latency_vs_stable"].verdict is Verdict.PASS


@pytest.mark.parametrize(("canary", "verdict"), [(29.0, "pass"), (30.0, "pass"), (30.3, "fail")])
def test_latency_vs_stable_threshold(canary: float, verdict: str) -> None:
    result = run(Scenario(make_plan(), canary=Version(p99_ms=canary), stable=Version(p99_ms=20.0)))
    gate = result["latency_vs_stable"]
    assert str(gate.verdict) == verdict and gate.value == pytest.approx(canary / 20.0)
    assert "stable p99 20 ms" in gate.detail


@pytest.mark.parametrize(("psi", "verdict"), [(0.19, "pass"), (0.2, "pass"), (0.21, "fail")])
def test_drift_psi_threshold_takes_the_worst_feature(psi: float, verdict: str) -> None:
    result = run(Scenario(make_plan(), feature_psi={"age": 0.01, "income": psi}))["drift_psi"]
    assert str(result.verdict) == verdict and result.value == psi and "'income'" in result.detail


def test_prediction_psi_fails_on_a_shifted_output() -> None:
    result = run(Scenario(make_plan(), prediction_psi={"label": 0.4, "probabilities_1": 0.1}))["prediction_psi"]
    assert result.verdict is Verdict.FAIL and result.value == 0.4 and "'label'" in result.detail


@pytest.mark.parametrize(("accuracy", "verdict"), [(0.81, "pass"), (0.8, "pass"), (0.79, "fail")])
def test_min_accuracy_threshold(accuracy: float, verdict: str) -> None:
    assert str(run(Scenario(make_plan(), accuracy=accuracy))["min_accuracy"].verdict) == verdict


@pytest.mark.parametrize(
    ("requests", "verdict"), [(99.0, "inconclusive"), (100.0, "pass"), (5000.0, "pass"), (0.0, "inconclusive")]
)
def test_min_requests(requests: float, verdict: str) -> None:
    result = run(Scenario(make_plan(), canary=Version(requests=requests)))["requests"]
    assert str(result.verdict) == verdict
    if verdict == "inconclusive":
        assert "too few" in result.detail


# -- no data is never a pass --------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [None, math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("gate", ["requests", "error_rate", "p99_latency_ms"])
def test_missing_or_non_finite_canary_figures_are_inconclusive(bad: float | None, gate: str) -> None:
    field_name = {"requests": "requests", "error_rate": "error_ratio", "p99_latency_ms": "p99_ms"}[gate]
    scenario = Scenario(make_plan(), canary=replace(Version(), **{field_name: bad}))
    result = run(scenario)[gate]
    assert result.verdict is Verdict.INCONCLUSIVE and result.value is None
    expected = {None: "no data", "nan": "NaN"}.get(None if bad is None else ("nan" if math.isnan(bad) else ""), "Inf")
    assert expected in result.detail


@pytest.mark.parametrize("bad", [None, math.nan, math.inf])
def test_missing_psi_is_inconclusive(bad: float | None) -> None:
    psi = None if bad is None else {"age": 0.01, "income": bad}
    result = run(Scenario(make_plan(), feature_psi=psi))["drift_psi"]
    assert result.verdict is Verdict.INCONCLUSIVE


def test_empty_psi_vector_mentions_the_drift_exporter() -> None:
    result = run(Scenario(make_plan(), feature_psi={}))["drift_psi"]
    assert result.verdict is Verdict.INCONCLUSIVE and "drift exporter" in result.detail


def test_all_gates_inconclusive_when_prometheus_is_down_and_only_one_request_is_made() -> None:
    scenario = Scenario(make_plan(), down=True)
    results = run(scenario)
    assert {g.verdict for g in results.values()} == {Verdict.INCONCLUSIVE}
    assert all("unreachable" in g.detail for g in results.values())
    assert len(scenario.calls) == 1
    assert overall_verdict(list(results.values())) is Verdict.INCONCLUSIVE


def test_a_query_error_makes_only_its_gate_inconclusive() -> None:
    results = run(Scenario(make_plan(), failing={"histogram_quantile": "query timed out"}))
    assert results["p99_latency_ms"].verdict is Verdict.INCONCLUSIVE
    assert "query timed out" in results["p99_latency_ms"].detail
    assert results["error_rate"].verdict is Verdict.PASS


# -- comparisons with the stable version ---------------------------------------------------------------------


def test_comparisons_are_not_applicable_when_the_stable_gets_no_traffic() -> None:
    scenario = Scenario(make_plan(), stable=Version(requests=None, error_ratio=None, p99_ms=None))
    results = run(scenario, weight=100.0)
    assert results["latency_vs_stable"].verdict is Verdict.NOT_APPLICABLE
    assert results["error_rate_vs_stable"].verdict is Verdict.NOT_APPLICABLE
    assert "no traffic" in results["latency_vs_stable"].detail
    assert overall_verdict(list(results.values())) is Verdict.PASS
    assert not any('version="2"' in promql for promql, _ in scenario.calls)


def test_comparisons_need_enough_stable_requests() -> None:
    results = run(Scenario(make_plan(), stable=Version(requests=40.0)), weight=95.0)
    assert results["latency_vs_stable"].verdict is Verdict.INCONCLUSIVE
    assert "only 40 stable requests" in results["latency_vs_stable"].detail


def test_stable_without_latency_data_is_inconclusive_not_a_pass() -> None:
    results = run(Scenario(make_plan(), stable=Version(p99_ms=math.nan)))
    assert results["latency_vs_stable"].verdict is Verdict.INCONCLUSIVE


def test_zero_stable_latency_gives_no_ratio() -> None:
    assert run(Scenario(make_plan(), stable=Version(p99_ms=0.0)))["latency_vs_stable"].verdict is Verdict.INCONCLUSIVE


def test_error_rate_vs_stable_zero_versus_zero_passes() -> None:
    result = run(Scenario(make_plan(), canary=Version(error_ratio=0.0), stable=Version(error_ratio=0.0)))
    assert result["error_rate_vs_stable"].verdict is Verdict.PASS and result["error_rate_vs_stable"].value == 0.0


def test_error_rate_vs_stable_uses_a_floor_of_one_request() -> None:
    # 1 error in 200 requests against a perfect stable: 0.005 / max(0, 1/200) = 1 <= 2.
    scenario = Scenario(
        make_plan(thresholds=replace(ALL_GATES, error_rate=None)),
        canary=Version(requests=200.0, error_ratio=0.005),
        stable=Version(error_ratio=0.0),
    )
    gate = run(scenario)["error_rate_vs_stable"]
    assert gate.verdict is Verdict.PASS and gate.value == pytest.approx(1.0)
    assert "clamp_min(" in gate.query and ", 0.005)" in gate.query


def test_error_rate_vs_stable_fails_when_the_canary_errs_more() -> None:
    scenario = Scenario(
        make_plan(thresholds=replace(ALL_GATES, error_rate=None)),
        canary=Version(requests=100_000.0, error_ratio=0.009),
        stable=Version(error_ratio=0.002),
    )
    gate = run(scenario)["error_rate_vs_stable"]
    assert gate.verdict is Verdict.FAIL and gate.value == pytest.approx(4.5)
    big = Scenario(make_plan(), canary=Version(requests=1e9, error_ratio=0.0), stable=Version(error_ratio=0.0))
    assert f", {ERROR_RATIO_FLOOR:g})" in run(big)["error_rate_vs_stable"].query


# -- accuracy ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rows", [None, 0.0])
def test_accuracy_without_labels_is_not_applicable_and_not_a_pass(rows: float | None) -> None:
    gate = run(Scenario(make_plan(), labelled_rows=rows, accuracy=None))["min_accuracy"]
    assert gate.verdict is Verdict.NOT_APPLICABLE and gate.value is None and "no labelled rows" in gate.detail


def test_accuracy_with_labels_but_no_value_is_inconclusive() -> None:
    assert run(Scenario(make_plan(), accuracy=math.nan))["min_accuracy"].verdict is Verdict.INCONCLUSIVE


def test_accuracy_does_not_apply_to_regression() -> None:
    gate = run(Scenario(make_plan(accuracy_applies=False)))["min_accuracy"]
    assert gate.verdict is Verdict.NOT_APPLICABLE and "regression" in gate.detail


# -- health --------------------------------------------------------------------------------------------------


def test_a_canary_down_on_one_host_fails() -> None:
    gate = run(Scenario(make_plan(), up={"h1": 1.0, "h2": 0.0}))["canary_up"]
    assert gate.verdict is Verdict.FAIL and gate.value == 0.0 and "h2" in gate.detail


def test_a_host_without_up_series_is_inconclusive() -> None:
    gate = run(Scenario(make_plan(), up={"h1": 1.0}))["canary_up"]
    assert gate.verdict is Verdict.INCONCLUSIVE and "h2" in gate.detail


def test_targets_without_host_label_are_explained() -> None:
    scenario = Scenario(make_plan())
    scenario.up = None
    original = scenario.answers

    def answers(window: int) -> dict[str, list[Sample]]:
        data = original(window)
        data[Queries(scenario.plan, window).up()] = [Sample({}, 1.0)]
        return data

    scenario.answers = answers  # type: ignore[method-assign]
    gate = run(scenario)["canary_up"]
    assert gate.verdict is Verdict.INCONCLUSIVE and "no host label" in gate.detail


def test_without_hosts_every_series_found_must_be_up() -> None:
    assert run(Scenario(make_plan(hosts=()), up={"x": 1.0}))["canary_up"].verdict is Verdict.PASS
    assert run(Scenario(make_plan(hosts=()), up=None))["canary_up"].verdict is Verdict.INCONCLUSIVE


def test_a_restart_fails_the_step() -> None:
    gate = run(Scenario(make_plan(), restarts={"h1": 0.0, "h2": 1.0}))["canary_restarts"]
    assert gate.verdict is Verdict.FAIL and gate.value == 1.0 and "h2" in gate.detail


def test_a_killed_canary_fails_even_though_its_traffic_metrics_are_gone() -> None:
    scenario = Scenario(
        make_plan(),
        canary=Version(requests=None, error_ratio=None, p99_ms=None),
        up={"h1": 0.0, "h2": 0.0},
        restarts=None,
    )
    results = run(scenario)
    assert results["canary_up"].verdict is Verdict.FAIL
    assert overall_verdict(list(results.values())) is Verdict.FAIL


# -- the overall verdict --------------------------------------------------------------------------------------


def _gate(verdict: Verdict) -> GateResult:
    return GateResult("g", verdict, None, None, "<=", "q", "d")


@given(st.lists(st.sampled_from(list(Verdict)), max_size=8))
def test_overall_verdict_is_never_pass_without_a_pass_and_fail_dominates(items: list[Verdict]) -> None:
    verdict = overall_verdict([_gate(v) for v in items])
    if Verdict.FAIL in items:
        assert verdict is Verdict.FAIL
    elif Verdict.INCONCLUSIVE in items or Verdict.PASS not in items:
        assert verdict is Verdict.INCONCLUSIVE
    else:
        assert verdict is Verdict.PASS


@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.none()))
def test_error_gate_never_passes_a_non_finite_or_missing_value(value: float | None) -> None:
    gate = run(Scenario(make_plan(), canary=Version(error_ratio=value)))["error_rate"]
    if value is None or not math.isfinite(value):
        assert gate.verdict is Verdict.INCONCLUSIVE
    else:
        assert gate.verdict is (Verdict.PASS if value <= 0.01 else Verdict.FAIL)


def test_psi_without_a_rejecting_drift_test_is_sampling_noise() -> None:
    """A few dozen rows give PSI far above 0.2 by chance; only columns whose corrected test rejects count."""
    noisy = run(Scenario(make_plan(), feature_psi={"age": 1.86, "income": 0.08}, detected=set()))["drift_psi"]
    assert noisy.verdict == Verdict.PASS and "sampling noise" in noisy.detail
    drifted = run(Scenario(make_plan(), feature_psi={"age": 1.86, "income": 0.5}, detected={"income"}))["drift_psi"]
    assert drifted.verdict == Verdict.FAIL and "'income'" in drifted.detail and drifted.value == 0.5
