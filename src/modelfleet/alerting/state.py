"""When each model version was last retrained, kept in a small JSON file that survives restarts.

The file is replaced atomically (write beside it, fsync, rename), so a crash leaves either the old or
the new content. A file that cannot be read is set aside as ``<name>.corrupt`` and the hook starts
with no history (at worst one extra retraining), rather than refusing to start.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import orjson

from modelfleet.fsutil import write_bytes_atomically

log = logging.getLogger(__name__)
FORMAT_VERSION = 1

Key = tuple[str, str]


class TriggerState:
    """Last successful trigger time (Unix seconds) per (model, version); thread-safe."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.last: dict[Key, float] = {}
        if path is not None:
            self.last = _load(path)

    def last_trigger(self, key: Key) -> float | None:
        with self.lock:
            return self.last.get(key)

    def snapshot(self) -> dict[Key, float]:
        with self.lock:
            return dict(self.last)

    def record(self, key: Key, at: float, keep_since: float) -> None:
        """Remember a trigger; entries older than ``keep_since`` are dropped; written through to the file."""
        with self.lock:
            self.last[key] = at
            self.last = {k: v for k, v in self.last.items() if v >= keep_since}
            if self.path is not None:
                _save(self.path, self.last)


def _load(path: Path) -> dict[Key, float]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    try:
        data = orjson.loads(raw)
        if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
            raise ValueError(f"not a version {FORMAT_VERSION} state file")
        triggers = {}
        for entry in data["triggers"]:
            at = entry["at"]
            if not isinstance(at, int | float) or isinstance(at, bool):
                raise ValueError(f"bad time {at!r}")
            triggers[(str(entry["model"]), str(entry["version"]))] = float(at)
        return triggers
    except (ValueError, KeyError, TypeError) as exc:
        aside = path.with_name(path.name + ".corrupt")
        log.warning("state file %s is unreadable (%s): moved to %s, starting without trigger history", path, exc, aside)
        path.replace(aside)
        return {}


def _save(path: Path, triggers: dict[Key, float]) -> None:
    document = {
        "version": FORMAT_VERSION,
        "triggers": [
            {"model": model, "version": version, "at": at} for (model, version), at in sorted(triggers.items())
        ],
    }
    data = orjson.dumps(document, option=orjson.OPT_INDENT_2)
    write_bytes_atomically(path, data)
