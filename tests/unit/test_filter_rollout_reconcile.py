"""modelfleet.serving.rollout_reconcile: how a host lost mid-rollout rejoins its fleet, from the rollout state
kept on the serving hosts (newest copy) and the other hosts' release records."""

from __future__ import annotations

import base64
import json
import sys
from typing import Any

import pytest
from harness import collection_root

sys.path.insert(0, str(collection_root()))

from ansible_collections.modelfleet.serving.plugins.filter import rollout

reconcile = rollout.rollout_reconcile


def record(stable: str | None, canary: str | None = None, previous: str | None = None) -> dict[str, Any]:
    def release(version: str | None, slot: str) -> dict[str, Any] | None:
        return None if version is None else {"version": version, "slot": slot, "since": 1700000000}
    return {"model": "credit-risk", "stable": release(stable, "blue"), "canary": release(canary, "green"),
            "previous": release(previous, "green")}


def state(phase: str, updated_at: float, canary: str = "10", stable: str = "9", model: str = "credit-risk") -> str:
    """A state copy as the role slurps it (base64 of the JSON file)."""
    text = json.dumps({"format": 1, "model": model, "stable": stable, "canary": canary, "phase": phase,
                       "updated_at": updated_at})
    return base64.b64encode(text.encode()).decode()


# The host came back with canary 10 at 25% and its own, older copy of the state (progressing).
RETURNED = record("9", "10")
STALE = state("progressing", 100.0)


def test_the_fleet_rolled_the_canary_back() -> None:
    decided = reconcile(RETURNED, [record("9")], [STALE, state("rolled_back", 200.0)])
    assert decided["action"] == "abort"
    assert "ended rolled_back" in decided["reason"] and "stable version 9 gets all traffic" in decided["reason"]


def test_the_fleet_aborted_the_rollout() -> None:
    assert reconcile(RETURNED, [record("9")], [state("aborted", 200.0), STALE])["action"] == "abort"


def test_the_fleet_promoted_the_canary() -> None:
    decided = reconcile(RETURNED, [record("10", previous="9")], [STALE, state("promoted", 200.0)])
    assert decided["action"] == "promote" and "promoted canary 10 over stable 9" in decided["reason"]


def test_a_promotion_from_another_stable_is_left_alone() -> None:
    decided = reconcile(record("8", "10"), [record("10")], [state("promoted", 200.0, stable="9")])
    assert decided["action"] == "none" and "this host's stable is 8" in decided["reason"]


def test_the_newest_copy_wins() -> None:
    # Only this host's stale copy is newer than nothing: a rollout still under way goes on.
    assert reconcile(RETURNED, [record("9", "10")], [STALE])["action"] == "none"
    # A finished state older than a progressing one is an earlier rollout of the same canary.
    decided = reconcile(RETURNED, [record("9", "10")], [state("rolled_back", 50.0), state("progressing", 300.0)])
    assert decided["action"] == "none" and "is progressing" in decided["reason"]


def test_without_a_state_the_other_records_decide() -> None:
    decided = reconcile(RETURNED, [record("9"), record("9")], [])
    assert decided["action"] == "abort" and "no other host runs version 10" in decided["reason"]
    assert reconcile(RETURNED, [record("9", "10")], [])["action"] == "none"
    assert reconcile(RETURNED, [record("10", previous="9")], [])["action"] == "none"  # never promote blind
    assert reconcile(RETURNED, [], [])["action"] == "none"


def test_copies_of_other_rollouts_and_damaged_copies_are_ignored() -> None:
    copies = [state("rolled_back", 300.0, canary="11"), state("rolled_back", 300.0, model="mlp"),
              "not base64 or json", base64.b64encode(b"[1, 2]").decode(), state("progressing", "soon")]  # type: ignore[arg-type]
    assert reconcile(RETURNED, [record("9", "10")], copies)["action"] == "none"
    # JSON text and mappings are read as well as slurped copies.
    assert reconcile(RETURNED, [], [json.dumps({"model": "credit-risk", "canary": "10", "phase": "aborted",
                                                "updated_at": 1})])["action"] == "abort"


@pytest.mark.parametrize("host", [record("9"), record(None), {}, None])
def test_a_host_without_a_canary_is_in_line(host: dict[str, Any] | None) -> None:
    decided = reconcile(host, [record("9", "10")], [state("rolled_back", 200.0)])
    assert decided == {"action": "none", "reason": "no canary recorded: nothing to reconcile"}


def test_the_filter_is_registered() -> None:
    assert rollout.FilterModule().filters() == {"rollout_reconcile": reconcile}
