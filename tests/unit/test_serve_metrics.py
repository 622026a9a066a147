"""The model server's metrics: plain numbers exposed by a collector, with prometheus_client's own semantics."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from modelfleet.serve.metrics import FAILURE_REASONS, REQUEST_LATENCY_BUCKETS, Buckets, ServerMetrics

LABELS = {"model": "m", "version": "1"}


def test_buckets_count_as_prometheus_client_does_bounds_included() -> None:
    rng = random.Random(7)
    values = [rng.choice(REQUEST_LATENCY_BUCKETS[:-1]) for _ in range(200)]  # exactly on a bound: le includes it
    values += [10 ** rng.uniform(-5, 1.5) for _ in range(2000)]  # below the first bound, above the last
    ours = Buckets(REQUEST_LATENCY_BUCKETS)
    registry = CollectorRegistry()
    theirs = Histogram("h", "h", buckets=REQUEST_LATENCY_BUCKETS, registry=registry)
    for value in values:
        ours.observe(value)
        theirs.observe(value)
    expected = {s.labels["le"]: s.value for s in registry.collect().__next__().samples if s.name == "h_bucket"}
    assert dict(ours.cumulative()) == expected
    assert abs(ours.sum - sum(values)) < 1e-9


def test_exposition_names_types_and_values() -> None:
    registry = CollectorRegistry(auto_describe=True)
    metrics = ServerMetrics(registry, "m", "1")
    metrics.ready.set(1)
    metrics.in_flight.inc()
    metrics.in_flight.inc()
    metrics.in_flight.dec()
    metrics.success.inc()
    metrics.failure["queue_full"].inc()
    metrics.on_request("grpc", 200)
    metrics.on_request("http_json", 400)
    metrics.on_request("http_json", 400)
    metrics.on_batch(5, 0.002)
    metrics.request_duration.observe(0.0003)
    metrics.set_info("cpu", "fp32", "0123456789abcdef")
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
    types = {name: family.type for name, family in families.items()}
    assert types == {"nv_inference_request_success": "counter", "nv_inference_request_failure": "counter",
                     "nv_inference_count": "counter", "nv_inference_exec_count": "counter",
                     "modelfleet_inference_requests": "counter", "modelfleet_request_duration_seconds": "histogram",
                     "modelfleet_queue_duration_seconds": "histogram",
                     "modelfleet_compute_infer_duration_seconds": "histogram", "modelfleet_batch_size": "histogram",
                     "modelfleet_queue_depth": "gauge", "modelfleet_requests_in_flight": "gauge",
                     "modelfleet_model_ready": "gauge", "modelfleet_model_info": "gauge"}

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, {**LABELS, **labels})

    assert value("nv_inference_request_success_total") == 1
    assert {r: value("nv_inference_request_failure_total", reason=r) for r in FAILURE_REASONS} == {
        "invalid_request": 0, "queue_full": 1, "inference": 0, "internal": 0, "shutting_down": 0}
    assert value("modelfleet_inference_requests_total", protocol="http_json", status="400") == 2
    assert value("modelfleet_inference_requests_total", protocol="grpc", status="200") == 1
    assert value("nv_inference_count_total") == 5 and value("nv_inference_exec_count_total") == 1
    assert value("modelfleet_batch_size_bucket", le="4.0") == 0 and value("modelfleet_batch_size_bucket", le="8.0") == 1
    assert value("modelfleet_request_duration_seconds_count") == 1
    assert value("modelfleet_requests_in_flight") == 1 and value("modelfleet_model_ready") == 1
    assert value("modelfleet_model_info", provider="cpu", precision="fp32", build_key="0123456789ab") == 1
    assert not any(s.name.endswith("_created") for f in families.values() for s in f.samples)


def test_two_versions_cannot_share_a_registry_by_mistake() -> None:
    registry = CollectorRegistry(auto_describe=True)
    ServerMetrics(registry, "m", "1")
    try:
        ServerMetrics(registry, "m", "2")
    except ValueError as exc:
        assert "Duplicated timeseries" in str(exc)
    else:
        raise AssertionError("a second ServerMetrics in one registry was accepted")
