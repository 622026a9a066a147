"""The rollout actions (plan, start, analyze, finish, abort, status) over the persisted state.

The playbook drives the loop: ``start`` returns the first weight; the playbook sets it on every
serving host, then calls ``analyze``, which waits out the step's interval (counted from when the
weights were set), queries Prometheus, decides and returns the weight to set next; it repeats while
the phase is ``progressing``, then promotes or rolls back on the hosts and calls ``finish``.

Every action reads and writes ``<state_dir>/<model>.json`` (see :mod:`~modelfleet.rollout.state`), so
a run interrupted anywhere resumes: ``start`` with the same versions resumes the same rollout at its
step, ``analyze`` resumes the step's window, and a finished rollout is left alone (``changed`` false).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from modelfleet.rollout.decision import FINISHED, Phase, Result, decide
from modelfleet.rollout.describe import (
    describe_gates,
    describe_plan,
    gate_record,
    number,
    plan_sentence,
    stable_weight,
    summary,
)
from modelfleet.rollout.exposition import render_metrics
from modelfleet.rollout.gates import GateResult, Verdict, evaluate_gates, overall_verdict
from modelfleet.rollout.lost import lost_hosts, roll_back_for_lost
from modelfleet.rollout.plan import PROMOTED_WEIGHT, RolloutError, RolloutPlan, format_weight
from modelfleet.rollout.prometheus import QuerySource
from modelfleet.rollout.state import RolloutState, StateStore
from modelfleet.rollout.traffic_gates import LOOKS_PER_ANALYSIS


class Clock(Protocol):
    """Wall-clock time and sleeping (a fake in tests)."""

    def now(self) -> float:
        """Seconds since the epoch."""

    def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` (nothing when <= 0)."""


class SystemClock:
    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


@dataclass
class Outcome:
    """What an action did; :meth:`result` is the module's result."""

    model: str
    changed: bool
    decision: str
    reason: str
    state: RolloutState | None = None
    plan: RolloutPlan | None = None
    verdict: str | None = None
    gates: list[dict[str, Any]] = field(default_factory=list)
    window_seconds: int | None = None
    waited_seconds: float | None = None
    would_wait_seconds: float | None = None
    queries: list[dict[str, Any]] | None = None
    warnings: list[str] = field(default_factory=list)
    before: dict[str, Any] | None = None
    phase: str | None = None

    def result(self) -> dict[str, Any]:
        plan = self.state.plan if self.state is not None else self.plan
        data: dict[str, Any] = {
            "changed": self.changed,
            "decision": self.decision,
            "reason": self.reason,
            "model": self.model,
        }
        if plan is not None:
            data.update(stable_version=plan.stable, canary_version=plan.canary, steps=[number(w) for w in plan.steps])
        if self.state is not None:
            state = self.state
            data.update(
                phase=str(state.phase),
                step=state.step + 1,
                weight=number(state.weight),
                stable_weight=number(stable_weight(state)),
                failures=state.failures,
                inconclusive=state.inconclusive,
                metrics=render_metrics(state),
                rollout=summary(state),
            )
        elif self.phase is not None:
            data["phase"] = self.phase
            if self.phase == str(Phase.PROMOTED):
                data.update(weight=100, stable_weight=0)
        if self.verdict is not None:
            data.update(
                verdict=self.verdict,
                gates=self.gates,
                window_seconds=self.window_seconds,
                waited_seconds=self.waited_seconds,
            )
        if self.would_wait_seconds is not None:
            data["would_wait_seconds"] = round(self.would_wait_seconds, 3)
        if self.queries is not None:
            data["queries"] = self.queries
        return data


def plan_outcome(plan: RolloutPlan) -> Outcome:
    """``action: plan``: the plan, with every gate's PromQL; nothing is read or written."""
    return Outcome(plan.model, False, "none", plan_sentence(plan), plan=plan, queries=describe_plan(plan)["gates"])


class Engine:
    """The actions over one state directory; ``clock`` and ``log`` are injectable for tests."""

    def __init__(self, store: StateStore, clock: Clock | None = None, log: Callable[[str], None] | None = None) -> None:
        self.store = store
        self.clock = clock or SystemClock()
        self.log = log or (lambda message: None)

    # -- plan and start ---------------------------------------------------------------------------

    def start(self, plan: RolloutPlan, *, force: bool = False, check: bool = False,
              canary_since: float | None = None) -> Outcome:
        """Start the rollout, or resume the one of the same versions in progress.

        ``canary_since``: when the hosts started this canary (their release record's ``canary.since``). With it,
        an earlier rollout that ended (the same versions deployed again after a rollback) or that started
        before it (a fleet rebuilt under it) is history: it is archived and the rollout starts afresh.
        """
        existing = self.store.load(plan.model)
        before = summary(existing) if existing is not None else None
        warnings: list[str] = []
        if existing is not None and canary_since is not None and is_history(existing, canary_since):
            force = True
        if existing is not None:
            same = existing.plan.canary == plan.canary and existing.plan.stable == plan.stable
            if same and not force:
                return self._resume(existing, plan)
            if not existing.finished and not force:
                raise RolloutError(
                    f"a rollout of {plan.model} is in progress: canary {existing.plan.canary} (stable "
                    f"{existing.plan.stable}) at step {existing.step + 1}/{existing.plan.step_count}, phase "
                    f"{existing.phase}; finish or abort it first, or start canary {plan.canary} with force"
                )
            if not existing.finished:
                warnings.append(
                    f"force: the rollout of canary {existing.plan.canary} at step {existing.step + 1} "
                    f"is aborted and replaced by canary {plan.canary}"
                )
        now = self.clock.now()
        state = RolloutState(
            plan=plan,
            phase=Phase.PROGRESSING,
            step=0,
            weight=plan.weight(0),
            started_at=now,
            updated_at=now,
            last_decision="start",
            last_decision_at=now,
            last_reason=plan_sentence(plan),
        )
        reason = (
            f"{'would start' if check else 'started'} the rollout of canary {plan.canary} (stable "
            f"{plan.stable}): step 1/{plan.step_count} at {format_weight(plan.weight(0))}%"
        )
        outcome = Outcome(
            plan.model,
            True,
            "start",
            reason,
            state=state,
            plan=plan,
            warnings=warnings,
            before=before,
            queries=describe_plan(plan)["gates"] if check else None,
        )
        if check:
            return outcome
        if existing is not None:
            if not existing.finished:
                self._close(existing, Phase.ABORTED, "abort", f"superseded by canary {plan.canary} (force)", now)
            self.store.archive(existing)
        self.store.save(state)
        self.log(f"model_rollout {plan.model}: {reason}")
        return outcome

    def _resume(self, existing: RolloutState, requested: RolloutPlan) -> Outcome:
        plan = existing.plan
        warnings = []
        differences = plan.differences(requested)
        if differences and not existing.finished:
            warnings.append(
                f"the rollout of canary {plan.canary} continues with the plan it started with; the "
                f"requested plan differs ({'; '.join(differences)}); start with force to start over"
            )
        if existing.finished:
            reason = (
                f"the rollout of canary {plan.canary} already ended ({existing.phase}): nothing to do "
                "(force: true starts it again)"
            )
            decision = "none"
        else:
            reason = (
                f"resuming the rollout of canary {plan.canary} (stable {plan.stable}) at step "
                f"{existing.step + 1}/{plan.step_count}, canary weight {format_weight(existing.weight)}%, "
                f"phase {existing.phase}"
            )
            decision = "resume"
        return Outcome(
            plan.model, False, decision, reason, state=existing, plan=plan, warnings=warnings, before=summary(existing)
        )

    def already_stable(self, model: str, version: str) -> Outcome:
        """``start`` with the canary equal to the stable version: nothing to roll out."""
        existing = self.store.load(model)
        if existing is not None and existing.plan.canary == version and existing.phase is Phase.PROMOTED:
            return Outcome(
                model, False, "none", f"canary {version} was already promoted: nothing to do", state=existing
            )
        return Outcome(
            model,
            False,
            "none",
            f"version {version} is already the stable version: nothing to roll out",
            phase=str(Phase.PROMOTED),
        )

    # -- analyze ----------------------------------------------------------------------------------

    def analyze(
        self,
        model: str,
        source: QuerySource | None,
        *,
        check: bool = False,
        weights_set_at: float | None = None,
        max_wait: float | None = None,
        requested: RolloutPlan | None = None,
        reachable: Sequence[str] = (),
    ) -> Outcome:
        state = self._require(model)
        if state.phase is not Phase.PROGRESSING:
            return Outcome(
                model,
                False,
                "none",
                f"the rollout of canary {state.plan.canary} is {state.phase}: nothing to analyze",
                state=state,
                before=summary(state),
            )
        if lost := lost_hosts(state.plan.hosts, reachable):
            return self._lost(state, lost, check=check)
        plan = state.plan
        warnings = []
        if requested is not None and (differences := plan.differences(requested)):
            warnings.append(
                f"analysing with the plan the rollout started with; the requested plan differs "
                f"({'; '.join(differences)})"
            )
        before = summary(state)
        interval = plan.interval_seconds
        extra = interval if max_wait is None else max(0.0, max_wait)
        now = self.clock.now()
        start = state.window_start
        if weights_set_at is not None and weights_set_at > now + 5:
            raise RolloutError(f"weights_set_at {weights_set_at:.0f} is in the future (now {now:.0f})")
        if start is None:
            start = weights_set_at if weights_set_at is not None else now
        elif weights_set_at is not None and weights_set_at > start:
            start = weights_set_at
        # After a hold on a step not yet decided, the window keeps its start (evidence accumulates) and the next
        # look comes one interval after the hold.
        held = state.last_decision == str(Result.HOLD) and state.last_decision_at is not None
        last_look = max(start, state.last_decision_at or start) if held else start
        if now - last_look > interval + extra + max(interval, 60.0):
            warnings.append(
                f"the step's last look was {now - last_look:.0f} s ago (an interrupted run?): starting a fresh "
                "window now"
            )
            start = last_look = now
        deadline = last_look + interval
        if check:
            window = math.ceil(max(interval, now - start))
            return Outcome(
                model,
                False,
                "none",
                f"would wait {max(0.0, deadline - now):.0f} s, then analyse step "
                f"{state.step + 1}/{plan.step_count} at {format_weight(state.weight)}% over "
                f"{window} s",
                state=state,
                warnings=warnings,
                before=before,
                would_wait_seconds=max(0.0, deadline - now),
                queries=describe_gates(plan, window),
            )
        if source is None:
            raise RolloutError("analyze needs prometheus_url")
        if state.window_start != start:
            state.window_start = start
            state.updated_at = now
            self.store.save(state)
        gates, at, window = self._measure(plan, state, source, start, deadline, extra)
        decision = decide(plan, state.step, state.failures, state.inconclusive, gates)
        verdict = str(decision.verdict)
        recorded = [gate_record(g) for g in gates]
        record = {
            "time": at,
            "step": state.step + 1,
            "weight": state.weight,
            "window_start": start,
            "window_seconds": window,
            "verdict": verdict,
            "decision": str(decision.result),
            "reason": decision.reason,
            "gates": recorded,
        }
        state.history.append(record)
        state.count(str(decision.result), verdict)
        state.phase, state.step, state.weight = decision.phase, decision.step, decision.weight
        state.failures, state.inconclusive = decision.failures, decision.inconclusive
        # A hold after a failure judges the same weights again on new traffic (a fresh window); a hold on a step
        # not yet decided keeps the window, which grows until the evidence decides; a new weight starts its
        # window when set.
        if decision.result is Result.HOLD:
            state.window_start = start if decision.verdict is Verdict.INCONCLUSIVE else at
        else:
            state.window_start = None
        state.last_decision, state.last_reason, state.last_decision_at = str(decision.result), decision.reason, at
        state.updated_at = at
        self.store.save(state)
        self.log(f"model_rollout {model}: {decision.result}: {decision.reason}")
        if decision.verdict is not Verdict.PASS:
            warnings.append(decision.reason)
        return Outcome(
            model,
            True,
            str(decision.result),
            decision.reason,
            state=state,
            verdict=verdict,
            gates=recorded,
            window_seconds=window,
            waited_seconds=round(at - now, 3),
            warnings=warnings,
            before=before,
        )

    def _measure(
        self, plan: RolloutPlan, state: RolloutState, source: QuerySource, start: float, deadline: float, extra: float
    ) -> tuple[list[GateResult], float, int]:
        """Wait for the step's window, then evaluate; wait up to ``extra`` more while too little is known."""
        self.clock.sleep(max(0.0, deadline - self.clock.now()))
        last = deadline + extra
        # At most LOOKS_PER_ANALYSIS looks per analysis: the error budget (traffic_gates) counts on it.
        poll = max(1.0, extra / (LOOKS_PER_ANALYSIS - 1))
        while True:
            at = self.clock.now()
            window = max(1, round(at - start))
            gates = evaluate_gates(plan, source, weight=state.weight, window_seconds=window, at=at)
            if at >= last or not keep_waiting(gates):
                return gates, at, window
            self.log(
                f"model_rollout {plan.model}: not conclusive yet over {window} s; waiting up to {last - at:.0f} s more"
            )
            self.clock.sleep(min(poll, last - at))

    # -- finish, abort, status --------------------------------------------------------------------

    def finish(self, model: str, *, check: bool = False) -> Outcome:
        state = self._require(model)
        before = summary(state)
        if state.finished:
            return Outcome(
                model,
                False,
                "none",
                f"the rollout of canary {state.plan.canary} already ended ({state.phase}): nothing to do",
                state=state,
                before=before,
            )
        if state.phase is Phase.PROGRESSING:
            raise RolloutError(
                f"the rollout of canary {state.plan.canary} is still progressing (step "
                f"{state.step + 1}/{state.plan.step_count}): analyze until it decides, or abort it"
            )
        if state.phase is Phase.PROMOTING:
            phase, reason = Phase.PROMOTED, f"canary {state.plan.canary} promoted: it is the stable version now"
        else:
            phase, reason = (
                Phase.ROLLED_BACK,
                (f"canary {state.plan.canary} rolled back: stable {state.plan.stable} serves all traffic"),
            )
        if not check:
            self._close(state, phase, None, reason, self.clock.now())
            self.store.save(state)
            self.log(f"model_rollout {model}: {reason}")
        else:
            state = RolloutState.from_dict(state.to_dict())
            state.phase = phase
        return Outcome(model, True, str(phase), reason, state=state, before=before)

    def abort(self, model: str, *, reason: str = "", check: bool = False) -> Outcome:
        state = self.store.load(model)
        if state is None:
            return Outcome(model, False, "none", f"no rollout of {model} to abort", phase="none")
        before = summary(state)
        if state.finished:
            return Outcome(
                model,
                False,
                "none",
                f"the rollout of canary {state.plan.canary} already ended ({state.phase}): nothing to abort",
                state=state,
                before=before,
            )
        why = f"aborted by the operator{': ' + reason if reason else ''}: canary {state.plan.canary} gets weight 0"
        if check:
            state = RolloutState.from_dict(state.to_dict())
            state.phase, state.weight = Phase.ABORTED, 0.0
        else:
            self._close(state, Phase.ABORTED, "abort", why, self.clock.now())
            self.store.save(state)
            self.log(f"model_rollout {model}: {why}")
        return Outcome(model, True, "abort", why, state=state, before=before, warnings=[why])

    def status(self, model: str) -> Outcome:
        state = self.store.load(model)
        if state is None:
            return Outcome(model, False, "none", f"no rollout of {model} in {self.store.directory}", phase="none")
        reason = state.last_reason or f"rollout is {state.phase}"
        return Outcome(model, False, "none", reason, state=state)

    # -- helpers ----------------------------------------------------------------------------------

    def _lost(self, state: RolloutState, lost: Sequence[str], *, check: bool) -> Outcome:
        """The rollback of a rollout whose hosts were lost (``modelfleet.rollout.lost``), without analysis."""
        before = summary(state)
        if check:
            state = RolloutState.from_dict(state.to_dict())
        reason = roll_back_for_lost(state, lost, self.clock.now()) or ""
        if not check:
            self.store.save(state)
            self.log(f"model_rollout {state.model}: {reason}")
        return Outcome(state.model, not check, str(Result.ROLLBACK), reason, state=state, before=before,
                       warnings=[reason])

    def _require(self, model: str) -> RolloutState:
        state = self.store.load(model)
        if state is None:
            raise RolloutError(f"no rollout of {model} in {self.store.directory}: run action start first")
        return state

    @staticmethod
    def _close(state: RolloutState, phase: Phase, counted: str | None, reason: str, now: float) -> None:
        state.phase = phase
        if phase is Phase.PROMOTED:
            state.weight = PROMOTED_WEIGHT
        elif phase in FINISHED:
            state.weight = 0.0
        state.finished_at = now
        state.window_start = None
        state.updated_at = now
        if counted is not None:
            state.count(counted)
            state.last_decision, state.last_reason, state.last_decision_at = counted, reason, now


def is_history(state: RolloutState, canary_since: float) -> bool:
    """Whether ``state`` belongs to an earlier canary than the one the hosts started at ``canary_since``."""
    return state.finished or state.started_at < canary_since


def keep_waiting(gates: list[GateResult]) -> bool:
    """Whether more traffic may decide: the analysis is not yet decided. A failure decides at once, whatever
    the sample size: every traffic gate fails only with significance at its share of the error budget."""
    return overall_verdict(gates) is Verdict.INCONCLUSIVE
