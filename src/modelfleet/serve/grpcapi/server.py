"""The gRPC front end of a :class:`~modelfleet.serve.dataplane.DataPlane`: ``inference.GRPCInferenceService``
(the Open Inference Protocol over gRPC, with Triton's ModelConfig and ModelStatistics) on a grpc.aio server
in the HTTP server's event loop.

Inference goes through the same ``DataPlane.infer`` as HTTP (admission, batching, metrics with
``protocol="grpc"``, payload spool). Handlers receive the raw message bytes so that a malformed or oversized
message is the server's own INVALID_ARGUMENT / RESOURCE_EXHAUSTED with a message, counted like HTTP's 400 / 413.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc
import grpc.aio
from google.protobuf.json_format import ParseDict
from google.protobuf.message import DecodeError, Message

from modelfleet import __version__
from modelfleet.serve.dataplane import DataPlane, InferResponse
from modelfleet.serve.grpcapi import inference_pb2 as pb
from modelfleet.serve.grpcapi.tensors import decode_request, encode_response, parse_request
from modelfleet.serve.protocol import EXTENSIONS, InferRequest, ProtocolError
from modelfleet.serve.runtime import TensorInfo

log = logging.getLogger(__name__)

SERVICE = "inference.GRPCInferenceService"
#: The gRPC code for each HTTP status the data plane refuses with.
CODES = {400: grpc.StatusCode.INVALID_ARGUMENT, 404: grpc.StatusCode.NOT_FOUND, 405: grpc.StatusCode.UNIMPLEMENTED,
         408: grpc.StatusCode.DEADLINE_EXCEEDED, 413: grpc.StatusCode.RESOURCE_EXHAUSTED,
         499: grpc.StatusCode.CANCELLED, 500: grpc.StatusCode.INTERNAL, 503: grpc.StatusCode.UNAVAILABLE}
Handler = Callable[[bytes, grpc.aio.ServicerContext[bytes, bytes]], Awaitable[bytes]]


def status_code(http_status: int) -> grpc.StatusCode:
    return CODES.get(http_status, grpc.StatusCode.UNKNOWN)


class GrpcFrontEnd:
    """Serves ``plane`` over gRPC on ``host:port`` (0: a free port, see :attr:`port` after :meth:`start`)."""

    def __init__(self, plane: DataPlane, host: str, port: int) -> None:
        self.plane = plane
        self.host, self.port = host, port
        self._server: grpc.aio.Server | None = None

    async def start(self) -> None:
        limit = self.plane.settings.max_request_bytes
        # gRPC's own limit sits above ours, so that a message over ours reaches the handler and is refused
        # (and counted) with the same message as HTTP's 413; far beyond, gRPC refuses it by itself.
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", 2 * limit + (1 << 20)),
                                          ("grpc.max_send_message_length", -1),
                                          ("grpc.so_reuseport", 0)])
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, {
            name: grpc.unary_unary_rpc_method_handler(handler) for name, handler in self._handlers().items()})])
        address = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        self.port = server.add_insecure_port(address)
        await server.start()
        self._server = server
        log.info("gRPC running on %s:%d (%s)", self.host, self.port, SERVICE)

    async def stop(self, grace: float | None = None) -> None:
        """Close the listener; RPCs in flight get ``grace`` seconds (the data plane has drained them by now)."""
        if self._server is not None:
            await self._server.stop(grace)

    def _handlers(self) -> dict[str, Handler]:
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
    def _unary(request_type: type[Message], answer: Callable[[Any], Message]) -> Handler:
        async def handle(data: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
            try:
                try:
                    request = request_type.FromString(data)
                except DecodeError as exc:
                    raise ProtocolError(400, f"malformed protobuf: not a {request_type.__name__} ({exc})") from None
                return answer(request).SerializeToString()
            except ProtocolError as refused:
                await context.abort(status_code(refused.status), refused.message)
                raise  # unreachable: abort raises

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

    async def _infer(self, data: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
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
            await context.abort(status_code(refused.status), refused.message)
        return answer
