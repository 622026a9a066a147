"""Labels that arrive later: their JSON form (feedback endpoint and labels file) and the watched file.

One label is ``{"id": "req-42", "label": 1}``, optionally with ``"row": i`` for row ``i`` of a
multi-row request (see :mod:`modelfleet.drift.joiner` for the id scheme). ``label`` is a class of the
model's task (a number or a string) or, for regression, a number. The feedback endpoint takes one
label or ``{"labels": [...]}``; the labels file holds one label per line (JSON Lines).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from modelfleet.drift.joiner import label_key

MAX_ID_LENGTH = 512


class LabelError(ValueError):
    """A label (or feedback body) that is not valid; the message says what is wrong."""


@dataclass(frozen=True)
class Label:
    key: str
    value: int | float | str


def parse_label(item: Any, where: str = "label") -> Label:
    """Validate one label object."""
    if not isinstance(item, dict):
        raise LabelError(f"{where}: expected an object with id and label")
    unknown = sorted(set(item) - {"id", "label", "row", "model", "version", "timestamp"})
    if unknown:
        raise LabelError(f"{where}: unknown field(s) {unknown}")
    request_id = item.get("id")
    if not isinstance(request_id, str) or not request_id or len(request_id) > MAX_ID_LENGTH:
        raise LabelError(f"{where}.id: must be a non-empty string of at most {MAX_ID_LENGTH} characters")
    row = item.get("row")
    if row is not None and (not isinstance(row, int) or isinstance(row, bool) or row < 0):
        raise LabelError(f"{where}.row: must be a non-negative integer")
    if "label" not in item:
        raise LabelError(f"{where}.label: required")
    value = item["label"]
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise LabelError(f"{where}.label: must be a number or a string")
    if isinstance(value, float) and not math.isfinite(value):
        raise LabelError(f"{where}.label: must be finite")
    return Label(label_key(request_id, row), value)


def parse_feedback(body: bytes, max_labels: int) -> list[Label]:
    """The labels of a feedback request body: one label object or ``{"labels": [...]}``."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise LabelError(f"body is not valid JSON: {exc}") from None
    if isinstance(data, dict) and "labels" in data:
        if set(data) != {"labels"} or not isinstance(data["labels"], list):
            raise LabelError('a batch is {"labels": [...]} with nothing else')
        items = data["labels"]
        if len(items) > max_labels:
            raise LabelError(f"a batch holds at most {max_labels} labels, got {len(items)}")
        return [parse_label(item, f"labels[{i}]") for i, item in enumerate(items)]
    return [parse_label(data)]


class LabelFile:
    """Tails a JSON Lines file of labels; its position (inode, offset) goes into the checkpoint.

    A file that is replaced (new inode, e.g. after logrotate) or truncated is read from its start;
    a trailing line without its newline waits until it is complete.
    """

    def __init__(self, path: Path, state: dict[str, Any] | None = None, *, max_line_bytes: int = 1 << 20) -> None:
        self.path = path
        self.inode = int(state["inode"]) if state else 0
        self.offset = int(state["offset"]) if state else 0
        self.max_line_bytes = max_line_bytes

    def state_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "inode": self.inode, "offset": self.offset}

    def read(self, max_lines: int = 10_000) -> tuple[list[Label], int]:
        """New complete labels and the number of invalid lines among them."""
        try:
            with self.path.open("rb") as handle:
                stat = os.fstat(handle.fileno())
                if stat.st_ino != self.inode or stat.st_size < self.offset:
                    self.inode, self.offset = stat.st_ino, 0
                if stat.st_size == self.offset:
                    return [], 0
                handle.seek(self.offset)
                data = handle.read(self.max_line_bytes * 4)
        except FileNotFoundError:
            return [], 0
        end = data.rfind(b"\n")
        if end < 0:
            if len(data) > self.max_line_bytes:  # an endless line: skip what was read
                self.offset += len(data)
                return [], 1
            return [], 0
        lines = data[: end + 1].split(b"\n")[:-1][:max_lines]
        self.offset += sum(len(line) + 1 for line in lines)
        labels, invalid = [], 0
        for line in lines:
            if not line.strip():
                continue
            try:
                labels.append(parse_label(orjson.loads(line)))
            except (orjson.JSONDecodeError, LabelError):
                invalid += 1
        return labels, invalid
