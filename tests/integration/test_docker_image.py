"""docker/Dockerfile built for real by the test harness's Docker engine, from the local Debian 12 image.

The image is built offline (wheelhouse + artifact, no registry), run, and must answer an Open Inference
Protocol request with the model's own predictions, serve /metrics, report healthy through its HEALTHCHECK,
run as a non-root user and exit 0 on SIGTERM (drained). No registry is reachable here: pushing is untested.
Containers and images are named ``cloud-test-*`` and removed afterwards.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from docker_engine import BASE_IMAGE, Docker, wheelhouse
from harness import free_port, wait_for
from prometheus_client.parser import text_string_to_metric_families
from serverkit import request, tensor

from modelfleet.dockerhost.context import stage_context
from modelfleet.errors import ArtifactError

pytestmark = [pytest.mark.integration, pytest.mark.slow]
PREFIX = "cloud-test"


@pytest.fixture(scope="module")
def docker() -> Docker:
    return Docker()


@pytest.fixture(scope="module")
def image(docker: Docker, credit_risk_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    context = stage_context(credit_risk_artifact, wheelhouse(), tmp_path_factory.mktemp("context") / "ctx")
    tag = f"{PREFIX}-model-server:{uuid.uuid4().hex[:8]}"
    try:
        docker.build(tag, context.path, context.build_args(BASE_IMAGE, "cpu"))
        yield tag
    finally:
        docker.remove(images=[tag])


@pytest.fixture(scope="module")
def server(docker: Docker, image: str) -> Iterator[tuple[str, int]]:
    name = f"{PREFIX}-server-{uuid.uuid4().hex[:8]}"
    port = free_port()
    try:
        docker.run("run", "--detach", "--name", name, "--publish", f"127.0.0.1:{port}:8080", image)
        wait_for(lambda: request(port, "GET", "/v2/health/ready", timeout=5).status == 200, 120,
                 what=f"container {name} to be ready", interval=0.5)
        yield name, port
    finally:
        docker.remove(containers=[name])


def test_container_answers_infer_with_the_models_predictions(server: tuple[str, int], credit_risk_artifact: Path,
                                                              credit_rows: np.ndarray) -> None:
    _, port = server
    rows = credit_rows[:16]
    response = request(port, "POST", "/v2/models/credit-risk/infer",
                       {"inputs": [tensor("x", "FP32", rows.tolist(), rows.shape)]})
    assert response.status == 200, response.body
    body = response.json()
    assert (body["model_name"], body["model_version"]) == ("credit-risk", "1")
    outputs = {o["name"]: o for o in body["outputs"]}
    session = ort.InferenceSession(str(credit_risk_artifact / "model.onnx"), providers=["CPUExecutionProvider"])
    label, probabilities = session.run(["label", "probabilities"], {"x": rows})
    np.testing.assert_array_equal(outputs["label"]["data"], label)
    np.testing.assert_allclose(np.reshape(outputs["probabilities"]["data"], (16, 2)), probabilities,
                               rtol=1e-6, atol=1e-7)


def test_container_serves_metrics(server: tuple[str, int], credit_rows: np.ndarray) -> None:
    _, port = server
    request(port, "POST", "/v2/models/credit-risk/infer",
            {"inputs": [tensor("x", "FP32", credit_rows[:2].tolist(), [2, 8])]})
    metrics = request(port, "GET", "/metrics")
    assert metrics.status == 200
    samples = {(s.name, s.labels.get("model"), s.labels.get("version")): s.value
               for family in text_string_to_metric_families(metrics.body.decode())
               for s in family.samples}
    assert samples[("nv_inference_request_success_total", "credit-risk", "1")] >= 1


def test_container_is_healthy_and_not_root(docker: Docker, server: tuple[str, int], image: str) -> None:
    name, _ = server
    wait_for(lambda: docker.run("inspect", "--format", "{{.State.Health.Status}}", name).stdout.strip() == "healthy",
             90, what=f"{name} HEALTHCHECK to pass", interval=1)
    assert docker.run("exec", name, "id", "-u").stdout.strip() != "0"
    config = json.loads(docker.run("image", "inspect", "--format", "{{json .Config}}", image).stdout)
    assert config["User"] == "modelfleet"
    assert config["Labels"]["io.modelfleet.model"] == "credit-risk"
    assert "/var/lib/modelfleet/models/credit-risk/1" in " ".join(config["Env"])
    # The wheels stay in the build stage: the image carries the venv only.
    assert docker.run("run", "--rm", "--entrypoint", "sh", image, "-c", "test ! -e /tmp/wheelhouse").returncode == 0


def test_sigterm_drains_and_exits_zero(docker: Docker, image: str) -> None:
    name = f"{PREFIX}-stop-{uuid.uuid4().hex[:8]}"
    port = free_port()
    try:
        docker.run("run", "--detach", "--name", name, "--publish", f"127.0.0.1:{port}:8080", image,
                   "--host", "0.0.0.0", "--port", "8080")
        wait_for(lambda: request(port, "GET", "/v2/health/ready", timeout=5).status == 200, 120,
                 what=f"container {name} to be ready", interval=0.5)
        docker.run("stop", "--time", "30", name)
        assert docker.run("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip() == "0"
    finally:
        docker.remove(containers=[name])


def test_stage_context_refuses_a_corrupted_artifact(credit_risk_artifact: Path, tmp_path: Path) -> None:
    broken = tmp_path / "credit-risk" / "1"
    broken.mkdir(parents=True)
    for item in credit_risk_artifact.iterdir():
        (broken / item.name).write_bytes(item.read_bytes())
    (broken / "profile.json").write_text("{}")
    with pytest.raises(ArtifactError, match=r"profile\.json: sha256 .* does not match"):
        stage_context(broken, wheelhouse(), tmp_path / "ctx")


def test_stage_context_refuses_a_missing_wheelhouse(credit_risk_artifact: Path, tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="no wheelhouse there; build it with `make wheelhouse`"):
        stage_context(credit_risk_artifact, tmp_path / "nowhere", tmp_path / "ctx")


@pytest.mark.parametrize(("args", "message"), [
    ({"FLAVOUR": "rocm"}, "FLAVOUR must be cpu or cuda, not 'rocm'"),
    ({"MODEL_NAME": ""}, "build arguments MODEL_NAME and MODEL_VERSION are required"),
])
def test_bad_build_arguments_stop_the_build_with_a_message(docker: Docker, credit_risk_artifact: Path,
                                                           tmp_path: Path, args: dict[str, str], message: str) -> None:
    context = stage_context(credit_risk_artifact, wheelhouse(), tmp_path / "ctx")
    tag = f"{PREFIX}-bad:{uuid.uuid4().hex[:8]}"
    # --force-rm: the failed step's container is removed too (the classic builder keeps it by default).
    result = docker.run("build", "--force-rm", "--tag", tag, *[f"--build-arg={k}={v}" for k, v in
                                                               (context.build_args(BASE_IMAGE, "cpu") | args).items()],
                        str(context.path), check=False)
    docker.remove(images=[tag])
    assert result.returncode != 0
    assert message in result.stdout + result.stderr


def test_build_args_refuse_an_unknown_flavour(credit_risk_artifact: Path, tmp_path: Path) -> None:
    context = stage_context(credit_risk_artifact, wheelhouse(), tmp_path / "ctx")
    with pytest.raises(ValueError, match="flavour must be one of cpu, cuda, not 'rocm'"):
        context.build_args(BASE_IMAGE, "rocm")
