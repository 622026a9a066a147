"""The retraining hook's core: decide per model version, then trigger on a worker thread.

Alertmanager repeats notifications (``repeat_interval``, new alerts joining a group), so a model
version is triggered at most once per cooldown: a request for a version triggered successfully less
than ``cooldown`` seconds ago is skipped (``cooldown``), as is one whose trigger is still queued or
running (``in_flight``). A failed trigger does not start the cooldown: the next notification tries
again. Triggers run one at a time on a worker thread, so the webhook answers at once and a slow
training system never holds up Alertmanager.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from modelfleet.alerting.actions import Action, ActionError
from modelfleet.alerting.payload import Notification, RetrainRequest, retrain_requests
from modelfleet.alerting.state import Key, TriggerState

log = logging.getLogger(__name__)
OUTCOMES = ("triggered", "failed", "cooldown", "in_flight")
DURATION_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, float("inf"))


@dataclass(frozen=True)
class Decision:
    """What the hook does about one model version of a notification."""

    model: str
    version: str
    features: tuple[str, ...]
    outcome: str  # queued | cooldown | in_flight
    detail: str

    def as_dict(self) -> dict[str, object]:
        return {
            "model": self.model,
            "version": self.version,
            "features": list(self.features),
            "outcome": self.outcome,
            "detail": self.detail,
        }


class RetrainHook:
    def __init__(
        self,
        action: Action,
        state: TriggerState,
        cooldown: float,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.action = action
        self.state = state
        self.cooldown = cooldown
        self.clock = clock
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.lock = threading.Lock()
        self.idle = threading.Condition(self.lock)
        self.pending: set[Key] = set()
        self.jobs: queue.Queue[RetrainRequest | None] = queue.Queue()
        self.thread: threading.Thread | None = None
        self.requests = Counter(
            "modelfleet_retrain_requests",
            "Retraining requests (one per model version and "
            "notification) by outcome: triggered (the command or URL succeeded), failed, "
            "cooldown and in_flight (skipped).",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in OUTCOMES:
            self.requests.labels(outcome)
        self.ignored = Counter(
            "modelfleet_retrain_alerts_ignored",
            'Firing retrain="true" alerts that could not be used, by reason.',
            ["reason"],
            registry=self.registry,
        )
        self.ignored.labels("no_model")
        self.duration = Histogram(
            "modelfleet_retrain_action_duration_seconds",
            "Time the command or URL took, successful or not.",
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.pending_gauge = Gauge(
            "modelfleet_retrain_pending", "Retraining triggers queued or running.", registry=self.registry
        )
        self.state_failures = Counter(
            "modelfleet_retrain_state_write_failures",
            "Trigger times that could not be written to the state file.",
            registry=self.registry,
        )
        cooldown_gauge = Gauge(
            "modelfleet_retrain_cooldown_seconds",
            "A model version is not triggered again within this time.",
            registry=self.registry,
        )
        cooldown_gauge.set(cooldown)
        self.registry.register(_LastTriggerCollector(state))

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        self.thread = threading.Thread(target=self._work, name="retrain-worker", daemon=True)
        self.thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Let the running trigger finish (up to ``timeout``); queued ones are dropped."""
        stop = getattr(self.action, "stop", None)
        if isinstance(stop, threading.Event):
            stop.set()
        while True:
            try:
                self.jobs.get_nowait()
            except queue.Empty:
                break
        self.jobs.put(None)
        if self.thread is not None:
            self.thread.join(timeout)

    @property
    def healthy(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def wait_idle(self, timeout: float) -> bool:
        """True once nothing is queued or running (within ``timeout`` seconds)."""
        with self.idle:
            return self.idle.wait_for(lambda: not self.pending, timeout)

    # --- notifications -----------------------------------------------------------------------------

    def submit(self, notification: Notification) -> tuple[list[Decision], list[str]]:
        """Decide for each model version of the notification; queue the triggers."""
        requests, ignored = retrain_requests(notification)
        for reason in ignored:
            log.warning("ignored: %s", reason)
            self.ignored.labels("no_model").inc()
        now = self.clock()
        decisions = []
        with self.lock:
            for request in requests:
                decision = self._decide(request, now)
                decisions.append(decision)
                log.info(
                    "%s v%s (features %s): %s%s",
                    request.model,
                    request.version or "-",
                    ",".join(request.features) or "-",
                    decision.outcome,
                    f" ({decision.detail})" if decision.detail else "",
                )
                if decision.outcome == "queued":
                    self.pending.add(request.key)
                    self.jobs.put(request)
                else:
                    self.requests.labels(decision.outcome).inc()
            self.pending_gauge.set(len(self.pending))
        return decisions, ignored

    def _decide(self, request: RetrainRequest, now: float) -> Decision:
        def decision(outcome: str, detail: str = "") -> Decision:
            return Decision(request.model, request.version, request.features, outcome, detail)

        if request.key in self.pending:
            return decision("in_flight", "a trigger for this version is queued or running")
        last = self.state.last_trigger(request.key)
        if last is not None and now - last < self.cooldown:
            return decision("cooldown", f"triggered {now - last:.0f} s ago; cooldown {self.cooldown:g} s")
        return decision("queued")

    # --- the worker --------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            request = self.jobs.get()
            if request is None:
                return
            try:
                self._trigger(request)
            finally:
                with self.idle:
                    self.pending.discard(request.key)
                    self.pending_gauge.set(len(self.pending))
                    self.idle.notify_all()

    def _trigger(self, request: RetrainRequest) -> None:
        started = self.clock()
        document = orjson.dumps(request.document(started))
        clock_start = time.monotonic()
        try:
            self.action(request, document)
        except ActionError as exc:
            self.requests.labels("failed").inc()
            log.error("retraining %s v%s failed: %s", request.model, request.version or "-", exc)
            return
        except Exception:
            self.requests.labels("failed").inc()
            log.exception("retraining %s v%s failed unexpectedly", request.model, request.version or "-")
            return
        finally:
            self.duration.observe(time.monotonic() - clock_start)
        self.requests.labels("triggered").inc()
        log.info(
            "retraining %s v%s triggered (%s, %.2f s)",
            request.model,
            request.version or "-",
            self.action.kind,
            time.monotonic() - clock_start,
        )
        try:
            self.state.record(request.key, started, keep_since=self.clock() - self.cooldown)
        except OSError as exc:
            self.state_failures.inc()
            log.error(
                "could not write the state file %s: %s (the cooldown holds until a restart)", self.state.path, exc
            )


class _LastTriggerCollector(Collector):
    def __init__(self, state: TriggerState) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "modelfleet_retrain_last_trigger_timestamp_seconds",
            "Unix time of the last successful retraining trigger, per model version (within the cooldown).",
            labels=["model", "version"],
        )
        for (model, version), at in sorted(self.state.snapshot().items()):
            family.add_metric([model, version], at)
        yield family
