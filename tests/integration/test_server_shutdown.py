"""SIGTERM on a real server process: readiness goes false at once, requests in flight finish, exit 0;
the drain is bounded by its timeout; a second SIGINT forces the exit."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from harness import wait_for
from serverkit import Response, Server, StartServer, request, spool_lines, tensor

from modelfleet.spool.record import decode

pytestmark = pytest.mark.integration


def _slow(server: Server, iterations: int, value: float, request_id: str | None = None) -> Response:
    payload = {"inputs": [tensor("x", "FP32", [[float(iterations), value]], [1, 2])]}
    if request_id:
        payload["id"] = request_id
    return server.infer("slow", payload, timeout=60)


def _in_flight(server: Server) -> float:
    return server.metrics().value("modelfleet_requests_in_flight")


def test_sigterm_finishes_every_request_in_flight_then_exits_0(
        start_server: StartServer, slow_artifact: Path, slow_iterations: Callable[[float], int],
        tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    server = start_server(slow_artifact, "--inference-thread", "--max-batch", "1", "--spool-dir", str(spool))
    iterations = slow_iterations(0.5)
    with ThreadPoolExecutor(5) as pool:
        # One request runs, four wait in the queue: all five are in flight when the signal comes.
        futures = [pool.submit(_slow, server, iterations, float(k), f"drain-{k}") for k in range(5)]
        wait_for(lambda: _in_flight(server) == 5, 10, what="five requests in flight")
        server.signal(signal.SIGTERM)
        ready = wait_for(lambda: (r := server.get("/v2/health/ready")).status == 503 and r, 5,
                         what="readiness to turn false")
        assert ready.json() == {"ready": False, "reason": "draining: the server is shutting down"}
        refused = _slow(server, 1, -1.0)  # a newcomer is turned away, to be retried elsewhere
        assert refused.status == 503 and refused.headers["retry-after"] == "1"
        assert "draining" in refused.error()
        assert _in_flight(server) >= 1, "the requests were done before the checks: not a test of draining"
        responses = [f.result(60) for f in futures]
    assert [r.status for r in responses] == [200] * 5
    for k, response in enumerate(responses):
        assert response.json()["id"] == f"drain-{k}"
        np.testing.assert_array_equal(response.json()["outputs"][0]["data"], [2.0 * iterations, 2.0 * k])
    assert server.wait(30) == 0
    assert "signal SIGTERM: not ready; draining" in server.output()
    # The spool was flushed on the way out: every answered request is on disk.
    records = [decode(line) for line in spool_lines(spool / "slow" / "1")]
    assert sorted(r.id for r in records) == [f"drain-{k}" for k in range(5)]


def test_concurrent_clients_during_shutdown_get_answers_not_errors(start_server: StartServer,
                                                                  credit_risk_artifact: Path) -> None:
    server = start_server(credit_risk_artifact, "--shutdown-delay", "1.0")
    row = [30.0, 40000.0, 0.3, 3.0, 1.0, 0.5, 1.0, 0.0]
    payload = {"inputs": [tensor("x", "FP32", [row] * 4, [4, 8])]}
    outcomes: list[Response | Exception] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not stop.is_set():
            try:
                outcome: Response | Exception = server.infer("credit-risk", payload)
            except OSError as exc:
                outcome = exc
            with lock:
                outcomes.append(outcome)
            if not isinstance(outcome, Response) or outcome.status != 200:
                return  # like a router: a 503 takes this server out of rotation

    threads = [threading.Thread(target=client) for _ in range(6)]
    for thread in threads:
        thread.start()
    wait_for(lambda: len(outcomes) >= 60, 20, what="traffic before the signal")
    server.signal(signal.SIGTERM)
    for thread in threads:
        thread.join(40)
    stop.set()
    assert server.wait(30) == 0
    errors = [o for o in outcomes if not isinstance(o, Response)]
    assert errors == [], errors
    statuses = {o.status for o in outcomes if isinstance(o, Response)}
    assert statuses <= {200, 503}, statuses
    refusals = [o for o in outcomes if isinstance(o, Response) and o.status == 503]
    assert len(refusals) == len(threads)  # each client stopped at its first 503
    for refusal in refusals:
        assert refusal.headers["retry-after"] == "1" and "shutting down" in refusal.error()


def test_idle_server_exits_0_promptly_on_sigterm(start_server: StartServer, typed_artifact: Path) -> None:
    server = start_server(typed_artifact)
    started = time.monotonic()
    server.signal(signal.SIGTERM)
    assert server.wait(10) == 0
    assert time.monotonic() - started < 3
    assert "Finished server process" in server.output()


def test_drain_timeout_bounds_the_shutdown(start_server: StartServer, slow_artifact: Path,
                                          slow_iterations: Callable[[float], int]) -> None:
    server = start_server(slow_artifact, "--inference-thread", "--drain-timeout", "0.5")
    with ThreadPoolExecutor(1) as pool:
        long_request = pool.submit(_slow, server, slow_iterations(20.0), 1.0)
        wait_for(lambda: server.metrics().value("modelfleet_queue_duration_seconds_count") >= 1, 10,
                 what="the long request to start")
        started = time.monotonic()
        server.signal(signal.SIGTERM)
        assert server.wait(30) == 0
        elapsed = time.monotonic() - started
        response = long_request.result(30)
    assert elapsed < 4.0, f"shutdown took {elapsed:.1f} s: the drain timeout did not bound it"
    assert response.status == 503 and response.headers["retry-after"] == "1"
    assert response.error() == "the server shut down before the model answered"
    assert "drain timeout: 1 request(s) still in flight are cut short" in server.output()


def test_second_sigint_forces_the_exit(start_server: StartServer, slow_artifact: Path,
                                       slow_iterations: Callable[[float], int]) -> None:
    server = start_server(slow_artifact, "--inference-thread", "--drain-timeout", "60")
    with ThreadPoolExecutor(1) as pool:
        long_request = pool.submit(_slow, server, slow_iterations(20.0), 1.0)
        wait_for(lambda: server.metrics().value("modelfleet_queue_duration_seconds_count") >= 1, 10,
                 what="the long request to start")
        server.signal(signal.SIGINT)
        wait_for(lambda: request(server.port, "GET", "/v2/health/ready").status == 503, 5, what="draining")
        started = time.monotonic()
        server.signal(signal.SIGINT)
        assert server.wait(30) == 1
        assert time.monotonic() - started < 4.0
        assert long_request.result(30).status == 503
