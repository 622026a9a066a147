"""The gRPC front end of a :class:`~modelfleet.serve.dataplane.DataPlane`: ``inference.GRPCInferenceService``
(the Open Inference Protocol over gRPC, with Triton's ModelConfig and ModelStatistics), served on the HTTP
server's event loop by :mod:`modelfleet.serve.grpcapi.h2`.

Inference goes through the same ``DataPlane.infer`` as HTTP (admission, batching, metrics with
``protocol="grpc"``, payload spool). Handlers receive the raw message bytes so that a malformed or oversized
message is the server's own INVALID_ARGUMENT / RESOURCE_EXHAUSTED with a message, counted like HTTP's 400 /
413. A call whose client has gone (reset, deadline) still runs to its end; the answer is dropped.

Why not grpcio's servers: grpc.aio in the event loop cost a one-row ModelInfer about 400 µs of CPU at 32
calls in flight, grpcio's thread-pool server handing calls to the loop about 200-400 µs (some 12 context
switches per call), the HTTP/2 transport in the loop a fraction of that (``bench/serving/grpc_floor.py``,
``grpc_ab.py``; docs/serving-benchmark.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from google.protobuf.json_format import ParseDict
from google.protobuf.message import DecodeError, Message

from modelfleet import __version__
from modelfleet.serve.dataplane import DataPlane, InferResponse
from modelfleet.serve.grpcapi import inference_pb2 as pb
from modelfleet.serve.grpcapi.h2 import UNIMPLEMENTED, Answer, GrpcConnection, Limits
from modelfleet.serve.grpcapi.tensors import decode_request, encode_response, parse_request
from modelfleet.serve.protocol import EXTENSIONS, InferRequest, ProtocolError
from modelfleet.serve.runtime import TensorInfo

log = logging.getLogger(__name__)

SERVICE = "inference.GRPCInferenceService"
#: The gRPC status code for each HTTP status the data plane refuses with.
CODES = {400: 3, 404: 5, 405: 12, 408: 4, 413: 8, 499: 1, 500: 13, 503: 14}  # INVALID_ARGUMENT ... UNAVAILABLE
#: What a method does with the message's bytes: its answer (message or status), at once or from a coroutine.
Work = Callable[[bytes], Answer | Coroutine[Any, Any, Answer]]
#: Calls open at once on one connection beyond the data plane's queue and batch (the data plane refuses more).
SPARE_STREAMS = 16


def refusal(error: ProtocolError) -> tuple[int, str]:
    """The gRPC status (code, message) of the data plane's refusal."""
    return CODES.get(error.status, 2), error.message  # 2: UNKNOWN


class GrpcFrontEnd:
    """Serves ``plane`` over gRPC on ``host:port`` (0: a free port, see :attr:`port` after :meth:`start`)."""

    def __init__(self, plane: DataPlane, host: str, port: int) -> None:
        self.plane = plane
        self.host, self.port = host, port
        self._server: asyncio.Server | None = None
        self._connections: set[GrpcConnection] = set()
        self._methods: dict[str, Work] = {}

    async def start(self) -> None:
        settings = self.plane.settings
        # Messages up to twice the data plane's limit reach it and are refused (and counted) with the same
        # message as HTTP's 413; beyond that the transport refuses them as they arrive.
        limits = Limits(max_message=2 * settings.max_request_bytes + (1 << 20),
                        max_streams=settings.max_queue_size + settings.runtime.max_batch + SPARE_STREAMS)
        self._methods = {f"/{SERVICE}/{name}": work for name, work in self._handlers().items()}

        def connection() -> GrpcConnection:
            made = GrpcConnection(self._dispatch, limits, self._connections.discard)
            self._connections.add(made)
            return made

        self._server = await asyncio.get_running_loop().create_server(connection, self.host, self.port,
                                                                      reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("gRPC running on %s:%d (%s)", self.host, self.port, SERVICE)

    async def stop(self, grace: float | None = None) -> None:
        """Close the listener and tell every connection to go away; calls in flight get ``grace`` seconds (the
        data plane has drained them by now), then are cancelled (CANCELLED) and the connections closed."""
        if self._server is None:
            return
        self._server.close()
        for connection in list(self._connections):
            connection.go_away()  # closes the connection once its calls are answered
        deadline = time.monotonic() + (grace or 0.0)
        # A peer that keeps an idle connection open (a router's pool) is not waited for: only calls are.
        while any(c.busy for c in self._connections) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for connection in list(self._connections):
            await connection.cancel()
            connection.close()

    def _dispatch(self, path: str, data: bytes) -> Answer | Coroutine[Any, Any, Answer]:
        work = self._methods.get(path)
        if work is None:
            return UNIMPLEMENTED, f"unknown method {path!r}: this server serves {SERVICE}"
        return work(data)

    def _handlers(self) -> dict[str, Work]:
        return {"ServerLive": self._unary(pb.ServerLiveRequest, lambda _r: pb.ServerLiveResponse(live=True)),
                "ServerReady": self._unary(pb.ServerReadyRequest,
                                           lambda _r: pb.ServerReadyResponse(ready=self.plane.ready)),
                "ServerMetadata": self._unary(pb.ServerMetadataRequest, lambda _r: pb.ServerMetadataResponse(
                    name="modelfleet", version=__version__, extensions=EXTENSIONS)),
                "ModelReady": self._unary(pb.ModelReadyRequest, self._model_ready),
                "ModelMetadata": self._unary(pb.ModelMetadataRequest, self._model_metadata),
                "ModelConfig": self._unary(pb.ModelConfigRequest, self._model_config),
                "ModelStatistics": self._unary(pb.ModelStatisticsRequest, self._model_statistics),
                "ModelInfer": self._infer}

    @staticmethod
    def _unary(request_type: type[Message], answer: Callable[[Any], Message]) -> Work:
        def handle(data: bytes) -> Answer:
            try:
                try:
                    request = request_type.FromString(data)
                except DecodeError as exc:
                    raise ProtocolError(400, f"malformed protobuf: not a {request_type.__name__} ({exc})") from None
                return answer(request).SerializeToString()
            except ProtocolError as refused:
                return refusal(refused)

        return handle

    # --- model endpoints -----------------------------------------------------------------------

    def _check_model(self, name: str, version: str) -> None:
        served, served_version = self.plane.model_name(), self.plane.model_version()
        if name != served:
            raise ProtocolError(404, f"unknown model {name!r}; this server serves {served!r}")
        if version and version != served_version:
            raise ProtocolError(404, f"model {name!r} has no version {version!r} here; this server serves "
                                     f"version {served_version!r}")

    def _model_ready(self, request: pb.ModelReadyRequest) -> pb.ModelReadyResponse:
        try:
            self._check_model(request.name, request.version)
        except ProtocolError:
            return pb.ModelReadyResponse(ready=False)  # as Triton: an unknown model is not ready
        return pb.ModelReadyResponse(ready=self.plane.ready)

    def _model_metadata(self, request: pb.ModelMetadataRequest) -> pb.ModelMetadataResponse:
        self._check_model(request.name, request.version)
        return ParseDict(self.plane.metadata(), pb.ModelMetadataResponse())

    def _model_config(self, request: pb.ModelConfigRequest) -> pb.ModelConfigResponse:
        self._check_model(request.name, request.version)
        return pb.ModelConfigResponse(config=ParseDict(self.plane.config(), pb.ModelConfig(),
                                                       ignore_unknown_fields=True))

    def _model_statistics(self, request: pb.ModelStatisticsRequest) -> pb.ModelStatisticsResponse:
        if request.name or request.version:
            self._check_model(request.name, request.version)
        return pb.ModelStatisticsResponse(model_stats=[ParseDict(self.plane.statistics(), pb.ModelStatistics())])

    # --- inference -----------------------------------------------------------------------------

    async def _infer(self, data: bytes) -> Answer:
        answer = b""

        async def decode(inputs: Sequence[TensorInfo], outputs: Sequence[TensorInfo],
                         max_batch: int | None) -> InferRequest:
            message = parse_request(data, self.plane.settings.max_request_bytes)
            self._check_model(message.model_name, message.model_version)
            return decode_request(message, inputs, outputs, max_batch)

        async def respond(response: InferResponse) -> None:
            nonlocal answer
            answer = encode_response(response.model, response.version, response.id, response.names,
                                     response.arrays, response.infos)

        try:
            await self.plane.infer(decode, respond, "grpc")
        except ProtocolError as refused:
            return refusal(refused)
        return answer
