"""The persisted state of a model's rollout: ``<state_dir>/<model>.json``, one JSON document, written atomically.

It holds the plan the rollout started with, the phase, the step and weight, the failure and
consecutive-inconclusive counts, the start of the current analysis window, decision counts and the
history of every analysis (each gate's query, value, threshold and verdict). A run interrupted at
any point resumes from it: the file is replaced by a rename after an fsync, so it is always either
the old or the new state, never half of each.

A finished rollout (promoted, rolled back, aborted) stays in place until the next rollout of the
same model starts; then it is moved to ``<state_dir>/archive/``.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from modelfleet.fsutil import write_text_atomically
from modelfleet.rollout.decision import FINISHED, Phase
from modelfleet.rollout.plan import RolloutError, RolloutPlan

FORMAT = 1
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass
class RolloutState:
    plan: RolloutPlan
    phase: Phase
    step: int
    weight: float
    started_at: float
    updated_at: float
    failures: int = 0
    inconclusive: int = 0
    window_start: float | None = None
    finished_at: float | None = None
    last_decision: str | None = None
    last_reason: str | None = None
    last_decision_at: float | None = None
    decisions: dict[str, int] = field(default_factory=dict)
    verdicts: dict[str, int] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def model(self) -> str:
        return self.plan.model

    @property
    def finished(self) -> bool:
        return self.phase in FINISHED

    @property
    def last_gates(self) -> list[dict[str, Any]]:
        """The gates of the latest analysis (empty before the first one)."""
        return list(self.history[-1]["gates"]) if self.history else []

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["plan"] = self.plan.to_dict()
        data["phase"] = str(self.phase)
        return {
            "format": FORMAT,
            "model": self.plan.model,
            "stable": self.plan.stable,
            "canary": self.plan.canary,
            **data,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RolloutState:
        if data.get("format") != FORMAT:
            raise RolloutError(f"rollout state format {data.get('format')!r}, expected {FORMAT}")
        try:
            return cls(
                plan=RolloutPlan.from_dict(data["plan"]),
                phase=Phase(data["phase"]),
                step=int(data["step"]),
                weight=float(data["weight"]),
                started_at=float(data["started_at"]),
                updated_at=float(data["updated_at"]),
                failures=int(data.get("failures", 0)),
                inconclusive=int(data.get("inconclusive", 0)),
                window_start=_optional_float(data.get("window_start")),
                finished_at=_optional_float(data.get("finished_at")),
                last_decision=data.get("last_decision"),
                last_reason=data.get("last_reason"),
                last_decision_at=_optional_float(data.get("last_decision_at")),
                decisions={str(k): int(v) for k, v in (data.get("decisions") or {}).items()},
                verdicts={str(k): int(v) for k, v in (data.get("verdicts") or {}).items()},
                history=list(data.get("history") or []),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RolloutError(f"rollout state is not usable: {exc!r}") from None

    def count(self, decision: str, verdict: str | None = None) -> None:
        self.decisions[decision] = self.decisions.get(decision, 0) + 1
        if verdict is not None:
            self.verdicts[verdict] = self.verdicts.get(verdict, 0) + 1


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class StateStore:
    """Where the rollout states of a controller live."""

    directory: Path

    def path(self, model: str) -> Path:
        if not _SAFE.match(model):
            raise RolloutError(f"model name {model!r} cannot name a state file")
        return self.directory / f"{model}.json"

    def load(self, model: str) -> RolloutState | None:
        path = self.path(model)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise RolloutError(f"{path}: cannot be read: {exc}") from None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise RolloutError(
                f"{path}: not a rollout state (invalid JSON: {exc}); move it aside to start over"
            ) from None
        if not isinstance(data, dict):
            raise RolloutError(f"{path}: not a rollout state")
        state = RolloutState.from_dict(data)
        if state.model != model:
            raise RolloutError(f"{path}: holds the rollout of {state.model!r}, not {model!r}")
        return state

    def save(self, state: RolloutState) -> Path:
        """Atomically replace the state file (temporary file, fsync, rename, fsync of the directory)."""
        path = self.path(state.model)
        write_text_atomically(path, json.dumps(state.to_dict(), indent=1, sort_keys=True, allow_nan=False) + "\n")
        return path

    def adopt(self, model: str, copies: list[str], *, check: bool = False) -> tuple[RolloutState | None, list[str]]:
        """Take the newest of ``copies`` (the state as kept on the serving hosts) when it is newer than this
        controller's, so that any controller resumes a rollout another one began. Returns the adopted state
        (``None`` when this controller's is as new, or in check mode) and notes on what was done or skipped.
        A rollout of other versions that this controller held is archived first.
        """
        fleet, notes = newest_copy(model, copies)
        if fleet is None:
            return None, notes
        local = self.load(model)
        if local is not None and local.updated_at >= fleet.updated_at:
            return None, notes
        found = (f"the serving hosts keep a newer state of the rollout of canary {fleet.plan.canary} (stable "
                 f"{fleet.plan.stable}, {fleet.phase} at step {fleet.step + 1}/{fleet.plan.step_count})")
        if check:
            return None, [*notes, f"{found}; check mode does not adopt it"]
        if local is not None and _identity(local) != _identity(fleet):
            self.archive(local)
        self.save(fleet)
        return fleet, [*notes, f"{found}: adopted"]

    def archive(self, state: RolloutState) -> Path:
        """Move a rollout's state file to ``archive/<model>-<stable>-to-<canary>-<started>.json``."""
        source = self.path(state.model)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(state.started_at))
        target = (
            self.directory
            / "archive"
            / f"{state.model}-{state.plan.stable}-to-{state.plan.canary}-{stamp}-{state.phase}.json"
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomically(target, json.dumps(state.to_dict(), indent=1, sort_keys=True, allow_nan=False) + "\n")
        with contextlib.suppress(FileNotFoundError):
            source.unlink()
        return target


def _identity(state: RolloutState) -> tuple[str, str, float]:
    return state.plan.stable, state.plan.canary, state.started_at


def newest_copy(model: str, copies: list[str]) -> tuple[RolloutState | None, list[str]]:
    """The most recently updated valid state of ``model`` among ``copies`` (JSON texts; empty ones are skipped),
    and a note for each copy that is not one."""
    newest: RolloutState | None = None
    notes = []
    for index, text in enumerate(copies, 1):
        if not text.strip():
            continue
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise RolloutError("not a JSON object")
            state = RolloutState.from_dict(data)
        except (ValueError, RolloutError) as exc:
            notes.append(f"copy {index} of the rollout state on the serving hosts is ignored: {exc}")
            continue
        if state.model != model:
            notes.append(f"copy {index} of the rollout state on the serving hosts is of {state.model!r}, not {model!r}")
            continue
        if newest is None or state.updated_at > newest.updated_at:
            newest = state
    return newest, notes
