"""Small pieces shared by modelfleet's plain ASGI applications (model server, drift exporter, retraining hook)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


async def send_response(send: Send, status: int, body: bytes, content_type: bytes = b"application/json",
                        headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    """Answer with ``body`` in one piece (content type and length set, then ``headers``)."""
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


class BodyError(Exception):
    """A request body the application refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def read_body(receive: Receive, headers: Iterable[tuple[bytes, bytes]], limit: int, timeout: float) -> bytes:
    """The whole request body: 413 beyond ``limit`` bytes (by Content-Length or as it arrives),
    408 when it has not arrived within ``timeout`` seconds, 499 when the client went away."""
    for key, value in headers:
        if key == b"content-length" and value.isdigit() and int(value) > limit:
            raise BodyError(413, f"request body of {int(value)} bytes exceeds the limit of {limit} bytes")
    chunks = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
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
    except TimeoutError:
        raise BodyError(408, f"request body not received within {timeout:g} s") from None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
