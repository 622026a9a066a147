"""Open Inference Protocol REST endpoints of a real server process: health, metadata, inference, OpenAPI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import onnxruntime as ort
import pytest
from serverkit import Server, StartServer, request, tensor

from modelfleet import __version__, artifact

pytestmark = pytest.mark.integration


def _expected(artifact_dir: Path, rows: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(artifact_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {"x": rows}), strict=True))


def _outputs(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {o["name"]: o for o in body["outputs"]}


def test_health_endpoints_and_server_metadata(credit_server: Server) -> None:
    live = credit_server.get("/v2/health/live")
    assert (live.status, live.json()) == (200, {"live": True})
    ready = credit_server.get("/v2/health/ready")
    assert (ready.status, ready.json()) == (200, {"ready": True})
    meta = credit_server.get("/v2")
    assert meta.status == 200
    assert meta.json() == {"name": "modelfleet", "version": __version__, "extensions": ["binary_tensor_data"]}


@pytest.mark.parametrize("prefix", ["/v2/models/credit-risk", "/v2/models/credit-risk/versions/1"])
def test_model_metadata_and_readiness(credit_server: Server, credit_risk_artifact: Path, prefix: str) -> None:
    manifest = artifact.verify_artifact(credit_risk_artifact)
    meta = credit_server.get(prefix)
    assert meta.status == 200
    assert meta.json() == {"name": "credit-risk", "versions": ["1"], "platform": "onnxruntime_onnx",
                           "inputs": manifest.inputs, "outputs": manifest.outputs}
    assert meta.json()["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 8]}]
    ready = credit_server.get(f"{prefix}/ready")
    assert (ready.status, ready.json()) == (200, {"name": "credit-risk", "version": "1", "ready": True})


def test_triton_style_model_config(credit_server: Server) -> None:
    config = credit_server.get("/v2/models/credit-risk/config").json()
    assert config["max_batch_size"] == 64
    assert config["input"] == [{"name": "x", "data_type": "TYPE_FP32", "dims": [8]}]
    assert {o["name"]: o["dims"] for o in config["output"]} == {"label": [], "probabilities": [2]}
    assert config["parameters"]["execution_provider"] == {"string_value": "cpu"}
    assert config["parameters"]["oversized_batches"]["string_value"].startswith("split: a request with more rows")
    assert config["parameters"]["max_request_bytes"] == {"string_value": str(16 << 20)}


def test_more_rows_than_the_max_batch_run_as_chunks_of_it(start_server: StartServer, credit_risk_artifact: Path,
                                                           credit_rows: np.ndarray) -> None:
    server = start_server(credit_risk_artifact)
    rows = credit_rows[:150]  # max batch 64: chunks of 64, 64 and 22 rows
    response = server.infer("credit-risk", {"inputs": [tensor("x", "FP32", rows.tolist(), [150, 8])]})
    assert response.status == 200, response.body
    session = ort.InferenceSession(str(credit_risk_artifact / "model.onnx"), providers=["CPUExecutionProvider"])
    label, probabilities = session.run(["label", "probabilities"], {"x": rows})
    outputs = _outputs(response.json())
    assert outputs["label"]["shape"] == [150] and outputs["label"]["data"] == label.tolist()
    np.testing.assert_allclose(np.float32(outputs["probabilities"]["data"]).reshape(150, 2), probabilities,
                               rtol=1e-6, atol=1e-7)
    metrics = server.metrics()
    assert metrics.value("nv_inference_exec_count_total") == 3 and metrics.value("nv_inference_count_total") == 150
    assert metrics.value("modelfleet_batch_size_bucket", le="64.0") == 3  # no execution beyond the max batch
    stats = server.get("/v2/models/credit-risk/stats").json()["model_stats"][0]
    assert (stats["inference_count"], stats["execution_count"]) == (150, 3)
    assert stats["inference_stats"]["success"]["count"] == 1


@pytest.mark.parametrize("layout", ["flat", "nested"])
@pytest.mark.parametrize("version", [None, "1"])
def test_inference_matches_onnx_runtime(credit_server: Server, credit_risk_artifact: Path, credit_rows: np.ndarray,
                                        layout: str, version: str | None) -> None:
    rows = credit_rows[:5]
    data = rows.ravel().tolist() if layout == "flat" else rows.tolist()
    response = credit_server.infer("credit-risk", {"inputs": [tensor("x", "FP32", data, rows.shape)]}, version)
    assert response.status == 200, response.body
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert (body["model_name"], body["model_version"]) == ("credit-risk", "1")
    outputs = _outputs(body)
    expected = _expected(credit_risk_artifact, rows)
    assert outputs["label"]["datatype"] == "INT64" and outputs["label"]["shape"] == [5]
    np.testing.assert_array_equal(outputs["label"]["data"], expected["label"])
    assert outputs["probabilities"]["datatype"] == "FP32" and outputs["probabilities"]["shape"] == [5, 2]
    np.testing.assert_allclose(np.reshape(outputs["probabilities"]["data"], (5, 2)), expected["probabilities"],
                               rtol=1e-6, atol=1e-7)


def test_request_id_is_echoed_or_generated(credit_server: Server, credit_rows: np.ndarray) -> None:
    x = tensor("x", "FP32", credit_rows[:1].tolist(), [1, 8])
    assert credit_server.infer("credit-risk", {"id": "req-ü-42", "inputs": [x]}).json()["id"] == "req-ü-42"
    generated = {credit_server.infer("credit-risk", {"inputs": [x]}).json()["id"] for _ in range(3)}
    assert len(generated) == 3 and all(isinstance(i, str) and i for i in generated)


def test_requested_outputs_and_parameters(credit_server: Server, credit_rows: np.ndarray) -> None:
    payload = {"id": "p", "parameters": {"priority": 1, "binary_data_output": False},
               "inputs": [{**tensor("x", "FP32", credit_rows[:2].tolist(), [2, 8]),
                           "parameters": {"content_type": "np"}}],
               "outputs": [{"name": "probabilities", "parameters": {"binary_data": False}}]}
    body = credit_server.infer("credit-risk", payload).json()
    assert [o["name"] for o in body["outputs"]] == ["probabilities"]
    assert body["outputs"][0]["shape"] == [2, 2]
    only_label = credit_server.infer("credit-risk", {**payload, "outputs": [{"name": "label"}]}).json()
    assert [o["name"] for o in only_label["outputs"]] == ["label"]


def test_every_datatype_of_the_model_round_trips(typed_server: Server) -> None:
    x = np.array([[1.5, -2.25, 3.0], [0.1, 1e30, -0.0]], np.float32)
    d = np.array([[0.1, 1e300], [-2.5, 3.0]])
    h = np.array([[0.5, 1.5], [-2.0, 1000.0]], np.float16)
    payload = {"id": "typed-1", "inputs": [
        tensor("x", "FP32", x.tolist(), [2, 3]), tensor("d", "FP64", d.ravel().tolist(), [2, 2]),
        tensor("h", "FP16", h.tolist(), [2, 2]), tensor("i", "INT32", [[2147483647, 3], [-5, -2147483648]], [2, 2]),
        tensor("u", "UINT8", [255, 7], [2]), tensor("b", "BOOL", [True, False], [2]),
        tensor("s", "BYTES", ["héllo wörld ✓", ""], [2])]}
    response = typed_server.infer("typed", payload)
    assert response.status == 200, response.body
    outputs = _outputs(response.json())
    assert {name: (o["datatype"], o["shape"]) for name, o in outputs.items()} == {
        "y": ("FP32", [2, 3]), "d1": ("FP64", [2, 2]), "h2": ("FP16", [2, 2]), "isum": ("INT64", [2]),
        "u1": ("UINT8", [2]), "nb": ("BOOL", [2]), "s_out": ("BYTES", [2])}
    np.testing.assert_array_equal(np.float32(outputs["y"]["data"]), (x * 2).ravel())
    np.testing.assert_array_equal(outputs["d1"]["data"], (d + 1).ravel())
    np.testing.assert_array_equal(np.float16(outputs["h2"]["data"]), (h * 2).ravel())
    assert outputs["isum"]["data"] == [2147483650, -2147483653]  # summed in INT64: no INT32 overflow
    assert outputs["u1"]["data"] == [0, 8]
    assert outputs["nb"]["data"] == [False, True]
    assert outputs["s_out"]["data"] == ["héllo wörld ✓", ""]


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("POST", "/v2/health/ready", "GET"), ("DELETE", "/v2/models/credit-risk", "GET"),
    ("GET", "/v2/models/credit-risk/infer", "POST"), ("PUT", "/v2/models/credit-risk/versions/1/infer", "POST")])
def test_wrong_method_is_405_with_allow(credit_server: Server, method: str, path: str, allow: str) -> None:
    response = request(credit_server.port, method, path)
    assert response.status == 405
    assert response.headers["allow"] == allow
    assert method in response.error()


def test_openapi_document_describes_the_live_api(credit_server: Server, credit_rows: np.ndarray) -> None:
    document = credit_server.get("/v2/openapi.json").json()
    assert document["openapi"].startswith("3.0")
    assert {path: sorted(ops) for path, ops in document["paths"].items()} == {
        "/v2": ["get"], "/v2/health/live": ["get"], "/v2/health/ready": ["get"], "/metrics": ["get"],
        "/v2/models/{model_name}": ["get"], "/v2/models/{model_name}/ready": ["get"],
        "/v2/models/{model_name}/config": ["get"], "/v2/models/{model_name}/infer": ["post"],
        "/v2/models/{model_name}/stats": ["get"], "/v2/models/{model_name}/versions/{model_version}/stats": ["get"],
        "/v2/models/{model_name}/versions/{model_version}": ["get"],
        "/v2/models/{model_name}/versions/{model_version}/ready": ["get"],
        "/v2/models/{model_name}/versions/{model_version}/config": ["get"],
        "/v2/models/{model_name}/versions/{model_version}/infer": ["post"]}

    def conforms(schema: str, instance: Any) -> None:
        jsonschema.validate(instance, {"$ref": f"#/components/schemas/{schema}",
                                       "components": document["components"]})

    request_body = {"id": "o", "inputs": [tensor("x", "FP32", credit_rows[:2].tolist(), [2, 8])]}
    conforms("InferenceRequest", request_body)
    conforms("InferenceResponse", credit_server.infer("credit-risk", request_body).json())
    conforms("ModelMetadata", credit_server.get("/v2/models/credit-risk").json())
    conforms("ModelReady", credit_server.get("/v2/models/credit-risk/ready").json())
    conforms("ServerMetadata", credit_server.get("/v2").json())
    conforms("Ready", credit_server.get("/v2/health/ready").json())
    conforms("Live", credit_server.get("/v2/health/live").json())
    conforms("Error", credit_server.infer("credit-risk", b"{").json())
    with pytest.raises(jsonschema.ValidationError):
        conforms("InferenceRequest", {"inputs": [{"name": "x", "datatype": "FP99", "shape": [1], "data": [1]}]})
