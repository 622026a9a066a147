"""modelfleet: take trained models to production GPU hosts and keep them healthy there."""

from __future__ import annotations

from importlib import metadata

try:
    __version__ = metadata.version("modelfleet")
except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"
