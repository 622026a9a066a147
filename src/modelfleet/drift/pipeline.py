"""One model version's path through the exporter: spool lines → records → columns → windows.

:meth:`VersionPipeline.step` reads a bounded batch of complete spool lines, decodes and checks each
record against the version's spec (a bad record is skipped and counted by reason, never fatal),
groups the good ones by time bucket, turns each group into feature and prediction columns with the
same code that built the reference profile, and adds them to the drift windows. Each row's
prediction goes to the label joiner; labels joined with it feed the quality windows.
"""

from __future__ import annotations

import logging
import math
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from modelfleet.drift.discovery import VersionInfo, VersionKey
from modelfleet.drift.joiner import Joined, LabelJoiner, row_keys
from modelfleet.spool.reader import Position, SpoolReader
from modelfleet.spool.record import Record, RecordError, decode
from modelfleet.stats.columns import LABEL_COLUMN, Column, feature_columns, prediction_columns
from modelfleet.stats.profile import category_key, category_keys
from modelfleet.stats.quality import QualityWindows
from modelfleet.stats.window import DriftWindows

log = logging.getLogger(__name__)
#: Records stamped further ahead of this host's clock are refused (they would push the windows ahead).
MAX_CLOCK_SKEW = 300.0


class _Malformed(Exception):  # noqa: N818 - control flow: a record to skip, with its reason
    def __init__(self, reason: str) -> None:
        self.reason = reason


@dataclass
class Counters:
    """Per-version counters; saved in the checkpoint with the windows they describe."""

    records: int = 0
    rows: int = 0
    stale_records: int = 0
    malformed: dict[str, int] = field(default_factory=dict)
    segments_lost: int = 0
    truncations: int = 0
    last_record_timestamp: float = 0.0


@dataclass
class _Rows:
    features: dict[str, Column]
    predictions: dict[str, Column]


class VersionPipeline:
    """Drift and quality windows of one model version, fed from its spool directory."""

    def __init__(self, info: VersionInfo, bucket_seconds: float, windows: Mapping[str, float],
                 state: Mapping[str, Any] | None = None, arrays: Mapping[str, npt.NDArray[Any]] | None = None) -> None:
        self.info = info
        self.bucket_seconds = bucket_seconds
        self.windows = dict(windows)
        self.counters = Counters()
        position = None
        self.features = DriftWindows(info.profile.features, bucket_seconds, self.windows)
        self.predictions = DriftWindows(info.profile.predictions, bucket_seconds, self.windows)
        self.quality = QualityWindows(info.spec.task, bucket_seconds, self.windows)
        self.label_texts = {category_key(label) for label in info.spec.task.labels or []}
        if state is not None:
            position = Position(*state["position"])
            self.counters = Counters(**state["counters"])
            if arrays is not None:
                self._restore_windows(state, arrays)
        self.reader = SpoolReader(info.spool, position)

    @property
    def key(self) -> VersionKey:
        return self.info.key

    # --- reading ---------------------------------------------------------------------------------

    def step(self, joiner: LabelJoiner, now: float, max_records: int = 1000) -> int:
        """Process up to ``max_records`` new spool lines; returns how many lines were read.

        Records are decoded and checked one by one (cheap checks), then each time bucket's records are
        concatenated and turned into columns in one go; a group that fails as a whole is redone record
        by record so that only the bad records are skipped.
        """
        batch = self.reader.read(max_records)
        counters = self.counters
        malformed: Counter[str] = Counter(batch.malformed)
        counters.segments_lost += batch.segments_lost
        counters.truncations += batch.truncations
        groups: dict[int, list[Record]] = defaultdict(list)
        for line in batch.lines:
            try:
                record = decode(line)
                self._check_record(record, now)
            except (RecordError, _Malformed) as exc:
                malformed[exc.reason] += 1
                continue
            groups[math.floor(record.ts / self.bucket_seconds)].append(record)
        keys: list[str] = []
        predicted: list[Any] = []
        for bucket, records in groups.items():
            timestamp = (bucket + 0.5) * self.bucket_seconds  # mid-bucket: immune to rounding at the edges
            accepted, rows, values = self._columns_of_group(records, malformed)
            if not accepted:
                continue
            if not self.features.add(timestamp, {n: c.values for n, c in rows.features.items()}):
                counters.stale_records += len(accepted)
            self.predictions.add(timestamp, {n: c.values for n, c in rows.predictions.items()})
            for record in accepted:
                counters.records += 1
                counters.rows += record.rows
                counters.last_record_timestamp = max(counters.last_record_timestamp, record.ts)
                if values is not None:
                    keys.extend(row_keys(record.id, record.rows))
            if values is not None:
                predicted.extend(values)
        for reason, count in malformed.items():
            counters.malformed[reason] = counters.malformed.get(reason, 0) + count
        if keys:
            self.add_quality(joiner.add_predictions(self.key, keys, predicted, now), now)
        return len(batch.lines) + sum(batch.malformed.values())

    def _check_record(self, record: Record, now: float) -> None:
        """Cheap per-record checks; :class:`_Malformed` with the reason when the record is unusable."""
        if (record.model, record.version) != self.key:
            raise _Malformed("wrong_version")
        if not math.isfinite(record.ts) or record.ts <= 0 or record.ts > now + MAX_CLOCK_SKEW:
            raise _Malformed("timestamp")
        rows = record.rows
        for array in (*record.inputs.values(), *record.outputs.values()):
            if array.ndim == 0 or array.shape[0] != rows:
                raise _Malformed("rows")

    def _columns_of_group(self, records: list[Record], malformed: Counter[str]
                          ) -> tuple[list[Record], _Rows, list[Any] | None]:
        """Columns of a bucket's records: all at once, or record by record when the group fails."""
        if len(records) > 1:
            try:
                rows, values = self._columns(_stack([r.inputs for r in records]),
                                             _stack([r.outputs for r in records]))
                return records, rows, values
            except _Malformed:
                pass  # find the culprits one by one
        accepted: list[Record] = []
        parts: list[_Rows] = []
        values_all: list[Any] | None = []
        for record in records:
            try:
                rows, values = self._columns(record.inputs, record.outputs)
            except _Malformed as exc:
                malformed[exc.reason] += 1
                continue
            accepted.append(record)
            parts.append(rows)
            if values is None or values_all is None:
                values_all = None
            else:
                values_all.extend(values)
        if not parts:
            return [], _Rows({}, {}), None
        merged = _Rows(_concat([p.features for p in parts]), _concat([p.predictions for p in parts]))
        return accepted, merged, values_all

    def _columns(self, inputs: Mapping[str, npt.NDArray[Any]], outputs: Mapping[str, npt.NDArray[Any]]
                 ) -> tuple[_Rows, list[Any] | None]:
        """Feature and prediction columns (numeric ones as float64) and per-row predictions for the joiner."""
        spec = self.info.spec
        try:
            features = feature_columns(spec, inputs)
            predictions = prediction_columns(spec, self.info.output_names,
                                             [outputs[name] for name in self.info.output_names])
        except (KeyError, IndexError, ValueError):
            raise _Malformed("schema_mismatch") from None
        try:
            for columns in (features, predictions):
                for name, column in columns.items():
                    if column.kind == "numeric":
                        columns[name] = Column("numeric", np.asarray(column.values, dtype=np.float64))
        except (TypeError, ValueError):
            raise _Malformed("type_mismatch") from None
        return _Rows(features, predictions), self._predicted(predictions)

    def _predicted(self, predictions: dict[str, Column]) -> list[Any] | None:
        """Each row's prediction in the form labels are compared with (None: no quality for this task)."""
        if self.info.spec.task.type == "classification":
            column = predictions.get(LABEL_COLUMN)
            return None if column is None else category_keys(column.values)
        if len(predictions) != 1:
            return None
        return [float(v) for v in next(iter(predictions.values())).values]

    # --- labels ----------------------------------------------------------------------------------

    def validate_label(self, raw: Any) -> Any | None:
        """A label in the form predictions are kept in, or None when it is not one of this task's."""
        if self.info.spec.task.type == "classification":
            key = category_key(raw)
            return key if key in self.label_texts else None
        if isinstance(raw, int | float) and not isinstance(raw, bool) and math.isfinite(raw):
            return float(raw)
        return None

    def add_quality(self, joined: list[Joined], now: float) -> None:
        """Count joined (prediction, label) pairs in the quality windows at ``now`` (the join time)."""
        pairs = [(j.predicted, j.actual) for j in joined if j.predicted is not None]
        if not pairs:
            return
        kind = object if self.info.spec.task.type == "classification" else np.float64
        self.quality.add(now, np.asarray([p for p, _actual in pairs], dtype=kind),
                         np.asarray([a for _predicted, a in pairs], dtype=kind))

    # --- checkpoint ------------------------------------------------------------------------------

    def state(self) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]:
        """JSON state (position, counters, configuration) and the window arrays."""
        position = self.reader.position
        meta = {"build_key": self.info.build_key, "position": [position.segment, position.offset],
                "counters": asdict(self.counters), "bucket_seconds": self.bucket_seconds, "windows": self.windows}
        arrays: dict[str, npt.NDArray[Any]] = {}
        for prefix, state in (("features", self.features.state_dict()), ("predictions", self.predictions.state_dict()),
                              ("quality", self.quality.state_dict())):
            arrays.update({f"{prefix}/{name}": value for name, value in state.items()})
        return meta, arrays

    def _restore_windows(self, state: Mapping[str, Any], arrays: Mapping[str, npt.NDArray[Any]]) -> None:
        name = f"{self.info.model} version {self.info.version}"
        if state.get("build_key") != self.info.build_key:
            log.warning("%s: the artifact changed since the checkpoint; windows start empty", name)
            return
        if state.get("bucket_seconds") != self.bucket_seconds or state.get("windows") != self.windows:
            log.warning("%s: bucket or windows changed since the checkpoint; windows start empty", name)
            return

        def part(prefix: str) -> dict[str, npt.NDArray[Any]]:
            return {k.removeprefix(prefix + "/"): v for k, v in arrays.items() if k.startswith(prefix + "/")}

        try:
            features = DriftWindows.from_state(self.info.profile.features, part("features"))
            predictions = DriftWindows.from_state(self.info.profile.predictions, part("predictions"))
            quality = QualityWindows.from_state(self.info.spec.task, part("quality"))
        except (KeyError, ValueError) as exc:
            log.warning("%s: checkpointed windows unusable (%s); windows start empty", name, exc)
            return
        self.features, self.predictions, self.quality = features, predictions, quality

    def close(self) -> None:
        self.reader.close()


def _concat(parts: list[dict[str, Column]]) -> dict[str, Column]:
    if len(parts) == 1:
        return parts[0]
    return {name: Column(column.kind, np.concatenate([p[name].values for p in parts]))
            for name, column in parts[0].items()}


def _stack(tensors: list[dict[str, npt.NDArray[Any]]]) -> dict[str, npt.NDArray[Any]]:
    """Each tensor of a group of records, concatenated along the rows (``_Malformed`` if they do not fit)."""
    names = tensors[0].keys()
    try:
        return {name: np.concatenate([t[name] for t in tensors]) for name in names}
    except (KeyError, ValueError):
        raise _Malformed("schema_mismatch") from None
