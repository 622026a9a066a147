"""KServe's REST and gRPC clients, unchanged, against a running server: ``python kserve_clients.py HTTP_URL
GRPC_ADDRESS ARTIFACT_DIR``. A separate process because kserve's generated protobuf module and
tritonclient.grpc's both declare ``inference.*`` messages and cannot be loaded into one process."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx
import kserve
import numpy as np
import onnxruntime as ort


def _expected(artifact_dir: Path, rows: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(str(artifact_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    return list(session.run(["label", "probabilities"], {"x": rows}))


def _check(outputs: dict[str, np.ndarray], expected: list[np.ndarray]) -> None:
    np.testing.assert_array_equal(outputs["label"].astype(np.int64), expected[0])
    np.testing.assert_allclose(outputs["probabilities"], expected[1], rtol=1e-6, atol=1e-7)


async def rest(url: str, rows: np.ndarray, expected: list[np.ndarray]) -> None:
    client = kserve.InferenceRESTClient(kserve.RESTConfig(protocol="v2", timeout=30, retries=0))
    try:
        assert await client.is_server_live(url)
        assert await client.is_server_ready(url)
        assert await client.is_model_ready(url, "credit-risk")
        assert not await client.is_model_ready(url, "other-model")
        request = kserve.InferRequest(model_name="credit-risk", request_id="kserve-1", infer_inputs=[
            kserve.InferInput("x", list(rows.shape), "FP32", data=rows.tolist())])
        response = await client.infer(url, request, model_name="credit-risk")
        assert response.id == "kserve-1" and response.model_name == "credit-risk"
        _check({o.name: o.as_numpy() for o in response.outputs}, expected)
        # A numpy array given to InferInput goes out as JSON data too.
        numpy_input = kserve.InferInput("x", list(rows.shape), "FP32")
        numpy_input.set_data_from_numpy(rows, binary_data=False)
        again = await client.infer(url, kserve.InferRequest(model_name="credit-risk", infer_inputs=[numpy_input]),
                                   model_name="credit-risk")
        np.testing.assert_allclose(again.outputs[1].as_numpy(), expected[1], rtol=1e-6, atol=1e-7)
        bad = kserve.InferRequest(model_name="credit-risk", infer_inputs=[
            kserve.InferInput("x", [1, 7], "FP32", data=[0.0] * 7)])
        try:
            await client.infer(url, bad, model_name="credit-risk")
        except httpx.HTTPStatusError as exc:
            assert exc.response.status_code == 400
            # kserve lifts the server's {"error": ...} message into the exception text.
            assert "dimension 1 is 7, the model expects 8" in str(exc), exc
        else:
            raise AssertionError("a wrong dimension was accepted")
    finally:
        await client.close()


async def grpc(address: str, rows: np.ndarray, expected: list[np.ndarray]) -> None:
    import grpc as grpc_lib

    client = kserve.InferenceGRPCClient(address, timeout=30, retries=0)
    try:
        assert await client.is_server_ready()
        assert await client.is_model_ready("credit-risk")
        for binary in (False, True):  # typed contents, then raw_input_contents
            infer_input = kserve.InferInput("x", list(rows.shape), "FP32")
            infer_input.set_data_from_numpy(rows, binary_data=binary)
            request = kserve.InferRequest(model_name="credit-risk", request_id=f"kserve-grpc-{binary}",
                                          infer_inputs=[infer_input])
            response = await client.infer(request)
            assert response.id == f"kserve-grpc-{binary}" and response.model_name == "credit-risk"
            _check({o.name: o.as_numpy() for o in response.outputs}, expected)
        bad = kserve.InferInput("x", [1, 7], "FP32")
        bad.set_data_from_numpy(rows[:1, :7].copy(), binary_data=True)
        try:
            await client.infer(kserve.InferRequest(model_name="credit-risk", infer_inputs=[bad]))
        except grpc_lib.aio.AioRpcError as exc:
            assert exc.code() == grpc_lib.StatusCode.INVALID_ARGUMENT, exc
            assert "dimension 1 is 7, the model expects 8" in (exc.details() or ""), exc
        else:
            raise AssertionError("a wrong dimension was accepted over gRPC")
    finally:
        await client.close()


def main() -> None:
    url, address, artifact_dir = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    rows = np.load(artifact_dir.parents[2] / "examples" / "credit-risk" / "data" / "reference.npz")["x"][:4]
    rows = rows.astype(np.float32)
    expected = _expected(artifact_dir, rows)
    asyncio.run(rest(url, rows, expected))
    asyncio.run(grpc(address, rows, expected))
    print("kserve REST and gRPC clients: ok")


if __name__ == "__main__":
    main()
