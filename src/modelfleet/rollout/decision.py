"""The decision after one analysis: pure logic, no I/O.

* any gate failed → the rollout's failure count goes up; at ``failure_limit`` it rolls back, below it
  holds (the same step is analysed again over a fresh window);
* otherwise any gate inconclusive → the count of consecutive inconclusive analyses goes up; past
  ``inconclusive_limit`` it rolls back (a canary that cannot be shown good is not promoted), up to it
  it holds;
* all gates passed (or not applicable) → advance to the next step, or promote after the last one
  (promotion sets weight 100 even when the last step is lower).

Failures count over the whole rollout; the inconclusive count is consecutive (reset by any analysis
that is not inconclusive).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from modelfleet.rollout.gates import GateResult, Verdict, overall_verdict
from modelfleet.rollout.plan import PROMOTED_WEIGHT, RolloutPlan, format_weight


class Phase(StrEnum):
    PROGRESSING = "progressing"
    PROMOTING = "promoting"
    PROMOTED = "promoted"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"
    ABORTED = "aborted"


#: Phases after which nothing more happens to the rollout.
FINISHED = frozenset({Phase.PROMOTED, Phase.ROLLED_BACK, Phase.ABORTED})


class Result(StrEnum):
    ADVANCE = "advance"
    PROMOTE = "promote"
    HOLD = "hold"
    ROLLBACK = "rollback"


@dataclass(frozen=True)
class Decision:
    """What one analysis decided; ``step`` (0-based) and ``weight`` are the canary's after it."""

    result: Result
    verdict: Verdict
    phase: Phase
    step: int
    weight: float
    failures: int
    inconclusive: int
    reason: str


def _gate_details(gates: Sequence[GateResult], verdict: Verdict) -> str:
    return "; ".join(g.detail for g in gates if g.verdict is verdict)


def _where(plan: RolloutPlan, step: int) -> str:
    return f"step {step + 1}/{plan.step_count} (canary {plan.canary} at {format_weight(plan.weight(step))}%)"


def decide(plan: RolloutPlan, step: int, failures: int, inconclusive: int, gates: Sequence[GateResult]) -> Decision:
    """The decision after the analysis ``gates`` of step ``step`` (0-based), given the counts so far."""
    if not 0 <= step < plan.step_count:
        raise ValueError(f"step {step} is outside the plan's {plan.step_count} steps")
    verdict = overall_verdict(gates)
    where = _where(plan, step)
    weight = plan.weight(step)
    rollback = f"rolling back to stable {plan.stable} (canary weight 0)."
    hold = f"holding at {format_weight(weight)}% for another analysis."
    if verdict is Verdict.FAIL:
        failures += 1
        said = f"{where} failed: {_gate_details(gates, Verdict.FAIL)}. "
        if failures >= plan.failure_limit:
            return Decision(result=Result.ROLLBACK, verdict=verdict, phase=Phase.ROLLING_BACK, step=step, weight=0.0,
                            failures=failures, inconclusive=0,
                            reason=f"{said}Failure {failures} reaches failure_limit {plan.failure_limit}: {rollback}")
        return Decision(result=Result.HOLD, verdict=verdict, phase=Phase.PROGRESSING, step=step, weight=weight,
                        failures=failures, inconclusive=0,
                        reason=f"{said}Failure {failures} of failure_limit {plan.failure_limit}: {hold}")
    if verdict is Verdict.INCONCLUSIVE:
        inconclusive += 1
        said = f"{where} inconclusive: {_gate_details(gates, Verdict.INCONCLUSIVE) or 'no gate passed'}. "
        if inconclusive > plan.inconclusive_limit:
            return Decision(result=Result.ROLLBACK, verdict=verdict, phase=Phase.ROLLING_BACK, step=step, weight=0.0,
                            failures=failures, inconclusive=inconclusive,
                            reason=f"{said}{inconclusive} inconclusive analyses in a row exceed inconclusive_limit "
                                   f"{plan.inconclusive_limit}: {rollback}")
        return Decision(result=Result.HOLD, verdict=verdict, phase=Phase.PROGRESSING, step=step, weight=weight,
                        failures=failures, inconclusive=inconclusive,
                        reason=f"{said}Inconclusive {inconclusive} in a row (at most {plan.inconclusive_limit} "
                               f"allowed): {hold}")
    passed = sum(1 for g in gates if g.verdict is Verdict.PASS)
    skipped = [g.name for g in gates if g.verdict is Verdict.NOT_APPLICABLE]
    summary = f"{where} passed all {passed} gates"
    if skipped:
        summary += f" ({', '.join(skipped)} not applicable)"
    requests = next((g.detail for g in gates if g.name == "requests"), "")
    if requests:
        summary += f", {requests}"
    if step + 1 < plan.step_count:
        nxt = plan.weight(step + 1)
        return Decision(result=Result.ADVANCE, verdict=verdict, phase=Phase.PROGRESSING, step=step + 1, weight=nxt,
                        failures=failures, inconclusive=0,
                        reason=f"{summary}: advancing to step {step + 2}/{plan.step_count} at {format_weight(nxt)}%.")
    final = "" if weight >= PROMOTED_WEIGHT else f" (last step was {format_weight(weight)}%; promotion sets 100%)"
    return Decision(result=Result.PROMOTE, verdict=verdict, phase=Phase.PROMOTING, step=step, weight=PROMOTED_WEIGHT,
                    failures=failures, inconclusive=0,
                    reason=f"{summary}: promoting canary {plan.canary} to 100%{final}.")
