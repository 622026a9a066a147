"""Run the model server: uvicorn's server with modelfleet's HTTP/1.1 connections (:mod:`modelfleet.serve.http1`)
and, with a gRPC port, the gRPC front end's HTTP/2 transport on the same event loop.

On SIGTERM (or SIGINT): readiness goes false at once so health-checking routers stop sending;
after ``shutdown_delay`` the listeners close; requests in flight on either protocol finish (bounded by
``drain_timeout``); the process exits 0. A second SIGINT forces the exit.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import time
from collections.abc import Generator
from types import FrameType

import uvicorn

from modelfleet.serve import defaults
from modelfleet.serve.app import ModelServer, ServerSettings
from modelfleet.serve.http1 import HttpProtocol

log = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: ModelServer, shutdown_delay: float, drain_timeout: float) -> None:
        super().__init__(config)
        self.app = app
        self.shutdown_delay = shutdown_delay
        self.drain_timeout = drain_timeout
        self._drain_started: float | None = None
        self.drain_timed_out = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._drain_started is None:
            log.info("signal %s: not ready; draining for up to %.1f s", signal.Signals(sig).name,
                     self.shutdown_delay + self.drain_timeout)
            self._drain_started = time.monotonic()
            self.app.plane.begin_drain()
        elif sig == signal.SIGINT:
            self.force_exit = True
            self.should_exit = True

    async def on_tick(self, counter: int) -> bool:
        should_exit = await super().on_tick(counter)
        if self._drain_started is None or self.force_exit:
            return should_exit
        elapsed = time.monotonic() - self._drain_started
        if elapsed < self.shutdown_delay:
            return False
        if self.app.plane.in_flight == 0:
            self.app.companion_grace = max(0.0, self.shutdown_delay + self.drain_timeout - elapsed)
            return True
        if elapsed >= self.shutdown_delay + self.drain_timeout:
            log.warning("drain timeout: %d request(s) still in flight are cut short", self.app.plane.in_flight)
            self.drain_timed_out = True
            self.app.companion_grace = 0.0
            return True
        return False

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # uvicorn re-raises the captured signal after shutdown (exit status 143); a drained
        # server exits 0 instead, which is what systemd and the rollout controller expect.
        with super().capture_signals():
            yield
            self._captured_signals.clear()


def run(settings: ServerSettings, host: str = defaults.HOST, port: int = defaults.PORT, *,
        grpc_port: int | None = defaults.GRPC_PORT, shutdown_delay: float = defaults.SHUTDOWN_DELAY,
        drain_timeout: float = defaults.DRAIN_TIMEOUT, limit_concurrency: int = defaults.LIMIT_CONCURRENCY,
        log_level: str = "info") -> int:
    app = ModelServer(settings)
    if grpc_port is not None:
        from modelfleet.serve.grpcapi.server import GrpcFrontEnd

        app.companions.append(GrpcFrontEnd(app.plane, host, grpc_port))
    config = uvicorn.Config(app, host=host, port=port, loop="uvloop", http=HttpProtocol, lifespan="on",
                            access_log=False, log_level=log_level, limit_concurrency=limit_concurrency,
                            timeout_keep_alive=75, timeout_graceful_shutdown=math.ceil(drain_timeout),
                            server_header=False, date_header=False,
                            # No X-Forwarded-* rewriting: nothing here reads the client's address, and the
                            # middleware would cost every request a few µs (bench/serving/c1.py).
                            proxy_headers=False)
    server = DrainingServer(config, app, shutdown_delay, drain_timeout)
    server.run()
    code = 1 if server.force_exit else 0
    if server.force_exit or server.drain_timed_out:
        # A request cut short may leave a model call running on the inference thread; the interpreter
        # would wait for it at exit (worker threads are joined), unbounded by the drain timeout.
        logging.shutdown()
        os._exit(code)
    return code
