"""The rollout plan: which versions, which weights step by step, how long each step lasts, which gates.

The plan is built once, at ``start``, from the model spec's ``rollout`` section (optionally overridden)
and saved in the rollout state; every later action of the same rollout uses the saved plan, so an
edited spec cannot change a rollout half-way through (a difference is reported as a warning).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import pydantic

from modelfleet.durations import parse_duration
from modelfleet.errors import ModelfleetError
from modelfleet.spec import Gates, Rollout

#: The canary's weight once promoted, whatever the last step was.
PROMOTED_WEIGHT = 100.0
DEFAULT_SERVE_JOB = "modelfleet-serve"
DEFAULT_DRIFT_WINDOW = "5m"


#: Settings of the judgement that cannot be turned off.
_REQUIRED = frozenset({"latency_margin_ms", "error_margin", "alpha", "beta"})


class RolloutError(ModelfleetError):
    """A rollout request that cannot be carried out (bad plan, conflicting state, wrong phase)."""


@dataclass(frozen=True)
class Thresholds:
    """The gates' thresholds (``None`` turns a gate off), margins and error rates, as in ``rollout.gates``."""

    error_rate: float | None = 0.01
    p99_latency_ms: float | None = None
    latency_vs_stable: float | None = 1.2
    latency_margin_ms: float = 5.0
    error_rate_vs_stable: float | None = None
    error_margin: float = 0.01
    drift_psi: float | None = 0.2
    drift_ks: float | None = 0.1
    prediction_psi: float | None = None
    min_accuracy: float | None = None
    alpha: float = 0.01
    beta: float = 0.05

    @classmethod
    def from_gates(cls, gates: Gates) -> Thresholds:
        return cls(**{f.name: getattr(gates, f.name) for f in fields(cls)})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Thresholds:
        known = {f.name for f in fields(cls)}
        # A state saved before a setting existed keeps that setting's default.
        values: dict[str, Any] = {k: (None if v is None else float(v)) for k, v in data.items()
                                  if k in known and (v is not None or k not in _REQUIRED)}
        return cls(**values)


@dataclass(frozen=True)
class RolloutPlan:
    """Everything a rollout of one canary needs to know; validated on construction."""

    model: str
    stable: str
    canary: str
    steps: tuple[float, ...]
    interval_seconds: float
    min_requests: int = 100
    failure_limit: int = 1
    inconclusive_limit: int = 3
    thresholds: Thresholds = field(default_factory=Thresholds)
    drift_window: str = DEFAULT_DRIFT_WINDOW
    accuracy_applies: bool = True
    serve_job: str = DEFAULT_SERVE_JOB
    hosts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        problems = validate_steps(self.steps)
        if not self.model:
            problems.append("model: must not be empty")
        if not self.canary:
            problems.append("canary_version: must not be empty")
        if not self.stable:
            problems.append("stable_version: must not be empty")
        elif self.stable == self.canary:
            problems.append(f"canary_version: {self.canary!r} is the stable version itself")
        if not (self.interval_seconds > 0 and math.isfinite(self.interval_seconds)):
            problems.append("interval: must be a positive duration")
        if self.min_requests < 0:
            problems.append("min_requests: must be >= 0")
        if self.failure_limit < 1:
            problems.append("failure_limit: must be >= 1")
        if self.inconclusive_limit < 0:
            problems.append("inconclusive_limit: must be >= 0")
        if problems:
            raise RolloutError("invalid rollout plan:\n" + "\n".join(f"  - {p}" for p in problems))

    @property
    def step_count(self) -> int:
        return len(self.steps)

    def weight(self, step: int) -> float:
        """The canary's weight at step ``step`` (0-based)."""
        return self.steps[step]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["steps"] = list(self.steps)
        data["hosts"] = list(self.hosts)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RolloutPlan:
        try:
            return cls(
                model=str(data["model"]),
                stable=str(data["stable"]),
                canary=str(data["canary"]),
                steps=tuple(float(w) for w in data["steps"]),
                interval_seconds=float(data["interval_seconds"]),
                min_requests=int(data.get("min_requests", 100)),
                failure_limit=int(data.get("failure_limit", 1)),
                inconclusive_limit=int(data.get("inconclusive_limit", 3)),
                thresholds=Thresholds.from_dict(data.get("thresholds") or {}),
                drift_window=str(data.get("drift_window", DEFAULT_DRIFT_WINDOW)),
                accuracy_applies=bool(data.get("accuracy_applies", True)),
                serve_job=str(data.get("serve_job", DEFAULT_SERVE_JOB)),
                hosts=tuple(str(h) for h in data.get("hosts") or ()),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RolloutError(f"saved rollout plan is not usable: {exc!r}") from None

    def differences(self, other: RolloutPlan) -> list[str]:
        """Human-readable differences from ``other`` (e.g. the plan of an edited spec)."""
        mine, theirs = self.to_dict(), other.to_dict()
        return [f"{key}: {mine[key]!r} -> {theirs[key]!r}" for key in mine if mine[key] != theirs[key]]


def validate_steps(steps: Sequence[float]) -> list[str]:
    """Problems with a list of step weights: non-empty, each in (0, 100], strictly increasing."""
    if not steps:
        return ["steps: at least one step is needed"]
    problems = []
    for index, weight in enumerate(steps):
        if not (isinstance(weight, int | float) and math.isfinite(weight) and 0 < weight <= 100):
            problems.append(f"steps[{index}] = {weight!r} must be a weight in (0, 100]")
        elif index and isinstance(steps[index - 1], int | float) and weight <= steps[index - 1]:
            problems.append(
                f"steps[{index}] = {weight:g} must be greater than steps[{index - 1}] = "
                f"{steps[index - 1]:g} (weights increase step by step)"
            )
    return problems


def rollout_settings(
    base: Rollout | None, overrides: Mapping[str, Any] | None = None, interval: str | float | None = None
) -> Rollout:
    """The spec's ``rollout`` section with ``overrides`` merged in (``gates`` key by key), validated."""
    data: dict[str, Any] = base.model_dump(mode="json") if base is not None else {}
    for key, value in (overrides or {}).items():
        if key == "gates" and isinstance(value, Mapping):
            data["gates"] = {**data.get("gates", {}), **value}
        else:
            data[key] = value
    if interval is not None:
        data["interval"] = interval
    try:
        return Rollout.model_validate(data)
    except pydantic.ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"])
            problems.append(f"rollout{where}: {str(error['msg']).removeprefix('Value error, ')}")
        raise RolloutError("invalid rollout settings:\n" + "\n".join(f"  - {p}" for p in problems)) from None


def window_label(value: str | float) -> str:
    """The drift exporter's ``window`` label of a configured window (as ``drift.exporter.window_names``)."""
    return value if isinstance(value, str) else f"{value:g}s"


def shortest_window(windows: Iterable[str | float]) -> str:
    """The label of the shortest drift window: the one that reacts to a canary within a step."""
    listed = list(windows)
    if not listed:
        return DEFAULT_DRIFT_WINDOW
    return window_label(min(listed, key=parse_duration))


def parse_wait(text: str | float | None, default: float) -> float:
    """Seconds in a duration that may be zero (``0``, ``0s``); ``None`` gives ``default``."""
    if text is None:
        return default
    try:
        return parse_duration(text, allow_zero=True)
    except ValueError as exc:
        raise RolloutError(str(exc)) from None


def build_plan(
    *,
    model: str,
    stable: str,
    canary: str,
    rollout: Rollout,
    drift_window: str = DEFAULT_DRIFT_WINDOW,
    accuracy_applies: bool = True,
    serve_job: str = DEFAULT_SERVE_JOB,
    hosts: Sequence[str] = (),
) -> RolloutPlan:
    """The plan of one rollout from validated settings."""
    return RolloutPlan(
        model=model,
        stable=str(stable),
        canary=str(canary),
        steps=tuple(rollout.steps),
        interval_seconds=rollout.interval_seconds,
        min_requests=rollout.min_requests,
        failure_limit=rollout.failure_limit,
        inconclusive_limit=rollout.inconclusive_limit,
        thresholds=Thresholds.from_gates(rollout.gates),
        drift_window=drift_window,
        accuracy_applies=accuracy_applies,
        serve_job=serve_job,
        hosts=tuple(hosts),
    )


def format_weight(weight: float) -> str:
    """``5`` for 5.0, ``2.5`` for 2.5: weights as people write them."""
    return f"{weight:g}"
