"""HTTP/1.1 for the model server: uvicorn runs the server, this protocol serves each connection.

``uvicorn.Config(http=HttpProtocol)``: uvicorn keeps what it does well (sockets, signals, lifespan, graceful
shutdown, ``limit_concurrency``); each connection is an :class:`HttpProtocol`, which parses requests with
``httptools`` (llhttp, the parser of uvicorn's own httptools protocol) and calls the ASGI application as
uvicorn does, for less per request: no cycle object and no event per request, a body that came with its
headers handed over without a wait, header names and values checked by one scan instead of two regular
expressions each, and an answer's head and its one-piece body written with one ``transport.write`` (one
send() instead of two). Measured in bench/serving (docs/serving-benchmark.md).

Kept from uvicorn's protocol: keep-alive and its timeout; pipelined requests answered in order (reading
pauses while one is answered); ``Expect: 100-continue`` (sent when the application first reads the body);
chunked request bodies (llhttp decodes them); reading paused while more than 64 KiB of body waits for the
application, the application's writes held while the client does not read; ``limit_concurrency`` (503); a
400 and close for what llhttp cannot parse; a 500 for an application that fails before it answers; graceful
shutdown (idle connections close at once, busy ones after their answer). Not offered: upgrades (WebSocket,
h2c: the request is answered as a plain one, then the connection closes), access logs, ``root_path`` and
proxy headers (the model server uses none of them).
"""

from __future__ import annotations

import asyncio
import http
import logging
import urllib.parse
from collections import deque
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

import httptools
from uvicorn.protocols.http.flow_control import service_unavailable
from uvicorn.protocols.utils import get_local_addr, get_remote_addr

if TYPE_CHECKING:
    import uvicorn
    from uvicorn.server import ServerState

log = logging.getLogger("uvicorn.error")

#: Body bytes buffered for the application before reading from the client pauses.
HIGH_WATER = 65536
_ASGI = {"version": "3.0", "spec_version": "2.3"}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_STATUS_LINES = {status.value: f"HTTP/1.1 {status.value} {status.phrase}\r\n".encode() for status in http.HTTPStatus}
_INVALID = b"Invalid HTTP request received."
_BAD_REQUEST = (b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n"
                b"connection: close\r\n\r\n%s" % (len(_INVALID), _INVALID))
_SERVER_ERROR_BODY = b"Internal Server Error"
_SERVER_ERROR = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"%d" % len(_SERVER_ERROR_BODY)),
                 (b"connection", b"close")]
#: Bytes that may not appear in a header name (RFC 9110 token) or value (control characters but tab).
_NOT_IN_NAME = frozenset(b'\x00\x01\x02\x03\x04\x05\x06\x07\x08\t\n\x0b\x0c\r\x0e\x0f\x10\x11\x12\x13\x14\x15\x16'
                         b'\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f\x7f()<>@,;:\\"/[]?={} ')
_NOT_IN_VALUE = frozenset(b'\x00\x01\x02\x03\x04\x05\x06\x07\x08\n\x0b\x0c\r\x0e\x0f\x10\x11\x12\x13\x14\x15\x16'
                          b'\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f\x7f')
Message = MutableMapping[str, Any]


class HttpProtocol(asyncio.Protocol):
    """One client connection (the constructor's arguments are what uvicorn's server passes)."""

    def __init__(self, config: uvicorn.Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        if not config.loaded:
            config.load()
        self.app = config.loaded_app
        self.loop = _loop or asyncio.get_event_loop()
        self.server_state = server_state
        self.app_state = app_state
        self.limit_concurrency = config.limit_concurrency
        self.keep_alive_timeout = config.timeout_keep_alive
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # set by connection_made
        self.server: tuple[str, int | None] | None = None
        self.client: tuple[str, int] | None = None
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.expect_continue = False
        self.reading: Exchange | None = None  # the request whose bytes arrive now
        self.answering: Exchange | None = None  # the request the application answers now
        self.queued: deque[Exchange] = deque()  # pipelined requests, in order, waiting for it
        self.parse_error = False  # what came after the requests in hand is not HTTP: 400 after their answers
        self.upgraded = False  # llhttp stopped at an upgrade request: nothing after it is parsed
        self.keep_alive_handle: asyncio.TimerHandle | None = None
        self.active_at = 0.0  # loop time of the last bytes received or answer written
        self.read_paused = False
        self.writable: asyncio.Future[None] | None = None  # set while the transport's buffer is full

    # --- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.server_state.connections.add(self)  # type: ignore[arg-type]
        self.transport = transport  # type: ignore[assignment]
        self.server = get_local_addr(self.transport)
        self.client = get_remote_addr(self.transport)
        self._idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server_state.connections.discard(self)
        if self.keep_alive_handle is not None:
            self.keep_alive_handle.cancel()
            self.keep_alive_handle = None
        for exchange in (self.answering, self.reading, *self.queued):
            if exchange is not None:
                exchange.disconnect()
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)

    def eof_received(self) -> bool | None:
        return None  # the transport closes; a request in progress sees a disconnect

    def data_received(self, data: bytes) -> None:
        self.active_at = self.loop.time()
        if self.upgraded or self.parse_error:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.upgraded = True  # answered as a plain request; the connection closes after it
            if self.reading is not None:
                self.reading.keep_alive = False
        except httptools.HttpParserError:
            log.warning("Invalid HTTP request received.")
            self.parse_error = True
            reading = self.reading
            if self.answering is None or (reading is not None and reading.more_body and not reading.complete):
                self._refuse()  # now: nothing to answer first, or a body cut by the error (it cannot complete)
            else:
                self._pause_reading()  # answered after the requests in hand

    def pause_writing(self) -> None:
        if self.writable is None:
            self.writable = self.loop.create_future()

    def resume_writing(self) -> None:
        if self.writable is not None:
            if not self.writable.done():
                self.writable.set_result(None)
            self.writable = None

    # --- httptools callbacks -----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.expect_continue = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        value = value.rstrip(b" \t")  # llhttp keeps trailing whitespace, which is not part of the value
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_continue = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        version = parser.get_http_version()
        raw_path = self.url
        query = b""
        if not raw_path.startswith(b"/") or b"?" in raw_path or b"%" in raw_path or b"#" in raw_path:
            url = httptools.parse_url(raw_path)  # (the plain path of nearly every request needs no parsing)
            raw_path, query = url.path, url.query or b""
        path = raw_path.decode("ascii")
        if "%" in path:
            path = urllib.parse.unquote(path)
        scope: Message = {"type": "http", "asgi": _ASGI, "http_version": version, "server": self.server,
                          "client": self.client, "scheme": "http", "method": parser.get_method().decode("ascii"),
                          "root_path": "", "path": path, "raw_path": raw_path, "query_string": query,
                          "headers": self.headers}
        if self.app_state:
            scope["state"] = self.app_state.copy()
        exchange = Exchange(self, scope, version != "1.0" and parser.should_keep_alive(), self.expect_continue)
        self.reading = exchange
        if self.answering is None:
            self._start(exchange)
        else:
            self.queued.append(exchange)
            self._pause_reading()

    def on_body(self, body: bytes) -> None:
        exchange = self.reading
        if exchange is None or exchange.complete:
            return  # answered before its body arrived: the rest is read and dropped
        exchange.received(body)
        if exchange.buffered > HIGH_WATER:
            self._pause_reading()

    def on_message_complete(self) -> None:
        exchange = self.reading
        if exchange is not None:
            exchange.end_of_body()

    # --- requests and answers ----------------------------------------------------------------------

    def _start(self, exchange: Exchange) -> None:
        self.answering = exchange
        state = self.server_state
        limit = self.limit_concurrency
        app = self.app
        if limit is not None and (len(state.connections) >= limit or len(state.tasks) >= limit):
            log.warning("Exceeded concurrency limit.")
            app = service_unavailable
        task = self.loop.create_task(exchange.run(app))
        task.add_done_callback(state.tasks.discard)
        state.tasks.add(task)

    def answered(self, exchange: Exchange) -> None:
        """``exchange``'s answer is written: close, start the next pipelined request, or wait for one."""
        self.server_state.total_requests += 1
        if not exchange.keep_alive:
            self.transport.close()
            return
        self.answering = None
        if self.queued:
            self._start(self.queued.popleft())
            if not self.queued and not self.parse_error:
                self._resume_reading()
            return
        if self.parse_error:
            self._refuse()
            return
        self._resume_reading()
        self._idle()

    def needs_body(self) -> None:
        """The application waits for body bytes still to come."""
        if not self.queued and not self.parse_error:
            self._resume_reading()

    def shutdown(self) -> None:
        """The server stops (uvicorn calls this): close an idle connection now, a busy one after its answer."""
        if self.answering is None:
            self.transport.close()
        else:
            self.answering.keep_alive = False

    def _refuse(self) -> None:
        """Answer 400 and close; requests still in hand are dropped (what they write from now on is not sent)."""
        for exchange in (self.answering, self.reading, *self.queued):
            if exchange is not None and not exchange.complete:
                exchange.disconnect()
        if not self.transport.is_closing():
            self.transport.write(_BAD_REQUEST)
            self.transport.close()

    def _idle(self) -> None:
        """Nothing in hand from now: the keep-alive timeout counts from here (its check armed if it is not)."""
        self.active_at = self.loop.time()
        if self.keep_alive_handle is None:
            self.keep_alive_handle = self.loop.call_later(self.keep_alive_timeout, self._keep_alive_check)

    def _keep_alive_check(self) -> None:
        """Close the connection once nothing has arrived or been answered for the keep-alive timeout, with no
        request in hand (idle, or stalled in a request's head); else check again when that could be. One timer
        per connection, re-armed rarely, not one armed and cancelled per request (a few µs each)."""
        self.keep_alive_handle = None
        if self.answering is not None or self.transport.is_closing():
            return  # a request in hand: its answer arms the check again
        left = self.active_at + self.keep_alive_timeout - self.loop.time()
        if left <= 0:
            self.transport.close()
        else:
            self.keep_alive_handle = self.loop.call_later(left, self._keep_alive_check)

    def _pause_reading(self) -> None:
        if not self.read_paused and not self.transport.is_closing():
            self.read_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.read_paused and not self.transport.is_closing():
            self.read_paused = False
            self.transport.resume_reading()


class Exchange:
    """One request and its answer: the ASGI ``receive`` and ``send`` of one application call."""

    __slots__ = ("buffered", "chunked", "complete", "disconnected", "expect_continue", "head", "head_only",
                 "keep_alive", "more_body", "parts", "protocol", "remaining", "scope", "started", "waiter")

    def __init__(self, protocol: HttpProtocol, scope: Message, keep_alive: bool, expect_continue: bool) -> None:
        self.protocol = protocol
        self.scope = scope
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.parts: list[bytes] = []
        self.buffered = 0
        self.more_body = True
        self.waiter: asyncio.Future[None] | None = None
        self.disconnected = False
        self.started = False  # the answer's start message was sent
        self.complete = False  # the answer is written
        self.head = b""  # the answer's head, written with its first body bytes
        self.remaining = 0  # body bytes the answer's Content-Length still owes
        self.chunked = False
        self.head_only = scope["method"] == "HEAD"

    # --- from the protocol --------------------------------------------------------------------------

    def received(self, body: bytes) -> None:
        self.parts.append(body)
        self.buffered += len(body)
        self._wake()

    def end_of_body(self) -> None:
        self.more_body = False
        self._wake()

    def disconnect(self) -> None:
        self.disconnected = True
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    # --- the application's side ---------------------------------------------------------------------

    async def run(self, app: Any) -> None:
        try:
            result = await app(self.scope, self.receive, self.send)
        except BaseException as exc:
            log.error("Exception in ASGI application\n", exc_info=exc)
            if not self.started:
                await self._server_error()
            elif not self.complete:
                self.protocol.transport.close()
            return
        if result is not None:
            log.error("ASGI callable should return None, but returned '%s'.", result)
            self.protocol.transport.close()
        elif not self.started and not self.disconnected:
            log.error("ASGI callable returned without starting response.")
            await self._server_error()
        elif not self.complete and not self.disconnected:
            log.error("ASGI callable returned without completing response.")
            self.protocol.transport.close()

    async def _server_error(self) -> None:
        await self.send({"type": "http.response.start", "status": 500, "headers": _SERVER_ERROR})
        await self.send({"type": "http.response.body", "body": _SERVER_ERROR_BODY})

    async def receive(self) -> Message:
        if self.expect_continue:
            self.expect_continue = False
            if not self.protocol.transport.is_closing():
                self.protocol.transport.write(_CONTINUE)
        while not self.parts and self.more_body and not (self.disconnected or self.complete):
            self.protocol.needs_body()
            self.waiter = self.protocol.loop.create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        if self.disconnected or self.complete:
            return {"type": "http.disconnect"}
        parts = self.parts
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        self.parts, self.buffered = [], 0
        return {"type": "http.request", "body": body, "more_body": self.more_body}

    async def send(self, message: Message) -> None:
        writable = self.protocol.writable
        if writable is not None and not self.disconnected:
            await asyncio.shield(writable)  # the client is not reading: wait until it does (or goes)
        if self.disconnected:
            return
        kind = message["type"]
        if not self.started:
            if kind != "http.response.start":
                raise RuntimeError(f"Expected ASGI message 'http.response.start', but got {kind!r}.")
            self._start_answer(message)
        elif not self.complete:
            if kind != "http.response.body":
                raise RuntimeError(f"Expected ASGI message 'http.response.body', but got {kind!r}.")
            self._write_body(message.get("body", b""), message.get("more_body", False))
        else:
            raise RuntimeError(f"Unexpected ASGI message {kind!r} sent, after response already completed.")

    def _start_answer(self, message: Message) -> None:
        self.started = True
        if self.expect_continue and self.more_body:
            # Answered before the 100 Continue: the client will not send the body it announced, and what it sends
            # next could be read as that body. Close after the answer (RFC 9110, section 10.1.1).
            self.keep_alive = False
        self.expect_continue = False
        status: int = message["status"]
        head = [_STATUS_LINES.get(status) or b"HTTP/1.1 %d \r\n" % status]
        length: int | None = None
        close = False
        for name, value in message.get("headers", ()):
            if _NOT_IN_NAME.intersection(name) or _NOT_IN_VALUE.intersection(value):
                raise RuntimeError(f"Invalid HTTP header {name!r}: {value!r}.")
            lower = name.lower()
            if lower == b"content-length" and length is None:
                length = int(value)
            elif lower == b"connection" and b"close" in value.lower():
                close = True
                self.keep_alive = False
            head += (name, b": ", value, b"\r\n")
        if not self.keep_alive and not close:
            head.append(b"connection: close\r\n")
        if length is None and not self.head_only and status not in (204, 304):
            self.chunked = True
            head.append(b"transfer-encoding: chunked\r\n")
        head.append(b"\r\n")
        self.head = b"".join(head)
        self.remaining = length or 0

    def _write_body(self, body: bytes, more_body: bool) -> None:
        if self.head_only:
            body = b""
        elif self.chunked:
            body = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + (b"" if more_body else b"0\r\n\r\n")
        else:
            if len(body) > self.remaining:
                raise RuntimeError("Response content longer than Content-Length")
            self.remaining -= len(body)
        if self.head:
            body, self.head = self.head + body, b""
        if body:
            self.protocol.transport.write(body)
        if more_body:
            return
        if self.remaining and not self.head_only:
            raise RuntimeError("Response content shorter than Content-Length")
        self.complete = True
        self._wake()
        self.protocol.answered(self)
