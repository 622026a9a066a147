"""The retraining hook's HTTP side: a plain ASGI app and the uvicorn server that runs it.

``POST /alerts`` takes an Alertmanager webhook notification (200 with the decision per model
version; 400 ``{"error": ...}`` when malformed; 413 beyond the size limit), ``GET /healthz``,
``GET /metrics`` (Prometheus text format) and ``GET /`` (a landing page).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
import uvicorn
from prometheus_client import Counter, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from modelfleet import __version__
from modelfleet.alerting.hook import RetrainHook
from modelfleet.alerting.payload import PayloadError, parse_notification
from modelfleet.asgi import BodyError, read_body, send_response

log = logging.getLogger(__name__)
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
BODY_TIMEOUT = 30.0
_LANDING = (
    b"<!doctype html><html><head><title>modelfleet retraining hook</title></head><body>"
    b"<h1>modelfleet retraining hook</h1><p>Alertmanager webhook: <code>POST /alerts</code></p>"
    b'<p><a href="/metrics">Metrics</a> &middot; <a href="/healthz">Health</a></p></body></html>'
)


class _Reply(Exception):  # noqa: N818 - control flow
    def __init__(self, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        self.status, self.message, self.headers = status, message, headers or []


class HookApp:
    """ASGI application around a :class:`RetrainHook` (its worker starts and stops with the lifespan)."""

    def __init__(self, hook: RetrainHook, max_body_bytes: int = 1 << 20) -> None:
        self.hook = hook
        self.max_body_bytes = max_body_bytes
        self.notifications = Counter(
            "modelfleet_retrain_notifications",
            "Webhook notifications received, by the HTTP status they were answered with.",
            ["code"],
            registry=hook.registry,
        )
        for code in ("200", "400", "413"):
            self.notifications.labels(code)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        try:
            await self._route(scope, receive, send)
        except _Reply as reply:
            if scope["path"] == "/alerts":
                self.notifications.labels(str(reply.status)).inc()
            await self._send(send, reply.status, orjson.dumps({"error": reply.message}), headers=reply.headers)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.hook.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await asyncio.to_thread(self.hook.stop)
                await send({"type": "lifespan.shutdown.complete"})
                return

    @staticmethod
    async def _send(
        send: Send,
        status: int,
        body: bytes,
        content_type: bytes = b"application/json",
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        await send_response(send, status, body, content_type, headers or [])

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope["path"], scope["method"]
        if path == "/alerts":
            _allow(method, "POST")
            try:
                body = await read_body(receive, scope["headers"], self.max_body_bytes, BODY_TIMEOUT)
            except BodyError as exc:
                raise _Reply(400 if exc.status == 499 else exc.status, exc.message) from None
            try:
                notification = parse_notification(body)
            except PayloadError as exc:
                log.warning("malformed notification: %s", exc)
                raise _Reply(400, str(exc)) from None
            decisions, ignored = self.hook.submit(notification)
            self.notifications.labels("200").inc()
            await self._send(
                send, 200, orjson.dumps({"requests": [d.as_dict() for d in decisions], "ignored": ignored})
            )
        elif path == "/healthz":
            _allow(method, "GET")
            healthy = self.hook.healthy
            with self.hook.lock:
                pending = sorted("/".join(key) for key in self.hook.pending)
            await self._send(
                send,
                200 if healthy else 503,
                orjson.dumps(
                    {
                        "status": "ok" if healthy else "stopped",
                        "version": __version__,
                        "action": self.hook.action.kind,
                        "cooldown_seconds": self.hook.cooldown,
                        "pending": pending,
                    }
                ),
            )
        elif path == "/metrics":
            _allow(method, "GET")
            body = await asyncio.to_thread(generate_latest, self.hook.registry)
            await self._send(send, 200, body, CONTENT_TYPE_LATEST.encode())
        elif path == "/":
            _allow(method, "GET")
            await self._send(send, 200, _LANDING, b"text/html; charset=utf-8")
        else:
            raise _Reply(404, f"no route for {path}")


def _allow(method: str, allowed: str) -> None:
    if method != allowed and not (allowed == "GET" and method == "HEAD"):
        raise _Reply(405, f"method {method} not allowed here; use {allowed}", [(b"allow", allowed.encode())])


def run(hook: RetrainHook, host: str, port: int, max_body_bytes: int, log_level: str = "info") -> int:
    """Serve until SIGTERM/SIGINT; a running trigger is given a few seconds to finish."""
    app = HookApp(hook, max_body_bytes)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="on",
        access_log=False,
        log_level=log_level,
        server_header=False,
        timeout_graceful_shutdown=10,
    )
    uvicorn.Server(config).run()
    return 0
