"""The drift exporter's core: watched versions, the reading loop, labels, checkpoints.

One :class:`Exporter` per serving host. A worker thread repeats: discover versions (every
``discovery_interval``), read a bounded batch from every version's spool, read the labels file,
expire old join entries, checkpoint (every ``checkpoint_interval``). HTTP handlers and scrapes run
on other threads; one lock guards the state. An error in one pass is logged and the loop goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy.typing as npt

from modelfleet.drift.checkpoint import (
    CHECKPOINT_FILE,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
    version_arrays,
)
from modelfleet.drift.discovery import VersionKey, artifact_stamp, load_version, scan_spool
from modelfleet.drift.joiner import Joined, LabelJoiner
from modelfleet.drift.labels import Label, LabelFile
from modelfleet.drift.pipeline import VersionPipeline
from modelfleet.durations import parse_duration
from modelfleet.errors import ArtifactError
from modelfleet.spec import ModelSpec

log = logging.getLogger(__name__)


@dataclass
class ExporterSettings:
    spool_dir: Path
    artifacts_dir: Path
    state_dir: Path
    bucket_seconds: float = 10.0
    windows: dict[str, float] | None = None  # None: each version's spec.drift.windows
    label_ttl: float = 3600.0
    labels_file: Path | None = None
    checkpoint_interval: float = 30.0
    discovery_interval: float = 5.0
    poll_interval: float = 0.2
    batch_records: int = 1000
    max_pending: int = 100_000


def window_names(values: Iterable[str | float]) -> dict[str, float]:
    """Window label → seconds, from durations as written in a spec or on the command line."""
    return {(v if isinstance(v, str) else f"{v:g}s"): parse_duration(v) for v in values}


class Exporter:
    """The state of the drift exporter and the thread that feeds it."""

    def __init__(self, settings: ExporterSettings) -> None:
        self.settings = settings
        self.lock = threading.RLock()
        self.pipelines: dict[VersionKey, VersionPipeline] = {}
        self.failed: dict[VersionKey, tuple[str, Any]] = {}
        self.joiner = LabelJoiner(self._validate, ttl=settings.label_ttl, max_predictions=settings.max_pending,
                                  max_labels=settings.max_pending, max_tombstones=settings.max_pending)
        self.labels_file = LabelFile(settings.labels_file) if settings.labels_file else None
        self.last_checkpoint: float | None = None
        self.checkpoint_failures = 0
        self._restored: dict[VersionKey, tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]] = {}
        self._next_discovery = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="drift-exporter", daemon=True)

    @property
    def checkpoint_path(self) -> Path:
        return self.settings.state_dir / CHECKPOINT_FILE

    @property
    def healthy(self) -> bool:
        return self._thread.is_alive()

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> Exporter:
        self.restore()
        self.discover()
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the worker and write a last checkpoint."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self.checkpoint()
        with self.lock:
            for pipeline in self.pipelines.values():
                pipeline.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                work = self.run_once(time.time())
            except Exception:  # one bad pass must not end the daemon
                log.exception("drift exporter pass failed; continuing")
                work = 0
            if not work:
                self._stop.wait(self.settings.poll_interval)

    def run_once(self, now: float) -> int:
        """One pass of the worker; returns how much was read (0: idle)."""
        if now >= self._next_discovery:
            self.discover()
            self._next_discovery = now + self.settings.discovery_interval
        work = 0
        for pipeline in list(self.pipelines.values()):
            with self.lock:
                work += pipeline.step(self.joiner, now, self.settings.batch_records)
        if self.labels_file is not None:
            labels, malformed = self.labels_file.read()
            with self.lock:
                self.joiner.outcomes["malformed"] += malformed
                self.apply_labels(labels, now)
            work += len(labels) + malformed
        with self.lock:
            self.joiner.expire(now)
        if self.last_checkpoint is None or now - self.last_checkpoint >= self.settings.checkpoint_interval:
            self.checkpoint()
        return work

    # --- versions --------------------------------------------------------------------------------

    def windows_for(self, spec: ModelSpec) -> dict[str, float]:
        return dict(self.settings.windows) if self.settings.windows else window_names(spec.drift.windows)

    def discover(self) -> None:
        """Pick up new version directories; drop versions whose spool directory is gone."""
        settings = self.settings
        present = set(scan_spool(settings.spool_dir))
        for key in present - set(self.pipelines):
            stamp = artifact_stamp(settings.artifacts_dir, key)
            if key in self.failed and self.failed[key][1] == stamp:
                continue
            try:
                info = load_version(settings.spool_dir, settings.artifacts_dir, key)
            except ArtifactError as exc:
                log.warning("%s version %s: not watched: %s", *key, exc)
                with self.lock:
                    self.failed[key] = (str(exc), stamp)
                continue
            state, arrays = self._restored.pop(key, (None, None))
            pipeline = VersionPipeline(info, settings.bucket_seconds, self.windows_for(info.spec), state, arrays)
            with self.lock:
                self.failed.pop(key, None)
                self.pipelines[key] = pipeline
            log.info("watching %s version %s (windows %s)", *key, ", ".join(pipeline.windows))
        with self.lock:
            for key in set(self.pipelines) - present:
                log.info("%s version %s: spool directory gone; no longer watched", *key)
                self.pipelines.pop(key).close()
                self.joiner.forget_version(key)
            for key in set(self.failed) - present:
                del self.failed[key]
            for key in set(self._restored) - present:
                del self._restored[key]

    # --- labels ----------------------------------------------------------------------------------

    def _validate(self, version: VersionKey, raw: Any) -> Any | None:
        pipeline = self.pipelines.get(version)
        return pipeline.validate_label(raw) if pipeline is not None else None

    def apply_labels(self, labels: list[Label], now: float) -> Counter[str]:
        """File labels with the joiner (caller holds the lock); returns their outcomes."""
        outcomes: Counter[str] = Counter()
        joined: dict[VersionKey, list[Joined]] = {}
        for label in labels:
            outcome, pair = self.joiner.add_label(label.key, label.value, now)
            outcomes[outcome] += 1
            if pair is not None:
                joined.setdefault(pair.version, []).append(pair)
        for version, pairs in joined.items():
            pipeline = self.pipelines.get(version)
            if pipeline is not None:
                pipeline.add_quality(pairs, now)
        return outcomes

    def submit_labels(self, labels: list[Label]) -> Counter[str]:
        """Labels from the feedback endpoint."""
        with self.lock:
            return self.apply_labels(labels, time.time())

    # --- checkpoint ------------------------------------------------------------------------------

    def checkpoint(self) -> bool:
        """Save everything in one atomic file; a failure is logged and counted, never fatal."""
        with self.lock:
            meta: dict[str, Any] = {"saved": time.time(), "versions": {}, "joiner": self.joiner.state_dict(),
                                    "labels_file": self.labels_file.state_dict() if self.labels_file else None}
            arrays: dict[str, npt.NDArray[Any]] = {}
            for (model, version), pipeline in self.pipelines.items():
                state, parts = pipeline.state()
                meta["versions"][f"{model}/{version}"] = state
                arrays.update({f"v/{model}/{version}/{k}": v.copy() for k, v in parts.items()})
            for (model, version), (state, parts) in self._restored.items():  # not discovered again yet
                meta["versions"][f"{model}/{version}"] = state
                arrays.update({f"v/{model}/{version}/{k}": v for k, v in parts.items()})
        try:
            save_checkpoint(self.checkpoint_path, meta, arrays)
        except OSError as exc:
            self.checkpoint_failures += 1
            log.error("checkpoint not written: %s", exc)
            self.last_checkpoint = self.last_checkpoint or time.time()  # retry at the next interval
            return False
        self.last_checkpoint = meta["saved"]
        return True

    def restore(self) -> None:
        """Load the checkpoint, if any; an unreadable one is moved aside and the exporter starts afresh."""
        path = self.checkpoint_path
        try:
            loaded = load_checkpoint(path)
        except CheckpointError as exc:
            aside = path.with_name(path.name + ".corrupt")
            log.error("%s; moved to %s, starting without it", exc, aside)
            path.replace(aside)
            return
        if loaded is None:
            return
        meta, arrays = loaded
        for name, state in meta.get("versions", {}).items():
            model, _slash, version = name.partition("/")
            self._restored[(model, version)] = (state, version_arrays(arrays, model, version))
        self.joiner.load_state(meta.get("joiner") or {})
        labels_state = meta.get("labels_file")
        if self.labels_file is not None and labels_state and labels_state.get("path") == str(self.labels_file.path):
            self.labels_file = LabelFile(self.labels_file.path, labels_state)
        self.last_checkpoint = float(meta.get("saved", time.time()))
        log.info("restored checkpoint %s (%d versions)", path, len(self._restored))
