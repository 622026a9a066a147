"""pulumi/docker's containers, declared by the real program under Pulumi mocks, created on the test harness's
Docker engine (tests/integration/docker_realize.py stands in for the Pulumi CLI and its Docker provider,
which cannot be installed here) and used: requests through the router reach both slots in proportion to the
canary weight and get the model's predictions, the router exports metrics, and the drift exporter reads the
shared spool and loads both versions (the canary's artifact uploaded into it). The router image is a stand-in
built from this machine's HAProxy 2.6 (no registry to pull haproxy:2.6 from). Names start with cloud-test."""

from __future__ import annotations

import runpy
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import yaml
from cloud_mocks import run_program
from docker_engine import BASE_IMAGE, Docker, wheelhouse
from docker_realize import Realized, router_stand_in
from harness import free_port, wait_for
from prometheus_client.parser import text_string_to_metric_families
from serverkit import request, tensor

from modelfleet.convert import build_artifact
from modelfleet.spec import load_spec

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
WEIGHT = 30
REQUESTS = 200


@pytest.fixture(scope="module")
def docker() -> Docker:
    return Docker()


@pytest.fixture(scope="module")
def artifacts(credit_risk_artifact: Path) -> Path:
    """credit-risk v1 (the shared fixture) and v2 (the same model, converted again as version 2)."""
    root = credit_risk_artifact.parents[1]
    source = root.parent / "examples" / "credit-risk"
    spec = yaml.safe_load((source / "model.yml").read_text())
    (source / "model-v2.yml").write_text(yaml.safe_dump(spec | {"version": "2"}))
    build_artifact(load_spec(source / "model-v2.yml"), root)
    return root


def _metrics(port: int) -> dict[tuple[str, str, str], float]:
    response = request(port, "GET", "/metrics", timeout=5)
    assert response.status == 200
    return {(s.name, s.labels.get("model", ""), s.labels.get("version", "")): s.value
            for family in text_string_to_metric_families(response.body.decode()) for s in family.samples}


@pytest.fixture(scope="module")
def stack(docker: Docker, artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    prefix = f"cloud-test-{uuid.uuid4().hex[:6]}"
    workdir = tmp_path_factory.mktemp("stack")
    router_image = f"{prefix}-haproxy:2.6"
    router_stand_in(docker, router_image, BASE_IMAGE, workdir / "router")
    ports = {"routerPort": free_port(), "routerMetricsPort": free_port(), "driftExporterPort": free_port()}
    config = {"model": "credit-risk", "stableVersion": "1", "canaryVersion": "2", "canaryWeight": WEIGHT,
              "artifactsDir": str(artifacts), "wheelhouse": str(wheelhouse()), "contextDir": str(workdir / "ctx"),
              "baseImage": BASE_IMAGE, "routerImage": router_image, "imageRepository": f"{prefix}/credit-risk",
              "namePrefix": prefix, "bindAddress": "127.0.0.1", "serverPorts": False, **ports}
    recorder = run_program(lambda: runpy.run_path(str(REPO / "pulumi" / "docker" / "__main__.py")),
                           "modelfleet-docker", config)
    realized = None
    try:
        realized = Realized(docker, recorder.resources)
        wait_for(lambda: request(ports["routerPort"], "GET", "/v2/health/ready", timeout=5).status == 200, 120,
                 what="the router to be ready", interval=0.5)
        # Both slots up in HAProxy's health checks before traffic is counted.
        wait_for(lambda: _metrics(ports["routerMetricsPort"]).get(
            ("haproxy_backend_active_servers", "", ""), 0) == 2 or _active_servers(ports["routerMetricsPort"]) == 2,
            120, what="both slots to be up in the router", interval=0.5)
        yield {**ports, "realized": realized}
    except BaseException:
        if realized is not None:
            print(realized.logs())
        raise
    finally:
        if realized is not None:
            realized.remove()
        docker.remove(images=[router_image])


def _active_servers(metrics_port: int) -> int:
    response = request(metrics_port, "GET", "/metrics", timeout=5)
    for family in text_string_to_metric_families(response.body.decode()):
        for sample in family.samples:
            if sample.name == "haproxy_backend_active_servers" and sample.labels.get("proxy") == "credit-risk":
                return int(sample.value)
    return 0


def test_router_splits_by_the_canary_weight_with_the_models_predictions(
        stack: dict[str, Any], artifacts: Path, credit_rows: np.ndarray) -> None:
    session = ort.InferenceSession(str(artifacts / "credit-risk" / "1" / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    rows = credit_rows[:4]
    (expected,) = session.run(["label"], {"x": rows})
    slots = {"blue": 0, "green": 0}
    for _ in range(REQUESTS):
        response = request(stack["routerPort"], "POST", "/v2/models/credit-risk/infer",
                           {"inputs": [tensor("x", "FP32", rows.tolist(), rows.shape)]})
        assert response.status == 200, response.body
        body = response.json()
        slot = response.headers["x-modelfleet-slot"]
        slots[slot] += 1
        assert body["model_version"] == {"blue": "1", "green": "2"}[slot]
        label = next(o for o in body["outputs"] if o["name"] == "label")
        np.testing.assert_array_equal(label["data"], expected)
    # Weighted round robin is deterministic up to the interleaving: 30% of 200 is 60; allow a few either way.
    assert abs(slots["green"] - REQUESTS * WEIGHT / 100) <= 6, slots


def test_router_exports_prometheus_metrics(stack: dict[str, Any]) -> None:
    assert _active_servers(stack["routerMetricsPort"]) == 2


def test_drift_exporter_reads_the_shared_spool_of_both_versions(stack: dict[str, Any], credit_rows: np.ndarray) -> None:
    rows = credit_rows[:50]
    for _ in range(20):
        request(stack["routerPort"], "POST", "/v2/models/credit-risk/infer",
                {"inputs": [tensor("x", "FP32", rows.tolist(), rows.shape)]})

    def both_read() -> dict[tuple[str, str, str], float] | None:
        metrics = _metrics(stack["driftExporterPort"])
        read = [metrics.get(("modelfleet_drift_rows_read_total", "credit-risk", v), 0) for v in ("1", "2")]
        return metrics if all(r > 0 for r in read) else None

    metrics = wait_for(both_read, 90, what="the drift exporter to read both versions' spool", interval=1)
    assert metrics[("modelfleet_drift_version_loaded", "credit-risk", "1")] == 1
    assert metrics[("modelfleet_drift_version_loaded", "credit-risk", "2")] == 1
