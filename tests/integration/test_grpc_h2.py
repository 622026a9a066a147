"""The gRPC front end's HTTP/2 transport (modelfleet.serve.grpcapi.h2) against a real server process, driven by
the ``h2`` library (python-hyper's HTTP/2 state machine, an implementation independent of the server's) where
grpcio's clients never go: the peer's flow-control window, PING, header blocks in CONTINUATION frames,
padding, a stream reset mid-call, many calls on one connection, compressed messages, bad framing, protocol
violations and the GOAWAY of a graceful shutdown. tritonclient and kserve's gRPC clients: test_server_grpc.py.

Messages are built with tritonclient's generated classes (see test_server_grpc.py's note)."""

from __future__ import annotations

import gzip
import signal
import socket
import struct
import zlib
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import numpy as np
import pytest
from serverkit import Server, StartServer
from tritonclient.grpc import service_pb2 as pb

pytestmark = pytest.mark.integration

SERVICE = "/inference.GRPCInferenceService/"
ROW = [30.0, 40000.0, 0.3, 3.0, 1.0, 0.5, 1.0, 0.0]


def framed(message: bytes, compressed: bool = False) -> bytes:
    return bytes((int(compressed),)) + struct.pack(">I", len(message)) + message


def infer_message(rows: int = 1) -> bytes:
    message = pb.ModelInferRequest(model_name="credit-risk")
    message.inputs.add(name="x", datatype="FP32", shape=[rows, 8])
    message.raw_input_contents.append(np.array([ROW] * rows, np.float32).tobytes())
    data: bytes = message.SerializeToString()
    return data


class Call:
    """What came back on one stream."""

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}
        self.data = b""
        self.trailers: dict[str, str] = {}
        self.ended = False
        self.reset: int | None = None

    @property
    def status(self) -> int:
        return int((self.trailers or self.headers)["grpc-status"])

    def message(self) -> bytes:
        assert self.data[0] == 0 and struct.unpack(">I", self.data[1:5])[0] == len(self.data) - 5, self.data[:16]
        return self.data[5:]


def _strings(headers: Any) -> dict[str, str]:
    return {str(name): str(value) for name, value in headers}  # header_encoding="utf-8": already str


class Client:
    """An HTTP/2 client connection to the server's gRPC port."""

    def __init__(self, port: int, window: int | None = None, auto_ack: bool = True) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        if window is not None:
            self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        self.auto_ack = auto_ack
        self.calls: dict[int, Call] = {}
        self.events: list[Any] = []
        self.flush()

    def flush(self) -> None:
        self.sock.sendall(self.conn.data_to_send())

    def start(self, method: str, message: bytes | None = None, *, headers: tuple[tuple[str, str], ...] = (),
              end: bool = True, pad: int | None = None) -> int:
        sid: int = self.conn.get_next_available_stream_id()
        self.calls[sid] = Call()
        self.conn.send_headers(sid, [(":method", "POST"), (":scheme", "http"), (":path", SERVICE + method),
                                     (":authority", "localhost"), ("content-type", "application/grpc"),
                                     ("te", "trailers"), *headers], end_stream=message is None and end)
        self.flush()
        if message is not None:
            self.send_body(sid, message, end, pad)
        return sid

    def send_body(self, sid: int, body: bytes, end: bool, pad: int | None) -> None:
        """DATA frames as the server's frame size and windows allow (reading its WINDOW_UPDATEs meanwhile)."""
        while self.calls[sid].reset is None:  # a stream the server reset takes no more
            room = min(self.conn.local_flow_control_window(sid),
                       self.conn.max_outbound_frame_size - (pad + 1 if pad is not None else 0))
            if room <= 0 and body:
                assert self.read(), "the server closed the connection"
                continue
            chunk, body = body[:room], body[room:]
            self.conn.send_data(sid, chunk, end_stream=end and not body, pad_length=pad)
            self.flush()
            if not body:
                return

    def read(self) -> bool:
        """Reads once; False when the server closed the connection."""
        data = self.sock.recv(1 << 20)
        if not data:
            return False
        for event in self.conn.receive_data(data):
            self.events.append(event)
            call = self.calls.get(getattr(event, "stream_id", 0))
            if isinstance(event, h2.events.ResponseReceived) and call:
                call.headers = _strings(event.headers)
            elif isinstance(event, h2.events.TrailersReceived) and call:
                call.trailers = _strings(event.headers)
            elif isinstance(event, h2.events.DataReceived) and call:
                call.data += event.data
                if self.auto_ack:
                    self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded) and call:
                call.ended = True
            elif isinstance(event, h2.events.StreamReset) and call:
                call.reset = event.error_code
        self.flush()
        return True

    def wait(self, sid: int) -> Call:
        call = self.calls[sid]
        while not call.ended and call.reset is None:
            assert self.read(), "the server closed the connection"
        return call

    def call(self, method: str, message: bytes, **kwargs: Any) -> Call:
        return self.wait(self.start(method, framed(message), **kwargs))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def client(credit_server: Server) -> Any:
    made = Client(credit_server.grpc_port)
    yield made
    made.close()


def test_answer_waits_for_the_clients_window(credit_server: Server) -> None:
    client = Client(credit_server.grpc_port, window=10, auto_ack=False)
    try:
        sid = client.start("ModelMetadata", framed(pb.ModelMetadataRequest(name="credit-risk").SerializeToString()))
        call = client.calls[sid]
        while len(call.data) < 10:
            assert client.read()
        client.sock.settimeout(0.5)
        with pytest.raises(TimeoutError):  # the server holds the rest until the window opens
            client.read()
        assert len(call.data) == 10 and not call.trailers
        client.sock.settimeout(10)
        client.conn.increment_flow_control_window(1 << 16, sid)
        client.conn.increment_flow_control_window(1 << 16)
        client.flush()
        client.wait(sid)
        assert call.status == 0
        assert pb.ModelMetadataResponse.FromString(call.message()).name == "credit-risk"
    finally:
        client.close()


def test_ping_continuation_padding_and_large_bodies(client: Client) -> None:
    client.conn.ping(b"12345678")
    client.flush()
    # Metadata of 40 KB: the header block goes out as HEADERS + CONTINUATION frames (16 KB each at most).
    call = client.call("ModelInfer", infer_message(), headers=(("x-filler", "f" * 40_000),), pad=200)
    assert call.status == 0 and call.headers[":status"] == "200"
    assert pb.ModelInferResponse.FromString(call.message()).model_name == "credit-risk"
    assert any(isinstance(e, h2.events.PingAckReceived) and e.ping_data == b"12345678" for e in client.events)
    # 4,000 rows: 128 KB of request body, more than the default windows; the server opens its own as it reads.
    big = client.call("ModelInfer", infer_message(4000))
    assert big.status == 0
    assert pb.ModelInferResponse.FromString(big.message()).outputs[0].shape[0] == 4000


def test_a_reset_stream_leaves_the_connection_serving(client: Client) -> None:
    sid = client.start("ModelInfer", framed(infer_message())[:10], end=False)
    client.conn.reset_stream(sid)
    client.flush()
    assert client.call("ModelInfer", infer_message()).status == 0
    # Trailers the client had sent on the reset stream before it knew (written by hand: h2 refuses to): ignored,
    # but their header block, which indexes a new field, is decoded; the next call's block refers to that entry.
    block = client.conn.encoder.encode([("x-late", "trailer")])
    client.sock.sendall(_frame(1, 0x5, sid, block))
    call = client.call("ModelInfer", infer_message(), headers=(("x-late", "trailer"),))
    assert call.status == 0 and not any(isinstance(e, h2.events.ConnectionTerminated) for e in client.events)


def test_many_calls_on_one_connection(client: Client) -> None:
    sids = [client.start("ModelInfer", framed(infer_message(1 + k % 3))) for k in range(64)]
    for k, sid in enumerate(sids):
        call = client.wait(sid)
        assert call.status == 0, call.trailers
        assert pb.ModelInferResponse.FromString(call.message()).outputs[0].shape[0] == 1 + k % 3


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_requests(client: Client, encoding: str) -> None:
    message = infer_message()
    packed = gzip.compress(message) if encoding == "gzip" else zlib.compress(message)
    call = client.wait(client.start("ModelInfer", framed(packed, compressed=True),
                                    headers=(("grpc-encoding", encoding),)))
    assert call.status == 0, call.trailers


CALL_ERRORS = {
    "unknown method": ("ModelTrain", framed(b""), (), 12, "unknown method"),
    "two messages": ("ModelInfer", framed(infer_message()) * 2, (), 13, "exactly one length-prefixed message"),
    "no message": ("ModelInfer", b"", (), 13, "exactly one length-prefixed message"),
    "unknown compression": ("ModelInfer", framed(b"abc", compressed=True), (("grpc-encoding", "snappy"),), 12,
                            "compressed with 'snappy'"),
    "corrupt gzip": ("ModelInfer", framed(b"not gzip", compressed=True), (("grpc-encoding", "gzip"),), 13,
                     "does not decompress"),
    "malformed protobuf": ("ModelInfer", framed(b"\xff\xff\xff"), (), 3, "malformed protobuf"),
}


@pytest.mark.parametrize("case", list(CALL_ERRORS))
def test_bad_calls_get_a_status_and_the_connection_stays(client: Client, case: str) -> None:
    method, body, headers, code, text = CALL_ERRORS[case]
    call = client.wait(client.start(method, body, headers=headers))
    assert call.headers[":status"] == "200" and call.status == code, call.headers
    assert text in call.headers["grpc-message"], call.headers
    assert client.call("ModelInfer", infer_message()).status == 0


def test_not_grpc_content_type_is_415(client: Client) -> None:
    sid = client.conn.get_next_available_stream_id()
    client.calls[sid] = Call()
    client.conn.send_headers(sid, [(":method", "POST"), (":scheme", "http"), (":path", SERVICE + "ModelInfer"),
                                   (":authority", "x"), ("content-type", "application/json")], end_stream=True)
    client.flush()
    assert client.wait(sid).headers[":status"] == "415"


def test_oversized_message_is_refused_while_it_arrives(start_server: StartServer, credit_risk_artifact: Path) -> None:
    server = start_server(credit_risk_artifact, "--grpc-port", "0", "--max-request-bytes", "1000")
    client = Client(server.grpc_port)
    try:
        # Over twice the limit (+1 MiB): refused by the transport before the body ends, the stream reset.
        sid = client.start("ModelInfer", framed(b"\x00" * (3 << 20))[:(2 << 20) + 10_000], end=False)
        call = client.wait(sid)
        assert call.status == 8 and "larger than" in call.headers["grpc-message"]
        assert client.call("ModelInfer", infer_message()).status == 0
    finally:
        client.close()


def _raw_session(port: int, payload: bytes) -> bytes:
    """Sends ``payload`` on a fresh connection, returns all the server sent until it closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(payload)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def _goaway_code(received: bytes) -> int | None:
    pos = 0
    while pos + 9 <= len(received):
        length, kind = int.from_bytes(received[pos:pos + 3], "big"), received[pos + 3]
        if kind == 7:
            return int.from_bytes(received[pos + 13:pos + 17], "big")
        pos += 9 + length
    return None


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000")  # and an empty SETTINGS


def _frame(kind: int, flags: int, sid: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes((kind, flags)) + sid.to_bytes(4, "big") + payload


VIOLATIONS = {
    "oversized frame": (PREFACE + _frame(0, 0, 1, b"x" * 20_000), 6),
    "DATA on a stream never opened": (PREFACE + _frame(0, 1, 1, b"x"), 1),
    "HEADERS on stream 0": (PREFACE + _frame(1, 5, 0, b"\x82"), 1),
    "even stream": (PREFACE + _frame(1, 5, 2, b"\x82"), 1),
    "undecodable header block": (PREFACE + _frame(1, 5, 1, b"\xff\xff\xff\xff"), 9),
    "interrupted header block": (PREFACE + _frame(1, 0, 1, b"\x83") + _frame(6, 0, 0, b"12345678"), 1),
    "bad PING": (PREFACE + _frame(6, 0, 0, b"123"), 6),
    "client push": (PREFACE + _frame(5, 4, 1, bytes(4)), 1),
}


@pytest.mark.parametrize("case", list(VIOLATIONS))
def test_protocol_violations_end_the_connection_with_goaway(credit_server: Server, case: str) -> None:
    payload, code = VIOLATIONS[case]
    assert _goaway_code(_raw_session(credit_server.grpc_port, payload)) == code


def test_http1_on_the_grpc_port_is_refused(credit_server: Server) -> None:
    received = _raw_session(credit_server.grpc_port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert _goaway_code(received) == 1
    assert credit_server.get("/v2/health/live").status == 200


def test_shutdown_sends_goaway_and_answers_calls_in_flight(start_server: StartServer,
                                                           credit_risk_artifact: Path) -> None:
    server = start_server(credit_risk_artifact, "--grpc-port", "0", "--shutdown-delay", "0")
    client = Client(server.grpc_port)
    try:
        assert client.call("ModelInfer", infer_message()).status == 0
        server.signal(signal.SIGTERM)
        while client.read():
            pass
        (goaway,) = [e for e in client.events if isinstance(e, h2.events.ConnectionTerminated)]
        assert goaway.error_code == 0 and goaway.last_stream_id == 1
    finally:
        client.close()
    assert server.wait(30) == 0

