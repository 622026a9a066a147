"""The retraining hook's HTTP side: a plain ASGI app and the uvicorn server that runs it.

``POST /alerts`` takes an Alertmanager webhook notification (200 with the decision per model
version; 400 ``{"error": ...}`` when malformed; 413 beyond the size limit), ``GET /healthz``,
``GET /metrics`` (Prometheus text format) and ``GET /`` (a landing page).
"""

from __future__ import annotations

import asyncio
import logging

import orjson
import uvicorn
from prometheus_client import Counter, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from modelfleet import __version__
from modelfleet.alerting.hook import RetrainHook
from modelfleet.alerting.payload import PayloadError, parse_notification
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

log = logging.getLogger(__name__)
BODY_TIMEOUT = 30.0
_LANDING = (
    b"<!doctype html><html><head><title>modelfleet retraining hook</title></head><body>"
    b"<h1>modelfleet retraining hook</h1><p>Alertmanager webhook: <code>POST /alerts</code></p>"
    b'<p><a href="/metrics">Metrics</a> &middot; <a href="/healthz">Health</a></p></body></html>'
)


class HookApp(Application):
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

    async def startup(self) -> None:
        self.hook.start()

    async def shutdown(self) -> None:
        await asyncio.to_thread(self.hook.stop)

    async def reply(self, scope: Scope, send: Send, reply: Reply) -> None:
        if scope["path"] == "/alerts":
            self.notifications.labels(str(reply.status)).inc()
        await super().reply(scope, send, reply)

    async def route(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope["path"], scope["method"]
        if path == "/alerts":
            allow(method, "POST")
            try:
                body = await read_body(receive, scope["headers"], self.max_body_bytes, BODY_TIMEOUT)
            except BodyError as exc:
                raise Reply(400 if exc.status == 499 else exc.status, exc.message) from None
            try:
                notification = parse_notification(body)
            except PayloadError as exc:
                log.warning("malformed notification: %s", exc)
                raise Reply(400, str(exc)) from None
            decisions, ignored = self.hook.submit(notification)
            self.notifications.labels("200").inc()
            await send_response(
                send, 200, orjson.dumps({"requests": [d.as_dict() for d in decisions], "ignored": ignored})
            )
        elif path == "/healthz":
            allow(method, "GET")
            healthy = self.hook.healthy
            with self.hook.lock:
                pending = sorted("/".join(key) for key in self.hook.pending)
            await send_response(
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
            allow(method, "GET")
            body = await asyncio.to_thread(generate_latest, self.hook.registry)
            await send_response(send, 200, body, CONTENT_TYPE_LATEST.encode())
        elif path == "/":
            allow(method, "GET")
            await send_response(send, 200, _LANDING, b"text/html; charset=utf-8")
        else:
            raise Reply(404, f"no route for {path}")


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
