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
    if verdict is Verdict.FAIL:
        failures += 1
        details = _gate_details(gates, Verdict.FAIL)
        if failures >= plan.failure_limit:
            return Decision(
                Result.ROLLBACK,
                verdict,
                Phase.ROLLING_BACK,
                step,
                0.0,
                failures,
                0,
                f"{where} failed: {details}. Failure {failures} reaches failure_limit "
                f"{plan.failure_limit}: rolling back to stable {plan.stable} (canary weight 0).",
            )
        return Decision(
            Result.HOLD,
            verdict,
            Phase.PROGRESSING,
            step,
            weight,
            failures,
            0,
            f"{where} failed: {details}. Failure {failures} of failure_limit {plan.failure_limit}: "
            f"holding at {format_weight(weight)}% for another analysis.",
        )
    if verdict is Verdict.INCONCLUSIVE:
        inconclusive += 1
        details = _gate_details(gates, Verdict.INCONCLUSIVE) or "no gate passed"
        if inconclusive > plan.inconclusive_limit:
            return Decision(
                Result.ROLLBACK,
                verdict,
                Phase.ROLLING_BACK,
                step,
                0.0,
                failures,
                inconclusive,
                f"{where} inconclusive: {details}. {inconclusive} inconclusive analyses in a row exceed "
                f"inconclusive_limit {plan.inconclusive_limit}: rolling back to stable {plan.stable} "
                "(canary weight 0).",
            )
        return Decision(
            Result.HOLD,
            verdict,
            Phase.PROGRESSING,
            step,
            weight,
            failures,
            inconclusive,
            f"{where} inconclusive: {details}. Inconclusive {inconclusive} in a row (at most "
            f"{plan.inconclusive_limit} allowed): holding at {format_weight(weight)}% for another "
            "analysis.",
        )
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
        return Decision(
            Result.ADVANCE,
            verdict,
            Phase.PROGRESSING,
            step + 1,
            nxt,
            failures,
            0,
            f"{summary}: advancing to step {step + 2}/{plan.step_count} at {format_weight(nxt)}%.",
        )
    final = "" if weight >= PROMOTED_WEIGHT else f" (last step was {format_weight(weight)}%; promotion sets 100%)"
    return Decision(
        Result.PROMOTE,
        verdict,
        Phase.PROMOTING,
        step,
        PROMOTED_WEIGHT,
        failures,
        0,
        f"{summary}: promoting canary {plan.canary} to 100%{final}.",
    )
