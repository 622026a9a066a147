"""Prometheus metrics of the drift exporter, computed from the windows at scrape time.

Every series has ``model`` and ``version`` labels (except the daemon-wide label and checkpoint
series) and, for windowed values, ``window`` (the window's duration as configured, e.g. ``5m``).
A statistic without data in its window is absent, not zero: no data is inconclusive.
See docs/drift.md for the full reference.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from modelfleet.stats.drift import ColumnDrift, Correction, detections

if TYPE_CHECKING:
    from modelfleet.drift.exporter import Exporter
    from modelfleet.drift.pipeline import VersionPipeline

Family = CounterMetricFamily | GaugeMetricFamily
STATISTICS = {
    "psi": "Population stability index against the reference, on reference-quantile bins or categories.",
    "js_distance": "Jensen-Shannon distance (base 2) to the reference distribution.",
    "ks_statistic": "Two-sample Kolmogorov-Smirnov statistic against the reference (numeric columns).",
    "ks_pvalue": "p-value of the KS test, before multiple-testing correction (numeric columns).",
    "wasserstein_normed": "Wasserstein-1 distance to the reference divided by the reference std (numeric).",
    "chi2_statistic": "Chi-squared statistic of reference vs window counts (categorical columns).",
    "chi2_pvalue": "p-value of the chi-squared test, before multiple-testing correction (categorical).",
    "missing_ratio": "Share of rows with a missing value.",
    "out_of_range_ratio": "Share of non-missing values outside the reference [min, max] (numeric).",
    "unseen_ratio": "Share of non-missing values in categories the reference did not have (categorical).",
}
#: Reasons a spool line is skipped, exported at 0 before the first one happens.
MALFORMED_REASONS = ("json", "schema", "version", "shape", "wrong_version", "timestamp", "rows", "schema_mismatch",
                     "type_mismatch", "partial_line", "oversized")
_BASE = ["model", "version"]


@dataclass(frozen=True)
class DetectionRule:
    """When a column counts as drifted: its test rejects after correction and its PSI is large enough."""

    correction: Correction = "bonferroni"
    alpha: float = 0.05
    psi_threshold: float = 0.0

    def detect(self, results: dict[str, ColumnDrift]) -> dict[str, bool]:
        rejected = detections({name: r.pvalue for name, r in results.items()}, self.correction, self.alpha)
        return {name: rejected[name] and (self.psi_threshold <= 0 or (r.psi or 0.0) >= self.psi_threshold)
                for name, r in results.items() if r.pvalue is not None}


class _Families:
    """The metric families of one scrape, filled version by version."""

    def __init__(self) -> None:
        self.items: dict[str, Family] = {}

    def gauge(self, name: str, documentation: str, labels: list[str]) -> GaugeMetricFamily:
        family = self.items.get(name)
        if family is None:
            family = self.items[name] = GaugeMetricFamily(name, documentation, labels=labels)
        assert isinstance(family, GaugeMetricFamily)
        return family

    def counter(self, name: str, documentation: str, labels: list[str]) -> CounterMetricFamily:
        family = self.items.get(name)
        if family is None:
            family = self.items[name] = CounterMetricFamily(name, documentation, labels=labels)
        assert isinstance(family, CounterMetricFamily)
        return family


class DriftCollector(Collector):
    """Evaluates every version's windows when Prometheus scrapes."""

    def __init__(self, exporter: Exporter, rule: DetectionRule) -> None:
        self.exporter = exporter
        self.rule = rule

    def describe(self) -> Iterator[Family]:
        return iter(())  # families depend on what is served; nothing to check at registration

    def collect(self) -> Iterator[Family]:
        families = _Families()
        exporter = self.exporter
        now = time.time()
        with exporter.lock:
            for pipeline in exporter.pipelines.values():
                self._version(families, pipeline, now)
            self._daemon(families, exporter, now)
        yield from families.items.values()

    def _version(self, f: _Families, pipeline: VersionPipeline, now: float) -> None:
        base = [pipeline.info.model, pipeline.info.version]
        for window in pipeline.windows:
            labels = [*base, window]
            features = pipeline.features.evaluate(window, now)
            predictions = pipeline.predictions.evaluate(window, now)
            first = next(iter(features.values()), None) or next(iter(predictions.values()), None)
            f.gauge("modelfleet_window_rows", "Spooled rows in the window.", [*_BASE, "window"]).add_metric(
                labels, first.rows if first is not None else 0)
            drifted = self._columns(f, "feature", features, base, window)
            f.gauge("modelfleet_features_drifted", "Features whose drift is detected (after correction).",
                    [*_BASE, "window"]).add_metric(labels, drifted)
            self._columns(f, "prediction", predictions, base, window)
            self._quality(f, pipeline, labels, now)
        c = pipeline.counters
        f.counter("modelfleet_drift_records_read", "Valid spool records read.", _BASE).add_metric(base, c.records)
        f.counter("modelfleet_drift_rows_read", "Rows of the valid spool records read.", _BASE).add_metric(base, c.rows)
        f.counter("modelfleet_drift_records_stale", "Valid records older than the longest window (not counted).",
                  _BASE).add_metric(base, c.stale_records)
        malformed = f.counter("modelfleet_drift_records_malformed", "Spool lines skipped, by reason.",
                              [*_BASE, "reason"])
        for reason, count in ({r: 0 for r in MALFORMED_REASONS} | c.malformed).items():
            malformed.add_metric([*base, reason], count)
        f.counter("modelfleet_drift_spool_segments_lost",
                  "Spool segments deleted before they were read to the end.", _BASE).add_metric(base, c.segments_lost)
        f.counter("modelfleet_drift_spool_truncations", "Spool segments found shorter than the read position.",
                  _BASE).add_metric(base, c.truncations)
        if c.last_record_timestamp:
            f.gauge("modelfleet_drift_last_record_timestamp_seconds", "Unix time of the newest spool record read.",
                    _BASE).add_metric(base, c.last_record_timestamp)

    def _columns(self, f: _Families, kind: str, results: dict[str, ColumnDrift], base: list[str],
                 window: str) -> int:
        column_label = "feature" if kind == "feature" else "output"
        names = [*_BASE, column_label, "window"]
        noun = "feature" if kind == "feature" else "prediction column"
        for statistic, documentation in STATISTICS.items():
            family = f.gauge(f"modelfleet_{kind}_{statistic}", f"{documentation} Per {noun}.", names)
            for name, result in results.items():
                value = getattr(result, statistic)
                if value is not None:
                    family.add_metric([*base, name, window], value)
        detected = self.rule.detect(results)
        family = f.gauge(f"modelfleet_{kind}_drift_detected",
                         f"1 when the {noun}'s test rejects after multiple-testing correction and its PSI "
                         "reaches the threshold.", names)
        for name, flag in detected.items():
            family.add_metric([*base, name, window], 1.0 if flag else 0.0)
        return sum(detected.values())

    def _quality(self, f: _Families, pipeline: VersionPipeline, labels: list[str], now: float) -> None:
        result = pipeline.quality.evaluate(labels[-1], now)
        names = [*_BASE, "window"]
        f.gauge("modelfleet_model_labelled_rows", "Predictions joined with a label in the window.",
                names).add_metric(labels, result.count)
        if not result.count:
            return
        if pipeline.info.spec.task.type == "regression":
            f.gauge("modelfleet_model_mae", "Mean absolute error of labelled predictions.", names).add_metric(
                labels, result.mae or 0.0)
            f.gauge("modelfleet_model_rmse", "Root mean squared error of labelled predictions.", names).add_metric(
                labels, result.rmse or 0.0)
            return
        f.gauge("modelfleet_model_accuracy", "Accuracy of labelled predictions.", names).add_metric(
            labels, result.accuracy or 0.0)
        for metric, per_class, macro in (("precision", result.precision, result.macro_precision),
                                         ("recall", result.recall, result.macro_recall),
                                         ("f1", result.f1, result.macro_f1)):
            family = f.gauge(f"modelfleet_model_{metric}", f"{metric.capitalize()} per class (one vs rest).",
                             [*names, "class"])
            for label, value in per_class.items():
                family.add_metric([*labels, label], value)
            f.gauge(f"modelfleet_model_{metric}_macro", f"Macro-averaged {metric} (mean over the task's classes).",
                    names).add_metric(labels, macro or 0.0)

    def _daemon(self, f: _Families, exporter: Exporter, now: float) -> None:
        loaded = f.gauge("modelfleet_drift_version_loaded",
                         "1 for a version being watched, 0 when its artifact is missing or invalid (see the log).",
                         _BASE)
        for key in exporter.pipelines:
            loaded.add_metric(list(key), 1.0)
        for key in exporter.failed:
            loaded.add_metric(list(key), 0.0)
        joiner = exporter.joiner
        outcomes = f.counter("modelfleet_labels", "Labels received, by outcome of the join.", ["outcome"])
        for outcome, count in sorted(joiner.outcomes.items()):
            outcomes.add_metric([outcome], count)
        pending = f.gauge("modelfleet_labels_pending", "Predictions waiting for a label, labels waiting for a "
                          "prediction.", ["kind"])
        pending.add_metric(["predictions"], len(joiner.predictions))
        pending.add_metric(["labels"], len(joiner.waiting))
        f.counter("modelfleet_labels_predictions_expired", "Predictions that left the join memory unlabelled "
                  "(TTL or capacity).", []).add_metric([], joiner.predictions_expired)
        if exporter.last_checkpoint is not None:
            f.gauge("modelfleet_drift_checkpoint_age_seconds", "Seconds since the last successful checkpoint.",
                    []).add_metric([], max(0.0, now - exporter.last_checkpoint))
        f.counter("modelfleet_drift_checkpoint_failures", "Checkpoints that could not be written.",
                  []).add_metric([], exporter.checkpoint_failures)
