"""The spool reader: complete lines only, positions, rotation, deletion, truncation, oversized lines."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from modelfleet.spool.reader import Position, SpoolReader
from modelfleet.spool.record import Tensor, segment_name
from modelfleet.spool.writer import SpoolWriter


def _write(directory: Path, sequence: int, data: bytes) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / segment_name(sequence)
    with path.open("ab") as handle:
        handle.write(data)
    return path


def _lines(*values: int) -> bytes:
    return b"".join(b'{"n": %d}\n' % v for v in values)


def _numbers(lines: list[bytes]) -> list[int]:
    return [int(line.split(b":")[1].strip(b" }")) for line in lines]


def test_reads_complete_lines_only_and_waits_for_the_rest(tmp_path: Path) -> None:
    path = _write(tmp_path, 1, _lines(1, 2) + b'{"n": 3')
    reader = SpoolReader(tmp_path)
    batch = reader.read()
    assert _numbers(batch.lines) == [1, 2]
    assert reader.position == Position(1, len(_lines(1, 2)))
    assert reader.read().lines == []
    with path.open("ab") as handle:
        handle.write(b"}\n")
    assert _numbers(reader.read().lines) == [3]


def test_batches_are_bounded_and_a_saved_position_resumes_exactly(tmp_path: Path) -> None:
    _write(tmp_path, 1, _lines(*range(10)))
    reader = SpoolReader(tmp_path)
    assert _numbers(reader.read(max_records=4).lines) == [0, 1, 2, 3]
    resumed = SpoolReader(tmp_path, reader.position)
    assert _numbers(resumed.read().lines) == list(range(4, 10))


def test_rotation_continues_in_the_next_segment(tmp_path: Path) -> None:
    _write(tmp_path, 1, _lines(1, 2))
    reader = SpoolReader(tmp_path)
    assert _numbers(reader.read().lines) == [1, 2]
    _write(tmp_path, 1, _lines(3))  # appended just before the writer rotated
    _write(tmp_path, 2, _lines(4))
    _write(tmp_path, 3, _lines(5, 6))
    batch = reader.read()
    assert _numbers(batch.lines) == [3, 4, 5, 6]
    assert batch.segments_lost == 0 and not batch.malformed
    assert reader.position == Position(3, len(_lines(5, 6)))


def test_a_partial_line_left_in_a_complete_segment_is_malformed(tmp_path: Path) -> None:
    _write(tmp_path, 1, _lines(1) + b'{"n": 2, "trunc')  # the writer crashed mid-line
    _write(tmp_path, 2, _lines(3))
    batch = SpoolReader(tmp_path).read()
    assert _numbers(batch.lines) == [1, 3]
    assert batch.malformed == {"partial_line": 1}


def test_deleted_segments_are_skipped_and_counted(tmp_path: Path) -> None:
    for sequence in (1, 2, 3):
        _write(tmp_path, sequence, _lines(sequence))
    reader = SpoolReader(tmp_path, Position(1, 0))
    (tmp_path / segment_name(1)).unlink()
    (tmp_path / segment_name(2)).unlink()
    batch = reader.read()
    assert _numbers(batch.lines) == [3]
    assert batch.segments_lost == 2
    _write(tmp_path, 5, _lines(5))  # a gap in the sequence: segment 4 was evicted unseen
    batch = reader.read()
    assert _numbers(batch.lines) == [5] and batch.segments_lost == 1


def test_a_segment_deleted_while_open_is_still_read_to_its_end(tmp_path: Path) -> None:
    path = _write(tmp_path, 1, _lines(1, 2, 3))
    reader = SpoolReader(tmp_path)
    assert _numbers(reader.read(max_records=1).lines) == [1]
    path.unlink()
    _write(tmp_path, 2, _lines(4))
    batch = reader.read()
    assert _numbers(batch.lines) == [2, 3, 4] and batch.segments_lost == 0


def test_a_truncated_segment_is_read_again_from_its_start(tmp_path: Path) -> None:
    path = _write(tmp_path, 1, _lines(1, 2, 3))
    reader = SpoolReader(tmp_path)
    reader.read()
    path.write_bytes(_lines(7))
    batch = reader.read()
    assert _numbers(batch.lines) == [7] and batch.truncations == 1


def test_oversized_lines_are_skipped_without_buffering_them(tmp_path: Path) -> None:
    _write(tmp_path, 1, _lines(1) + b"x" * 5000 + b"\n" + b"y" * 1500 + b"\n" + _lines(2))
    reader = SpoolReader(tmp_path, chunk_bytes=1024, max_line_bytes=2048)
    batch = reader.read()
    assert batch.malformed == {"oversized": 1}
    assert [len(line) for line in batch.lines] == [len(_lines(1)) - 1, 1500, len(_lines(2)) - 1]


def test_an_empty_or_missing_directory_reads_nothing(tmp_path: Path) -> None:
    assert SpoolReader(tmp_path / "absent").read().lines == []
    assert SpoolReader(tmp_path).read().lines == []


def test_follows_the_real_writer_through_rotation_and_eviction(tmp_path: Path) -> None:
    writer = SpoolWriter(tmp_path, "m", "1", segment_bytes=2048, max_bytes=8192, flush_interval=0.01).start()
    reader = SpoolReader(tmp_path / "m" / "1")
    tensor = {"x": Tensor("FP32", np.zeros((1, 4), dtype=np.float32))}
    seen = 0
    for i in range(60):
        writer.offer(f"r{i}", time.time(), tensor, tensor)
        if i % 10 == 9:
            time.sleep(0.05)
            seen += len(reader.read().lines)
    writer.close()
    seen += len(reader.read(10_000).lines)
    assert writer.stats.segments_rotated > 3
    assert seen == writer.stats.written  # read as fast as written: nothing was evicted unread
    # A second reader that starts late finds the oldest segments evicted.
    late = SpoolReader(tmp_path / "m" / "1", Position(1, 0))
    batch = late.read(10_000)
    assert batch.segments_lost == writer.stats.segments_evicted
    assert len(batch.lines) == writer.stats.written - writer.stats.dropped["evicted"]
