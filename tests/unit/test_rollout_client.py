"""The Prometheus query client against a local stdlib HTTP server: answers, errors, auth, timeouts."""

from __future__ import annotations

import base64
import contextlib
import json
import math
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from harness import free_port
from hypothesis import given
from hypothesis import strategies as st

from modelfleet.rollout.prometheus import PrometheusClient, PrometheusError, parse_response


class FakeApi(ThreadingHTTPServer):
    status = 200
    body: bytes = b""
    delay = 0.0
    seen: list[dict[str, Any]]

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (the timeout test) is expected


class Handler(BaseHTTPRequestHandler):
    server: FakeApi

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        form = urllib.parse.parse_qs(self.rfile.read(length).decode())
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.server.seen.append({"path": self.path, "form": form, "headers": headers})
        time.sleep(self.server.delay)
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.server.body)))
        self.end_headers()
        self.wfile.write(self.server.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def api() -> Iterator[FakeApi]:
    server = FakeApi(("127.0.0.1", 0), Handler)
    server.seen = []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _url(server: FakeApi) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/prom/"


def _vector(*values: str) -> bytes:
    result = [{"metric": {"host": f"h{i}"}, "value": [1.0, v]} for i, v in enumerate(values)]
    return json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()


def test_vector_values_including_nan_and_inf(api: FakeApi) -> None:
    api.body = _vector("0.5", "NaN", "+Inf", "-Inf")
    samples = PrometheusClient(_url(api)).query('up{job="x"}', 1234.5)
    assert [s.labels["host"] for s in samples] == ["h0", "h1", "h2", "h3"]
    assert samples[0].value == 0.5 and math.isnan(samples[1].value)
    assert samples[2].value == math.inf and samples[3].value == -math.inf
    request = api.seen[0]
    assert request["path"] == "/prom/api/v1/query"
    assert request["form"]["query"] == ['up{job="x"}'] and request["form"]["time"] == ["1234.500"]


def test_scalar_and_empty_answers(api: FakeApi) -> None:
    api.body = json.dumps({"status": "success", "data": {"resultType": "scalar", "result": [1.0, "3"]}}).encode()
    assert PrometheusClient(_url(api)).query("vector(3)", 1.0)[0].value == 3.0
    api.body = _vector()
    assert PrometheusClient(_url(api)).query("absent_metric", 1.0) == []


def test_basic_auth_and_headers_are_sent(api: FakeApi) -> None:
    api.body = _vector("1")
    PrometheusClient(_url(api), headers={"X-Scope-OrgID": "fleet"}, username="ops", password="s3cret").query("up", 1)
    headers = api.seen[0]["headers"]
    assert headers["x-scope-orgid"] == "fleet"
    assert headers["authorization"] == "Basic " + base64.b64encode(b"ops:s3cret").decode()


def test_bearer_token_is_sent(api: FakeApi) -> None:
    api.body = _vector("1")
    PrometheusClient(_url(api), bearer_token="t0ken").query("up", 1)
    assert api.seen[0]["headers"]["authorization"] == "Bearer t0ken"


def test_basic_auth_and_bearer_token_exclude_each_other() -> None:
    with pytest.raises(PrometheusError, match="exclude each other"):
        PrometheusClient("http://prometheus:9090", username="ops", password="x", bearer_token="t")


def test_query_errors_carry_prometheus_message(api: FakeApi) -> None:
    api.status = 400
    api.body = json.dumps({"status": "error", "errorType": "bad_data", "error": "parse error at char 4"}).encode()
    with pytest.raises(PrometheusError, match="HTTP 400: bad_data: parse error at char 4") as info:
        PrometheusClient(_url(api)).query("up{", 1)
    assert not info.value.unreachable


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>proxy</html>", "not JSON"),
        (b"[]", "not a JSON object"),
        (
            json.dumps({"status": "success", "data": {"resultType": "matrix", "result": []}}).encode(),
            "expected an instant vector",
        ),
        (
            json.dumps(
                {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, 2]}]}}
            ).encode(),
            "malformed sample",
        ),
        (
            json.dumps({"status": "error", "errorType": "timeout", "error": "query timed out"}).encode(),
            "timeout: query timed out",
        ),
    ],
)
def test_unusable_answers(api: FakeApi, body: bytes, message: str) -> None:
    api.body = body
    with pytest.raises(PrometheusError, match=message):
        PrometheusClient(_url(api)).query("up", 1)


def test_unreachable_prometheus() -> None:
    port = free_port()
    with pytest.raises(PrometheusError, match="unreachable") as info:
        PrometheusClient(f"http://127.0.0.1:{port}", timeout=2).query("up", 1)
    assert info.value.unreachable


def test_a_slow_prometheus_times_out(api: FakeApi) -> None:
    api.delay, api.body = 1.0, _vector("1")
    started = time.monotonic()
    with pytest.raises(PrometheusError) as info:
        PrometheusClient(_url(api), timeout=0.2).query("up", 1)
    assert info.value.unreachable and time.monotonic() - started < 1.0
    assert "0.2 s" in str(info.value) or "timed out" in str(info.value)


def test_url_must_be_http() -> None:
    with pytest.raises(PrometheusError, match="not an http"):
        PrometheusClient("prometheus:9090")


@given(st.binary(max_size=200))
def test_parse_response_never_crashes_on_garbage(raw: bytes) -> None:
    with contextlib.suppress(PrometheusError):
        parse_response(raw)
