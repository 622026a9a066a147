"""The rollout role's lock (tasks_from lock / unlock, module fleet_lock) through real ansible-playbook runs.

Two inventory hosts, both this machine over the local connection, each with its own lock directory (standing in
for two serving hosts). The owners are two controllers' names given with rollout_lock_owner.
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

PLAYBOOK = """\
- name: Lock or unlock credit-risk
  hosts: serving
  gather_facts: false
  tasks:
    - name: Take or give back the lock
      ansible.builtin.include_role:
        name: modelfleet.serving.rollout
        tasks_from: "{{ action }}"
      vars:
        rollout_model: credit-risk
        rollout_lock_purpose: deploy credit-risk v3
"""


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    inventory = {"all": {"children": {"serving": {"hosts": {
        host: {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}",
               "rollout_fleet_state_dir": str(tmp_path / host / "releases")}
        for host in ("serving-1", "serving-2")}}}}}
    (tmp_path / "hosts.json").write_text(json.dumps(inventory))
    (tmp_path / "lock.yml").write_text(PLAYBOOK)
    return tmp_path


def run(fleet: Path, action: str, owner: str, *extra: str) -> tuple[int, dict[str, Any]]:
    env = ansible_env()
    command = [shutil.which("ansible-playbook", path=env["PATH"]) or "ansible-playbook", "-i",
               str(fleet / "hosts.json"), str(fleet / "lock.yml"), "-e", f"action={action}",
               "-e", f"rollout_lock_owner={owner}", *extra]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=fleet)
    return done.returncode, json.loads(done.stdout)


def lock_file(fleet: Path, host: str) -> Path:
    return fleet / host / "releases" / "credit-risk.lock"


def failures(result: dict[str, Any]) -> list[str]:
    return [str(outcome.get("msg")) for play in result["plays"] for task in play["tasks"]
            for outcome in task["hosts"].values() if outcome.get("failed")]


def test_a_second_owner_is_refused_and_may_break_the_lock(fleet: Path) -> None:
    code, taken = run(fleet, "lock", "ci@runner-7")
    assert code == 0, failures(taken)
    for host in ("serving-1", "serving-2"):
        holder = json.loads(lock_file(fleet, host).read_text())
        assert holder["owner"] == "ci@runner-7" and holder["purpose"] == "deploy credit-risk v3"
        assert holder["pid"] > 0 and holder["controller"] and abs(holder["acquired_at"] - time.time()) < 300
    assert taken["stats"]["serving-1"]["changed"] == 0  # taken and given back within a run: no change

    code, again = run(fleet, "lock", "ci@runner-7")
    assert code == 0, failures(again)

    code, refused = run(fleet, "lock", "ops@bastion")
    assert code == 2
    messages = failures(refused)
    assert messages and all("locked by ci@runner-7" in m and "s ago" in m and "rollout_break_lock=true" in m
                            for m in messages)
    assert json.loads(lock_file(fleet, "serving-1").read_text())["owner"] == "ci@runner-7"

    code, broken = run(fleet, "lock", "ops@bastion", "-e", "rollout_break_lock=true")
    assert code == 0, failures(broken)
    assert broken["stats"]["serving-1"]["changed"] == 1
    assert json.loads(lock_file(fleet, "serving-2").read_text())["owner"] == "ops@bastion"

    code, _ = run(fleet, "unlock", "ci@runner-7")
    assert code == 0 and lock_file(fleet, "serving-1").exists()
    code, _ = run(fleet, "unlock", "ops@bastion")
    assert code == 0 and not lock_file(fleet, "serving-1").exists() and not lock_file(fleet, "serving-2").exists()


def test_a_lock_held_on_one_host_gives_back_the_others(fleet: Path) -> None:
    other = lock_file(fleet, "serving-2")
    other.parent.mkdir(parents=True)
    other.write_text(json.dumps({"format": 1, "owner": "ci@runner-7", "controller": "runner-7", "pid": 4242,
                                 "purpose": "deploy credit-risk v4", "acquired_at": time.time() - 90}))
    code, refused = run(fleet, "lock", "ops@bastion")
    assert code == 2
    assert any("locked by ci@runner-7 on runner-7 (pid 4242)" in m and "deploy credit-risk v4" in m
               for m in failures(refused))
    # All or nothing: the lock serving-1 gave this run is given back.
    assert not lock_file(fleet, "serving-1").exists()
    assert json.loads(other.read_text())["owner"] == "ci@runner-7"


def test_check_mode_takes_nothing(fleet: Path) -> None:
    code, checked = run(fleet, "lock", "ci@runner-7", "--check")
    assert code == 0, failures(checked)
    assert not lock_file(fleet, "serving-1").exists()
