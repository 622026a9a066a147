"""The gRPC front end of a :class:`~modelfleet.serve.dataplane.DataPlane`: ``inference.GRPCInferenceService``
(the Open Inference Protocol over gRPC, with Triton's ModelConfig and ModelStatistics) on grpcio's thread-pool
server, every call handed to the HTTP server's event loop.

Inference goes through the same ``DataPlane.infer`` as HTTP (admission, batching, metrics with
``protocol="grpc"``, payload spool), on the event loop. Handlers receive the raw message bytes so that a
malformed or oversized message is the server's own INVALID_ARGUMENT / RESOURCE_EXHAUSTED with a message,
counted like HTTP's 400 / 413.

Why not grpc.aio in the event loop: with it, a one-row ModelInfer at 32 calls in flight cost the server about
twice the CPU it costs this way (``bench/serving/grpc_ab.py``; docs/serving-benchmark.md, "Where gRPC's cost
goes"). A pool thread hands each call to the loop through :class:`Handoff`: it queues the call and wakes the
loop only when no wake-up is pending; the loop starts every queued call per wake-up (``ModelInfer`` as a
task, the other methods at once) and releases the thread with the answer. A call whose client has gone
(cancelled, deadline) still runs to its end on the loop; the answer is dropped.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
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
#: What a method does on the event loop with the message's bytes: its answer's bytes or the refusal, either at
#: once or (``ModelInfer``) from a coroutine the loop runs as a task.
Outcome = bytes | ProtocolError
Work = Callable[[bytes], Outcome | Coroutine[Any, Any, Outcome]]
#: Pool threads beyond the data plane's queue and batch (calls that wait for a thread do not reach its queue).
SPARE_THREADS = 16


def status_code(http_status: int) -> grpc.StatusCode:
    return CODES.get(http_status, grpc.StatusCode.UNKNOWN)


class _Slot:
    """One call handed to the loop: the pool thread waits on ``done`` (held until the outcome is in)."""

    __slots__ = ("done", "error", "outcome")

    def __init__(self) -> None:
        self.done = threading.Lock()
        self.done.acquire()
        self.outcome: Outcome = b""
        self.error: BaseException | None = None


class Handoff:
    """Runs calls from grpcio's pool threads on ``loop``, one wake-up of the loop for all calls queued meanwhile."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pending: deque[tuple[Work, bytes, _Slot]] = deque()
        self.scheduled = False  # a wake-up is pending: calls queued now are taken by it
        self.tasks: set[asyncio.Task[Outcome]] = set()
        self.closed = False  # the front end stopped: a call the loop will never run is refused

    def call(self, work: Work, data: bytes) -> Outcome:
        """In a pool thread: ``work(data)`` on the loop; its outcome."""
        slot = _Slot()
        self.pending.append((work, data, slot))
        if not self.scheduled:  # two threads may both wake the loop: the second wake-up finds nothing to do
            self.scheduled = True
            self.loop.call_soon_threadsafe(self._drain)
        while not slot.done.acquire(timeout=1.0):
            if self.closed and not self.loop.is_running():
                return ProtocolError(503, "the server shut down before the model answered")
        if slot.error is not None:
            raise slot.error
        return slot.outcome

    def _drain(self) -> None:
        """On the loop: start every queued call. The flag is cleared first, so a call queued after the last
        one taken here schedules another wake-up."""
        self.scheduled = False
        pending = self.pending
        while pending:
            work, data, slot = pending.popleft()
            try:
                outcome = work(data)
            except Exception as exc:  # a bug: the pool thread raises it (gRPC's UNKNOWN)
                slot.error = exc
                slot.done.release()
                continue
            if isinstance(outcome, (bytes, ProtocolError)):
                slot.outcome = outcome
                slot.done.release()
            else:
                task = self.loop.create_task(outcome)
                self.tasks.add(task)
                task.add_done_callback(functools.partial(self._finish, slot))

    def _finish(self, slot: _Slot, task: asyncio.Task[Outcome]) -> None:
        self.tasks.discard(task)
        if task.cancelled():
            slot.outcome = ProtocolError(499, "the call was cancelled")
        elif (error := task.exception()) is not None:
            slot.error = error
        else:
            slot.outcome = task.result()
        slot.done.release()

    async def cancel(self) -> None:
        """Cancel the calls still running on the loop (their RPCs are over), and wait for them."""
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)


class GrpcFrontEnd:
    """Serves ``plane`` over gRPC on ``host:port`` (0: a free port, see :attr:`port` after :meth:`start`)."""

    def __init__(self, plane: DataPlane, host: str, port: int) -> None:
        self.plane = plane
        self.host, self.port = host, port
        self._server: grpc.Server | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._handoff: Handoff | None = None

    async def start(self) -> None:
        settings = self.plane.settings
        limit = settings.max_request_bytes
        self._handoff = Handoff(asyncio.get_running_loop())
        # One thread per call in flight (each waits for the loop's answer; threads start as calls need them):
        # enough for the data plane's whole queue and a batch executing, so that a full queue still refuses.
        self._pool = ThreadPoolExecutor(max_workers=settings.max_queue_size + settings.runtime.max_batch +
                                        SPARE_THREADS, thread_name_prefix="grpc")
        # gRPC's own limit sits above ours, so that a message over ours reaches the handler and is refused
        # (and counted) with the same message as HTTP's 413; far beyond, gRPC refuses it by itself.
        server = grpc.server(self._pool, options=[("grpc.max_receive_message_length", 2 * limit + (1 << 20)),
                                                  ("grpc.max_send_message_length", -1),
                                                  ("grpc.so_reuseport", 0)])
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, {
            name: grpc.unary_unary_rpc_method_handler(self._handed_off(work))
            for name, work in self._handlers().items()})])
        address = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        self.port = server.add_insecure_port(address)
        server.start()
        self._server = server
        log.info("gRPC running on %s:%d (%s)", self.host, self.port, SERVICE)

    async def stop(self, grace: float | None = None) -> None:
        """Close the listener; RPCs in flight get ``grace`` seconds (the data plane has drained them by now),
        then are cancelled, as are their calls on the loop."""
        if self._server is None or self._handoff is None:
            return
        stopped = self._server.stop(grace or 0.0)  # never blocks: grpcio cancels what is left after the grace
        while not stopped.is_set():  # the loop keeps answering the calls meanwhile
            await asyncio.sleep(0.02)
        await self._handoff.cancel()
        self._handoff.closed = True
        if self._pool is not None:
            self._pool.shutdown(wait=False)

    def _handed_off(self, work: Work) -> Callable[[bytes, grpc.ServicerContext], bytes]:
        handoff = self._handoff
        assert handoff is not None

        def handle(data: bytes, context: grpc.ServicerContext) -> bytes:
            outcome = handoff.call(work, data)
            if isinstance(outcome, ProtocolError):
                context.abort(status_code(outcome.status), outcome.message)  # raises
            return outcome

        return handle

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
        def handle(data: bytes) -> Outcome:
            try:
                try:
                    request = request_type.FromString(data)
                except DecodeError as exc:
                    raise ProtocolError(400, f"malformed protobuf: not a {request_type.__name__} ({exc})") from None
                return answer(request).SerializeToString()
            except ProtocolError as refused:
                return refused

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

    async def _infer(self, data: bytes) -> Outcome:
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
            return refused
        return answer
