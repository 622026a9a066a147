"""Serving hosts lost mid-rollout: the policy, pure logic.

A host the rollout started on (its plan's ``hosts``) that the playbook no longer reaches (unreachable, or failed
and dropped from the play) is lost. The rollout pauses (no weight goes up) and rolls back on the reachable hosts:
a canary is never promoted on part of the fleet because the rest cannot be seen. The lost hosts keep what they
had; the next ``deploy_model.yml`` or ``rollback_model.yml`` brings them in line (the ``rollout_reconcile``
filter decides how, from the state kept on the other hosts).
"""

from __future__ import annotations

from collections.abc import Sequence

from modelfleet.rollout.decision import Phase, Result
from modelfleet.rollout.plan import format_weight
from modelfleet.rollout.state import RolloutState


def lost_hosts(planned: Sequence[str], reachable: Sequence[str]) -> list[str]:
    """The planned hosts missing from ``reachable``, in plan order; none when either list is empty (nothing to
    compare: a plan without hosts, or a caller that does not say which hosts it reaches)."""
    if not planned or not reachable:
        return []
    present = set(reachable)
    return [host for host in planned if host not in present]


def roll_back_for_lost(state: RolloutState, lost: Sequence[str], now: float) -> str | None:
    """Turn a progressing rollout into a rollback because ``lost`` hosts are gone; the reason, or None when
    there is nothing to do (no host lost, or the rollout no longer progressing)."""
    if not lost or state.phase is not Phase.PROGRESSING:
        return None
    names = ", ".join(lost)
    reason = (
        f"serving host{'s' if len(lost) > 1 else ''} {names} lost mid-rollout (unreachable or failed) at canary weight "
        f"{format_weight(state.weight)}%: paused, and canary {state.plan.canary} is rolled back on the reachable "
        f"hosts; "
        f"the next deploy_model.yml or rollback_model.yml brings {names} in line"
    )
    state.phase = Phase.ROLLING_BACK
    state.weight = 0.0
    state.window_start = None
    state.updated_at = now
    state.count(str(Result.ROLLBACK))
    state.last_decision, state.last_reason, state.last_decision_at = str(Result.ROLLBACK), reason, now
    return reason
