"""Build new versions of the credit-risk model for canary rollouts: one healthy, three broken in distinct ways.

``python examples/credit-risk/variants.py KIND --version N --out DIR`` writes a self-contained spec
directory ``DIR`` (``model.yml`` named credit-risk at version ``N``, the model file and its data) that
``modelfleet convert DIR/model.yml`` builds like any other version. Kinds (see VARIANTS.md):

- ``good``: retrained on fresh data from the same distribution; should be promoted.
- ``erroring``: v1's ONNX graph plus lookup tables that lack the newest region and employment codes,
  so ONNX Runtime fails on ~10% of production rows (error-rate gate).
- ``slow``: v1's predictions after a fixed ~20 ms of matrix products per execution (latency gates).
- ``drift``: retrained on shifted data with a shifted reference, so production traffic drifts against
  its profile (drift gates).

Needs v1 trained beside this script (``python examples/credit-risk/train.py``). Deterministic.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import shutil
import statistics
import time
from pathlib import Path
from types import ModuleType

import joblib
import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import yaml
from onnx import TensorProto, helper, numpy_helper

from modelfleet.convert.frontends import SourceFiles, export
from modelfleet.spec import ModelSpec, load_spec
from modelfleet.tensors import load_tensor_file

HERE = Path(__file__).resolve().parent
KINDS = ("good", "erroring", "slow", "drift")
FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]

REGION_COLUMN, EMPLOYMENT_COLUMN = 6, 7
#: Codes the erroring variant's lookup tables cover: region 4 and employment 3 are missing (~10% of rows).
KNOWN_REGIONS, KNOWN_EMPLOYMENT = 4, 3
#: The slow variant's busy loop: SLOW_TRIPS products of a SLOW_SIZE² matrix (~20 ms on one core of a 2-core VM).
SLOW_SIZE, SLOW_TRIPS = 128, 600
#: Seeds of each retrained kind: (training, parity samples, reference); v1 uses (7, 11, 13).
SEEDS = {"good": (107, 111, 113), "drift": (207, 211, 213)}
DRIFT_SHIFT = 1.0
PRODUCTION_SEED = 99
OUTPUTS = ["label", "probabilities"]
MIN_ERROR_SHARE, MAX_ERROR_SHARE = 0.05, 0.20


@functools.cache
def _train_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("credit_risk_train", HERE / "train.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {HERE / 'train.py'}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def generate(rows: int, seed: int, shift: float = 0.0) -> tuple[FloatArray, IntArray]:
    """train.generate: credit-risk features (float32, [rows, 8]) and default labels."""
    features, labels = _train_module().generate(rows, seed, shift)
    return np.asarray(features, dtype=np.float32), np.asarray(labels, dtype=np.int64)


def _v1_spec() -> ModelSpec:
    if not (HERE / "model.joblib").is_file():
        raise FileNotFoundError(f"{HERE / 'model.joblib'} is missing: run python {HERE / 'train.py'} first")
    return load_spec(HERE / "model.yml")


def v1_onnx() -> onnx.ModelProto:
    """v1's scikit-learn pipeline converted by modelfleet's own sklearn front end (before optimization)."""
    spec = _v1_spec()
    assert spec.convert.parity is not None
    samples = load_tensor_file(spec.convert.parity.samples, spec.inputs, purpose="samples", allow_nan=False)
    return export(spec, SourceFiles(model=spec.source.path.read_bytes()), samples).model


def _write_spec(out_dir: Path, version: int, source: dict[str, str], description: str) -> Path:
    data = yaml.safe_load((HERE / "model.yml").read_text(encoding="utf-8"))
    data.update(version=str(version), description=description, source=source, reference="data/reference.npz")
    data["convert"]["parity"]["samples"] = "data/sample.npz"
    path = out_dir / "model.yml"
    header = f"# credit-risk variant written by examples/credit-risk/variants.py: {description}\n"
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=120)
    path.write_text(header + text, encoding="utf-8")
    return path


def _save_data(out_dir: Path, sample: FloatArray, reference: FloatArray, labels: IntArray) -> None:
    data = out_dir / "data"
    data.mkdir(parents=True, exist_ok=True)
    np.savez(data / "sample.npz", x=sample)
    np.savez(data / "reference.npz", x=reference, labels=labels)


def _retrained(kind: str, version: int, out_dir: Path, shift: float, description: str) -> Path:
    train_seed, sample_seed, reference_seed = SEEDS[kind]
    train = _train_module()
    features, labels = generate(20_000, train_seed, shift)
    joblib.dump(train.build_pipeline().fit(features, labels), out_dir / "model.joblib")
    reference, reference_labels = generate(5_000, reference_seed, shift)
    _save_data(out_dir, generate(256, sample_seed, shift)[0], reference, reference_labels)
    return _write_spec(out_dir, version, {"framework": "sklearn", "path": "model.joblib"}, description)


def _const(name: str, array: npt.NDArray[np.generic]) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(array, name))


def _add_to_output(model: onnx.ModelProto, output: str, term: str, nodes: list[onnx.NodeProto]) -> onnx.ModelProto:
    """A copy of ``model`` whose ``output`` is the original plus ``term`` (computed by ``nodes``)."""
    changed = onnx.ModelProto()
    changed.CopyFrom(model)
    original = f"{output}_v1"
    for node in changed.graph.node:
        node.input[:] = [original if name == output else name for name in node.input]
        node.output[:] = [original if name == output else name for name in node.output]
    changed.graph.node.extend([*nodes, helper.make_node("Add", [original, term], [output], name="variant_add")])
    onnx.checker.check_model(changed, full_check=True)
    return changed


def erroring_onnx(base: onnx.ModelProto) -> onnx.ModelProto:
    """v1 plus ``0 × (region_table[region] + employment_table[employment])`` added to the probabilities.

    The tables lack the last code of each category, so ONNX Runtime's Gather fails ("indices element
    out of data bounds") on rows with region 4 or employment 3; every other row keeps v1's outputs.
    """
    nodes = [
        _const("variant_region_table", np.linspace(0.1, 0.4, KNOWN_REGIONS, dtype=np.float32)),
        _const("variant_employment_table", np.linspace(0.1, 0.3, KNOWN_EMPLOYMENT, dtype=np.float32)),
        _const("variant_columns", np.array([REGION_COLUMN, EMPLOYMENT_COLUMN], np.int64)),
        _const("variant_zero", np.array(0, np.float32)),
        helper.make_node("Gather", ["x", "variant_columns"], ["variant_codes_f"], axis=1),
        helper.make_node("Cast", ["variant_codes_f"], ["variant_codes"], to=TensorProto.INT64),
        helper.make_node("Split", ["variant_codes"], ["variant_region", "variant_employment"], axis=1),
        helper.make_node("Gather", ["variant_region_table", "variant_region"], ["variant_region_risk"]),
        helper.make_node("Gather", ["variant_employment_table", "variant_employment"], ["variant_employment_risk"]),
        helper.make_node("Add", ["variant_region_risk", "variant_employment_risk"], ["variant_risk"]),
        helper.make_node("Mul", ["variant_risk", "variant_zero"], ["variant_nothing"]),
    ]
    return _add_to_output(base, "probabilities", "variant_nothing", nodes)


def slow_onnx(base: onnx.ModelProto) -> onnx.ModelProto:
    """v1 plus ``0 × sum(tanh-products)`` of a SLOW_TRIPS-step Loop seeded by the batch size (not foldable)."""
    size = SLOW_SIZE
    body = helper.make_graph(
        [
            helper.make_node("MatMul", ["variant_m_in", "variant_weights"], ["variant_product"]),
            helper.make_node("Tanh", ["variant_product"], ["variant_m_out"]),
            helper.make_node("Identity", ["variant_cond_in"], ["variant_cond_out"]),
        ],
        "variant_busy_step",
        [
            helper.make_tensor_value_info("variant_iteration", TensorProto.INT64, []),
            helper.make_tensor_value_info("variant_cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("variant_m_in", TensorProto.FLOAT, [size, size]),
        ],
        [
            helper.make_tensor_value_info("variant_cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("variant_m_out", TensorProto.FLOAT, [size, size]),
        ],
    )
    nodes = [
        _const("variant_weights", (np.eye(size) * 0.5 + 0.01).astype(np.float32)),
        _const("variant_start", np.full((size, size), 0.5, np.float32)),
        _const("variant_trips", np.array(SLOW_TRIPS, np.int64)),
        _const("variant_true", np.array(True)),
        _const("variant_zero", np.array(0, np.float32)),
        _const("variant_small", np.array(1e-3, np.float32)),
        # Seed the loop with the batch size, known only at run time: the optimizer cannot fold the loop away.
        helper.make_node("Shape", ["x"], ["variant_shape"], start=0, end=1),
        helper.make_node("Cast", ["variant_shape"], ["variant_rows"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["variant_rows", "variant_small"], ["variant_offset"]),
        helper.make_node("Add", ["variant_start", "variant_offset"], ["variant_m0"]),
        helper.make_node("Loop", ["variant_trips", "variant_true", "variant_m0"], ["variant_m_final"], body=body),
        helper.make_node("ReduceSum", ["variant_m_final"], ["variant_total"], keepdims=0),
        helper.make_node("Mul", ["variant_total", "variant_zero"], ["variant_nothing"]),
    ]
    return _add_to_output(base, "probabilities", "variant_nothing", nodes)


def quiet_session(model: onnx.ModelProto | Path, threads: int = 1) -> ort.InferenceSession:
    """A CPU session that does not log failed runs (the erroring variant fails on purpose)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 4
    source = str(model) if isinstance(model, Path) else model.SerializeToString()
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def failing_rows(variant: ort.InferenceSession, features: FloatArray) -> npt.NDArray[np.bool_]:
    """Which rows make ``variant`` fail, running each row alone (as the server's one-by-one retry does)."""
    failed = np.zeros(len(features), dtype=bool)
    for index in range(len(features)):
        try:
            variant.run(None, {"x": features[index : index + 1]})
        except Exception:  # ONNX Runtime raises its own exception types
            failed[index] = True
    return failed


def check_erroring(variant: ort.InferenceSession, base: ort.InferenceSession) -> float:
    """Share of production-like rows on which ``variant`` fails; raises unless the others get v1's outputs."""
    features = generate(2_000, PRODUCTION_SEED)[0]
    failed = failing_rows(variant, features)
    answered = {"x": features[~failed]}
    for name, ours, theirs in zip(OUTPUTS, variant.run(OUTPUTS, answered), base.run(OUTPUTS, answered), strict=True):
        if not np.array_equal(ours, theirs):
            raise RuntimeError(f"erroring variant: output {name!r} differs from v1 on rows it answers")
    return float(failed.mean())


def added_latency_ms(
    variant: ort.InferenceSession, base: ort.InferenceSession, rows: int, repeats: int = 15
) -> tuple[float, float]:
    """Median execution time of ``base`` and the extra time of ``variant`` (ms) on batches of ``rows``."""
    feeds = {"x": generate(rows, PRODUCTION_SEED)[0]}
    models = (base, variant)
    timings: tuple[list[float], list[float]] = ([], [])
    for model in models:
        model.run(None, feeds)  # warm-up
    for _repeat in range(repeats):
        for model, samples in zip(models, timings, strict=True):
            started = time.perf_counter()
            model.run(None, feeds)
            samples.append(time.perf_counter() - started)
    base_ms, variant_ms = (statistics.median(samples) * 1e3 for samples in timings)
    return base_ms, variant_ms - base_ms


def _onnx_variant(kind: str, version: int, out_dir: Path) -> Path:
    spec = _v1_spec()
    assert spec.convert.parity is not None and spec.reference is not None
    base = v1_onnx()
    model = erroring_onnx(base) if kind == "erroring" else slow_onnx(base)
    onnx.save(model, str(out_dir / "model.onnx"))
    with np.load(spec.convert.parity.samples) as archive:
        sample = np.asarray(archive["x"], dtype=np.float32)
    with np.load(spec.reference) as archive:
        reference = np.asarray(archive["x"], dtype=np.float32)
        labels = np.asarray(archive["labels"], dtype=np.int64)
    description = "v1 behind ~20 ms of busy work per execution"
    if kind == "erroring":
        checker = quiet_session(model)
        share = check_erroring(checker, quiet_session(base))
        if not MIN_ERROR_SHARE <= share <= MAX_ERROR_SHARE:
            raise RuntimeError(f"erroring variant fails on {share:.1%} of production-like rows")
        # Conversion runs the model on the parity samples and the reference: keep only rows it answers.
        sample = sample[~failing_rows(checker, sample)]
        keep = ~failing_rows(checker, reference)
        reference, labels = reference[keep], labels[keep]
        description = "v1 with lookup tables that lack region 4 and employment 3 (fails on those rows)"
    _save_data(out_dir, sample, reference, labels)
    return _write_spec(out_dir, version, {"framework": "onnx", "path": "model.onnx"}, description)


def make_variant(kind: str, version: int, out_dir: Path) -> Path:
    """Write the ``kind`` variant of credit-risk at ``version`` into ``out_dir``; the path of its model.yml."""
    if kind not in KINDS:
        raise ValueError(f"unknown variant {kind!r}; choose one of {', '.join(KINDS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("model.joblib", "model.onnx", "data"):
        target = out_dir / stale
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    if kind == "good":
        return _retrained(kind, version, out_dir, 0.0, "retrained on fresh data from the same distribution")
    if kind == "drift":
        return _retrained(
            kind,
            version,
            out_dir,
            DRIFT_SHIFT,
            f"retrained on shifted data (shift={DRIFT_SHIFT}), reference from the shifted data",
        )
    return _onnx_variant(kind, version, out_dir)


def _report(kind: str, out_dir: Path) -> None:
    """Print what the variant does to production-like rows (ONNX Runtime, one thread)."""
    if kind not in ("erroring", "slow"):
        return
    variant, base = quiet_session(out_dir / "model.onnx"), quiet_session(v1_onnx())
    if kind == "erroring":
        print(
            f"erroring: {check_erroring(variant, base):.1%} of 2000 production-like rows fail; "
            "the others get v1's outputs exactly"
        )
        return
    size_kib = (out_dir / "model.onnx").stat().st_size / 1024
    for rows in (1, 64):
        base_ms, extra_ms = added_latency_ms(variant, base, rows)
        print(
            f"slow: batch {rows}: v1 {base_ms:.2f} ms, variant +{extra_ms:.1f} ms per execution "
            f"(1 thread; model {size_kib:.0f} KiB)"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--version", type=int, required=True, help="version of the new model (v1 is running)")
    parser.add_argument("--out", type=Path, required=True, help="spec directory to write")
    args = parser.parse_args(argv)
    if args.version < 1:
        parser.error("--version must be a positive integer")
    path = make_variant(args.kind, args.version, args.out)
    print(f"credit-risk {args.kind} variant, version {args.version}: {path}")
    _report(args.kind, args.out)


if __name__ == "__main__":
    main()
