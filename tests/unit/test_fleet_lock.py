"""modelfleet.serving.fleet_lock: the lock kept on the serving hosts (module_utils logic and the module itself)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from harness import collection_root

sys.path.insert(0, str(collection_root()))

from ansible_collections.modelfleet.serving.plugins.module_utils import fleet_lock

REPO = Path(__file__).resolve().parents[2]
MODULE = REPO / "plugins" / "modules" / "fleet_lock.py"
T0 = 1_765_000_000.0


def take(path: Path, owner: str, now: float = T0, **options: Any) -> tuple[bool, str, dict[str, Any], Any]:
    return fleet_lock.acquire(str(path), owner, "ctl-" + owner, 4242, "deploy credit-risk v3", now, **options)


def test_take_records_the_holder(tmp_path: Path) -> None:
    lock = tmp_path / "releases" / "credit-risk.lock"
    changed, message, holder, broken = take(lock, "ci@runner-7")
    assert changed and message.endswith("taken") and broken is None
    recorded = json.loads(lock.read_text())
    assert recorded == holder
    assert (recorded["owner"], recorded["controller"], recorded["pid"], recorded["acquired_at"]) == \
           ("ci@runner-7", "ctl-ci@runner-7", 4242, T0)


def test_another_owner_is_refused_with_owner_and_age(tmp_path: Path) -> None:
    lock = tmp_path / "credit-risk.lock"
    take(lock, "ci@runner-7")
    with pytest.raises(fleet_lock.LockError) as refused:
        take(lock, "ops@bastion", now=T0 + 125)
    text = str(refused.value)
    assert "ci@runner-7 on ctl-ci@runner-7 (pid 4242)" in text and "125 s ago" in text
    assert "deploy credit-risk v3" in text and "rollout_break_lock=true" in text
    assert json.loads(lock.read_text())["owner"] == "ci@runner-7"


def test_the_same_owner_takes_its_lock_again(tmp_path: Path) -> None:
    lock = tmp_path / "credit-risk.lock"
    take(lock, "ci@runner-7")
    changed, message, holder, broken = fleet_lock.acquire(str(lock), "ci@runner-7", "runner-7", 99, "", T0 + 60)
    assert changed and "held by this owner already" in message and broken is None
    assert json.loads(lock.read_text())["pid"] == 99 and holder["acquired_at"] == T0 + 60


def test_stale_before_breaks_only_an_older_lock(tmp_path: Path) -> None:
    lock = tmp_path / "credit-risk.lock"
    take(lock, "ci@runner-7")
    with pytest.raises(fleet_lock.LockError):
        take(lock, "ops@bastion", now=T0 + 600, stale_before=T0 - 1)
    changed, message, _holder, broken = take(lock, "ops@bastion", now=T0 + 600, stale_before=T0 + 600)
    assert changed and "broke the lock of ci@runner-7" in message and broken["owner"] == "ci@runner-7"
    assert json.loads(lock.read_text())["owner"] == "ops@bastion"


def test_check_mode_changes_nothing_and_refuses_alike(tmp_path: Path) -> None:
    lock = tmp_path / "credit-risk.lock"
    changed, message, _holder, _broken = take(lock, "ci@runner-7", check=True)
    assert changed and "would take" in message and not lock.exists()
    take(lock, "ci@runner-7")
    before = lock.read_text()
    with pytest.raises(fleet_lock.LockError):
        take(lock, "ops@bastion", check=True)
    changed, message, _holder, broken = take(lock, "ops@bastion", check=True, stale_before=T0 + 1)
    assert changed and "would break" in message and broken["owner"] == "ci@runner-7"
    assert lock.read_text() == before
    assert fleet_lock.release(str(lock), "ci@runner-7", T0, check=True) == (True, f"{lock}: released")
    assert lock.read_text() == before


def test_release_removes_only_ones_own_lock(tmp_path: Path) -> None:
    lock = tmp_path / "credit-risk.lock"
    assert fleet_lock.release(str(lock), "ci@runner-7", T0) == (False, f"{lock}: not locked")
    take(lock, "ci@runner-7")
    changed, message = fleet_lock.release(str(lock), "ops@bastion", T0)
    assert not changed and "left in place" in message and lock.exists()
    assert fleet_lock.release(str(lock), "ci@runner-7", T0) == (True, f"{lock}: released")
    assert not lock.exists()


def test_a_foreign_file_counts_as_held_by_an_unknown_owner(tmp_path: Path) -> None:
    lock = tmp_path / "credit-risk.lock"
    lock.write_text("locked by hand\n")
    with pytest.raises(fleet_lock.LockError, match="unknown \\(not a lock file"):
        take(lock, "ci@runner-7", now=T0)
    changed, _message, _holder, broken = take(lock, "ci@runner-7", now=lock.stat().st_mtime + 1,
                                              stale_before=lock.stat().st_mtime + 1)
    assert changed and broken["owner"].startswith("unknown")


def run_module(tmp_path: Path, check: bool = False, **args: Any) -> dict[str, Any]:
    arguments = tmp_path / "args.json"
    arguments.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {**args, "_ansible_check_mode": check}}))
    done = subprocess.run([sys.executable, str(MODULE), str(arguments)], capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(collection_root()), "PATH": "/usr/bin:/bin"}, cwd=tmp_path)
    assert done.stdout, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_the_module_takes_refuses_breaks_and_releases(tmp_path: Path) -> None:
    path = str(tmp_path / "releases" / "credit-risk.lock")
    taken = run_module(tmp_path, path=path, owner="ci@runner-7", controller="runner-7", pid=4242,
                       purpose="deploy credit-risk v3")
    assert taken["changed"] and taken["holder"]["owner"] == "ci@runner-7"
    refused = run_module(tmp_path, path=path, owner="ops@bastion")
    assert refused["failed"] and "locked by ci@runner-7 on runner-7 (pid 4242)" in refused["msg"]
    assert refused["holder"]["owner"] == "ci@runner-7" and refused["age_seconds"] >= 0
    since = refused["holder"]["acquired_at"]
    broken = run_module(tmp_path, path=path, owner="ops@bastion", stale_before=str(since + 1))
    assert broken["changed"] and broken["broken"]["owner"] == "ci@runner-7"
    assert "broke the lock" in json.dumps(broken["warnings"])
    released = run_module(tmp_path, path=path, owner="ops@bastion", state="absent")
    assert released["changed"] and not Path(path).exists()
    empty = run_module(tmp_path, path=path, owner=" ")
    assert empty["failed"] and "owner must not be empty" in empty["msg"]
