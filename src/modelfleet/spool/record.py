"""Spool record format (version 1): one JSON object per line.

```
{"v": 1, "id": "req-42", "ts": 1764043200.123, "model": "credit-risk", "version": "3",
 "inputs":  {"x": {"datatype": "FP32", "shape": [2, 8], "data": [[...], [...]]}},
 "outputs": {"label": {"datatype": "INT64", "shape": [2], "data": [0, 1]},
             "probabilities": {"datatype": "FP32", "shape": [2, 2], "data": [[...], [...]]}}}
```

``id`` is the inference request id (the client's, or one the server generated and returned), which
labels arriving later are joined on; a request with several rows has row ``i`` under ``id`` and
``i``. ``ts`` is the Unix time the response was produced. ``data`` is nested like ``shape``;
``BYTES`` tensors are lists of UTF-8 strings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

FORMAT_VERSION = 1
SEGMENT_PATTERN = re.compile(r"^(\d{20})\.jsonl$")


def segment_name(sequence: int) -> str:
    return f"{sequence:020d}.jsonl"


def segment_sequence(name: str) -> int | None:
    match = SEGMENT_PATTERN.match(name)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class Tensor:
    datatype: str
    array: npt.NDArray[Any]


def _tensor_json(tensor: Tensor) -> dict[str, Any]:
    array = tensor.array
    data: Any = array.astype(str).tolist() if array.dtype.kind in "OSU" else array
    return {"datatype": tensor.datatype, "shape": list(array.shape), "data": data}


def encode(request_id: str, timestamp: float, model: str, version: str, inputs: Mapping[str, Tensor],
           outputs: Mapping[str, Tensor]) -> bytes:
    """One spool line (with its trailing newline)."""
    record = {
        "v": FORMAT_VERSION, "id": request_id, "ts": timestamp, "model": model, "version": version,
        "inputs": {name: _tensor_json(t) for name, t in inputs.items()},
        "outputs": {name: _tensor_json(t) for name, t in outputs.items()},
    }
    return orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE)


class RecordError(ValueError):
    """A spool line that is not a valid record; ``reason`` is a short label for metrics."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}")


@dataclass(frozen=True)
class Record:
    id: str
    ts: float
    model: str
    version: str
    inputs: dict[str, npt.NDArray[Any]]
    outputs: dict[str, npt.NDArray[Any]]

    @property
    def rows(self) -> int:
        first = next(iter(self.inputs.values()), None)
        return int(first.shape[0]) if first is not None and first.ndim else 1


def _tensors(value: Any, field: str) -> dict[str, npt.NDArray[Any]]:
    if not isinstance(value, dict) or not value:
        raise RecordError("schema", f"{field} must be a non-empty object")
    tensors = {}
    for name, tensor in value.items():
        if not isinstance(tensor, dict) or "data" not in tensor or "shape" not in tensor:
            raise RecordError("schema", f"{field}.{name} needs shape and data")
        kind = str(tensor.get("datatype", ""))
        try:
            array = np.asarray(tensor["data"], dtype=object if kind == "BYTES" else None)
            array = array.reshape(tensor["shape"])
        except (ValueError, TypeError) as exc:
            raise RecordError("shape", f"{field}.{name}: {exc}") from None
        tensors[name] = array
    return tensors


def decode(line: bytes) -> Record:
    """Parse one spool line; :class:`RecordError` says why a line is unusable."""
    try:
        raw = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise RecordError("json", str(exc)) from None
    if not isinstance(raw, dict):
        raise RecordError("schema", "a record is a JSON object")
    if raw.get("v") != FORMAT_VERSION:
        raise RecordError("version", f"format {raw.get('v')!r}, expected {FORMAT_VERSION}")
    try:
        request_id, timestamp = str(raw["id"]), float(raw["ts"])
        model, version = str(raw["model"]), str(raw["version"])
    except (KeyError, TypeError, ValueError) as exc:
        raise RecordError("schema", f"missing or invalid field {exc}") from None
    return Record(request_id, timestamp, model, version, _tensors(raw.get("inputs"), "inputs"),
                  _tensors(raw.get("outputs"), "outputs"))
