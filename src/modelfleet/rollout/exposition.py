"""The rollout state as Prometheus metrics text, for node_exporter's textfile collector.

Every series is labelled ``model``; the ``version`` label is the canary's on the decision, analysis
and gate series. Counters are kept in the rollout state, so they survive controller restarts and
only start again at zero with the next rollout of the model (``rate``/``increase`` handle that).

``modelfleet_rollout_role`` names what each version is: ``stable`` and ``canary`` during a
rollout; after a promotion the canary is ``stable`` and the old stable ``previous``; after a rollback
or an abort the stable stays ``stable`` and the canary is ``rejected``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from modelfleet.rollout.decision import Phase, Result
from modelfleet.rollout.gates import Verdict
from modelfleet.rollout.state import RolloutState

#: Decision results counted in ``modelfleet_rollout_decisions_total`` (abort: by an operator).
DECISION_RESULTS = (*(str(r) for r in Result), "abort")
ANALYSIS_VERDICTS = (str(Verdict.PASS), str(Verdict.FAIL), str(Verdict.INCONCLUSIVE))


def roles(state: RolloutState) -> list[tuple[str, str, float]]:
    """(version, role, weight) of both versions of the rollout."""
    plan = state.plan
    if state.phase is Phase.PROMOTED:
        return [(plan.canary, "stable", 100.0), (plan.stable, "previous", 0.0)]
    if state.phase in (Phase.ROLLED_BACK, Phase.ABORTED):
        return [(plan.stable, "stable", 100.0), (plan.canary, "rejected", 0.0)]
    return [(plan.stable, "stable", max(0.0, 100.0 - state.weight)), (plan.canary, "canary", state.weight)]


class _StateCollector(Collector):
    def __init__(self, state: RolloutState) -> None:
        self.state = state

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        state, plan = self.state, self.state.plan
        model, canary = plan.model, plan.canary
        step = GaugeMetricFamily("modelfleet_rollout_step", "Current step of the rollout (1-based).", labels=["model"])
        step.add_metric([model], state.step + 1)
        yield step
        steps = GaugeMetricFamily("modelfleet_rollout_steps", "Steps in the rollout plan.", labels=["model"])
        steps.add_metric([model], plan.step_count)
        yield steps
        weight = GaugeMetricFamily(
            "modelfleet_rollout_weight", "Traffic weight (percent) of each version.", labels=["model", "version"]
        )
        role = GaugeMetricFamily(
            "modelfleet_rollout_role",
            "1 for the role each version has in the rollout.",
            labels=["model", "version", "role"],
        )
        for version, name, share in roles(state):
            weight.add_metric([model, version], share)
            role.add_metric([model, version, name], 1)
        yield weight
        yield role
        phase = GaugeMetricFamily(
            "modelfleet_rollout_phase", "1 for the rollout's current phase.", labels=["model", "version", "phase"]
        )
        for value in Phase:
            phase.add_metric([model, canary, str(value)], 1 if state.phase is value else 0)
        yield phase
        decisions = CounterMetricFamily(
            "modelfleet_rollout_decisions", "Rollout decisions by result.", labels=["model", "version", "result"]
        )
        for result in DECISION_RESULTS:
            decisions.add_metric([model, canary, result], state.decisions.get(result, 0))
        yield decisions
        analyses = CounterMetricFamily(
            "modelfleet_rollout_analyses", "Canary analyses by overall verdict.", labels=["model", "version", "verdict"]
        )
        for verdict in ANALYSIS_VERDICTS:
            analyses.add_metric([model, canary, verdict], state.verdicts.get(verdict, 0))
        yield analyses
        failures = GaugeMetricFamily(
            "modelfleet_rollout_failures", "Failed analyses so far in this rollout.", labels=["model", "version"]
        )
        failures.add_metric([model, canary], state.failures)
        yield failures
        streak = GaugeMetricFamily(
            "modelfleet_rollout_inconclusive_streak",
            "Consecutive inconclusive analyses at the current step.",
            labels=["model", "version"],
        )
        streak.add_metric([model, canary], state.inconclusive)
        yield streak
        yield from self._gates()
        if state.last_decision_at is not None:
            stamp = GaugeMetricFamily(
                "modelfleet_rollout_last_decision_timestamp_seconds",
                "Time of the rollout's latest decision.",
                labels=["model"],
            )
            stamp.add_metric([model], state.last_decision_at)
            yield stamp

    def _gates(self) -> Iterator[GaugeMetricFamily]:
        plan = self.state.plan
        gates = self.state.last_gates
        labels = ["model", "version", "gate"]
        value = GaugeMetricFamily("modelfleet_rollout_gate_value", "Latest measured value of each gate.", labels=labels)
        threshold = GaugeMetricFamily("modelfleet_rollout_gate_threshold", "Threshold of each gate.", labels=labels)
        verdict = GaugeMetricFamily(
            "modelfleet_rollout_gate_verdict", "1 for each gate's latest verdict.", labels=[*labels, "verdict"]
        )
        for gate in gates:
            names = [plan.model, plan.canary, str(gate["name"])]
            if isinstance(gate.get("value"), int | float) and math.isfinite(gate["value"]):
                value.add_metric(names, float(gate["value"]))
            if isinstance(gate.get("threshold"), int | float):
                threshold.add_metric(names, float(gate["threshold"]))
            for option in Verdict:
                verdict.add_metric([*names, str(option)], 1 if gate.get("verdict") == str(option) else 0)
        yield value
        yield threshold
        yield verdict


def render_metrics(state: RolloutState) -> str:
    """Prometheus text exposition of ``state`` (``promtool check metrics`` clean)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_StateCollector(state))
    return generate_latest(registry).decode("utf-8")
