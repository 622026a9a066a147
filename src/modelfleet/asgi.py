"""The one home of modelfleet's ASGI plumbing (model server, drift exporter, retraining hook).

The applications are plain ASGI callables; what they share lives here: the ASGI types, the
:class:`Application` base (lifespan, dispatch, early replies), the lifespan loop, one-piece responses
and JSON errors (``{"error": message}``), method checks, and reading a bounded request body.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import orjson

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

log = logging.getLogger(__name__)


async def lifespan(receive: Receive, send: Send, startup: Callable[[], Awaitable[None]],
                   shutdown: Callable[[], Awaitable[None]]) -> None:
    """Answer the lifespan protocol: ``startup`` then ``shutdown``; a failed startup is reported, not raised."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                await startup()
            except Exception as exc:
                log.exception("startup failed")
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def send_response(send: Send, status: int, body: bytes, content_type: bytes = b"application/json",
                        headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    """Answer with ``body`` in one piece (content type and length set, then ``headers``)."""
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


def error_body(message: str) -> bytes:
    """The JSON body of every error answer: ``{"error": message}``."""
    return orjson.dumps({"error": message})


async def send_error(send: Send, status: int, message: str, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    """Answer with ``status`` and :func:`error_body`."""
    await send_response(send, status, error_body(message), headers=headers)


class Reply(Exception):  # noqa: N818 - control flow, not an error
    """An early error answer, raised anywhere below an application's router and sent by the application."""

    def __init__(self, status: int, message: str, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, list(headers)


class Application:
    """Base of modelfleet's ASGI applications: lifespan -> :meth:`startup` / :meth:`shutdown`; each HTTP
    request -> :meth:`route`, whose :class:`Reply` is answered by :meth:`reply`; other scopes are ignored."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send, self.startup, self.shutdown)
            return
        if scope["type"] != "http":
            return
        try:
            await self.route(scope, receive, send)
        except Reply as reply:
            await self.reply(scope, send, reply)

    async def startup(self) -> None:
        """Called once before the first request."""

    async def shutdown(self) -> None:
        """Called once when the server stops."""

    async def route(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError

    async def reply(self, scope: Scope, send: Send, reply: Reply) -> None:
        """Answer an early :class:`Reply` (a JSON error)."""
        await send_error(send, reply.status, reply.message, reply.headers)


def allow(method: str, allowed: str) -> None:
    """Raise a 405 :class:`Reply` unless ``method`` is ``allowed`` (``HEAD`` goes with ``GET``)."""
    if method != allowed and not (allowed == "GET" and method == "HEAD"):
        raise Reply(405, f"method {method} not allowed here; use {allowed}", [(b"allow", allowed.encode())])


class BodyError(Exception):
    """A request body the application refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _BodyDeadlines:
    """One event loop's body reads and their deadlines; a sweep every :data:`SWEEP_SECONDS` while any is in
    progress cancels those past theirs. Cheaper than a timer per request: arming and disarming one
    (``asyncio.timeout``) cost about 15 µs per request under uvloop on the benchmark machine, a third of the
    server's own work on a one-row request."""

    def __init__(self) -> None:
        self.reads: dict[asyncio.Task[Any], float] = {}
        self.expired: set[asyncio.Task[Any]] = set()
        self.sweeping = False

    def add(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any], timeout: float) -> None:
        self.reads[task] = loop.time() + timeout
        if not self.sweeping:
            self.sweeping = True
            loop.call_later(SWEEP_SECONDS, self.sweep, loop)

    def sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for task, deadline in list(self.reads.items()):
            if deadline <= now:
                del self.reads[task]
                self.expired.add(task)
                task.cancel()  # delivered where the task waits: in read_body's receive()
        self.sweeping = bool(self.reads)
        if self.sweeping:
            loop.call_later(SWEEP_SECONDS, self.sweep, loop)


#: How often a body read's deadline is checked: a read times out up to this much after its timeout.
SWEEP_SECONDS = 0.1
#: Each running loop's body reads (weak: a closed loop goes with its reads).
_DEADLINES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _BodyDeadlines] = weakref.WeakKeyDictionary()


async def read_body(receive: Receive, headers: Iterable[tuple[bytes, bytes]], limit: int, timeout: float) -> bytes:
    """The whole request body: 413 beyond ``limit`` bytes (by Content-Length or as it arrives),
    408 when it has not arrived within ``timeout`` seconds (checked every :data:`SWEEP_SECONDS`),
    499 when the client went away."""
    for key, value in headers:
        if key == b"content-length" and value.isdigit() and int(value) > limit:
            raise BodyError(413, f"request body of {int(value)} bytes exceeds the limit of {limit} bytes")
    task = asyncio.current_task()
    assert task is not None, "read_body runs in a task"
    loop = task.get_loop()
    deadlines = _DEADLINES.get(loop)
    if deadlines is None:
        deadlines = _DEADLINES[loop] = _BodyDeadlines()
    deadlines.add(loop, task, timeout)
    chunks = []
    size = 0
    try:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise BodyError(499, "client disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise BodyError(413, f"request body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
    except asyncio.CancelledError:
        if task not in deadlines.expired:
            raise  # someone else's cancellation
        deadlines.expired.discard(task)
        if task.uncancel() > 0:
            raise  # also cancelled by someone else meanwhile
        raise BodyError(408, f"request body not received within {timeout:g} s") from None
    finally:
        deadlines.reads.pop(task, None)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
