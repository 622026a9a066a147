"""Validation of a converted graph, in order: checker, strict shape inference, signature vs spec.

Each failure raises :class:`ValidationError` naming its stage.
"""

from __future__ import annotations

from typing import Any

import onnx

from modelfleet.errors import ValidationError
from modelfleet.spec import ModelSpec, TensorSpec
from modelfleet.tensors import DATATYPE_OF_ONNX


def check_graph(model: onnx.ModelProto) -> onnx.ModelProto:
    """Run the full ONNX checker and strict shape inference; return the model with inferred shapes."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ValidationError("onnx checker", _first_line(exc)) from None
    try:
        return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError) as exc:
        raise ValidationError("shape inference", _first_line(exc)) from None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def describe_values(values: Any) -> list[dict[str, Any]]:
    """Name, OIP datatype and shape (-1 for a variable dimension) of graph inputs or outputs."""
    described = []
    for value in values:
        tensor_type = value.type.tensor_type
        datatype = DATATYPE_OF_ONNX.get(tensor_type.elem_type)
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor_type.shape.dim]
        described.append({"name": value.name, "datatype": datatype.value if datatype else "UNSUPPORTED",
                          "shape": dims})
    return described


def graph_inputs(model: onnx.ModelProto) -> list[dict[str, Any]]:
    initializers = {init.name for init in model.graph.initializer}
    return describe_values(v for v in model.graph.input if v.name not in initializers)


def graph_outputs(model: onnx.ModelProto) -> list[dict[str, Any]]:
    return describe_values(model.graph.output)


def _compare(kind: str, declared: list[TensorSpec], actual: list[dict[str, Any]]) -> None:
    by_name = {item["name"]: item for item in actual}
    problems = []
    for index, tensor in enumerate(declared):
        item = by_name.get(tensor.name)
        where = f"{kind}[{index}] {tensor.name!r}"
        if item is None:
            problems.append(f"{where}: the graph has no such {kind[:-1]} (it has {sorted(by_name)})")
            continue
        if item["datatype"] != tensor.datatype.value:
            problems.append(f"{where}: declared {tensor.datatype.value}, the graph has {item['datatype']}")
        if len(item["shape"]) != len(tensor.shape):
            problems.append(f"{where}: declared shape {tensor.shape}, the graph has rank "
                            f"{len(item['shape'])} ({item['shape']})")
            continue
        for axis, (want, have) in enumerate(zip(tensor.shape, item["shape"], strict=True)):
            if want != have and have != -1:
                problems.append(f"{where}: dimension {axis} declared {want}, the graph fixes it at {have}")
    extra = sorted(set(by_name) - {t.name for t in declared})
    if extra and kind == "inputs":
        problems.append(f"inputs: the graph needs input(s) {extra} that the spec does not declare")
    if problems:
        raise ValidationError("signature", "; ".join(problems))


def check_signature(spec: ModelSpec, model: onnx.ModelProto) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Compare the graph's inputs (and outputs, when declared) with the spec; return both as found."""
    inputs, outputs = graph_inputs(model), graph_outputs(model)
    _compare("inputs", spec.inputs, inputs)
    if spec.outputs is not None:
        _compare("outputs", spec.outputs, outputs)
    return inputs, outputs
