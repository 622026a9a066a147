"""Release records and Prometheus file_sd with the monitoring host down, through real ansible-playbook runs.

Two serving hosts, both this machine over the local connection, each with its own data directory standing in for
/var/lib/modelfleet. The monitoring host is either this machine too (its file_sd directory in the test's folder) or,
to stand for a stopped one, an SSH host on a local port nobody listens on (unreachable at once). There is no systemd
here: the stop of a version is attempted and its result (failed, ignored by the role) shows it was reached.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from harness import REPO, free_port
from local_fleet import outcomes, run_playbook

pytestmark = pytest.mark.integration

HOSTS = ("serving-1", "serving-2")
REVERT = """\
- name: Record the previous version as stable and stop the other one
  hosts: serving
  gather_facts: false
  tasks:
    - name: Finish the rollback of credit-risk
      ansible.builtin.include_role:
        name: modelfleet.serving.model_server
        tasks_from: "{{ entry }}"
      vars:
        model_server_name: credit-risk
"""


def inventory(tmp_path: Path, monitoring_up: bool) -> Path:
    local = {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}",
             "ansible_become": False}
    monitoring = local if monitoring_up else {
        "ansible_connection": "ssh", "ansible_host": "127.0.0.1", "ansible_port": free_port(),
        "ansible_user": "nobody", "ansible_python_interpreter": "/usr/bin/python3"}
    hosts = {"all": {
        "vars": {"model_server_prometheus_file_sd_dir": str(tmp_path / "mon-1" / "file_sd"),
                 "model_server_group": "root",
                 "modelfleet_models": [{"name": "credit-risk", "blue_port": 8101, "green_port": 8102}]},
        "children": {
            "serving": {"hosts": {host: {**local, "model_server_data_dir": str(tmp_path / host)} for host in HOSTS}},
            "monitoring": {"hosts": {"mon-1": monitoring}}}}}
    path = tmp_path / ("hosts-up.json" if monitoring_up else "hosts-down.json")
    path.write_text(json.dumps(hosts))
    return path


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    record = {"model": "credit-risk", "stable": {"version": "2", "slot": "green", "since": 1700000100},
              "canary": None, "previous": {"version": "1", "slot": "blue", "since": 1700000000}}
    for host in HOSTS:
        (tmp_path / host / "releases").mkdir(parents=True)
        release_file(tmp_path, host).write_text(json.dumps(record))
    (tmp_path / "revert.yml").write_text(REVERT)
    return tmp_path


def release_file(fleet: Path, host: str) -> Path:
    return fleet / host / "releases" / "credit-risk.json"


def targets_file(fleet: Path, host: str) -> Path:
    return fleet / "mon-1" / "file_sd" / f"modelfleet-serve-{host}-credit-risk.json"


def order(result: dict[str, Any], task: str) -> int:
    """Where the task of that name ran among the run's tasks."""
    names = [ran["task"]["name"].split(" : ", 1)[-1] for play in result["plays"] for ran in play["tasks"]]
    return names.index(task)


def test_rollback_finishes_on_the_serving_hosts_with_the_monitoring_host_down(fleet: Path) -> None:
    down = inventory(fleet, monitoring_up=False)
    code, result = run_playbook(fleet / "revert.yml", down, "-e", "entry=revert_finish")
    assert code == 0, json.dumps(result["stats"])
    assert not any(stats.get("unreachable") for stats in result["stats"].values())
    for host in HOSTS:
        record = json.loads(release_file(fleet, host).read_text())
        assert record["stable"]["version"] == "1" and record["previous"] is None
    # The version rolled back from is stopped (attempted: no systemd here) before the monitoring update.
    stopped = outcomes(result, "Stop the version rolled back from")
    assert set(stopped) == set(HOSTS) and not any(outcome.get("skipped") for outcome in stopped.values())
    assert order(result, "Stop the version rolled back from") < order(
        result, "Create the file_sd directory on the monitoring hosts")
    warnings = outcomes(result, "Warn that Prometheus's targets wait for a later run")
    assert set(warnings) == set(HOSTS)
    for host, warning in warnings.items():
        assert "monitoring host(s) mon-1 could not be reached" in warning["msg"]
        assert f"targets of credit-risk on {host}" in warning["msg"] and "--tags file_sd" in warning["msg"]
    assert not targets_file(fleet, "serving-1").exists()

    # Monitoring back: monitoring.yml --tags file_sd writes the targets from the release records.
    up = inventory(fleet, monitoring_up=True)
    code, result = run_playbook(REPO / "playbooks" / "monitoring.yml", up, "--tags", "file_sd")
    assert code == 0, json.dumps(result["stats"])
    for host in HOSTS:
        targets = json.loads(targets_file(fleet, host).read_text())
        assert targets == [{"targets": [f"{host}:8101"], "labels": {"host": host, "model": "credit-risk",
                                                                    "version": "1", "slot": "blue"}}]
    assert all(outcome.get("skipped") for outcome in outcomes(
        result, "Warn that Prometheus's targets wait for a later run").values())
    # The monitoring roles did not run: their play only gathered facts, checked arguments and ran the roles'
    # `always` preliminaries (node_exporter reads its facts and OS decisions), and changed nothing.
    ran_there = [ran for play in result["plays"] if play["play"]["name"] == "Monitoring host" for ran in play["tasks"]]
    preliminaries = ("Gathering Facts", "Validating arguments", "Read the host's minimal facts",
                     "Read the OS family's decisions", "Check the settings")
    assert all(any(name in ran["task"]["name"] for name in preliminaries) for ran in ran_there), \
        [ran["task"]["name"] for ran in ran_there]
    assert not any(outcome.get("changed") for ran in ran_there for outcome in ran["hosts"].values())

    # A second rollback finds nothing to do and changes nothing (records and targets as they are).
    code, result = run_playbook(fleet / "revert.yml", up, "-e", "entry=revert_finish")
    assert code == 0 and all(stats["changed"] == 0 for stats in result["stats"].values()), result["stats"]


def test_a_failed_write_on_the_monitoring_host_warns_and_the_rollback_finishes(fleet: Path) -> None:
    # Reached, but its file_sd directory cannot be made (a file stands where a directory is needed): the rollback
    # still finishes on the serving hosts and says which monitoring host missed the targets.
    (fleet / "mon-1").write_text("not a directory")
    up = inventory(fleet, monitoring_up=True)
    code, result = run_playbook(fleet / "revert.yml", up, "-e", "entry=revert_finish")
    assert code == 0, json.dumps(result["stats"])
    for host in HOSTS:
        record = json.loads(release_file(fleet, host).read_text())
        assert record["stable"]["version"] == "1" and record["previous"] is None
    made = outcomes(result, "Create the file_sd directory on the monitoring hosts")
    written = outcomes(result, "Write this host's scrape targets of credit-risk")
    assert all(outcome.get("failed") for outcome in made.values()), made
    assert all(outcome.get("skipped") for outcome in written.values()), written
    warnings = outcomes(result, "Warn that Prometheus's targets wait for a later run")
    assert set(warnings) == set(HOSTS)
    assert all("monitoring host(s) mon-1 could not be reached or written" in w["msg"] for w in warnings.values())


def test_promote_with_the_monitoring_host_up_publishes_after_the_stop(fleet: Path) -> None:
    for host in HOSTS:
        release_file(fleet, host).write_text(json.dumps({
            "model": "credit-risk", "stable": {"version": "2", "slot": "green"},
            "canary": {"version": "3", "slot": "blue"}, "previous": None}))
    up = inventory(fleet, monitoring_up=True)
    code, result = run_playbook(fleet / "revert.yml", up, "-e", "entry=promote")
    assert code == 0, json.dumps(result["stats"])
    assert order(result, "Stop the previous stable version") < order(
        result, "Write this host's scrape targets of credit-risk")
    assert not any(outcome.get("skipped") for outcome in outcomes(result, "Stop the previous stable version").values())
    for host in HOSTS:
        assert json.loads(release_file(fleet, host).read_text())["stable"]["version"] == "3"
        assert [t["labels"]["version"] for t in json.loads(targets_file(fleet, host).read_text())] == ["3"]


def test_publish_skips_a_host_without_a_record(fleet: Path) -> None:
    release_file(fleet, "serving-2").unlink()
    up = inventory(fleet, monitoring_up=True)
    code, result = run_playbook(REPO / "playbooks" / "monitoring.yml", up, "--tags", "file_sd")
    assert code == 0, json.dumps(result["stats"])
    assert targets_file(fleet, "serving-1").exists() and not targets_file(fleet, "serving-2").exists()
