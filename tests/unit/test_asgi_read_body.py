"""``modelfleet.asgi.read_body``: limits, disconnects, and the body timeout kept by one sweep per event loop."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref
from collections.abc import MutableMapping
from typing import Any

import pytest

from modelfleet import asgi
from modelfleet.asgi import BodyError, read_body

LIMIT = 1000


def parts(*chunks: bytes, then_wait: bool = False) -> Any:
    """A receive() giving ``chunks`` (more_body on all but the last), then waiting forever if ``then_wait``."""
    queue = list(chunks)

    async def receive() -> MutableMapping[str, Any]:
        if not queue:
            await asyncio.Event().wait()
        chunk = queue.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(queue) or then_wait}

    return receive


def test_a_body_in_parts_is_joined() -> None:
    assert asyncio.run(read_body(parts(b"ab", b"cd", b"e"), [], LIMIT, 5.0)) == b"abcde"


def test_content_length_over_the_limit_is_413_before_reading() -> None:
    with pytest.raises(BodyError) as refused:
        asyncio.run(read_body(parts(then_wait=True), [(b"content-length", b"1001")], LIMIT, 5.0))
    assert refused.value.status == 413 and "1001 bytes" in refused.value.message


def test_a_body_growing_past_the_limit_is_413() -> None:
    with pytest.raises(BodyError) as refused:
        asyncio.run(read_body(parts(b"x" * 600, b"x" * 600), [], LIMIT, 5.0))
    assert refused.value.status == 413


def test_a_disconnect_is_499() -> None:
    async def receive() -> MutableMapping[str, Any]:
        return {"type": "http.disconnect"}

    with pytest.raises(BodyError) as refused:
        asyncio.run(read_body(receive, [], LIMIT, 5.0))
    assert refused.value.status == 499


def test_a_stalled_body_is_408_soon_after_its_timeout_and_others_are_untouched() -> None:
    async def scenario() -> tuple[BodyError | bytes, bytes, float]:
        started = time.monotonic()
        stalled = asyncio.create_task(read_body(parts(b"half", then_wait=True), [], LIMIT, 0.3))
        for _ in range(10):  # reads that complete while the stalled one waits
            assert await read_body(parts(b"whole"), [], LIMIT, 0.3) == b"whole"
        slow_but_in_time = await read_body(_later(0.2, b"late"), [], LIMIT, 0.5)
        try:
            outcome: BodyError | bytes = await stalled
        except BodyError as exc:
            outcome = exc
        return outcome, slow_but_in_time, time.monotonic() - started

    outcome, in_time, elapsed = asyncio.run(scenario())
    assert isinstance(outcome, BodyError) and outcome.status == 408, outcome
    assert "0.3 s" in outcome.message
    assert in_time == b"late"
    assert 0.3 <= elapsed < 0.3 + asgi.SWEEP_SECONDS + 0.3, elapsed
    assert all(not d.reads and not d.expired for d in asgi._DEADLINES.values()), "nothing left once reads end"


def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    async def scenario() -> None:
        task = asyncio.create_task(read_body(parts(then_wait=True), [], LIMIT, 5.0))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())


def test_a_drain_cancelling_a_read_that_also_timed_out_is_not_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sweep's cancellation and another one both pending: the other one wins (the task was asked to stop)."""
    tasks: list[asyncio.Task[bytes]] = []
    sweep = asgi._BodyDeadlines.sweep

    def sweep_then_cancel(self: asgi._BodyDeadlines, loop: asyncio.AbstractEventLoop) -> None:
        sweep(self, loop)
        if tasks and tasks[0] in self.expired:
            tasks[0].cancel()  # e.g. the server's drain timeout, before the task resumes

    monkeypatch.setattr(asgi._BodyDeadlines, "sweep", sweep_then_cancel)

    async def scenario() -> None:
        tasks.append(asyncio.create_task(read_body(parts(then_wait=True), [], LIMIT, 0.05)))
        with pytest.raises(asyncio.CancelledError):
            await tasks[0]

    asyncio.run(scenario())


def _later(delay: float, body: bytes) -> Any:
    async def receive() -> MutableMapping[str, Any]:
        await asyncio.sleep(delay)
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def test_a_closed_loop_is_not_kept() -> None:
    async def scenario() -> None:
        assert await read_body(parts(b"body"), [], LIMIT, 5.0) == b"body"

    runner = asyncio.Runner()
    runner.run(scenario())
    loop = weakref.ref(runner.get_loop())
    runner.close()
    del runner
    gc.collect()
    assert loop() is None, "the registry of deadlines keeps no closed loop alive"
