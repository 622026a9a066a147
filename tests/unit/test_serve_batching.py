"""Dynamic batching with a fake model: each request gets exactly its rows, batches respect their bounds,
the queue is bounded, one bad request does not fail its neighbours."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import pytest

from modelfleet.serve.batching import Batcher, BatchObserver, QueueFullError
from modelfleet.serve.protocol import InferRequest

T = TypeVar("T")


class FakeModel:
    """``y = 2x``, ``s = row sums``; records the batches it ran and fails on NaN like a picky model."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, ...]] = []
        self.threads: set[str] = set()

    def __call__(self, inputs: dict[str, npt.NDArray[Any]]) -> list[npt.NDArray[Any]]:
        x = inputs["x"]
        self.batches.append(x.shape)
        self.threads.add(threading.current_thread().name)
        if np.isnan(x).any():
            raise ValueError("NaN in the input")
        return [x * 2, x.sum(axis=1)]


def _request(x: npt.NDArray[Any]) -> InferRequest:
    return InferRequest(None, {"x": x}, None, x.shape[0], (x.shape[1:],))


def _run(scenario: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(asyncio.wait_for(scenario(), 30))


def test_every_request_gets_exactly_its_own_rows() -> None:
    model = FakeModel()
    rng = np.random.default_rng(1)
    arrays = [rng.normal(size=(int(rng.integers(1, 6)), 4)) for _ in range(60)]

    async def scenario() -> list[list[npt.NDArray[Any]]]:
        batcher = Batcher(model, max_batch=16, max_delay=0.01, max_queue=100, incoming=lambda: 1)
        batcher.start()
        futures = []
        for array in arrays:
            futures.append(batcher.submit(_request(array)))
            if random.random() < 0.3:
                await asyncio.sleep(0)  # let some batches go while others are still arriving
        results = await asyncio.gather(*futures)
        await batcher.stop()
        return results

    results = _run(scenario)
    for array, (y, s) in zip(arrays, results, strict=True):
        np.testing.assert_array_equal(y, array * 2)
        np.testing.assert_array_equal(s, array.sum(axis=1))
    assert all(shape[0] <= 16 for shape in model.batches)
    assert sum(shape[0] for shape in model.batches) == sum(len(a) for a in arrays)
    assert len(model.batches) < len(arrays), "requests were never batched together"


def test_requests_with_different_inner_shapes_are_never_mixed() -> None:
    model = FakeModel()
    arrays = [np.full((1, 3 if k % 2 else 5), float(k)) for k in range(12)]

    async def scenario() -> list[list[npt.NDArray[Any]]]:
        batcher = Batcher(model, max_batch=8, max_delay=0.01, max_queue=100, incoming=lambda: 1)
        futures = [batcher.submit(_request(a)) for a in arrays]  # all queued before the consumer starts
        batcher.start()
        results = await asyncio.gather(*futures)
        await batcher.stop()
        return results

    results = _run(scenario)
    for array, (y, _) in zip(arrays, results, strict=True):
        np.testing.assert_array_equal(y, array * 2)
    assert sorted(model.batches) == [(6, 3), (6, 5)]


def test_a_batch_is_cut_at_max_batch_rows_without_splitting_a_request() -> None:
    model = FakeModel()

    async def scenario() -> None:
        batcher = Batcher(model, max_batch=8, max_delay=0.01, max_queue=100, incoming=lambda: 1)
        futures = [batcher.submit(_request(np.ones((rows, 2)))) for rows in (5, 2, 3, 8, 1)]
        batcher.start()
        await asyncio.gather(*futures)
        await batcher.stop()

    _run(scenario)
    assert [shape[0] for shape in model.batches] == [7, 3, 8, 1]


def test_the_oldest_request_waits_at_most_max_delay() -> None:
    async def scenario(incoming: int, max_delay: float) -> float:
        batcher = Batcher(FakeModel(), max_batch=64, max_delay=max_delay, max_queue=10, incoming=lambda: incoming)
        batcher.start()
        started = time.perf_counter()
        await batcher.submit(_request(np.ones((1, 2))))
        await batcher.stop()
        return time.perf_counter() - started

    # Someone is still on the way (incoming > 0): wait for them, up to the delay, not longer.
    waited = _run(lambda: scenario(1, 0.2))
    assert 0.18 <= waited < 1.0
    # Nobody else accepted: waiting could only add latency, so go at once, whatever the delay.
    assert _run(lambda: scenario(0, 10.0)) < 0.5


def test_a_full_batch_goes_without_waiting_for_the_delay() -> None:
    async def scenario() -> float:
        batcher = Batcher(FakeModel(), max_batch=4, max_delay=10.0, max_queue=10, incoming=lambda: 1)
        batcher.start()
        started = time.perf_counter()
        await asyncio.gather(*(batcher.submit(_request(np.ones((2, 2)))) for _ in range(2)))
        await batcher.stop()
        return time.perf_counter() - started

    assert _run(scenario) < 1.0


def test_the_queue_is_bounded() -> None:
    depths: list[int] = []

    async def scenario() -> None:
        batcher = Batcher(FakeModel(), max_batch=4, max_delay=0.01, max_queue=3,
                          observer=BatchObserver(on_depth=depths.append))
        for _ in range(3):
            batcher.submit(_request(np.ones((1, 2))))
        with pytest.raises(QueueFullError):
            batcher.submit(_request(np.ones((1, 2))))
        assert batcher.depth == 3
        batcher.start()
        await asyncio.sleep(0.05)
        assert batcher.depth == 0
        await asyncio.wait_for(batcher.submit(_request(np.ones((1, 2)))), 5)  # room again
        await batcher.stop()

    _run(scenario)
    assert depths[:3] == [1, 2, 3] and 0 in depths


def test_one_bad_request_does_not_fail_its_batch_neighbours() -> None:
    model = FakeModel()
    good, bad = np.ones((2, 3)), np.array([[1.0, np.nan, 3.0]])

    async def scenario() -> list[Any]:
        batcher = Batcher(model, max_batch=16, max_delay=0.01, max_queue=10, incoming=lambda: 1)
        futures = [batcher.submit(_request(a)) for a in (good, bad, good + 1)]
        batcher.start()
        results = await asyncio.gather(*futures, return_exceptions=True)
        await batcher.stop()
        return results

    first, failed, third = _run(scenario)
    np.testing.assert_array_equal(first[0], good * 2)
    np.testing.assert_array_equal(third[0], (good + 1) * 2)
    assert isinstance(failed, ValueError) and "NaN" in str(failed)
    assert [s[0] for s in model.batches] == [5, 2, 1, 2]  # the batch, then each request alone


def test_observer_sees_rows_queue_time_and_compute_time() -> None:
    seen: dict[str, list[float]] = {"rows": [], "compute": [], "queued": []}
    observer = BatchObserver(on_batch=lambda rows, s: (seen["rows"].append(rows), seen["compute"].append(s)),
                             on_queued=seen["queued"].append)

    async def scenario() -> None:
        batcher = Batcher(FakeModel(), max_batch=8, max_delay=0.01, max_queue=10, observer=observer,
                          incoming=lambda: 1)
        futures = [batcher.submit(_request(np.ones((r, 2)))) for r in (1, 2, 3)]
        batcher.start()
        await asyncio.gather(*futures)
        await batcher.stop()

    _run(scenario)
    assert seen["rows"] == [6] and len(seen["queued"]) == 3
    assert all(0 <= s < 5 for s in seen["compute"] + seen["queued"])


def test_stop_fails_what_is_still_queued() -> None:
    async def scenario() -> None:
        batcher = Batcher(FakeModel(), max_batch=4, max_delay=0.01, max_queue=10)
        future = batcher.submit(_request(np.ones((1, 2))))  # consumer never started
        await batcher.stop()
        with pytest.raises(RuntimeError, match="server shutting down"):
            await future

    _run(scenario)


def test_cancelled_requests_are_skipped() -> None:
    model = FakeModel()

    async def scenario() -> None:
        batcher = Batcher(model, max_batch=8, max_delay=0.01, max_queue=10)
        gone = batcher.submit(_request(np.ones((3, 2))))
        kept = batcher.submit(_request(np.ones((1, 2))))
        gone.cancel()  # its client went away
        batcher.start()
        await kept
        await batcher.stop()

    _run(scenario)
    assert model.batches == [(1, 2)]


def test_the_model_can_run_on_a_worker_thread() -> None:
    model = FakeModel()
    executor = ThreadPoolExecutor(1, thread_name_prefix="infer")

    async def scenario() -> list[list[npt.NDArray[Any]]]:
        batcher = Batcher(model, max_batch=8, max_delay=0.01, max_queue=10, executor=executor, incoming=lambda: 1)
        batcher.start()
        results = await asyncio.gather(*(batcher.submit(_request(np.full((2, 2), k))) for k in range(4)))
        await batcher.stop()
        return results

    results = _run(scenario)
    executor.shutdown()
    for k, (y, _) in enumerate(results):
        np.testing.assert_array_equal(y, np.full((2, 2), 2.0 * k))
    assert model.threads and all(name.startswith("infer") for name in model.threads)
