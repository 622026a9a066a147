"""Dynamic batching: requests queue up, one consumer runs them together, each gets exactly its own rows.

A batch is dispatched when it holds ``max_batch`` rows, when its oldest request has waited
``max_delay`` seconds, or as soon as no accepted request is still on its way to the queue
(``incoming() == 0``): waiting longer could only add latency, because under load requests pile
up while the previous batch executes anyway. Requests whose inner dimensions differ are never mixed (they go to the next
batch). The queue is bounded in requests: a full queue refuses new work (the server answers 503
with ``Retry-After``) instead of letting latency grow without limit. When a batch fails, each of
its requests is retried alone so that one malformed request cannot fail its neighbours.
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
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for job in self._pending:
            if not job.future.done():
                job.future.set_exception(RuntimeError("server shutting down"))
        self._pending.clear()

    def submit(self, request: InferRequest) -> asyncio.Future[Outputs]:
        if len(self._pending) >= self.max_queue:
            raise QueueFullError
        future: asyncio.Future[Outputs] = asyncio.get_running_loop().create_future()
        self._pending.append(_Job(request, future, time.perf_counter()))
        self._pending_rows += request.rows
        self._arrived.set()
        self.observer.on_depth(len(self._pending))
        return future

    async def _consume(self) -> None:
        while True:
            if not self._pending:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            deadline = self._pending[0].enqueued + self.max_delay
            while self._pending_rows < self.max_batch and self.incoming() > 0:
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
                await self._execute(batch)

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
