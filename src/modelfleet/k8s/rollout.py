"""``modelfleet rollout``: one judgement of a Kubernetes canary, written back where the weights live.

The weights of a Kubernetes canary are configuration: the Pulumi stack file (``modelfleet-k8s:canaryWeight``)
or the settings file of ``modelfleet k8s render``. Each call reads the versions and weight there and runs the
bare-metal rollout engine (:mod:`modelfleet.rollout`, the same plan, gates and state) against the cluster's
Prometheus, whose series carry the labels the ServiceMonitor gives them (``job="modelfleet-serve"``, ``model``,
``version``, ``host``). Then it writes the outcome into the file:

- start: the first step's weight; advance / hold: the next (or the same) weight;
- promote: ``stableVersion`` = the canary, no canary, weight 0; rollback: no canary, weight 0.

CI loops ``modelfleet rollout …`` then ``pulumi up`` (or ``modelfleet k8s render`` + commit) until the result
says ``done``. The file is edited in place, line by line: comments and the order of keys stay.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from modelfleet.errors import UsageError
from modelfleet.rollout.decision import Phase
from modelfleet.rollout.engine import Clock, Engine, Outcome
from modelfleet.rollout.plan import build_plan, shortest_window
from modelfleet.rollout.prometheus import QuerySource
from modelfleet.rollout.state import StateStore
from modelfleet.spec import ModelSpec

STACK_PROJECT = "modelfleet-k8s"
_KEYS = {"stack": {"stable": f"{STACK_PROJECT}:stableVersion", "canary": f"{STACK_PROJECT}:canaryVersion",
                   "weight": f"{STACK_PROJECT}:canaryWeight"},
         "settings": {"stable": "stable_version", "canary": "canary_version", "weight": "canary_weight"}}


@dataclass
class WeightsFile:
    """The file that holds the stable and canary versions and the canary's weight."""

    path: Path
    kind: Literal["stack", "settings"]

    def _mapping(self, text: str) -> dict[str, Any]:
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise UsageError(f"{self.path}: not valid YAML: {exc}") from None
        if self.kind == "stack":
            data = data.get("config") or {} if isinstance(data, dict) else None
        if not isinstance(data, dict):
            raise UsageError(f"{self.path}: expected a mapping{' under config:' if self.kind == 'stack' else ''}")
        return data

    def read(self) -> tuple[str | None, str | None, int]:
        """(stable, canary, weight); empty values are ``None`` (stable: the spec's version)."""
        try:
            data = self._mapping(self.path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise UsageError(f"{self.path}: {exc.strerror or exc}") from None
        keys = _KEYS[self.kind]
        stable, canary = (str(data[keys[k]]) if data.get(keys[k]) not in (None, "") else None
                          for k in ("stable", "canary"))
        try:
            weight = int(data.get(keys["weight"]) or 0)
        except (TypeError, ValueError):
            raise UsageError(f"{self.path}: {keys['weight']} is not a whole number of percent") from None
        return stable, canary, weight

    def write(self, stable: str | None, canary: str | None, weight: int) -> None:
        """Set the three values, each on its own line, leaving every other line as it is."""
        keys = _KEYS[self.kind]
        original = self.path.read_text(encoding="utf-8")
        values = {keys["stable"]: json.dumps(stable or ""), keys["canary"]: json.dumps(canary or ""),
                  keys["weight"]: str(weight)}
        if stable is None:
            values.pop(keys["stable"])
        text = original
        try:
            for key, value in values.items():
                text = _set_line(text, key, value, indent="  " if self.kind == "stack" else "")
        except UsageError as exc:
            raise UsageError(f"{self.path}: {exc}") from None
        expected = {**self._mapping(original), **{k: yaml.safe_load(v) for k, v in values.items()}}
        if self._mapping(text) != expected:  # a flow-style mapping, a multi-line value: not ours to rewrite
            raise UsageError(f"{self.path}: could not set {', '.join(values)} line by line "
                             "(write them as plain one-line values, in block style)")
        if text != original:
            self.path.write_text(text, encoding="utf-8")


def _set_line(text: str, key: str, value: str, indent: str) -> str:
    pattern = re.compile(rf"^(?P<indent>{indent}){re.escape(key)}:[ \t]*[^#\n]*?(?P<comment>[ \t]+#[^\n]*)?$",
                         re.MULTILINE)
    if pattern.search(text):
        return pattern.sub(lambda m: f"{m['indent']}{key}: {value}{m['comment'] or ''}", text, count=1)
    line = f"{indent}{key}: {value}\n"
    if indent:
        config = re.search(r"^config:[ \t]*(#[^\n]*)?\n", text, re.MULTILINE)
        if config is None:
            raise UsageError(f"no block-style 'config:' section to add {key} to")
        return text[:config.end()] + line + text[config.end():]
    return text + ("" if text.endswith("\n") or not text else "\n") + line


@dataclass
class StepResult:
    decision: str
    reason: str
    stable: str
    canary: str | None
    weight: int
    done: bool
    outcome: Outcome | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "decision": self.decision, "reason": self.reason, "stable_version": self.stable,
            "canary_version": self.canary, "canary_weight": self.weight, "done": self.done, "warnings": self.warnings}
        if self.outcome is not None:
            data["rollout"] = self.outcome.result()
        return data


def _whole(weight: float) -> int:
    if not float(weight).is_integer():
        raise UsageError(f"weight {weight:g} is not a whole percent: Kubernetes weights are integers "
                         "(use whole numbers in rollout.steps)")
    return int(weight)


def rollout_step(spec: ModelSpec, target: WeightsFile, source: QuerySource, store: StateStore, *,
                 clock: Clock | None = None, max_wait: float | None = None) -> StepResult:
    """Start, analyse once, or finish the rollout that ``target`` describes, and write the result into it."""
    stable_set, canary, weight = target.read()
    stable = stable_set or spec.version
    if canary is None:
        return StepResult("none", f"no canary in {target.path}: nothing to judge", stable, None, weight, True)
    engine = Engine(store, clock)
    existing = store.load(spec.name)
    same = existing is not None and (existing.plan.canary, existing.plan.stable) == (canary, stable)
    if existing is None or not same or existing.finished:
        plan = build_plan(model=spec.name, stable=stable, canary=canary, rollout=spec.rollout,
                          drift_window=shortest_window(spec.drift.windows),
                          accuracy_applies=spec.task.type == "classification")
        outcome = engine.start(plan, force=existing is not None and (existing.finished or not same))
        assert outcome.state is not None
        first = _whole(outcome.state.weight)
        target.write(stable_set, canary, first)
        return StepResult("start", outcome.reason, stable, canary, first, False, outcome, outcome.warnings)
    warnings = []
    if _whole(existing.weight) != weight:
        warnings.append(f"{target.path} says weight {weight}, the rollout is at {existing.weight:g}: was the "
                        "last weight applied (pulumi up / render + sync) before this judgement?")
    outcome = engine.analyze(spec.name, source, max_wait=max_wait)
    assert outcome.state is not None
    warnings += outcome.warnings
    phase = outcome.state.phase
    if phase is Phase.PROGRESSING:
        next_weight = _whole(outcome.state.weight)
        target.write(stable_set, canary, next_weight)
        return StepResult(outcome.decision, outcome.reason, stable, canary, next_weight, False, outcome, warnings)
    finished = engine.finish(spec.name)
    if phase is Phase.PROMOTING:
        target.write(canary, None, 0)
        return StepResult("promote", f"{outcome.reason}; {finished.reason}", canary, None, 0, True, outcome,
                          warnings)
    target.write(stable_set, None, 0)
    return StepResult("rollback", f"{outcome.reason}; {finished.reason}", stable, None, 0, True, outcome, warnings)
