"""Real third-party Open Inference Protocol clients, unchanged, against a real server process:
Triton's ``tritonclient.http`` and KServe's ``InferenceRESTClient``."""

from __future__ import annotations

import asyncio
import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton
from serverkit import Server
from tritonclient.utils import InferenceServerException

pytestmark = pytest.mark.integration


def _kserve() -> ModuleType:
    """``import kserve`` without pytest's arguments: kserve.model_server parses ``sys.argv`` on import, and
    ``--co`` (pytest's --collect-only) would match its ``--configure_logging`` and exit the test run."""
    argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        return importlib.import_module("kserve")
    finally:
        sys.argv = argv


def _expected(artifact_dir: Path, rows: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(str(artifact_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    return list(session.run(["label", "probabilities"], {"x": rows}))


@pytest.fixture
def triton_client(credit_server: Server) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(url=f"127.0.0.1:{credit_server.port}", network_timeout=30.0)
    yield client
    client.close()


def test_tritonclient_health_and_metadata(triton_client: triton.InferenceServerClient) -> None:
    assert triton_client.is_server_live() and triton_client.is_server_ready()
    assert triton_client.get_server_metadata()["name"] == "modelfleet"
    assert triton_client.is_model_ready("credit-risk") and triton_client.is_model_ready("credit-risk", "1")
    assert not triton_client.is_model_ready("credit-risk", "7")
    assert not triton_client.is_model_ready("no-such-model")
    metadata = triton_client.get_model_metadata("credit-risk", "1")
    assert [(t["name"], t["datatype"], t["shape"]) for t in metadata["inputs"]] == [("x", "FP32", [-1, 8])]
    config = triton_client.get_model_config("credit-risk")
    assert config["max_batch_size"] == 64 and config["input"][0]["dims"] == [8]


@pytest.mark.parametrize("version", ["", "1"])
def test_tritonclient_infer(triton_client: triton.InferenceServerClient, credit_risk_artifact: Path,
                            credit_rows: np.ndarray, version: str) -> None:
    rows = credit_rows[:7]
    x = triton.InferInput("x", list(rows.shape), "FP32")
    x.set_data_from_numpy(rows, binary_data=False)
    # Outputs asked for in binary (tritonclient's default) come back as JSON data, which it reads too.
    outputs = [triton.InferRequestedOutput("probabilities", binary_data=False), triton.InferRequestedOutput("label")]
    result = triton_client.infer("credit-risk", [x], model_version=version, outputs=outputs, request_id="triton-7")
    label, probabilities = _expected(credit_risk_artifact, rows)
    assert result.get_response()["id"] == "triton-7"
    assert result.get_response()["model_version"] == "1"
    np.testing.assert_array_equal(result.as_numpy("label"), label)
    np.testing.assert_allclose(result.as_numpy("probabilities"), probabilities, rtol=1e-6, atol=1e-7)
    assert result.as_numpy("probabilities").dtype == np.float32


def test_tritonclient_sees_errors_with_the_servers_message(triton_client: triton.InferenceServerClient,
                                                            credit_rows: np.ndarray) -> None:
    wrong = triton.InferInput("x", [1, 8], "FP64")
    wrong.set_data_from_numpy(credit_rows[:1].astype(np.float64), binary_data=False)
    with pytest.raises(InferenceServerException) as excinfo:
        triton_client.infer("credit-risk", [wrong])
    assert excinfo.value.status() == "400"
    assert "datatype 'FP64', the model expects FP32" in excinfo.value.message()
    # tritonclient's default is the binary tensor extension, which this server does not speak:
    # a clear 400, never a 500.
    binary = triton.InferInput("x", [1, 8], "FP32")
    binary.set_data_from_numpy(credit_rows[:1])
    with pytest.raises(InferenceServerException) as excinfo:
        triton_client.infer("credit-risk", [binary])
    assert excinfo.value.status() == "400"
    assert "binary tensor extension" in excinfo.value.message() and "binary_data=False" in excinfo.value.message()
    with pytest.raises(InferenceServerException) as excinfo:
        triton_client.get_model_metadata("credit-risk", "2")
    assert excinfo.value.status() == "404" and "no version '2'" in excinfo.value.message()


def test_kserve_rest_client(credit_server: Server, credit_risk_artifact: Path, credit_rows: np.ndarray) -> None:
    rows = credit_rows[:4]
    kserve = _kserve()
    InferenceRESTClient, RESTConfig = kserve.InferenceRESTClient, kserve.RESTConfig  # noqa: N806
    InferInput, InferRequest = kserve.InferInput, kserve.InferRequest  # noqa: N806

    async def session() -> None:
        client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30, retries=0))
        try:
            assert await client.is_server_live(credit_server.url)
            assert await client.is_server_ready(credit_server.url)
            assert await client.is_model_ready(credit_server.url, "credit-risk")
            assert not await client.is_model_ready(credit_server.url, "other-model")
            request = InferRequest(model_name="credit-risk", request_id="kserve-1",
                                   infer_inputs=[InferInput("x", list(rows.shape), "FP32", data=rows.tolist())])
            response = await client.infer(credit_server.url, request, model_name="credit-risk")
            assert response.id == "kserve-1" and response.model_name == "credit-risk"
            outputs = {o.name: o.as_numpy() for o in response.outputs}
            label, probabilities = _expected(credit_risk_artifact, rows)
            np.testing.assert_array_equal(outputs["label"].astype(np.int64), label)
            np.testing.assert_allclose(outputs["probabilities"], probabilities, rtol=1e-6, atol=1e-7)
            # A numpy array given to InferInput goes out as JSON data too.
            numpy_input = InferInput("x", list(rows.shape), "FP32")
            numpy_input.set_data_from_numpy(rows, binary_data=False)
            again = await client.infer(credit_server.url, InferRequest(model_name="credit-risk",
                                                                       infer_inputs=[numpy_input]),
                                       model_name="credit-risk")
            np.testing.assert_allclose(again.outputs[1].as_numpy(), probabilities, rtol=1e-6, atol=1e-7)
            bad = InferRequest(model_name="credit-risk", infer_inputs=[InferInput("x", [1, 7], "FP32",
                                                                                  data=[0.0] * 7)])
            with pytest.raises(httpx.HTTPStatusError) as excinfo:
                await client.infer(credit_server.url, bad, model_name="credit-risk")
            assert excinfo.value.response.status_code == 400
            # kserve lifts the server's {"error": ...} message into the exception text.
            assert "dimension 1 is 7, the model expects 8" in str(excinfo.value)
        finally:
            await client.close()

    asyncio.run(session())
