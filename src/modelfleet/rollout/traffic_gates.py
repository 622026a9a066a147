"""The traffic gates — errors and latency, absolute and against the stable — as statistical judgements, and the
error budget that every statistical gate (these, drift and accuracy) shares over a whole rollout.

Each gate answers *fail* only when a confidence bound is past its limit, *pass* only when the opposite
bound is within it, and *inconclusive* (not yet decided) in between: more traffic decides.

- The **fail** side controls false rollbacks. The whole rollout may make at most
  ``steps × (failure_limit + inconclusive_limit) × LOOKS_PER_ANALYSIS`` looks at each of its statistical
  gates; every fail-side bound is taken at ``alpha / (gates × looks)`` (Bonferroni), so a canary equal to
  the stable is rolled back by these gates with probability at most ``alpha`` over the whole rollout,
  whatever the traffic, the number of steps, polls and holds.
- The **pass** side controls misses: a gate passes a canary exactly at its limit with probability at
  most ``beta`` at one look (a comparison splits ``beta`` between its two bounds).
- A comparison with the stable fails only when the canary is worse beyond *both* margins — a relative one
  (``latency_vs_stable``, ``error_rate_vs_stable``) and an absolute one (``latency_margin_ms``,
  ``error_margin``) — from the stable's upper bound, so noise far below what anyone would act on can never
  fail a step; it splits its level between the canary's bound and the stable's. It passes when the
  canary's upper bound is within both margins of the stable's upper bound (each at ``beta / 2``).
- Latency is known to one histogram bucket (26% wide): a margin or limit that falls inside a bucket is
  read as that bucket's upper edge on the pass side (a p99 in the limit's own bucket passes), and the
  fail side needs the canary's bucket to lie wholly past it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

from modelfleet.rollout.plan import RolloutPlan, format_weight
from modelfleet.rollout.significance import (
    Histogram,
    QuantileBounds,
    format_bucket_ms,
    format_seconds_ms,
    proportion_lower,
    proportion_upper,
    quantile_bounds,
)
from modelfleet.rollout.verdicts import Judgement, Step, Verdict, inconclusive

#: The gates whose fail side spends the rollout's ``alpha`` (the drift and accuracy gates are in gates.py).
STATISTICAL_GATES = ("error_rate", "p99_latency_ms", "latency_vs_stable", "error_rate_vs_stable", "drift_psi",
                     "prediction_psi", "min_accuracy")
#: Looks one analysis makes at most: at the end of the interval, then while it is not yet decided.
LOOKS_PER_ANALYSIS = 4
#: The latency quantile the gates judge.
QUANTILE = 0.99
_T = TypeVar("_T")


def rollout_looks(plan: RolloutPlan) -> int:
    """The most looks a rollout makes at one gate: every step, every analysis it may hold for, every poll."""
    return plan.step_count * (plan.failure_limit + plan.inconclusive_limit) * LOOKS_PER_ANALYSIS


def statistical_gates(plan: RolloutPlan) -> int:
    return sum(getattr(plan.thresholds, name) is not None for name in STATISTICAL_GATES)


def look_error(plan: RolloutPlan) -> float:
    """The error level of a fail-side bound at one look: ``alpha`` shared by every gate and look."""
    return plan.thresholds.alpha / max(1, statistical_gates(plan) * rollout_looks(plan))


def _percent(value: float) -> str:
    return f"{value * 100:.3g}%"


def _confidence(error: float) -> str:
    """``99.99%`` for an error level of 1e-4 (enough digits to tell it from 100%)."""
    digits = max(0, math.ceil(-math.log10(error)) - 2) if error > 0 else 0
    return f"{(1 - error) * 100:.{digits}f}%"


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _ms(value: float) -> float | None:
    return _finite(value * 1000)


def _counts(step: Step, version: str, role: str) -> tuple[int, int] | Judgement:
    """(errors, requests) of a version over the window, or why they are not known."""
    requests, why = step.measured.count(step.queries.requests(version), f"{role} request count")
    if requests is None:
        return inconclusive(why)
    if requests <= 0:
        return inconclusive(f"no {role} requests in {step.window_seconds} s")
    errors, why = step.measured.count(step.queries.errors(version), f"{role} error count")
    if errors is None:
        return inconclusive(why)
    return min(errors, requests), requests


def judge_error_rate(step: Step, limit: float) -> Judgement:
    counts = _counts(step, step.plan.canary, "canary")
    if isinstance(counts, Judgement):
        return counts
    errors, n = counts
    fail_at, pass_at = step.look_error, step.plan.thresholds.beta
    low, high = proportion_lower(errors, n, fail_at), proportion_upper(errors, n, pass_at)
    ratio = errors / n
    evidence = {"test": "Clopper-Pearson bounds", "errors": errors, "requests": n, "lower": low, "upper": high,
                "lower_error": fail_at, "upper_error": pass_at, "limit": limit}
    text = f"canary errors {errors}/{n} = {_percent(ratio)}"
    if limit <= 0:
        verdict = Verdict.FAIL if errors else Verdict.PASS
        sentence = f"{text} with a limit of 0" + (": error_rate: any error fails" if errors else "")
        return Judgement(verdict, ratio, sentence, evidence=evidence)
    if low > limit:
        return Judgement(Verdict.FAIL, ratio, f"error_rate: {text}, at least {_percent(low)} with "
                         f"{_confidence(fail_at)} confidence > limit {_percent(limit)}", evidence=evidence)
    if high <= limit:
        return Judgement(Verdict.PASS, ratio, f"{text}, at most {_percent(high)} with {_confidence(pass_at)} "
                         f"confidence <= limit {_percent(limit)}", evidence=evidence)
    return Judgement(Verdict.INCONCLUSIVE, ratio, f"error_rate: {text}: between {_percent(low)} and "
                     f"{_percent(high)}, on both sides of limit {_percent(limit)}: not yet decided", evidence=evidence)


def _histogram(step: Step, version: str, role: str) -> Histogram | Judgement:
    histogram, why = step.measured.histogram(step.queries.latency_buckets(version), f"{role} latency histogram")
    return inconclusive(why) if histogram is None else histogram


def _bounds_evidence(prefix: str, bounds: QuantileBounds) -> dict[str, Any]:
    return {f"{prefix}_requests": bounds.n, f"{prefix}_p99_low_ms": _ms(bounds.low),
            f"{prefix}_p99_high_ms": _ms(bounds.high), f"{prefix}_p99_bucket_ms": [_ms(v) for v in bounds.estimate]}


def judge_p99(step: Step, limit_ms: float) -> Judgement:
    histogram = _histogram(step, step.plan.canary, "canary")
    if isinstance(histogram, Judgement):
        return histogram
    fail_at, pass_at = step.look_error, step.plan.thresholds.beta
    bounds = quantile_bounds(histogram, QUANTILE, fail_at, pass_at)
    limit = limit_ms / 1000
    judged_at = histogram.edge_at_or_above(limit)
    value = _ms(bounds.estimate[1])
    evidence = {"test": "order-statistic bounds of p99 on bucket edges", **_bounds_evidence("canary", bounds),
                "lower_error": fail_at, "upper_error": pass_at, "limit_ms": limit_ms}
    text = f"canary p99 in {format_bucket_ms(bounds.estimate)} ({bounds.n} requests)"
    if bounds.low >= limit:
        return Judgement(Verdict.FAIL, value, f"p99_latency_ms: {text}, above {format_seconds_ms(bounds.low)} with "
                         f"{_confidence(fail_at)} confidence >= limit {limit_ms:g} ms", evidence=evidence)
    if bounds.high <= judged_at:
        resolution = "" if judged_at == limit else f" (at bucket resolution: {format_seconds_ms(judged_at)})"
        return Judgement(Verdict.PASS, value, f"{text}, at most {format_seconds_ms(bounds.high)} with "
                         f"{_confidence(pass_at)} confidence <= limit {limit_ms:g} ms{resolution}", evidence=evidence)
    return Judgement(Verdict.INCONCLUSIVE, value, f"p99_latency_ms: {text}: between "
                     f"{format_seconds_ms(bounds.low)} and {format_seconds_ms(bounds.high)}, on both sides of limit "
                     f"{limit_ms:g} ms: not yet decided", evidence=evidence)


def stable_unusable(step: Step) -> Judgement | None:
    """Why a comparison with the stable version cannot be made at this step, if it cannot."""
    stable = step.plan.stable
    if step.stable_weight <= 0:
        return Judgement(Verdict.NOT_APPLICABLE, None, f"stable {stable} gets no traffic at canary weight "
                         f"{format_weight(step.weight)}: no comparison at this step")
    count, why = step.measured.single(step.queries.requests(stable), "stable request count")
    if count is None:
        return inconclusive(why)
    needed = max(1, step.plan.min_requests)
    if count < needed:
        return inconclusive(f"only {count:.0f} stable requests in {step.window_seconds} s (< {needed}): "
                            "too few to compare with")
    return None


def _margin(value: float, ratio: float, difference: float) -> float:
    """The most the canary may have where the stable has ``value``: beyond both margins is worse."""
    return max(value * ratio, value + difference)


def _both(step: Step, read: Callable[[Step, str, str], _T | Judgement]) -> tuple[_T, _T] | Judgement:
    """What ``read`` gives for the canary and the stable, or why the comparison cannot be made."""
    unusable = stable_unusable(step)
    if unusable is not None:
        return unusable
    canary = read(step, step.plan.canary, "canary")
    if isinstance(canary, Judgement):
        return canary
    stable = read(step, step.plan.stable, "stable")
    if isinstance(stable, Judgement):
        return stable
    return canary, stable


def judge_latency_vs_stable(step: Step, ratio: float) -> Judgement:
    both = _both(step, _histogram)
    if isinstance(both, Judgement):
        return both
    canary_hist, stable_hist = both
    fail_at, pass_at = step.look_error / 2, step.plan.thresholds.beta / 2
    difference = step.plan.thresholds.latency_margin_ms / 1000
    canary = quantile_bounds(canary_hist, QUANTILE, fail_at, pass_at)
    stable = quantile_bounds(stable_hist, QUANTILE, pass_at, fail_at)
    stable_pass = quantile_bounds(stable_hist, QUANTILE, pass_at, pass_at)
    fail_margin = _margin(stable.high, ratio, difference)
    pass_margin = canary_hist.edge_at_or_above(_margin(stable_pass.high, ratio, difference))
    # For the record (and beside the threshold on dashboards): the ratio of the sample p99s' bucket edges.
    value = _finite(canary.estimate[1] / stable.estimate[1]) if stable.estimate[1] > 0 else None
    evidence = {"test": "order-statistic bounds of both p99s on bucket edges", **_bounds_evidence("canary", canary),
                **_bounds_evidence("stable", stable), "ratio": ratio, "margin_ms": difference * 1000,
                "fail_margin_ms": _ms(fail_margin), "pass_margin_ms": _ms(pass_margin),
                "lower_error": fail_at, "upper_error": pass_at}
    text = (f"canary p99 in {format_bucket_ms(canary.estimate)} ({canary.n} requests) vs stable p99 in "
            f"{format_bucket_ms(stable.estimate)} ({stable.n} requests)")
    margins = f"max({ratio:g} × stable p99, stable p99 + {difference * 1000:g} ms)"
    if canary.low >= fail_margin:
        return Judgement(Verdict.FAIL, value, f"latency_vs_stable: {text}: canary p99 above "
                         f"{format_seconds_ms(canary.low)} >= {margins} = {format_seconds_ms(fail_margin)} "
                         f"(stable p99 <= {format_seconds_ms(stable.high)}), {_confidence(2 * fail_at)} confidence",
                         evidence=evidence)
    if canary.high <= pass_margin:
        return Judgement(Verdict.PASS, value, f"{text}: canary p99 <= {format_seconds_ms(canary.high)}, within "
                         f"{margins} = {format_seconds_ms(pass_margin)} at bucket resolution (stable p99 <= "
                         f"{format_seconds_ms(stable_pass.high)}), {_confidence(2 * pass_at)} confidence",
                         evidence=evidence)
    return Judgement(Verdict.INCONCLUSIVE, value, f"latency_vs_stable: {text}: canary p99 between "
                     f"{format_seconds_ms(canary.low)} and {format_seconds_ms(canary.high)}, margin {margins} between "
                     f"{format_seconds_ms(pass_margin)} and {format_seconds_ms(fail_margin)}: not yet decided",
                     evidence=evidence)


def judge_error_rate_vs_stable(step: Step, ratio: float) -> Judgement:
    both = _both(step, _counts)
    if isinstance(both, Judgement):
        return both
    (c_errors, c_n), (s_errors, s_n) = both
    fail_at, pass_at = step.look_error / 2, step.plan.thresholds.beta / 2
    difference = step.plan.thresholds.error_margin
    c_low, c_high = proportion_lower(c_errors, c_n, fail_at), proportion_upper(c_errors, c_n, pass_at)
    s_high_pass, s_high = proportion_upper(s_errors, s_n, pass_at), proportion_upper(s_errors, s_n, fail_at)
    fail_margin, pass_margin = _margin(s_high, ratio, difference), _margin(s_high_pass, ratio, difference)
    value = c_errors / c_n
    evidence = {"test": "Clopper-Pearson bounds of both error ratios", "canary_errors": c_errors,
                "canary_requests": c_n, "stable_errors": s_errors, "stable_requests": s_n, "ratio": ratio,
                "margin": difference, "canary_lower": c_low, "canary_upper": c_high, "stable_upper_pass": s_high_pass,
                "stable_upper": s_high, "lower_error": fail_at, "upper_error": pass_at}
    text = (f"canary errors {c_errors}/{c_n} = {_percent(value)} vs stable {s_errors}/{s_n} = "
            f"{_percent(s_errors / s_n)}")
    margins = f"max({ratio:g} × stable, stable + {_percent(difference)})"
    if c_low > fail_margin:
        return Judgement(Verdict.FAIL, value, f"error_rate_vs_stable: {text}: canary at least {_percent(c_low)} > "
                         f"{margins} = {_percent(fail_margin)} (stable at most {_percent(s_high)}), "
                         f"{_confidence(2 * fail_at)} confidence", evidence=evidence)
    if c_high <= pass_margin:
        return Judgement(Verdict.PASS, value, f"{text}: canary at most {_percent(c_high)}, within {margins} = "
                         f"{_percent(pass_margin)} (stable at most {_percent(s_high_pass)}), "
                         f"{_confidence(2 * pass_at)} confidence", evidence=evidence)
    return Judgement(Verdict.INCONCLUSIVE, value, f"error_rate_vs_stable: {text}: canary between {_percent(c_low)} "
                     f"and {_percent(c_high)}, margin {margins} between {_percent(pass_margin)} and "
                     f"{_percent(fail_margin)}: not yet decided", evidence=evidence)
