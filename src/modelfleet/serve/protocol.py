"""Open Inference Protocol (KServe v2 / Triton HTTP) JSON: request parsing and response encoding.

Every client mistake becomes :class:`ProtocolError` with an HTTP status and a message that says
what was wrong (which input, expected vs got); nothing a client sends turns into a 500.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from modelfleet.serve.runtime import TensorInfo
from modelfleet.spec import Datatype


class ProtocolError(Exception):
    """A request the server refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = list(headers)


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    inputs: dict[str, npt.NDArray[Any]]
    outputs: list[str] | None  # requested output names, None = all
    rows: int
    signature: tuple[tuple[int, ...], ...]  # non-batch dimensions of each input, for batching


def _as_array(tensor: dict[str, Any], info: TensorInfo, where: str) -> npt.NDArray[Any]:
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in shape):
        raise ProtocolError(400, f"{where}: shape must be a list of non-negative integers, got {shape!r}")
    if len(shape) != len(info.shape):
        raise ProtocolError(400, f"{where}: shape {shape} has rank {len(shape)}, the model expects rank "
                                 f"{len(info.shape)} ({list(info.shape)})")
    for axis, (have, want) in enumerate(zip(shape, info.shape, strict=True)):
        if want != -1 and have != want:
            raise ProtocolError(400, f"{where}: dimension {axis} is {have}, the model expects {want} "
                                     f"(shape {list(info.shape)})")
    data = tensor.get("data")
    if data is None:
        raise ProtocolError(400, f"{where}: no data (the binary tensor extension is not supported)")
    expected = math.prod(shape)
    try:
        if info.datatype is Datatype.BYTES:
            array = np.array(data, dtype=object)
            if array.size and not all(isinstance(v, str) for v in array.flat):
                raise ValueError("BYTES data must be strings")
        elif info.datatype is Datatype.BOOL:
            array = np.asarray(data)
            if array.size and array.dtype != np.bool_:
                raise ValueError("BOOL data must be true/false")
        elif info.dtype.kind in "iu":
            array = np.asarray(data)
            if array.size and array.dtype.kind not in "iu":
                # numpy reads [2**64 - 1, 0] as float64: judge the values themselves.
                array = np.asarray(data, dtype=object)
                if not all(isinstance(v, int) and not isinstance(v, bool) for v in array.flat):
                    raise ValueError(f"{info.datatype.value} data must be integers")
            cast = array.astype(info.dtype, casting="unsafe" if array.size else "same_kind")
            if array.size and not np.array_equal(cast, array):
                raise ValueError(f"a value is outside the range of {info.datatype.value}")
            array = cast
        else:
            array = np.asarray(data, dtype=info.dtype)
    except (ValueError, TypeError, OverflowError) as exc:
        raise ProtocolError(400, f"{where}: data cannot be read as {info.datatype.value}: {exc}") from None
    if array.size != expected:
        raise ProtocolError(400, f"{where}: shape {shape} needs {expected} element(s), data has {array.size}")
    try:
        return array.reshape(shape)
    except ValueError as exc:  # e.g. [0, 2**62] with no data: numpy refuses dimensions that large
        raise ProtocolError(400, f"{where}: shape {shape} is not usable: {exc}") from None


def parse_infer_request(body: bytes, inputs: Sequence[TensorInfo], outputs: Sequence[TensorInfo],
                        max_batch: int | None) -> InferRequest:
    """Validate an inference request against the model's inputs and outputs."""
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(400, f"malformed JSON: {exc}") from None
    if not isinstance(request, dict):
        raise ProtocolError(400, "the request body must be a JSON object")
    request_id = request.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise ProtocolError(400, "id must be a string")
    tensors = request.get("inputs")
    if not isinstance(tensors, list) or not tensors:
        raise ProtocolError(400, "inputs must be a non-empty list of tensors")
    by_name = {t.name: t for t in inputs}
    arrays: dict[str, npt.NDArray[Any]] = {}
    for index, tensor in enumerate(tensors):
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            raise ProtocolError(400, f"inputs[{index}]: must be an object with a name")
        name = tensor["name"]
        info = by_name.get(name)
        where = f"input {name!r}"
        if info is None:
            raise ProtocolError(400, f"{where}: the model has no such input (inputs: {sorted(by_name)})")
        if name in arrays:
            raise ProtocolError(400, f"{where}: given twice")
        if tensor.get("datatype") != info.datatype.value:
            raise ProtocolError(400, f"{where}: datatype {tensor.get('datatype')!r}, the model expects "
                                     f"{info.datatype.value}")
        arrays[name] = _as_array(tensor, info, where)
    missing = [name for name in by_name if name not in arrays]
    if missing:
        raise ProtocolError(400, f"missing input(s) {missing}")
    rows = _rows(arrays, inputs, max_batch)
    requested = _requested_outputs(request.get("outputs"), outputs)
    signature = tuple(a.shape[1:] for a in arrays.values())
    return InferRequest(request_id, arrays, requested, rows, signature)


def _rows(arrays: dict[str, npt.NDArray[Any]], inputs: Sequence[TensorInfo], max_batch: int | None) -> int:
    if max_batch is None:
        return 1
    counts = {a.shape[0] for a in arrays.values()}
    if len(counts) != 1:
        raise ProtocolError(400, f"inputs disagree on the batch size (first dimensions {sorted(counts)})")
    rows = int(counts.pop())
    if rows == 0:
        raise ProtocolError(400, "the batch is empty (first dimension 0)")
    if rows > max_batch:
        raise ProtocolError(400, f"batch size {rows} exceeds the model's max batch size {max_batch}")
    return rows


def _requested_outputs(value: Any, outputs: Sequence[TensorInfo]) -> list[str] | None:
    if value is None:
        return None
    known = {o.name for o in outputs}
    if not isinstance(value, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in value):
        raise ProtocolError(400, "outputs must be a list of objects with a name")
    names = [o["name"] for o in value]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ProtocolError(400, f"requested output(s) {unknown} do not exist (outputs: {sorted(known)})")
    return names


def encode_infer_response(model: str, version: str, request_id: str | None, names: Sequence[str],
                          arrays: Sequence[npt.NDArray[Any]], infos: dict[str, TensorInfo]) -> bytes:
    outputs = []
    for name, array in zip(names, arrays, strict=True):
        data: Any = array.ravel()
        if array.dtype.kind in "OSU":
            data = [v.decode() if isinstance(v, bytes) else str(v) for v in data]
        outputs.append({"name": name, "datatype": infos[name].datatype.value, "shape": list(array.shape),
                        "data": data})
    response: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": outputs}
    if request_id is not None:
        response["id"] = request_id
    return orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
