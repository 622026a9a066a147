"""The rollout state kept on the serving hosts: any controller adopts the newest copy and resumes from it."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from test_rollout_engine import FakeClock, _plan
from test_rollout_gates import Scenario
from test_rollout_module import SPEC, run_module

from modelfleet.rollout.engine import Engine
from modelfleet.rollout.state import StateStore


def host_copy(store: StateStore, model: str = "credit-risk") -> str:
    """What the rollout role copies to every serving host after each change: the state file itself."""
    return store.path(model).read_text()


def test_a_second_controller_resumes_from_the_hosts_copy(tmp_path: Path) -> None:
    clock = FakeClock()
    first = StateStore(tmp_path / "controller-a")
    Engine(first, clock).start(_plan())
    Engine(first, clock).analyze("credit-risk", Scenario(_plan()))
    copy = host_copy(first)

    second = StateStore(tmp_path / "controller-b")
    adopted, notes = second.adopt("credit-risk", ["", copy, copy])
    assert adopted is not None and adopted.step == 1 and notes[-1].endswith("adopted")
    resumed = Engine(second, clock).start(_plan())
    assert resumed.decision == "resume" and "step 2/3" in resumed.reason
    # Adopted once: the same copy again is not newer.
    assert second.adopt("credit-risk", [copy]) == (None, [])


def older_and_newer(store: StateStore) -> tuple[str, str]:
    """The state right after start and a minute later, after the first analysis."""
    clock = FakeClock()
    engine = Engine(store, clock)
    engine.start(_plan())
    older = host_copy(store)
    clock.time += 60
    engine.analyze("credit-risk", Scenario(_plan()))
    return older, host_copy(store)


def test_the_newest_copy_wins_and_bad_copies_are_named(tmp_path: Path) -> None:
    older, newer = older_and_newer(StateStore(tmp_path / "a"))
    other = StateStore(tmp_path / "b")
    adopted, notes = other.adopt("credit-risk", [older, "{not json", newer, json.dumps({"format": 99})])
    assert adopted is not None and adopted.step == 1
    assert sum("is ignored" in note for note in notes) == 2


def test_this_controllers_newer_state_is_kept(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "a")
    stale, current = older_and_newer(store)
    assert store.adopt("credit-risk", [stale]) == (None, [])
    assert host_copy(store) == current


def test_another_rollout_held_here_is_archived_before_adopting(tmp_path: Path) -> None:
    clock = FakeClock()
    mine = StateStore(tmp_path / "a")
    Engine(mine, clock).start(_plan())
    clock.time += 600
    fleet = StateStore(tmp_path / "fleet")
    Engine(fleet, clock).start(_plan(canary="4"))
    adopted, _notes = mine.adopt("credit-risk", [host_copy(fleet)])
    assert adopted is not None and adopted.plan.canary == "4"
    assert len(list((mine.directory / "archive").glob("*-2-to-3-*.json"))) == 1


def test_check_mode_does_not_adopt(tmp_path: Path) -> None:
    clock = FakeClock()
    fleet = StateStore(tmp_path / "fleet")
    Engine(fleet, clock).start(_plan())
    other = StateStore(tmp_path / "b")
    adopted, notes = other.adopt("credit-risk", [host_copy(fleet)], check=True)
    assert adopted is None and "check mode does not adopt it" in notes[-1]
    assert not other.path("credit-risk").exists()


def test_a_copy_of_another_model_is_refused(tmp_path: Path) -> None:
    fleet = StateStore(tmp_path / "fleet")
    Engine(fleet, FakeClock()).start(_plan())
    adopted, notes = StateStore(tmp_path / "b").adopt("churn", [host_copy(fleet)])
    assert adopted is None and "not 'churn'" in notes[0]


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "model.yml"
    path.write_text(SPEC)
    return path


def test_the_module_adopts_slurped_copies(collections_root: Path, tmp_path: Path, spec: Path) -> None:
    first = tmp_path / "controller-a"
    run_module(collections_root, tmp_path, action="start", spec=str(spec), stable_version="2", state_dir=str(first))
    slurped = base64.b64encode((first / "credit-risk.json").read_bytes()).decode()
    second = tmp_path / "controller-b"
    common = dict(spec=str(spec), stable_version="2", state_dir=str(second), fleet_states=[slurped])
    checked = run_module(collections_root, tmp_path, check=True, action="start", **common)
    assert checked["adopted"] is False and "check mode does not adopt" in json.dumps(checked["warnings"])
    resumed = run_module(collections_root, tmp_path, action="start", **common)
    assert resumed["adopted"] is True and resumed["decision"] == "resume" and not resumed["changed"]
    assert (second / "credit-risk.json").read_text() == (first / "credit-risk.json").read_text()
