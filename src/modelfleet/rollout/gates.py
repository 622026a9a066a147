"""The canary gates: each one's PromQL over the step window, and its verdict on what Prometheus answers.

Verdicts: ``pass``, ``fail``, ``inconclusive`` (not yet decided: too little evidence, no data, NaN, ±Inf,
Prometheus unreachable or erroring — never a pass) and ``not_applicable`` (the gate cannot apply to this
step: a comparison with a stable version that gets no traffic, accuracy without labels). Every result
carries its query, value, threshold, the test's figures (``evidence``) and a sentence with the numbers.

Gates, in evaluation order (``None`` thresholds turn the optional ones off):

==========================  ===================================================================
``canary_up``               every canary target was up at every scrape of the step, on every host
``canary_restarts``         no counter reset of the canary (a process restart) during the step
``requests``                canary requests in the step >= ``min_requests`` (fewer: inconclusive)
``error_rate``              canary error ratio, by its confidence bounds, vs the limit
``p99_latency_ms``          canary p99, by its confidence bounds on bucket edges, vs the limit
``latency_vs_stable``       canary p99 vs max(ratio × stable p99, stable p99 + latency_margin_ms)
``error_rate_vs_stable``    canary error ratio vs max(ratio × stable's, stable's + error_margin)
``drift_psi``               features drifted with significance: PSI <= drift_psi, KS <= drift_ks
``prediction_psi``          prediction columns likewise: PSI <= prediction_psi, KS <= drift_ks
``min_accuracy``            canary accuracy on labelled rows, by its confidence bounds (no labels: n/a)
==========================  ===================================================================

The traffic gates' statistics (and the error budget over a whole rollout) are in
:mod:`modelfleet.rollout.traffic_gates`; the queries in :mod:`modelfleet.rollout.queries`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from modelfleet.rollout.plan import RolloutPlan
from modelfleet.rollout.prometheus import PrometheusError, QuerySource, Sample
from modelfleet.rollout.queries import Measurements, Queries, label_value
from modelfleet.rollout.significance import proportion_lower, proportion_upper
from modelfleet.rollout.traffic_gates import (
    judge_error_rate,
    judge_error_rate_vs_stable,
    judge_latency_vs_stable,
    judge_p99,
    look_error,
)
from modelfleet.rollout.verdicts import GateResult, Judgement, Step, Verdict, inconclusive, overall_verdict

__all__ = [
    "HEALTH_GATES",
    "GateDef",
    "GateResult",
    "Queries",
    "Verdict",
    "evaluate_gates",
    "gate_definitions",
    "label_value",
    "overall_verdict",
]

HEALTH_GATES = frozenset({"canary_up", "canary_restarts"})


@dataclass(frozen=True)
class GateDef:
    name: str
    threshold: float | None
    comparison: str
    query: str
    judge: Callable[[Step, float], Judgement]


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _judge_up(step: Step, threshold: float) -> Judgement:
    samples = step.measured.run(step.queries.up())
    what = f"up{{job={step.plan.serve_job!r}}} of canary {step.plan.canary}"
    if not samples:
        return inconclusive(f"no data for {what} (is the canary a scrape target labelled model and version?)")
    by_host = {s.labels.get("host", ""): s.value for s in samples}
    down = sorted(h or "(no host label)" for h, v in by_host.items() if not v >= threshold)
    lowest = min(by_host.values())
    if down:
        return Judgement(
            Verdict.FAIL, lowest, f"canary_up: canary {step.plan.canary} was down during the step on {', '.join(down)}"
        )
    missing = sorted(set(step.plan.hosts) - set(by_host))
    if missing:
        hint = "; its targets carry no host label" if set(by_host) == {""} else ""
        return inconclusive(f"no data for {what} on {', '.join(missing)}{hint}")
    hosts = len(by_host)
    return Judgement(Verdict.PASS, lowest, f"canary up at every scrape on {hosts} host{'s' if hosts != 1 else ''}")


def _judge_restarts(step: Step, threshold: float) -> Judgement:
    samples = step.measured.run(step.queries.restarts())
    if not samples:
        return inconclusive(f"no request counters of canary {step.plan.canary} to check for restarts")
    if any(not math.isfinite(s.value) for s in samples):
        return inconclusive("counter resets are not a finite number")
    total = sum(s.value for s in samples)
    if total > threshold:
        hosts = sorted(s.labels.get("host", "") or "(no host label)" for s in samples if s.value > 0)
        return Judgement(
            Verdict.FAIL,
            total,
            f"canary_restarts: {total:g} counter reset(s) (process restarts) "
            f"of canary {step.plan.canary} during the step on {', '.join(hosts)}",
        )
    return Judgement(Verdict.PASS, total, "no process restart during the step")


def _judge_requests(step: Step, threshold: float) -> Judgement:
    value, why = step.measured.single(step.queries.requests(step.plan.canary), "canary request count")
    if value is None:
        return inconclusive(why)
    text = f"{value:.0f} canary requests in {step.window_seconds} s"
    if value < threshold:
        return Judgement(
            Verdict.INCONCLUSIVE, value, f"requests: only {text} (< min_requests {threshold:g}): too few to judge"
        )
    return Judgement(Verdict.PASS, value, f"{text} (min_requests {threshold:g})")


def _column_values(samples: list[Sample], column: str) -> dict[str, float]:
    return {s.labels.get(column, "?"): s.value for s in samples}


def _judge_drift(kind: str, column: str, gate: str) -> Callable[[Step, float], Judgement]:
    """A column counts as drifted when its drift test rejects at this look's share of the rollout's error budget
    (the exporter's KS or chi-squared p-value below ``look_error / columns``; the exporter's own corrected test
    must reject too, as in the ModelFeatureDrift alert) *and* an effect size is past its limit: PSI, or the KS
    statistic, which sees what PSI on quantile bins cannot (a discrete column shifted within its bins). On a
    step's few hundred rows PSI and KS alone are sampling noise."""

    def judge(step: Step, threshold: float) -> Judgement:
        queries, window = step.queries, step.plan.drift_window

        def by_column(statistic: str) -> dict[str, float]:
            samples = step.measured.run(queries.column_statistic(f"modelfleet_{kind}_{statistic}", column))
            return _column_values(samples, column)

        psi = by_column("psi")
        what = f"modelfleet_{kind}_psi of canary {step.plan.canary} in window {window}"
        if not psi:
            return inconclusive(f"no data for {what} (is the drift exporter watching this version?)")
        broken = sorted(name for name, value in psi.items() if not math.isfinite(value))
        if broken:
            return inconclusive(f"{what} is not a finite number for {column} {', '.join(broken)}")
        detected = {name for name, value in by_column("drift_detected").items() if value == 1}
        pvalues: dict[str, float] = {}
        for statistic in ("ks_pvalue", "chi2_pvalue"):
            for name, value in by_column(statistic).items():
                if math.isfinite(value):
                    pvalues[name] = min(value, pvalues.get(name, 1.0))
        level = step.look_error / len(psi)
        significant = {name for name in detected & set(psi) if pvalues.get(name, 1.0) < level}
        ks_limit = step.plan.thresholds.drift_ks
        ks = {k: v for k, v in by_column("ks_statistic").items() if math.isfinite(v)} if ks_limit is not None else {}
        evidence = {"test": "drift test p-value below this look's share of alpha, then PSI and KS effect sizes",
                    "columns": len(psi), "rejected_by_exporter": sorted(detected), "level": level,
                    "pvalues": {name: pvalues[name] for name in sorted(detected) if name in pvalues},
                    "psi_limit": threshold, "ks_limit": ks_limit}
        if not significant:
            worst = max(psi, key=lambda name: psi[name])
            exporter = f"; the exporter's test rejects {', '.join(sorted(detected))}" if detected else ""
            return Judgement(Verdict.PASS, psi[worst], f"no {column}'s drift is significant at this look's level "
                             f"{level:.2g}{exporter} (max {column} PSI {_fmt(psi[worst])} on {column} {worst!r} is "
                             f"within sampling noise; window {window})", evidence=evidence)
        too_far = []
        for name in sorted(significant):
            effects = [f"PSI {_fmt(psi[name])} > {_fmt(threshold)}"] if psi[name] > threshold else []
            if ks_limit is not None and ks.get(name, 0.0) > ks_limit:
                effects.append(f"KS {_fmt(ks[name])} > {_fmt(ks_limit)}")
            if effects:
                too_far.append(f"{column} {name!r} ({', '.join(effects)}, p {pvalues[name]:.2g})")
        top = max(significant, key=lambda name: psi[name])
        limits = f"PSI <= {_fmt(threshold)}" + (f", KS <= {_fmt(ks_limit)}" if ks_limit is not None else "")
        if too_far:
            return Judgement(Verdict.FAIL, psi[top], f"{gate}: {len(significant)} {column}(s) drifted with "
                             f"significance (p < {level:.2g}) past an effect limit: {'; '.join(too_far)} "
                             f"(window {window})", evidence=evidence)
        return Judgement(Verdict.PASS, psi[top], f"{len(significant)} {column}(s) drifted with significance, all "
                         f"within {limits} (max PSI {_fmt(psi[top])} on {column} {top!r}; window {window})",
                         evidence=evidence)

    return judge


def _judge_accuracy(step: Step, threshold: float) -> Judgement:
    """Accuracy on labelled rows as a proportion with Clopper–Pearson bounds, like the error ratio."""
    if not step.plan.accuracy_applies:
        return Judgement(Verdict.NOT_APPLICABLE, None, "accuracy is not measured for regression tasks")
    samples = step.measured.run(step.queries.labelled_rows())
    rows = samples[0].value if len(samples) == 1 else 0.0
    if not samples or not math.isfinite(rows) or rows <= 0:
        return Judgement(
            Verdict.NOT_APPLICABLE,
            None,
            f"no labelled rows of canary {step.plan.canary} in window {step.plan.drift_window}: accuracy not judged",
        )
    value, why = step.measured.single(step.queries.accuracy(), "canary accuracy")
    if value is None:
        return inconclusive(why)
    n = round(rows)
    correct = min(n, max(0, round(value * n)))
    fail_at, pass_at = step.look_error, step.plan.thresholds.beta
    high, low = proportion_upper(correct, n, fail_at), proportion_lower(correct, n, pass_at)
    evidence = {"test": "Clopper-Pearson bounds", "correct": correct, "labelled_rows": n, "lower": low,
                "upper": high, "lower_error": pass_at, "upper_error": fail_at, "limit": threshold}
    text = f"canary accuracy {_fmt(value)} on {n} labelled rows"
    if high < threshold:
        return Judgement(Verdict.FAIL, value, f"min_accuracy: {text}, at most {_fmt(high)} with "
                         f"{1 - fail_at:.4%} confidence < {_fmt(threshold)}", evidence=evidence)
    if low >= threshold:
        return Judgement(Verdict.PASS, value, f"{text}, at least {_fmt(low)} with {1 - pass_at:.0%} confidence "
                         f">= {_fmt(threshold)}", evidence=evidence)
    return Judgement(Verdict.INCONCLUSIVE, value, f"min_accuracy: {text}: between {_fmt(low)} and {_fmt(high)}, "
                     f"on both sides of {_fmt(threshold)}: not yet decided", evidence=evidence)


def gate_definitions(plan: RolloutPlan, window_seconds: int) -> list[GateDef]:
    """The gates this plan turns on, with their PromQL for a window of ``window_seconds``."""
    queries = Queries(plan, window_seconds)
    limits = plan.thresholds
    canary, stable = plan.canary, plan.stable
    defs = [
        GateDef("canary_up", 1.0, ">=", queries.up(), _judge_up),
        GateDef("canary_restarts", 0.0, "<=", queries.restarts(), _judge_restarts),
        GateDef("requests", float(plan.min_requests), ">=", queries.requests(canary), _judge_requests),
    ]
    optional: list[tuple[str, float | None, str, str, Callable[[Step, float], Judgement]]] = [
        ("error_rate", limits.error_rate, "<=", queries.error_counts(canary), judge_error_rate),
        ("p99_latency_ms", limits.p99_latency_ms, "<=", queries.latency_buckets(canary), judge_p99),
        (
            "latency_vs_stable",
            limits.latency_vs_stable,
            "<=",
            queries.side_by_side(queries.latency_buckets(canary), queries.latency_buckets(stable)),
            judge_latency_vs_stable,
        ),
        (
            "error_rate_vs_stable",
            limits.error_rate_vs_stable,
            "<=",
            queries.side_by_side(f"({queries.errors(canary)}) / {queries.requests(canary)}",
                                 f"({queries.errors(stable)}) / {queries.requests(stable)}"),
            judge_error_rate_vs_stable,
        ),
        (
            "drift_psi",
            limits.drift_psi,
            "<=",
            queries.column_statistic("modelfleet_feature_psi", "feature"),
            _judge_drift("feature", "feature", "drift_psi"),
        ),
        (
            "prediction_psi",
            limits.prediction_psi,
            "<=",
            queries.column_statistic("modelfleet_prediction_psi", "output"),
            _judge_drift("prediction", "output", "prediction_psi"),
        ),
        ("min_accuracy", limits.min_accuracy, ">=", queries.accuracy(), _judge_accuracy),
    ]
    defs.extend(
        GateDef(name, threshold, comparison, query, judge)
        for name, threshold, comparison, query, judge in optional
        if threshold is not None
    )
    return defs


def evaluate_gates(
    plan: RolloutPlan, source: QuerySource, *, weight: float, window_seconds: int, at: float
) -> list[GateResult]:
    """Every gate of ``plan`` for the canary at ``weight`` over the ``window_seconds`` before ``at``."""
    window_seconds = max(1, int(window_seconds))
    step = Step(plan, Queries(plan, window_seconds), Measurements(source, at), weight, window_seconds, look_error(plan))
    results = []
    for gate in gate_definitions(plan, window_seconds):
        threshold = gate.threshold if gate.threshold is not None else math.nan
        try:
            judged = gate.judge(step, threshold)
        except PrometheusError as exc:
            judged = inconclusive(f"{gate.name}: {exc}")
        results.append(
            GateResult(
                gate.name,
                judged.verdict,
                judged.value,
                gate.threshold,
                gate.comparison,
                judged.query or gate.query,
                judged.detail,
                judged.evidence,
            )
        )
    return results
