"""Open Inference Protocol requests: the validation every front end shares, and the HTTP encoding
(JSON tensors and Triton's binary tensor extension).

:func:`input_info` (an input's name, datatype and shape against the model's) and :func:`finish_request`
(missing inputs, batch rows, requested outputs) are the one validation of the JSON, binary and gRPC
decoders. Every client mistake becomes :class:`ProtocolError` with an HTTP status and a message that
says what was wrong (which input, where, expected vs got); nothing a client sends turns into a 500.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from modelfleet.serve.rawtensor import RawTensorError, from_bytes, to_bytes
from modelfleet.serve.runtime import TensorInfo
from modelfleet.spec import Datatype

#: What the server metadata lists (``GET /v2``, gRPC ServerMetadata).
EXTENSIONS = ("binary_tensor_data",)


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
    binary_outputs: frozenset[str] = field(default_factory=frozenset)  # outputs to answer as raw bytes (HTTP)


# --- shared validation (JSON, binary, gRPC) ---------------------------------------------------------

def input_info(name: str, datatype: Any, shape: Any, by_name: Mapping[str, TensorInfo],
               seen: Collection[str]) -> TensorInfo:
    """The model input ``name`` after checking the request's ``datatype`` and ``shape`` against it."""
    info = by_name.get(name)
    where = f"input {name!r}"
    if info is None:
        raise ProtocolError(400, f"{where}: the model has no such input (inputs: {sorted(by_name)})")
    if name in seen:
        raise ProtocolError(400, f"{where}: given twice")
    if datatype != info.datatype.value:
        raise ProtocolError(400, f"{where}: datatype {datatype!r}, the model expects {info.datatype.value}")
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
    return info


def raw_input(raw: bytes | memoryview, info: TensorInfo, shape: list[int]) -> npt.NDArray[Any]:
    """An input sent as raw bytes (binary extension, gRPC ``raw_input_contents``)."""
    try:
        return from_bytes(raw, info.datatype, info.dtype, shape)
    except RawTensorError as exc:
        raise ProtocolError(400, f"input {info.name!r}: {exc}") from None
    except ValueError as exc:  # e.g. [0, 2**62]: numpy refuses dimensions that large
        raise ProtocolError(400, f"input {info.name!r}: shape {shape} is not usable: {exc}") from None


def finish_request(request_id: str | None, arrays: dict[str, npt.NDArray[Any]], inputs: Sequence[TensorInfo],
                   outputs: Sequence[TensorInfo], requested: list[str] | None, max_batch: int | None,
                   binary_outputs: frozenset[str] = frozenset()) -> InferRequest:
    """The validated request: every input given, one batch size, requested outputs known and distinct.

    ``max_batch`` is ``None`` for a model that does not batch; a batching model takes any number of
    rows (the data plane splits what exceeds its max batch)."""
    missing = [t.name for t in inputs if t.name not in arrays]
    if missing:
        raise ProtocolError(400, f"missing input(s) {missing}")
    rows = 1
    if max_batch is not None:
        counts = {a.shape[0] for a in arrays.values()}
        if len(counts) != 1:
            raise ProtocolError(400, f"inputs disagree on the batch size (first dimensions {sorted(counts)})")
        rows = int(counts.pop())
        if rows == 0:
            raise ProtocolError(400, "the batch is empty (first dimension 0)")
    if requested is not None:
        known = {o.name for o in outputs}
        unknown = [n for n in requested if n not in known]
        if unknown:
            raise ProtocolError(400, f"requested output(s) {unknown} do not exist (outputs: {sorted(known)})")
        twice = sorted({n for n in requested if requested.count(n) > 1})
        if twice:
            raise ProtocolError(400, f"requested output(s) {twice} listed more than once")
    signature = tuple(a.shape[1:] for a in arrays.values())
    return InferRequest(request_id, arrays, requested, rows, signature, binary_outputs)


# --- HTTP: JSON tensors and the binary tensor extension --------------------------------------------

def _literal(data: Any) -> str | None:
    """Where a JSON ``null``, ``true`` or ``false`` sits in numeric ``data``, e.g. ``element [1, 3] is null``."""
    try:
        array = np.asarray(data, dtype=object)
    except ValueError:
        return None  # ragged: refused as such later
    for index, value in enumerate(array.flat):
        if value is None or isinstance(value, bool):
            where = [int(i) for i in np.unravel_index(index, array.shape)] if array.ndim > 1 else index
            return f"element {where} is {orjson.dumps(value).decode()}"
    return None


def _json_array(tensor: dict[str, Any], info: TensorInfo, shape: list[int], literals: bool) -> npt.NDArray[Any]:
    where = f"input {info.name!r}"
    data = tensor.get("data")
    if data is None:
        raise ProtocolError(400, f"{where}: no data (give \"data\", or binary data with "
                                 "parameters.binary_data_size)")
    if literals and info.dtype.kind in "iuf":
        found = _literal(data)
        if found is not None:
            raise ProtocolError(400, f"{where}: {found}; {info.datatype.value} data must be numbers")
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


def _binary_size(tensor: dict[str, Any], where: str) -> int | None:
    parameters = tensor.get("parameters")
    if parameters is None:
        return None
    if not isinstance(parameters, dict):
        raise ProtocolError(400, f"{where}: parameters must be an object")
    size = parameters.get("binary_data_size")
    if size is None:
        return None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ProtocolError(400, f"{where}: parameters.binary_data_size must be a non-negative integer, "
                                 f"got {size!r}")
    if "data" in tensor:
        raise ProtocolError(400, f"{where}: both \"data\" and parameters.binary_data_size given")
    return size


def parse_infer_request(body: bytes, inputs: Sequence[TensorInfo], outputs: Sequence[TensorInfo],
                        max_batch: int | None, header_length: int | None = None) -> InferRequest:
    """Validate an HTTP inference request against the model's inputs and outputs.

    ``header_length`` is the ``Inference-Header-Content-Length`` header of the binary tensor extension:
    the JSON is the body's first ``header_length`` bytes, and tensors with ``binary_data_size`` take
    their bytes from the rest, in order."""
    binary = memoryview(b"")
    if header_length is not None:
        if not 0 <= header_length <= len(body):
            raise ProtocolError(400, f"Inference-Header-Content-Length {header_length} is outside the body "
                                     f"({len(body)} bytes)")
        binary = memoryview(body)[header_length:]
        body = body[:header_length]
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
    literals = b"null" in body or b"true" in body or b"false" in body  # fast path: no JSON literal anywhere
    by_name = {t.name: t for t in inputs}
    arrays: dict[str, npt.NDArray[Any]] = {}
    offset = 0
    for index, tensor in enumerate(tensors):
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            raise ProtocolError(400, f"inputs[{index}]: must be an object with a name")
        shape: list[int] = tensor.get("shape")  # type: ignore[assignment]  # input_info checks it
        info = input_info(tensor["name"], tensor.get("datatype"), shape, by_name, arrays)
        size = _binary_size(tensor, f"input {info.name!r}")
        if size is None:
            arrays[info.name] = _json_array(tensor, info, shape, literals)
            continue
        if header_length is None:
            raise ProtocolError(400, f"input {info.name!r}: binary_data_size without an "
                                     "Inference-Header-Content-Length header")
        if offset + size > len(binary):
            raise ProtocolError(400, f"input {info.name!r}: binary_data_size {size} runs past the end of the "
                                     f"body ({len(binary) - offset} byte(s) of binary data left)")
        arrays[info.name] = raw_input(binary[offset:offset + size], info, shape)
        offset += size
    if offset != len(binary):
        raise ProtocolError(400, f"{len(binary) - offset} byte(s) of binary data after the last binary input")
    requested, binary_outputs = _requested_outputs(request, outputs)
    return finish_request(request_id, arrays, inputs, outputs, requested, max_batch, binary_outputs)


Requested = tuple[list[str] | None, frozenset[str]]


def _requested_outputs(request: dict[str, Any], outputs: Sequence[TensorInfo]) -> Requested:
    parameters = request.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise ProtocolError(400, "parameters must be an object")
    all_binary = bool((parameters or {}).get("binary_data_output", False))
    value = request.get("outputs")
    if value is None:
        return None, frozenset(o.name for o in outputs) if all_binary else frozenset()
    if not isinstance(value, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in value):
        raise ProtocolError(400, "outputs must be a list of objects with a name")
    binary = set()
    for output in value:
        options = output.get("parameters") or {}
        if not isinstance(options, dict):
            raise ProtocolError(400, f"output {output['name']!r}: parameters must be an object")
        if options.get("classification"):
            raise ProtocolError(400, f"output {output['name']!r}: the classification extension is not supported")
        if options.get("binary_data", all_binary):
            binary.add(output["name"])
    return [o["name"] for o in value], frozenset(binary)


def encode_infer_response(model: str, version: str, request_id: str | None, names: Sequence[str],
                          arrays: Sequence[npt.NDArray[Any]], infos: dict[str, TensorInfo],
                          binary: Collection[str] = ()) -> tuple[bytes, int | None]:
    """The response body, and the length of its JSON part when outputs in ``binary`` follow it as raw
    bytes (the ``Inference-Header-Content-Length`` to send; ``None``: the body is all JSON)."""
    encoded = []
    raw: list[bytes] = []
    for name, array in zip(names, arrays, strict=True):
        info = infos[name]
        output: dict[str, Any] = {"name": name, "datatype": info.datatype.value, "shape": list(array.shape)}
        if name in binary:
            data = to_bytes(array, info.datatype, info.dtype)
            raw.append(data)
            output["parameters"] = {"binary_data_size": len(data)}
        elif array.dtype.kind in "OSU":
            output["data"] = [v.decode() if isinstance(v, bytes) else str(v) for v in array.ravel()]
        else:
            output["data"] = array.ravel()
        encoded.append(output)
    response: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": encoded}
    if request_id is not None:
        response["id"] = request_id
    header = orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
    if not raw:
        return header, None
    return b"".join([header, *raw]), len(header)
