"""The fleet verifier shares the project's test harness (tests/harness.py: load_example, wait_for, ...)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
sys.path.insert(0, str(PROJECT / "tests"))
