"""The canary gates as they were before the statistical judgement (commit 05220dc), for comparison only.

Point estimates against thresholds: the error ratio against ``error_rate``, Prometheus' ``histogram_quantile``
(linear inside a bucket) of the server's old latency buckets against ``p99_latency_ms`` and as a ratio against
the stable's, drift PSI where the exporter's test rejects; fewer than ``min_requests`` requests (canary, or
stable for the comparison) is inconclusive; a failure on too few requests waited for more traffic.
"""

from __future__ import annotations

import math

from modelfleet.rollout.plan import RolloutPlan
from modelfleet.rollout.verdicts import GateResult, Verdict, overall_verdict
from modelfleet.serve.metrics import LATENCY_BUCKETS

#: The model server's request latency buckets before the R10 grid (seconds): the grid its queue and compute
#: histograms still use.
OLD_BUCKETS = LATENCY_BUCKETS


def histogram_quantile(q: float, cumulative: list[tuple[float, float]]) -> float:
    """Prometheus' histogram_quantile over ``(le, cumulative count)`` pairs (+Inf last)."""
    total = cumulative[-1][1]
    if total <= 0:
        return math.nan
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, count in cumulative:
        if count >= rank:
            if math.isinf(bound):
                return lower
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, count
    return lower


def _result(name: str, verdict: Verdict, detail: str = "") -> GateResult:
    return GateResult(name, verdict, None, None, "<=", "", detail)


def old_gates(plan: RolloutPlan, weight: float, canary: tuple[int, int, list[tuple[float, float]]],
              stable: tuple[int, int, list[tuple[float, float]]], drift_fail: bool | None) -> list[GateResult]:
    """The old verdicts of one analysis, from (requests, errors, cumulative old buckets) of each version."""
    limits = plan.thresholds
    c_n, c_err, c_hist = canary
    s_n, _s_err, s_hist = stable
    results = [_result("requests", Verdict.PASS if c_n >= plan.min_requests else Verdict.INCONCLUSIVE)]
    if limits.error_rate is not None:
        if c_n == 0:
            results.append(_result("error_rate", Verdict.INCONCLUSIVE))
        else:
            ratio = c_err / c_n
            results.append(_result("error_rate", Verdict.PASS if ratio <= limits.error_rate else Verdict.FAIL,
                                   f"error_rate: canary error ratio {ratio:.4g} > {limits.error_rate:g}"))
    c_p99 = histogram_quantile(0.99, c_hist) * 1000
    if limits.p99_latency_ms is not None:
        verdict = Verdict.INCONCLUSIVE if math.isnan(c_p99) else (
            Verdict.PASS if c_p99 <= limits.p99_latency_ms else Verdict.FAIL)
        results.append(_result("p99_latency_ms", verdict))
    if limits.latency_vs_stable is not None:
        if weight >= 100:
            results.append(_result("latency_vs_stable", Verdict.NOT_APPLICABLE))
        elif s_n < max(1, plan.min_requests):
            results.append(_result("latency_vs_stable", Verdict.INCONCLUSIVE))
        else:
            s_p99 = histogram_quantile(0.99, s_hist) * 1000
            if math.isnan(c_p99) or math.isnan(s_p99) or s_p99 <= 0:
                results.append(_result("latency_vs_stable", Verdict.INCONCLUSIVE))
            else:
                ratio = c_p99 / s_p99
                results.append(_result("latency_vs_stable",
                                       Verdict.PASS if ratio <= limits.latency_vs_stable else Verdict.FAIL,
                                       f"latency_vs_stable: canary p99 {c_p99:.4g} ms / stable p99 {s_p99:.4g} ms"))
    if limits.drift_psi is not None and drift_fail is not None:
        results.append(_result("drift_psi", Verdict.FAIL if drift_fail else Verdict.PASS))
    return results


def old_keep_waiting(gates: list[GateResult]) -> bool:
    """Waited while inconclusive, or failed while the canary had too few requests."""
    verdict = overall_verdict(gates)
    too_few = any(g.name == "requests" and g.verdict is Verdict.INCONCLUSIVE for g in gates)
    return verdict is Verdict.INCONCLUSIVE or (verdict is Verdict.FAIL and too_few)
