"""Prometheus metrics of the model server.

Triton's names where an equivalent exists, as Prometheus counters (``_total`` suffix), labelled
``model`` and ``version``; ``modelfleet_`` otherwise. Latencies are histograms in seconds so that
quantile gates (p99) can be computed. Triton's cumulative ``*_duration_us`` counters are not
exported: promtool rejects their abbreviated unit, and each equals 1e6 × the ``_sum`` of the
matching seconds histogram here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from modelfleet.spool.writer import SpoolWriter

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0)
#: The request latency the canary gates judge: the Renard R10 series (10 bounds a decade, each 1.26 × the one
#: below) from 0.1 ms to 10 s. A p99 is known only up to its bucket, so bucket width is resolution the
#: judgement loses; docs/rollout.md has the measurement behind this choice.
_R10 = (1.0, 1.25, 1.6, 2.0, 2.5, 3.15, 4.0, 5.0, 6.3, 8.0)
REQUEST_LATENCY_BUCKETS = (*(round(mantissa * 10.0 ** exponent, 7) for exponent in range(-4, 1) for mantissa in _R10),
                           10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
FAILURE_REASONS = ("invalid_request", "queue_full", "inference", "internal", "shutting_down")


class _SpoolCollector(Collector):
    def __init__(self, writer: SpoolWriter) -> None:
        self.writer = writer

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        labels = ["model", "version"]
        values = [self.writer.model, self.writer.version]
        stats = self.writer.stats
        written = CounterMetricFamily("modelfleet_spool_records", "Spool records by outcome.",
                                      labels=[*labels, "outcome"])
        written.add_metric([*values, "written"], stats.written)
        written.add_metric([*values, "sampled_out"], stats.sampled_out)
        yield written
        dropped = CounterMetricFamily("modelfleet_spool_records_dropped",
                                      "Spool records lost: queue full, evicted to bound the spool, I/O errors.",
                                      labels=[*labels, "reason"])
        for reason, count in stats.dropped.items():
            dropped.add_metric([*values, reason], count)
        yield dropped
        bytes_written = CounterMetricFamily("modelfleet_spool_written_bytes", "Bytes appended to the spool.",
                                            labels=labels)
        bytes_written.add_metric(values, stats.bytes_written)
        yield bytes_written
        queued = GaugeMetricFamily("modelfleet_spool_queue_records", "Records waiting for the spool writer.",
                                   labels=labels)
        queued.add_metric(values, self.writer.queued)
        yield queued


@dataclass
class ServerMetrics:
    """Metric children bound to one model version (label lookups done once, not per request)."""

    registry: CollectorRegistry
    model: str
    version: str

    def __post_init__(self) -> None:
        labels = ("model", "version")
        r = self.registry
        bound = {"model": self.model, "version": self.version}
        self.success = Counter("nv_inference_request_success", "Successful inference requests.", labels,
                               registry=r).labels(**bound)
        failure = Counter("nv_inference_request_failure", "Failed inference requests by reason.",
                          (*labels, "reason"), registry=r)
        self.failure = {reason: failure.labels(**bound, reason=reason) for reason in FAILURE_REASONS}
        self.inference_count = Counter("nv_inference_count", "Inferences performed (rows; a batch of n counts n).",
                                       labels, registry=r).labels(**bound)
        self.exec_count = Counter("nv_inference_exec_count", "Model executions (batches).", labels,
                                  registry=r).labels(**bound)
        self.request_duration = Histogram("modelfleet_request_duration_seconds",
                                          "Inference request time in the server, from body read to response.",
                                          labels, buckets=REQUEST_LATENCY_BUCKETS, registry=r).labels(**bound)
        self.queue_duration = Histogram("modelfleet_queue_duration_seconds",
                                        "Time requests wait in the batching queue.", labels,
                                        buckets=LATENCY_BUCKETS, registry=r).labels(**bound)
        self.compute_duration = Histogram("modelfleet_compute_infer_duration_seconds",
                                          "Model execution time per batch.", labels, buckets=LATENCY_BUCKETS,
                                          registry=r).labels(**bound)
        self.batch_size = Histogram("modelfleet_batch_size", "Rows per model execution.", labels,
                                    buckets=BATCH_BUCKETS, registry=r).labels(**bound)
        self.queue_depth = Gauge("modelfleet_queue_depth", "Requests waiting in the batching queue.", labels,
                                 registry=r).labels(**bound)
        self.in_flight = Gauge("modelfleet_requests_in_flight", "Inference requests being handled.", labels,
                               registry=r).labels(**bound)
        self.ready = Gauge("modelfleet_model_ready", "1 when the model version is ready for traffic.", labels,
                           registry=r).labels(**bound)
        self._requests = Counter("modelfleet_inference_requests", "Inference requests by front end (protocol: "
                                 "http_json, http_binary, grpc) and outcome (status: the HTTP status, or the one a "
                                 "gRPC code was mapped from).", (*labels, "protocol", "status"), registry=r)
        self._request_children: dict[tuple[str, int], Any] = {}
        self.info = Gauge("modelfleet_model_info", "The model version served: execution provider and precision.",
                          (*labels, "provider", "precision", "build_key"), registry=r)

    def on_request(self, protocol: str, status: int) -> None:
        """Count one inference request answered by ``protocol`` with ``status``."""
        child = self._request_children.get((protocol, status))
        if child is None:
            child = self._requests.labels(model=self.model, version=self.version, protocol=protocol,
                                          status=str(status))
            self._request_children[(protocol, status)] = child
        child.inc()

    def set_info(self, provider: str, precision: str, build_key: str) -> None:
        self.info.labels(model=self.model, version=self.version, provider=provider, precision=precision,
                         build_key=build_key[:12]).set(1)

    def watch_spool(self, writer: SpoolWriter) -> None:
        self.registry.register(_SpoolCollector(writer))

    def on_batch(self, rows: int, seconds: float) -> None:
        self.exec_count.inc()
        self.inference_count.inc(rows)
        self.batch_size.observe(rows)
        self.compute_duration.observe(seconds)
