"""Unit tests of modelfleet.spec: loading, path-qualified errors, build identity, quantities."""

from __future__ import annotations

import copy
import string
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from modelfleet import durations
from modelfleet.errors import SpecError
from modelfleet.spec import ModelSpec, load_spec, parse_duration, parse_quantity, parse_spec

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


def minimal() -> dict[str, Any]:
    return {
        "name": "m",
        "version": "1",
        "source": {"framework": "onnx", "path": "model.onnx"},
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}],
        "task": {"type": "regression"},
    }


def with_(**changes: Any) -> dict[str, Any]:
    """minimal() with top-level fields replaced (``None`` deletes the field)."""
    data = minimal()
    for key, value in changes.items():
        if value is None:
            del data[key]
        else:
            data[key] = value
    return data


def problems(data: Any) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec(data, Path("/base"))
    return info.value.problems


def numeric(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "numeric", **extra}


# --- examples and the happy path ------------------------------------------------------------------


def test_credit_risk_example_loads_with_paths_relative_to_the_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(EXAMPLES)  # a relative spec path; its contents resolve against its own directory
    spec = load_spec("credit-risk/model.yml")
    here = EXAMPLES / "credit-risk"
    assert spec.name == "credit-risk" and spec.version == "1"
    assert spec.source.path == here / "model.joblib"
    assert spec.convert.parity is not None and spec.convert.parity.samples == here / "data" / "sample.npz"
    assert spec.reference == here / "data" / "reference.npz"
    assert spec.task.output == "label" and spec.task.probabilities == "probabilities"
    assert spec.feature_location(7)[1] == 7 and spec.features[7].type == "categorical"


def test_mlp_example_loads() -> None:
    spec = load_spec(EXAMPLES / "mlp" / "model.yml")
    assert spec.source.path == EXAMPLES / "mlp" / "model.pt"
    assert spec.source.factory == "model_def.py:build_model"
    assert spec.convert.fp16 and spec.task.labels == [0, 1, 2]
    assert [spec.feature_location(i)[1] for i in range(16)] == list(range(16))
    assert spec.rollout.interval_seconds == 30.0


def test_parse_spec_accepts_a_minimal_dict_and_fills_defaults() -> None:
    spec = parse_spec(minimal(), Path("/base"))
    assert spec.source.path == Path("/base/model.onnx")
    assert spec.rollout.steps == [10.0, 50.0, 100.0] and spec.serving.providers == ["cpu"]
    assert spec.drift.bins == 10 and spec.outputs is None and spec.features == []


def test_old_specs_get_the_judgement_defaults() -> None:
    data = with_(rollout={"steps": [10, 100], "gates": {"latency_vs_stable": 1.5}})
    gates = parse_spec(data, Path("/b")).rollout.gates
    assert (gates.alpha, gates.beta, gates.latency_margin_ms, gates.error_margin, gates.drift_ks) == (
        0.01, 0.05, 5.0, 0.01, 0.1)


def test_integer_version_becomes_text() -> None:
    assert parse_spec(with_(version=3), Path("/base")).version == "3"


# --- one path-qualified problem per mistake ------------------------------------------------------------

R = {"steps": [10, 50, 100]}  # a valid rollout to vary


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (with_(rollout={"stpes": [10]}), "rollout.stpes: unknown field"),
        (with_(source=None), "source: required field is missing"),
        (with_(name="Credit_Risk"), "name: must be DNS-safe"),
        (with_(name="a" * 64), "name: must be DNS-safe"),
        (with_(version="0"), "version: must be a positive integer"),
        (with_(version="v3"), "version: must be a positive integer"),
        (with_(version=-1), "version: must be a positive integer"),
        (with_(version=True), "version: Input should be a valid string"),
        (with_(rollout={"steps": [0, 50]}), "rollout.steps[0]: Input should be greater than 0"),
        (with_(rollout={"steps": [101]}), "rollout.steps[0]: Input should be less than or equal to 100"),
        (with_(rollout={**R, "interval": "10 parsecs"}), "rollout.interval: '10 parsecs' is not a duration"),
        (with_(rollout={**R, "gates": {"alpha": 0.5}}), "rollout.gates.alpha: Input should be less than 0.5"),
        (with_(rollout={**R, "gates": {"beta": 0}}), "rollout.gates.beta: Input should be greater than 0"),
        (with_(rollout={**R, "gates": {"latency_margin_ms": -1}}),
         "rollout.gates.latency_margin_ms: Input should be greater than or equal to 0"),
        (with_(rollout={**R, "gates": {"error_margin": 2}}),
         "rollout.gates.error_margin: Input should be less than or equal to 1"),
        (with_(rollout={**R, "gates": {"drift_ks": 0}}), "rollout.gates.drift_ks: Input should be greater than 0"),
        (with_(serving={"resources": {"memory": "lots"}}), "serving.resources.memory: 'lots' is not a quantity"),
        (with_(serving={"providers": ["cpu", "cpu"]}), "serving.providers: providers must not repeat"),
        (with_(serving={"providers": ["tpu"]}), "serving.providers[0]: Input should be"),
        (with_(source={"framework": "jax", "path": "m"}), "source.framework: Input should be"),
        (with_(source={"framework": "sklearn", "path": "m", "factory": "d.py:f"}),
         "source: factory is only used with framework: pytorch"),
        (with_(source={"framework": "pytorch", "path": "m", "factory": "d:f"}),
         "source: factory 'd:f' must look like"),
        (with_(task={"type": "classification"}), "task: classification needs labels"),
        (with_(task={"type": "classification", "labels": [1]}), "task: classification needs labels"),
        (with_(task={"type": "classification", "labels": [1, "1"]}), "task: labels must be distinct"),
        (with_(task={"type": "regression", "labels": [0, 1]}), "task: labels are only used with type"),
        (with_(inputs=[{"name": "x", "datatype": "FP32", "shape": [0]}]), "inputs[0].shape: dimensions"),
        (with_(inputs=[{"name": "x", "datatype": "FP32", "shape": [-1, -2]}]), "inputs[0].shape: dimensions"),
    ],
)
def test_each_mistake_is_one_path_qualified_problem(data: dict[str, Any], expected: str) -> None:
    found = problems(data)
    assert len(found) == 1
    assert found[0].startswith(expected), found


@pytest.mark.parametrize(("steps", "expected"), [([10, 50, 25], "steps[2] = 25 must be greater than steps[1] = 50"),
                                                  ([50, 50], "steps[1] = 50 must be greater than steps[0] = 50")])
def test_non_increasing_steps_name_both_steps(steps: list[int], expected: str) -> None:
    (problem,) = problems(with_(rollout={"steps": steps}))
    assert problem.startswith("rollout.steps: ")
    assert expected in problem


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1]}] * 2}, "inputs: names must be distinct"),
        ({"outputs": [{"name": "y", "datatype": "FP32", "shape": [-1]}], "task": {"type": "regression",
                                                                                "output": "z"}},
         "task.output: 'z' is not among the outputs ['y']"),
        ({"features": [numeric("a"), numeric("a")]}, "features[1]: name 'a' is used twice"),
        ({"features": [numeric("a", column=3)]}, "features[0].column: 3 is outside input 'x' with 3 columns"),
        ({"features": [numeric("a", column=1), numeric("b")]}, "features[1]: column 1 of 'x' is already a feature"),
        ({"features": [numeric("a", input="z")]}, "features[0].input: 'z' is not among the inputs"),
    ],
)
def test_cross_field_problems_name_the_field(changes: dict[str, Any], expected: str) -> None:
    (problem,) = problems(with_(**changes))
    assert expected in problem


def test_feature_default_column_is_its_position_among_features_of_the_same_input() -> None:
    inputs = [{"name": "x", "datatype": "FP32", "shape": [-1, 3]},
              {"name": "c", "datatype": "BYTES", "shape": [-1, 2]}]
    features = [numeric("a"), {"name": "r", "type": "categorical", "input": "c"}, numeric("b", input="x"),
                {"name": "s", "type": "categorical", "input": "c"}, numeric("d", column=2)]
    spec = parse_spec(with_(inputs=inputs, features=features), Path("/base"))
    located = [(t.name, col) for t, col in (spec.feature_location(i) for i in range(5))]
    assert located == [("x", 0), ("c", 0), ("x", 1), ("c", 1), ("x", 2)]


def test_several_problems_are_all_listed() -> None:
    data = with_(name="Bad", version="x", rollout={"interval": "soon", "stpes": []},
                 serving={"resources": {"memory": "much"}})
    found = problems(data)
    fields = sorted(p.split(":")[0] for p in found)
    assert fields == ["name", "rollout.interval", "rollout.stpes", "serving.resources.memory", "version"]


def test_non_mapping_data_is_rejected() -> None:
    assert problems([1, 2]) == ["(top level): expected a mapping of fields, got list"]


# --- load_spec on bad files --------------------------------------------------------------------------------


def load_problems(path: Path) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(path) in str(info.value)
    return info.value.problems


def test_missing_file(tmp_path: Path) -> None:
    assert load_problems(tmp_path / "nope.yml") == ["(file): no such file"]


def test_directory(tmp_path: Path) -> None:
    (problem,) = load_problems(tmp_path)
    assert problem.startswith("(file): cannot be read")


def test_invalid_yaml_gives_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "model.yml"
    path.write_text("name: m\n  bad: indent\n")
    (problem,) = load_problems(path)
    assert problem.startswith("line 2, column 6: not valid YAML")


@pytest.mark.parametrize(("text", "kind"), [("- 1\n- 2\n", "list"), ("", "NoneType")])
def test_yaml_that_is_not_a_mapping(tmp_path: Path, text: str, kind: str) -> None:
    path = tmp_path / "model.yml"
    path.write_text(text)
    assert load_problems(path) == [f"(top level): expected a mapping of fields, got {kind}"]


# --- build identity ------------------------------------------------------------------------------------------


def full() -> dict[str, Any]:
    return with_(
        convert={"opset": 17, "parity": {"samples": "data/s.npz"}},
        reference="data/ref.npz",
        features=[numeric("a")],
        rollout={"steps": [10, 100], "interval": "30s"},
        serving={"instances": 1},
        drift={"bins": 10},
    )


def sha(data: dict[str, Any], base: Path = Path("/base")) -> str:
    return parse_spec(data, base).spec_sha256


def test_identity_survives_moving_the_spec(tmp_path: Path) -> None:
    text = yaml.safe_dump(full())
    specs: list[ModelSpec] = []
    for where in (tmp_path / "a", tmp_path / "b" / "deeper"):
        where.mkdir(parents=True)
        (where / "model.yml").write_text(text)
        specs.append(load_spec(where / "model.yml"))
    assert specs[0].source.path != specs[1].source.path
    assert specs[0].spec_sha256 == specs[1].spec_sha256
    assert specs[0].build_identity() == specs[1].build_identity()


@pytest.mark.parametrize(
    ("section", "value"),
    [
        ("rollout", {"steps": [5, 25, 100], "interval": "5m", "min_requests": 7, "gates": {"error_rate": 0.5}}),
        ("serving", {"instances": 4, "providers": ["cuda", "cpu"], "batching": {"max_batch": 8},
                     "resources": {"memory": "8Gi", "gpus": 1}}),
        ("drift", {"bins": 10, "windows": ["1m"], "sample_rate": 0.5}),
        ("description", "something else"),
    ],
)
def test_identity_ignores_runtime_settings(section: str, value: Any) -> None:
    changed = full()
    changed[section] = value
    assert sha(changed) == sha(full())


@pytest.mark.parametrize(
    ("section", "value"),
    [
        ("convert", {"opset": 18, "parity": {"samples": "data/s.npz"}}),
        ("inputs", [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]),
        ("inputs", [{"name": "x", "datatype": "FP64", "shape": [-1, 3]}]),
        ("drift", {"bins": 20}),
        ("version", "2"),
    ],
)
def test_identity_changes_with_build_settings(section: str, value: Any) -> None:
    changed = copy.deepcopy(full())
    changed[section] = value
    assert sha(changed) != sha(full())


# --- durations (more in test_durations.py) and quantities ---------------------------------------------------

def test_spec_uses_the_one_duration_grammar() -> None:
    assert parse_duration is durations.parse_duration
    spec = parse_spec(with_(rollout={**R, "interval": "1d"}, drift={"windows": ["90", "1h"]}), Path("/base"))
    assert spec.rollout.interval_seconds == 86400
    assert problems(with_(rollout={**R, "interval": "0s"})) == ["rollout.interval: '0s' is not a positive duration"]


@given(st.integers(min_value=0, max_value=2**20))
def test_quantity_units(n: int) -> None:
    assert parse_quantity(str(n)) == n == parse_quantity(n)
    for unit, power in (("Ki", 2**10), ("Mi", 2**20), ("Gi", 2**30), ("Ti", 2**40),
                        ("K", 10**3), ("M", 10**6), ("G", 10**9), ("T", 10**12)):
        assert parse_quantity(f"{n}{unit}") == n * power


def test_fractional_binary_quantity() -> None:
    assert parse_quantity("1.5Gi") == 3 * 2**29
    assert parse_quantity("0.5Ki") == 512


@pytest.mark.parametrize("text, expected", [("4.1G", 4_100_000_000), ("2.01K", 2010),
                                            ("9007199254740993", 9007199254740993)])
def test_decimal_quantity_is_exact(text: str, expected: int) -> None:
    assert parse_quantity(text) == expected


@given(st.one_of(st.text(alphabet=string.ascii_letters + " -", max_size=8),
                 st.integers(min_value=1).map(lambda n: f"-{n}Gi"),
                 st.integers(min_value=1).map(lambda n: f"{n}GB"),
                 st.integers(min_value=1).map(lambda n: f"{n} Mi"),
                 st.integers(min_value=1).map(lambda n: f"{n}.{n}.{n}Ki")))
def test_quantity_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError, match="is not a quantity"):
        parse_quantity(text)
