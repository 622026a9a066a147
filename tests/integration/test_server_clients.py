"""Real third-party Open Inference Protocol clients, unchanged, against a real server process:
Triton's ``tritonclient.http`` (JSON and binary tensor data) and KServe's REST and gRPC clients
(tritonclient.grpc: test_server_grpc.py)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton
from serverkit import Server
from tritonclient.utils import InferenceServerException

pytestmark = pytest.mark.integration


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
    # One output as JSON data, one as binary data (tritonclient's default).
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
    # Binary data that does not make the shape it claims: the same 400 as JSON, naming the input.
    binary = triton.InferInput("x", [2, 8], "FP32")
    binary.set_data_from_numpy(credit_rows[:2])
    binary._raw_data = binary._raw_data[:-4]  # one float short; tritonclient would not send this by itself
    binary._parameters["binary_data_size"] = len(binary._raw_data)
    with pytest.raises(InferenceServerException) as excinfo:
        triton_client.infer("credit-risk", [binary])
    assert excinfo.value.status() == "400"
    assert "input 'x': 60 byte(s) of FP32 data; shape [2, 8] needs 64" in excinfo.value.message()
    with pytest.raises(InferenceServerException) as excinfo:
        triton_client.get_model_metadata("credit-risk", "2")
    assert excinfo.value.status() == "404" and "no version '2'" in excinfo.value.message()


def test_kserve_rest_and_grpc_clients(credit_server: Server, credit_risk_artifact: Path) -> None:
    # In its own process: kserve's and tritonclient.grpc's generated modules both declare inference.* messages.
    result = subprocess.run([sys.executable, str(Path(__file__).with_name("kserve_clients.py")), credit_server.url,
                             credit_server.grpc_address, str(credit_risk_artifact)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "kserve REST and gRPC clients: ok" in result.stdout


@pytest.mark.parametrize("example", ["credit-risk", "mlp"])
def test_tritonclient_http_binary_data_on_both_examples(request: pytest.FixtureRequest, example: str,
                                                        credit_rows: np.ndarray) -> None:
    """tritonclient's defaults: inputs as binary data, outputs as binary data (none requested)."""
    server: Server = request.getfixturevalue("credit_server" if example == "credit-risk" else "mlp_server")
    artifact: Path = request.getfixturevalue("credit_risk_artifact" if example == "credit-risk" else "mlp_artifact")
    session = ort.InferenceSession(str(artifact / "model.onnx"), providers=["CPUExecutionProvider"])
    width = session.get_inputs()[0].shape[1]
    rows = np.random.default_rng(7).normal(size=(100, width)).astype(np.float32)  # above both max batches
    if example == "credit-risk":
        rows = credit_rows[:100]
    names = [o.name for o in session.get_outputs()]
    expected = dict(zip(names, session.run(names, {"x": rows}), strict=True))
    client = triton.InferenceServerClient(url=f"127.0.0.1:{server.port}", network_timeout=30.0)
    try:
        x = triton.InferInput("x", list(rows.shape), "FP32")
        x.set_data_from_numpy(rows)  # binary_data=True, tritonclient's default
        result = client.infer(example, [x], request_id="bin-1")
        assert result.get_response()["id"] == "bin-1"
        assert all("binary_data_size" in o["parameters"] for o in result.get_response()["outputs"])
        for name in names:
            np.testing.assert_allclose(result.as_numpy(name), expected[name], rtol=1e-6, atol=1e-7)
            assert result.as_numpy(name).dtype == expected[name].dtype
        # Mixed: one output binary, one JSON.
        outputs = [triton.InferRequestedOutput(names[-1], binary_data=True)]
        if len(names) > 1:
            outputs.append(triton.InferRequestedOutput(names[0], binary_data=False))
        mixed = client.infer(example, [x], outputs=outputs)
        for name in names:
            np.testing.assert_allclose(mixed.as_numpy(name), expected[name], rtol=1e-6, atol=1e-7)
    finally:
        client.close()
    protocols = server.metrics().samples("modelfleet_inference_requests_total", protocol="http_binary", status="200")
    assert protocols and protocols[0][1] >= 2
