"""Spool writer: sampled records appended by a background thread, rotated by size, bounded in total.

``offer()`` is what the request path calls: a sampling decision and a non-blocking enqueue, nothing
else. Encoding and disk I/O happen on the writer thread. When the queue is full the record is
dropped and counted; when the spool exceeds ``max_bytes`` the oldest complete segments are deleted
and their records counted as evicted. A disk error drops records (counted) and never reaches a
request.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from modelfleet.spool.record import Tensor, encode, segment_name, segment_sequence

log = logging.getLogger(__name__)
_STOP = object()


@dataclass
class SpoolStats:
    """Counters the server exports (``modelfleet_spool_*``)."""

    offered: int = 0
    sampled_out: int = 0
    written: int = 0
    bytes_written: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: {"queue_full": 0, "evicted": 0, "io_error": 0})
    segments_rotated: int = 0
    segments_evicted: int = 0


@dataclass(frozen=True)
class _Pending:
    request_id: str
    timestamp: float
    inputs: Mapping[str, Tensor]
    outputs: Mapping[str, Tensor]


class SpoolWriter:
    """Appends records of one model version under ``root/<model>/<version>/``."""

    def __init__(self, root: Path, model: str, version: str, *, sample_rate: float = 1.0,
                 segment_bytes: int = 16 << 20, max_bytes: int = 256 << 20, queue_size: int = 10_000,
                 flush_interval: float = 0.2) -> None:
        if not 0 < sample_rate <= 1:
            raise ValueError("sample_rate must be in (0, 1]")
        if segment_bytes <= 0 or max_bytes < segment_bytes:
            raise ValueError("need 0 < segment_bytes <= max_bytes")
        self.directory = root / model / version
        self.model, self.version = model, version
        self.sample_rate = sample_rate
        self.segment_bytes, self.max_bytes = segment_bytes, max_bytes
        self.flush_interval = flush_interval
        self.stats = SpoolStats()
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._random = random.Random()
        self._records_in: dict[int, int] = {}  # segment sequence -> records written there (this process)
        self._handle: IO[bytes] | None = None
        self._sequence = 0
        self._size = 0
        self._thread = threading.Thread(target=self._run, name=f"spool-{model}-{version}", daemon=True)

    def start(self) -> SpoolWriter:
        self.directory.mkdir(parents=True, exist_ok=True)
        existing = [s for s in (segment_sequence(p.name) for p in self.directory.iterdir()) if s is not None]
        # Always a fresh segment: a segment a crashed writer left may end in a partial line.
        self._sequence = max(existing, default=0) + 1
        self._thread.start()
        return self

    def offer(self, request_id: str, timestamp: float, inputs: Mapping[str, Tensor],
              outputs: Mapping[str, Tensor]) -> bool:
        """Queue a record if sampled; never blocks. Returns whether it was queued."""
        self.stats.offered += 1
        if self.sample_rate < 1 and self._random.random() >= self.sample_rate:
            self.stats.sampled_out += 1
            return False
        try:
            self._queue.put_nowait(_Pending(request_id, timestamp, inputs, outputs))
        except queue.Full:
            self.stats.dropped["queue_full"] += 1
            return False
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (bounded by ``timeout``) and stop the thread."""
        if not self._thread.is_alive():
            return
        with contextlib.suppress(queue.Full):
            self._queue.put(_STOP, timeout=timeout)
        self._thread.join(timeout)

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    # --- writer thread -------------------------------------------------------------------------

    def _run(self) -> None:
        last_flush = time.monotonic()
        while True:
            try:
                item = self._queue.get(timeout=self.flush_interval)
            except queue.Empty:
                item = None
            if item is _STOP:
                break
            if isinstance(item, _Pending):
                self._write(item)
            if self._handle is not None and (item is None or time.monotonic() - last_flush >= self.flush_interval):
                self._flush()
                last_flush = time.monotonic()
        self._flush()
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def _flush(self) -> None:
        if self._handle is None:
            return
        try:
            self._handle.flush()
        except OSError as exc:
            log.warning("spool flush failed: %s", exc)

    def _write(self, pending: _Pending) -> None:
        try:
            line = encode(pending.request_id, pending.timestamp, self.model, self.version, pending.inputs,
                          pending.outputs)
        except (TypeError, ValueError) as exc:
            log.warning("spool record not encodable: %s", exc)
            self.stats.dropped["io_error"] += 1
            return
        try:
            if self._handle is None or (self._size + len(line) > self.segment_bytes and self._size > 0):
                self._rotate()
            assert self._handle is not None
            self._handle.write(line)
        except OSError as exc:
            log.warning("spool write failed: %s", exc)
            self.stats.dropped["io_error"] += 1
            self._handle = None
            return
        self._size += len(line)
        self._records_in[self._sequence] = self._records_in.get(self._sequence, 0) + 1
        self.stats.written += 1
        self.stats.bytes_written += len(line)

    def _rotate(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._sequence += 1
            self.stats.segments_rotated += 1
        self.directory.mkdir(parents=True, exist_ok=True)
        self._handle = (self.directory / segment_name(self._sequence)).open("ab", buffering=1 << 16)
        self._size = 0
        self._evict()

    def _evict(self) -> None:
        """Delete the oldest complete segments until the spool fits in ``max_bytes``."""
        segments = sorted((s, p) for p in self.directory.iterdir() if (s := segment_sequence(p.name)) is not None)
        sizes = {s: p.stat().st_size for s, p in segments}
        total = sum(sizes.values())
        for sequence, path in segments:
            if total <= self.max_bytes - self.segment_bytes or sequence == self._sequence:
                break
            records = self._records_in.pop(sequence, None)
            if records is None:
                with path.open("rb") as handle:
                    records = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
            path.unlink(missing_ok=True)
            total -= sizes[sequence]
            self.stats.dropped["evicted"] += records
            self.stats.segments_evicted += 1
