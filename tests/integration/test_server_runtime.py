"""Runtime behaviour: checksums before loading, execution providers, warm-up before readiness, dynamic
batching that returns each request its own rows, a bounded queue (503 + Retry-After)."""

from __future__ import annotations

import asyncio
import gc
import json
import shutil
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from harness import wait_for
from serverkit import Response, Server, StartServer, tensor

from modelfleet.serve.app import ModelServer, ServerSettings
from modelfleet.serve.dataplane import DataPlane, InferResponse
from modelfleet.serve.protocol import InferRequest, ProtocolError, parse_infer_request
from modelfleet.serve.runtime import ModelRuntime, RuntimeOptions, TensorInfo

pytestmark = pytest.mark.integration


def _settled_reason(server: Server) -> dict[str, Any]:
    """The readiness answer once loading is over (it is 'loading the model' or 'warming up' before)."""
    def settled() -> dict[str, Any] | None:
        body: dict[str, Any] = server.get("/v2/health/ready").json()
        return None if body.get("reason") in ("loading the model", "warming up") else body
    return wait_for(settled, 30, what="the model to load or fail")


def _tamper_model(directory: Path) -> str:
    with (directory / "model.onnx").open("ab") as handle:
        handle.write(b"\0")
    return "model.onnx: sha256"


def _drop_profile(directory: Path) -> str:
    (directory / "profile.json").unlink()
    return "profile.json: listed in the manifest but missing"


def _edit_manifest(directory: Path) -> str:
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["files"]["model.onnx"] = "0" * 64
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return f"does not match the manifest's {'0' * 64}"


@pytest.mark.parametrize("tamper", [_tamper_model, _drop_profile, _edit_manifest])
def test_checksum_mismatch_means_not_ready_with_the_reason(start_server: StartServer, typed_artifact: Path,
                                                           tmp_path: Path, tamper: Callable[[Path], str]) -> None:
    copy = tmp_path / "typed" / "1"
    shutil.copytree(typed_artifact, copy)
    expected = tamper(copy)
    server = start_server(copy, wait="live")
    body = _settled_reason(server)
    assert body["ready"] is False
    assert body["reason"].startswith("artifact check failed: ") and expected in body["reason"]
    assert server.get("/v2/health/ready").status == 503
    assert server.get("/v2/health/live").status == 200  # alive (no restart loop), but never serving
    model_ready = server.get("/v2/models/typed/ready")
    assert model_ready.status == 503 and expected in model_ready.json()["reason"]
    infer = server.infer("typed", {"inputs": [tensor("x", "FP32", [1, 2, 3], [1, 3])]})
    assert infer.status == 503 and infer.headers["retry-after"] == "1"
    assert expected in infer.error()


def test_gpu_only_providers_without_a_gpu_never_become_ready(start_server: StartServer,
                                                             typed_artifact: Path) -> None:
    server = start_server(typed_artifact, "--providers", "tensorrt,cuda", wait="live")
    reason = _settled_reason(server)["reason"]
    assert "none of the execution providers ['tensorrt', 'cuda'] is available" in reason
    assert server.get("/v2/models/typed/ready").status == 503


def test_gpu_first_providers_fall_back_to_the_cpu_when_it_is_listed(start_server: StartServer,
                                                                    typed_artifact: Path) -> None:
    server = start_server(typed_artifact, "--providers", "tensorrt,cuda,cpu")
    assert server.metrics().samples("modelfleet_model_info", provider="cpu", model="typed", version="1")
    assert not server.metrics().samples("modelfleet_model_info", provider="cuda")
    config = server.get("/v2/models/typed/config").json()
    assert config["instance_group"][0]["kind"] == "KIND_CPU"
    assert "execution provider tensorrt is not in this ONNX Runtime build" in server.output()


async def _asgi_get(app: ModelServer, path: str) -> tuple[int, dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    await app({"type": "http", "method": "GET", "path": path, "headers": []}, receive, send)
    return sent[0]["status"], json.loads(b"".join(m.get("body", b"") for m in sent[1:]))


def test_readiness_waits_for_warm_up_inferences(typed_artifact: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entered, release = threading.Event(), threading.Event()
    batch_sizes: list[int] = []
    real_run, real_warm_up = ModelRuntime.run, ModelRuntime.warm_up

    def run(self: ModelRuntime, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        batch_sizes.append(len(inputs["x"]))
        return real_run(self, inputs)

    def warm_up(self: ModelRuntime) -> list[int]:
        entered.set()
        assert release.wait(30)
        return real_warm_up(self)

    monkeypatch.setattr(ModelRuntime, "run", run)
    monkeypatch.setattr(ModelRuntime, "warm_up", warm_up)

    async def scenario() -> None:
        server = ModelServer(ServerSettings(artifact=typed_artifact))
        await server.plane.startup()
        assert await asyncio.to_thread(entered.wait, 30)
        assert await _asgi_get(server, "/v2/health/ready") == (503, {"ready": False, "reason": "warming up"})
        status, body = await _asgi_get(server, "/v2/models/typed/ready")
        assert (status, body["ready"], body["reason"]) == (503, False, "warming up")
        assert batch_sizes == []
        release.set()
        for _ in range(3000):
            if (await _asgi_get(server, "/v2/health/ready"))[0] == 200:
                break
            await asyncio.sleep(0.01)
        assert await _asgi_get(server, "/v2/health/ready") == (200, {"ready": True})
        assert batch_sizes == [1, 2, 4, 8, 16, 32, 64]  # every batch size the batcher forms, before ready
        await server.plane.shutdown()

    asyncio.run(scenario())


def test_failed_warm_up_means_not_ready(typed_artifact: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: ModelRuntime, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        raise RuntimeError("CUDA error: out of memory")

    monkeypatch.setattr(ModelRuntime, "run", broken)

    async def scenario() -> None:
        server = ModelServer(ServerSettings(artifact=typed_artifact))
        await server.plane.startup()
        for _ in range(3000):
            if server.plane.state == "failed":
                break
            await asyncio.sleep(0.01)
        status, body = await _asgi_get(server, "/v2/health/ready")
        assert status == 503
        assert body["reason"] == "warm-up inference with 1 row(s) failed: CUDA error: out of memory"
        await server.plane.shutdown()

    asyncio.run(scenario())


def _slow_request(server: Server, iterations: int, payload: list[float]) -> Response:
    rows = [[float(iterations), value] for value in payload]
    return server.infer("slow", {"inputs": [tensor("x", "FP32", rows, [len(rows), 2])]})


def _started_batches(server: Server) -> float:
    return server.metrics().value("modelfleet_queue_duration_seconds_count")


def test_dynamic_batching_returns_each_request_exactly_its_rows(start_server: StartServer, slow_artifact: Path,
                                                                slow_iterations: Callable[[float], int]) -> None:
    server = start_server(slow_artifact, "--inference-thread", "--max-batch", "8", "--max-queue-delay-us", "20000")
    before = server.metrics()
    with ThreadPoolExecutor(24) as pool:
        blocker = pool.submit(_slow_request, server, slow_iterations(0.5), [-1.0])
        wait_for(lambda: _started_batches(server) >= 1, 10, what="the first batch to start")
        # While the model is busy, 20 requests of 1-3 rows queue up; each row carries a unique value.
        payloads = [[1000.0 * k + r for r in range(1 + k % 3)] for k in range(20)]
        futures = [pool.submit(_slow_request, server, 1, p) for p in payloads]
        responses = [f.result(60) for f in futures]
        assert blocker.result(60).status == 200
    for payload, response in zip(payloads, responses, strict=True):
        assert response.status == 200, response.body
        output = response.json()["outputs"][0]
        assert output["shape"] == [len(payload), 2]
        expected = np.array([[1.0, v] for v in payload], np.float32) * 2
        np.testing.assert_array_equal(np.reshape(output["data"], (-1, 2)), expected)
    after = server.metrics()
    executions = after.value("nv_inference_exec_count_total") - before.value("nv_inference_exec_count_total")
    rows = sum(len(p) for p in payloads) + 1
    assert executions < len(payloads) + 1, "no two requests shared a batch: batching was not exercised"
    assert after.value("nv_inference_count_total") - before.value("nv_inference_count_total") == rows
    assert after.value("modelfleet_batch_size_sum") == rows
    assert after.value("modelfleet_batch_size_bucket", le="8.0") == after.value("modelfleet_batch_size_count")
    assert after.value("modelfleet_batch_size_bucket", le="1.0") < after.value("modelfleet_batch_size_count")


def test_full_queue_answers_503_with_retry_after(start_server: StartServer, slow_artifact: Path,
                                                  slow_iterations: Callable[[float], int]) -> None:
    server = start_server(slow_artifact, "--inference-thread", "--max-batch", "1", "--max-queue-size", "2")
    with ThreadPoolExecutor(8) as pool:
        blocker = pool.submit(_slow_request, server, slow_iterations(1.5), [0.0])
        wait_for(lambda: _started_batches(server) >= 1, 10, what="the first batch to start")
        futures = [pool.submit(_slow_request, server, 1, [float(k)]) for k in range(6)]
        responses = [f.result(60) for f in futures]
        assert blocker.result(60).status == 200
    statuses = sorted(r.status for r in responses)
    assert statuses == [200, 200, 503, 503, 503, 503]
    for response in responses:
        if response.status == 503:
            assert response.headers["retry-after"] == "1"
            assert "the request queue is full (2 requests waiting)" in response.error()
    metrics = server.metrics()
    assert metrics.value("nv_inference_request_failure_total", reason="queue_full") == 4
    assert metrics.value("nv_inference_request_success_total") == 3


def test_the_data_plane_serves_without_http(typed_artifact: Path) -> None:
    """What a gRPC front end or a function handler does: decode, DataPlane.infer, encode — no ASGI."""

    async def scenario() -> None:
        plane = DataPlane(ServerSettings(artifact=typed_artifact))
        request = {"id": "r1", "inputs": [
            tensor("x", "FP32", [[1.5, -2.25, 3.0]], [1, 3]), tensor("d", "FP64", [0.1, 2.0], [1, 2]),
            tensor("h", "FP16", [0.5, 1.5], [1, 2]), tensor("i", "INT32", [3, -5], [1, 2]),
            tensor("u", "UINT8", [7], [1]), tensor("b", "BOOL", [True], [1]), tensor("s", "BYTES", ["a"], [1])]}

        async def decode(inputs: Sequence[TensorInfo], outputs: Sequence[TensorInfo],
                         max_batch: int | None) -> InferRequest:
            return parse_infer_request(json.dumps(request).encode(), inputs, outputs, max_batch)

        answers: list[InferResponse] = []

        async def respond(response: InferResponse) -> None:
            answers.append(response)

        with pytest.raises(ProtocolError) as refused:
            await plane.infer(decode, respond)
        assert refused.value.status == 503 and refused.value.message.startswith("model not ready")
        await plane.startup()
        await wait_for_ready(plane)
        await plane.infer(decode, respond)
        (answer,) = answers
        assert (answer.model, answer.version, answer.id) == ("typed", "1", "r1")
        assert plane.runtime is not None and answer.names == plane.runtime.output_names
        assert [a.shape[0] for a in answer.arrays] == [1] * len(answer.names)
        labels = {"model": "typed", "version": "1"}
        assert plane.registry.get_sample_value("nv_inference_request_success_total", labels) == 1
        assert plane.in_flight == 0
        await plane.shutdown()

    asyncio.run(scenario())


def test_rows_above_the_max_batch_are_chunks_bounded_by_the_queue(typed_artifact: Path) -> None:
    """Rows above the max batch become chunks in the queue: at most max batch x queue size rows (413 beyond)."""

    async def scenario() -> None:
        plane = DataPlane(ServerSettings(artifact=typed_artifact, runtime=RuntimeOptions(max_batch=1),
                                         max_queue_size=2))

        def rows(count: int) -> dict[str, Any]:
            return {"inputs": [
                tensor("x", "FP32", [[1.0, 2.0, 3.0]] * count, [count, 3]),
                tensor("d", "FP64", [[0.1, 2.0]] * count, [count, 2]), tensor("h", "FP16", [[0.5, 1.5]] * count,
                                                                            [count, 2]),
                tensor("i", "INT32", [[3, -5]] * count, [count, 2]), tensor("u", "UINT8", [7] * count, [count]),
                tensor("b", "BOOL", [True] * count, [count]), tensor("s", "BYTES", ["a"] * count, [count])]}

        def decoder(count: int) -> Any:
            async def decode(inputs: Sequence[TensorInfo], outputs: Sequence[TensorInfo],
                             max_batch: int | None) -> InferRequest:
                return parse_infer_request(json.dumps(rows(count)).encode(), inputs, outputs, max_batch)
            return decode

        answers: list[InferResponse] = []

        async def respond(response: InferResponse) -> None:
            answers.append(response)

        await plane.startup()
        await wait_for_ready(plane)
        with pytest.raises(ProtocolError) as refused:
            await plane.infer(decoder(3), respond)  # three chunks of one row; the queue holds two
        assert refused.value.status == 413
        assert refused.value.message == "3 rows need 3 batches of 1; the queue holds 2: send at most 2 rows per request"
        await plane.infer(decoder(2), respond)  # nothing of the refused request was queued
        (answer,) = answers
        assert [a.shape[0] for a in answer.arrays] == [2] * len(answer.names)
        labels = {"model": "typed", "version": "1"}
        assert plane.registry.get_sample_value("nv_inference_exec_count_total", labels) == 2
        assert plane.registry.get_sample_value("nv_inference_request_failure_total",
                                               {**labels, "reason": "invalid_request"}) == 1
        assert plane.batcher is not None and plane.batcher.depth == 0
        await plane.shutdown()

    asyncio.run(scenario())


@pytest.mark.parametrize("freeze", [True, False])
def test_a_server_process_freezes_its_startup_objects_once_ready(typed_artifact: Path, freeze: bool) -> None:
    """``modelfleet serve`` moves what loading left alive out of the garbage collector's reach once ready (its
    full collections took 30 ms each, a pause for every request in flight); a data plane sharing its process
    (the default: tests, the function handler) leaves the collector alone."""
    assert gc.get_freeze_count() == 0

    async def scenario() -> int:
        plane = DataPlane(ServerSettings(artifact=typed_artifact, gc_freeze_when_ready=freeze))
        await plane.startup()
        await wait_for_ready(plane)
        frozen = gc.get_freeze_count()
        await plane.shutdown()
        return frozen

    try:
        frozen = asyncio.run(scenario())
    finally:
        gc.unfreeze()
    assert (frozen > 1000) if freeze else frozen == 0


def test_the_serve_command_asks_for_the_freeze(monkeypatch: pytest.MonkeyPatch, typed_artifact: Path) -> None:
    from modelfleet import cli
    from modelfleet.serve import main

    started: list[ServerSettings] = []

    def run_instead(settings: ServerSettings, *_args: Any, **_kwargs: Any) -> int:
        started.append(settings)
        return 0

    monkeypatch.setattr(main, "run", run_instead)
    assert cli.main(["serve", str(typed_artifact)]) == 0
    (settings,) = started
    assert settings.gc_freeze_when_ready


async def wait_for_ready(plane: DataPlane) -> None:
    for _ in range(3000):
        if plane.ready:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not ready: {plane.not_ready_reason()}")

