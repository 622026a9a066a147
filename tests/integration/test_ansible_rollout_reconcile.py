"""A serving host lost mid-rollout rejoins its fleet: the rollout role's reconcile (tasks_from reconcile) through
real ansible-playbook runs, with a real HAProxy per host (the router role's template, as test_router_haproxy runs it).

Two inventory hosts, both this machine over the local connection, each with its own router and data directory
(standing in for /var/lib/modelfleet). serving-1 came back from a rollout the fleet rolled back: its router still
sends 25% to canary 10, its record still names canary 10, and its copy of the rollout state is the stale one
(progressing). serving-2 went through the rollback: stable 9, the finished state. There is no systemd here: the
stop of the canary is attempted (its failure ignored by the role). No monitoring host (no file_sd to write).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from local_fleet import HOSTS, host_vars, outcomes, router_fleet, run_playbook, weights, write_inventory
from test_router_haproxy import Router

pytestmark = pytest.mark.integration

PLAYBOOK = """\
- name: Bring hosts lost mid-rollout in line with the fleet
  hosts: serving
  gather_facts: false
  module_defaults:
    modelfleet.serving.router_weight:
      state_file: "{{ router_state_file }}"
    modelfleet.serving.rollout_publish:
      server_state_file: "{{ router_state_file }}"
  tasks:
    - name: Reconcile credit-risk
      ansible.builtin.include_role:
        name: modelfleet.serving.rollout
        tasks_from: reconcile
      vars:
        rollout_model: credit-risk
"""


def rollout_state(phase: str, updated_at: float) -> str:
    return json.dumps({"format": 1, "model": "credit-risk", "stable": "9", "canary": "10", "phase": phase,
                       "updated_at": updated_at})


@pytest.fixture
def fleet() -> Iterator[tuple[Path, dict[str, Router]]]:
    with router_fleet("mf-reconcile-") as (root, routers):
        write_inventory(root / "hosts.json", {host: host_vars(root, host, routers[host]) for host in HOSTS})
        (root / "reconcile.yml").write_text(PLAYBOOK)
        yield root, routers


def release_file(root: Path, host: str) -> Path:
    return root / host / "releases" / "credit-risk.json"


def write_release(root: Path, host: str, canary: bool) -> None:
    release_file(root, host).write_text(json.dumps({
        "model": "credit-risk", "stable": {"version": "9", "slot": "blue", "since": 1700000000},
        "canary": {"version": "10", "slot": "green", "since": 1700000100} if canary else None, "previous": None}))


def run(root: Path) -> tuple[int, dict[str, Any]]:
    return run_playbook(root / "reconcile.yml", root / "hosts.json")


def test_a_host_back_from_a_rolled_back_rollout_is_brought_in_line(fleet: tuple[Path, dict[str, Router]]) -> None:
    root, routers = fleet
    write_release(root, "serving-1", canary=True)
    write_release(root, "serving-2", canary=False)
    (root / "serving-1" / "releases" / "credit-risk.rollout.json").write_text(rollout_state("progressing", 100.0))
    (root / "serving-2" / "releases" / "credit-risk.rollout.json").write_text(rollout_state("rolled_back", 200.0))
    routers["serving-1"].cli("set server credit-risk/blue weight 75")
    routers["serving-1"].cli("set server credit-risk/green weight 25")
    before_2 = weights(routers["serving-2"])

    code, result = run(root)
    assert code == 0, json.dumps(result["stats"])
    decided = outcomes(result, "Decide whether this host is in line with the fleet")
    assert decided["serving-1"]["ansible_facts"]["rollout_reconcile"]["action"] == "abort"
    assert decided["serving-2"]["ansible_facts"]["rollout_reconcile"]["action"] == "none"
    assert weights(routers["serving-1"]) == {"blue": 100, "green": 0}
    record = json.loads(release_file(root, "serving-1").read_text())
    assert record["canary"] is None and record["stable"]["version"] == "9"
    # The stop of the canary (model_server abort) ran on serving-1 only.
    stopped = outcomes(result, "Stop the canary")
    assert set(stopped) == {"serving-1"} and not stopped["serving-1"].get("skipped")
    # serving-2 was in line: untouched.
    assert weights(routers["serving-2"]) == before_2
    assert result["stats"]["serving-2"]["changed"] == 0
    assert json.loads(release_file(root, "serving-2").read_text())["canary"] is None

    code, again = run(root)
    assert code == 0 and all(stats["changed"] == 0 for stats in again["stats"].values()), again["stats"]


def test_a_host_back_from_a_promotion_is_promoted(fleet: tuple[Path, dict[str, Router]]) -> None:
    root, routers = fleet
    write_release(root, "serving-1", canary=True)
    release_file(root, "serving-2").write_text(json.dumps({
        "model": "credit-risk", "stable": {"version": "10", "slot": "green"}, "canary": None,
        "previous": {"version": "9", "slot": "blue"}}))
    (root / "serving-1" / "releases" / "credit-risk.rollout.json").write_text(rollout_state("progressing", 100.0))
    (root / "serving-2" / "releases" / "credit-risk.rollout.json").write_text(rollout_state("promoted", 300.0))
    routers["serving-1"].cli("set server credit-risk/blue weight 50")
    routers["serving-1"].cli("set server credit-risk/green weight 50")

    code, result = run(root)
    assert code == 0, json.dumps(result["stats"])
    assert weights(routers["serving-1"]) == {"blue": 0, "green": 100}
    record = json.loads(release_file(root, "serving-1").read_text())
    assert record["stable"]["version"] == "10" and record["canary"] is None and record["previous"]["version"] == "9"
