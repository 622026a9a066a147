"""Small ONNX models built in the tests, stamped into artifacts with the real conversion pipeline.

- ``typed``: one input of each datatype the JSON protocol carries (FP32, FP64, FP16, INT32, UINT8,
  BOOL, BYTES), each output a simple function of one input, so a response can be checked exactly.
- ``slow``: ``y = 2 * x``, after ``x[:, 0]`` (the batch's maximum) iterations of a matrix product.
  A request chooses how long it takes; zeros (what warm-up sends) run instantly.

Imported by tests/unit and tests/integration (tests/ is on ``sys.path`` through tests/conftest.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import yaml
from onnx import TensorProto, helper

from modelfleet.convert import build_artifact
from modelfleet.spec import load_spec

OPSET = 17
TYPED_INPUTS = [("x", "FP32", [-1, 3]), ("d", "FP64", [-1, 2]), ("h", "FP16", [-1, 2]), ("i", "INT32", [-1, 2]),
                ("u", "UINT8", [-1]), ("b", "BOOL", [-1]), ("s", "BYTES", [-1])]
TYPED_OUTPUTS = [("y", "FP32", [-1, 3]), ("d1", "FP64", [-1, 2]), ("h2", "FP16", [-1, 2]),
                 ("isum", "INT64", [-1]), ("u1", "UINT8", [-1]), ("nb", "BOOL", [-1]), ("s_out", "BYTES", [-1])]
_ONNX = {"FP32": TensorProto.FLOAT, "FP64": TensorProto.DOUBLE, "FP16": TensorProto.FLOAT16,
         "INT32": TensorProto.INT32, "INT64": TensorProto.INT64, "UINT8": TensorProto.UINT8,
         "BOOL": TensorProto.BOOL, "BYTES": TensorProto.STRING}


def _value(name: str, datatype: str, shape: list[int]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, _ONNX[datatype], [d if d != -1 else "batch" for d in shape])


def _const(name: str, array: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=onnx.numpy_helper.from_array(array, name))


def typed_model() -> onnx.ModelProto:
    nodes = [
        _const("two32", np.array(2, np.float32)), _const("one64", np.array(1, np.float64)),
        _const("two16", np.array(2, np.float16)), _const("one8", np.array(1, np.uint8)),
        _const("axis1", np.array([1], np.int64)),
        helper.make_node("Mul", ["x", "two32"], ["y"]),
        helper.make_node("Add", ["d", "one64"], ["d1"]),
        helper.make_node("Mul", ["h", "two16"], ["h2"]),
        helper.make_node("Cast", ["i"], ["i64"], to=TensorProto.INT64),
        helper.make_node("ReduceSum", ["i64", "axis1"], ["isum"], keepdims=0),
        helper.make_node("Add", ["u", "one8"], ["u1"]),
        helper.make_node("Not", ["b"], ["nb"]),
        helper.make_node("Identity", ["s"], ["s_out"]),
    ]
    graph = helper.make_graph(nodes, "typed", [_value(*t) for t in TYPED_INPUTS], [_value(*t) for t in TYPED_OUTPUTS])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=8)


def typed_samples(rows: int = 4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"x": rng.normal(size=(rows, 3)).astype(np.float32), "d": rng.normal(size=(rows, 2)),
            "h": rng.normal(size=(rows, 2)).astype(np.float16),
            "i": rng.integers(-50, 50, size=(rows, 2), dtype=np.int32),
            "u": rng.integers(0, 255, size=rows, dtype=np.uint8), "b": rng.integers(0, 2, size=rows).astype(bool),
            "s": np.array([f"tag-{k}" for k in range(rows)])}


def slow_model(size: int = 96) -> onnx.ModelProto:
    """``y = 2 * x`` after ``max(x[:, 0])`` products of a ``size``×``size`` matrix (work the optimizer keeps)."""
    weights = (np.eye(size) * 0.5 + 0.01).astype(np.float32)
    body = helper.make_graph(
        [_const("w", weights), helper.make_node("MatMul", ["m_in", "w"], ["m_mul"]),
         helper.make_node("Tanh", ["m_mul"], ["m_out"]), helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body",
        [helper.make_tensor_value_info("iter", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("m_in", TensorProto.FLOAT, [size, size])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("m_out", TensorProto.FLOAT, [size, size])])
    nodes = [
        _const("start", np.array([0], np.int64)), _const("stop", np.array([1], np.int64)),
        _const("axis1", np.array([1], np.int64)), _const("true", np.array(True)),
        _const("m0", np.full((size, size), 0.5, np.float32)), _const("two", np.array(2, np.float32)),
        _const("zero", np.array(0, np.float32)),
        helper.make_node("Slice", ["x", "start", "stop", "axis1"], ["col0"]),
        helper.make_node("ReduceMax", ["col0"], ["most"], keepdims=0),
        helper.make_node("Cast", ["most"], ["trips"], to=TensorProto.INT64),
        helper.make_node("Loop", ["trips", "true", "m0"], ["m_final"], body=body),
        helper.make_node("ReduceSum", ["m_final"], ["total"], keepdims=0),
        helper.make_node("Mul", ["total", "zero"], ["nothing"]),
        helper.make_node("Mul", ["x", "two"], ["twice"]),
        helper.make_node("Add", ["twice", "nothing"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "slow", [_value("x", "FP32", [-1, 2])], [_value("y", "FP32", [-1, 2])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=8)


def _tensors(spec: list[tuple[str, str, list[int]]]) -> list[dict[str, Any]]:
    return [{"name": n, "datatype": t, "shape": s} for n, t, s in spec]


def build_onnx_artifact(workdir: Path, out_root: Path, name: str, model: onnx.ModelProto,
                        samples: dict[str, np.ndarray], inputs: list[tuple[str, str, list[int]]],
                        outputs: list[tuple[str, str, list[int]]], *, fp16: bool = False,
                        serving: dict[str, Any] | None = None) -> Path:
    """Stamp an in-memory ONNX model into ``out_root/<name>/1`` with `modelfleet convert`'s pipeline."""
    source = workdir / name
    source.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(source / "model.onnx"))
    np.savez(source / "samples.npz", **samples)
    spec = {"name": name, "version": "1", "source": {"framework": "onnx", "path": "model.onnx"},
            "convert": {"opset": OPSET, "fp16": fp16, "parity": {"samples": "samples.npz"}},
            "inputs": _tensors(inputs), "outputs": _tensors(outputs),
            "task": {"type": "regression"}, "serving": serving or {"providers": ["cpu"]}}
    (source / "model.yml").write_text(yaml.safe_dump(spec))
    return build_artifact(load_spec(source / "model.yml"), out_root).path


def build_typed(workdir: Path, out_root: Path) -> Path:
    return build_onnx_artifact(workdir, out_root, "typed", typed_model(), typed_samples(), TYPED_INPUTS,
                               TYPED_OUTPUTS)


def build_slow(workdir: Path, out_root: Path, *, fp16: bool = False) -> Path:
    samples = {"x": np.array([[0, 1], [1, 2], [3, 4]], np.float32)}
    return build_onnx_artifact(workdir, out_root, "slow", slow_model(), samples, [("x", "FP32", [-1, 2])],
                               [("y", "FP32", [-1, 2])], fp16=fp16)
