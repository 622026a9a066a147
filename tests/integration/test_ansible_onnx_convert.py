"""The onnx_convert module through real ansible-playbook runs: check mode, build, idempotent re-run, errors."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from harness import ansible_env

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", name="ansible_env")
def ansible_env_fixture() -> dict[str, str]:
    """Environment in which FQCNs resolve to this checkout as the collection modelfleet.serving."""
    return ansible_env()


def _playbook(env: dict[str, str], *args: str) -> tuple[int, dict[str, Any]]:
    command = [shutil.which("ansible-playbook", path=env["PATH"]) or "ansible-playbook",
               str(REPO / "playbooks" / "convert_model.yml"), *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
    return done.returncode, json.loads(done.stdout)


def _task(run: dict[str, Any], name: str) -> dict[str, Any]:
    for play in run["plays"]:
        for task in play["tasks"]:
            if task["task"]["name"] == name:
                return dict(task["hosts"]["localhost"])
    raise AssertionError(f"task {name!r} not in the run")


def test_check_run_rerun(ansible_env: dict[str, str], trained_examples: Path, tmp_path: Path) -> None:
    spec = str(trained_examples / "mlp" / "model.yml")
    out = tmp_path / "artifacts"
    common = ("-e", f"model_spec={spec}", "-e", f"artifact_root={out}", "--diff")

    code, check = _playbook(ansible_env, *common, "--check")
    assert code == 0
    planned = _task(check, "Build the artifact")
    assert planned["changed"] and planned["outcome"] == "would build"
    assert "would be built" in planned["diff"]["after"]
    assert not out.exists() or not any(out.rglob("*.onnx"))
    # The spec as modelfleet.spec validated it, what deploy_model.yml passes to the roles (even in check mode).
    model = planned["model"]
    assert model["name"] == "mlp" and model["version"] == "1"
    assert model["serving"]["batching"] == {"max_batch": 32, "max_queue_delay_us": 1000, "max_queue_size": 1024}
    assert Path(model["source"]["path"]) == (trained_examples / "mlp" / "model.pt").resolve()

    code, first = _playbook(ansible_env, *common)
    assert code == 0 and first["stats"]["localhost"]["changed"] == 1
    built = _task(first, "Build the artifact")
    assert built["outcome"] == "built" and Path(built["path"]) == out / "mlp" / "1"
    assert '"build_key"' in built["diff"]["after"] and built["diff"]["before"] == ""
    assert built["parity"]["outputs"]["predicted label"]["mismatches"] == 0
    assert (out / "mlp" / "1" / "model.onnx").is_file()

    code, second = _playbook(ansible_env, *common)
    assert code == 0 and second["stats"]["localhost"]["changed"] == 0
    assert _task(second, "Build the artifact")["outcome"] == "unchanged"

    code, recheck = _playbook(ansible_env, *common, "--check")
    assert code == 0 and recheck["stats"]["localhost"]["changed"] == 0


def test_invalid_spec_fails_the_task_with_each_problem(ansible_env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "model.yml"
    bad.write_text("name: Bad_Name\nversion: '1'\nsource: {framework: sklearn, path: m.joblib}\n"
                   "inputs: [{name: x, datatype: FP99, shape: [-1, 2]}]\ntask: {type: regression}\n")
    code, run = _playbook(ansible_env, "-e", f"model_spec={bad}", "-e", f"artifact_root={tmp_path / 'out'}")
    assert code == 2
    failed = _task(run, "Build the artifact")
    assert failed["failed"]
    assert any(p.startswith("name:") for p in failed["problems"])
    assert any(p.startswith("inputs[0].datatype:") for p in failed["problems"])


def test_ansible_doc_renders_the_module(ansible_env: dict[str, str]) -> None:
    doc = subprocess.run([shutil.which("ansible-doc", path=ansible_env["PATH"]) or "ansible-doc", "--json",
                          "modelfleet.serving.onnx_convert"], env=ansible_env, capture_output=True, text=True,
                         timeout=120, check=True)
    documented = json.loads(doc.stdout)["modelfleet.serving.onnx_convert"]
    assert set(documented["doc"]["options"]) == {"spec", "output_dir", "force"}
    assert documented["doc"]["attributes"]["check_mode"]["support"] == "full"
    assert "path" in documented["return"]
