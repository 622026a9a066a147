"""`modelfleet verify`: the check the model_server role runs on every artifact that reaches a host."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path


def verify(directory: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "modelfleet.cli", "verify", str(directory), *extra],
                          capture_output=True, text=True, check=False)


def test_an_intact_artifact_verifies(credit_risk_artifact: Path) -> None:
    result = verify(credit_risk_artifact, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["name"] == "credit-risk" and "model.onnx" in report["files"]


def test_a_corrupted_or_incomplete_artifact_is_refused_by_name(credit_risk_artifact: Path, tmp_path: Path) -> None:
    copy = tmp_path / "1"
    shutil.copytree(credit_risk_artifact, copy)
    with (copy / "model.onnx").open("ab") as handle:
        handle.write(b"\0")
    corrupted = verify(copy)
    assert corrupted.returncode != 0 and "model.onnx" in corrupted.stderr and "does not match" in corrupted.stderr
    (copy / "model.onnx").unlink()
    missing = verify(copy)
    assert missing.returncode != 0 and "missing" in missing.stderr
    assert "not a modelfleet artifact" in verify(tmp_path).stderr
