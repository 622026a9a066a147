"""One home for the integration tests' client loads: N threads sending until stopped, outcomes kept under a lock.

A load subclasses :class:`ClientThreads` and implements ``_run`` (one client: loop until ``stopping`` is set,
append to its own result lists under ``lock``); ``with load:`` starts the threads and stops and joins them.
"""

from __future__ import annotations

import threading
from typing import Self


class ClientThreads:
    """``threads`` client threads running ``_run``; ``join_timeout`` bounds the wait for each at the end."""

    join_timeout = 30.0

    def __init__(self, threads: int) -> None:
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(self.join_timeout)
