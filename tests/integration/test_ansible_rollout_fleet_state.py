"""The rollout role's start (tasks_from start) through real ansible-playbook runs: the state goes to the serving
hosts, and a second controller with an empty state directory adopts it and resumes the same rollout.

Two inventory hosts, both this machine over the local connection, each with its own directory standing in for
/var/lib/modelfleet/releases; the release record (stable 2, canary 3) is given as a host variable.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from harness import ansible_env

pytestmark = pytest.mark.integration

SPEC = """\
name: credit-risk
version: "3"
source: {framework: onnx, path: model.onnx}
inputs: [{name: x, datatype: FP32, shape: [-1, 2]}]
task: {type: classification, labels: [0, 1]}
rollout: {steps: [10, 50], interval: 30s, min_requests: 50}
"""
PLAYBOOK = """\
- name: Start or resume the rollout of credit-risk
  hosts: serving
  gather_facts: false
  tasks:
    - name: Start
      ansible.builtin.include_role:
        name: modelfleet.serving.rollout
        tasks_from: start
      vars:
        rollout_model: credit-risk
        rollout_spec: "{{ spec }}"
        rollout_stable_version: "2"
        rollout_canary_version: "3"
        rollout_prometheus_url: http://127.0.0.1:9
"""


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    record = {"model": "credit-risk", "stable": {"version": "2", "slot": "blue"},
              "canary": {"version": "3", "slot": "green", "since": int(time.time()) - 60}, "previous": None}
    inventory = {"all": {"children": {"serving": {"hosts": {
        host: {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}",
               "rollout_fleet_state_dir": str(tmp_path / host), "model_server_release": record}
        for host in ("serving-1", "serving-2")}}}}}
    (tmp_path / "hosts.json").write_text(json.dumps(inventory))
    (tmp_path / "start.yml").write_text(PLAYBOOK)
    (tmp_path / "model.yml").write_text(SPEC)
    for host in ("serving-1", "serving-2"):
        (tmp_path / host).mkdir()
    return tmp_path


def start(fleet: Path, state_dir: Path) -> dict[str, Any]:
    env = ansible_env()
    command = [shutil.which("ansible-playbook", path=env["PATH"]) or "ansible-playbook", "-i",
               str(fleet / "hosts.json"), str(fleet / "start.yml"), "-e", f"spec={fleet / 'model.yml'}",
               "-e", f"rollout_state_dir={state_dir}"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=fleet)
    run = json.loads(done.stdout)
    assert done.returncode == 0, done.stdout[-3000:]
    for play in run["plays"]:
        for task in play["tasks"]:
            if task["task"]["name"].endswith("Start or resume the rollout of credit-risk"):
                return dict(task["hosts"]["serving-1"])
    names = [task["task"]["name"] for play in run["plays"] for task in play["tasks"]]
    raise AssertionError(f"the start task did not run: {names}")


def test_a_second_controller_resumes_the_rollout_kept_on_the_hosts(fleet: Path) -> None:
    first = fleet / "controller-a"
    started = start(fleet, first)
    assert started["decision"] == "start" and started["adopted"] is False
    state = (first / "credit-risk.json").read_text()
    for host in ("serving-1", "serving-2"):
        assert (fleet / host / "credit-risk.rollout.json").read_text() == state

    second = fleet / "controller-b"
    resumed = start(fleet, second)
    assert resumed["adopted"] is True and resumed["decision"] == "resume" and not resumed["changed"]
    assert (second / "credit-risk.json").read_text() == state
    assert "adopted" in json.dumps(resumed.get("warnings", []))

    again = start(fleet, second)
    assert again["adopted"] is False and again["decision"] == "resume"


def test_a_damaged_copy_on_one_host_is_named_and_the_other_used(fleet: Path) -> None:
    first = fleet / "controller-a"
    start(fleet, first)
    (fleet / "serving-2" / "credit-risk.rollout.json").write_text("{damaged")
    resumed = start(fleet, fleet / "controller-b")
    assert resumed["adopted"] is True and resumed["decision"] == "resume"
    assert "is ignored" in json.dumps(resumed["warnings"])
