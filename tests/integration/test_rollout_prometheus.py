"""Canary analysis against a REAL Prometheus scraping small exporters that speak the model server's metrics.

One Prometheus (scrape and rule evaluation every second) scrapes, per scenario model, a stable (v1) and
a canary (v2) target on two hosts — each a prometheus_client server with the model server's own
metric definitions (``modelfleet.serve.metrics.ServerMetrics``) fed by a traffic thread — plus a
drift exporter target per host. All scenarios are analysed at the same time (5 s steps):

* ``healthy``: passes every gate (its clients' invalid requests are not its errors), advances, then
  promotes at 100% (comparisons not applicable there);
* ``erroring``: 30% errors fails the error gates; ``slow``: 300 ms fails the latency gates;
* ``idle``: a canary without traffic is inconclusive (held), never passed;
* ``crashed``: a canary target that dies mid-step fails health; ``restarted``: a restart fails health;
* ``drifted``: a shifted feature fails the PSI gate.

The recording rules of monitoring/rules/ are loaded when present (a copy of the names the rollout
documents otherwise) and cross-checked against the gates.
"""

from __future__ import annotations

import json
import random
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from harness import Prometheus, need
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from modelfleet.rollout.decision import Phase
from modelfleet.rollout.engine import Engine, Outcome
from modelfleet.rollout.plan import RolloutPlan, Thresholds
from modelfleet.rollout.prometheus import PrometheusClient, PrometheusError
from modelfleet.rollout.state import StateStore
from modelfleet.serve.metrics import ServerMetrics

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
HOSTS = ("h1", "h2")
INTERVAL = 5.0
RATE = 150.0  # requests per second per target: a p99 bound on the stable needs ~1,100 requests

# The recording rules the rollout docs name; used when monitoring/rules/ does not exist yet.
RULES = """\
groups:
  - name: modelfleet-canary
    rules:
      - record: model_version:modelfleet_requests:rate1m
        expr: sum by (model, version) (rate({__name__=~"nv_inference_request_(success|failure)_total"}[1m]))
      - record: model_version:modelfleet_errors:rate1m
        expr: sum by (model, version) (rate(nv_inference_request_failure_total[1m]))
      - record: model_version:modelfleet_error_ratio:rate1m
        expr: model_version:modelfleet_errors:rate1m / model_version:modelfleet_requests:rate1m
      - record: model_version:modelfleet_request_duration_seconds:p99_1m
        expr: >-
          histogram_quantile(0.99, sum by (model, version, le)
          (rate(modelfleet_request_duration_seconds_bucket[1m])))
"""


@dataclass
class Behaviour:
    error_ratio: float = 0.0
    invalid_ratio: float = 0.0  # client mistakes (HTTP 400): not the canary's errors
    latency: float = 0.01
    rate: float = RATE


@dataclass
class Target:
    """One model server process stand-in: the real metric names, traffic from the driver thread."""

    model: str
    version: str
    host: str
    behaviour: Behaviour
    port: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    metrics: ServerMetrics | None = None
    server: Any = None
    credit: float = 0.0

    def start(self) -> Target:
        registry = CollectorRegistry()
        metrics = ServerMetrics(registry, self.model, self.version)
        metrics.ready.set(1)
        server, _thread = start_http_server(self.port, addr="127.0.0.1", registry=registry)
        with self.lock:
            self.metrics, self.server, self.port = metrics, server, server.server_port
        return self

    def stop(self) -> None:
        with self.lock:
            server, self.server, self.metrics = self.server, None, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def restart(self) -> None:
        self.stop()
        self.start()

    def tick(self, seconds: float, rng: random.Random) -> None:
        with self.lock:
            if self.metrics is None:
                return
            self.credit += self.behaviour.rate * seconds
            while self.credit >= 1:
                self.credit -= 1
                draw = rng.random()
                if draw < self.behaviour.error_ratio:
                    self.metrics.failure["inference"].inc()
                elif draw < self.behaviour.error_ratio + self.behaviour.invalid_ratio:
                    self.metrics.failure["invalid_request"].inc()
                else:
                    self.metrics.success.inc()
                    self.metrics.request_duration.observe(self.behaviour.latency * rng.uniform(0.8, 1.2))


@dataclass
class Scenario:
    model: str
    canary: Behaviour = field(default_factory=Behaviour)
    psi: dict[str, float] = field(default_factory=lambda: {"age": 0.04, "income": 0.06})
    steps: tuple[float, ...] = (10.0, 50.0)
    accuracy: tuple[float, float] | None = None  # per host; 300 labelled rows each


SCENARIOS = [
    Scenario("healthy", canary=Behaviour(invalid_ratio=0.05), steps=(50.0, 100.0), accuracy=(0.92, 0.88)),
    Scenario("erroring", canary=Behaviour(error_ratio=0.3)),
    Scenario("slow", canary=Behaviour(latency=0.3)),
    Scenario("idle", canary=Behaviour(rate=0.0)),
    Scenario("crashed"),
    Scenario("restarted"),
    Scenario("drifted", psi={"age": 0.04, "income": 0.6}),
]


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


@dataclass
class Fleet:
    url: str
    targets: dict[tuple[str, str, str], Target]
    rule_files: list[Path]
    outcomes: dict[str, list[Outcome]] = field(default_factory=dict)
    elapsed: float = 0.0

    def instant(self, promql: str) -> list[dict[str, Any]]:
        query = urllib.parse.urlencode({"query": promql})
        answer = _get(f"{self.url}/api/v1/query?{query}")
        return list(answer["data"]["result"])


def _drift_exporter(host: str) -> Any:
    registry = CollectorRegistry()
    psi = Gauge("modelfleet_feature_psi", "PSI", ["model", "version", "feature", "window"], registry=registry)
    detected = Gauge("modelfleet_feature_drift_detected", "test rejects", ["model", "version", "feature", "window"],
                     registry=registry)
    pvalue = Gauge("modelfleet_feature_ks_pvalue", "KS p-value", ["model", "version", "feature", "window"],
                   registry=registry)
    rows = Gauge("modelfleet_model_labelled_rows", "rows", ["model", "version", "window"], registry=registry)
    accuracy = Gauge("modelfleet_model_accuracy", "accuracy", ["model", "version", "window"], registry=registry)
    for scenario in SCENARIOS:
        for feature, value in scenario.psi.items():
            psi.labels(scenario.model, "2", feature, "5m").set(value)
            psi.labels(scenario.model, "1", feature, "5m").set(0.01)
            # As the exporter does on a real shift: the corrected test rejects where the PSI is large.
            detected.labels(scenario.model, "2", feature, "5m").set(float(value > 0.1))
            detected.labels(scenario.model, "1", feature, "5m").set(0.0)
            pvalue.labels(scenario.model, "2", feature, "5m").set(1e-12 if value > 0.1 else 0.4)
        if scenario.accuracy is not None:
            rows.labels(scenario.model, "2", "5m").set(300)
            accuracy.labels(scenario.model, "2", "5m").set(scenario.accuracy[HOSTS.index(host)])
    server, _thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    return server


def _rule_files(tmp: Path) -> list[Path]:
    shipped = sorted((REPO / "monitoring" / "rules").glob("*.yml")) if (REPO / "monitoring" / "rules").is_dir() else []
    shipped = [p for p in shipped if not p.name.endswith("_test.yml") and not p.name.startswith("test")]
    if shipped:
        return shipped
    copy = tmp / "rules.yml"
    copy.write_text(RULES)
    return [copy]


def _plan(scenario: Scenario) -> RolloutPlan:
    thresholds = Thresholds(
        error_rate=0.05,
        p99_latency_ms=100.0,
        latency_vs_stable=1.5,
        error_rate_vs_stable=2.0,
        drift_psi=0.2,
        min_accuracy=0.8 if scenario.accuracy else None,
    )
    return RolloutPlan(
        model=scenario.model,
        stable="1",
        canary="2",
        steps=scenario.steps,
        interval_seconds=INTERVAL,
        min_requests=100,
        failure_limit=1,
        inconclusive_limit=2,
        thresholds=thresholds,
        hosts=HOSTS,
    )


def _drive(targets: list[Target], stop: threading.Event) -> None:
    rng = random.Random(7)
    last = time.monotonic()
    while not stop.wait(0.02):
        now = time.monotonic()
        for target in targets:
            target.tick(now - last, rng)
        last = now


def _run_scenario(fleet: Fleet, scenario: Scenario, state_dir: Path) -> list[Outcome]:
    client = PrometheusClient(fleet.url, timeout=5)
    engine = Engine(StateStore(state_dir))
    plan = _plan(scenario)
    outcomes = [engine.start(plan)]
    weights_set_at = time.time()
    if scenario.model in ("crashed", "restarted"):

        def trouble() -> None:
            time.sleep(1.5)
            target = fleet.targets[(scenario.model, "2", "h2" if scenario.model == "crashed" else "h1")]
            target.stop() if scenario.model == "crashed" else target.restart()

        threading.Thread(target=trouble, daemon=True).start()
    while True:
        outcome = engine.analyze(scenario.model, client, weights_set_at=weights_set_at, max_wait=0)
        outcomes.append(outcome)
        if outcome.state is None or outcome.state.phase is not Phase.PROGRESSING or outcome.decision == "hold":
            break
        weights_set_at = time.time()  # the "playbook" set the new weights
    if outcome.state is not None and outcome.state.phase in (Phase.PROMOTING, Phase.ROLLING_BACK):
        outcomes.append(engine.finish(scenario.model))
    return outcomes


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    need("prometheus", "prometheus")
    tmp = tmp_path_factory.mktemp("rollout-prometheus")
    targets = {
        (s.model, v, h): Target(s.model, v, h, s.canary if v == "2" else Behaviour()).start()
        for s in SCENARIOS
        for v in ("1", "2")
        for h in HOSTS
    }
    drift = {h: _drift_exporter(h) for h in HOSTS}
    stop = threading.Event()
    driver = threading.Thread(target=_drive, args=(list(targets.values()), stop), daemon=True)
    driver.start()
    # As the lead's scrape config: model server targets carry host, model and version (``up`` has only these).
    serve_targets = [
        {"targets": [f"127.0.0.1:{t.port}"], "labels": {"host": t.host, "model": t.model, "version": t.version}}
        for t in targets.values()
    ]
    drift_targets = [{"targets": [f"127.0.0.1:{s.server_port}"], "labels": {"host": h}} for h, s in drift.items()]
    rule_files = _rule_files(tmp)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "900ms"},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [
            {"job_name": "modelfleet-serve", "honor_labels": True, "static_configs": serve_targets},
            {"job_name": "modelfleet-drift", "honor_labels": True, "static_configs": drift_targets},
        ],
    }
    prometheus = Prometheus(tmp, config)
    fleet = Fleet(prometheus.url, targets, rule_files)
    try:
        deadline = time.monotonic() + 30
        expected = len(targets) + len(drift)
        while True:
            assert prometheus.process.poll() is None, prometheus.log.read_text()
            try:
                up = fleet.instant("count(up == 1)")
                # Two scrapes of every target: counters have a rate before the first window starts.
                scraped = fleet.instant("count(count_over_time(nv_inference_request_success_total[10s]) >= 2)")
                if (
                    up
                    and int(float(up[0]["value"][1])) == expected
                    and scraped
                    and int(float(scraped[0]["value"][1])) == len(targets)
                ):
                    break
            except (OSError, ValueError, KeyError):
                pass
            assert time.monotonic() < deadline, "Prometheus did not scrape every target in time"
            time.sleep(0.2)
        started = time.monotonic()
        with ThreadPoolExecutor(len(SCENARIOS)) as pool:
            futures = {s.model: pool.submit(_run_scenario, fleet, s, tmp / "state") for s in SCENARIOS}
            fleet.outcomes = {model: future.result() for model, future in futures.items()}
        fleet.elapsed = time.monotonic() - started
        yield fleet
    finally:
        stop.set()
        prometheus.stop()
        # Each server's shutdown waits out its poll interval: stop them all at once.
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(Target.stop, targets.values()))
            list(pool.map(lambda server: (server.shutdown(), server.server_close()), drift.values()))


def _gates(outcome: Outcome) -> dict[str, dict[str, Any]]:
    return {g["name"]: g for g in outcome.gates}


def _analyses(fleet: Fleet, model: str) -> list[Outcome]:
    return [o for o in fleet.outcomes[model] if o.verdict is not None]


def test_healthy_canary_passes_advances_and_promotes(fleet: Fleet) -> None:
    first, second = _analyses(fleet, "healthy")
    assert first.decision == "advance", first.reason
    gates = _gates(first)
    assert {g["verdict"] for g in gates.values()} == {"pass"}, first.reason
    assert gates["requests"]["value"] > 500
    assert gates["error_rate"]["value"] == 0  # 5% invalid requests are the clients' errors
    assert gates["p99_latency_ms"]["value"] < 30
    # Same latency as the stable: both p99s in the same bucket, judged within the margins.
    evidence = gates["latency_vs_stable"]["evidence"]
    assert evidence["canary_p99_bucket_ms"] == evidence["stable_p99_bucket_ms"]
    assert evidence["canary_requests"] > 500 and evidence["stable_requests"] > evidence["canary_requests"]
    assert gates["drift_psi"]["value"] == pytest.approx(0.06)
    assert gates["min_accuracy"]["value"] == pytest.approx(0.9)
    assert gates["canary_up"]["value"] == 1 and gates["canary_restarts"]["value"] == 0
    assert second.decision == "promote", second.reason
    at_100 = _gates(second)
    assert at_100["latency_vs_stable"]["verdict"] == "not_applicable"
    assert at_100["error_rate_vs_stable"]["verdict"] == "not_applicable"
    finished = fleet.outcomes["healthy"][-1]
    assert finished.result()["phase"] == "promoted" and finished.result()["weight"] == 100


def test_erroring_canary_fails_the_error_gates(fleet: Fleet) -> None:
    (outcome,) = _analyses(fleet, "erroring")
    gates = _gates(outcome)
    assert outcome.decision == "rollback"
    assert gates["error_rate"]["verdict"] == "fail" and 0.2 < gates["error_rate"]["value"] < 0.4
    assert gates["error_rate_vs_stable"]["verdict"] == "fail"
    assert gates["canary_up"]["verdict"] == "pass" and gates["p99_latency_ms"]["verdict"] == "pass"
    assert "error_rate: canary errors" in outcome.reason and "confidence > limit" in outcome.reason
    assert fleet.outcomes["erroring"][-1].result()["phase"] == "rolled_back"


def test_slow_canary_fails_the_latency_gates(fleet: Fleet) -> None:
    (outcome,) = _analyses(fleet, "slow")
    gates = _gates(outcome)
    assert outcome.decision == "rollback"
    assert gates["p99_latency_ms"]["verdict"] == "fail" and gates["p99_latency_ms"]["value"] > 250
    assert gates["latency_vs_stable"]["verdict"] == "fail" and gates["latency_vs_stable"]["value"] > 5
    assert gates["error_rate"]["verdict"] == "pass"


def test_canary_without_traffic_is_inconclusive_not_passed(fleet: Fleet) -> None:
    (outcome,) = _analyses(fleet, "idle")
    gates = _gates(outcome)
    assert outcome.decision == "hold" and outcome.verdict == "inconclusive"
    assert gates["requests"]["verdict"] == "inconclusive" and gates["requests"]["value"] == 0
    assert gates["error_rate"]["verdict"] == "inconclusive" and "no canary requests" in gates["error_rate"]["detail"]
    assert gates["p99_latency_ms"]["verdict"] == "inconclusive"
    assert gates["canary_up"]["verdict"] == "pass"
    state = outcome.state
    assert state is not None and state.phase is Phase.PROGRESSING and state.weight == 10.0 and state.inconclusive == 1


def test_canary_target_down_fails_health(fleet: Fleet) -> None:
    (outcome,) = _analyses(fleet, "crashed")
    gates = _gates(outcome)
    assert outcome.decision == "rollback"
    assert gates["canary_up"]["verdict"] == "fail" and "h2" in gates["canary_up"]["detail"]


def test_canary_restart_fails_health(fleet: Fleet) -> None:
    (outcome,) = _analyses(fleet, "restarted")
    gates = _gates(outcome)
    assert outcome.decision == "rollback"
    assert gates["canary_restarts"]["verdict"] == "fail" and "h1" in gates["canary_restarts"]["detail"]


def test_drifted_canary_fails_the_psi_gate(fleet: Fleet) -> None:
    (outcome,) = _analyses(fleet, "drifted")
    gates = _gates(outcome)
    assert outcome.decision == "rollback"
    assert gates["drift_psi"]["verdict"] == "fail" and gates["drift_psi"]["value"] == pytest.approx(0.6)
    assert "'income'" in gates["drift_psi"]["detail"]


def test_recording_rules_agree_with_the_gates(fleet: Fleet, promtool: str) -> None:
    for rules in fleet.rule_files:
        done = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
    erroring = fleet.instant('model_version:modelfleet_error_ratio:rate1m{model="erroring",version="2"}')
    healthy = fleet.instant('model_version:modelfleet_error_ratio:rate1m{model="healthy",version="2"}')
    slow = fleet.instant('model_version:modelfleet_request_duration_seconds:p99_1m{model="slow",version="2"}')
    assert erroring and 0.2 < float(erroring[0]["value"][1]) < 0.4
    assert healthy and float(healthy[0]["value"][1]) == 0
    assert slow and float(slow[0]["value"][1]) > 0.25


def test_bad_query_reports_prometheus_error(fleet: Fleet) -> None:
    with pytest.raises(PrometheusError, match="bad_data"):
        PrometheusClient(fleet.url).query("sum(", time.time())


def test_all_scenarios_ran_in_parallel_within_budget(fleet: Fleet) -> None:
    assert fleet.elapsed < 3 * INTERVAL + 10
