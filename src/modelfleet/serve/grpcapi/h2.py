"""Unary gRPC over HTTP/2 (cleartext, prior knowledge), served on the event loop: the transport of the gRPC
front end.

One :class:`GrpcConnection` per client connection parses HTTP/2 frames (RFC 9113) as they arrive, decodes
header blocks with ``hpack``, and hands each complete unary call (``/<service>/<method>``, one
length-prefixed message) to :attr:`GrpcConnection.dispatch` on the same thread: no pool thread and no
thread hop per call, which is what grpcio's servers cost (about 12 context switches per call;
docs/serving-benchmark.md). What it implements of HTTP/2: SETTINGS (the peer's window, frame size and
header table size honoured), PING, WINDOW_UPDATE and flow control both ways (answers wait for the peer's
window), HEADERS with CONTINUATION, padding and priority, RST_STREAM (the call's answer is dropped),
GOAWAY both ways (graceful: calls already started are answered). Server push, streaming calls and TLS are
not offered (the router terminates TLS). Of gRPC: ``grpc-encoding`` gzip and deflate requests (answers are
not compressed), trailers-only errors, a percent-encoded ``grpc-message``; ``grpc-timeout`` is left to the
client, which enforces its own deadline.

Header blocks the server sends use literal fields without indexing only, so its HPACK encoder has no state.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, cast

import hpack
from hpack.exceptions import HPACKError

log = logging.getLogger(__name__)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
# Error codes (RFC 9113 section 7).
NO_ERROR, PROTOCOL_ERROR, FLOW_CONTROL_ERROR = 0x0, 0x1, 0x3
STREAM_CLOSED, FRAME_SIZE_ERROR, REFUSED_STREAM, COMPRESSION_ERROR = 0x5, 0x6, 0x7, 0x9
# SETTINGS identifiers.
HEADER_TABLE_SIZE, MAX_CONCURRENT_STREAMS, INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE, MAX_HEADER_LIST_SIZE = 1, 3, 4, 5, 6
MAX_WINDOW = (1 << 31) - 1
DEFAULT_WINDOW = 65535
DEFAULT_FRAME = 16384
#: What the server lets each stream, and the whole connection, send before it has read it.
STREAM_WINDOW = 1 << 20
CONNECTION_WINDOW = 1 << 24
MAX_HEADER_BLOCK = 1 << 16
#: gRPC status codes used here (the rest come from the dispatcher).
UNKNOWN, INTERNAL, UNIMPLEMENTED, RESOURCE_EXHAUSTED = 2, 13, 12, 8
ACCEPTED_ENCODINGS = b"identity,deflate,gzip"

#: What a call's dispatcher returns: the answer message, a gRPC status with its message, or a coroutine of either.
Answer = bytes | tuple[int, str]
Dispatch = Callable[[str, bytes], Answer | Coroutine[Any, Any, Answer]]


@dataclass(frozen=True)
class Limits:
    """``max_message``: the largest request message accepted (decompressed), larger ones are
    RESOURCE_EXHAUSTED; ``max_streams``: calls open at once per connection."""

    max_message: int
    max_streams: int


class ProtocolViolationError(Exception):
    """The peer broke the protocol: the connection ends with GOAWAY ``code``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return len(payload).to_bytes(3, "big") + bytes((kind, flags)) + stream.to_bytes(4, "big") + payload


def _integer(value: int, prefix_bits: int, first: int = 0) -> bytes:
    """HPACK's integer with an N-bit prefix (RFC 7541 section 5.1)."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append(value & 127 | 128)
        value >>= 7
    out.append(value)
    return bytes(out)


def _literal(name: bytes, value: bytes) -> bytes:
    """A header field as a literal without indexing, new name, no Huffman coding."""
    return b"\x00" + _integer(len(name), 7) + name + _integer(len(value), 7) + value


def percent_encode(message: str) -> bytes:
    """``grpc-message``'s encoding: printable ASCII except ``%`` as is, other bytes of the UTF-8 as %XX."""
    return b"".join(bytes((b,)) if 0x20 <= b <= 0x7E and b != 0x25 else b"%%%02X" % b
                    for b in message.encode()[:4096])


#: ``:status: 200`` (static index 8) and ``content-type: application/grpc`` (static name 31, literal value).
RESPONSE_HEADERS = b"\x88\x0f\x10" + _integer(16, 7) + b"application/grpc"
OK_TRAILERS = _literal(b"grpc-status", b"0")


def status_block(code: int, message: str) -> bytes:
    block = _literal(b"grpc-status", str(code).encode())
    return block + _literal(b"grpc-message", percent_encode(message)) if message else block


class HeaderDecoder:
    """``hpack.Decoder`` with the answers to repeated header blocks kept: a client sends the same block for
    every call once its headers are in the dynamic table, and decoding it again in Python costs more than the
    rest of the call's framing. A block is kept only if decoding it left the dynamic table as it was, and
    served from the cache only while the table is still that: the same newest entry (held, so no new entry
    can take its identity), the same number of entries and the same size limit."""

    KEPT = 16

    def __init__(self) -> None:
        self.decoder = hpack.Decoder(max_header_list_size=MAX_HEADER_BLOCK)
        self.table = self.decoder.header_table
        self.kept: dict[bytes, tuple[tuple[object, int, int], list[tuple[str, str]]]] = {}

    def _state(self) -> tuple[object, int, int]:
        entries = self.table.dynamic_entries
        return (entries[0] if entries else None), len(entries), self.table.maxsize

    @staticmethod
    def _same(one: tuple[object, int, int], other: tuple[object, int, int]) -> bool:
        return one[0] is other[0] and one[1:] == other[1:]

    def decode(self, block: bytes) -> list[tuple[str, str]]:
        state = self._state()
        hit = self.kept.get(block)
        if hit is not None and self._same(hit[0], state):
            return hit[1]
        fields = [(str(name), str(value)) for name, value in self.decoder.decode(block)]
        if self._same(self._state(), state):
            if len(self.kept) >= self.KEPT:
                self.kept.clear()
            self.kept[block] = (state, fields)
        return fields


class _Stream:
    __slots__ = ("answered", "body", "ended", "headers", "sid", "size", "unacked", "window")

    def __init__(self, sid: int, window: int) -> None:
        self.sid = sid
        self.headers: list[tuple[str, str]] = []
        self.body: list[bytes] = []
        self.size = 0  # body bytes received
        self.unacked = 0  # bytes received since the last WINDOW_UPDATE for this stream
        self.window = window  # what the server may still send on it
        self.ended = False  # the peer's END_STREAM
        self.answered = False  # the answer is sent or queued


class GrpcConnection(asyncio.Protocol):
    """One HTTP/2 connection; ``on_close`` is called once when it ends."""

    def __init__(self, dispatch: Dispatch, limits: Limits, on_close: Callable[[GrpcConnection], None]) -> None:
        self.dispatch = dispatch
        self.limits = limits
        self.on_close = on_close
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.preface_read = False
        self.decoder = HeaderDecoder()
        self.streams: dict[int, _Stream] = {}
        self.last_stream = 0  # the highest stream the peer opened
        self.continuing: _Stream | None = None  # a header block still expecting CONTINUATION
        self.block: list[bytes] = []
        self.block_ends_stream = False
        self.peer_frame = DEFAULT_FRAME
        self.peer_window = DEFAULT_WINDOW  # the peer's initial stream window
        self.send_window = DEFAULT_WINDOW  # the connection's
        self.table_update = b""  # an HPACK dynamic table size update owed at the start of the next block
        self.recv_unacked = 0
        self.blocked: dict[int, tuple[_Stream, bytes, bytes]] = {}  # answers waiting for window: data, trailers
        self.tasks: set[asyncio.Task[Answer]] = set()
        self.going_away = False  # GOAWAY sent or received: no new streams; close when the last one is done
        self.out: list[bytes] = []

    # --- asyncio.Protocol ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio's classes
        settings = b"".join(key.to_bytes(2, "big") + value.to_bytes(4, "big") for key, value in (
            (MAX_CONCURRENT_STREAMS, self.limits.max_streams), (INITIAL_WINDOW_SIZE, STREAM_WINDOW),
            (MAX_HEADER_LIST_SIZE, MAX_HEADER_BLOCK)))
        opening = (CONNECTION_WINDOW - DEFAULT_WINDOW).to_bytes(4, "big")
        self.transport.write(frame(SETTINGS, 0, 0, settings) + frame(WINDOW_UPDATE, 0, 0, opening))

    def pause_writing(self) -> None:
        # The peer does not read what it asked for (answers, PING and SETTINGS acknowledgements): read nothing
        # more from it until it has, so that a flood of control frames cannot grow the send buffer.
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None:
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.streams.clear()
        self.blocked.clear()
        self.on_close(self)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        try:
            end = self._frames(buffer)
        except ProtocolViolationError as broken:
            log.info("gRPC connection closed: %s", broken)
            self.close(broken.code, str(broken))
            return
        self.buffer = buffer[end:]
        self._write()

    # --- reading ------------------------------------------------------------------------------------

    def _frames(self, buffer: bytes) -> int:
        """Handles every whole frame in ``buffer``; where the unread part starts."""
        pos, size = 0, len(buffer)
        if not self.preface_read:
            if not PREFACE.startswith(buffer[:len(PREFACE)]):
                raise ProtocolViolationError(PROTOCOL_ERROR, "not an HTTP/2 connection preface (gRPC needs HTTP/2)")
            if size < len(PREFACE):
                return 0
            self.preface_read, pos = True, len(PREFACE)
        while size - pos >= 9:
            length = int.from_bytes(buffer[pos:pos + 3], "big")
            if length > DEFAULT_FRAME:
                raise ProtocolViolationError(FRAME_SIZE_ERROR, f"a frame of {length} bytes (at most {DEFAULT_FRAME})")
            if size - pos - 9 < length:
                break
            kind, flags = buffer[pos + 3], buffer[pos + 4]
            sid = int.from_bytes(buffer[pos + 5:pos + 9], "big") & MAX_WINDOW
            payload = buffer[pos + 9:pos + 9 + length]
            pos += 9 + length
            if self.continuing is not None and kind != CONTINUATION:
                raise ProtocolViolationError(PROTOCOL_ERROR, "a header block interrupted before its end")
            if kind == DATA:
                self._data(sid, flags, payload)
            elif kind == HEADERS:
                self._headers(sid, flags, payload)
            elif kind == CONTINUATION:
                self._continuation(sid, flags, payload)
            elif kind == SETTINGS:
                self._settings(sid, flags, payload)
            elif kind == WINDOW_UPDATE:
                self._window_update(sid, payload)
            elif kind == PING:
                if sid or length != 8:
                    raise ProtocolViolationError(PROTOCOL_ERROR if sid else FRAME_SIZE_ERROR, "malformed PING")
                if not flags & ACK:
                    self.out.append(frame(PING, ACK, 0, payload))
            elif kind == RST_STREAM:
                if not sid or length != 4:
                    raise ProtocolViolationError(PROTOCOL_ERROR, "malformed RST_STREAM")
                self._forget(sid)
            elif kind == GOAWAY:
                self.going_away = True
                self._close_if_idle()
            elif kind == PRIORITY:
                if not sid or length != 5:
                    raise ProtocolViolationError(PROTOCOL_ERROR, "malformed PRIORITY")
            elif kind == PUSH_PROMISE:
                raise ProtocolViolationError(PROTOCOL_ERROR, "a client may not push")
            # Other frame types are extensions this server does not know: ignored, as RFC 9113 requires.
        return pos

    @staticmethod
    def _unpad(flags: int, payload: bytes) -> bytes:
        if not flags & PADDED:
            return payload
        if not payload or payload[0] >= len(payload):
            raise ProtocolViolationError(PROTOCOL_ERROR, "padding longer than the frame")
        return payload[1:len(payload) - payload[0]]

    def _data(self, sid: int, flags: int, payload: bytes) -> None:
        self.recv_unacked += len(payload)  # flow control counts the padding too
        if self.recv_unacked >= CONNECTION_WINDOW // 2:
            self.out.append(frame(WINDOW_UPDATE, 0, 0, self.recv_unacked.to_bytes(4, "big")))
            self.recv_unacked = 0
        stream = self.streams.get(sid)
        if stream is None or stream.ended:
            if not sid or sid > self.last_stream:
                raise ProtocolViolationError(PROTOCOL_ERROR, f"DATA on stream {sid}, which is not open")
            return  # a stream reset, refused or answered early: frames the peer sent meanwhile are ignored
        body = self._unpad(flags, payload)
        stream.body.append(body)
        stream.size += len(body)
        if stream.size > self.limits.max_message + 5:  # answered and reset at once
            self._answer(stream, (RESOURCE_EXHAUSTED, f"the request message is larger than "
                                                      f"{self.limits.max_message} bytes"))
            return
        if flags & END_STREAM:
            stream.ended = True
            self._request_ended(stream)
        else:
            stream.unacked += len(payload)
            if stream.unacked >= STREAM_WINDOW // 2:
                self.out.append(frame(WINDOW_UPDATE, 0, sid, stream.unacked.to_bytes(4, "big")))
                stream.unacked = 0

    def _headers(self, sid: int, flags: int, payload: bytes) -> None:
        if not sid:
            raise ProtocolViolationError(PROTOCOL_ERROR, "HEADERS on stream 0")
        payload = self._unpad(flags, payload)
        if flags & PRIORITY_FLAG:
            payload = payload[5:]
        stream = self.streams.get(sid)
        if stream is None and sid <= self.last_stream and sid % 2:
            # A stream already closed (reset by either side, refused, answered early): frames the peer sent before
            # it knew are ignored, but a header block is still decoded, for the HPACK state both sides share.
            stream = _Stream(sid, 0)
            stream.answered = True
        elif stream is None:
            if sid % 2 == 0:
                raise ProtocolViolationError(PROTOCOL_ERROR, f"HEADERS opening stream {sid}, which cannot be opened")
            self.last_stream = sid
            stream = _Stream(sid, self.peer_window)
            # Calls still running count too: a stream reset right after its request ended leaves its call
            # running, and must not make room for another ("rapid reset").
            if self.going_away or max(len(self.streams), len(self.tasks)) >= self.limits.max_streams:
                stream.answered = True  # not registered; its block is decoded below all the same (HPACK state)
                self.out.append(frame(RST_STREAM, 0, sid, REFUSED_STREAM.to_bytes(4, "big")))
            else:
                self.streams[sid] = stream
        elif stream.ended:
            raise ProtocolViolationError(STREAM_CLOSED, f"HEADERS on stream {sid} after its end")
        self.block, self.block_ends_stream = [payload], bool(flags & END_STREAM)
        self.continuing = stream
        if flags & END_HEADERS:
            self._header_block_done()

    def _continuation(self, sid: int, flags: int, payload: bytes) -> None:
        if self.continuing is None or sid != self.continuing.sid:
            raise ProtocolViolationError(PROTOCOL_ERROR, "CONTINUATION without its HEADERS")
        self.block.append(payload)
        if sum(map(len, self.block)) > MAX_HEADER_BLOCK:
            raise ProtocolViolationError(PROTOCOL_ERROR, f"a header block over {MAX_HEADER_BLOCK} bytes")
        if flags & END_HEADERS:
            self._header_block_done()

    def _header_block_done(self) -> None:
        stream, self.continuing = self.continuing, None
        assert stream is not None
        try:
            fields = self.decoder.decode(b"".join(self.block))
        except HPACKError as exc:
            raise ProtocolViolationError(COMPRESSION_ERROR, f"undecodable header block ({exc})") from None
        first = not stream.headers
        stream.headers.extend(fields)
        if not first and not self.block_ends_stream:
            raise ProtocolViolationError(PROTOCOL_ERROR, "trailers without END_STREAM")
        if self.block_ends_stream:
            stream.ended = True
            self._request_ended(stream)

    def _settings(self, sid: int, flags: int, payload: bytes) -> None:
        if sid:
            raise ProtocolViolationError(PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & ACK:
            return
        if len(payload) % 6:
            raise ProtocolViolationError(FRAME_SIZE_ERROR, "SETTINGS of a length not a multiple of 6")
        for at in range(0, len(payload), 6):
            key, value = int.from_bytes(payload[at:at + 2], "big"), int.from_bytes(payload[at + 2:at + 6], "big")
            if key == INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise ProtocolViolationError(FLOW_CONTROL_ERROR, "initial window over 2^31-1")
                for stream in self.streams.values():
                    stream.window += value - self.peer_window
                self.peer_window = value
            elif key == MAX_FRAME_SIZE:
                if not DEFAULT_FRAME <= value <= (1 << 24) - 1:
                    raise ProtocolViolationError(PROTOCOL_ERROR, f"max frame size {value}")
                self.peer_frame = value
            elif key == HEADER_TABLE_SIZE:
                self.table_update = b"\x20"  # this encoder never indexes: a table of size 0 satisfies any limit
        self.out.append(frame(SETTINGS, ACK, 0))
        self._flush_blocked()

    def _window_update(self, sid: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise ProtocolViolationError(FRAME_SIZE_ERROR, "WINDOW_UPDATE of a length other than 4")
        increment = int.from_bytes(payload, "big") & MAX_WINDOW
        if not sid:
            if not increment:
                raise ProtocolViolationError(PROTOCOL_ERROR, "a connection WINDOW_UPDATE of 0")
            self.send_window += increment
            if self.send_window > MAX_WINDOW:
                raise ProtocolViolationError(FLOW_CONTROL_ERROR, "the connection window over 2^31-1")
        elif (stream := self.streams.get(sid)) is not None:
            if not increment or stream.window + increment > MAX_WINDOW:
                self._forget(sid)
                code = PROTOCOL_ERROR if not increment else FLOW_CONTROL_ERROR
                self.out.append(frame(RST_STREAM, 0, sid, code.to_bytes(4, "big")))
                return
            stream.window += increment
        self._flush_blocked()

    # --- calls --------------------------------------------------------------------------------------

    def _request_ended(self, stream: _Stream) -> None:
        if stream.answered:
            self._done(stream)
            return
        headers = dict(stream.headers)
        path, method = headers.get(":path", ""), headers.get(":method", "")
        if method != "POST" or not headers.get("content-type", "").startswith("application/grpc"):
            self._answer_http(stream, b"\x0f\x10" + _integer(10, 7) + b"text/plain",  # content-type
                              405 if method != "POST" else 415)
            return
        body = b"".join(stream.body)
        stream.body = []
        try:
            message = self._message(body, headers.get("grpc-encoding", "identity"))
        except CallRefusedError as refused:
            self._answer(stream, (refused.code, str(refused)))
            return
        try:
            answer = self.dispatch(path, message)
        except Exception:  # a bug in a handler: the caller gets UNKNOWN, the log the traceback
            log.exception("gRPC call %s failed", path)
            self._answer(stream, (UNKNOWN, "the server failed to answer (see its log)"))
            return
        if isinstance(answer, (bytes, tuple)):
            self._answer(stream, answer)
            return
        task = asyncio.get_running_loop().create_task(answer)
        self.tasks.add(task)
        task.add_done_callback(lambda done: self._finished(stream, done))

    def _message(self, body: bytes, encoding: str) -> bytes:
        """The one message of a unary call, decompressed."""
        if len(body) < 5 or int.from_bytes(body[1:5], "big") != len(body) - 5:
            raise CallRefusedError(INTERNAL, "a unary call needs exactly one length-prefixed message "
                                             f"({len(body)} bytes of body)")
        if not body[0]:
            return body[5:]
        if encoding not in ("gzip", "deflate"):
            raise CallRefusedError(UNIMPLEMENTED, f"message compressed with {encoding!r}; this server accepts "
                                                  f"{ACCEPTED_ENCODINGS.decode()}")
        inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
        try:
            message = inflater.decompress(body[5:], self.limits.max_message + 1)
        except zlib.error as exc:
            raise CallRefusedError(INTERNAL, f"the {encoding} message does not decompress ({exc})") from None
        if len(message) > self.limits.max_message or inflater.unconsumed_tail:
            raise CallRefusedError(RESOURCE_EXHAUSTED, f"the request message is larger than "
                                                       f"{self.limits.max_message} bytes once decompressed")
        return message

    def _finished(self, stream: _Stream, task: asyncio.Task[Answer]) -> None:
        self.tasks.discard(task)
        if task.cancelled():
            answer: Answer = (1, "the call was cancelled: the server is shutting down")
        elif (error := task.exception()) is not None:
            log.error("gRPC call failed", exc_info=error)
            answer = (UNKNOWN, "the server failed to answer (see its log)")
        else:
            answer = task.result()
        if self.transport is None:
            return
        self._answer(stream, answer)
        self._write()

    def _answer(self, stream: _Stream, answer: Answer) -> None:
        """Sends (or queues, if the peer's window is short) ``answer``: a message or a status."""
        if stream.answered:
            return
        stream.answered = True
        if stream.sid not in self.streams:  # reset by the peer meanwhile
            return
        update, self.table_update = self.table_update, b""
        if isinstance(answer, tuple):  # trailers-only
            self.out.append(frame(HEADERS, END_HEADERS | END_STREAM, stream.sid,
                                  update + RESPONSE_HEADERS + status_block(*answer)))
            if not stream.ended:  # refused before the request's end (too large): the peer may stop sending
                self.out.append(frame(RST_STREAM, 0, stream.sid, NO_ERROR.to_bytes(4, "big")))
                self._forget(stream.sid)
                return
            self._done(stream)
            return
        self.out.append(frame(HEADERS, END_HEADERS, stream.sid, update + RESPONSE_HEADERS))
        self._send_data(stream, b"\x00" + len(answer).to_bytes(4, "big") + answer, OK_TRAILERS)

    def _answer_http(self, stream: _Stream, content_type: bytes, status: int) -> None:
        stream.answered = True
        update, self.table_update = self.table_update, b""
        self.out.append(frame(HEADERS, END_HEADERS | END_STREAM, stream.sid,
                              update + b"\x08" + _integer(3, 7) + str(status).encode() + content_type))
        self._done(stream)

    def _send_data(self, stream: _Stream, data: bytes, trailers: bytes) -> None:
        limit = min(self.send_window, stream.window)
        if len(data) <= limit and len(data) <= self.peer_frame:  # the common case: all of it at once
            self.send_window -= len(data)
            stream.window -= len(data)
            self.out.append(frame(DATA, 0, stream.sid, data) + frame(HEADERS, END_HEADERS | END_STREAM,
                                                                     stream.sid, trailers))
            self._done(stream)
            return
        while data and limit > 0:
            chunk = data[:min(limit, self.peer_frame)]
            data = data[len(chunk):]
            self.send_window -= len(chunk)
            stream.window -= len(chunk)
            limit -= len(chunk)
            self.out.append(frame(DATA, 0, stream.sid, chunk))
        if data:
            self.blocked[stream.sid] = (stream, data, trailers)
            return
        self.out.append(frame(HEADERS, END_HEADERS | END_STREAM, stream.sid, trailers))
        self._done(stream)

    def _flush_blocked(self) -> None:
        for sid, (stream, data, trailers) in list(self.blocked.items()):
            if self.send_window <= 0:
                return
            if stream.window > 0:
                del self.blocked[sid]
                self._send_data(stream, data, trailers)

    def _done(self, stream: _Stream) -> None:
        """The answer is out: the stream is closed once the request has ended too."""
        if stream.ended and stream.sid not in self.blocked:
            self.streams.pop(stream.sid, None)
            self._close_if_idle()

    def _forget(self, sid: int) -> None:
        self.streams.pop(sid, None)
        self.blocked.pop(sid, None)
        self._close_if_idle()

    # --- writing and closing ----------------------------------------------------------------------

    def _write(self) -> None:
        if self.out and self.transport is not None:
            self.transport.write(b"".join(self.out))
        self.out.clear()

    @property
    def busy(self) -> bool:
        """Calls are open or running on this connection."""
        return bool(self.streams or self.tasks)

    def go_away(self) -> None:
        """No new calls on this connection; the ones started are answered, then it closes."""
        if self.transport is None or self.going_away:
            return
        self.going_away = True
        self.out.append(frame(GOAWAY, 0, 0, self.last_stream.to_bytes(4, "big") + NO_ERROR.to_bytes(4, "big")))
        self._write()
        self._close_if_idle()

    def _close_if_idle(self) -> None:
        if self.going_away and not self.streams and not self.tasks and self.transport is not None:
            self._write()
            self.transport.close()

    def close(self, code: int = NO_ERROR, reason: str = "") -> None:
        """Ends the connection now, with GOAWAY ``code``."""
        if self.transport is None:
            return
        self.out.append(frame(GOAWAY, 0, 0, self.last_stream.to_bytes(4, "big") + code.to_bytes(4, "big") +
                              reason.encode()[:256]))
        self._write()
        self.transport.close()

    async def cancel(self) -> None:
        """Cancels the calls still running (their answers go out as CANCELLED), and waits for them."""
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)


class CallRefusedError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
