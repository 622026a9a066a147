"""Joins labels that arrive later with the predictions read from the spool, by request id.

**Id scheme.** Every spooled row has a join key: a record with one row is keyed by its request id
(``"req-42"``); row ``i`` of a record with several rows by ``"<id>#<i>"`` (``"req-42#0"``,
``"req-42#1"``, …). A label names its key either whole (``{"id": "req-42#1", ...}``) or as the
request id plus ``"row": i`` (``{"id": "req-42", "row": 1, ...}``, the same key). Keys are global
across the model versions of a host: the request id is unique per request whatever the version.

**Memory is bounded.** Predictions wait for their label at most ``ttl`` seconds (counted from when
the exporter read them) and at most ``max_predictions`` of them are held; the oldest go first.
Labels that arrive before their prediction (the spool is read a little behind) wait the same way,
at most ``max_labels`` of them. Keys of predictions that were joined or expired are remembered
(``max_tombstones``) to tell a duplicate or a late label from an unknown one.

**Outcomes** (``modelfleet_labels_total{outcome}``): ``joined`` (the prediction was waiting),
``joined_after_wait`` (the label waited for its prediction), ``late`` (its prediction had already
expired), ``duplicate`` (a second label for a joined or waiting key), ``invalid`` (not a label of the
model's task; only knowable once joined), ``unmatched`` (waited ``ttl`` or was pushed out, and no
prediction came), ``malformed`` (a line of the labels file that is not a label).
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

VersionKey = tuple[str, str]
#: Maps a raw label to the normalised one for a version's task, or None when it is not a valid label.
Validator = Callable[[VersionKey, Any], Any | None]
OUTCOMES = ("joined", "joined_after_wait", "late", "duplicate", "invalid", "unmatched", "malformed")
_JOINED, _EXPIRED = "joined", "expired"


def row_keys(request_id: str, rows: int) -> list[str]:
    """The join keys of a record's rows (see the module docstring)."""
    if rows == 1:
        return [request_id]
    return [f"{request_id}#{i}" for i in range(rows)]


def label_key(request_id: str, row: int | None = None) -> str:
    """The join key a label names."""
    return request_id if row is None else f"{request_id}#{row}"


@dataclass(frozen=True)
class Joined:
    """A prediction and its label, for the quality windows of ``version``."""

    version: VersionKey
    predicted: Any
    actual: Any


@dataclass
class _Prediction:
    version: VersionKey
    predicted: Any
    added: float


class LabelJoiner:
    """Pending predictions and early labels, both bounded in count and age."""

    def __init__(self, validate: Validator, *, ttl: float = 3600.0, max_predictions: int = 100_000,
                 max_labels: int = 100_000, max_tombstones: int = 100_000) -> None:
        if ttl <= 0 or min(max_predictions, max_labels, max_tombstones) < 1:
            raise ValueError("ttl and the capacities must be positive")
        self.validate = validate
        self.ttl = ttl
        self.max_predictions, self.max_labels, self.max_tombstones = max_predictions, max_labels, max_tombstones
        self.predictions: OrderedDict[str, _Prediction] = OrderedDict()
        self.waiting: OrderedDict[str, tuple[Any, float]] = OrderedDict()
        self.tombstones: OrderedDict[str, str] = OrderedDict()
        self.outcomes: Counter[str] = Counter(dict.fromkeys(OUTCOMES, 0))
        self.predictions_expired = 0

    # --- input ---------------------------------------------------------------------------------

    def add_predictions(self, version: VersionKey, keys: Sequence[str], predicted: Sequence[Any],
                        now: float) -> list[Joined]:
        """Remember predictions; those whose label already waits are joined at once."""
        joined: list[Joined] = []
        for key, value in zip(keys, predicted, strict=True):
            early = self.waiting.pop(key, None)
            if early is not None:
                self._join(version, value, early[0], key, "joined_after_wait", joined)
                continue
            self.predictions[key] = _Prediction(version, value, now)
            self.predictions.move_to_end(key)
            self.tombstones.pop(key, None)
        while len(self.predictions) > self.max_predictions:
            self._expire_prediction()
        return joined

    def add_label(self, key: str, label: Any, now: float) -> tuple[str, Joined | None]:
        """File one label; returns its outcome (``waiting`` when its prediction has not been read yet)."""
        pending = self.predictions.pop(key, None)
        if pending is not None:
            joined: list[Joined] = []
            outcome = self._join(pending.version, pending.predicted, label, key, "joined", joined)
            return outcome, (joined[0] if joined else None)
        tombstone = self.tombstones.get(key)
        if tombstone is not None or key in self.waiting:
            outcome = "late" if tombstone == _EXPIRED else "duplicate"
            self.outcomes[outcome] += 1
            return outcome, None
        self.waiting[key] = (label, now)
        while len(self.waiting) > self.max_labels:
            self.waiting.popitem(last=False)
            self.outcomes["unmatched"] += 1
        return "waiting", None

    def expire(self, now: float) -> None:
        """Drop predictions and early labels older than the TTL."""
        limit = now - self.ttl
        while self.predictions and next(iter(self.predictions.values())).added < limit:
            self._expire_prediction()
        while self.waiting and next(iter(self.waiting.values()))[1] < limit:
            self.waiting.popitem(last=False)
            self.outcomes["unmatched"] += 1

    def forget_version(self, version: VersionKey) -> None:
        """Drop the pending predictions of a version that is gone (they can never be joined)."""
        for key in [k for k, p in self.predictions.items() if p.version == version]:
            del self.predictions[key]
            self._tombstone(key, _EXPIRED)
            self.predictions_expired += 1

    # --- internals -------------------------------------------------------------------------------

    def _join(self, version: VersionKey, predicted: Any, label: Any, key: str, outcome: str,
              joined: list[Joined]) -> str:
        self._tombstone(key, _JOINED)
        actual = self.validate(version, label)
        if actual is None:
            self.outcomes["invalid"] += 1
            return "invalid"
        self.outcomes[outcome] += 1
        joined.append(Joined(version, predicted, actual))
        return outcome

    def _expire_prediction(self) -> None:
        key, _prediction = self.predictions.popitem(last=False)
        self._tombstone(key, _EXPIRED)
        self.predictions_expired += 1

    def _tombstone(self, key: str, kind: str) -> None:
        self.tombstones[key] = kind
        self.tombstones.move_to_end(key)
        while len(self.tombstones) > self.max_tombstones:
            self.tombstones.popitem(last=False)

    # --- checkpoint --------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state (for the checkpoint)."""
        versions = sorted({p.version for p in self.predictions.values()})
        index = {v: i for i, v in enumerate(versions)}
        return {
            "versions": [list(v) for v in versions],
            "predictions": [[k, index[p.version], p.predicted, p.added] for k, p in self.predictions.items()],
            "waiting": [[k, label, added] for k, (label, added) in self.waiting.items()],
            "tombstones": [[k, kind] for k, kind in self.tombstones.items()],
            "outcomes": dict(self.outcomes),
            "predictions_expired": self.predictions_expired,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (replacing what is held)."""
        versions = [(str(m), str(v)) for m, v in state.get("versions", [])]
        self.predictions = OrderedDict(
            (str(k), _Prediction(versions[int(i)], predicted, float(added)))
            for k, i, predicted, added in state.get("predictions", []))
        self.waiting = OrderedDict((str(k), (label, float(added))) for k, label, added in state.get("waiting", []))
        self.tombstones = OrderedDict((str(k), str(kind)) for k, kind in state.get("tombstones", []))
        self.outcomes = Counter(dict.fromkeys(OUTCOMES, 0)) + Counter(
            {str(k): int(v) for k, v in state.get("outcomes", {}).items()})
        for name in OUTCOMES:
            self.outcomes.setdefault(name, 0)
        self.predictions_expired = int(state.get("predictions_expired", 0))
