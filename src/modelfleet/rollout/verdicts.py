"""What a gate says about a step: its verdict, the numbers behind it, and the step it judged."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelfleet.rollout.plan import RolloutPlan
    from modelfleet.rollout.queries import Measurements, Queries


class Verdict(StrEnum):
    """``inconclusive`` is *not yet decided*: too little evidence either way, never a pass."""

    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"
    NOT_APPLICABLE = "not_applicable"


@dataclass(frozen=True)
class GateResult:
    """One gate's verdict with the numbers behind it; ``evidence`` holds the test's figures
    (sample sizes, bounds, margin, error levels) for the record."""

    name: str
    verdict: Verdict
    value: float | None
    threshold: float | None
    comparison: str
    query: str
    detail: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "verdict": str(self.verdict),
            "value": self.value,
            "threshold": self.threshold,
            "comparison": self.comparison,
            "query": self.query,
            "detail": self.detail,
            "evidence": dict(self.evidence),
        }


@dataclass(frozen=True)
class Judgement:
    """A judge's answer; ``query`` replaces the gate's own when the judge read another one."""

    verdict: Verdict
    value: float | None
    detail: str
    query: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)


def inconclusive(detail: str, **evidence: Any) -> Judgement:
    return Judgement(Verdict.INCONCLUSIVE, None, detail, evidence=evidence)


@dataclass(frozen=True)
class Step:
    """One analysis: the plan, its queries and measurements, the canary's weight, the window, and the error
    level each statistical bound may have at this look (see :func:`modelfleet.rollout.traffic_gates.look_error`)."""

    plan: RolloutPlan
    queries: Queries
    measured: Measurements
    weight: float
    window_seconds: int
    look_error: float

    @property
    def stable_weight(self) -> float:
        return max(0.0, 100.0 - self.weight)


def overall_verdict(results: Sequence[GateResult]) -> Verdict:
    """``fail`` if any gate failed, else ``inconclusive`` if any was, else ``pass``."""
    verdicts = {r.verdict for r in results}
    if Verdict.FAIL in verdicts:
        return Verdict.FAIL
    if Verdict.INCONCLUSIVE in verdicts or not any(v is Verdict.PASS for v in verdicts):
        return Verdict.INCONCLUSIVE
    return Verdict.PASS
