"""/metrics of a real server: Triton's metric names as Prometheus counters, model/version labels,
latency histograms in seconds, batch sizes, queue depth, the execution provider; promtool-clean."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from serverkit import Server, tensor

from modelfleet import artifact

pytestmark = pytest.mark.integration

ROW = [30.0, 40000.0, 0.3, 3.0, 1.0, 0.5, 1.0, 0.0]
LABELS = {"model": "credit-risk", "version": "1"}


@pytest.fixture(scope="module")
def exercised(credit_risk_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A fresh server (with a spool, so its metrics appear too) after a known sequence of requests."""
    workdir = tmp_path_factory.mktemp("metrics")
    server = Server(credit_risk_artifact, workdir, "--spool-dir", str(workdir / "spool")).start()
    for rows in (1, 2, 5):  # one after the other: three executions of 1, 2 and 5 rows
        response = server.infer("credit-risk", {"inputs": [tensor("x", "FP32", [ROW] * rows, [rows, 8])]})
        assert response.status == 200
    assert server.infer("credit-risk", b"{").status == 400
    assert server.infer("credit-risk", {"inputs": [tensor("x", "FP64", ROW, [1, 8])]}).status == 400
    assert server.infer("fraud", {"inputs": []}).status == 404  # routing, not an inference failure
    yield server
    server.stop()


def test_triton_counters_with_model_and_version_labels(exercised: Server) -> None:
    metrics = exercised.metrics()
    expected = {"nv_inference_request_success": 3, "nv_inference_count": 8, "nv_inference_exec_count": 3}
    for name, value in expected.items():
        family = metrics.families[name]
        assert family.type == "counter", name
        assert metrics.samples(f"{name}_total") == [(LABELS, value)], name
    failures = {s[0]["reason"]: s[1] for s in metrics.samples("nv_inference_request_failure_total", **LABELS)}
    assert failures == {"invalid_request": 2, "queue_full": 0, "inference": 0, "internal": 0, "shutting_down": 0}
    assert metrics.families["nv_inference_request_failure"].type == "counter"


def test_latency_histograms_are_in_seconds(exercised: Server) -> None:
    metrics = exercised.metrics()
    for name, count in [("modelfleet_request_duration_seconds", 3), ("modelfleet_queue_duration_seconds", 3),
                        ("modelfleet_compute_infer_duration_seconds", 3)]:
        assert metrics.families[name].type == "histogram"
        assert metrics.value(f"{name}_count", **LABELS) == count
        total = metrics.value(f"{name}_sum", **LABELS)
        assert 0 < total < 3.0, f"{name}_sum = {total}: three fast requests, in seconds"
        buckets = sorted((float(labels["le"]), value) for labels, value in metrics.samples(f"{name}_bucket"))
        assert buckets[0][0] <= 0.0001 and buckets[-1] == (float("inf"), count)
        assert [v for _, v in buckets] == sorted(v for _, v in buckets)  # cumulative
        assert all(labels.keys() >= {"model", "version"} for labels, _ in metrics.samples(f"{name}_bucket"))


def test_batch_size_queue_depth_readiness_and_provider(exercised: Server, credit_risk_artifact: Path) -> None:
    metrics = exercised.metrics()
    assert metrics.families["modelfleet_batch_size"].type == "histogram"
    assert metrics.value("modelfleet_batch_size_count", **LABELS) == 3
    assert metrics.value("modelfleet_batch_size_sum", **LABELS) == 8
    buckets = {labels["le"]: value for labels, value in metrics.samples("modelfleet_batch_size_bucket")}
    assert (buckets["1.0"], buckets["2.0"], buckets["4.0"], buckets["8.0"]) == (1, 2, 2, 3)
    assert metrics.families["modelfleet_queue_depth"].type == "gauge"
    assert metrics.samples("modelfleet_queue_depth") == [(LABELS, 0.0)]
    assert metrics.samples("modelfleet_requests_in_flight") == [(LABELS, 0.0)]
    assert metrics.samples("modelfleet_model_ready") == [(LABELS, 1.0)]
    build_key = artifact.verify_artifact(credit_risk_artifact).build_key
    assert metrics.samples("modelfleet_model_info") == [
        ({**LABELS, "provider": "cpu", "precision": "fp32", "build_key": build_key[:12]}, 1.0)]
    assert metrics.samples("modelfleet_spool_records_total", outcome="written")  # the spool reports too


def test_every_sample_carries_model_and_version(exercised: Server) -> None:
    metrics = exercised.metrics()
    ours = [f for f in metrics.families.values() if f.name.startswith(("nv_", "modelfleet_"))]
    assert len(ours) >= 14
    for family in ours:
        for sample in family.samples:
            assert sample.labels.get("model") == "credit-risk" and sample.labels.get("version") == "1", sample


def test_promtool_check_metrics_is_clean(exercised: Server, promtool: str) -> None:
    exposition = exercised.get("/metrics")
    assert exposition.headers["content-type"].startswith("text/plain; version=")
    checked = subprocess.run([promtool, "check", "metrics"], input=exposition.body, capture_output=True,
                             timeout=30, check=False)
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()
    assert checked.stdout.strip() == b"" and checked.stderr.strip() == b""


def test_promtool_rejects_what_it_should(tmp_path: Path, promtool: str) -> None:
    """The check above can fail: promtool flags the Triton unit spelling that the server avoids."""
    bad = b"# HELP nv_inference_request_duration_us x\n# TYPE nv_inference_request_duration_us counter\n" \
          b'nv_inference_request_duration_us{model="m"} 1\n'
    checked = subprocess.run([promtool, "check", "metrics"], input=bad, capture_output=True, timeout=30,
                             check=False)
    assert checked.returncode != 0
