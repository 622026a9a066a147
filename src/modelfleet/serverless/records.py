"""Request/response records of a function, as log lines, and back into a spool for the drift tools.

A function has no local disk that outlives it, so the data plane's sampled records go to its log
instead: each record is one line in the spool's record format (:mod:`modelfleet.spool.record`),
written by :class:`RecordLog` — the spool writer's interface (sampling, stats) without files or a
thread. CloudWatch Logs and Cloud Logging keep the lines; exported, they come back through
:func:`export_to_spool`, which finds the records in a log export and writes them as spool segments
(``<spool>/<model>/<version>/``) that ``modelfleet drift report`` and the drift exporter read.

Log exports recognised, line by line: the raw lines (``aws logs tail``, a Lambda emulator's output),
lines with a prefix before the JSON (CloudWatch's S3 export puts a timestamp first), JSON objects
whose ``message`` is the line (Lambda's JSON log format, ``aws logs filter-log-events`` events) or
whose ``jsonPayload`` is the record (``gcloud logging read --format=json`` entries, one per line),
and a JSON document holding a list of such events or entries.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import orjson

from modelfleet.spool.record import Record, RecordError, Tensor, decode, encode, segment_name
from modelfleet.spool.writer import SpoolWriter

#: CloudWatch Logs refuses events over 256 KiB; a larger record would be cut in two and lost.
MAX_RECORD_BYTES = 256 * 1024 - 1024


class RecordLog(SpoolWriter):
    """Writes each sampled record as one line on ``out`` (synchronously: a function may freeze after its answer)."""

    def __init__(self, out: TextIO, model: str, version: str, *, sample_rate: float = 1.0) -> None:
        super().__init__(Path("/nonexistent"), model, version, sample_rate=sample_rate)
        self.out = out
        self.stats.dropped.setdefault("oversized", 0)
        self._sampler = random.Random()

    def start(self) -> RecordLog:
        return self

    def offer(self, request_id: str, timestamp: float, inputs: Mapping[str, Tensor],
              outputs: Mapping[str, Tensor]) -> bool:
        self.stats.offered += 1
        if self.sample_rate < 1 and self._sampler.random() >= self.sample_rate:
            self.stats.sampled_out += 1
            return False
        line = encode(request_id, timestamp, self.model, self.version, inputs, outputs)
        if len(line) > MAX_RECORD_BYTES:
            self.stats.dropped["oversized"] += 1
            return False
        self.out.write(line.decode())
        self.out.flush()
        self.stats.written += 1
        self.stats.bytes_written += len(line)
        return True

    def close(self, timeout: float = 5.0) -> None:
        self.out.flush()

    @property
    def queued(self) -> int:
        return 0


@dataclass
class ExportResult:
    """What :func:`export_to_spool` found and wrote."""

    records: Counter[tuple[str, str]] = field(default_factory=Counter)  # (model, version) -> records written
    lines: int = 0
    other_lines: int = 0  # log lines that are not records (EMF, messages)
    malformed: Counter[str] = field(default_factory=Counter)  # record-like lines that do not decode, by reason
    segments: list[Path] = field(default_factory=list)


def _candidates(value: Any) -> Iterator[Any]:
    """The record candidates inside one parsed JSON value (an event, an entry, a list of them)."""
    if isinstance(value, list):
        for item in value:
            yield from _candidates(item)
    elif isinstance(value, dict):
        if "v" in value and "inputs" in value:
            yield value
        elif isinstance(value.get("jsonPayload"), dict):
            yield from _candidates(value["jsonPayload"])
        elif isinstance(value.get("message"), str | dict):
            yield from _candidates(value["message"] if isinstance(value["message"], dict)
                                   else _parse(value["message"]))
        elif isinstance(value.get("events"), list):
            yield from _candidates(value["events"])
        elif isinstance(value.get("entries"), list):
            yield from _candidates(value["entries"])


def _parse(text: str) -> Any:
    start = min((i for i in (text.find("{"), text.find("[")) if i >= 0), default=-1)
    if start < 0:
        return None
    try:
        return orjson.loads(text[start:])
    except orjson.JSONDecodeError:
        return None


def read_log_records(lines: Iterable[str | bytes], result: ExportResult | None = None) -> Iterator[Record]:
    """The spool records in log lines (see the module docstring for the formats); others are counted."""
    for record, _line in _records(lines, result if result is not None else ExportResult()):
        yield record


def _records(lines: Iterable[str | bytes], result: ExportResult) -> Iterator[tuple[Record, bytes]]:
    """Each record found, with its spool line."""
    for raw in lines:
        text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
        if not text.strip():
            continue
        result.lines += 1
        found = list(_candidates(_parse(text)))
        if not found:
            result.other_lines += 1
        for candidate in found:
            line = orjson.dumps(candidate, option=orjson.OPT_APPEND_NEWLINE)
            try:
                yield decode(line), line
            except RecordError as exc:
                result.malformed[exc.reason] += 1


def _read_lines(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        head = handle.read(1)
        handle.seek(0)
        if head == b"[":  # one JSON document (a list of events or entries)
            yield handle.read()
            return
        yield from handle


def export_to_spool(log_files: Iterable[Path], spool_root: Path) -> ExportResult:
    """Write the records found in ``log_files`` as new spool segments, one per model version found."""
    result = ExportResult()
    handles: dict[tuple[str, str], Any] = {}
    try:
        for path in log_files:
            for record, line in _records(_read_lines(path), result):
                key = (record.model, record.version)
                if key not in handles:
                    directory = spool_root / record.model / record.version
                    directory.mkdir(parents=True, exist_ok=True)
                    existing = [int(p.stem) for p in directory.glob("*.jsonl") if p.stem.isdigit()]
                    segment = directory / segment_name(max(existing, default=0) + 1)
                    handles[key] = segment.open("wb")
                    result.segments.append(segment)
                handles[key].write(line)
                result.records[key] += 1
    finally:
        for handle in handles.values():
            handle.close()
    return result
