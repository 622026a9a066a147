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


# --- the idle fast path (Batcher.infer) and the drain (Batcher.stop) ---------------------------------------


class GatedModel(FakeModel):
    """A :class:`FakeModel` whose calls block until ``gate`` opens; ``entered`` is set when a call starts."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.entered = threading.Event()

    def __call__(self, inputs: dict[str, npt.NDArray[Any]]) -> list[npt.NDArray[Any]]:
        self.entered.set()
        assert self.gate.wait(30), "the test never opened the gate"
        return super().__call__(inputs)


class Seen:
    """What the batcher's observer reported."""

    def __init__(self) -> None:
        self.rows: list[int] = []
        self.queued: list[float] = []
        self.depths: list[int] = []

    def observer(self) -> BatchObserver:
        return BatchObserver(on_batch=lambda rows, _seconds: self.rows.append(rows), on_queued=self.queued.append,
                             on_depth=self.depths.append)


@pytest.mark.parametrize("threaded", [False, True], ids=["inline", "executor"])
def test_a_lone_request_runs_at_once_without_the_queue(threaded: bool) -> None:
    model, seen = FakeModel(), Seen()
    executor = ThreadPoolExecutor(1, thread_name_prefix="infer") if threaded else None

    async def scenario() -> list[npt.NDArray[Any]]:
        batcher = Batcher(model, max_batch=8, max_delay=10.0, max_queue=4, executor=executor,
                          observer=seen.observer(), incoming=lambda: 0)
        # No consumer started: a request that went through the queue would never be answered.
        outputs = await batcher.infer(_request(np.full((3, 2), 5.0)))
        await batcher.stop()
        return outputs

    y, s = _run(scenario)
    np.testing.assert_array_equal(y, np.full((3, 2), 10.0))
    np.testing.assert_array_equal(s, [10.0, 10.0, 10.0])
    assert seen.depths == [], "the queue held the request"
    assert seen.rows == [3] and len(seen.queued) == 1  # the same metrics as a batch of one
    assert model.batches == [(3, 2)]
    if executor is not None:
        executor.shutdown()
        assert model.threads and all(name.startswith("infer") for name in model.threads)


def test_a_request_with_others_on_their_way_is_queued() -> None:
    model, seen = FakeModel(), Seen()

    async def scenario() -> None:
        batcher = Batcher(model, max_batch=8, max_delay=0.01, max_queue=4, observer=seen.observer(),
                          incoming=lambda: 1)
        batcher.start()
        await batcher.infer(_request(np.ones((1, 2))))
        with pytest.raises(ValueError, match="exceed the max batch"):  # the caller splits those
            await batcher.infer(_request(np.ones((9, 2))))
        await batcher.stop()

    _run(scenario)
    assert seen.depths == [1, 0] and seen.rows == [1] and model.batches == [(1, 2)]


def test_requests_arriving_while_a_lone_request_executes_are_batched_together() -> None:
    model, seen = GatedModel(), Seen()
    executor = ThreadPoolExecutor(1, thread_name_prefix="infer")
    arrays = [np.full((rows, 2), float(k)) for k, rows in enumerate((1, 1, 2, 1))]

    async def scenario() -> list[list[npt.NDArray[Any]]]:
        batcher = Batcher(model, max_batch=8, max_delay=10.0, max_queue=8, executor=executor,
                          observer=seen.observer(), incoming=lambda: 0)
        batcher.start()
        lone = asyncio.create_task(batcher.infer(_request(arrays[0])))
        assert await asyncio.to_thread(model.entered.wait, 10)
        others = [asyncio.create_task(batcher.infer(_request(arrays[1])))]
        await asyncio.sleep(0.01)  # the consumer had time to run: it waits for the execution in progress
        others += [asyncio.create_task(batcher.infer(_request(a))) for a in arrays[2:]]
        await asyncio.sleep(0)  # each has run to its await: queued behind the lone request
        assert batcher.depth == 3
        model.gate.set()
        results = await asyncio.gather(lone, *others)
        await batcher.stop()
        return results

    results = _run(scenario)
    executor.shutdown()
    for array, (y, s) in zip(arrays, results, strict=True):
        np.testing.assert_array_equal(y, array * 2)
        np.testing.assert_array_equal(s, array.sum(axis=1))
    assert model.batches == [(1, 2), (4, 2)]
    assert seen.rows == [1, 4] and seen.depths == [1, 2, 3, 0]


def test_concurrent_requests_each_get_exactly_their_own_rows_on_either_path(
        monkeypatch: pytest.MonkeyPatch) -> None:
    model, seen = FakeModel(), Seen()
    executor = ThreadPoolExecutor(1, thread_name_prefix="infer")
    rng = np.random.default_rng(7)
    arrays = [rng.normal(size=(int(rng.integers(1, 5)), 3)) for _ in range(80)]
    on_the_way = [0]

    async def one(array: npt.NDArray[Any]) -> list[npt.NDArray[Any]]:
        on_the_way[0] += 1
        await asyncio.sleep(0 if rng.random() < 0.5 else 0.001)  # the body is read
        on_the_way[0] -= 1
        return await batcher.infer(_request(array))

    async def scenario() -> list[list[npt.NDArray[Any]]]:
        batcher.start()
        tasks = []
        for array in arrays:
            tasks.append(asyncio.create_task(one(array)))
            if rng.random() < 0.3:
                await asyncio.sleep(0.002 if rng.random() < 0.3 else 0)
        results = await asyncio.gather(*tasks)
        await batcher.stop()
        return results

    batcher = Batcher(model, max_batch=8, max_delay=0.005, max_queue=100, executor=executor,
                      observer=seen.observer(), incoming=lambda: on_the_way[0])
    queued: list[InferRequest] = []
    submit = batcher.submit
    monkeypatch.setattr(batcher, "submit", lambda request: (queued.append(request), submit(request))[1])
    results = _run(scenario)
    executor.shutdown()
    for array, (y, s) in zip(arrays, results, strict=True):
        np.testing.assert_array_equal(y, array * 2)
        np.testing.assert_array_equal(s, array.sum(axis=1))
    assert sum(seen.rows) == sum(len(a) for a in arrays) and len(seen.queued) == len(arrays)
    assert len(model.batches) < len(arrays), "requests were never batched together"
    assert 0 < len(queued) < len(arrays), "only one of the two paths was taken"


@pytest.mark.parametrize("on_the_way", [0, 1], ids=["lone", "queued"])
def test_a_failing_request_is_settled_alike_on_both_paths(on_the_way: int) -> None:
    model, seen = FakeModel(), Seen()

    async def scenario() -> None:
        batcher = Batcher(model, max_batch=8, max_delay=0.001, max_queue=4, observer=seen.observer(),
                          incoming=lambda: on_the_way)
        batcher.start()
        with pytest.raises(ValueError, match="NaN in the input"):
            await batcher.infer(_request(np.array([[1.0, np.nan]])))
        y, _ = await batcher.infer(_request(np.ones((2, 2))))  # the batcher is not left busy
        np.testing.assert_array_equal(y, np.full((2, 2), 2.0))
        await batcher.stop()

    _run(scenario)
    assert seen.rows == [2] and len(seen.queued) == 2  # a failed execution is not counted as a batch
    assert seen.depths == ([] if on_the_way == 0 else [1, 0, 1, 0])


@pytest.mark.parametrize("on_the_way", [0, 1], ids=["lone", "queued"])
def test_a_cancelled_caller_is_settled_alike_on_both_paths(on_the_way: int) -> None:
    model, seen = GatedModel(), Seen()
    executor = ThreadPoolExecutor(1, thread_name_prefix="infer")

    async def scenario() -> list[npt.NDArray[Any]]:
        batcher = Batcher(model, max_batch=8, max_delay=0.001, max_queue=4, executor=executor,
                          observer=seen.observer(), incoming=lambda: on_the_way)
        batcher.start()
        gone = asyncio.create_task(batcher.infer(_request(np.ones((1, 2)))))
        assert await asyncio.to_thread(model.entered.wait, 10)
        gone.cancel()  # its client went away while the model ran its request
        with pytest.raises(asyncio.CancelledError):
            await gone
        kept = asyncio.create_task(batcher.infer(_request(np.full((2, 2), 3.0))))
        await asyncio.sleep(0)
        assert batcher.depth == 1, "a request ran beside the execution still in progress"
        model.gate.set()
        outputs = await kept
        await batcher.stop()
        return outputs

    y, _ = _run(scenario)
    executor.shutdown()
    np.testing.assert_array_equal(y, np.full((2, 2), 6.0))
    assert model.batches == [(1, 2), (2, 2)] and seen.rows == [1, 2]


def test_stop_answers_the_lone_request_and_the_queue_then_refuses_new_work() -> None:
    model = GatedModel()
    executor = ThreadPoolExecutor(1, thread_name_prefix="infer")
    on_the_way = [0]
    arrays = [np.full((1, 2), 1.0), np.full((2, 2), 2.0), np.full((1, 2), 3.0)]

    async def scenario() -> list[list[npt.NDArray[Any]]]:
        batcher = Batcher(model, max_batch=8, max_delay=60.0, max_queue=8, executor=executor,
                          incoming=lambda: on_the_way[0])
        batcher.start()
        lone = asyncio.create_task(batcher.infer(_request(arrays[0])))
        assert await asyncio.to_thread(model.entered.wait, 10)
        on_the_way[0] = 1  # someone is always on the way: only the drain dispatches the queue before 60 s
        queued = [asyncio.create_task(batcher.infer(_request(a))) for a in arrays[1:]]
        await asyncio.sleep(0)
        stopping = asyncio.create_task(batcher.stop())
        await asyncio.sleep(0.01)
        assert not stopping.done(), "stop() returned while requests were still waiting"
        with pytest.raises(RuntimeError, match="server shutting down"):
            await batcher.infer(_request(np.ones((1, 2))))
        model.gate.set()
        results = await asyncio.gather(lone, *queued)
        await stopping
        return results

    results = _run(scenario)
    executor.shutdown()
    for array, (y, _) in zip(arrays, results, strict=True):
        np.testing.assert_array_equal(y, array * 2)
    assert model.batches == [(1, 2), (3, 2)]


@pytest.mark.parametrize("on_the_way", [0, 1], ids=["lone", "queued"])
def test_stop_does_not_wait_for_a_model_call_nobody_waits_for(on_the_way: int) -> None:
    model = GatedModel()
    executor = ThreadPoolExecutor(1, thread_name_prefix="infer")

    async def scenario() -> None:
        batcher = Batcher(model, max_batch=8, max_delay=0.001, max_queue=4, executor=executor,
                          incoming=lambda: on_the_way)
        batcher.start()
        gone = asyncio.create_task(batcher.infer(_request(np.ones((1, 2)))))
        assert await asyncio.to_thread(model.entered.wait, 10)
        gone.cancel()  # the server's drain timeout cut it short
        with pytest.raises(asyncio.CancelledError):
            await gone
        await asyncio.wait_for(batcher.stop(), 10)
        assert not model.gate.is_set() and model.batches == [], "the model call was not still running"

    try:
        _run(scenario)
    finally:
        model.gate.set()
        executor.shutdown()
