"""The drift exporter's HTTP side: a plain ASGI app and the uvicorn server that runs it.

``GET /metrics`` (Prometheus text format), ``GET /healthz`` (200 while the reading loop runs),
``POST /v1/feedback`` (one label or ``{"labels": [...]}``; 400 ``{"error": ...}`` when invalid,
413 beyond ``max_body_bytes``), ``GET /`` (a landing page). With basic-auth users in the web
config every endpoint needs credentials (401 with ``WWW-Authenticate``), as in exporter-toolkit.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import orjson
import uvicorn
from prometheus_client import CollectorRegistry, generate_latest
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
    error_body,
    read_body,
    send_response,
)
from modelfleet.drift.exporter import Exporter
from modelfleet.drift.labels import LabelError, parse_feedback
from modelfleet.drift.metrics import DetectionRule, DriftCollector
from modelfleet.drift.webconfig import BasicAuth, WebConfig, load_web_config

log = logging.getLogger(__name__)
MAX_BATCH_LABELS = 10_000
BODY_TIMEOUT = 30.0  # seconds for a feedback body to arrive (slow clients get 408)
_LANDING = (b"<!doctype html><html><head><title>modelfleet drift exporter</title></head><body>"
            b"<h1>modelfleet drift exporter</h1><p><a href=\"/metrics\">Metrics</a> &middot; "
            b"<a href=\"/healthz\">Health</a></p></body></html>")


class ExporterApp(Application):
    """ASGI application around an :class:`Exporter` (started and stopped by the lifespan)."""

    def __init__(self, exporter: Exporter, rule: DetectionRule, web: WebConfig | None = None,
                 web_config_path: Path | None = None, max_body_bytes: int = 4 << 20) -> None:
        self.exporter = exporter
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(DriftCollector(exporter, rule))
        web = web or WebConfig()
        self.auth = BasicAuth(web_config_path, web)
        self.headers = [(k.lower().encode(), v.encode()) for k, v in web.headers.items()]
        self.max_body_bytes = max_body_bytes

    async def startup(self) -> None:
        await asyncio.to_thread(self.exporter.start)

    async def shutdown(self) -> None:
        await asyncio.to_thread(self.exporter.stop)

    async def reply(self, scope: Scope, send: Send, reply: Reply) -> None:
        await self._send(send, reply.status, error_body(reply.message), headers=reply.headers)

    async def _send(self, send: Send, status: int, body: bytes, content_type: bytes = b"application/json",
                    headers: list[tuple[bytes, bytes]] | None = None) -> None:
        await send_response(send, status, body, content_type, [*self.headers, *(headers or [])])

    async def route(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.auth.enabled or self.auth.path is not None:
            header = next((v for k, v in scope["headers"] if k == b"authorization"), None)
            if not await asyncio.to_thread(self.auth.check, header):
                raise Reply(401, "unauthorized", [(b"www-authenticate", b'Basic realm="modelfleet"')])
        path, method = scope["path"], scope["method"]
        if path == "/metrics":
            allow(method, "GET")
            body = await asyncio.to_thread(generate_latest, self.registry)
            await self._send(send, 200, body, CONTENT_TYPE_LATEST.encode())
        elif path == "/healthz":
            allow(method, "GET")
            healthy = self.exporter.healthy
            with self.exporter.lock:
                health = {"status": "ok" if healthy else "stopped", "version": __version__,
                          "watching": sorted("/".join(k) for k in self.exporter.pipelines),
                          "not_watched": {"/".join(k): reason for k, (reason, _since) in self.exporter.failed.items()}}
            await self._send(send, 200 if healthy else 503, orjson.dumps(health))
        elif path == "/v1/feedback":
            allow(method, "POST")
            labels = parse_or_400(await self._body(scope, receive))
            outcomes = await asyncio.to_thread(self.exporter.submit_labels, labels)
            await self._send(send, 200, orjson.dumps({"received": len(labels), "outcomes": dict(outcomes)}))
        elif path == "/":
            allow(method, "GET")
            await self._send(send, 200, _LANDING, b"text/html; charset=utf-8")
        else:
            raise Reply(404, f"no route for {path}")

    async def _body(self, scope: Scope, receive: Receive) -> bytes:
        try:
            return await read_body(receive, scope["headers"], self.max_body_bytes, BODY_TIMEOUT)
        except BodyError as exc:
            raise Reply(400 if exc.status == 499 else exc.status, exc.message) from None


def parse_or_400(body: bytes) -> list[Any]:
    try:
        return parse_feedback(body, MAX_BATCH_LABELS)
    except LabelError as exc:
        raise Reply(400, str(exc)) from None


def run(exporter: Exporter, rule: DetectionRule, host: str, port: int, web_config_path: Path | None = None,
        log_level: str = "info") -> int:
    """Serve until SIGTERM/SIGINT; the exporter checkpoints on the way out."""
    web = load_web_config(web_config_path) if web_config_path is not None else WebConfig()
    app = ExporterApp(exporter, rule, web, web_config_path)
    tls = web.tls.uvicorn_options() if web.tls is not None else {}
    config = uvicorn.Config(app, host=host, port=port, lifespan="on", access_log=False, log_level=log_level,
                            server_header=False, timeout_graceful_shutdown=10, **tls)
    config.load()
    if web.tls is not None and config.ssl is not None:
        web.tls.apply_versions(config.ssl)
    server = uvicorn.Server(config)
    server.run()
    return 0 if exporter.last_checkpoint is not None else 1
