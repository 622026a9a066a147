"""Client mistakes against a real server: each answered with the right 4xx and a message saying what was
wrong, counted as a failure, never a 500; huge bodies (413), slow and vanishing clients (408)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from harness import wait_for
from serverkit import Server, StartServer, raw_exchange, request, tensor

pytestmark = pytest.mark.integration

INVALID = 'nv_inference_request_failure_total'


def _typed_inputs(rows: int = 1, **replace: dict[str, Any]) -> list[dict[str, Any]]:
    inputs = {"x": tensor("x", "FP32", [[1.0, 2.0, 3.0]] * rows, [rows, 3]),
              "d": tensor("d", "FP64", [[1.0, 2.0]] * rows, [rows, 2]),
              "h": tensor("h", "FP16", [[1.0, 2.0]] * rows, [rows, 2]),
              "i": tensor("i", "INT32", [[1, 2]] * rows, [rows, 2]),
              "u": tensor("u", "UINT8", [1] * rows, [rows]), "b": tensor("b", "BOOL", [True] * rows, [rows]),
              "s": tensor("s", "BYTES", ["a"] * rows, [rows])}
    inputs.update(replace)
    return list(inputs.values())


def _invalid_count(server: Server) -> float:
    return server.metrics().value(INVALID, reason="invalid_request")


def _x(data: Any, shape: list[int], datatype: str = "FP32") -> dict[str, Any]:
    return {"inputs": [tensor("x", datatype, data, shape)]}


ROW = [30.0, 40000.0, 0.3, 3.0, 1.0, 0.5, 1.0, 0.0]

CREDIT_CASES = {
    "malformed JSON": (b'{"inputs": [{"name": "x",', "malformed JSON"),
    "empty body": (b"", "malformed JSON"),
    "not an object": (b"[1, 2, 3]", "must be a JSON object"),
    "wrong datatype": (_x([ROW], [1, 8], "FP64"), "input 'x': datatype 'FP64', the model expects FP32"),
    "unknown datatype": (_x([ROW], [1, 8], "FLOAT"), "datatype 'FLOAT', the model expects FP32"),
    "text for FP32": (_x([["a"] * 8], [1, 8]), "data cannot be read as FP32"),
    "wrong rank": (_x(ROW, [8]), "shape [8] has rank 1, the model expects rank 2"),
    "wrong inner dimension": (_x([ROW[:7]], [1, 7]), "dimension 1 is 7, the model expects 8"),
    "too many elements": (_x([*ROW, 1.0], [1, 8]), "shape [1, 8] needs 8 element(s), data has 9"),
    "too few elements": (_x(ROW[:4], [1, 8]), "needs 8 element(s), data has 4"),
    "ragged rows": (_x([ROW, ROW[:7]], [2, 8]), "data cannot be read as FP32"),
    "negative dimension": (_x([ROW], [-1, 8]), "shape must be a list of non-negative integers"),
    "null in FP32": (_x([[*ROW[:3], None, *ROW[4:]]], [1, 8]), "input 'x': element [0, 3] is null; FP32 data must"),
    "true in FP32": (_x([*ROW[:7], True], [1, 8]), "input 'x': element 7 is true; FP32 data must be numbers"),
    "output twice": ({"inputs": [tensor("x", "FP32", ROW, [1, 8])], "outputs": [{"name": "label"}] * 2},
                     "requested output(s) ['label'] listed more than once"),
    "empty batch": (_x([], [0, 8]), "the batch is empty"),
    "no inputs": ({"inputs": []}, "inputs must be a non-empty list"),
    "missing inputs field": ({"id": "a"}, "inputs must be a non-empty list"),
    "unknown input": ({"inputs": [tensor("z", "FP32", ROW, [1, 8])]}, "input 'z': the model has no such input"),
    "input twice": ({"inputs": [tensor("x", "FP32", ROW, [1, 8])] * 2}, "input 'x': given twice"),
    "input without name": ({"inputs": [{"datatype": "FP32", "shape": [1, 8], "data": ROW}]}, "must be an object"),
    "no data": ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 8]}]}, "input 'x': no data"),
    "numeric id": ({"id": 7, "inputs": [tensor("x", "FP32", ROW, [1, 8])]}, "id must be a string"),
    "unknown output": ({"inputs": [tensor("x", "FP32", ROW, [1, 8])], "outputs": [{"name": "score"}]},
                       "requested output(s) ['score'] do not exist"),
    "outputs not a list": ({"inputs": [tensor("x", "FP32", ROW, [1, 8])], "outputs": "label"},
                           "outputs must be a list"),
    "too deeply nested": (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 8], "data": '
                          + b"[" * 3000 + b"]" * 3000 + b"}]}", "malformed JSON"),
}


@pytest.mark.parametrize("case", list(CREDIT_CASES))
def test_client_mistake_is_a_400_that_says_what_was_wrong(credit_server: Server, case: str) -> None:
    payload, message = CREDIT_CASES[case]
    before = _invalid_count(credit_server)
    response = credit_server.infer("credit-risk", payload)  # type: ignore[arg-type]
    assert response.status == 400, (response.status, response.body)
    assert message in response.error()
    assert _invalid_count(credit_server) == before + 1


TYPED_CASES = {
    "missing inputs": ([tensor("x", "FP32", [1, 2, 3], [1, 3])], "missing input(s) ['d', 'h', 'i', 'u', 'b', 's']"),
    "float for INT32": (_typed_inputs(i=tensor("i", "INT32", [1.5, 2], [1, 2])), "INT32 data must be integers"),
    "INT32 out of range": (_typed_inputs(i=tensor("i", "INT32", [2**31, 0], [1, 2])), "outside the range of INT32"),
    "negative UINT8": (_typed_inputs(u=tensor("u", "UINT8", [-1], [1])), "outside the range of UINT8"),
    "number for BOOL": (_typed_inputs(b=tensor("b", "BOOL", [1], [1])), "BOOL data must be true/false"),
    "number for BYTES": (_typed_inputs(s=tensor("s", "BYTES", [5], [1])), "BYTES data must be strings"),
    "batch sizes disagree": (_typed_inputs(u=tensor("u", "UINT8", [1, 2], [2])), "disagree on the batch size"),
}


@pytest.mark.parametrize("case", list(TYPED_CASES))
def test_datatype_and_input_mistakes_on_a_multi_input_model(typed_server: Server, case: str) -> None:
    inputs, message = TYPED_CASES[case]
    response = typed_server.infer("typed", {"inputs": inputs})
    assert response.status == 400, (response.status, response.body)
    assert message in response.error()


@pytest.mark.parametrize(("path", "message"), [
    ("/v2/models/fraud/infer", "unknown model 'fraud'; this server serves 'credit-risk'"),
    ("/v2/models/fraud", "unknown model 'fraud'"),
    ("/v2/models/fraud/ready", "unknown model 'fraud'"),
    ("/v2/models/credit-risk/versions/2/infer", "model 'credit-risk' has no version '2' here"),
    ("/v2/models/credit-risk/versions/2", "has no version '2'"),
    ("/v2/models/credit-risk/versions/2/ready", "has no version '2'"),
    ("/v2/models/credit-risk/versions/", "missing version"),
    ("/v2/models/credit-risk/explain", "no route"),
    ("/v1/models/credit-risk:predict", "no route"),
])
def test_unknown_model_version_or_route_is_404(credit_server: Server, path: str, message: str) -> None:
    method = "POST" if path.endswith(("infer", "predict")) else "GET"
    response = request(credit_server.port, method, path, _x([ROW], [1, 8]) if method == "POST" else None)
    assert response.status == 404
    assert message in response.error()


def test_default_body_limit_answers_413_before_reading_the_body(credit_server: Server) -> None:
    size = (16 << 20) + 1
    head = (f"POST /v2/models/credit-risk/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {size}\r\n\r\n").encode()
    answer = raw_exchange(credit_server.port, head + b'{"inputs": [')  # the rest is never sent
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"exceeds the limit of 16777216 bytes" in answer


def test_small_body_limit_with_and_without_content_length(start_server: StartServer,
                                                          credit_risk_artifact: Path) -> None:
    server = start_server(credit_risk_artifact, "--max-request-bytes", "2048")
    small = _x([ROW] * 4, [4, 8])
    assert len(json.dumps(small)) < 2048 and server.infer("credit-risk", small).status == 200
    big = _x([ROW] * 60, [60, 8])
    assert len(json.dumps(big)) > 2048
    response = server.infer("credit-risk", big)
    assert response.status == 413
    assert "exceeds the limit of 2048 bytes" in response.error()
    # Chunked: no Content-Length to refuse up front; the limit applies while reading.
    body = json.dumps(big).encode()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[k:k + 500]), body[k:k + 500]) for k in range(0, len(body), 500))
    answer = raw_exchange(server.port, b"POST /v2/models/credit-risk/infer HTTP/1.1\r\nHost: x\r\n"
                                       b"Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
                                       + chunks + b"0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b"request body exceeds the limit of 2048 bytes" in answer
    assert server.metrics().value(INVALID, reason="invalid_request") == 2
    assert server.infer("credit-risk", small).status == 200


def test_slow_client_gets_408_and_does_not_block_others(start_server: StartServer,
                                                        credit_risk_artifact: Path) -> None:
    server = start_server(credit_risk_artifact, "--body-timeout", "1.5")
    body = json.dumps(_x([ROW], [1, 8])).encode()
    head = (f"POST /v2/models/credit-risk/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    import socket

    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as slow:
        started = time.monotonic()
        slow.sendall(head + body[:20])  # headers and part of the body, then silence
        # Meanwhile, other clients are served at once.
        for _ in range(3):
            assert server.infer("credit-risk", _x([ROW], [1, 8])).status == 200
        assert time.monotonic() - started < 1.4
        answer = b""
        while b"}" not in answer:
            chunk = slow.recv(4096)
            if not chunk:
                break
            answer += chunk
        elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"request body not received within 1.5 s" in answer
    assert 1.4 <= elapsed < 6.0
    metrics = server.metrics()
    assert metrics.value(INVALID, reason="invalid_request") == 1
    assert metrics.value("modelfleet_requests_in_flight") == 0


def test_client_vanishing_mid_body_leaves_nothing_in_flight(credit_server: Server) -> None:
    head = (b"POST /v2/models/credit-risk/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 500\r\n\r\n{\"inputs\": [")
    for _ in range(5):
        raw_exchange(credit_server.port, head, close_after=True)
    # A request counted in flight forever would hold up every graceful shutdown until its timeout.
    wait_for(lambda: credit_server.metrics().value("modelfleet_requests_in_flight") == 0, 10,
             what="in-flight requests to return to 0")
    assert credit_server.infer("credit-risk", _x([ROW], [1, 8])).status == 200


WEIRD_BODIES = [b"null", b"0", b'"inputs"', b"{}", b'{"inputs": null}', b'{"inputs": {}}', b'{"inputs": [null]}',
                b'{"inputs": [1]}', b'{"inputs": [{"name": null}]}', b'{"inputs": [{"name": "x", "shape": "1,8"}]}',
                b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 8], "data": {"a": 1}}]}',
                b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 8.0], "data": []}]}',
                b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [true, 8], "data": []}]}',
                b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1e400, 8], "data": []}]}',
                b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [18446744073709551616, 8]}]}',
                b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [4611686018427387904, 8], "data": [1]}]}',
                b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 8], "data": "12345678"}]}',
                b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 8], "data": [NaN]}]}',
                b'{"inputs": [{"name": "x", "datatype": ["FP32"], "shape": [1, 8], "data": []}]}',
                b'{"inputs": [], "outputs": [{"name": 1}]}', b"\xff\xfe{}", b'{"inputs": "\xed\xa0\x80"}']


@pytest.mark.parametrize("body", WEIRD_BODIES, ids=range(len(WEIRD_BODIES)))
def test_structurally_wrong_requests_are_400_never_500(credit_server: Server, body: bytes) -> None:
    response = credit_server.infer("credit-risk", body)
    assert response.status == 400, (response.status, response.body)
    assert response.error()


def test_numpy_rows_arrive_intact(credit_server: Server) -> None:
    """The 400s above are not a server that refuses everything: the same shapes done right succeed."""
    rows = np.array([ROW, ROW], np.float32)
    response = credit_server.infer("credit-risk", _x(rows.tolist(), [2, 8]))
    assert response.status == 200 and response.json()["outputs"][0]["shape"] == [2]
