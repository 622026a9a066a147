"""Conversion of real models end to end: both examples, every front end, idempotency, check mode."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import yaml

from modelfleet import artifact
from modelfleet.convert import build_artifact
from modelfleet.spec import load_spec
from modelfleet.stats.profile import DataProfile

pytestmark = pytest.mark.integration

EXAMPLE_NAMES = ["credit-risk", "mlp"]


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("example", EXAMPLE_NAMES)
def test_example_converts_to_a_verified_stamped_artifact(trained_examples: Path, tmp_path: Path,
                                                          example: str) -> None:
    spec = load_spec(trained_examples / example / "model.yml")
    result = build_artifact(spec, tmp_path)

    assert result.changed and result.outcome == "built"
    assert result.path == tmp_path / spec.name / spec.version
    manifest = artifact.verify_artifact(result.path)
    assert set(manifest.files) >= {"model.onnx", "profile.json"}
    assert manifest.build_key == result.build_key
    assert manifest.source["sha256"] == artifact.sha256_file(spec.source.path)

    model = onnx.load(str(result.path / "model.onnx"))
    stamp = {p.key: p.value for p in model.metadata_props}
    assert stamp["modelfleet.source_sha256"] == manifest.source["sha256"]
    assert stamp["modelfleet.spec_sha256"] == spec.spec_sha256
    assert stamp["modelfleet.opset"] == str(spec.convert.opset)
    assert stamp["modelfleet.framework"] == spec.source.framework.value
    assert {"modelfleet.framework_version", "modelfleet.created"} <= set(stamp)
    # ONNX Runtime reads the stamp back the way a server would.
    assert _session(result.path / "model.onnx").get_modelmeta().custom_metadata_map["modelfleet.build_key"] \
        == result.build_key

    parity = manifest.parity["outputs"]
    assert parity["predicted label"]["mismatches"] == 0
    for report in parity.values():
        if report["kind"] == "float":
            assert report["failing"] == 0 and report["max_abs_diff"] <= report["allowed"] + 1e-12

    profile = DataProfile.model_validate_json((result.path / "profile.json").read_bytes())
    assert list(profile.features) == [f.name for f in spec.features]
    assert "label" in profile.predictions
    assert profile.rows == int(np.load(spec.reference)["x"].shape[0])


def test_predictions_of_the_artifact_match_the_source_model(trained_examples: Path, tmp_path: Path) -> None:
    import joblib

    spec = load_spec(trained_examples / "credit-risk" / "model.yml")
    result = build_artifact(spec, tmp_path)
    pipeline = joblib.load(spec.source.path)
    rows = np.load(spec.reference)["x"][:500]
    label, probabilities = _session(result.path / "model.onnx").run(None, {"x": rows})
    np.testing.assert_array_equal(label, pipeline.predict(rows))
    np.testing.assert_allclose(probabilities, pipeline.predict_proba(rows), rtol=1e-4, atol=1e-5)


def test_fp16_variant_is_built_and_checked_with_its_own_tolerance(trained_examples: Path, tmp_path: Path) -> None:
    spec = load_spec(trained_examples / "mlp" / "model.yml")
    assert spec.convert.fp16
    result = build_artifact(spec, tmp_path)
    manifest = artifact.verify_artifact(result.path)
    assert "model.fp16.onnx" in manifest.files
    fp16 = manifest.parity["fp16"]
    assert fp16["probabilities"]["max_abs_diff"] > manifest.parity["outputs"]["probabilities"]["max_abs_diff"]
    assert fp16["probabilities"]["rtol"] == spec.convert.parity.fp16_rtol  # type: ignore[union-attr]
    assert fp16["predicted label"]["mismatches"] == 0
    initializers = onnx.load(str(result.path / "model.fp16.onnx")).graph.initializer
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in initializers)


def test_second_build_is_unchanged_and_check_mode_builds_nothing(trained_examples: Path, tmp_path: Path) -> None:
    spec = load_spec(trained_examples / "credit-risk" / "model.yml")
    planned = build_artifact(spec, tmp_path, check_only=True)
    assert planned.changed and planned.outcome == "would build" and not planned.path.exists()

    first = build_artifact(spec, tmp_path)
    model_mtime = (first.path / "model.onnx").stat().st_mtime_ns
    second = build_artifact(spec, tmp_path)
    assert not second.changed and second.outcome == "unchanged"
    assert second.build_key == first.build_key
    assert (first.path / "model.onnx").stat().st_mtime_ns == model_mtime
    assert not build_artifact(spec, tmp_path, check_only=True).changed


def test_rollout_settings_do_not_change_the_build(trained_examples: Path, tmp_path: Path) -> None:
    spec_path = trained_examples / "credit-risk" / "model.yml"
    first = build_artifact(load_spec(spec_path), tmp_path)
    data = yaml.safe_load(spec_path.read_text())
    data["rollout"]["steps"] = [5, 20, 100]
    data["serving"]["batching"]["max_batch"] = 8
    edited = spec_path.with_name("edited.yml")
    edited.write_text(yaml.safe_dump(data))
    again = build_artifact(load_spec(edited), tmp_path)
    assert not again.changed and again.build_key == first.build_key


def test_damaged_artifact_is_rebuilt(trained_examples: Path, tmp_path: Path) -> None:
    spec = load_spec(trained_examples / "credit-risk" / "model.yml")
    first = build_artifact(spec, tmp_path)
    (first.path / "profile.json").write_text("{}")
    repaired = build_artifact(spec, tmp_path)
    assert repaired.changed and repaired.outcome == "rebuilt" and "damaged" in repaired.reason
    artifact.verify_artifact(repaired.path)


def test_onnx_source_is_validated_optimized_and_stamped(trained_examples: Path, tmp_path: Path) -> None:
    spec_path = trained_examples / "credit-risk" / "model.yml"
    built = build_artifact(load_spec(spec_path), tmp_path / "first")
    data = yaml.safe_load(spec_path.read_text())
    data.update(name="credit-risk-onnx", source={"framework": "onnx", "path": str(built.path / "model.onnx")})
    onnx_spec = spec_path.with_name("from-onnx.yml")
    onnx_spec.write_text(yaml.safe_dump(data))
    result = build_artifact(load_spec(onnx_spec), tmp_path / "second")
    manifest = artifact.verify_artifact(result.path)
    assert manifest.source["framework"] == "onnx"
    assert manifest.parity["outputs"]["probabilities"]["max_abs_diff"] < 1e-6


@pytest.mark.parametrize("form", ["torchscript", "pickled-module"])
def test_pytorch_module_without_factory(trained_examples: Path, tmp_path: Path, form: str) -> None:
    import torch

    example = trained_examples / "mlp"
    sys.path.insert(0, str(example))
    try:
        from model_def import build_model  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(example))
    network = build_model()
    network.load_state_dict(torch.load(example / "model.pt", weights_only=True))
    network.eval()
    target = example / f"{form}.pt"
    if form == "torchscript":
        torch.jit.save(torch.jit.script(network), str(target))
    else:
        torch.save(network, target, pickle_module=pickle)
    data = yaml.safe_load((example / "model.yml").read_text())
    data["source"] = {"framework": "pytorch", "path": target.name}
    data["name"] = f"mlp-{form}"
    spec_path = example / f"{form}.yml"
    spec_path.write_text(yaml.safe_dump(data))
    result = build_artifact(load_spec(spec_path), tmp_path)
    assert artifact.verify_artifact(result.path).parity["outputs"]["predicted label"]["mismatches"] == 0


def test_regression_tolerance_scales_with_the_output_range(tmp_path: Path) -> None:
    """Float32 trees vs float64 scikit-learn on targets up to ~1000 (onnxruntime#4130)."""
    import joblib
    from sklearn.ensemble import RandomForestRegressor

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 5)).astype(np.float32)
    y = 500 + 400 * np.tanh(x[:, 0] * 3) + 10 * x[:, 1]
    joblib.dump(RandomForestRegressor(n_estimators=20, random_state=0).fit(x, y), tmp_path / "rf.joblib")
    np.savez(tmp_path / "sample.npz", x=x[:300])
    (tmp_path / "model.yml").write_text(yaml.safe_dump({
        "name": "rf", "version": "1", "source": {"framework": "sklearn", "path": "rf.joblib"},
        "convert": {"parity": {"samples": "sample.npz", "rtol": 0.0, "atol": 1e-5}},
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 5]}],
        "features": [{"name": f"f{i}", "type": "numeric"} for i in range(5)],
        "task": {"type": "regression"}}))
    result = build_artifact(load_spec(tmp_path / "model.yml"), tmp_path / "out")
    report = result.manifest["parity"]["outputs"]["variable"]  # type: ignore[index]
    assert report["scale"] > 800
    assert report["allowed"] == pytest.approx(1e-5 * report["scale"])


def test_cli_prints_the_artifact_path_and_json(trained_examples: Path, tmp_path: Path) -> None:
    spec = trained_examples / "credit-risk" / "model.yml"
    cli = [sys.executable, "-m", "modelfleet.cli", "convert", str(spec), "--output", str(tmp_path)]
    done = subprocess.run(cli, capture_output=True, text=True, timeout=300, check=True)
    assert done.stdout.strip() == str(tmp_path / "credit-risk" / "1")
    assert "parity probabilities" in done.stderr
    again = subprocess.run([*cli, "--json"], capture_output=True, text=True, timeout=300, check=True)
    result = json.loads(again.stdout)
    assert result["changed"] is False and result["outcome"] == "unchanged"
