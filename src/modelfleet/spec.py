"""The model spec (``model.yml``): one validated source of truth for every part of modelfleet.

``load_spec(path)`` reads and validates a spec file; relative paths inside it are resolved against
the file's directory. ``parse_spec(data, base_dir)`` does the same for already-parsed data (the
Ansible modules and the Pulumi programs pass dicts). Errors are :class:`SpecError` with one
path-qualified line per problem, e.g. ``rollout.steps: steps[2] = 25 must be greater than steps[1] = 50``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from modelfleet.durations import parse_duration  # also modelfleet.spec.parse_duration, as before
from modelfleet.errors import SpecError

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
_TYPE_TAGS = frozenset({"int", "str", "float", "bool"})
_QUANTITY = re.compile(r"^(?P<n>\d+(?:\.\d+)?)(?P<unit>Ki|Mi|Gi|Ti|K|M|G|T)?$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Framework(StrEnum):
    SKLEARN = "sklearn"
    PYTORCH = "pytorch"
    ONNX = "onnx"
    TENSORFLOW = "tensorflow"


class Datatype(StrEnum):
    """Open Inference Protocol tensor datatypes."""

    BOOL = "BOOL"
    UINT8 = "UINT8"
    UINT16 = "UINT16"
    UINT32 = "UINT32"
    UINT64 = "UINT64"
    INT8 = "INT8"
    INT16 = "INT16"
    INT32 = "INT32"
    INT64 = "INT64"
    FP16 = "FP16"
    FP32 = "FP32"
    FP64 = "FP64"
    BYTES = "BYTES"


def parse_quantity(text: str | int) -> int:
    """Bytes in a Kubernetes-style quantity (``4Gi``, ``512Mi``, ``1G``, ``1048576``)."""
    match = _QUANTITY.match(str(text).strip())
    if not match:
        raise ValueError(f"{text!r} is not a quantity like 512Mi or 4Gi")
    powers = {None: 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
              "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    return int(Decimal(match["n"]) * powers[match["unit"]])


class Source(_Strict):
    framework: Framework
    path: Path
    factory: str | None = Field(
        default=None,
        description="PyTorch only: 'file.py:function' that builds the module whose state_dict is at path; "
        "without it, path is a TorchScript archive or a pickled nn.Module.",
    )

    @model_validator(mode="after")
    def _factory_only_for_pytorch(self) -> Source:
        if self.factory is not None:
            if self.framework is not Framework.PYTORCH:
                raise ValueError("factory is only used with framework: pytorch")
            if not re.match(r"^[^:]+\.py:[A-Za-z_][A-Za-z0-9_]*$", self.factory):
                raise ValueError(f"factory {self.factory!r} must look like 'model_def.py:build_model'")
        return self


class Parity(_Strict):
    samples: Path
    rtol: float = Field(default=1e-4, ge=0)
    atol: float = Field(default=1e-5, ge=0)
    fp16_rtol: float = Field(default=1e-2, ge=0)
    fp16_atol: float = Field(default=1e-3, ge=0)


class Convert(_Strict):
    opset: int = Field(default=17, ge=7, le=23)
    optimize: Literal["disable", "basic", "extended", "all"] = "extended"
    fp16: bool = False
    parity: Parity | None = None


class TensorSpec(_Strict):
    name: str = Field(min_length=1)
    datatype: Datatype
    shape: list[int] = Field(min_length=1)

    @field_validator("shape")
    @classmethod
    def _dims(cls, shape: list[int]) -> list[int]:
        for dim in shape:
            if dim == 0 or dim < -1:
                raise ValueError("dimensions are positive sizes or -1 for a variable size")
        return shape


class Feature(_Strict):
    name: str = Field(min_length=1)
    type: Literal["numeric", "categorical"]
    input: str | None = Field(default=None, description="input tensor holding the feature (default: the first)")
    column: int | None = Field(default=None, ge=0, description="column in that input (default: its position)")


class Task(_Strict):
    type: Literal["classification", "regression"]
    labels: list[int | str] | None = None
    output: str | None = Field(default=None, description="output holding the prediction (default: the first)")
    probabilities: str | None = Field(default=None, description="classification: output with class scores")

    @model_validator(mode="after")
    def _labels_for_classification(self) -> Task:
        if self.type == "classification":
            if not self.labels or len(self.labels) < 2:
                raise ValueError("classification needs labels: at least two classes")
            if len(set(map(str, self.labels))) != len(self.labels):
                raise ValueError("labels must be distinct")
        elif self.labels is not None:
            raise ValueError("labels are only used with type: classification")
        return self


class Batching(_Strict):
    max_batch: int = Field(default=64, ge=1, le=65536)
    max_queue_delay_us: int = Field(default=2000, ge=0, le=10_000_000)
    max_queue_size: int = Field(default=1024, ge=1)


class Resources(_Strict):
    gpus: int = Field(default=0, ge=0)
    memory: str = "2Gi"
    cpu: str | None = None

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str) -> str:
        parse_quantity(value)
        return value


Provider = Literal["tensorrt", "cuda", "cpu"]


def _cpu_only() -> list[Provider]:
    return ["cpu"]


class Serving(_Strict):
    batching: Batching = Batching()
    instances: int = Field(default=1, ge=1)
    resources: Resources = Resources()
    providers: list[Provider] = Field(default_factory=_cpu_only, min_length=1)

    @field_validator("providers")
    @classmethod
    def _unique(cls, providers: list[Provider]) -> list[Provider]:
        if len(set(providers)) != len(providers):
            raise ValueError("providers must not repeat")
        return providers


class Gates(_Strict):
    """Gate limits (``None`` turns an optional gate off) and the error rates of the judgement (docs/rollout.md).

    A comparison with the stable fails only when the canary is worse with significance *and* beyond both
    margins: ``latency_vs_stable`` (ratio of p99s) and ``latency_margin_ms`` (difference), or
    ``error_rate_vs_stable`` (ratio) and ``error_margin`` (difference of error ratios).
    """

    error_rate: float = Field(default=0.01, ge=0, le=1)
    p99_latency_ms: float | None = Field(default=None, gt=0)
    latency_vs_stable: float | None = Field(default=1.2, ge=1)
    latency_margin_ms: float = Field(default=5.0, ge=0)
    error_rate_vs_stable: float | None = Field(default=None, ge=1)
    error_margin: float = Field(default=0.01, ge=0, le=1)
    drift_psi: float | None = Field(default=0.2, gt=0)
    drift_ks: float | None = Field(default=0.1, gt=0, le=1)
    prediction_psi: float | None = Field(default=None, gt=0)
    min_accuracy: float | None = Field(default=None, ge=0, le=1)
    alpha: float = Field(default=0.01, gt=0, lt=0.5,
                         description="most probability that a whole rollout of a canary equal to stable rolls back")
    beta: float = Field(default=0.05, gt=0, lt=0.5,
                        description="most probability, per look, that a gate passes a canary just at its limit")


class Rollout(_Strict):
    steps: list[Annotated[float, Field(gt=0, le=100)]] = Field(
        default_factory=lambda: [10.0, 50.0, 100.0], min_length=1)
    interval: str | float = "60s"
    min_requests: int = Field(default=100, ge=0)
    failure_limit: int = Field(default=1, ge=1)
    inconclusive_limit: int = Field(default=3, ge=0)
    gates: Gates = Gates()

    @field_validator("steps")
    @classmethod
    def _increasing(cls, steps: list[float]) -> list[float]:
        for i in range(1, len(steps)):
            if steps[i] <= steps[i - 1]:
                raise ValueError(f"steps[{i}] = {steps[i]:g} must be greater than steps[{i - 1}] = "
                                 f"{steps[i - 1]:g} (weights increase step by step)")
        return steps

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: str | float) -> str | float:
        parse_duration(value)
        return value

    @property
    def interval_seconds(self) -> float:
        return parse_duration(self.interval)


class Drift(_Strict):
    bins: int = Field(default=10, ge=2, le=100)
    windows: list[str | float] = Field(default_factory=lambda: list[str | float](["5m", "1h"]), min_length=1)
    sample_rate: float = Field(default=1.0, gt=0, le=1)

    @field_validator("windows")
    @classmethod
    def _windows(cls, values: list[str | float]) -> list[str | float]:
        for value in values:
            parse_duration(value)
        return values


class ModelSpec(_Strict):
    """A validated ``model.yml``; paths are absolute once loaded through this module."""

    name: str = Field(pattern=DNS_LABEL, description="DNS-safe model name")
    version: str = Field(pattern=r"^[1-9][0-9]{0,8}$", description="positive integer, monotonic per name")
    description: str = ""
    source: Source
    convert: Convert = Convert()
    inputs: list[TensorSpec] = Field(min_length=1)
    outputs: list[TensorSpec] | None = None
    features: list[Feature] = Field(default_factory=list)
    task: Task
    reference: Path | None = None
    serving: Serving = Serving()
    rollout: Rollout = Rollout()
    drift: Drift = Drift()

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _cross_checks(self) -> ModelSpec:
        problems = [*self._tensor_problems(), *self._feature_problems()]
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _tensor_problems(self) -> list[str]:
        problems = []
        names = [t.name for t in self.inputs]
        if len(set(names)) != len(names):
            problems.append("inputs: names must be distinct")
        if self.outputs is not None:
            out_names = [t.name for t in self.outputs]
            if len(set(out_names)) != len(out_names):
                problems.append("outputs: names must be distinct")
            named_outputs = (("task.output", self.task.output), ("task.probabilities", self.task.probabilities))
            for field, output in named_outputs:
                if output is not None and output not in out_names:
                    problems.append(f"{field}: {output!r} is not among the outputs {out_names}")
        return problems

    def _feature_problems(self) -> list[str]:
        problems = []
        names = [t.name for t in self.inputs]
        seen: set[tuple[str, int]] = set()
        feature_names: set[str] = set()
        for index, feature in enumerate(self.features):
            where = f"features[{index}]"
            if feature.name in feature_names:
                problems.append(f"{where}: name {feature.name!r} is used twice")
            feature_names.add(feature.name)
            input_name = feature.input or self.inputs[0].name
            if input_name not in names:
                problems.append(f"{where}.input: {input_name!r} is not among the inputs {names}")
                continue
            tensor, column = self.feature_location(index)
            if len(tensor.shape) > 2:
                problems.append(f"{where}.input: {tensor.name!r} has rank {len(tensor.shape)}; features are "
                                "columns of inputs shaped [batch] or [batch, columns]")
                continue
            width = tensor.shape[-1] if len(tensor.shape) > 1 else 1
            if width != -1 and column >= width:
                problems.append(f"{where}.column: {column} is outside input {tensor.name!r} with {width} columns")
            if (tensor.name, column) in seen:
                problems.append(f"{where}: column {column} of {tensor.name!r} is already a feature")
            seen.add((tensor.name, column))
        return problems

    @functools.cached_property
    def feature_locations(self) -> list[tuple[TensorSpec, int]]:
        """:meth:`feature_location` of every feature, computed once (the drift exporter's hot path)."""
        return [self.feature_location(index) for index in range(len(self.features))]

    def feature_location(self, index: int) -> tuple[TensorSpec, int]:
        """The input tensor and column that feature ``index`` reads."""
        feature = self.features[index]
        input_name = feature.input or self.inputs[0].name
        tensor = next((t for t in self.inputs if t.name == input_name), None)
        if tensor is None:
            raise ValueError(f"features[{index}].input: {input_name!r} is not among the inputs")
        if feature.column is not None:
            return tensor, feature.column
        position = sum(1 for f in self.features[:index] if (f.input or self.inputs[0].name) == input_name)
        return tensor, position

    def build_identity(self) -> dict[str, Any]:
        """The parts of the spec that determine the built artifact (not serving or rollout settings).

        Paths are reduced to file names: their contents are hashed separately, so moving a checkout
        does not change the identity.
        """
        data = self.model_dump(mode="json", include={"name", "version", "source", "convert", "inputs",
                                                     "outputs", "features", "task", "reference", "drift"})
        data["source"]["path"] = self.source.path.name
        if self.convert.parity is not None:
            data["convert"]["parity"]["samples"] = self.convert.parity.samples.name
        if self.reference is not None:
            data["reference"] = self.reference.name
        data["drift"] = {"bins": self.drift.bins}
        return data

    @property
    def spec_sha256(self) -> str:
        """sha256 of the canonical JSON of :meth:`build_identity`."""
        canonical = json.dumps(self.build_identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def _format_location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part in _TYPE_TAGS or "[" in part or part.startswith("constrained-"):
            continue  # pydantic's union / validator tags, not fields
        else:
            text += f".{part}" if text else part
    return text or "(top level)"


def _format_problems(error: dict[str, Any]) -> list[str]:
    """One line per problem; cross-field checks carry their own paths, several per error."""
    if not error["loc"] and error["type"] == "value_error":
        return str(error["msg"]).removeprefix("Value error, ").splitlines()
    return [_format_problem(error)]


def _format_problem(error: dict[str, Any]) -> str:
    loc = tuple(error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    field = next((p for p in reversed(loc) if isinstance(p, str) and p not in _TYPE_TAGS), "")
    if error["type"] == "extra_forbidden":
        message = "unknown field (check the spelling; see docs/spec.md)"
    elif error["type"] == "missing":
        message = "required field is missing"
    elif error["type"] == "string_pattern_mismatch" and field == "name":
        message = "must be DNS-safe: lowercase letters, digits and '-', at most 63 characters"
    elif error["type"] == "string_pattern_mismatch" and field == "version":
        message = 'must be a positive integer, e.g. "3" (versions increase monotonically per name)'
    return f"{_format_location(loc)}: {message}"


def parse_spec(data: Any, base_dir: Path, source: str = "<spec>") -> ModelSpec:
    """Validate parsed spec data; relative paths are resolved against ``base_dir``."""
    if not isinstance(data, dict):
        raise SpecError(source, [f"(top level): expected a mapping of fields, got {type(data).__name__}"])
    try:
        spec = ModelSpec.model_validate(data)
    except pydantic.ValidationError as exc:
        problems = [line for e in exc.errors() for line in _format_problems(dict(e))]
        problems = list(dict.fromkeys(problems))  # union members may repeat a complaint
        raise SpecError(source, problems) from None
    return _resolve_paths(spec, base_dir)


def _resolve_paths(spec: ModelSpec, base_dir: Path) -> ModelSpec:
    def absolute(path: Path) -> Path:
        return path if path.is_absolute() else (base_dir / path).resolve()

    update: dict[str, Any] = {"source": spec.source.model_copy(update={"path": absolute(spec.source.path)})}
    if spec.convert.parity is not None:
        parity = spec.convert.parity.model_copy(update={"samples": absolute(spec.convert.parity.samples)})
        update["convert"] = spec.convert.model_copy(update={"parity": parity})
    if spec.reference is not None:
        update["reference"] = absolute(spec.reference)
    return spec.model_copy(update=update)


def load_spec(path: str | Path) -> ModelSpec:
    """Read and validate a ``model.yml`` file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(str(path), ["(file): no such file"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(str(path), [f"(file): cannot be read: {exc}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "(file)"
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(str(path), [f"{where}: not valid YAML: {problem}"]) from None
    return parse_spec(data, path.resolve().parent, str(path))
