"""The model server's data plane: one model version's lifecycle and inference path, whatever the transport.

The HTTP front end (:mod:`modelfleet.serve.app`) — and a gRPC front end or a serverless function
handler — call the same :class:`DataPlane`:

- ``startup()`` / ``begin_drain()`` / ``shutdown()``; ``ready``, ``not_ready_reason()``, ``in_flight``;
- ``metadata()`` and ``config()`` (Open Inference Protocol and Triton model configuration, as dicts);
- ``infer(decode, respond)``: admission (503 while not ready), request decoding by the transport,
  the dynamic batcher, the Triton-named metrics, the payload spool; the answer goes to ``respond``
  as an :class:`InferResponse` (the transport encodes it).

A request the data plane refuses is a :class:`~modelfleet.serve.protocol.ProtocolError` whose status
is an HTTP status (a gRPC front end maps it to a gRPC code); the transport answers with it.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry

from modelfleet.serve import defaults
from modelfleet.serve.batching import Batcher, BatchObserver
from modelfleet.serve.metrics import FAILURE_REASONS, ServerMetrics
from modelfleet.serve.protocol import InferRequest, ProtocolError
from modelfleet.serve.runtime import ModelRuntime, NotServableError, RuntimeOptions, TensorInfo
from modelfleet.spool.record import Tensor
from modelfleet.spool.writer import SpoolWriter

log = logging.getLogger(__name__)

RETRY = [(b"retry-after", b"1")]
#: Statuses of refused requests counted as ``invalid_request`` failures (the client's fault).
INVALID_REQUEST = frozenset({400, 408, 413})
#: What the model configuration says of requests with more rows than ``max_batch_size``.
OVERSIZED_BATCHES = ("split: a request with more rows than max_batch_size is run as chunks of max_batch_size "
                     "rows through the batching queue (all queued or none), bounded by max_request_bytes and by "
                     "max_batch_size x max_queue_size rows")
#: Turns the transport's request into an :class:`InferRequest` validated against the model's inputs and
#: outputs, given the max batch size (``None``: the model does not batch); raises ``ProtocolError``.
Decode = Callable[[Sequence[TensorInfo], Sequence[TensorInfo], "int | None"], Awaitable[InferRequest]]


@dataclass
class ServerSettings:
    artifact: Path
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)
    max_queue_delay_us: int = defaults.MAX_QUEUE_DELAY_US
    max_queue_size: int = defaults.MAX_QUEUE_SIZE
    inline_inference: bool = True
    max_request_bytes: int = defaults.MAX_REQUEST_BYTES
    body_timeout: float = defaults.BODY_TIMEOUT
    spool_dir: Path | None = None
    spool_sample_rate: float = defaults.SPOOL_SAMPLE_RATE
    spool_max_bytes: int = defaults.SPOOL_MAX_BYTES
    spool_segment_bytes: int = defaults.SPOOL_SEGMENT_BYTES
    #: Once ready, freeze the process's objects out of the garbage collector's reach (:func:`freeze_startup_objects`):
    #: for a server process of its own (``modelfleet serve``), not for one that shares its process.
    gc_freeze_when_ready: bool = False


@dataclass(frozen=True)
class InferResponse:
    """A successful inference: the requested outputs, in the requested order."""

    model: str
    version: str
    id: str
    names: list[str]
    arrays: list[npt.NDArray[Any]]
    infos: dict[str, TensorInfo]


class DataPlane:
    """Serves one model version; ready once its artifact verified, its session loaded and warmed."""

    def __init__(self, settings: ServerSettings, registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.runtime: ModelRuntime | None = None
        self.metrics: ServerMetrics | None = None
        self.batcher: Batcher | None = None
        self.spool: SpoolWriter | None = None
        self.state = "loading"
        self.reason = "loading the model"
        self.in_flight = 0
        self.incoming = 0  # inference requests accepted, not yet decoded and queued
        self.draining = False
        self.last_inference = 0.0  # Unix time of the last successful inference
        self._id_prefix = secrets.token_hex(4)
        self._id_counter = 0
        self._load_task: asyncio.Task[None] | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.state == "ready" and not self.draining

    def not_ready_reason(self) -> str:
        return "draining: the server is shutting down" if self.draining else self.reason

    async def startup(self) -> None:
        self._load_task = asyncio.get_running_loop().create_task(self._load())

    async def _load(self) -> None:
        started = time.perf_counter()
        try:
            runtime = await asyncio.to_thread(ModelRuntime, self.settings.artifact, self.settings.runtime)
            self.metrics = ServerMetrics(self.registry, runtime.name, runtime.version)
            self.state, self.reason = "warming", "warming up"
            sizes = await asyncio.to_thread(runtime.warm_up)
        except NotServableError as exc:
            self.state, self.reason = "failed", str(exc)
            log.error("model not servable: %s", exc)
            return
        if self.settings.spool_dir is not None:
            try:
                self.spool = SpoolWriter(self.settings.spool_dir, runtime.name, runtime.version,
                                         sample_rate=self.settings.spool_sample_rate,
                                         segment_bytes=self.settings.spool_segment_bytes,
                                         max_bytes=self.settings.spool_max_bytes).start()
            except (OSError, ValueError) as exc:  # unusable directory or settings: say so, never hang "warming"
                self.state, self.reason = "failed", f"payload spool {self.settings.spool_dir}: {exc}"
                log.error("model not servable: %s", self.reason)
                return
            self.metrics.watch_spool(self.spool)
        self.runtime = runtime
        self._start_batcher(runtime)
        self.metrics.set_info(runtime.provider, runtime.precision, runtime.manifest.build_key)
        if self.settings.gc_freeze_when_ready:
            freeze_startup_objects()
        self.state, self.reason = "ready", "ready"
        self.metrics.ready.set(0 if self.draining else 1)
        log.info("%s version %s ready on %s (%s) in %.2f s, warmed batch sizes %s", runtime.name, runtime.version,
                 runtime.provider, runtime.precision, time.perf_counter() - started, sizes)

    def _start_batcher(self, runtime: ModelRuntime) -> None:
        assert self.metrics is not None
        metrics = self.metrics
        max_batch = self.settings.runtime.max_batch if runtime.batchable else 1
        executor = None
        if not self.settings.inline_inference:
            from concurrent.futures import ThreadPoolExecutor

            executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="infer")
        self.batcher = Batcher(runtime.run, max_batch, self.settings.max_queue_delay_us / 1e6,
                               self.settings.max_queue_size, executor,
                               BatchObserver(on_batch=metrics.on_batch, on_queued=metrics.queue_duration.observe,
                                             on_depth=metrics.queue_depth.set),
                               incoming=lambda: self.incoming)
        self.batcher.start()

    def begin_drain(self) -> None:
        """Stop being ready (routers take us out); requests still in flight are answered."""
        self.draining = True
        if self.metrics is not None:
            self.metrics.ready.set(0)

    async def shutdown(self) -> None:
        self.begin_drain()
        if self._load_task is not None and not self._load_task.done():
            self._load_task.cancel()
        if self.batcher is not None:
            await self.batcher.stop()
        if self.spool is not None:
            await asyncio.to_thread(self.spool.close)

    # --- model metadata ------------------------------------------------------------------------

    def model_name(self) -> str:
        return self.runtime.name if self.runtime is not None else self.settings.artifact.parent.name

    def model_version(self) -> str:
        return self.runtime.version if self.runtime is not None else self.settings.artifact.name

    def _runtime_or_503(self) -> ModelRuntime:
        if self.runtime is None:
            raise ProtocolError(503, f"model not ready: {self.not_ready_reason()}", RETRY)
        return self.runtime

    def metadata(self) -> dict[str, Any]:
        """Open Inference Protocol model metadata (503 while the model is not loaded)."""
        runtime = self._runtime_or_503()
        return {"name": runtime.name, "versions": [runtime.version], "platform": "onnxruntime_onnx",
                "inputs": [{"name": t.name, "datatype": t.datatype.value, "shape": list(t.shape)}
                           for t in runtime.inputs],
                "outputs": [{"name": t.name, "datatype": t.datatype.value, "shape": list(t.shape)}
                            for t in runtime.outputs]}

    def config(self) -> dict[str, Any]:
        """Triton-style model configuration (what tritonclient's get_model_config returns)."""
        runtime = self._runtime_or_503()
        batch = self.settings.runtime.max_batch if runtime.batchable else 0

        def dims(shape: tuple[int, ...]) -> list[int]:
            return list(shape[1:] if batch else shape)

        return {"name": runtime.name, "platform": "onnxruntime_onnx", "backend": "onnxruntime",
                "version_policy": {"specific": {"versions": [runtime.version]}}, "max_batch_size": batch,
                "input": [{"name": t.name, "data_type": f"TYPE_{_triton_type(t.datatype.value)}",
                           "dims": dims(t.shape)} for t in runtime.inputs],
                "output": [{"name": t.name, "data_type": f"TYPE_{_triton_type(t.datatype.value)}",
                            "dims": dims(t.shape)} for t in runtime.outputs],
                "dynamic_batching": {"max_queue_delay_microseconds": self.settings.max_queue_delay_us,
                                     "default_queue_policy": {"max_queue_size": self.settings.max_queue_size}},
                "instance_group": [{"count": 1, "kind": "KIND_CPU" if runtime.provider == "cpu" else "KIND_GPU"}],
                "parameters": {"execution_provider": {"string_value": runtime.provider},
                               "precision": {"string_value": runtime.precision},
                               "max_request_bytes": {"string_value": str(self.settings.max_request_bytes)},
                               "oversized_batches": {"string_value": OVERSIZED_BATCHES if batch else "none"}}}

    def statistics(self) -> dict[str, Any]:
        """Triton-style model statistics (what tritonclient's get_inference_statistics reads), from the metrics."""
        runtime = self._runtime_or_503()
        labels = {"model": runtime.name, "version": runtime.version}

        def value(name: str, **extra: str) -> float:
            return self.registry.get_sample_value(name, {**labels, **extra}) or 0.0

        def duration(histogram: str) -> dict[str, int]:
            return {"count": int(value(f"{histogram}_count")), "ns": int(value(f"{histogram}_sum") * 1e9)}

        failed = sum(value("nv_inference_request_failure_total", reason=r) for r in FAILURE_REASONS)
        return {"name": runtime.name, "version": runtime.version,
                "last_inference": int(self.last_inference * 1000),
                "inference_count": int(value("nv_inference_count_total")),
                "execution_count": int(value("nv_inference_exec_count_total")),
                "inference_stats": {"success": duration("modelfleet_request_duration_seconds"),
                                    "fail": {"count": int(failed), "ns": 0},
                                    "queue": duration("modelfleet_queue_duration_seconds"),
                                    "compute_infer": duration("modelfleet_compute_infer_duration_seconds")}}

    # --- inference -----------------------------------------------------------------------------

    async def infer(self, decode: Decode, respond: Callable[[InferResponse], Awaitable[None]],
                    protocol: str = "http_json") -> None:
        """One inference: ``decode`` the request, batch and run it, ``respond``, then count and spool it.

        Raises :class:`ProtocolError` for a request refused or failed (not ready, invalid, queue full,
        inference error, cut short by shutdown); the transport answers with its status and message.
        ``protocol`` labels the request in ``modelfleet_inference_requests_total``.
        """
        started = time.perf_counter()
        metrics = self.metrics
        if not self.ready or self.runtime is None or self.batcher is None or metrics is None:
            if metrics is not None:
                metrics.failure["shutting_down"].inc()
                metrics.on_request(protocol, 503)
            raise ProtocolError(503, f"model not ready: {self.not_ready_reason()}", RETRY)
        runtime, batcher = self.runtime, self.batcher
        self.in_flight += 1
        metrics.in_flight.inc()
        self.incoming += 1
        try:
            try:
                request = await decode(runtime.inputs, runtime.outputs,
                                       batcher.max_batch if runtime.batchable else None)
            finally:
                self.incoming -= 1
            outputs = await self._run(request, batcher, metrics)
            response = self._response(runtime, request, outputs)
            await respond(response)
            metrics.success.inc()
            metrics.on_request(protocol, 200)
            self.last_inference = time.time()
            metrics.request_duration.observe(time.perf_counter() - started)
            if self.spool is not None:
                self.spool.offer(response.id, time.time(),
                                 {t.name: Tensor(t.datatype.value, request.inputs[t.name]) for t in runtime.inputs},
                                 {n: Tensor(runtime.output_infos[n].datatype.value, outputs[i])
                                  for i, n in enumerate(runtime.output_names)})
        except ProtocolError as exc:
            if exc.status in INVALID_REQUEST:
                metrics.failure["invalid_request"].inc()
            metrics.on_request(protocol, exc.status)
            raise
        finally:
            self.in_flight -= 1
            metrics.in_flight.dec()

    async def _run(self, request: InferRequest, batcher: Batcher, metrics: ServerMetrics) -> list[npt.NDArray[Any]]:
        """The request's outputs. A request with more rows than the max batch is split into chunks of the max
        batch that queue like any request (each an execution the warm-up and TensorRT profile cover); one that
        finds the batcher idle runs at once (:meth:`Batcher.infer`)."""
        chunks = [request] if request.rows <= batcher.max_batch else _chunks(request, batcher.max_batch)
        if len(chunks) > batcher.max_queue:
            raise ProtocolError(413, f"{request.rows} rows need {len(chunks)} batches of {batcher.max_batch}; the "
                                     f"queue holds {batcher.max_queue}: send at most "
                                     f"{batcher.max_batch * batcher.max_queue} rows per request")
        if len(chunks) > batcher.room:  # all of them or none: a request is never half queued
            metrics.failure["queue_full"].inc()
            raise ProtocolError(503, f"the request queue is full ({batcher.max_queue} requests waiting); "
                                     "retry later", RETRY)
        futures: list[asyncio.Future[list[npt.NDArray[Any]]]] = []
        try:
            if len(chunks) == 1:  # run at once when the batcher is idle, else queued
                return await batcher.infer(request)
            futures = [batcher.submit(chunk) for chunk in chunks]  # cannot fail: there is room, and no await between
            results = await asyncio.gather(*futures)
        except asyncio.CancelledError:
            # The drain timeout (or a forced exit) cut this request short: the transport answers it
            # rather than leave a bare 500; the task ends there, as its cancellation asked.
            metrics.failure["shutting_down"].inc()
            raise ProtocolError(503, "the server shut down before the model answered", RETRY) from None
        except Exception as exc:  # ORT failed on a request that passed validation: the model's fault
            for future in futures:
                future.cancel()  # the batcher skips what is left of this request
            metrics.failure["inference"].inc()
            log.warning("inference failed: %s", exc)
            raise ProtocolError(500, f"inference failed: {str(exc).strip()[:500]}") from None
        return [np.concatenate([result[k] for result in results]) for k in range(len(results[0]))]

    def _response(self, runtime: ModelRuntime, request: InferRequest,
                  outputs: list[npt.NDArray[Any]]) -> InferResponse:
        request_id = request.id
        if request_id is None:
            self._id_counter += 1
            request_id = f"{self._id_prefix}-{self._id_counter}"
        names, arrays = list(runtime.output_names), list(outputs)
        if request.outputs is not None:
            index = {n: i for i, n in enumerate(names)}
            names = list(request.outputs)
            arrays = [outputs[index[n]] for n in names]
        return InferResponse(runtime.name, runtime.version, request_id, names, arrays, runtime.output_infos)


def _chunks(request: InferRequest, size: int) -> list[InferRequest]:
    return [replace(request, inputs={name: array[start:start + size] for name, array in request.inputs.items()},
                    rows=min(size, request.rows - start)) for start in range(0, request.rows, size)]


def _triton_type(datatype: str) -> str:
    return {"BYTES": "STRING"}.get(datatype, datatype)


def freeze_startup_objects() -> None:
    """Collect the loading's garbage, then move every object alive now (modules, the session, protobuf
    descriptors: about 65,000 objects) out of the cyclic garbage collector's reach (``gc.freeze``).

    Serving allocates objects that live for the whole of a request (a few ms at 32 requests in flight), long
    enough to reach the oldest generation; the collector then runs a full collection about once a second, and
    each one walked every object of the process with the GIL held: 30 ms on the benchmark's machine, a pause
    for every request in flight (gRPC's p99 at 32 in flight: 31 ms with it, 14-15 ms frozen;
    docs/serving-benchmark.md). Frozen objects are still freed by reference counting; only cycles among them
    are never collected, which the objects of a loaded server do not form again.
    """
    gc.collect()
    gc.freeze()
