"""The model server's HTTP transport: Open Inference Protocol endpoints, health, metadata, metrics, OpenAPI.

A plain ASGI callable (no web framework): routing is a split of the path, so the per-request cost
is the JSON work and the model, not the framework (the benchmark in bench/serving measures this).
Everything that is not HTTP — the model's lifecycle, admission, batching, metrics, the payload
spool — is the data plane (:mod:`modelfleet.serve.dataplane`), which other front ends call too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import orjson
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from modelfleet import __version__
from modelfleet.asgi import (
    Application,
    BodyError,
    Receive,
    Reply,
    Scope,
    Send,
    allow,
    read_body,
    send_response,
)
from modelfleet.serve.dataplane import DataPlane, InferResponse, ServerSettings
from modelfleet.serve.openapi import openapi_document
from modelfleet.serve.protocol import (
    EXTENSIONS,
    InferRequest,
    ProtocolError,
    encode_infer_response,
    parse_infer_request,
)
from modelfleet.serve.runtime import TensorInfo

__all__ = ["ModelServer", "ServerSettings"]
Headers = list[tuple[bytes, bytes]]
_SERVER_METADATA = orjson.dumps({"name": "modelfleet", "version": __version__, "extensions": list(EXTENSIONS)})


class Companion(Protocol):
    """Another front end of the same data plane (gRPC), started and stopped with this one."""

    async def start(self) -> None:
        """Start serving (the data plane has started)."""

    async def stop(self, grace: float | None = None) -> None:
        """Stop; requests in flight get ``grace`` seconds."""


class ModelServer(Application):
    """The HTTP (ASGI) front end of one model version's :class:`DataPlane` (``plane``); ``companions`` are
    started after the data plane and stopped before it (the data plane has drained their requests by then)."""

    def __init__(self, settings: ServerSettings, plane: DataPlane | None = None,
                 companions: Sequence[Companion] = ()) -> None:
        self.plane = plane or DataPlane(settings)
        self.settings = self.plane.settings
        self.companions = list(companions)
        self.companion_grace: float | None = None  # seconds left to companions' RPCs at shutdown

    async def startup(self) -> None:
        await self.plane.startup()
        for companion in self.companions:
            await companion.start()

    async def shutdown(self) -> None:
        for companion in self.companions:
            await companion.stop(self.companion_grace)
        await self.plane.shutdown()

    async def route(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._route(scope, receive, send)
        except ProtocolError as refused:  # the data plane's refusal, answered like any early reply
            await self.reply(scope, send, Reply(refused.status, refused.message, refused.headers))

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        if path == "/metrics":
            allow(method, "GET")
            await send_response(send, 200, generate_latest(self.plane.registry), CONTENT_TYPE_LATEST.encode())
            return
        parts = path.strip("/").split("/")
        if parts[0] != "v2":
            raise Reply(404, f"no route for {path}")
        if len(parts) == 1:
            allow(method, "GET")
            await send_response(send, 200, _SERVER_METADATA)
            return
        if parts[1] == "health" and len(parts) == 3 and parts[2] in ("live", "ready"):
            allow(method, "GET")
            await self._health(parts[2], send)
            return
        if parts[1] == "openapi.json" and len(parts) == 2:
            allow(method, "GET")
            await send_response(send, 200, orjson.dumps(openapi_document(self.plane.model_name())))
            return
        if parts[1] == "models" and len(parts) >= 3:
            await self._model_route(parts[2], parts[3:], scope, receive, send)
            return
        raise Reply(404, f"no route for {path}")

    async def _health(self, which: str, send: Send) -> None:
        if which == "live":
            await send_response(send, 200, b'{"live":true}')
        elif self.plane.ready:
            await send_response(send, 200, b'{"ready":true}')
        else:
            await send_response(send, 503, orjson.dumps({"ready": False, "reason": self.plane.not_ready_reason()}))

    async def _model_route(self, name: str, rest: list[str], scope: Scope, receive: Receive, send: Send) -> None:
        method: str = scope["method"]
        served = self.plane.model_name()
        if name != served:
            raise Reply(404, f"unknown model {name!r}; this server serves {served!r}")
        if rest[:1] == ["versions"]:
            if len(rest) < 2 or not rest[1]:
                raise Reply(404, "missing version after /versions/")
            if rest[1] != self.plane.model_version():
                raise Reply(404, f"model {name!r} has no version {rest[1]!r} here; this server "
                                 f"serves version {self.plane.model_version()!r}")
            rest = rest[2:]
        if not rest or rest == [""]:
            allow(method, "GET")
            await send_response(send, 200, orjson.dumps(self.plane.metadata()))
        elif rest == ["ready"]:
            allow(method, "GET")
            body = {"name": served, "version": self.plane.model_version(), "ready": self.plane.ready}
            if not self.plane.ready:
                body["reason"] = self.plane.not_ready_reason()
            await send_response(send, 200 if self.plane.ready else 503, orjson.dumps(body))
        elif rest == ["config"]:
            allow(method, "GET")
            await send_response(send, 200, orjson.dumps(self.plane.config()))
        elif rest == ["stats"]:
            allow(method, "GET")
            await send_response(send, 200, orjson.dumps({"model_stats": [self.plane.statistics()]}))
        elif rest == ["infer"]:
            allow(method, "POST")
            await self._infer(scope["headers"], receive, send)
        else:
            raise Reply(404, f"no route for /v2/models/{name}/{'/'.join(rest)}")

    # --- inference -----------------------------------------------------------------------------

    async def _infer(self, headers: Headers, receive: Receive, send: Send) -> None:
        binary = any(key == b"inference-header-content-length" for key, _value in headers)
        binary_outputs: frozenset[str] = frozenset()

        async def decode(inputs: Sequence[TensorInfo], outputs: Sequence[TensorInfo],
                         max_batch: int | None) -> InferRequest:
            nonlocal binary_outputs
            try:
                body = await read_body(receive, headers, self.settings.max_request_bytes, self.settings.body_timeout)
            except BodyError as exc:
                raise ProtocolError(exc.status, exc.message) from None
            request = parse_infer_request(body, inputs, outputs, max_batch, _header_length(headers) if binary else None)
            binary_outputs = request.binary_outputs
            return request

        async def respond(response: InferResponse) -> None:
            body, json_length = encode_infer_response(response.model, response.version, response.id, response.names,
                                                      response.arrays, response.infos, binary_outputs)
            if json_length is None:
                await send_response(send, 200, body)
            else:
                await send_response(send, 200, body, b"application/octet-stream",
                                    [(b"inference-header-content-length", str(json_length).encode())])

        await self.plane.infer(decode, respond, "http_binary" if binary else "http_json")


def _header_length(headers: Headers) -> int:
    """``Inference-Header-Content-Length`` (Triton's binary tensor extension): the length of the JSON part."""
    value = next(v for k, v in headers if k == b"inference-header-content-length")
    if not value.isdigit():
        raise ProtocolError(400, f"Inference-Header-Content-Length must be a number of bytes, "
                                 f"got {value.decode(errors='replace')!r}")
    return int(value)
