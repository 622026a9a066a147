"""The canary gates: each one's PromQL over the step window, and its verdict on what Prometheus answers.

Verdicts: ``pass``, ``fail``, ``inconclusive`` (no data, NaN, ±Inf, too few requests, Prometheus
unreachable or erroring — never a pass) and ``not_applicable`` (the gate cannot apply to this step:
a comparison with a stable version that gets no traffic, accuracy without labels). Every result carries
its query, value, threshold and a sentence with the numbers.

Gates, in evaluation order (``None`` thresholds turn the optional ones off):

==========================  ===================================================================
``canary_up``               every canary target was up at every scrape of the step, on every host
``canary_restarts``         no counter reset of the canary (a process restart) during the step
``requests``                canary requests in the step >= ``min_requests`` (fewer: inconclusive)
``error_rate``              canary errors (failures but ``invalid_request``) / all requests <= threshold
``p99_latency_ms``          canary p99 request latency (ms) <= threshold
``latency_vs_stable``       canary p99 / stable p99 <= threshold
``error_rate_vs_stable``    canary error ratio / max(stable error ratio, floor) <= threshold
``drift_psi``               max feature PSI of the canary (shortest drift window) <= threshold
``prediction_psi``          max prediction PSI of the canary <= threshold
``min_accuracy``            canary accuracy on labelled rows >= threshold (no labels: not applicable)
==========================  ===================================================================

Raw counters are read over exactly the step window (``increase(...[<window>s])``), so a 30 s step is
judged on its 30 s and a 10 min step on its 10 min; the recording rules
(``model_version:modelfleet_error_ratio:rate1m`` & co.) show the same quantities on dashboards at a
fixed 1m/5m resolution.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from modelfleet.rollout.plan import RolloutPlan, format_weight
from modelfleet.rollout.prometheus import PrometheusError, QuerySource, Sample

REQUEST_COUNTERS = "nv_inference_request_(success|failure)_total"
FAILURE_COUNTER = "nv_inference_request_failure_total"
#: A 400 for a malformed request is the right answer to a client's mistake, not the canary's error (as in the
#: recording rules' ``errors``); every other failure reason (inference, internal, queue_full, ...) counts.
NOT_AN_ERROR = 'reason!="invalid_request"'
LATENCY_BUCKETS = "modelfleet_request_duration_seconds_bucket"
#: Error ratios below this are not told apart by ``error_rate_vs_stable`` (with 1 / canary requests).
ERROR_RATIO_FLOOR = 0.001
HEALTH_GATES = frozenset({"canary_up", "canary_restarts"})


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"
    NOT_APPLICABLE = "not_applicable"


@dataclass(frozen=True)
class GateResult:
    """One gate's verdict with the numbers behind it."""

    name: str
    verdict: Verdict
    value: float | None
    threshold: float | None
    comparison: str
    query: str
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "verdict": str(self.verdict),
            "value": self.value,
            "threshold": self.threshold,
            "comparison": self.comparison,
            "query": self.query,
            "detail": self.detail,
        }


def overall_verdict(results: Sequence[GateResult]) -> Verdict:
    """``fail`` if any gate failed, else ``inconclusive`` if any was, else ``pass``."""
    verdicts = {r.verdict for r in results}
    if Verdict.FAIL in verdicts:
        return Verdict.FAIL
    if Verdict.INCONCLUSIVE in verdicts or not any(v is Verdict.PASS for v in verdicts):
        return Verdict.INCONCLUSIVE
    return Verdict.PASS


def label_value(text: str) -> str:
    """A PromQL string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class Queries:
    """The PromQL of every gate for one plan and one step window."""

    def __init__(self, plan: RolloutPlan, window_seconds: int) -> None:
        self.plan = plan
        self.window = f"{max(1, int(window_seconds))}s"

    def selector(self, version: str, **extra: str) -> str:
        labels = {"model": self.plan.model, "version": version, **extra}
        return ",".join(f"{k}={label_value(v)}" for k, v in labels.items())

    def served(self, version: str, *matchers: str) -> str:
        """Label matchers of a version's model server series (``job`` first, as the recording rules)."""
        return ",".join((f"job={label_value(self.plan.serve_job)}", self.selector(version), *matchers))

    def requests(self, version: str) -> str:
        return f'sum(increase({{__name__=~"{REQUEST_COUNTERS}",{self.served(version)}}}[{self.window}]))'

    def error_ratio(self, version: str) -> str:
        failures = f"sum(increase({FAILURE_COUNTER}{{{self.served(version, NOT_AN_ERROR)}}}[{self.window}]))"
        return f"({failures} or vector(0)) / {self.requests(version)}"

    def p99_ms(self, version: str) -> str:
        buckets = f"sum by (le) (increase({LATENCY_BUCKETS}{{{self.served(version)}}}[{self.window}]))"
        return f"histogram_quantile(0.99, {buckets}) * 1000"

    def up(self) -> str:
        return f"min by (host) (min_over_time(up{{{self.served(self.plan.canary)}}}[{self.window}]))"

    def restarts(self) -> str:
        return (
            f'sum by (host) (resets({{__name__=~"{REQUEST_COUNTERS}",{self.served(self.plan.canary)}}}[{self.window}]))'
        )

    def psi(self, metric: str, column: str) -> str:
        selector = self.selector(self.plan.canary, window=self.plan.drift_window)
        return f"max by ({column}) ({metric}{{{selector}}})"

    def drift_detected(self, metric: str, column: str) -> str:
        """Per column, 1 where the exporter's corrected drift test rejects (the PSI metric's companion)."""
        selector = self.selector(self.plan.canary, window=self.plan.drift_window)
        return f"max by ({column}) ({metric.removesuffix('_psi')}_drift_detected{{{selector}}})"

    def labelled_rows(self) -> str:
        selector = self.selector(self.plan.canary, window=self.plan.drift_window)
        return f"sum(modelfleet_model_labelled_rows{{{selector}}})"

    def accuracy(self) -> str:
        selector = self.selector(self.plan.canary, window=self.plan.drift_window)
        weighted = f"modelfleet_model_accuracy{{{selector}}} * modelfleet_model_labelled_rows{{{selector}}}"
        return f"sum({weighted}) / {self.labelled_rows()}"


class Measurements:
    """Runs queries at one evaluation time, each once; after an unreachable Prometheus, fails fast."""

    def __init__(self, source: QuerySource, at: float) -> None:
        self.source = source
        self.at = at
        self._cache: dict[str, list[Sample] | PrometheusError] = {}
        self._down: PrometheusError | None = None

    def run(self, promql: str) -> list[Sample]:
        if promql not in self._cache:
            if self._down is not None:
                self._cache[promql] = self._down
            else:
                try:
                    self._cache[promql] = self.source.query(promql, self.at)
                except PrometheusError as exc:
                    self._cache[promql] = exc
                    if exc.unreachable:
                        self._down = exc
        answer = self._cache[promql]
        if isinstance(answer, PrometheusError):
            raise answer
        return answer

    def single(self, promql: str, what: str) -> tuple[float | None, str]:
        """The one finite value of an aggregated query, or ``None`` and why not."""
        return single_value(self.run(promql), what)


def single_value(samples: Sequence[Sample], what: str) -> tuple[float | None, str]:
    if not samples:
        return None, f"no data for {what}"
    if len(samples) > 1:
        return None, f"{what}: expected one series, Prometheus returned {len(samples)}"
    value = samples[0].value
    if math.isnan(value):
        return None, f"{what} is NaN (nothing observed in the window)"
    if math.isinf(value):
        return None, f"{what} is {'+' if value > 0 else '-'}Inf"
    return value, ""


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    value: float | None
    detail: str
    query: str | None = None


@dataclass(frozen=True)
class _Step:
    plan: RolloutPlan
    queries: Queries
    measured: Measurements
    weight: float
    window_seconds: int

    @property
    def stable_weight(self) -> float:
        return max(0.0, 100.0 - self.weight)


@dataclass(frozen=True)
class GateDef:
    name: str
    threshold: float | None
    comparison: str
    query: str
    judge: Callable[[_Step, float], Judgement]


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _inconclusive(detail: str) -> Judgement:
    return Judgement(Verdict.INCONCLUSIVE, None, detail)


def _at_most(name: str, value: float, threshold: float, text: str) -> Judgement:
    if value <= threshold:
        return Judgement(Verdict.PASS, value, f"{text} <= {_fmt(threshold)}")
    return Judgement(Verdict.FAIL, value, f"{name}: {text} > {_fmt(threshold)}")


def _judge_up(step: _Step, threshold: float) -> Judgement:
    samples = step.measured.run(step.queries.up())
    what = f"up{{job={step.plan.serve_job!r}}} of canary {step.plan.canary}"
    if not samples:
        return _inconclusive(f"no data for {what} (is the canary a scrape target labelled model and version?)")
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
        return _inconclusive(f"no data for {what} on {', '.join(missing)}{hint}")
    hosts = len(by_host)
    return Judgement(Verdict.PASS, lowest, f"canary up at every scrape on {hosts} host{'s' if hosts != 1 else ''}")


def _judge_restarts(step: _Step, threshold: float) -> Judgement:
    samples = step.measured.run(step.queries.restarts())
    if not samples:
        return _inconclusive(f"no request counters of canary {step.plan.canary} to check for restarts")
    if any(not math.isfinite(s.value) for s in samples):
        return _inconclusive("counter resets are not a finite number")
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


def _judge_requests(step: _Step, threshold: float) -> Judgement:
    value, why = step.measured.single(step.queries.requests(step.plan.canary), "canary request count")
    if value is None:
        return _inconclusive(why)
    text = f"{value:.0f} canary requests in {step.window_seconds} s"
    if value < threshold:
        return Judgement(
            Verdict.INCONCLUSIVE, value, f"requests: only {text} (< min_requests {threshold:g}): too few to judge"
        )
    return Judgement(Verdict.PASS, value, f"{text} (min_requests {threshold:g})")


def _judge_error_rate(step: _Step, threshold: float) -> Judgement:
    value, why = step.measured.single(step.queries.error_ratio(step.plan.canary), "canary error ratio")
    if value is None:
        return _inconclusive(why)
    return _at_most("error_rate", value, threshold, f"canary error ratio {_fmt(value)}")


def _judge_p99(step: _Step, threshold: float) -> Judgement:
    value, why = step.measured.single(step.queries.p99_ms(step.plan.canary), "canary p99 latency")
    if value is None:
        return _inconclusive(why)
    return _at_most("p99_latency_ms", value, threshold, f"canary p99 {_fmt(value)} ms")


def _stable_unusable(step: _Step) -> Judgement | None:
    """Why a comparison with the stable version cannot be made at this step, if it cannot."""
    stable = step.plan.stable
    if step.stable_weight <= 0:
        return Judgement(
            Verdict.NOT_APPLICABLE,
            None,
            f"stable {stable} gets no traffic at canary weight "
            f"{format_weight(step.weight)}: no comparison at this step",
        )
    count, why = step.measured.single(step.queries.requests(stable), "stable request count")
    if count is None:
        return _inconclusive(why)
    needed = max(1, step.plan.min_requests)
    if count < needed:
        return _inconclusive(
            f"only {count:.0f} stable requests in {step.window_seconds} s (< {needed}): too few to compare with"
        )
    return None


def _judge_latency_vs_stable(step: _Step, threshold: float) -> Judgement:
    unusable = _stable_unusable(step)
    if unusable is not None:
        return unusable
    canary, why = step.measured.single(step.queries.p99_ms(step.plan.canary), "canary p99 latency")
    if canary is None:
        return _inconclusive(why)
    stable, why = step.measured.single(step.queries.p99_ms(step.plan.stable), "stable p99 latency")
    if stable is None:
        return _inconclusive(why)
    if stable <= 0:
        return _inconclusive(f"stable p99 latency is {stable:g} ms: no ratio")
    ratio = canary / stable
    return _at_most(
        "latency_vs_stable",
        ratio,
        threshold,
        f"canary p99 {_fmt(canary)} ms / stable p99 {_fmt(stable)} ms = {_fmt(ratio)}",
    )


def _judge_error_rate_vs_stable(step: _Step, threshold: float) -> Judgement:
    unusable = _stable_unusable(step)
    if unusable is not None:
        return unusable
    queries = step.queries
    canary, why = step.measured.single(queries.error_ratio(step.plan.canary), "canary error ratio")
    if canary is None:
        return _inconclusive(why)
    stable, why = step.measured.single(queries.error_ratio(step.plan.stable), "stable error ratio")
    if stable is None:
        return _inconclusive(why)
    requests = step.measured.single(queries.requests(step.plan.canary), "canary request count")[0]
    floor = max(ERROR_RATIO_FLOOR, 1.0 / requests) if requests else ERROR_RATIO_FLOOR
    ratio = canary / max(stable, floor)
    query = f"({queries.error_ratio(step.plan.canary)}) / clamp_min({queries.error_ratio(step.plan.stable)}, {floor:g})"
    judged = _at_most(
        "error_rate_vs_stable",
        ratio,
        threshold,
        f"canary error ratio {_fmt(canary)} / max(stable {_fmt(stable)}, floor {_fmt(floor)}) = {_fmt(ratio)}",
    )
    return Judgement(judged.verdict, judged.value, judged.detail, query=query)


def _judge_psi(metric: str, column: str, gate: str) -> Callable[[_Step, float], Judgement]:
    """PSI counts where the exporter's corrected drift test rejects too, as in the ModelFeatureDrift alert:
    on a step's few hundred rows, PSI alone is sampling noise (about bins / rows), the test is not."""

    def judge(step: _Step, threshold: float) -> Judgement:
        samples = step.measured.run(step.queries.psi(metric, column))
        what = f"{metric} of canary {step.plan.canary} in window {step.plan.drift_window}"
        if not samples:
            return _inconclusive(f"no data for {what} (is the drift exporter watching this version?)")
        broken = sorted(s.labels.get(column, "?") for s in samples if not math.isfinite(s.value))
        if broken:
            return _inconclusive(f"{what} is not a finite number for {column} {', '.join(broken)}")
        detected = {s.labels.get(column, "?") for s in step.measured.run(step.queries.drift_detected(metric, column))
                    if s.value == 1}
        worst = max(samples, key=lambda s: s.value)
        drifted = [s for s in samples if s.labels.get(column, "?") in detected]
        if not drifted:
            return Judgement(
                Verdict.PASS,
                worst.value,
                f"no {column}'s drift test rejects (max {column} PSI {_fmt(worst.value)} on {column} "
                f"{worst.labels.get(column, '?')!r} is within sampling noise; window {step.plan.drift_window})",
            )
        worst = max(drifted, key=lambda s: s.value)
        name = worst.labels.get(column, "?")
        return _at_most(
            gate,
            worst.value,
            threshold,
            f"max {column} PSI {_fmt(worst.value)} among the {len(drifted)} {column}(s) whose drift test rejects "
            f"({column} {name!r}, {len(samples)} {column}s, window {step.plan.drift_window})",
        )

    return judge


def _judge_accuracy(step: _Step, threshold: float) -> Judgement:
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
        return _inconclusive(why)
    text = f"canary accuracy {_fmt(value)} on {rows:.0f} labelled rows"
    if value >= threshold:
        return Judgement(Verdict.PASS, value, f"{text} >= {_fmt(threshold)}")
    return Judgement(Verdict.FAIL, value, f"min_accuracy: {text} < {_fmt(threshold)}")


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
    optional: list[tuple[str, float | None, str, str, Callable[[_Step, float], Judgement]]] = [
        ("error_rate", limits.error_rate, "<=", queries.error_ratio(canary), _judge_error_rate),
        ("p99_latency_ms", limits.p99_latency_ms, "<=", queries.p99_ms(canary), _judge_p99),
        (
            "latency_vs_stable",
            limits.latency_vs_stable,
            "<=",
            f"({queries.p99_ms(canary)}) / ({queries.p99_ms(stable)})",
            _judge_latency_vs_stable,
        ),
        (
            "error_rate_vs_stable",
            limits.error_rate_vs_stable,
            "<=",
            f"({queries.error_ratio(canary)}) / clamp_min({queries.error_ratio(stable)}, {ERROR_RATIO_FLOOR:g})",
            _judge_error_rate_vs_stable,
        ),
        (
            "drift_psi",
            limits.drift_psi,
            "<=",
            queries.psi("modelfleet_feature_psi", "feature"),
            _judge_psi("modelfleet_feature_psi", "feature", "drift_psi"),
        ),
        (
            "prediction_psi",
            limits.prediction_psi,
            "<=",
            queries.psi("modelfleet_prediction_psi", "output"),
            _judge_psi("modelfleet_prediction_psi", "output", "prediction_psi"),
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
    step = _Step(plan, Queries(plan, window_seconds), Measurements(source, at), weight, window_seconds)
    results = []
    for gate in gate_definitions(plan, window_seconds):
        threshold = gate.threshold if gate.threshold is not None else math.nan
        try:
            judged = gate.judge(step, threshold)
        except PrometheusError as exc:
            judged = _inconclusive(f"{gate.name}: {exc}")
        results.append(
            GateResult(
                gate.name,
                judged.verdict,
                judged.value,
                gate.threshold,
                gate.comparison,
                judged.query or gate.query,
                judged.detail,
            )
        )
    return results
