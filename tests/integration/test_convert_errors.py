"""Bad input to conversion: each case fails with a specific message and leaves no artifact behind."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from modelfleet.convert import build_artifact
from modelfleet.errors import ArtifactError, ConversionError, ModelfleetError, SpecError, ValidationError
from modelfleet.spec import load_spec
from modelfleet.tensors import TensorFileError

pytestmark = pytest.mark.integration


@pytest.fixture
def example(trained_examples: Path, tmp_path: Path) -> Path:
    """A private copy of the trained credit-risk example that a test may damage."""
    copy = tmp_path / "credit-risk"
    shutil.copytree(trained_examples / "credit-risk", copy)
    return copy


def _edit(spec_path: Path, **changes: Any) -> Path:
    data = yaml.safe_load(spec_path.read_text())
    for dotted, value in changes.items():
        node = data
        *parents, leaf = dotted.split("__")
        for part in parents:
            node = node[part]
        node[leaf] = value
    spec_path.write_text(yaml.safe_dump(data))
    return spec_path


def _assert_nothing_published(root: Path) -> None:
    if root.exists():
        leftovers = [p.relative_to(root) for p in root.rglob("*")]
        assert leftovers in ([], [Path("credit-risk")]), leftovers


def _fails(example: Path, out: Path, error: type[Exception], *fragments: str) -> str:
    with pytest.raises(error) as caught:
        build_artifact(load_spec(example / "model.yml"), out)
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, message
    _assert_nothing_published(out)
    return message


def test_missing_source(example: Path, tmp_path: Path) -> None:
    (example / "model.joblib").unlink()
    _fails(example, tmp_path / "out", ConversionError, "source.path", "model.joblib: no such file")


def test_source_is_a_directory(example: Path, tmp_path: Path) -> None:
    (example / "model.joblib").unlink()
    (example / "model.joblib").mkdir()
    _fails(example, tmp_path / "out", ConversionError, "is a directory")


def test_corrupted_sklearn_source(example: Path, tmp_path: Path) -> None:
    (example / "model.joblib").write_bytes(b"\x80\x04 definitely not a pickle")
    _fails(example, tmp_path / "out", ConversionError, "not a loadable joblib/pickle file")


def test_unknown_framework_is_a_spec_error(example: Path, tmp_path: Path) -> None:
    _edit(example / "model.yml", source__framework="xgboost-magic")
    with pytest.raises(SpecError) as caught:
        load_spec(example / "model.yml")
    assert any(p.startswith("source.framework:") and "sklearn" in p for p in caught.value.problems)


def test_tensorflow_without_tf2onnx_says_what_to_install(example: Path, tmp_path: Path) -> None:
    if importlib.util.find_spec("tensorflow") is not None:
        pytest.skip("tensorflow is installed here; the missing-library path cannot be exercised")
    _edit(example / "model.yml", source__framework="tensorflow")
    _fails(example, tmp_path / "out", ConversionError, "needs the Python package 'tensorflow'",
           "pip install 'modelfleet[tensorflow]'")


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupted_onnx_source(example: Path, trained_examples: Path, tmp_path: Path, damage: str) -> None:
    good = build_artifact(load_spec(trained_examples / "credit-risk" / "model.yml"), tmp_path / "good")
    data = (good.path / "model.onnx").read_bytes()
    broken = b"\x08\x07\x12\x04junk" * 50 if damage == "garbage" else data[: len(data) // 2]
    (example / "broken.onnx").write_bytes(broken)
    _edit(example / "model.yml", source={"framework": "onnx", "path": "broken.onnx"})
    with pytest.raises((ConversionError, ValidationError)) as caught:
        build_artifact(load_spec(example / "model.yml"), tmp_path / "out")
    assert any(s in str(caught.value) for s in ("not a readable ONNX file", "onnx checker", "not an ONNX model"))
    _assert_nothing_published(tmp_path / "out")


def test_onnx_inputs_that_do_not_match_the_spec(example: Path, trained_examples: Path, tmp_path: Path) -> None:
    good = build_artifact(load_spec(trained_examples / "credit-risk" / "model.yml"), tmp_path / "good")
    shutil.copy(good.path / "model.onnx", example / "given.onnx")
    data = np.load(example / "data" / "sample.npz")["x"]
    np.savez(example / "data" / "sample.npz", features=data)
    _edit(example / "model.yml", source={"framework": "onnx", "path": "given.onnx"},
          inputs=[{"name": "features", "datatype": "FP32", "shape": [-1, 8]}])
    message = _fails(example, tmp_path / "out", ValidationError, "signature", "'features'")
    assert "the graph needs input(s) ['x']" in message


def test_declared_width_differs_from_the_graph(example: Path, tmp_path: Path) -> None:
    _edit(example / "model.yml", outputs=[{"name": "label", "datatype": "INT64", "shape": [-1]},
                                          {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}])
    _fails(example, tmp_path / "out", ValidationError, "signature", "dimension 1 declared 3, the graph fixes it at 2")


def test_nan_in_parity_samples(example: Path, tmp_path: Path) -> None:
    samples = np.load(example / "data" / "sample.npz")["x"]
    samples[17, 3] = np.nan
    samples[40, 0] = np.inf
    np.savez(example / "data" / "sample.npz", x=samples)
    _fails(example, tmp_path / "out", TensorFileError, "2 NaN/inf value(s), first at index (17, 3)")


def test_samples_with_the_wrong_width(example: Path, tmp_path: Path) -> None:
    np.savez(example / "data" / "sample.npz", x=np.zeros((10, 5), dtype=np.float32))
    _fails(example, tmp_path / "out", TensorFileError, "dimension 1 is 5, the input declares 8")


def test_parity_failure_names_the_worst_element(example: Path, tmp_path: Path) -> None:
    # float32 ONNX vs float64 scikit-learn always differ a little: zero tolerance must fail.
    _edit(example / "model.yml", convert__parity__rtol=0.0, convert__parity__atol=0.0)
    _fails(example, tmp_path / "out", ValidationError, "parity: output 'probabilities'",
                     "worst at index [", "source ", "ONNX ")


def test_source_changed_between_runs_is_refused_then_forced(example: Path, tmp_path: Path) -> None:
    import joblib
    from sklearn.linear_model import LogisticRegression

    out = tmp_path / "out"
    first = build_artifact(load_spec(example / "model.yml"), out)
    pipeline = joblib.load(example / "model.joblib")
    pipeline.set_params(classify=LogisticRegression(C=0.01, max_iter=500))
    x = np.load(example / "data" / "reference.npz")
    pipeline.fit(x["x"], x["labels"])
    joblib.dump(pipeline, example / "model.joblib")
    before = (first.path / "manifest.json").read_bytes()
    with pytest.raises(ArtifactError) as caught:
        build_artifact(load_spec(example / "model.yml"), out)
    assert "already holds a different build" in str(caught.value) and "source sha256" in str(caught.value)
    assert "raise `version`" in str(caught.value)
    assert (first.path / "manifest.json").read_bytes() == before
    forced = build_artifact(load_spec(example / "model.yml"), out, force=True)
    assert forced.outcome == "rebuilt" and forced.build_key != first.build_key


def test_output_directory_that_cannot_be_written(example: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the artifact root should be")
    with pytest.raises(ArtifactError) as caught:
        build_artifact(load_spec(example / "model.yml"), blocker)
    assert "cannot write under" in str(caught.value)
    assert blocker.read_text().startswith("a file")


def test_wrong_task_type_for_the_model(example: Path, tmp_path: Path) -> None:
    _edit(example / "model.yml", task={"type": "regression"}, outputs=None)
    _fails(example, tmp_path / "out", ConversionError, "task.type is regression", "classifier")


def test_cli_reports_spec_errors_with_paths_and_exit_code_2(example: Path, tmp_path: Path) -> None:
    _edit(example / "model.yml", rollout__steps=[10, 50, 25], name="Credit_Risk")
    done = subprocess.run([sys.executable, "-m", "modelfleet.cli", "convert", str(example / "model.yml"),
                           "-o", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "rollout.steps:" in done.stderr and "name: must be DNS-safe" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


def test_errors_share_one_base_class() -> None:
    for error in (ArtifactError, ConversionError, SpecError, ValidationError, TensorFileError):
        assert issubclass(error, ModelfleetError)
