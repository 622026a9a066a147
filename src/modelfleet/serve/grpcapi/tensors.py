"""OIP gRPC messages <-> the data plane: a ``ModelInferRequest`` decoded with the validation every front end
shares (:func:`modelfleet.serve.protocol.input_info` / ``finish_request``), a response with raw output contents."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from google.protobuf.message import DecodeError

from modelfleet.serve.grpcapi import inference_pb2 as pb
from modelfleet.serve.protocol import InferRequest, ProtocolError, finish_request, input_info, raw_input
from modelfleet.serve.rawtensor import to_bytes
from modelfleet.serve.runtime import TensorInfo
from modelfleet.spec import Datatype

#: The ``InferTensorContents`` field that carries each datatype (FP16 has none: raw contents only).
CONTENTS_FIELD = {Datatype.BOOL: "bool_contents", Datatype.INT8: "int_contents", Datatype.INT16: "int_contents",
                  Datatype.INT32: "int_contents", Datatype.INT64: "int64_contents", Datatype.UINT8: "uint_contents",
                  Datatype.UINT16: "uint_contents", Datatype.UINT32: "uint_contents",
                  Datatype.UINT64: "uint64_contents", Datatype.FP32: "fp32_contents", Datatype.FP64: "fp64_contents",
                  Datatype.BYTES: "bytes_contents"}


def parse_request(data: bytes, limit: int) -> pb.ModelInferRequest:
    """The message, or 413 beyond ``limit`` bytes / 400 when it is not a ModelInferRequest."""
    if len(data) > limit:
        raise ProtocolError(413, f"request message of {len(data)} bytes exceeds the limit of {limit} bytes")
    try:
        return pb.ModelInferRequest.FromString(data)
    except DecodeError as exc:
        raise ProtocolError(400, f"malformed protobuf: not a ModelInferRequest ({exc})") from None


def _typed(contents: pb.InferTensorContents, info: TensorInfo, shape: list[int]) -> npt.NDArray[Any]:
    where = f"input {info.name!r}"
    field = CONTENTS_FIELD.get(info.datatype)
    if field is None:
        raise ProtocolError(400, f"{where}: {info.datatype.value} has no typed contents field; send it in "
                                 "raw_input_contents")
    others = [descriptor.name for descriptor, _values in contents.ListFields() if descriptor.name != field]
    if others:
        raise ProtocolError(400, f"{where}: {info.datatype.value} data belongs in contents.{field}, got "
                                 f"{', '.join(others)}")
    values = getattr(contents, field)
    expected = math.prod(shape)
    if len(values) != expected:
        raise ProtocolError(400, f"{where}: shape {shape} needs {expected} element(s), data has {len(values)}")
    if info.datatype is Datatype.BYTES:
        array = np.empty(len(values), dtype=object)
        try:
            array[:] = [v.decode() for v in values]
        except UnicodeDecodeError as exc:
            raise ProtocolError(400, f"{where}: BYTES element is not UTF-8 text: {exc}") from None
    else:
        wide = np.array(values, dtype=np.int64 if info.dtype.kind == "i" else
                        np.uint64 if info.dtype.kind == "u" else info.dtype)
        array = wide.astype(info.dtype)
        if info.dtype.kind in "iu" and not np.array_equal(array, wide):
            raise ProtocolError(400, f"{where}: a value is outside the range of {info.datatype.value}")
    return array.reshape(shape)


def decode_request(message: pb.ModelInferRequest, inputs: Sequence[TensorInfo], outputs: Sequence[TensorInfo],
                   max_batch: int | None) -> InferRequest:
    """Validate a ModelInferRequest against the model's inputs and outputs."""
    if not message.inputs:
        raise ProtocolError(400, "inputs must be a non-empty list of tensors")
    raw = message.raw_input_contents
    if raw and len(raw) != len(message.inputs):
        raise ProtocolError(400, f"raw_input_contents has {len(raw)} entries for {len(message.inputs)} inputs "
                                 "(one per input, in order)")
    by_name = {t.name: t for t in inputs}
    arrays: dict[str, npt.NDArray[Any]] = {}
    for index, tensor in enumerate(message.inputs):
        shape = list(tensor.shape)
        info = input_info(tensor.name, tensor.datatype, shape, by_name, arrays)
        if raw:
            if tensor.HasField("contents") and tensor.contents.ListFields():
                raise ProtocolError(400, f"input {info.name!r}: both contents and raw_input_contents given")
            arrays[info.name] = raw_input(raw[index], info, shape)
        else:
            arrays[info.name] = _typed(tensor.contents, info, shape)
    requested = None
    if message.outputs:
        requested = [o.name for o in message.outputs]
        for output in message.outputs:
            if "classification" in output.parameters:
                raise ProtocolError(400, f"output {output.name!r}: the classification extension is not supported")
    return finish_request(message.id or None, arrays, inputs, outputs, requested, max_batch)


def encode_response(model: str, version: str, request_id: str, names: Sequence[str],
                    arrays: Sequence[npt.NDArray[Any]], infos: dict[str, TensorInfo]) -> bytes:
    """A serialized ModelInferResponse; tensors in ``raw_output_contents`` (as Triton answers)."""
    response = pb.ModelInferResponse(model_name=model, model_version=version, id=request_id)
    for name, array in zip(names, arrays, strict=True):
        info = infos[name]
        response.outputs.add(name=name, datatype=info.datatype.value, shape=array.shape)
        response.raw_output_contents.append(to_bytes(array, info.datatype, info.dtype))
    return response.SerializeToString()
