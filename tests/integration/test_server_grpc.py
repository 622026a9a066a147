"""The OIP gRPC front end of a real server process: tritonclient.grpc unchanged on both examples, every datatype,
typed and raw contents, the HTTP suite's bad inputs with the right gRPC status codes, metrics by protocol,
the payload spool, and a graceful drain of gRPC requests in flight (KServe's gRPC client: kserve_clients.py).

Messages are built with tritonclient's generated classes. The test process must never import modelfleet's
own ``inference_pb2`` (nor kserve's): they declare the same ``inference.*`` messages, and protobuf refuses
a second definition in one process."""

from __future__ import annotations

import signal
import struct
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as triton
from harness import wait_for
from serverkit import Server, StartServer, spool_lines
from tritonclient.grpc import service_pb2 as pb
from tritonclient.utils import InferenceServerException

from modelfleet.spool.record import decode

pytestmark = pytest.mark.integration

INFER = "/inference.GRPCInferenceService/ModelInfer"
ROW = [30.0, 40000.0, 0.3, 3.0, 1.0, 0.5, 1.0, 0.0]
STRINGS = struct.pack("<I", len("héllo ✓".encode())) + "héllo ✓".encode() + struct.pack("<I", 0)  # ["héllo ✓", ""]


@pytest.fixture
def client(credit_server: Server) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(credit_server.grpc_address)
    yield client
    client.close()


def _expected(artifact_dir: Path, rows: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(artifact_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {"x": rows}), strict=True))


def test_health_metadata_config_and_statistics(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("credit-risk") and client.is_model_ready("credit-risk", "1")
    assert not client.is_model_ready("credit-risk", "7") and not client.is_model_ready("no-such-model")
    server = client.get_server_metadata(as_json=True)
    assert server["name"] == "modelfleet" and server["extensions"] == ["binary_tensor_data"]
    metadata = client.get_model_metadata("credit-risk", "1", as_json=True)
    assert metadata["platform"] == "onnxruntime_onnx" and metadata["versions"] == ["1"]
    assert [(t["name"], t["datatype"], t["shape"]) for t in metadata["inputs"]] == [("x", "FP32", ["-1", "8"])]
    config = client.get_model_config("credit-risk", as_json=True)["config"]
    assert config["max_batch_size"] == 64 and config["input"] == [{"name": "x", "data_type": "TYPE_FP32",
                                                                   "dims": ["8"]}]
    assert config["parameters"]["oversized_batches"]["string_value"].startswith("split")
    assert config["instance_group"] == [{"count": 1, "kind": "KIND_CPU"}]
    stats = client.get_inference_statistics("credit-risk", as_json=True)["model_stats"]
    assert [(s["name"], s["version"]) for s in stats] == [("credit-risk", "1")]
    with pytest.raises(InferenceServerException) as excinfo:
        client.get_model_metadata("credit-risk", "2")
    assert excinfo.value.status() == "StatusCode.NOT_FOUND" and "no version '2'" in excinfo.value.message()
    with pytest.raises(InferenceServerException) as excinfo:
        client.get_model_config("fraud")
    assert excinfo.value.status() == "StatusCode.NOT_FOUND" and "unknown model 'fraud'" in excinfo.value.message()


@pytest.mark.parametrize("example", ["credit-risk", "mlp"])
def test_tritonclient_grpc_on_both_examples(request: pytest.FixtureRequest, example: str,
                                            credit_rows: np.ndarray) -> None:
    server: Server = request.getfixturevalue("credit_server" if example == "credit-risk" else "mlp_server")
    artifact: Path = request.getfixturevalue("credit_risk_artifact" if example == "credit-risk" else "mlp_artifact")
    width = 8 if example == "credit-risk" else 16
    rows = credit_rows[:100] if example == "credit-risk" else \
        np.random.default_rng(3).normal(size=(100, width)).astype(np.float32)
    expected = _expected(artifact, rows)
    client = triton.InferenceServerClient(server.grpc_address)
    try:
        for count in (1, 7, 100):  # 100 rows: above both max batches, run as chunks
            x = triton.InferInput("x", [count, width], "FP32")
            x.set_data_from_numpy(rows[:count])
            result = client.infer(example, [x], request_id=f"g-{count}", model_version="1")
            assert result.get_response().id == f"g-{count}" and result.get_response().model_version == "1"
            for name, values in expected.items():
                np.testing.assert_allclose(result.as_numpy(name), values[:count], rtol=1e-6, atol=1e-7)
                assert result.as_numpy(name).dtype == values.dtype
        only = client.infer(example, [x], outputs=[triton.InferRequestedOutput(list(expected)[-1])])
        assert [o.name for o in only.get_response().outputs] == [list(expected)[-1]]
    finally:
        client.close()
    metrics = server.metrics()
    assert metrics.value("modelfleet_inference_requests_total", protocol="grpc", status="200") >= 4


def _infer_raw(server: Server, message: bytes) -> grpc.RpcError | pb.ModelInferResponse:
    with grpc.insecure_channel(server.grpc_address) as channel:
        call = channel.unary_unary(INFER)
        try:
            return pb.ModelInferResponse.FromString(call(message, timeout=30))
        except grpc.RpcError as exc:
            return exc


def _typed_request(**inputs: tuple[str, list[int], dict[str, Any]]) -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name="typed", id="typed-grpc")
    for name, (datatype, shape, contents) in inputs.items():
        message.inputs.add(name=name, datatype=datatype, shape=shape, contents=pb.InferTensorContents(**contents))
    return message


def test_every_datatype_as_typed_contents(typed_server: Server) -> None:
    message = _typed_request(
        x=("FP32", [2, 3], {"fp32_contents": [1.5, -2.25, 3.0, 0.1, 1e30, -0.0]}),
        d=("FP64", [2, 2], {"fp64_contents": [0.1, 1e300, -2.5, 3.0]}),
        i=("INT32", [2, 2], {"int_contents": [2147483647, 3, -5, -2147483648]}),
        u=("UINT8", [2], {"uint_contents": [255, 7]}), b=("BOOL", [2], {"bool_contents": [True, False]}),
        s=("BYTES", [2], {"bytes_contents": ["héllo ✓".encode(), b""]}))
    # FP16 has no typed field: typed contents for the rest, FP16 alone can't be mixed in; send all raw instead.
    message.inputs.add(name="h", datatype="FP16", shape=[2, 2])
    refused = _infer_raw(typed_server, message.SerializeToString())
    assert isinstance(refused, grpc.RpcError) and refused.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "FP16 has no typed contents field; send it in raw_input_contents" in str(refused.details())
    raw = [np.array([1.5, -2.25, 3.0, 0.1, 1e30, -0.0], "<f4").tobytes(), np.array([0.1, 1e300, -2.5, 3.0]).tobytes(),
           np.array([2147483647, 3, -5, -2147483648], "<i4").tobytes(), bytes([255, 7]), bytes([1, 0]),
           STRINGS,
           np.array([0.5, 1.5, -2.0, 1000.0], "<f2").tobytes()]
    for tensor in message.inputs:
        tensor.ClearField("contents")
    message.raw_input_contents.extend(raw)
    answer = _infer_raw(typed_server, message.SerializeToString())
    assert isinstance(answer, pb.ModelInferResponse), answer
    outputs = {o.name: (o.datatype, list(o.shape), answer.raw_output_contents[k]) for k, o in enumerate(answer.outputs)}
    assert outputs["isum"][:2] == ("INT64", [2])
    assert np.frombuffer(outputs["isum"][2], "<i8").tolist() == [2147483650, -2147483653]
    assert np.frombuffer(outputs["h2"][2], "<f2").tolist() == [1.0, 3.0, -4.0, 2000.0]
    assert outputs["s_out"][2] == STRINGS
    assert np.frombuffer(outputs["nb"][2], np.uint8).tolist() == [0, 1]


def _credit(contents: list[float] | None = None, *, shape: list[int] | None = None, datatype: str = "FP32",
            raw: list[bytes] | None = None, **fields: Any) -> bytes:
    message = pb.ModelInferRequest(model_name=fields.pop("model", "credit-risk"),
                                   model_version=fields.pop("version", ""), **fields)
    tensor = message.inputs.add(name="x", datatype=datatype, shape=shape or [1, 8])
    if raw is not None:
        message.raw_input_contents.extend(raw)
    elif contents is not None:
        tensor.contents.fp32_contents.extend(contents)
    return message.SerializeToString()


def _with_outputs(*names: str) -> bytes:
    message = pb.ModelInferRequest.FromString(_credit(ROW))
    for name in names:
        message.outputs.add(name=name)
    return message.SerializeToString()


def _two_inputs() -> bytes:
    message = pb.ModelInferRequest.FromString(_credit(ROW))
    message.inputs.append(message.inputs[0])
    return message.SerializeToString()


def _int_contents() -> bytes:
    message = pb.ModelInferRequest.FromString(_credit())
    message.inputs[0].contents.int64_contents.extend([1] * 8)
    return message.SerializeToString()


def _renamed(name: str) -> bytes:
    message = pb.ModelInferRequest.FromString(_credit(ROW))
    message.inputs[0].name = name
    return message.SerializeToString()


def _classification() -> bytes:
    message = pb.ModelInferRequest.FromString(_credit(ROW))
    message.outputs.add(name="probabilities").parameters["classification"].int64_param = 2
    return message.SerializeToString()


BAD = {
    "malformed protobuf": (b"\xff\xff\xff", grpc.StatusCode.INVALID_ARGUMENT, "malformed protobuf"),
    "no inputs": (pb.ModelInferRequest(model_name="credit-risk").SerializeToString(),
                  grpc.StatusCode.INVALID_ARGUMENT, "inputs must be a non-empty list"),
    "unknown datatype": (_credit(ROW, datatype="FLOAT"), grpc.StatusCode.INVALID_ARGUMENT,
                         "datatype 'FLOAT', the model expects FP32"),
    "unknown input": (_renamed("z"), grpc.StatusCode.INVALID_ARGUMENT, "input 'z': the model has no such input"),
    "too many elements": (_credit([*ROW, 1.0]), grpc.StatusCode.INVALID_ARGUMENT, "needs 8 element(s), data has 9"),
    "classification": (_classification(), grpc.StatusCode.INVALID_ARGUMENT,
                       "the classification extension is not supported"),
    "wrong datatype": (_credit(ROW, datatype="FP64"), grpc.StatusCode.INVALID_ARGUMENT,
                       "input 'x': datatype 'FP64', the model expects FP32"),
    "wrong rank": (_credit(ROW, shape=[8]), grpc.StatusCode.INVALID_ARGUMENT,
                   "shape [8] has rank 1, the model expects rank 2"),
    "wrong inner dimension": (_credit(ROW[:7], shape=[1, 7]), grpc.StatusCode.INVALID_ARGUMENT,
                              "dimension 1 is 7, the model expects 8"),
    "negative dimension": (_credit(ROW, shape=[-1, 8]), grpc.StatusCode.INVALID_ARGUMENT,
                           "shape must be a list of non-negative integers"),
    "too few elements": (_credit(ROW[:4]), grpc.StatusCode.INVALID_ARGUMENT, "needs 8 element(s), data has 4"),
    "raw too short": (_credit(raw=[np.zeros(7, np.float32).tobytes()]), grpc.StatusCode.INVALID_ARGUMENT,
                      "28 byte(s) of FP32 data; shape [1, 8] needs 32"),
    "raw count": (_credit(raw=[b"", b""]), grpc.StatusCode.INVALID_ARGUMENT,
                  "raw_input_contents has 2 entries for 1 inputs"),
    "wrong contents field": (_int_contents(), grpc.StatusCode.INVALID_ARGUMENT,
                             "FP32 data belongs in contents.fp32_contents, got int64_contents"),
    "empty batch": (_credit([], shape=[0, 8]), grpc.StatusCode.INVALID_ARGUMENT, "the batch is empty"),
    "input twice": (_two_inputs(), grpc.StatusCode.INVALID_ARGUMENT, "input 'x': given twice"),
    "unknown output": (_with_outputs("score"), grpc.StatusCode.INVALID_ARGUMENT,
                       "requested output(s) ['score'] do not exist"),
    "output twice": (_with_outputs("label", "label"), grpc.StatusCode.INVALID_ARGUMENT,
                     "requested output(s) ['label'] listed more than once"),
    "unknown model": (_credit(ROW, model="fraud"), grpc.StatusCode.NOT_FOUND,
                      "unknown model 'fraud'; this server serves 'credit-risk'"),
    "unknown version": (_credit(ROW, version="2"), grpc.StatusCode.NOT_FOUND,
                        "model 'credit-risk' has no version '2' here"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_gets_its_grpc_status_and_message(credit_server: Server, case: str) -> None:
    message, code, text = BAD[case]
    before = credit_server.metrics()
    answer = _infer_raw(credit_server, message)
    assert isinstance(answer, grpc.RpcError), answer
    assert answer.code() == code and text in str(answer.details()), (answer.code(), answer.details())
    after = credit_server.metrics()
    status = "404" if code == grpc.StatusCode.NOT_FOUND else "400"
    counted = "modelfleet_inference_requests_total"
    assert after.value(counted, protocol="grpc", status=status) == before.value(counted, protocol="grpc",
                                                                                 status=status) + 1
    if status == "400":
        assert after.value("nv_inference_request_failure_total", reason="invalid_request") == \
            before.value("nv_inference_request_failure_total", reason="invalid_request") + 1


def test_oversized_message_is_resource_exhausted(start_server: StartServer, credit_risk_artifact: Path) -> None:
    server = start_server(credit_risk_artifact, "--grpc-port", "0", "--max-request-bytes", "2048")
    assert not isinstance(_infer_raw(server, _credit(ROW * 4, shape=[4, 8])), grpc.RpcError)
    answer = _infer_raw(server, _credit(ROW * 100, shape=[100, 8]))  # 3200 bytes of packed floats
    assert isinstance(answer, grpc.RpcError) and answer.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "exceeds the limit of 2048 bytes" in str(answer.details())
    metrics = server.metrics()
    assert metrics.value("nv_inference_request_failure_total", reason="invalid_request") == 1
    assert metrics.value("modelfleet_inference_requests_total", protocol="grpc", status="413") == 1


def test_sigterm_drains_grpc_requests_in_flight(start_server: StartServer, slow_artifact: Path,
                                                slow_iterations: Callable[[float], int]) -> None:
    server = start_server(slow_artifact, "--grpc-port", "0", "--inference-thread", "--max-batch", "1")
    iterations = slow_iterations(0.5)

    def slow(k: int) -> np.ndarray:
        client = triton.InferenceServerClient(server.grpc_address)
        try:
            x = triton.InferInput("x", [1, 2], "FP32")
            x.set_data_from_numpy(np.array([[iterations, k]], np.float32))
            return client.infer("slow", [x], client_timeout=60).as_numpy("y")
        finally:
            client.close()

    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(slow, k) for k in range(3)]
        wait_for(lambda: server.metrics().value("modelfleet_requests_in_flight") == 3, 10,
                 what="three gRPC requests in flight")
        server.signal(signal.SIGTERM)
        wait_for(lambda: server.get("/v2/health/ready").status == 503, 5, what="readiness to turn false")
        newcomer = triton.InferenceServerClient(server.grpc_address)
        try:
            assert not newcomer.is_server_ready()
        finally:
            newcomer.close()
        results = [f.result(60) for f in futures]
    for k, y in enumerate(results):
        np.testing.assert_array_equal(y, [[2.0 * iterations, 2.0 * k]])
    assert server.wait(30) == 0


def test_grpc_requests_reach_the_payload_spool(start_server: StartServer, credit_risk_artifact: Path,
                                               credit_rows: np.ndarray, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    server = start_server(credit_risk_artifact, "--grpc-port", "0", "--spool-dir", str(spool))
    client = triton.InferenceServerClient(server.grpc_address)
    try:
        x = triton.InferInput("x", [3, 8], "FP32")
        x.set_data_from_numpy(credit_rows[:3])
        labels = client.infer("credit-risk", [x], request_id="spooled-grpc").as_numpy("label")
    finally:
        client.close()
    wait_for(lambda: spool_lines(spool / "credit-risk" / "1"), 10, what="the spool record")
    (record,) = [decode(line) for line in spool_lines(spool / "credit-risk" / "1")]
    assert record.id == "spooled-grpc"
    np.testing.assert_allclose(np.asarray(record.inputs["x"].data, np.float32), credit_rows[:3])
    assert np.asarray(record.outputs["label"].data).tolist() == labels.tolist()


TYPED = {"x": np.array([[1.5, -2.25, 3.0], [0.1, 1e30, -0.0]], np.float32),
         "d": np.array([[0.1, 1e300], [-2.5, 3.0]]), "h": np.array([[0.5, 1.5], [-2.0, 1000.0]], np.float16),
         "i": np.array([[2147483647, 3], [-5, -2147483648]], np.int32), "u": np.array([255, 7], np.uint8),
         "b": np.array([True, False]), "s": np.array(["héllo wörld ✓".encode(), b""], dtype=object)}
TYPED_DATATYPES = {"x": "FP32", "d": "FP64", "h": "FP16", "i": "INT32", "u": "UINT8", "b": "BOOL", "s": "BYTES"}


@pytest.mark.parametrize("protocol", ["grpc", "http-binary"])
def test_every_datatype_through_tritonclient_serialization(typed_server: Server, protocol: str) -> None:
    """tritonclient's own raw encodings (BYTES length prefixes, BOOL bytes, FP16) in and out, unchanged."""
    import tritonclient.http as triton_http

    lib: Any = triton if protocol == "grpc" else triton_http
    client = lib.InferenceServerClient(typed_server.grpc_address if protocol == "grpc"
                                       else f"127.0.0.1:{typed_server.port}")
    try:
        inputs = []
        for name, array in TYPED.items():
            tensor = lib.InferInput(name, list(array.shape), TYPED_DATATYPES[name])
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        result = client.infer("typed", inputs)
    finally:
        client.close()
    np.testing.assert_array_equal(result.as_numpy("y"), TYPED["x"] * 2)
    np.testing.assert_array_equal(result.as_numpy("d1"), TYPED["d"] + 1)
    np.testing.assert_array_equal(result.as_numpy("h2"), TYPED["h"] * 2)
    assert result.as_numpy("h2").dtype == np.float16
    assert result.as_numpy("isum").tolist() == [2147483650, -2147483653]
    assert result.as_numpy("u1").tolist() == [0, 8]
    assert result.as_numpy("nb").tolist() == [False, True]
    assert result.as_numpy("s_out").tolist() == ["héllo wörld ✓".encode(), b""]
