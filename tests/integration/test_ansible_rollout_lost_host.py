"""A serving host lost mid-rollout, through the rollout role (main entry point) in a real ansible-playbook run, then
reconciled by the role's reconcile entry point: the policy of docs/rollout.md end to end, without Prometheus (a lost
host decides before any query; nothing listens at the Prometheus URL).

Two inventory hosts, both this machine over the local connection, each with its own real HAProxy (the router role's
template), data directory and state directory. serving-2 is lost at the first step: its router socket path is wrong,
so setting the step's weight fails there and the host drops out of the play. Later it "returns" (the inventory
names its real socket) and the reconcile run brings it in line. No systemd here: stops are attempted only.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from local_fleet import HOSTS, failure_messages, host_vars, router_fleet, run_playbook, weights, write_inventory
from test_router_haproxy import Router

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
- name: Roll out or reconcile credit-risk
  hosts: serving
  gather_facts: false
  module_defaults:
    modelfleet.serving.router_weight:
      state_file: "{{ router_state_file }}"
    modelfleet.serving.rollout_publish:
      server_state_file: "{{ router_state_file }}"
  tasks:
    - name: Run the rollout role
      ansible.builtin.include_role:
        name: modelfleet.serving.rollout
        tasks_from: "{{ entry }}"
      vars:
        rollout_model: credit-risk
        rollout_spec: "{{ spec }}"
        rollout_stable_version: "2"
        rollout_canary_version: "3"
        rollout_prometheus_url: http://127.0.0.1:9
"""


@pytest.fixture
def fleet() -> Iterator[tuple[Path, dict[str, Router]]]:
    with router_fleet("mf-lost-") as (root, routers):
        for host in HOSTS:
            (root / host / "textfile").mkdir()
            (root / host / "releases" / "credit-risk.json").write_text(json.dumps({
                "model": "credit-risk", "stable": {"version": "2", "slot": "blue", "since": 1700000000},
                "canary": {"version": "3", "slot": "green", "since": 1700000100}, "previous": None}))
        (root / "play.yml").write_text(PLAYBOOK)
        (root / "model.yml").write_text(SPEC)
        yield root, routers


def inventory(root: Path, routers: dict[str, Router], lost: str | None) -> Path:
    return write_inventory(root / "hosts.json", {
        host: host_vars(root, host, routers[host], rollout_textfile_dir=str(root / host / "textfile"),
                        rollout_router_socket="/nonexistent/admin.sock" if host == lost else routers[host].socket)
        for host in HOSTS})


def run(root: Path, hosts: Path, entry: str) -> tuple[int, dict[str, Any]]:
    return run_playbook(root / "play.yml", hosts, "-e", f"entry={entry}", "-e", f"spec={root / 'model.yml'}",
                        "-e", f"rollout_state_dir={root / 'controller'}")


def record(root: Path, host: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((root / host / "releases" / "credit-risk.json").read_text())
    return data


def test_a_host_lost_at_a_step_rolls_back_the_others_and_rejoins_later(
        fleet: tuple[Path, dict[str, Router]]) -> None:
    root, routers = fleet
    code, result = run(root, inventory(root, routers, lost="serving-2"), "main")
    # The rollout's rollback failure (2: the lost host failed a task here; 4 where it is unreachable).
    assert code == 2, failure_messages(result)
    failure = [m for m in failure_messages(result) if "was rolled back" in m]
    assert failure and "reconciles them: serving-2" in failure[0], failure_messages(result)
    state = json.loads((root / "controller" / "credit-risk.json").read_text())
    assert state["phase"] == "rolled_back" and "serving host serving-2 lost mid-rollout" in state["last_reason"]
    assert state["history"] == []  # rolled back without an analysis (nothing listens at the Prometheus URL)
    # The reachable host: stable 2 gets all traffic, canary 3 is dropped from its record; the state copy is there.
    assert weights(routers["serving-1"]) == {"blue": 100, "green": 0}
    assert record(root, "serving-1")["canary"] is None
    kept = json.loads((root / "serving-1" / "releases" / "credit-risk.rollout.json").read_text())
    assert kept["phase"] == "rolled_back"
    # The lost host is left as it was.
    assert record(root, "serving-2")["canary"]["version"] == "3"

    # It returns; the next run (deploy_model.yml and rollback_model.yml run this first) brings it in line.
    routers["serving-2"].cli("set server credit-risk/green weight 10")
    routers["serving-2"].cli("set server credit-risk/blue weight 90")
    code, result = run(root, inventory(root, routers, lost=None), "reconcile")
    assert code == 0, failure_messages(result)
    assert weights(routers["serving-2"]) == {"blue": 100, "green": 0}
    assert record(root, "serving-2")["canary"] is None and record(root, "serving-2")["stable"]["version"] == "2"
    assert result["stats"]["serving-1"]["changed"] == 0
