"""Fixtures shared by every test layer."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from harness import collection_root, need

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


@pytest.fixture(scope="session")
def trained_examples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of examples/ with every example trained (model files and data written beside each spec)."""
    root = tmp_path_factory.mktemp("examples")
    for example in sorted(p for p in EXAMPLES.iterdir() if (p / "train.py").is_file()):
        target = root / example.name
        shutil.copytree(example, target, ignore=shutil.ignore_patterns("data", "*.joblib", "*.pt", "__pycache__"))
        subprocess.run([sys.executable, str(target / "train.py")], check=True, capture_output=True, timeout=300)
    return root


@pytest.fixture(scope="session")
def promtool() -> str:
    """promtool's path; a test that needs it FAILS where it is missing (CI and workstations alike)."""
    return need("promtool", "prometheus")


@pytest.fixture(scope="session")
def collections_root() -> Path:
    """A directory with ``ansible_collections/modelfleet/serving`` -> this checkout (see harness.collection_root)."""
    return collection_root()
