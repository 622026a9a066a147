"""The model_rollout module run as Ansible runs it: a subprocess with JSON arguments, result on stdout."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from harness import free_port

REPO = Path(__file__).resolve().parents[2]
MODULE = REPO / "plugins" / "modules" / "model_rollout.py"
SPEC = """\
name: credit-risk
version: "3"
source: {framework: onnx, path: model.onnx}
inputs: [{name: x, datatype: FP32, shape: [-1, 2]}]
features: [{name: a, type: numeric}, {name: b, type: numeric}]
task: {type: classification, labels: [0, 1]}
rollout:
  steps: [10, 50]
  interval: 30s
  min_requests: 50
  gates: {error_rate: 0.02, p99_latency_ms: 80, drift_psi: 0.25}
drift: {windows: [1h, 10m]}
"""


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "model.yml"
    path.write_text(SPEC)
    return path


def run_module(root: Path, tmp_path: Path, check: bool = False, **args: Any) -> dict[str, Any]:
    arguments = tmp_path / "args.json"
    arguments.write_text(
        json.dumps({"ANSIBLE_MODULE_ARGS": {**args, "_ansible_check_mode": check, "_ansible_diff": True}})
    )
    done = subprocess.run(
        [sys.executable, str(MODULE), str(arguments)],
        capture_output=True,
        text=True,
        timeout=120,
        # This checkout's runtime first (a virtualenv may hold another checkout's, installed editable).
        env={"PYTHONPATH": f"{root}:{REPO / 'src'}", "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
    )
    assert done.stdout, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_plan_shows_steps_gates_and_queries(collections_root: Path, tmp_path: Path, spec: Path) -> None:
    result = run_module(
        collections_root, tmp_path, action="plan", spec=str(spec), stable_version="2", hosts=["gpu-1", "gpu-2"]
    )
    assert not result.get("failed"), result
    assert not result["changed"] and result["decision"] == "none"
    plan = result["plan"]
    assert [s["weight"] for s in plan["steps"]] == [10, 50] and plan["promotion_weight"] == 100
    assert plan["interval_seconds"] == 30 and plan["drift_window"] == "10m" and plan["hosts"] == ["gpu-1", "gpu-2"]
    gates = {g["name"]: g for g in plan["gates"]}
    assert gates["p99_latency_ms"]["threshold"] == 80 and "[30s]" in gates["p99_latency_ms"]["query"]
    assert 'window="10m"' in gates["drift_psi"]["query"]
    assert "50% -> promotion 100%" in result["reason"]


def test_start_check_then_start_then_resume(collections_root: Path, tmp_path: Path, spec: Path) -> None:
    common: dict[str, Any] = dict(spec=str(spec), stable_version="2", state_dir=str(tmp_path / "state"))
    check = run_module(collections_root, tmp_path, check=True, action="start", **common)
    assert check["changed"] and check["decision"] == "start" and "would start" in check["reason"]
    assert not (tmp_path / "state").exists()
    started = run_module(collections_root, tmp_path, action="start", **common)
    assert started["changed"] and started["weight"] == 10 and started["stable_weight"] == 90
    assert started["state_file"] == str(tmp_path / "state" / "credit-risk.json")
    assert started["diff"]["before"] == "" and '"phase": "progressing"' in started["diff"]["after"]
    assert "modelfleet_rollout_step" in started["metrics"] and "action" not in started
    again = run_module(collections_root, tmp_path, action="start", **common)
    assert not again["changed"] and again["decision"] == "resume"
    other = run_module(collections_root, tmp_path, action="start", canary_version="4", **common)
    assert other["failed"] and "in progress" in other["msg"]


def test_start_with_canary_since(collections_root: Path, tmp_path: Path, spec: Path) -> None:
    common: dict[str, Any] = dict(spec=str(spec), stable_version="2", state_dir=str(tmp_path / "state"))
    run_module(collections_root, tmp_path, action="start", **common)
    # As the rollout role passes it: text from the release record's canary.since.
    resumed = run_module(collections_root, tmp_path, action="start", canary_since="0.0", **common)
    assert not resumed["changed"] and resumed["decision"] == "resume"
    afresh = run_module(collections_root, tmp_path, action="start", canary_since=str(time.time() + 60), **common)
    assert afresh["changed"] and afresh["decision"] == "start"
    assert len(list((tmp_path / "state" / "archive").glob("*.json"))) == 1
    bad = run_module(collections_root, tmp_path, action="start", canary_since="yesterday", **common)
    assert bad["failed"] and "canary_since" in bad["msg"]


def test_analyze_check_mode_and_unreachable_prometheus(collections_root: Path, tmp_path: Path, spec: Path) -> None:
    port = free_port()
    state_dir = str(tmp_path / "state")
    run_module(
        collections_root,
        tmp_path,
        action="start",
        spec=str(spec),
        stable_version="2",
        state_dir=state_dir,
        interval="1s",
    )
    common: dict[str, Any] = dict(
        model="credit-risk",
        state_dir=state_dir,
        prometheus_url=f"http://127.0.0.1:{port}",
        prometheus_username="ops",
        prometheus_password="hunter2-secret",
        max_wait="0",
    )
    check = run_module(collections_root, tmp_path, check=True, action="analyze", **common)
    assert not check["changed"] and check["would_wait_seconds"] <= 1 and len(check["queries"]) == 7
    started = time.monotonic()
    analysed = run_module(collections_root, tmp_path, action="analyze", **common)
    assert time.monotonic() - started < 20
    assert analysed["changed"] and analysed["decision"] == "hold" and analysed["verdict"] == "inconclusive"
    assert analysed["inconclusive"] == 1 and analysed["weight"] == 10
    assert {g["verdict"] for g in analysed["gates"]} == {"inconclusive"}
    assert "unreachable" in analysed["reason"] and "unreachable" in json.dumps(analysed["warnings"])
    assert "hunter2-secret" not in json.dumps(analysed)


def test_finish_abort_status(collections_root: Path, tmp_path: Path, spec: Path) -> None:
    state_dir = str(tmp_path / "state")
    run_module(collections_root, tmp_path, action="start", spec=str(spec), stable_version="2", state_dir=state_dir)
    early = run_module(collections_root, tmp_path, action="finish", model="credit-risk", state_dir=state_dir)
    assert early["failed"] and "still progressing" in early["msg"]
    aborted = run_module(
        collections_root, tmp_path, action="abort", model="credit-risk", state_dir=state_dir, reason="bad feeling"
    )
    assert aborted["changed"] and aborted["phase"] == "aborted" and aborted["weight"] == 0
    again = run_module(collections_root, tmp_path, action="abort", model="credit-risk", state_dir=state_dir)
    assert not again["changed"]
    status = run_module(collections_root, tmp_path, action="status", spec=str(spec), state_dir=state_dir)
    assert status["phase"] == "aborted" and status["history"] == [] and "bad feeling" in status["reason"]


def test_start_when_the_version_is_already_stable(collections_root: Path, tmp_path: Path, spec: Path) -> None:
    result = run_module(
        collections_root,
        tmp_path,
        action="start",
        spec=str(spec),
        stable_version="3",
        state_dir=str(tmp_path / "state"),
    )
    assert not result["changed"] and result["phase"] == "promoted" and "already the stable" in result["reason"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            {
                "action": "start",
                "model": "credit-risk",
                "canary_version": "3",
                "stable_version": "2",
                "rollout": {"steps": [50, 20]},
            },
            "rollout.steps: steps[1] = 20 must be greater than steps[0] = 50",
        ),
        (
            {
                "action": "plan",
                "model": "credit-risk",
                "canary_version": "3",
                "stable_version": "2",
                "rollout": {"gates": {"error_rat": 0.1}},
            },
            "rollout.gates.error_rat",
        ),
        ({"action": "plan", "model": "credit-risk", "stable_version": "2"}, "canary_version is needed"),
        ({"action": "analyze", "model": "credit-risk"}, "missing: state_dir, prometheus_url"),
        ({"action": "status", "state_dir": "/tmp"}, "one of the following is required: spec, model"),
        ({"action": "plan", "spec": "/nonexistent/model.yml", "stable_version": "2"}, "no such file"),
        (
            {
                "action": "analyze",
                "model": "credit-risk",
                "state_dir": "/nonexistent",
                "prometheus_url": "http://x:9090",
            },
            "run action start first",
        ),
    ],
)
def test_bad_arguments_fail_clearly(collections_root: Path, tmp_path: Path, args: dict[str, Any], message: str) -> None:
    if args["action"] == "start":
        args = {**args, "state_dir": str(tmp_path / "state")}
    result = run_module(collections_root, tmp_path, **args)
    assert result.get("failed"), result
    assert message in result["msg"] + json.dumps(result.get("problems", [])), result["msg"]


def test_model_must_match_the_spec(collections_root: Path, tmp_path: Path, spec: Path) -> None:
    result = run_module(collections_root, tmp_path, action="plan", spec=str(spec), model="other", stable_version="2")
    assert result["failed"] and "differs from the spec's name" in result["msg"]


def test_analyze_with_a_lost_host_rolls_back(collections_root: Path, tmp_path: Path, spec: Path) -> None:
    state_dir = str(tmp_path / "state")
    started = run_module(collections_root, tmp_path, action="start", spec=str(spec), stable_version="2",
                         state_dir=state_dir, hosts=["serving-1", "serving-2"])
    assert started["phase"] == "progressing"
    # Prometheus is never asked (nothing listens on port 9): the lost host decides.
    common: dict[str, Any] = dict(model="credit-risk", state_dir=state_dir, prometheus_url="http://127.0.0.1:9",
                                  hosts=["serving-1"], reachable_hosts=["serving-1"])
    result = run_module(collections_root, tmp_path, action="analyze", **common)
    assert result["changed"] and result["decision"] == "rollback" and result["phase"] == "rolling_back"
    assert "serving host serving-2 lost mid-rollout" in result["reason"] and "gates" not in result
    assert "serving-2 lost" in json.dumps(result["warnings"])
    finished = run_module(collections_root, tmp_path, action="finish", model="credit-risk", state_dir=state_dir)
    assert finished["phase"] == "rolled_back"
