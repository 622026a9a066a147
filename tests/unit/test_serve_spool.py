"""Payload spool writer and record format: non-blocking offers, drops counted, rotation, eviction."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from modelfleet.spool.record import RecordError, Tensor, decode, encode, segment_name, segment_sequence
from modelfleet.spool.writer import SpoolWriter

INPUTS = {"x": Tensor("FP32", np.array([[1.5, 2.0]], np.float32)), "s": Tensor("BYTES", np.array(["é"], object))}
OUTPUTS = {"label": Tensor("INT64", np.array([1]))}


def _lines(directory: Path) -> list[bytes]:
    return [line for p in sorted(directory.glob("*.jsonl")) for line in p.read_bytes().splitlines(keepends=True)]


def test_a_record_round_trips() -> None:
    line = encode("req-1", 1764043200.5, "m", "3", INPUTS, OUTPUTS)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    record = decode(line)
    assert (record.id, record.ts, record.model, record.version, record.rows) == ("req-1", 1764043200.5, "m", "3", 1)
    np.testing.assert_array_equal(record.inputs["x"], [[1.5, 2.0]])
    assert record.inputs["s"].tolist() == ["é"] and record.outputs["label"].tolist() == [1]


@pytest.mark.parametrize(("line", "reason"), [
    (b"{not json", "json"), (b"[1]", "schema"), (b'{"v": 2}', "version"),
    (b'{"v": 1, "ts": 1, "model": "m", "version": "1"}', "schema"),
    (b'{"v": 1, "id": "a", "ts": 1, "model": "m", "version": "1", "inputs": {}, "outputs": {}}', "schema"),
    (b'{"v": 1, "id": "a", "ts": 1, "model": "m", "version": "1", "inputs": {"x": {"shape": [3], "data": [1]}},'
     b' "outputs": {"y": {"shape": [1], "data": [1]}}}', "shape"),
])
def test_unusable_lines_say_why(line: bytes, reason: str) -> None:
    with pytest.raises(RecordError) as excinfo:
        decode(line)
    assert excinfo.value.reason == reason


def test_segment_names_sort_in_write_order() -> None:
    names = [segment_name(n) for n in (1, 2, 10, 123456789)]
    assert names == sorted(names) and [segment_sequence(n) for n in names] == [1, 2, 10, 123456789]
    assert segment_sequence("00000000000000000001.jsonl.tmp") is None


def test_offers_never_block_and_a_full_queue_drops_and_counts(tmp_path: Path) -> None:
    writer = SpoolWriter(tmp_path, "m", "1", queue_size=2)  # writer thread not started: nothing drains
    started = time.perf_counter()
    accepted = [writer.offer(f"r{k}", 0.0, INPUTS, OUTPUTS) for k in range(5)]
    assert time.perf_counter() - started < 0.5
    assert accepted == [True, True, False, False, False]
    assert writer.stats.dropped["queue_full"] == 3 and writer.stats.offered == 5 and writer.queued == 2


def test_written_records_survive_close(tmp_path: Path) -> None:
    writer = SpoolWriter(tmp_path, "m", "1").start()
    for k in range(20):
        assert writer.offer(f"r{k}", float(k), INPUTS, OUTPUTS)
    writer.close()
    assert [decode(line).id for line in _lines(tmp_path / "m" / "1")] == [f"r{k}" for k in range(20)]
    assert writer.stats.written == 20 and writer.stats.bytes_written == sum(
        p.stat().st_size for p in (tmp_path / "m" / "1").iterdir())


def test_rotation_and_eviction_keep_the_newest_within_the_bound(tmp_path: Path) -> None:
    size = len(encode("r00", 0.0, "m", "1", INPUTS, OUTPUTS))
    writer = SpoolWriter(tmp_path, "m", "1", segment_bytes=3 * size, max_bytes=9 * size).start()
    for k in range(30):
        writer.offer(f"r{k:02d}", 0.0, INPUTS, OUTPUTS)
    writer.close()
    directory = tmp_path / "m" / "1"
    sizes = [p.stat().st_size for p in sorted(directory.iterdir())]
    assert all(s <= 3 * size for s in sizes) and sum(sizes) <= 9 * size
    kept = [decode(line).id for line in _lines(directory)]
    assert kept == [f"r{k:02d}" for k in range(30 - len(kept), 30)]
    assert writer.stats.dropped["evicted"] == 30 - len(kept) > 0
    assert writer.stats.segments_evicted == 10 - len(sizes)


def test_a_restart_starts_a_fresh_segment_and_counts_evicted_records_it_did_not_write(tmp_path: Path) -> None:
    size = len(encode("r00", 0.0, "m", "1", INPUTS, OUTPUTS))
    first = SpoolWriter(tmp_path, "m", "1", segment_bytes=4 * size, max_bytes=100 * size).start()
    for k in range(8):
        first.offer(f"r{k:02d}", 0.0, INPUTS, OUTPUTS)
    first.close()
    directory = tmp_path / "m" / "1"
    # A crashed writer may leave a partial line at the end of its segment: never appended to.
    with sorted(directory.iterdir())[-1].open("ab") as handle:
        handle.write(b'{"v": 1, "id": "torn')
    before = sorted(p.name for p in directory.iterdir())
    second = SpoolWriter(tmp_path, "m", "1", segment_bytes=4 * size, max_bytes=4 * size).start()
    second.offer("new", 0.0, INPUTS, OUTPUTS)
    second.close()
    after = sorted(p.name for p in directory.iterdir())
    assert segment_sequence(after[-1]) == segment_sequence(before[-1]) + 1  # type: ignore[operator]
    assert after == [after[-1]]  # the bound left room for the new segment only
    assert second.stats.dropped["evicted"] == 8  # complete lines of the old segments, torn one not counted
    assert [decode(line).id for line in _lines(directory)] == ["new"]


def test_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sample_rate"):
        SpoolWriter(tmp_path, "m", "1", sample_rate=0)
    with pytest.raises(ValueError, match="segment_bytes"):
        SpoolWriter(tmp_path, "m", "1", segment_bytes=10, max_bytes=5)
