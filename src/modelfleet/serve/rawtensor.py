"""Tensors as raw bytes, as Triton's binary tensor extension (HTTP) and the gRPC ``raw_*_contents`` carry them.

Fixed-size datatypes are their elements in row-major order, little-endian; ``BOOL`` is one byte per
element (0 or 1); ``BYTES`` is each element as a 4-byte little-endian length followed by its bytes.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
import numpy.typing as npt

from modelfleet.spec import Datatype

_LENGTH = struct.Struct("<I")


class RawTensorError(ValueError):
    """Raw bytes that do not make the tensor they claim to be; the message says why."""


def from_bytes(raw: bytes | memoryview, datatype: Datatype, dtype: np.dtype[Any],
               shape: list[int]) -> npt.NDArray[Any]:
    """The tensor of ``shape`` that ``raw`` holds (a view of ``raw`` for fixed-size datatypes)."""
    count = math.prod(shape)
    if datatype is Datatype.BYTES:
        return _strings(raw, count).reshape(shape)
    need = count * dtype.itemsize
    if len(raw) != need:
        raise RawTensorError(f"{len(raw)} byte(s) of {datatype.value} data; shape {shape} needs {need}")
    if datatype is Datatype.BOOL:
        octets = np.frombuffer(raw, dtype=np.uint8)
        if octets.size and int(octets.max()) > 1:
            raise RawTensorError(f"BOOL element {int(np.argmax(octets > 1))} is {int(octets.max())}, not 0 or 1")
        return octets.view(np.bool_).reshape(shape)
    return np.frombuffer(raw, dtype=dtype.newbyteorder("<")).reshape(shape)


def _strings(raw: bytes | memoryview, count: int) -> npt.NDArray[Any]:
    view = memoryview(raw)
    values: list[str] = []
    offset = 0
    while offset < len(view):
        if offset + 4 > len(view):
            raise RawTensorError(f"BYTES element {len(values)}: its 4-byte length is cut short")
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += 4
        if offset + length > len(view):
            raise RawTensorError(f"BYTES element {len(values)}: length {length} runs past the end of the data")
        try:
            values.append(bytes(view[offset:offset + length]).decode())
        except UnicodeDecodeError as exc:
            raise RawTensorError(f"BYTES element {len(values)} is not UTF-8 text: {exc}") from None
        offset += length
        if len(values) > count:
            break
    if len(values) != count:
        found = f"more than {count}" if len(values) > count else str(len(values))
        raise RawTensorError(f"{found} BYTES element(s); the shape needs {count}")
    array = np.empty(count, dtype=object)
    array[:] = values
    return array


def to_bytes(array: npt.NDArray[Any], datatype: Datatype, dtype: np.dtype[Any]) -> bytes:
    """``array`` as raw bytes of ``datatype``."""
    if datatype is Datatype.BYTES:
        parts = []
        for value in array.ravel():
            data = value if isinstance(value, bytes) else str(value).encode()
            parts.append(_LENGTH.pack(len(data)))
            parts.append(data)
        return b"".join(parts)
    return np.ascontiguousarray(array, dtype=dtype.newbyteorder("<")).tobytes()
