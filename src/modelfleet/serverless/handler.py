"""The function handler: one model version per function instance, served by the model server's own code.

The cold start (once per instance, never per call) verifies the artifact's checksums, loads and warms
the ONNX Runtime session — the server's :class:`~modelfleet.serve.dataplane.DataPlane` does all of it.
Each call is then handed to the server's HTTP application (:class:`~modelfleet.serve.app.ModelServer`)
in process, as one ASGI request: the same routes, request validation, error answers and OIP JSON as
the server, with nothing copied. Around each inference call the handler writes one CloudWatch Embedded
Metric Format line (:mod:`modelfleet.serverless.emf`); the data plane writes sampled request/response
records as log lines (:mod:`modelfleet.serverless.records`).

Platform adapters (:mod:`modelfleet.serverless.events`) turn Lambda events and Cloud Functions requests
into :class:`HttpRequest` and the :class:`HttpResponse` back into what each platform expects.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import logging
import os
import sys
import threading
import time
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import orjson

from modelfleet.asgi import error_body
from modelfleet.serve.app import ModelServer
from modelfleet.serve.dataplane import DataPlane, ServerSettings
from modelfleet.serve.metrics import FAILURE_REASONS
from modelfleet.serve.runtime import RuntimeOptions
from modelfleet.serverless.emf import CallMetrics, emf_line
from modelfleet.serverless.records import RecordLog

log = logging.getLogger(__name__)

#: Environment variables read at cold start (the function's configuration).
ENV_ARTIFACT = "MODELFLEET_ARTIFACT"
ENV_SAMPLE_RATE = "MODELFLEET_RECORD_SAMPLE_RATE"
ENV_MAX_BATCH = "MODELFLEET_MAX_BATCH"
ENV_THREADS = "MODELFLEET_INTRA_OP_THREADS"
ENV_NAMESPACE = "MODELFLEET_METRICS_NAMESPACE"
#: Lambda refuses response payloads over 6 MB; requests are bounded the same way.
MAX_REQUEST_BYTES = 6 << 20


class ColdStartError(RuntimeError):
    """The function instance cannot serve: bad configuration or an artifact that is not servable."""


@dataclass(frozen=True)
class FunctionSettings:
    artifact: Path
    record_sample_rate: float = 1.0  # 0: no request/response records
    max_batch: int = 64
    intra_op_threads: int = 0
    namespace: str = "modelfleet"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> FunctionSettings:
        """Settings from the environment; the artifact defaults to ``model/`` under the task root."""
        env = os.environ if env is None else env
        root = Path(env.get("LAMBDA_TASK_ROOT") or Path.cwd())
        artifact = Path(env.get(ENV_ARTIFACT) or root / "model")
        try:
            rate = float(env.get(ENV_SAMPLE_RATE, "1"))
            max_batch = int(env.get(ENV_MAX_BATCH, "64"))
            threads = int(env.get(ENV_THREADS, "0"))
        except ValueError as exc:
            raise ColdStartError(f"bad function configuration: {exc}") from None
        if not 0 <= rate <= 1:
            raise ColdStartError(f"{ENV_SAMPLE_RATE} must be in [0, 1], got {rate:g}")
        if max_batch < 1 or threads < 0:
            raise ColdStartError(f"{ENV_MAX_BATCH} must be >= 1 and {ENV_THREADS} >= 0")
        return cls(artifact, rate, max_batch, threads, env.get(ENV_NAMESPACE, "modelfleet"))


@dataclass(frozen=True)
class HttpRequest:
    method: str
    path: str
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)  # names in lower case
    query: str = ""


@dataclass(frozen=True)
class HttpResponse:
    status: int
    body: bytes
    headers: dict[str, str]


def log_line(out: TextIO, level: str, message: str, **extra: Any) -> None:
    """One structured log line (JSON) on the function's output: what CloudWatch and Cloud Logging index."""
    record = {"level": level, "logger": "modelfleet.serverless", "message": message, **extra}
    out.write(orjson.dumps(record).decode() + "\n")
    out.flush()


def _counters(plane: DataPlane) -> dict[str, float]:
    """The data plane's own counters, read from its Prometheus registry (the server's numbers)."""
    labels = {"model": plane.model_name(), "version": plane.model_version()}
    get = plane.registry.get_sample_value
    values = {"success": get("nv_inference_request_success_total", labels) or 0.0,
              "count": get("nv_inference_count_total", labels) or 0.0,
              "exec": get("nv_inference_exec_count_total", labels) or 0.0,
              "duration": get("modelfleet_request_duration_seconds_sum", labels) or 0.0}
    for reason in FAILURE_REASONS:
        values[reason] = get("nv_inference_request_failure_total", {**labels, "reason": reason}) or 0.0
    return values


class ModelFunction:
    """A function instance: the cold start in the constructor, then :meth:`handle` for each call."""

    def __init__(self, settings: FunctionSettings, out: TextIO | None = None) -> None:
        self.settings = settings
        self.out = out or sys.stdout
        started = time.perf_counter()
        self.plane = DataPlane(ServerSettings(
            artifact=settings.artifact, max_queue_delay_us=0, inline_inference=True,
            max_request_bytes=MAX_REQUEST_BYTES,
            runtime=RuntimeOptions(providers=["cpu"], intra_op_threads=settings.intra_op_threads,
                                   max_batch=settings.max_batch)))
        self.app = ModelServer(self.plane.settings, self.plane)
        self.loop = asyncio.new_event_loop()
        self._lock = threading.Lock()  # one call at a time: Cloud Functions may call from several threads
        self.loop.run_until_complete(self._start())
        if self.plane.state != "ready":
            message = f"cold start failed: {settings.artifact}: {self.plane.not_ready_reason()}"
            self._log("ERROR", message)
            self.loop.close()
            raise ColdStartError(message)
        if settings.record_sample_rate > 0:
            self.plane.spool = RecordLog(self.out, self.plane.model_name(), self.plane.model_version(),
                                         sample_rate=settings.record_sample_rate)
        self.cold_start_seconds = time.perf_counter() - started
        self._log("INFO", f"cold start: {self.plane.model_name()} version {self.plane.model_version()} "
                          f"verified, loaded and warmed in {self.cold_start_seconds:.3f} s",
                  cold_start_seconds=round(self.cold_start_seconds, 6))

    async def _start(self) -> None:
        await self.plane.startup()
        while self.plane.state in ("loading", "warming"):
            await asyncio.sleep(0.002)

    def _log(self, level: str, message: str, **extra: Any) -> None:
        log_line(self.out, level, message, **extra)

    def handle(self, request: HttpRequest) -> HttpResponse:
        """Answer one HTTP request exactly as the model server would."""
        with self._lock:
            infer = request.method == "POST" and request.path.rstrip("/").endswith("/infer")
            before = _counters(self.plane) if infer else None
            started = time.perf_counter()
            try:
                response = self.loop.run_until_complete(self._call(request))
            except Exception:  # a bug, not the client's fault: logged with its trace, answered without it
                log.exception("unexpected error answering %s %s", request.method, request.path)
                response = HttpResponse(500, error_body("internal error"), {"content-type": "application/json"})
            if before is not None:
                elapsed = time.perf_counter() - started
                self.out.write(emf_line(self.settings.namespace, self.plane.model_name(), self.plane.model_version(),
                                        CallMetrics.between(before, _counters(self.plane), elapsed,
                                                            response.status)) + "\n")
                self.out.flush()
            return response

    async def _call(self, request: HttpRequest) -> HttpResponse:
        scope: dict[str, Any] = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "scheme": "https",
            "method": request.method.upper(), "path": request.path or "/", "raw_path": request.path.encode(),
            "query_string": request.query.encode(), "root_path": "",
            "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in request.headers.items()],
        }
        sent = False
        status, headers, chunks = 500, dict[str, str](), list[bytes]()

        async def receive() -> MutableMapping[str, Any]:
            nonlocal sent
            if sent:
                await asyncio.Event().wait()  # the request body was read: nothing more arrives
            sent = True
            return {"type": "http.request", "body": request.body, "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers.update({k.decode("latin-1"): v.decode("latin-1") for k, v in message.get("headers", [])})
            elif message["type"] == "http.response.body":
                chunks.append(bytes(message.get("body", b"")))

        await self.app(scope, receive, send)
        body = b"" if request.method.upper() == "HEAD" else b"".join(chunks)
        return HttpResponse(status, body, headers)

    def close(self) -> None:
        self.loop.run_until_complete(self.plane.shutdown())
        self.loop.close()


@functools.cache
def instance() -> ModelFunction:
    """This process's function instance, cold-started from the environment on first use (a failed cold
    start is not cached: the platform starts a new instance)."""
    try:
        settings = FunctionSettings.from_env()
    except ColdStartError as exc:
        log_line(sys.stdout, "ERROR", f"cold start failed: {exc}")
        raise
    function = ModelFunction(settings)
    atexit.register(function.close)
    return function
