"""The fleet verifier shares the project's test harness (tests/harness.py: load_example, wait_for, ...).

``MODELFLEET_VERIFY_PART`` splits the verifier for ``make test``: ``untimed`` runs only the tests marked
``untimed`` (check mode: they may share the machine with other work, so they run beside pytest), ``timed`` only
the others (live traffic: alone on the machine, last). Unset (``molecule test``, ``make molecule``): every test.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
sys.path.insert(0, str(PROJECT / "tests"))

PARTS = ("untimed", "timed")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "untimed: needs the converged fleet but no live traffic (may share the machine)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    part = os.environ.get("MODELFLEET_VERIFY_PART", "")
    if not part:
        return
    if part not in PARTS:
        raise pytest.UsageError(f"MODELFLEET_VERIFY_PART={part!r}: expected one of {', '.join(PARTS)} (or unset)")
    kept: list[pytest.Item] = []
    deselected: list[pytest.Item] = []
    for item in items:
        untimed = item.get_closest_marker("untimed") is not None
        (kept if untimed == (part == "untimed") else deselected).append(item)
    config.hook.pytest_deselected(items=deselected)
    items[:] = kept
