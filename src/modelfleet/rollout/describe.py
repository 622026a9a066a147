"""How rollout plans, states and gate results are shown: the module's result, check mode, ``action: plan``.

Numbers stay as an operator would write them (``25``, not ``25.0``); a gate's value that is not finite
(no data yet) is shown as ``null``.
"""

from __future__ import annotations

import math
from typing import Any

from modelfleet.rollout.decision import Phase
from modelfleet.rollout.gates import GateResult, gate_definitions
from modelfleet.rollout.plan import PROMOTED_WEIGHT, RolloutPlan, format_weight
from modelfleet.rollout.state import RolloutState
from modelfleet.rollout.traffic_gates import look_error, rollout_looks, statistical_gates


def number(value: float) -> float | int:
    """``25.0`` as ``25``; other values as they are."""
    return int(value) if float(value).is_integer() else value


def stable_weight(state: RolloutState) -> float:
    """The stable version's weight that goes with the canary's (100 minus it, or 0 once promoted)."""
    if state.phase is Phase.PROMOTED:
        return 0.0
    if state.phase in (Phase.ROLLED_BACK, Phase.ABORTED):
        return 100.0
    return max(0.0, 100.0 - state.weight)


def summary(state: RolloutState) -> dict[str, Any]:
    """The state without its history: what the rollout is doing now."""
    data = state.to_dict()
    data.pop("history")
    data["analyses"] = len(state.history)
    return data


def describe_plan(plan: RolloutPlan) -> dict[str, Any]:
    """The plan as shown by ``action: plan`` and check mode: steps, weights, interval, gates with PromQL, hosts."""
    window = math.ceil(plan.interval_seconds)
    steps = [
        {"step": i + 1, "weight": number(w), "stable_weight": number(100.0 - w)} for i, w in enumerate(plan.steps)
    ]
    return {
        "model": plan.model,
        "stable_version": plan.stable,
        "canary_version": plan.canary,
        "steps": steps,
        "promotion_weight": number(PROMOTED_WEIGHT),
        "interval_seconds": plan.interval_seconds,
        "min_requests": plan.min_requests,
        "failure_limit": plan.failure_limit,
        "inconclusive_limit": plan.inconclusive_limit,
        "drift_window": plan.drift_window,
        "serve_job": plan.serve_job,
        "hosts": list(plan.hosts),
        "gates": describe_gates(plan, window),
        "judgement": describe_judgement(plan),
    }


def _finite(value: float | None) -> float | None:
    """``value``, or ``None`` where it is missing or not finite."""
    return value if value is not None and math.isfinite(value) else None


def describe_gates(plan: RolloutPlan, window_seconds: int) -> list[dict[str, Any]]:
    """Every gate of the plan with its threshold and PromQL over a window of ``window_seconds``."""
    return [
        {"name": g.name, "threshold": g.threshold, "comparison": g.comparison, "query": g.query}
        for g in gate_definitions(plan, window_seconds)
    ]


def describe_judgement(plan: RolloutPlan) -> dict[str, Any]:
    """The error budget of the plan's statistical judgement (see traffic_gates)."""
    limits = plan.thresholds
    return {
        "alpha": limits.alpha,
        "beta": limits.beta,
        "statistical_gates": statistical_gates(plan),
        "looks_per_gate": rollout_looks(plan),
        "fail_error_per_look": look_error(plan),
        "latency_margin_ms": limits.latency_margin_ms,
        "error_margin": limits.error_margin,
    }


def gate_record(gate: GateResult) -> dict[str, Any]:
    """A gate's result as recorded in the history and returned (a value that is not finite as ``None``)."""
    data = gate.to_dict()
    data["value"] = _finite(gate.value)
    return data


def plan_sentence(plan: RolloutPlan) -> str:
    """The plan in one sentence: versions, hosts, weights, interval, evidence and gates."""
    weights = " -> ".join(f"{format_weight(w)}%" for w in plan.steps)
    if plan.steps[-1] < PROMOTED_WEIGHT:
        weights += " -> promotion 100%"
    gates = ", ".join(g.name for g in gate_definitions(plan, math.ceil(plan.interval_seconds)))
    hosts = f" on {len(plan.hosts)} host{'s' if len(plan.hosts) != 1 else ''}" if plan.hosts else ""
    return (
        f"canary {plan.canary} replaces stable {plan.stable}{hosts}: {weights}, {plan.interval_seconds:g} s per "
        f"step, at least {plan.min_requests} requests per analysis, gates {gates}"
    )
