"""Dynamic batching: requests queue up, one consumer runs them together, each gets exactly its own rows.

A batch is dispatched when it holds ``max_batch`` rows, when its oldest request has waited
``max_delay`` seconds, or as soon as no accepted request is still on its way to the queue
(``incoming() == 0``): waiting longer could only add latency, because under load requests pile
up while the previous batch executes anyway. Requests whose inner dimensions differ are never mixed (they go to the next
batch). The queue is bounded in requests: a full queue refuses new work (the server answers 503
with ``Retry-After``) instead of letting latency grow without limit. When a batch fails, each of
its requests is retried alone so that one malformed request cannot fail its neighbours.

Idle fast path (:meth:`Batcher.infer`): a request that finds the batcher idle — nothing queued, nothing
executing, no other accepted request on its way — would be dispatched alone at once by the rule above,
so it skips the queue and its consumer task: it runs at once. Inline (no executor), the model is called
right there, with no job or future (nothing can interleave: there is no await); on an executor, through
the same execution code as a batch (error isolation, settling). Both report to the same observer hooks.
Requests that arrive while it executes on an executor queue and go together in the next batch.

``stop()`` drains: new work is refused; what is queued is dispatched at once and every request whose
caller still waits is answered before it returns. A model call nobody waits for any more (its callers
were cancelled, e.g. by the server's drain timeout) is not waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from modelfleet.serve.protocol import InferRequest

Outputs = list[npt.NDArray[Any]]
RunFn = Callable[[dict[str, npt.NDArray[Any]]], Outputs]


class QueueFullError(Exception):
    """The batcher's queue is at its bound."""


@dataclass
class _Job:
    request: InferRequest
    future: asyncio.Future[Outputs]
    enqueued: float


@dataclass
class BatchObserver:
    """Hooks for metrics; each receives plain numbers."""

    on_batch: Callable[[int, float], None] = lambda rows, compute_seconds: None
    on_queued: Callable[[float], None] = lambda queue_seconds: None
    on_depth: Callable[[int], None] = lambda depth: None


@dataclass
class Batcher:
    run: RunFn
    max_batch: int
    max_delay: float
    max_queue: int
    executor: Executor | None = None  # None: run inline on the event loop
    observer: BatchObserver = field(default_factory=BatchObserver)
    incoming: Callable[[], int] = lambda: 1  # requests accepted but not yet submitted

    def __post_init__(self) -> None:
        self._pending: deque[_Job] = deque()
        self._pending_rows = 0
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._busy = False  # a batch or a lone request is executing
        self._closed = False  # stop() was called: no new work
        self._executing: list[_Job] = []  # the jobs of the execution in progress
        self._lone: asyncio.Task[None] | None = None  # a lone request executing on the executor

    @property
    def depth(self) -> int:
        return len(self._pending)

    @property
    def room(self) -> int:
        """Requests the queue takes before it is full."""
        return self.max_queue - len(self._pending)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._consume(), name="batcher")

    async def stop(self) -> None:
        """Refuse new work, answer every request whose caller still waits (the queue is dispatched without
        waiting for the delay), then end the consumer; with no consumer started, what is queued fails."""
        self._closed = True
        self._arrived.set()
        queued = self._pending if self._task is not None else ()
        waiting = {job.future for job in (*queued, *self._executing) if not job.future.done()}
        if waiting:
            await asyncio.wait(waiting)  # each is answered, or cancelled by its caller
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._lone is not None:
            self._lone.cancel()  # still running only if its caller is gone
        for job in self._pending:
            _settle(job.future, exception=RuntimeError("server shutting down"))
        self._pending.clear()

    def _idle(self) -> bool:
        """Whether a request arriving now would run at once, alone: nothing queued or executing, no other
        accepted request on its way."""
        return not (self._pending or self._busy or self._closed) and self.incoming() == 0

    async def infer(self, request: InferRequest) -> Outputs:
        """``request``'s outputs: run at once when the batcher is idle, else queued by :meth:`submit` (which
        refuses a request of more than ``max_batch`` rows). Raises what the model raised."""
        if request.rows > self.max_batch or not self._idle():
            return await self.submit(request)
        if self.executor is None:
            return self._run_inline(request, time.perf_counter())
        job = _Job(request, asyncio.get_running_loop().create_future(), time.perf_counter())
        self._busy, self._executing = True, [job]
        # A task, so that a cancelled caller leaves the batcher busy until the model call returns.
        self._lone = asyncio.get_running_loop().create_task(self._run_lone(job), name="batcher-lone")
        return await job.future

    def _run_inline(self, request: InferRequest, arrived: float) -> Outputs:
        """A lone request on the event loop: the model's call, timed as a batch of one (its queueing: the moment
        from ``arrived`` to the call); nothing interleaves (no await), so neither a job nor a future is needed.
        Raises what the model raised."""
        self._busy = True
        started = time.perf_counter()
        self.observer.on_queued(started - arrived)
        try:
            outputs = self.run(request.inputs)
        finally:
            self._busy = False  # no await above: nothing can have queued meanwhile, so nothing waits to be woken
        self.observer.on_batch(request.rows, time.perf_counter() - started)
        return outputs

    async def _run_lone(self, job: _Job) -> None:
        try:
            await self._execute([job])
        finally:
            self._busy, self._executing, self._lone = False, [], None
            if self._pending:
                self._arrived.set()  # what queued meanwhile goes next, together

    def submit(self, request: InferRequest) -> asyncio.Future[Outputs]:
        """Queue ``request``; its future gets its outputs. Raises :class:`QueueFullError` when the queue is full,
        ``ValueError`` for a request of more than ``max_batch`` rows (the caller splits those)."""
        if request.rows > self.max_batch:
            raise ValueError(f"{request.rows} rows exceed the max batch of {self.max_batch}")
        if len(self._pending) >= self.max_queue:
            raise QueueFullError
        future: asyncio.Future[Outputs] = asyncio.get_running_loop().create_future()
        if self._closed:
            future.set_exception(RuntimeError("server shutting down"))
            return future
        self._pending.append(_Job(request, future, time.perf_counter()))
        self._pending_rows += request.rows
        self._arrived.set()
        self.observer.on_depth(len(self._pending))
        return future

    async def _consume(self) -> None:
        while True:
            if not self._pending or self._busy:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            deadline = self._pending[0].enqueued + self.max_delay
            while self._pending_rows < self.max_batch and self.incoming() > 0 and not self._closed:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                self._arrived.clear()
                try:
                    async with asyncio.timeout(remaining):
                        await self._arrived.wait()
                except TimeoutError:
                    break
            batch = self._take()
            if batch:
                self._busy, self._executing = True, batch
                try:
                    await self._execute(batch)
                finally:
                    self._busy, self._executing = False, []

    def _take(self) -> list[_Job]:
        batch: list[_Job] = []
        rows = 0
        skipped: list[_Job] = []
        signature = self._pending[0].request.signature
        while self._pending and rows < self.max_batch:
            job = self._pending.popleft()
            if job.future.cancelled():
                self._pending_rows -= job.request.rows
                continue
            if job.request.signature != signature or rows + job.request.rows > self.max_batch:
                skipped.append(job)
                if rows + job.request.rows > self.max_batch:
                    break
                continue
            batch.append(job)
            rows += job.request.rows
            self._pending_rows -= job.request.rows
        self._pending.extendleft(reversed(skipped))
        self.observer.on_depth(len(self._pending))
        return batch

    async def _call(self, inputs: dict[str, npt.NDArray[Any]]) -> Outputs:
        if self.executor is None:
            return self.run(inputs)
        return await asyncio.get_running_loop().run_in_executor(self.executor, self.run, inputs)

    async def _execute(self, batch: list[_Job]) -> None:
        started = time.perf_counter()
        for job in batch:
            self.observer.on_queued(started - job.enqueued)
        if len(batch) == 1:
            inputs = batch[0].request.inputs
        else:
            names = batch[0].request.inputs.keys()
            inputs = {n: np.concatenate([job.request.inputs[n] for job in batch]) for n in names}
        try:
            outputs = await self._call(inputs)
        except Exception as exc:  # ORT raises its own types; isolate the culprit
            if len(batch) == 1:
                _settle(batch[0].future, exception=exc)
                return
            for job in batch:
                try:
                    _settle(job.future, result=await self._call(job.request.inputs))
                except Exception as single:
                    _settle(job.future, exception=single)
            return
        self.observer.on_batch(sum(j.request.rows for j in batch), time.perf_counter() - started)
        if len(batch) == 1:
            _settle(batch[0].future, result=outputs)
            return
        offset = 0
        for job in batch:
            rows = job.request.rows
            _settle(job.future, result=[out[offset:offset + rows] for out in outputs])
            offset += rows


def _settle(future: asyncio.Future[Outputs], *, result: Outputs | None = None,
            exception: BaseException | None = None) -> None:
    if future.done():
        return
    if exception is not None:
        future.set_exception(exception)
    else:
        future.set_result(result if result is not None else [])
