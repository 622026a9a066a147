"""bench/rollout: false-rollback and miss rates of the canary judgement, by simulating whole rollouts.

The real engine (``modelfleet.rollout.engine.Engine``: waits, polls, holds, the error budget) and the real gates
run on synthetic step windows: per-second request, error and latency-bucket counts of the stable and the canary
(``traffic_model.py``), with latencies drawn from a histogram recorded from the real server under load
(``record.py``, committed as ``latency-credit-risk.json``) and drift statistics from the drift exporter's own
code. The old rule (point estimates, before the statistical judgement) runs on the same windows for comparison.

    python bench/rollout/simulate.py [--trials 1000] [--seed 1] [--latency-file F] [--volume demo --volume 10x]

Prints one table per volume: per case and rule, the share of rollouts promoted, rolled back by a failed gate,
and rolled back because the judgement stayed undecided (inconclusive limit), then the smallest effects rolled
back in >= 95% of rollouts. Not a test: figures go to docs/rollout.md.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import re
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from old_rule import OLD_BUCKETS, old_gates, old_keep_waiting  # noqa: E402
from traffic_model import Behaviour, Features, LatencyModel, VersionTraffic, cumulative_at  # noqa: E402

from modelfleet.drift.metrics import DetectionRule  # noqa: E402
from modelfleet.rollout import engine as engine_module  # noqa: E402
from modelfleet.rollout.decision import Phase  # noqa: E402
from modelfleet.rollout.engine import Engine  # noqa: E402
from modelfleet.rollout.gates import Queries  # noqa: E402
from modelfleet.rollout.plan import RolloutPlan, Thresholds  # noqa: E402
from modelfleet.rollout.prometheus import Sample  # noqa: E402
from modelfleet.rollout.state import StateStore  # noqa: E402
from modelfleet.serve.metrics import REQUEST_LATENCY_BUCKETS  # noqa: E402
from modelfleet.stats.drift import NumericReference, numeric_drift  # noqa: E402

GRIDS = {
    "r10": REQUEST_LATENCY_BUCKETS,
    "r5": tuple(b for i, b in enumerate(REQUEST_LATENCY_BUCKETS) if i % 2 == 0),
    "coarse": OLD_BUCKETS,
}


@dataclass(frozen=True)
class Volume:
    name: str
    rate: float  # requests per second, all versions together
    steps: tuple[float, ...]
    interval: float
    min_requests: int


VOLUMES = {
    "old-demo": Volume("old-demo (30 req/s, steps 10/50/100, 20 s)", 30.0, (10.0, 50.0, 100.0), 20.0, 30),
    "demo": Volume("demo (100 req/s, steps 20/50/100, 30 s)", 100.0, (20.0, 50.0, 100.0), 30.0, 100),
    "10x": Volume("10x the demo (1000 req/s, steps 20/50/100, 30 s)", 1000.0, (20.0, 50.0, 100.0), 30.0, 100),
}


@dataclass(frozen=True)
class Case:
    name: str
    factor: float = 1.0
    offset_ms: float = 0.0
    errors: float = 0.0
    drift: bool = False


CASES = (
    Case("identical"),
    Case("20% slower", factor=1.2),
    Case("+20 ms", offset_ms=20.0),
    Case("+1% errors", errors=0.01),
    Case("+5% errors", errors=0.05),
    Case("drift (discrete column x1.05+0.1)", drift=True),
)
SWEEPS = {
    "slower by x": [Case(f"x{f:g}", factor=f) for f in (1.5, 2.0, 2.5, 3.0, 4.0, 6.0, 10.0)],
    "slower by +ms": [Case(f"+{d:g} ms", offset_ms=d) for d in (2.0, 5.0, 7.5, 10.0, 15.0, 20.0)],
    "more errors": [Case(f"+{e * 100:g}%", errors=e) for e in (0.005, 0.01, 0.02, 0.03, 0.05)],
}
# The credit-risk example's gates (examples/credit-risk/model.yml) with the defaults of the rest.
GATES = Thresholds(error_rate=0.01, p99_latency_ms=100.0, latency_vs_stable=1.5, drift_psi=0.2)


class SimClock:
    def __init__(self) -> None:
        self.time = 1_000_000.0

    def now(self) -> float:
        return self.time

    def sleep(self, seconds: float) -> None:
        self.time += max(0.0, seconds)


class Rollout:
    """One simulated rollout's traffic, answering the gates' PromQL like Prometheus would."""

    def __init__(self, plan: RolloutPlan, volume: Volume, stable: Behaviour, canary: Behaviour, grid: tuple[float, ...],
                 rng: np.random.Generator, features: Features, clock: SimClock) -> None:
        self.plan, self.volume, self.grid, self.clock = plan, volume, grid, clock
        self.start = clock.now()
        self.stable = VersionTraffic(stable, rng, None)
        self.canary = VersionTraffic(canary, rng, features)
        self.features = features
        self.weights: list[tuple[float, float]] = []
        self.rule = DetectionRule()
        self._answers: dict[tuple[int, int], dict[str, list[Sample]]] = {}

    def set_weight(self, weight: float) -> None:
        self.weights.append((self.clock.now(), weight))

    def _weight_at(self, second: int) -> float:
        moment = self.start + second
        return next((w for t, w in reversed(self.weights) if t <= moment), 0.0)

    def advance_to(self, at: float) -> int:
        second = int(at - self.start)
        while len(self.canary.requests) <= second:
            weight = self._weight_at(len(self.canary.requests))
            self.canary.add_second(self.volume.rate * weight / 100)
            self.stable.add_second(self.volume.rate * (100 - weight) / 100)
        return second

    def counts(self, traffic: VersionTraffic, at: int, window: int) -> tuple[int, int, list[tuple[float, float]]]:
        requests, errors, buckets = traffic.window(at, window)
        return requests, errors, cumulative_at(buckets, REQUEST_LATENCY_BUCKETS, self.grid)

    def drift(self) -> dict[str, tuple[float, float, bool, float]]:
        """Per feature (PSI, KS, corrected test rejects, KS p-value) of every canary row so far (the 5m window)."""
        if not self.canary.sketch:
            return {}
        results = {name: numeric_drift(NumericReference.of(self.features.profiles[name]), vector)
                   for name, vector in self.canary.sketch.items()}
        detected = self.rule.detect(results)
        return {name: (r.psi or 0.0, r.ks_statistic or 0.0, detected.get(name, False),
                       1.0 if r.ks_pvalue is None else r.ks_pvalue) for name, r in results.items()}

    def answers(self, at: int, window: int) -> dict[str, list[Sample]]:
        key = (at, window)
        if key not in self._answers:
            q, plan = Queries(self.plan, window), self.plan
            data: dict[str, list[Sample]] = {q.up(): [Sample({"host": "h1"}, 1.0)],
                                             q.restarts(): [Sample({"host": "h1"}, 0.0)]}
            for version, traffic in ((plan.canary, self.canary), (plan.stable, self.stable)):
                requests, errors, cumulative = self.counts(traffic, at, window)
                data[q.requests(version)] = [Sample({}, float(requests))]
                data[q.errors(version)] = [Sample({}, float(errors))]
                data[q.latency_buckets(version)] = [Sample({"le": "+Inf" if math.isinf(le) else repr(le)}, count)
                                                    for le, count in cumulative]
            drift = self.drift()
            for metric, index in (("psi", 0), ("ks_statistic", 1), ("drift_detected", 2), ("ks_pvalue", 3)):
                data[q.column_statistic(f"modelfleet_feature_{metric}", "feature")] = [
                    Sample({"feature": name}, float(values[index])) for name, values in drift.items()]
            data[q.column_statistic("modelfleet_feature_chi2_pvalue", "feature")] = []
            self._answers = {key: data}
        return self._answers[key]

    def query(self, promql: str, at: float) -> list[Sample]:
        second = self.advance_to(at)
        window = int(re.findall(r"\[(\d+)s\]", promql)[0]) if "[" in promql and "s]" in promql else 60
        return self.answers(second, window)[promql]


def old_evaluate(rollout: Rollout) -> object:
    """``evaluate_gates`` of the old rule, over the same simulated windows."""

    def evaluate(plan: RolloutPlan, source: object, *, weight: float, window_seconds: int, at: float) -> list:
        second = rollout.advance_to(at)
        window = max(1, int(window_seconds))
        canary = rollout.counts(rollout.canary, second, window)
        stable = rollout.counts(rollout.stable, second, window)
        drift = rollout.drift()
        drift_fail = None if not drift else any(
            rejects and psi > (plan.thresholds.drift_psi or math.inf) for psi, _ks, rejects, _p in drift.values())
        return old_gates(plan, weight, canary, stable, drift_fail)

    return evaluate


@contextlib.contextmanager
def old_rule(rollout: Rollout) -> Iterator[None]:
    saved = engine_module.evaluate_gates, engine_module.keep_waiting
    engine_module.evaluate_gates = old_evaluate(rollout)  # type: ignore[assignment]
    engine_module.keep_waiting = old_keep_waiting
    try:
        yield
    finally:
        engine_module.evaluate_gates, engine_module.keep_waiting = saved


def run_rollout(plan: RolloutPlan, volume: Volume, stable: Behaviour, canary: Behaviour, rule: str,
                rng: np.random.Generator, features: Features, store: StateStore) -> tuple[str, str]:
    """One whole rollout; returns (outcome, the gates that failed or were undecided)."""
    clock = SimClock()
    grid = OLD_BUCKETS if rule == "old" else GRIDS[rule]
    rollout = Rollout(plan, volume, stable, canary, grid, rng, features, clock)
    engine = Engine(store, clock)
    context = old_rule(rollout) if rule == "old" else contextlib.nullcontext()
    with context:
        state = engine.start(plan, force=True).state
        assert state is not None
        rollout.set_weight(state.weight)
        set_at = clock.now()
        while True:
            outcome = engine.analyze(plan.model, rollout, weights_set_at=set_at)
            state = outcome.state
            assert state is not None
            if state.phase is not Phase.PROGRESSING:
                break
            if state.weight != rollout.weights[-1][1]:
                rollout.set_weight(state.weight)
                set_at = clock.now()
    if state.phase is Phase.PROMOTING:
        return "promoted", ""
    last = state.history[-1]
    kind = "fail" if last["verdict"] == "fail" else "inconclusive"
    names = ",".join(sorted(g["name"] for g in last["gates"] if g["verdict"] == kind))
    return ("rolled back" if kind == "fail" else "undecided"), names


def behaviours(model: LatencyModel, case: Case, grid_rng: np.random.Generator,
               cache: dict[tuple[float, float], np.ndarray]) -> tuple[Behaviour, Behaviour]:
    def buckets(factor: float, offset_ms: float) -> np.ndarray:
        key = (factor, offset_ms)
        if key not in cache:
            cache[key] = model.bucket_probabilities(REQUEST_LATENCY_BUCKETS, factor, offset_ms / 1000, grid_rng)
        return cache[key]

    stable = Behaviour(buckets(1.0, 0.0))
    canary = Behaviour(buckets(case.factor, case.offset_ms), error_probability=case.errors, drift=case.drift)
    return stable, canary


def simulate(case: Case, volume: Volume, rule: str, trials: int, seed: int, model: LatencyModel,
             cache: dict[tuple[float, float], np.ndarray], store: StateStore,
             gates: Thresholds = GATES) -> tuple[Counter[str], Counter[str]]:
    rng = np.random.default_rng(seed)
    features = Features.build(np.random.default_rng(seed + 1))
    stable, canary = behaviours(model, case, np.random.default_rng(seed + 2), cache)
    plan = RolloutPlan(model="sim", stable="1", canary="2", steps=volume.steps, interval_seconds=volume.interval,
                       min_requests=volume.min_requests, failure_limit=1, inconclusive_limit=3, thresholds=gates,
                       hosts=("h1",))
    outcomes: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for _ in range(trials):
        outcome, names = run_rollout(plan, volume, stable, canary, rule, rng, features, store)
        outcomes[outcome] += 1
        if names:
            reasons[f"{outcome}: {names}"] += 1
    return outcomes, reasons


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--latency-file", type=Path, default=HERE / "latency-credit-risk.json")
    parser.add_argument("--volume", action="append", choices=sorted(VOLUMES), help="default: demo and 10x")
    parser.add_argument("--rule", action="append", choices=["old", *GRIDS], help="default: old and r10")
    parser.add_argument("--no-sweep", action="store_true", help="skip the smallest-detected-effect sweeps")
    parser.add_argument("--no-table", action="store_true", help="only the sweeps")
    parser.add_argument("--latency-scale", type=float, default=1.0,
                        help="multiply the recorded latencies (both versions), e.g. 20 for a ~10 ms model")
    parser.add_argument("--sweep", action="append", choices=sorted(SWEEPS), help="default: every sweep")
    parser.add_argument("--sweep-trials", type=int, default=200)
    args = parser.parse_args()
    model = LatencyModel.load(args.latency_file).scaled(args.latency_scale)
    # A slower model gets a proportionally higher absolute p99 limit (the example's 100 ms for a ~0.5 ms model).
    gates = replace(GATES, p99_latency_ms=(GATES.p99_latency_ms or 100.0) * args.latency_scale)
    cache: dict[tuple[float, float], np.ndarray] = {}
    rules = args.rule or ["old", "r10"]
    print(f"latency recorded from {model.source}; {args.trials} rollouts per case and rule; seed {args.seed}")
    print(f"gates: {gates}")
    with tempfile.TemporaryDirectory() as tmp:
        store = StateStore(Path(tmp))
        for volume_name in args.volume or ["demo", "10x"]:
            volume = VOLUMES[volume_name]
            print(f"\n## {volume.name}\n")
            print("| case | rule | promoted | rolled back (gate failed) | rolled back (undecided) "
                  "| most frequent reason |")
            print("|---|---|---:|---:|---:|---|")
            for case in () if args.no_table else CASES:
                for rule in rules:
                    outcomes, reasons = simulate(case, volume, rule, args.trials, args.seed, model, cache, store, gates)
                    share = {k: f"{100 * outcomes[k] / args.trials:.1f}%" for k in
                             ("promoted", "rolled back", "undecided")}
                    top = reasons.most_common(1)[0][0] if reasons else ""
                    print(f"| {case.name} | {rule} | {share['promoted']} | {share['rolled back']} | "
                          f"{share['undecided']} | {top} |", flush=True)
            if args.no_sweep:
                continue
            print(f"\nshare of {args.sweep_trials} rollouts rolled back, by effect ({volume.name}); "
                  "* marks the smallest effect rolled back in >= 95%:")
            for rule in [r for r in rules if r != "old"]:
                for sweep, cases in SWEEPS.items():
                    if args.sweep and sweep not in args.sweep:
                        continue
                    shares, marked = [], False
                    for case in cases:
                        outcomes, _ = simulate(case, volume, rule, args.sweep_trials, args.seed, model, cache, store,
                                               gates)
                        rate = (outcomes["rolled back"] + outcomes["undecided"]) / args.sweep_trials
                        star = "*" if rate >= 0.95 and not marked else ""
                        marked = marked or rate >= 0.95
                        shares.append(f"{case.name} {100 * rate:.0f}%{star}")
                    print(f"  {rule}, {sweep}: {', '.join(shares)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
