"""The ASGI application: Open Inference Protocol endpoints, health, metadata, metrics, OpenAPI.

A plain ASGI callable (no web framework): routing is a split of the path, so the per-request cost
is the JSON work and the model, not the framework (the benchmark in bench/serving measures this).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from modelfleet import __version__
from modelfleet.asgi import BodyError, read_body
from modelfleet.serve.batching import Batcher, BatchObserver, QueueFullError
from modelfleet.serve.metrics import ServerMetrics
from modelfleet.serve.openapi import openapi_document
from modelfleet.serve.protocol import ProtocolError, encode_infer_response, error_body, parse_infer_request
from modelfleet.serve.runtime import ModelRuntime, NotServableError, RuntimeOptions
from modelfleet.spool.record import Tensor
from modelfleet.spool.writer import SpoolWriter

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
JSON = [(b"content-type", b"application/json")]


@dataclass
class ServerSettings:
    artifact: Path
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)
    max_queue_delay_us: int = 2000
    max_queue_size: int = 1024
    inline_inference: bool = True
    max_request_bytes: int = 16 << 20
    body_timeout: float = 30.0
    spool_dir: Path | None = None
    spool_sample_rate: float = 1.0
    spool_max_bytes: int = 256 << 20
    spool_segment_bytes: int = 16 << 20


class _Response(Exception):  # noqa: N818 - control flow, not an error
    def __init__(self, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        self.status, self.body, self.headers = status, body, headers or []


async def _send(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None,
                content_type: bytes = b"application/json") -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class ModelServer:
    """Serves one model version; ready once its artifact verified, its session loaded and warmed."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.registry = CollectorRegistry(auto_describe=True)
        self.runtime: ModelRuntime | None = None
        self.metrics: ServerMetrics | None = None
        self.batcher: Batcher | None = None
        self.spool: SpoolWriter | None = None
        self.state = "loading"
        self.reason = "loading the model"
        self.in_flight = 0
        self.incoming = 0  # inference requests accepted, body not yet parsed and queued
        self.draining = False
        self._id_prefix = secrets.token_hex(4)
        self._id_counter = 0
        self._load_task: asyncio.Task[None] | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.state == "ready" and not self.draining

    async def startup(self) -> None:
        self._load_task = asyncio.get_running_loop().create_task(self._load())

    async def _load(self) -> None:
        started = time.perf_counter()
        try:
            runtime = await asyncio.to_thread(ModelRuntime, self.settings.artifact, self.settings.runtime)
            self.metrics = ServerMetrics(self.registry, runtime.name, runtime.version)
            self.state, self.reason = "warming", "warming up"
            sizes = await asyncio.to_thread(runtime.warm_up)
        except NotServableError as exc:
            self.state, self.reason = "failed", str(exc)
            log.error("model not servable: %s", exc)
            return
        if self.settings.spool_dir is not None:
            try:
                self.spool = SpoolWriter(self.settings.spool_dir, runtime.name, runtime.version,
                                         sample_rate=self.settings.spool_sample_rate,
                                         segment_bytes=self.settings.spool_segment_bytes,
                                         max_bytes=self.settings.spool_max_bytes).start()
            except (OSError, ValueError) as exc:  # unusable directory or settings: say so, never hang "warming"
                self.state, self.reason = "failed", f"payload spool {self.settings.spool_dir}: {exc}"
                log.error("model not servable: %s", self.reason)
                return
            self.metrics.watch_spool(self.spool)
        self.runtime = runtime
        self._start_batcher(runtime)
        self.metrics.set_info(runtime.provider, runtime.precision, runtime.manifest.build_key)
        self.state, self.reason = "ready", "ready"
        self.metrics.ready.set(0 if self.draining else 1)
        log.info("%s version %s ready on %s (%s) in %.2f s, warmed batch sizes %s", runtime.name, runtime.version,
                 runtime.provider, runtime.precision, time.perf_counter() - started, sizes)

    def _start_batcher(self, runtime: ModelRuntime) -> None:
        assert self.metrics is not None
        metrics = self.metrics
        max_batch = self.settings.runtime.max_batch if runtime.batchable else 1
        executor = None
        if not self.settings.inline_inference:
            from concurrent.futures import ThreadPoolExecutor

            executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="infer")
        self.batcher = Batcher(runtime.run, max_batch, self.settings.max_queue_delay_us / 1e6,
                               self.settings.max_queue_size, executor,
                               BatchObserver(on_batch=metrics.on_batch, on_queued=metrics.queue_duration.observe,
                                             on_depth=metrics.queue_depth.set),
                               incoming=lambda: self.incoming)
        self.batcher.start()

    def begin_drain(self) -> None:
        """Stop being ready (routers take us out); requests still in flight are answered."""
        self.draining = True
        if self.metrics is not None:
            self.metrics.ready.set(0)

    async def shutdown(self) -> None:
        self.begin_drain()
        if self._load_task is not None and not self._load_task.done():
            self._load_task.cancel()
        if self.batcher is not None:
            await self.batcher.stop()
        if self.spool is not None:
            await asyncio.to_thread(self.spool.close)

    # --- ASGI --------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        try:
            await self._route(scope, receive, send)
        except _Response as response:
            await _send(send, response.status, response.body, response.headers)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        if path == "/metrics":
            _allow(method, "GET")
            await _send(send, 200, generate_latest(self.registry), content_type=CONTENT_TYPE_LATEST.encode())
            return
        parts = path.strip("/").split("/")
        if parts[0] != "v2":
            raise _Response(404, error_body(f"no route for {path}"))
        if len(parts) == 1:
            _allow(method, "GET")
            await _send(send, 200, orjson.dumps({"name": "modelfleet", "version": __version__, "extensions": []}))
            return
        if parts[1] == "health" and len(parts) == 3 and parts[2] in ("live", "ready"):
            _allow(method, "GET")
            await self._health(parts[2], send)
            return
        if parts[1] == "openapi.json" and len(parts) == 2:
            _allow(method, "GET")
            await _send(send, 200, orjson.dumps(openapi_document(self._model_name())))
            return
        if parts[1] == "models" and len(parts) >= 3:
            await self._model_route(parts[2], parts[3:], scope, receive, send)
            return
        raise _Response(404, error_body(f"no route for {path}"))

    async def _health(self, which: str, send: Send) -> None:
        if which == "live":
            await _send(send, 200, b'{"live":true}')
        elif self.ready:
            await _send(send, 200, b'{"ready":true}')
        else:
            await _send(send, 503, orjson.dumps({"ready": False, "reason": self._not_ready_reason()}))

    def _not_ready_reason(self) -> str:
        return "draining: the server is shutting down" if self.draining else self.reason

    def _model_name(self) -> str:
        return self.runtime.name if self.runtime is not None else self.settings.artifact.parent.name

    def _model_version(self) -> str:
        return self.runtime.version if self.runtime is not None else self.settings.artifact.name

    async def _model_route(self, name: str, rest: list[str], scope: Scope, receive: Receive, send: Send) -> None:
        method: str = scope["method"]
        served = self._model_name()
        if name != served:
            raise _Response(404, error_body(f"unknown model {name!r}; this server serves {served!r}"))
        if rest[:1] == ["versions"]:
            if len(rest) < 2 or not rest[1]:
                raise _Response(404, error_body("missing version after /versions/"))
            if rest[1] != self._model_version():
                raise _Response(404, error_body(f"model {name!r} has no version {rest[1]!r} here; this server "
                                                f"serves version {self._model_version()!r}"))
            rest = rest[2:]
        if not rest or rest == [""]:
            _allow(method, "GET")
            await _send(send, 200, orjson.dumps(self._metadata()))
        elif rest == ["ready"]:
            _allow(method, "GET")
            body = {"name": served, "version": self._model_version(), "ready": self.ready}
            if not self.ready:
                body["reason"] = self._not_ready_reason()
            await _send(send, 200 if self.ready else 503, orjson.dumps(body))
        elif rest == ["config"]:
            _allow(method, "GET")
            await _send(send, 200, orjson.dumps(self._config()))
        elif rest == ["infer"]:
            _allow(method, "POST")
            await self._infer(scope["headers"], receive, send)
        else:
            raise _Response(404, error_body(f"no route for /v2/models/{name}/{'/'.join(rest)}"))

    def _runtime_or_503(self) -> ModelRuntime:
        if self.runtime is None:
            raise _Response(503, error_body(f"model not ready: {self._not_ready_reason()}"), [(b"retry-after", b"1")])
        return self.runtime

    def _metadata(self) -> dict[str, Any]:
        runtime = self._runtime_or_503()
        return {"name": runtime.name, "versions": [runtime.version], "platform": "onnxruntime_onnx",
                "inputs": [{"name": t.name, "datatype": t.datatype.value, "shape": list(t.shape)}
                           for t in runtime.inputs],
                "outputs": [{"name": t.name, "datatype": t.datatype.value, "shape": list(t.shape)}
                            for t in runtime.outputs]}

    def _config(self) -> dict[str, Any]:
        """Triton-style model configuration (what tritonclient's get_model_config returns)."""
        runtime = self._runtime_or_503()
        batch = self.settings.runtime.max_batch if runtime.batchable else 0

        def dims(shape: tuple[int, ...]) -> list[int]:
            return list(shape[1:] if batch else shape)

        return {"name": runtime.name, "platform": "onnxruntime_onnx", "backend": "onnxruntime",
                "version_policy": {"specific": {"versions": [runtime.version]}}, "max_batch_size": batch,
                "input": [{"name": t.name, "data_type": f"TYPE_{_triton_type(t.datatype.value)}",
                           "dims": dims(t.shape)} for t in runtime.inputs],
                "output": [{"name": t.name, "data_type": f"TYPE_{_triton_type(t.datatype.value)}",
                            "dims": dims(t.shape)} for t in runtime.outputs],
                "dynamic_batching": {"max_queue_delay_microseconds": self.settings.max_queue_delay_us,
                                     "default_queue_policy": {"max_queue_size": self.settings.max_queue_size}},
                "instance_group": [{"count": 1, "kind": "KIND_CPU" if runtime.provider == "cpu" else "KIND_GPU"}],
                "parameters": {"execution_provider": {"string_value": runtime.provider},
                               "precision": {"string_value": runtime.precision}}}

    # --- inference -----------------------------------------------------------------------------

    async def _read_body(self, receive: Receive, headers: list[tuple[bytes, bytes]]) -> bytes:
        try:
            return await read_body(receive, headers, self.settings.max_request_bytes, self.settings.body_timeout)
        except BodyError as exc:
            raise ProtocolError(exc.status, exc.message) from None

    async def _infer(self, headers: list[tuple[bytes, bytes]], receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        metrics = self.metrics
        if not self.ready or self.runtime is None or self.batcher is None or metrics is None:
            if metrics is not None:
                metrics.failure["shutting_down"].inc()
            raise _Response(503, error_body(f"model not ready: {self._not_ready_reason()}"), [(b"retry-after", b"1")])
        runtime, batcher = self.runtime, self.batcher
        self.in_flight += 1
        metrics.in_flight.inc()
        self.incoming += 1
        try:
            try:
                if any(key == b"inference-header-content-length" for key, _value in headers):
                    # tritonclient's default: JSON followed by raw tensor bytes, unreadable as JSON.
                    raise ProtocolError(400, "the binary tensor extension (Inference-Header-Content-Length) is "
                                             "not supported: send tensors as JSON \"data\" "
                                             "(tritonclient: binary_data=False)")
                body = await self._read_body(receive, headers)
                request = parse_infer_request(body, runtime.inputs, runtime.outputs,
                                              batcher.max_batch if runtime.batchable else None)
            finally:
                self.incoming -= 1
            try:
                future = batcher.submit(request)
            except QueueFullError:
                metrics.failure["queue_full"].inc()
                raise ProtocolError(503, f"the request queue is full ({batcher.max_queue} requests waiting); "
                                         "retry later", [(b"retry-after", b"1")]) from None
            try:
                outputs = await future
            except asyncio.CancelledError:
                # The drain timeout (or a forced exit) cut this request short: answer it rather than
                # leave uvicorn's bare 500; the task ends here, as its cancellation asked.
                metrics.failure["shutting_down"].inc()
                await _send(send, 503, error_body("the server shut down before the model answered"),
                            [(b"retry-after", b"1")])
                return
            except Exception as exc:  # ORT failed on a request that passed validation: the model's fault
                metrics.failure["inference"].inc()
                log.warning("inference failed: %s", exc)
                raise ProtocolError(500, f"inference failed: {str(exc).strip()[:500]}") from None
            request_id = request.id
            if request_id is None:
                self._id_counter += 1
                request_id = f"{self._id_prefix}-{self._id_counter}"
            names, arrays = runtime.output_names, outputs
            if request.outputs is not None:
                index = {n: i for i, n in enumerate(names)}
                names = request.outputs
                arrays = [outputs[index[n]] for n in names]
            body_out = encode_infer_response(runtime.name, runtime.version, request_id, names, arrays,
                                             runtime.output_infos)
            await _send(send, 200, body_out)
            metrics.success.inc()
            metrics.request_duration.observe(time.perf_counter() - started)
            if self.spool is not None:
                self.spool.offer(request_id, time.time(),
                                 {t.name: Tensor(t.datatype.value, request.inputs[t.name]) for t in runtime.inputs},
                                 {n: Tensor(runtime.output_infos[n].datatype.value, outputs[i])
                                  for i, n in enumerate(runtime.output_names)})
        except ProtocolError as exc:
            if exc.status in (400, 408, 413):
                metrics.failure["invalid_request"].inc()
            await _send(send, exc.status, error_body(exc.message), exc.headers)
        finally:
            self.in_flight -= 1
            metrics.in_flight.dec()


def _allow(method: str, allowed: str) -> None:
    if method != allowed and not (allowed == "GET" and method == "HEAD"):
        raise _Response(405, error_body(f"method {method} not allowed here; use {allowed}"),
                        [(b"allow", allowed.encode())])


def _triton_type(datatype: str) -> str:
    return {"BYTES": "STRING"}.get(datatype, datatype)
