"""The PromQL the gates read over a step window, and one evaluation time's answers (each query run once).

Raw counters are read over exactly the step window (``increase(...[<window>s])``), so a 30 s step is
judged on its 30 s and a 10 min step on its 10 min. Traffic gates read counts — requests, errors and
latency histogram buckets — never ratios or interpolated quantiles: the statistics need the counts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from modelfleet.rollout.plan import RolloutPlan
from modelfleet.rollout.prometheus import PrometheusError, QuerySource, Sample
from modelfleet.rollout.significance import Histogram

REQUEST_COUNTERS = "nv_inference_request_(success|failure)_total"
FAILURE_COUNTER = "nv_inference_request_failure_total"
#: A 400 for a malformed request is the right answer to a client's mistake, not the canary's error (as in the
#: recording rules' ``errors``); every other failure reason (inference, internal, queue_full, ...) counts.
NOT_AN_ERROR = 'reason!="invalid_request"'
LATENCY_BUCKETS = "modelfleet_request_duration_seconds_bucket"


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

    def errors(self, version: str) -> str:
        """Errors the version is responsible for; 0 when no failure series exists yet."""
        return f"sum(increase({FAILURE_COUNTER}{{{self.served(version, NOT_AN_ERROR)}}}[{self.window}])) or vector(0)"

    def error_counts(self, version: str) -> str:
        """Errors and requests of a version in one result, labelled ``count`` (what ``error_rate`` reads)."""
        return (f'label_replace({self.errors(version)}, "count", "errors", "", "") or '
                f'label_replace({self.requests(version)}, "count", "requests", "", "")')

    def latency_buckets(self, version: str) -> str:
        return f"sum by (le) (increase({LATENCY_BUCKETS}{{{self.served(version)}}}[{self.window}]))"

    def side_by_side(self, canary: str, stable: str) -> str:
        """Both versions' answers of one query in one result, labelled ``side`` (to paste into Prometheus)."""
        return (f'label_replace({canary}, "side", "canary", "", "") or '
                f'label_replace({stable}, "side", "stable", "", "")')

    def up(self) -> str:
        return f"min by (host) (min_over_time(up{{{self.served(self.plan.canary)}}}[{self.window}]))"

    def restarts(self) -> str:
        return (
            f'sum by (host) (resets({{__name__=~"{REQUEST_COUNTERS}",{self.served(self.plan.canary)}}}[{self.window}]))'
        )

    def column_statistic(self, metric: str, column: str) -> str:
        """The drift exporter's per-column statistic of the canary in the plan's drift window."""
        selector = self.selector(self.plan.canary, window=self.plan.drift_window)
        return f"max by ({column}) ({metric}{{{selector}}})"

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

    def count(self, promql: str, what: str) -> tuple[int | None, str]:
        """A count (``increase`` extrapolates: rounded to whole events), or ``None`` and why not."""
        value, why = self.single(promql, what)
        if value is None:
            return None, why
        if value < 0:
            return None, f"{what} is negative ({value:g})"
        return round(value), ""

    def histogram(self, promql: str, what: str) -> tuple[Histogram | None, str]:
        """The latency histogram a ``sum by (le)`` query answers, or ``None`` and why not."""
        samples = self.run(promql)
        if not samples:
            return None, f"no data for {what}"
        try:
            pairs = [(float(s.labels["le"]), s.value) for s in samples]
            histogram = Histogram.from_buckets(pairs)
        except (KeyError, ValueError) as exc:
            return None, f"{what} is not a usable histogram ({exc})"
        if histogram.total <= 0:
            return None, f"{what}: no requests in the window"
        return histogram, ""


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
