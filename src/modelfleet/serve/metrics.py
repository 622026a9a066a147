"""Prometheus metrics of the model server.

Triton's names where an equivalent exists, as Prometheus counters (``_total`` suffix), labelled
``model`` and ``version``; ``modelfleet_`` otherwise. Latencies are histograms in seconds so that
quantile gates (p99) can be computed. Triton's cumulative ``*_duration_us`` counters are not
exported: promtool rejects their abbreviated unit, and each equals 1e6 × the ``_sum`` of the
matching seconds histogram here.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate
from math import inf
from typing import cast

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from modelfleet.spool.writer import SpoolWriter

#: A bucket bound as prometheus_client writes ``le`` (``1.0``, ``0.00025``, ``+Inf``); the library leaves it untyped.
_le_label = cast(Callable[[float], str], floatToGoString)

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


class Count:
    """A counter's or gauge's value: a plain number changed on the event loop's thread (every front end hands its
    requests to that loop), so no lock, unlike prometheus_client's metric objects (about 1 µs per change)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: float = 0

    def inc(self, amount: float = 1) -> None:
        self.value += amount

    def dec(self, amount: float = 1) -> None:
        self.value -= amount

    def set(self, value: float) -> None:
        self.value = value


class Buckets:
    """A histogram's buckets (``le`` bounds, +Inf implied), count per bucket and sum; changed like :class:`Count`."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # the first bound >= value: Prometheus' le
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        """``(le, count)`` pairs as the exposition has them (cumulative, ``+Inf`` last)."""
        counts = list(accumulate(self.counts))  # one copy: consistent even while the loop observes
        return [(_le_label(bound), count) for bound, count in zip((*self.bounds, inf), counts, strict=True)]


@dataclass(frozen=True)
class _Family:
    name: str
    documentation: str
    kind: str  # counter, gauge, histogram
    labels: tuple[str, ...] = ()


SUCCESS = _Family("nv_inference_request_success", "Successful inference requests.", "counter")
FAILURE = _Family("nv_inference_request_failure", "Failed inference requests by reason.", "counter", ("reason",))
INFERENCE_COUNT = _Family("nv_inference_count", "Inferences performed (rows; a batch of n counts n).", "counter")
EXEC_COUNT = _Family("nv_inference_exec_count", "Model executions (batches).", "counter")
REQUESTS = _Family("modelfleet_inference_requests", "Inference requests by front end (protocol: http_json, "
                   "http_binary, grpc) and outcome (status: the HTTP status, or the one a gRPC code was mapped from).",
                   "counter", ("protocol", "status"))
REQUEST_DURATION = _Family("modelfleet_request_duration_seconds",
                           "Inference request time in the server, from body read to response.", "histogram")
QUEUE_DURATION = _Family("modelfleet_queue_duration_seconds", "Time requests wait in the batching queue.", "histogram")
COMPUTE_DURATION = _Family("modelfleet_compute_infer_duration_seconds", "Model execution time per batch.",
                           "histogram")
BATCH_SIZE = _Family("modelfleet_batch_size", "Rows per model execution.", "histogram")
QUEUE_DEPTH = _Family("modelfleet_queue_depth", "Requests waiting in the batching queue.", "gauge")
IN_FLIGHT = _Family("modelfleet_requests_in_flight", "Inference requests being handled.", "gauge")
READY = _Family("modelfleet_model_ready", "1 when the model version is ready for traffic.", "gauge")
INFO = _Family("modelfleet_model_info", "The model version served: execution provider and precision.", "gauge",
               ("provider", "precision", "build_key"))


class ServerMetrics:
    """One model version's metrics, labelled ``model`` and ``version``, exposed through ``registry``.

    Requests change plain numbers (:class:`Count`, :class:`Buckets`) on the event loop's thread; a collector
    turns them into metric families when ``registry`` is scraped. The metrics of one request cost a few
    additions instead of about 20 µs of prometheus_client's locked counters and bucket scans (measured on the
    2-vCPU benchmark machine; docs/serving-benchmark.md)."""

    def __init__(self, registry: CollectorRegistry, model: str, version: str) -> None:
        self.registry = registry
        self.model, self.version = model, version
        self.success = Count()
        self.failure = {reason: Count() for reason in FAILURE_REASONS}
        self.inference_count = Count()
        self.exec_count = Count()
        self.request_duration = Buckets(REQUEST_LATENCY_BUCKETS)
        self.queue_duration = Buckets(LATENCY_BUCKETS)
        self.compute_duration = Buckets(LATENCY_BUCKETS)
        self.batch_size = Buckets(BATCH_BUCKETS)
        self.queue_depth = Count()
        self.in_flight = Count()
        self.ready = Count()
        self.requests: dict[tuple[str, int], Count] = {}
        self.info: tuple[str, str, str] | None = None
        registry.register(_ServerCollector(self))

    def on_request(self, protocol: str, status: int) -> None:
        """Count one inference request answered by ``protocol`` with ``status``."""
        count = self.requests.get((protocol, status))
        if count is None:
            count = self.requests[(protocol, status)] = Count()
        count.value += 1

    def set_info(self, provider: str, precision: str, build_key: str) -> None:
        self.info = (provider, precision, build_key[:12])

    def watch_spool(self, writer: SpoolWriter) -> None:
        self.registry.register(_SpoolCollector(writer))

    def on_batch(self, rows: int, seconds: float) -> None:
        self.exec_count.value += 1
        self.inference_count.value += rows
        self.batch_size.observe(rows)
        self.compute_duration.observe(seconds)


class _ServerCollector(Collector):
    def __init__(self, metrics: ServerMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily]:
        m = self.metrics
        bound = [m.model, m.version]
        plain: list[tuple[_Family, Count]] = [
            (SUCCESS, m.success), (INFERENCE_COUNT, m.inference_count), (EXEC_COUNT, m.exec_count),
            (QUEUE_DEPTH, m.queue_depth), (IN_FLIGHT, m.in_flight), (READY, m.ready)]
        for family, count in plain:
            yield _family(family, [(bound, count.value)])
        yield _family(FAILURE, [([*bound, reason], count.value) for reason, count in m.failure.items()])
        yield _family(REQUESTS, [([*bound, protocol, str(status)], count.value)
                                 for (protocol, status), count in sorted(m.requests.items())])
        yield _family(INFO, [([*bound, *m.info], 1)] if m.info is not None else [])
        for family, buckets in [(REQUEST_DURATION, m.request_duration), (QUEUE_DURATION, m.queue_duration),
                                (COMPUTE_DURATION, m.compute_duration), (BATCH_SIZE, m.batch_size)]:
            histogram = HistogramMetricFamily(family.name, family.documentation, labels=["model", "version"])
            histogram.add_metric(bound, buckets.cumulative(), buckets.sum)
            yield histogram


def _family(family: _Family, samples: list[tuple[list[str], float]]) -> CounterMetricFamily | GaugeMetricFamily:
    kind = CounterMetricFamily if family.kind == "counter" else GaugeMetricFamily
    metric = kind(family.name, family.documentation, labels=["model", "version", *family.labels])
    for labels, value in samples:
        metric.add_metric(labels, value)
    return metric
