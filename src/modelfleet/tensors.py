"""Tensor datatypes: Open Inference Protocol names, numpy dtypes and ONNX element types.

Also loads tensor files (``.npz``) named by a spec (parity samples, reference data) and checks them
against the spec's inputs.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import numpy.typing as npt
from onnx import TensorProto

from modelfleet.errors import ModelfleetError
from modelfleet.spec import Datatype, TensorSpec

NUMPY_DTYPES: dict[Datatype, np.dtype[np.generic]] = {
    Datatype.BOOL: np.dtype(np.bool_),
    Datatype.UINT8: np.dtype(np.uint8),
    Datatype.UINT16: np.dtype(np.uint16),
    Datatype.UINT32: np.dtype(np.uint32),
    Datatype.UINT64: np.dtype(np.uint64),
    Datatype.INT8: np.dtype(np.int8),
    Datatype.INT16: np.dtype(np.int16),
    Datatype.INT32: np.dtype(np.int32),
    Datatype.INT64: np.dtype(np.int64),
    Datatype.FP16: np.dtype(np.float16),
    Datatype.FP32: np.dtype(np.float32),
    Datatype.FP64: np.dtype(np.float64),
    Datatype.BYTES: np.dtype(object),
}

ONNX_ELEMENT_TYPES: dict[Datatype, int] = {
    Datatype.BOOL: TensorProto.BOOL,
    Datatype.UINT8: TensorProto.UINT8,
    Datatype.UINT16: TensorProto.UINT16,
    Datatype.UINT32: TensorProto.UINT32,
    Datatype.UINT64: TensorProto.UINT64,
    Datatype.INT8: TensorProto.INT8,
    Datatype.INT16: TensorProto.INT16,
    Datatype.INT32: TensorProto.INT32,
    Datatype.INT64: TensorProto.INT64,
    Datatype.FP16: TensorProto.FLOAT16,
    Datatype.FP32: TensorProto.FLOAT,
    Datatype.FP64: TensorProto.DOUBLE,
    Datatype.BYTES: TensorProto.STRING,
}

DATATYPE_OF_ONNX: dict[int, Datatype] = {v: k for k, v in ONNX_ELEMENT_TYPES.items()}


class TensorFileError(ModelfleetError):
    """A tensor file named by the spec is missing, unreadable, or does not fit the model's inputs."""


def load_tensor_file(path: Path, inputs: list[TensorSpec], *, purpose: str,
                     allow_nan: bool) -> dict[str, npt.NDArray[np.generic]]:
    """Arrays for each input from an ``.npz`` file, cast to the input's datatype and shape-checked."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except FileNotFoundError:
        raise TensorFileError(f"{purpose} {path}: no such file") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise TensorFileError(f"{purpose} {path}: not a readable .npz file: {exc}") from None
    missing = [t.name for t in inputs if t.name not in arrays]
    if missing:
        raise TensorFileError(f"{purpose} {path}: no array for input(s) {missing}; it has {sorted(arrays)}")
    rows: int | None = None
    result: dict[str, npt.NDArray[np.generic]] = {}
    for tensor in inputs:
        array = arrays[tensor.name]
        where = f"{purpose} {path}, array {tensor.name!r}"
        if array.ndim != len(tensor.shape):
            raise TensorFileError(f"{where}: shape {list(array.shape)} has rank {array.ndim}, "
                                  f"the input declares {tensor.shape}")
        for axis, (have, want) in enumerate(zip(array.shape, tensor.shape, strict=True)):
            if want != -1 and have != want:
                raise TensorFileError(f"{where}: dimension {axis} is {have}, the input declares {want}")
        if array.shape[0] == 0:
            raise TensorFileError(f"{where}: has no rows")
        if rows is not None and array.shape[0] != rows:
            raise TensorFileError(f"{where}: {array.shape[0]} rows, other inputs have {rows}")
        rows = array.shape[0]
        dtype = NUMPY_DTYPES[tensor.datatype]
        try:
            cast = array.astype(dtype) if dtype != np.dtype(object) else array.astype(str).astype(object)
        except (TypeError, ValueError) as exc:
            raise TensorFileError(f"{where}: cannot be read as {tensor.datatype.value}: {exc}") from None
        if not allow_nan and cast.dtype.kind == "f":
            bad = ~np.isfinite(cast)
            if bad.any():
                first = tuple(int(i) for i in np.argwhere(bad)[0])
                raise TensorFileError(f"{where}: {int(bad.sum())} NaN/inf value(s), first at index {first} "
                                      f"({cast[first]}); parity needs finite inputs")
        result[tensor.name] = cast
    return result
