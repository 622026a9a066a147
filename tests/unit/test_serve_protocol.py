"""Open Inference Protocol JSON: request parsing against a model's inputs, response encoding."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelfleet.asgi import error_body
from modelfleet.serve.protocol import ProtocolError, encode_infer_response, parse_infer_request
from modelfleet.serve.runtime import TensorInfo
from modelfleet.spec import Datatype

X = TensorInfo("x", Datatype.FP32, (-1, 3))
OUTPUTS = (TensorInfo("y", Datatype.FP32, (-1, 3)), TensorInfo("label", Datatype.INT64, (-1,)))


def _body(*tensors: dict[str, Any], **extra: Any) -> bytes:
    return json.dumps({"inputs": list(tensors), **extra}).encode()


def _t(name: str, datatype: str, data: Any, shape: list[int]) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


def _error(body: bytes, inputs: tuple[TensorInfo, ...] = (X,), max_batch: int | None = 8) -> ProtocolError:
    with pytest.raises(ProtocolError) as excinfo:
        parse_infer_request(body, inputs, OUTPUTS, max_batch)
    return excinfo.value


def test_flat_and_nested_data_give_the_same_batch() -> None:
    flat = parse_infer_request(_body(_t("x", "FP32", [1, 2, 3, 4, 5, 6], [2, 3]), id="a"), (X,), OUTPUTS, 8)
    nested = parse_infer_request(_body(_t("x", "FP32", [[1, 2, 3], [4, 5, 6]], [2, 3])), (X,), OUTPUTS, 8)
    np.testing.assert_array_equal(flat.inputs["x"], nested.inputs["x"])
    assert flat.inputs["x"].dtype == np.float32 and flat.inputs["x"].shape == (2, 3)
    assert (flat.id, nested.id) == ("a", None)
    assert (flat.rows, flat.signature, flat.outputs) == (2, ((3,),), None)


@pytest.mark.parametrize(("datatype", "data", "dtype", "expected"), [
    ("BOOL", [True, False], np.bool_, [True, False]),
    ("UINT8", [0, 255], np.uint8, [0, 255]),
    ("UINT16", [65535, 1], np.uint16, [65535, 1]),
    ("UINT32", [4294967295, 0], np.uint32, [4294967295, 0]),
    ("UINT64", [18446744073709551615, 0], np.uint64, [18446744073709551615, 0]),
    ("INT8", [-128, 127], np.int8, [-128, 127]),
    ("INT16", [-32768, 2], np.int16, [-32768, 2]),
    ("INT32", [-2147483648, 7], np.int32, [-2147483648, 7]),
    ("INT64", [-9223372036854775808, 9223372036854775807], np.int64, [-(2**63), 2**63 - 1]),
    ("FP16", [0.5, 65504.0], np.float16, [0.5, 65504.0]),
    ("FP32", [0.1, -1e30], np.float32, [np.float32(0.1), np.float32(-1e30)]),
    ("FP64", [0.1, 1e300], np.float64, [0.1, 1e300]),
    ("BYTES", ["héllo", ""], object, ["héllo", ""]),
])
def test_every_datatype_is_read_into_its_numpy_type(datatype: str, data: list[Any], dtype: Any,
                                                    expected: list[Any]) -> None:
    info = TensorInfo("v", Datatype(datatype), (-1,))
    request = parse_infer_request(_body(_t("v", datatype, data, [2])), (info,), OUTPUTS, 8)
    assert request.inputs["v"].dtype == np.dtype(dtype)
    assert request.inputs["v"].tolist() == expected


@pytest.mark.parametrize(("body", "message"), [
    (b"{", "malformed JSON"),
    (b"[]", "must be a JSON object"),
    (_body(), "inputs must be a non-empty list"),
    (_body(_t("x", "FP32", [1, 2, 3], [1, 3]), id=1), "id must be a string"),
    (_body({"name": 3}), "inputs[0]: must be an object with a name"),
    (_body(_t("q", "FP32", [1], [1])), "input 'q': the model has no such input (inputs: ['x'])"),
    (_body(_t("x", "FP64", [1, 2, 3], [1, 3])), "input 'x': datatype 'FP64', the model expects FP32"),
    (_body(_t("x", "FP32", [1, 2, 3], [3])), "shape [3] has rank 1, the model expects rank 2 ([-1, 3])"),
    (_body(_t("x", "FP32", [1, 2], [1, 2])), "dimension 1 is 2, the model expects 3"),
    (_body(_t("x", "FP32", [1, 2, 3], [1, "3"])), "shape must be a list of non-negative integers"),
    (_body(_t("x", "FP32", [1, 2, 3], [True, 3])), "shape must be a list of non-negative integers"),
    (_body(_t("x", "FP32", [1, 2, 3, 4], [1, 3])), "shape [1, 3] needs 3 element(s), data has 4"),
    (_body(_t("x", "FP32", ["a", "b", "c"], [1, 3])), "input 'x': data cannot be read as FP32"),
    (_body({"name": "x", "datatype": "FP32", "shape": [1, 3]}), "input 'x': no data"),
    (_body(_t("x", "FP32", [[1, None, 3]], [1, 3])), "input 'x': element [0, 1] is null; FP32 data must be numbers"),
    (_body(_t("x", "FP32", [1, 2, True], [1, 3])), "input 'x': element 2 is true; FP32 data must be numbers"),
    (_body(_t("x", "FP32", [False, 2, 3], [1, 3])), "input 'x': element 0 is false"),
    (_body(_t("x", "FP32", [1, 2, 3], [1, 3]), outputs=[{"name": "y"}, {"name": "y"}]),
     "requested output(s) ['y'] listed more than once"),
    (_body(_t("x", "FP32", [1, 2, 3], [1, 3]), outputs=[{"name": "y", "parameters": {"classification": 2}}]),
     "the classification extension is not supported"),
    (_body({"name": "x", "datatype": "FP32", "shape": [1, 3], "parameters": {"binary_data_size": 12}}),
     "binary_data_size without an Inference-Header-Content-Length header"),
    (_body(_t("x", "FP32", [], [0, 3])), "the batch is empty"),
    (_body(_t("x", "FP32", [1, 2, 3], [1, 3]), _t("x", "FP32", [1, 2, 3], [1, 3])), "input 'x': given twice"),
    (_body(_t("x", "FP32", [1, 2, 3], [1, 3]), outputs=[{"name": "z"}]), "requested output(s) ['z'] do not exist"),
    (_body(_t("x", "FP32", [1, 2, 3], [1, 3]), outputs=["y"]), "outputs must be a list of objects with a name"),
])
def test_client_mistakes_are_400_with_a_precise_message(body: bytes, message: str) -> None:
    error = _error(body)
    assert error.status == 400
    assert message in error.message


@pytest.mark.parametrize(("datatype", "data", "message"), [
    ("INT32", [2**31], "a value is outside the range of INT32"),
    ("UINT8", [-1], "a value is outside the range of UINT8"),
    ("INT64", [1.5], "INT64 data must be integers"),
    ("BOOL", [0], "BOOL data must be true/false"),
    ("BYTES", [1], "BYTES data must be strings"),
    ("BYTES", [["a", "b"], ["c"]], "BYTES data must be strings"),
])
def test_values_that_do_not_fit_the_datatype(datatype: str, data: list[Any], message: str) -> None:
    info = TensorInfo("v", Datatype(datatype), (-1,))
    error = _error(_body(_t("v", datatype, data, [len(data)])), (info,))
    assert error.status == 400 and message in error.message


def test_inputs_must_agree_on_the_batch_size_and_all_be_given() -> None:
    inputs = (X, TensorInfo("n", Datatype.INT64, (-1,)))
    assert "missing input(s) ['n']" in _error(_body(_t("x", "FP32", [1, 2, 3], [1, 3])), inputs).message
    disagree = _body(_t("x", "FP32", [1, 2, 3], [1, 3]), _t("n", "INT64", [1, 2], [2]))
    assert "inputs disagree on the batch size (first dimensions [1, 2])" in _error(disagree, inputs).message


def test_a_model_without_a_batch_dimension_takes_one_request_as_one_row() -> None:
    fixed = TensorInfo("x", Datatype.FP32, (2, 3))
    request = parse_infer_request(_body(_t("x", "FP32", [1, 2, 3, 4, 5, 6], [2, 3])), (fixed,), OUTPUTS, None)
    assert request.rows == 1 and request.inputs["x"].shape == (2, 3)


def test_absurd_variable_dimensions_are_a_400_not_a_crash() -> None:
    variable = TensorInfo("v", Datatype.FP32, (-1, -1))
    for shape in ([0, 2**62], [0, 2**63], [2**62, 0]):
        error = _error(_body(_t("v", "FP32", [], shape)), (variable,), max_batch=8)
        assert error.status == 400, shape


def test_requested_outputs_keep_the_clients_order() -> None:
    body = _body(_t("x", "FP32", [1, 2, 3], [1, 3]), outputs=[{"name": "label"}, {"name": "y", "parameters": {}}])
    assert parse_infer_request(body, (X,), OUTPUTS, 8).outputs == ["label", "y"]


JSON = st.recursive(st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False)
                    | st.text(max_size=5),
                    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children,
                                                                                       max_size=4), max_leaves=12)
TENSOR = st.fixed_dictionaries({}, optional={
    "name": st.sampled_from(["x", "v", "s", "other"]) | JSON,
    "datatype": st.sampled_from([d.value for d in Datatype]) | JSON,
    "shape": st.lists(st.integers(-2, 2**64), max_size=3) | JSON,
    "data": st.lists(st.integers(-3, 300) | st.floats(allow_nan=False) | st.booleans() | st.text(max_size=2),
                     max_size=7) | JSON,
    "parameters": JSON})
REQUEST = st.fixed_dictionaries({}, optional={"id": JSON, "inputs": st.lists(TENSOR, max_size=3) | JSON,
                                              "outputs": JSON, "parameters": JSON}) | JSON
MODEL = (TensorInfo("x", Datatype.FP32, (-1, 2)), TensorInfo("v", Datatype.UINT8, (-1, -1)),
         TensorInfo("s", Datatype.BYTES, (-1,)))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(REQUEST)
def test_any_json_is_a_request_or_a_400(value: Any) -> None:
    """Whatever a client sends: a parsed request, or a 400 (never another exception, i.e. a 500)."""
    try:
        request = parse_infer_request(orjson.dumps(value), MODEL, OUTPUTS, 4)
    except ProtocolError as exc:
        assert exc.status == 400 and exc.message
        return
    except orjson.JSONEncodeError:  # not representable as JSON (e.g. an integer beyond 64 bits)
        return
    assert set(request.inputs) == {"x", "v", "s"} and 1 <= request.rows <= 4


def test_response_encoding() -> None:
    infos = {"y": OUTPUTS[0], "label": OUTPUTS[1], "s": TensorInfo("s", Datatype.BYTES, (-1,))}
    body = orjson.loads(encode_infer_response(
        "m", "3", "req-1", ["y", "label", "s"],
        [np.array([[0.5, 1.5, 2.5]], np.float32), np.array([7], np.int64), np.array([b"caf\xc3\xa9", "x"], object)],
        infos)[0])
    assert body == {"model_name": "m", "model_version": "3", "id": "req-1", "outputs": [
        {"name": "y", "datatype": "FP32", "shape": [1, 3], "data": [0.5, 1.5, 2.5]},
        {"name": "label", "datatype": "INT64", "shape": [1], "data": [7]},
        {"name": "s", "datatype": "BYTES", "shape": [2], "data": ["café", "x"]}]}
    no_id = orjson.loads(encode_infer_response("m", "3", None, ["label"], [np.array([1])], infos)[0])
    assert "id" not in no_id
    sliced = np.arange(12, dtype=np.float32).reshape(4, 3)[1:3, ::2]  # not contiguous, as a batch slice can be
    infos["z"] = TensorInfo("z", Datatype.FP32, (-1, 2))
    assert orjson.loads(encode_infer_response("m", "3", None, ["z"], [sliced], infos)[0])["outputs"][0]["data"] == \
        [3.0, 5.0, 6.0, 8.0]
    assert orjson.loads(error_body('bad "x"')) == {"error": 'bad "x"'}


def test_more_rows_than_the_max_batch_are_accepted_for_the_data_plane_to_split() -> None:
    request = parse_infer_request(_body(_t("x", "FP32", [[1, 2, 3]] * 9, [9, 3])), (X,), OUTPUTS, 8)
    assert request.rows == 9 and request.inputs["x"].shape == (9, 3)


def test_literals_are_fine_outside_numeric_tensors() -> None:
    flag = TensorInfo("b", Datatype.BOOL, (-1,))
    request = parse_infer_request(_body(_t("x", "FP32", [1, 2, 3], [1, 3]), _t("b", "BOOL", [True], [1]),
                                        parameters={"note": None}), (X, flag), OUTPUTS, 8)
    assert request.inputs["b"].tolist() == [True]


def _binary(header: dict[str, Any], *raw: bytes) -> tuple[bytes, int]:
    encoded = json.dumps(header).encode()
    return encoded + b"".join(raw), len(encoded)


def test_binary_tensor_extension_inputs_and_outputs() -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    strings = TensorInfo("s", Datatype.BYTES, (-1,))
    raw_strings = b"\x02\x00\x00\x00ab\x00\x00\x00\x00"
    body, length = _binary({"inputs": [
        {"name": "x", "datatype": "FP32", "shape": [2, 3], "parameters": {"binary_data_size": 24}},
        {"name": "s", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": len(raw_strings)}}],
        "outputs": [{"name": "label", "parameters": {"binary_data": True}}, {"name": "y"}]},
        x.tobytes(), raw_strings)
    request = parse_infer_request(body, (X, strings), OUTPUTS, 8, length)
    np.testing.assert_array_equal(request.inputs["x"], x)
    assert request.inputs["s"].tolist() == ["ab", ""]
    assert request.outputs == ["label", "y"] and request.binary_outputs == {"label"}
    everything, length = _binary({"inputs": [
        {"name": "x", "datatype": "FP32", "shape": [2, 3], "parameters": {"binary_data_size": 24}}],
        "parameters": {"binary_data_output": True}}, x.tobytes())
    assert parse_infer_request(everything, (X,), OUTPUTS, 8, length).binary_outputs == {"y", "label"}
    infos = {"y": OUTPUTS[0], "label": OUTPUTS[1]}
    answer, header = encode_infer_response("m", "3", "r", ["label", "y"], [np.array([4, 5]), x], infos, {"label"})
    assert header is not None
    decoded = orjson.loads(answer[:header])
    assert decoded["outputs"][0] == {"name": "label", "datatype": "INT64", "shape": [2],
                                     "parameters": {"binary_data_size": 16}}
    assert decoded["outputs"][1]["data"] == x.ravel().tolist()
    assert np.frombuffer(answer[header:], "<i8").tolist() == [4, 5]


@pytest.mark.parametrize(("tensor", "raw", "header_length", "message"), [
    ({"parameters": {"binary_data_size": 20}}, b"\0" * 20, None, "FP32 data; shape [2, 3] needs 24"),
    ({"parameters": {"binary_data_size": 24}}, b"\0" * 20, None, "runs past the end of the body"),
    ({"parameters": {"binary_data_size": 24}}, b"\0" * 28, None, "4 byte(s) of binary data after the last"),
    ({"parameters": {"binary_data_size": -1}}, b"", None, "binary_data_size must be a non-negative integer"),
    ({"parameters": {"binary_data_size": 24}, "data": [1]}, b"\0" * 24, None, "both \"data\" and"),
    ({"parameters": {"binary_data_size": 24}}, b"\0" * 24, 10_000, "Inference-Header-Content-Length 10000 is outside"),
])
def test_binary_mistakes_are_400(tensor: dict[str, Any], raw: bytes, header_length: int | None,
                                 message: str) -> None:
    body, length = _binary({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 3], **tensor}]}, raw)
    with pytest.raises(ProtocolError) as excinfo:
        parse_infer_request(body, (X,), OUTPUTS, 8, header_length or length)
    assert excinfo.value.status == 400 and message in excinfo.value.message


@pytest.mark.parametrize(("datatype", "raw", "message"), [
    ("BYTES", b"\x05\x00\x00\x00ab", "length 5 runs past the end"),
    ("BYTES", b"\x01\x00", "its 4-byte length is cut short"),
    ("BYTES", b"\x01\x00\x00\x00\xff", "not UTF-8"),
    ("BYTES", b"\x00\x00\x00\x00" * 3, "more than 2 BYTES element(s); the shape needs 2"),
    ("BOOL", b"\x01\x02", "BOOL element 1 is 2, not 0 or 1"),
])
def test_raw_tensor_mistakes_name_the_element(datatype: str, raw: bytes, message: str) -> None:
    info = TensorInfo("v", Datatype(datatype), (-1,))
    body, length = _binary({"inputs": [{"name": "v", "datatype": datatype, "shape": [2],
                                        "parameters": {"binary_data_size": len(raw)}}]}, raw)
    with pytest.raises(ProtocolError) as excinfo:
        parse_infer_request(body, (info,), OUTPUTS, 8, length)
    assert message in excinfo.value.message and "input 'v'" in excinfo.value.message
