"""The model server's HTTP/1.1 connection protocol (modelfleet.serve.http1) against a real server, over raw sockets.

What a client library hides is sent here byte by byte: keep-alive, pipelined requests, Connection: close,
HTTP/1.0, chunked bodies, Expect: 100-continue, HEAD, an upgrade request, requests llhttp cannot parse, a client
that does not read its answers, the concurrency limit, and idle connections at shutdown.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from serverkit import HOST, Server, StartServer

pytestmark = pytest.mark.integration

ROW = [42.4, 73264.6, 0.25, 4.0, 0.0, 0.3, 0.0, 0.0]
BODY = json.dumps({"inputs": [{"name": "x", "shape": [1, 8], "datatype": "FP32", "data": ROW}]}).encode()
INFER = "/v2/models/credit-risk/infer"


def post(path: str, body: bytes, *headers: str, version: str = "1.1") -> bytes:
    lines = [f"POST {path} HTTP/{version}", "Host: test", "Content-Type: application/json",
             f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def get(path: str, *headers: str, method: str = "GET", version: str = "1.1") -> bytes:
    return ("\r\n".join([f"{method} {path} HTTP/{version}", "Host: test", *headers]) + "\r\n\r\n").encode()


class Reader:
    """Answers read off one socket, one at a time (Content-Length bodies, as the server sends them)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buffer += chunk
        return bool(chunk)

    def answer(self, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buffer:
            assert self._fill(), f"connection closed mid-answer: {self.buffer!r}"
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        length = 0 if head_only else int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            assert self._fill(), "connection closed mid-body"
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(status_line.split()[1]), headers, body

    def closed(self, timeout: float = 5.0) -> bool:
        """Whether the server closes the connection (within ``timeout``) with nothing more to read."""
        self.sock.settimeout(timeout)
        try:
            return not self._fill() and not self.buffer
        except TimeoutError:
            return False


def connect(server: Server, timeout: float = 10.0) -> socket.socket:
    sock = socket.create_connection((HOST, server.port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def probabilities(body: bytes) -> Any:
    return next(o["data"] for o in json.loads(body)["outputs"] if o["name"] == "probabilities")


def test_keep_alive_serves_requests_one_after_another_on_one_connection(credit_server: Server) -> None:
    with connect(credit_server) as sock:
        reader = Reader(sock)
        answers = []
        for _ in range(5):
            sock.sendall(post(INFER, BODY))
            answers.append(reader.answer())
        assert [status for status, _, _ in answers] == [200] * 5
        assert all("connection" not in headers for _, headers, _ in answers)
        assert len({json.dumps(probabilities(body)) for _, _, body in answers}) == 1


def test_pipelined_requests_are_answered_in_order(credit_server: Server) -> None:
    with connect(credit_server) as sock:
        sock.sendall(post(INFER, BODY) + get("/v2/health/ready") + post(INFER, b"{not json")
                     + get("/v2/models/credit-risk") + post(INFER, BODY))
        reader = Reader(sock)
        answers = [reader.answer() for _ in range(5)]
    assert [status for status, _, _ in answers] == [200, 200, 400, 200, 200], answers
    assert json.loads(answers[1][2]) == {"ready": True}
    assert json.loads(answers[3][2])["name"] == "credit-risk"
    assert probabilities(answers[0][2]) == probabilities(answers[4][2])


def test_connection_close_and_http_1_0_end_the_connection_after_the_answer(credit_server: Server) -> None:
    for request in (post(INFER, BODY, "Connection: close"), post(INFER, BODY, version="1.0")):
        with connect(credit_server) as sock:
            sock.sendall(request)
            reader = Reader(sock)
            status, headers, _ = reader.answer()
            assert status == 200 and headers["connection"] == "close", headers
            assert reader.closed()


def test_chunked_request_body(credit_server: Server) -> None:
    pieces = [BODY[:10], BODY[10:70], BODY[70:]]
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    head = (f"POST {INFER} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n").encode()
    with connect(credit_server) as sock:
        reader = Reader(sock)
        sock.sendall(head + chunked[:25])
        time.sleep(0.2)  # the rest arrives later: the server waits for it
        sock.sendall(chunked[25:])
        status, _, body = reader.answer()
        sock.sendall(post(INFER, BODY))
        again = reader.answer()
    assert status == 200 and again[0] == 200
    assert probabilities(body) == probabilities(again[2])


def test_expect_100_continue(credit_server: Server) -> None:
    with connect(credit_server) as sock:
        sock.sendall(post(INFER, b"", "Expect: 100-continue").replace(b"Content-Length: 0", b"Content-Length: %d"
                                                                          % len(BODY)))
        reader = Reader(sock)
        status, _, _ = reader.answer(head_only=True)
        assert status == 100
        sock.sendall(BODY)
        status, _, body = reader.answer()
        assert status == 200 and probabilities(body)
    # Refused on its Content-Length alone: no 100 Continue, the body is never asked for, and the connection closes
    # (the client does not send that body; what it sent next would be read as the body).
    with connect(credit_server) as sock:
        sock.sendall(post(INFER, b"", "Expect: 100-continue").replace(b"Content-Length: 0",
                                                                     b"Content-Length: 900000000"))
        reader = Reader(sock)
        status, headers, body = reader.answer()
        assert status == 413 and b"exceeds the limit" in body and headers["connection"] == "close"
        assert reader.closed()


def test_head_answers_the_head_without_the_body(credit_server: Server) -> None:
    with connect(credit_server) as sock:
        sock.sendall(get("/v2/health/ready", method="HEAD") + get("/v2/health/live"))
        reader = Reader(sock)
        status, headers, _ = reader.answer(head_only=True)
        assert status == 200 and int(headers["content-length"]) == len(b'{"ready":true}')
        assert reader.answer() == (200, {"content-type": "application/json", "content-length": "13"},
                                   b'{"live":true}')


def test_an_upgrade_request_is_answered_as_plain_http_then_the_connection_closes(credit_server: Server) -> None:
    with connect(credit_server) as sock:
        sock.sendall(get("/v2/health/live", "Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c",
                         "HTTP2-Settings: AAMAAABkAAQAAP__"))
        reader = Reader(sock)
        status, headers, body = reader.answer()
        assert (status, body) == (200, b'{"live":true}') and headers["connection"] == "close"
        assert reader.closed()


@pytest.mark.parametrize("garbage", [b"NOT HTTP AT ALL\r\n\r\n", b"GET / HTTP/1.1\r\nHost test\r\n\r\n",
                                     b"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nab"])
def test_what_llhttp_cannot_parse_is_a_400_and_the_connection_closes(credit_server: Server, garbage: bytes) -> None:
    with connect(credit_server) as sock:
        sock.sendall(post(INFER, BODY) + garbage)  # the request before it is answered first
        reader = Reader(sock)
        first = reader.answer()
        second = reader.answer()
        assert first[0] == 200 and probabilities(first[2])
        assert second[0] == 400 and second[2] == b"Invalid HTTP request received."
        assert reader.closed()


def test_a_chunked_body_that_stops_parsing_is_a_400_at_once(credit_server: Server) -> None:
    head = (f"POST {INFER} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n").encode()
    with connect(credit_server) as sock:
        started = time.monotonic()
        sock.sendall(head + b"%x\r\n%s\r\n" % (10, BODY[:10]) + b"zz\r\nnot a chunk size\r\n")
        reader = Reader(sock)
        status, _, body = reader.answer()
        assert (status, body) == (400, b"Invalid HTTP request received.")
        assert reader.closed()
        assert time.monotonic() - started < 5, "answered at once, not at the body timeout"
    assert credit_server.get("/v2/health/ready").status == 200


def test_a_client_that_does_not_read_gets_every_answer_once_it_reads(credit_server: Server) -> None:
    requests = 400  # about 8 MB of /metrics answers: more than the socket buffers hold
    with connect(credit_server, timeout=60) as sock:
        sock.sendall(get("/metrics") * requests)
        time.sleep(1.0)
        reader = Reader(sock)
        answers = [reader.answer() for _ in range(requests)]
        sock.sendall(get("/v2/health/live"))  # the connection is still good
        live = reader.answer()
    assert {status for status, _, _ in answers} == {200}
    assert all(b"nv_inference_count" in body for _, _, body in answers)
    assert live[:1] == (200,)


def test_requests_beyond_the_concurrency_limit_get_503(start_server: StartServer,
                                                       credit_risk_artifact: Path) -> None:
    server = start_server(credit_risk_artifact, "--limit-concurrency", "3")
    idle = [connect(server) for _ in range(3)]  # connections count against the limit, as in uvicorn
    try:
        time.sleep(0.2)
        with connect(server) as sock:
            sock.sendall(get("/v2/health/live"))
            status, _, body = Reader(sock).answer()
        assert (status, body) == (503, b"Service Unavailable")
    finally:
        for sock in idle:
            sock.close()
    time.sleep(0.2)
    with connect(server) as sock:
        sock.sendall(get("/v2/health/live"))
        assert Reader(sock).answer()[0] == 200


def test_idle_keep_alive_connections_do_not_hold_up_the_shutdown(start_server: StartServer,
                                                                 credit_risk_artifact: Path) -> None:
    server = start_server(credit_risk_artifact, "--shutdown-delay", "0")
    sockets = [connect(server) for _ in range(4)]
    for sock in sockets:
        sock.sendall(post(INFER, BODY))
        assert Reader(sock).answer()[0] == 200
    started = time.monotonic()
    server.signal(signal.SIGTERM)
    assert server.wait(timeout=20) == 0
    took = time.monotonic() - started
    assert all(Reader(sock).closed(timeout=1) for sock in sockets)
    for sock in sockets:
        sock.close()
    assert took < 10, f"shutdown took {took:.1f} s with idle keep-alive connections open"
    assert not re.search(r"Traceback|Exception in ASGI", server.output()), server.output()


# --- keep-alive timeout (in process: the server's own timeout is 75 s) ------------------------------------------


async def _slow_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers after ``?seconds`` (default 0) with ``ok``."""
    if scope["type"] != "http":
        return
    await receive()
    query = scope["query_string"].decode()
    await asyncio.sleep(float(query.partition("=")[2] or 0))
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


async def _closed_after(reader: asyncio.StreamReader, limit: float) -> float | None:
    """Seconds until the server closes the connection (reading and dropping answers), None if not within limit."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(limit):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return None
    return time.monotonic() - started


def test_the_keep_alive_timeout_closes_idle_and_stalled_connections_not_busy_ones() -> None:
    import uvicorn
    from uvicorn.server import ServerState

    from modelfleet.serve.http1 import HttpProtocol

    async def scenario() -> dict[str, float | None]:
        config = uvicorn.Config(_slow_app, timeout_keep_alive=0.5, lifespan="off", log_level="warning")
        config.load()
        state = ServerState()
        server = await asyncio.get_running_loop().create_server(lambda: HttpProtocol(config, state, {}), HOST, 0)
        port = server.sockets[0].getsockname()[1]
        results: dict[str, float | None] = {}

        async def client(name: str, data: bytes, limit: float = 3.0) -> None:
            reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(data)
            results[name] = await _closed_after(reader, limit)
            writer.close()

        await asyncio.gather(
            client("idle after an answer", get("/")),
            client("nothing sent", b""),
            client("stalled in the head", b"GET / HTTP/1.1\r\nHost: te"),
            client("answering for 1.5 s", get("/?seconds=1.5")),
        )
        server.close()
        await server.wait_closed()
        return results

    results = asyncio.run(scenario())
    closed = {name: took for name, took in results.items() if took is not None}
    assert set(closed) == set(results), results
    assert all(0.4 <= took < 1.5 for name, took in closed.items() if name != "answering for 1.5 s"), results
    assert 1.9 <= closed["answering for 1.5 s"] < 2.8, results  # the answer, then 0.5 s idle
