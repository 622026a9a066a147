"""Spool reader: tails one model version's spool directory from a checkpointed position.

The position is ``(segment sequence, byte offset)``: everything before it has been handed out.
:meth:`SpoolReader.read` returns only complete lines (a line is complete once its ``\\n`` is on
disk) and advances the position past them, so a caller that saves the position together with what
it made of those lines can resume exactly there.

What the writer does, and how the reader follows:

- **rotation**: the writer closes segment ``s`` and opens ``s + 1``. Segment ``s`` is complete once
  a newer segment exists; the reader drains it to the end (again, to close the race with the last
  append), then moves on. Bytes after the last newline of a complete segment are a line a crashed
  writer left half-written: reported as malformed ``partial_line``.
- **eviction / deletion**: the reader keeps its current segment open, so a segment deleted while
  being read is still read to its end (POSIX keeps an unlinked open file). A segment that is gone
  before the reader opened it is skipped and counted in ``segments_lost``, as is every gap in the
  sequence numbers. How many records they held is not knowable here (the writer counts the records
  it evicted). After a restart the checkpointed segment may be gone although it had been read to
  its end: it is counted too, so ``segments_lost`` can overstate by one per restart.
- **truncation**: a segment shorter than the position (it never happens with the writer) is read
  again from its start and counted in ``truncations``.
- **oversized lines**: a line longer than ``max_line_bytes`` is skipped (malformed ``oversized``)
  instead of being buffered without bound.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from modelfleet.spool.record import segment_name, segment_sequence


@dataclass(frozen=True)
class Position:
    """Where reading resumes: ``segment`` 0 means before the first segment."""

    segment: int = 0
    offset: int = 0


@dataclass
class Batch:
    """What one :meth:`SpoolReader.read` call found."""

    lines: list[bytes] = field(default_factory=list)
    malformed: Counter[str] = field(default_factory=Counter)
    segments_lost: int = 0
    truncations: int = 0


class SpoolReader:
    """Reads complete lines of ``directory/<seq>.jsonl`` segments in sequence order."""

    def __init__(self, directory: Path, position: Position | None = None, *, chunk_bytes: int = 1 << 20,
                 max_line_bytes: int = 64 << 20) -> None:
        if chunk_bytes <= 0 or max_line_bytes < chunk_bytes:
            raise ValueError("need 0 < chunk_bytes <= max_line_bytes")
        self.directory = directory
        self.chunk_bytes = chunk_bytes
        self.max_line_bytes = max_line_bytes
        self._segment = position.segment if position else 0
        self._offset = position.offset if position else 0
        self._handle: IO[bytes] | None = None

    @property
    def position(self) -> Position:
        return Position(self._segment, self._offset)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def segments(self) -> list[int]:
        """Sequence numbers of the segments on disk, ascending (empty when the directory is gone)."""
        try:
            names = [p.name for p in self.directory.iterdir()]
        except OSError:
            return []
        return sorted(s for s in map(segment_sequence, names) if s is not None)

    def read(self, max_records: int = 1000) -> Batch:
        """Up to ``max_records`` complete lines from the position on; the position moves past them."""
        batch = Batch()
        while len(batch.lines) < max_records:
            if self._handle is None and not self._open(batch):
                break
            if self._read_lines(max_records - len(batch.lines), batch):
                continue
            following = [s for s in self.segments() if s > self._segment]
            if not following:
                break  # at the end of the segment being written
            # The writer has moved on: this segment is complete. Drain what was appended meanwhile.
            if self._read_lines(max_records - len(batch.lines), batch):
                continue
            if self._size() > self._offset:
                batch.malformed["partial_line"] += 1
            batch.segments_lost += following[0] - self._segment - 1
            self._advance(following[0])
        return batch

    # --- internals -------------------------------------------------------------------------------

    def _advance(self, segment: int) -> None:
        self.close()
        self._segment, self._offset = segment, 0

    def _open(self, batch: Batch) -> bool:
        """Open the current segment (or the first one that exists); False when there is none yet."""
        while True:
            existing = self.segments()
            if self._segment == 0:
                if not existing:
                    return False
                self._segment, self._offset = existing[0], 0
            try:
                self._handle = (self.directory / segment_name(self._segment)).open("rb")
            except FileNotFoundError:
                following = [s for s in existing if s > self._segment]
                if not following:
                    return False  # not written yet (or gone with nothing after it: wait for the next)
                batch.segments_lost += following[0] - self._segment
                self._segment, self._offset = following[0], 0
                continue
            if self._size() < self._offset:
                batch.truncations += 1
                self._offset = 0
            return True

    def _size(self) -> int:
        assert self._handle is not None
        return os.fstat(self._handle.fileno()).st_size

    def _read_lines(self, budget: int, batch: Batch) -> bool:
        """Append complete lines (at most ``budget``) from the current segment; True if anything moved."""
        handle = self._handle
        assert handle is not None
        size = self._size()
        if size < self._offset:
            batch.truncations += 1
            self._offset = 0
        if size == self._offset:
            return False
        handle.seek(self._offset)
        data = handle.read(self.chunk_bytes)
        end = data.rfind(b"\n")
        if end < 0:
            return self._long_line(data, batch)
        lines = data[: end + 1].split(b"\n")[:-1]
        if len(lines) > budget:
            lines = lines[:budget]
        self._offset += sum(len(line) + 1 for line in lines)
        batch.lines.extend(lines)
        return True

    def _long_line(self, head: bytes, batch: Batch) -> bool:
        """The position is at a line longer than one chunk: read it whole, skip it, or wait for it."""
        handle = self._handle
        assert handle is not None
        if len(head) < self.chunk_bytes:
            return False  # a partial line at the end: the writer is still writing it
        parts, length = [head], len(head)
        while True:
            chunk = handle.read(self.chunk_bytes)
            if not chunk:
                return False  # not complete yet
            newline = chunk.find(b"\n")
            if newline >= 0:
                length += newline
                if length <= self.max_line_bytes:
                    parts.append(chunk[:newline])
                    batch.lines.append(b"".join(parts))
                else:
                    batch.malformed["oversized"] += 1
                self._offset += length + 1
                return True
            length += len(chunk)
            if length <= self.max_line_bytes:
                parts.append(chunk)
            else:
                parts = []  # keep scanning for the end of the line without holding it
