"""``modelfleet rollout`` for Kubernetes against a REAL Prometheus holding recorded canary metrics.

The recording: series as the ServiceMonitor of ``modelfleet k8s render`` labels them (``job``,
``namespace``, ``pod``, ``host`` = the node, and the servers' own ``model`` / ``version``) for a stable v1 and
a canary v2 of credit-risk over 30 minutes: request counters, failures by reason, the latency histogram with
the server's buckets, ``up``, and the drift exporter's per-feature statistics. ``promtool tsdb
create-blocks-from openmetrics`` writes them into Prometheus' storage; the rollout engine's clock replays
that half hour (no waiting). No cluster is involved (none exists here): the files written are the Pulumi
stack file and the render settings file, which ``pulumi up`` / ``modelfleet k8s render`` then apply.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from harness import Prometheus, need

from modelfleet.k8s.rollout import WeightsFile, rollout_step
from modelfleet.rollout.prometheus import PrometheusClient
from modelfleet.rollout.state import StateStore
from modelfleet.serve.metrics import REQUEST_LATENCY_BUCKETS
from modelfleet.spec import load_spec

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "examples" / "credit-risk" / "model.yml"
STACK = REPO / "pulumi" / "k8s" / "Pulumi.dev.yaml"
FEATURES = ("age", "income", "debt_ratio", "credit_lines", "late_payments", "utilization", "region", "employment")
SCRAPE = 5  # seconds between recorded samples
LENGTH = 1800  # seconds recorded


@dataclass(frozen=True)
class Version:
    model: str
    version: str
    rate: float  # requests per second
    error_ratio: float
    median_latency: float  # seconds (log-normal, sigma 0.4)
    psi: float = 0.01


def _cdf(le: float, median: float) -> float:
    return 0.5 * (1.0 + math.erf(math.log(le / median) / (0.4 * math.sqrt(2.0))))


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def _series(name: str, labels: dict[str, str], value: Callable[[float], float], start: float) -> list[str]:
    return [f"{name}{_labels(**labels)} {value(t):.6g} {start + t:.3f}" for t in range(0, LENGTH + 1, SCRAPE)]


def recording(versions: list[Version], start: float) -> str:
    """OpenMetrics text of the recorded half hour (every counter is exact: rate x elapsed time)."""
    lines: list[str] = []
    for v in versions:
        target = {"job": "modelfleet-serve", "namespace": "modelfleet", "pod": f"{v.model}-v{v.version}-0",
                  "host": "gpu-node-1", "model": v.model, "version": v.version}
        served = {**target, "job": "modelfleet-serve"}

        def requests(t: float, v: Version = v) -> float:
            return math.floor(v.rate * t)

        lines += _series("up", served, lambda t: 1.0, start)
        lines += _series("nv_inference_request_success_total", served,
                         lambda t, v=v: requests(t) - math.floor(v.rate * t * v.error_ratio), start)
        lines += _series("nv_inference_request_failure_total", {**served, "reason": "inference"},
                         lambda t, v=v: math.floor(v.rate * t * v.error_ratio), start)
        for le in (*REQUEST_LATENCY_BUCKETS, math.inf):
            bound = "+Inf" if math.isinf(le) else f"{le:g}"
            share = 1.0 if math.isinf(le) else _cdf(le, v.median_latency)
            lines += _series("modelfleet_request_duration_seconds_bucket", {**served, "le": bound},
                             lambda t, share=share: math.floor(requests(t) * share), start)
        drifted = v.psi > 0.2
        for feature in FEATURES:
            drift = {**target, "job": "modelfleet-drift", "feature": feature, "window": "5m"}
            lines += _series("modelfleet_feature_psi", drift, lambda t, v=v: v.psi, start)
            lines += _series("modelfleet_feature_drift_detected", drift, lambda t, d=drifted: float(d), start)
            lines += _series("modelfleet_feature_ks_pvalue", drift, lambda t, d=drifted: 1e-12 if d else 0.4, start)
            lines += _series("modelfleet_feature_ks_statistic", drift, lambda t, d=drifted: 0.3 if d else 0.02, start)
    return "\n".join(lines) + "\n# EOF\n"


class ReplayClock:
    """The rollout engine's clock, replaying the recorded half hour: sleeping moves time on at once."""

    def __init__(self, start: float) -> None:
        self.time = start

    def now(self) -> float:
        return self.time

    def sleep(self, seconds: float) -> None:
        self.time += max(0.0, seconds)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Prometheus, float]]:
    """A Prometheus whose storage holds the recording (two models: healthy and bad canaries)."""
    promtool = need("promtool", "prometheus")
    workdir = tmp_path_factory.mktemp("k8s-rollout-prometheus")
    start = float(int(time.time() - 3 * 3600) // 60 * 60)  # three hours ago: clear of the head block
    versions = [Version("credit-risk", "1", 200, 0.001, 0.010), Version("credit-risk", "2", 100, 0.001, 0.010),
                Version("erroring", "1", 200, 0.001, 0.010), Version("erroring", "2", 100, 0.2, 0.010),
                Version("drifting", "1", 200, 0.001, 0.010), Version("drifting", "2", 100, 0.001, 0.010, psi=0.6)]
    source = workdir / "recording.om"
    source.write_text(recording(versions, start), encoding="utf-8")
    subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(workdir / "data")],
                   check=True, capture_output=True, timeout=300)
    server = Prometheus(workdir, {"global": {"scrape_interval": "15s"}, "scrape_configs": []})
    yield server, start
    server.stop()


def _spec(tmp_path: Path, name: str) -> Path:
    data = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    data["name"] = name
    target = tmp_path / f"{name}.yml"
    target.write_text(yaml.safe_dump(data), encoding="utf-8")
    return target


def _loop(spec_path: Path, target: WeightsFile, url: str, clock: ReplayClock, state: Path) -> list[tuple[str, int]]:
    """What CI does: judge, apply (here: nothing to apply to), judge again, until done."""
    spec = load_spec(spec_path)
    decisions = []
    for _ in range(10):
        result = rollout_step(spec, target, PrometheusClient(url), StateStore(state), clock=clock, max_wait=60)
        decisions.append((result.decision, result.weight))
        if result.done:
            return decisions
        clock.sleep(20)  # `pulumi up` takes a while
    raise AssertionError(f"no end after 10 judgements: {decisions}")


def test_healthy_canary_advances_through_the_stack_file_and_is_promoted(
        prometheus: tuple[Prometheus, float], tmp_path: Path) -> None:
    server, start = prometheus
    stack = tmp_path / "Pulumi.dev.yaml"
    shutil.copy(STACK, stack)
    original = stack.read_text(encoding="utf-8")
    stack.write_text(original.replace("modelfleet-k8s:canaryWeight: 10", "modelfleet-k8s:canaryWeight: 0"),
                     encoding="utf-8")
    target = WeightsFile(stack, "stack")
    decisions = _loop(SPEC, target, server.url, ReplayClock(start + 600), tmp_path / "state")
    assert decisions == [("start", 10), ("advance", 50), ("advance", 100), ("promote", 0)]
    config = yaml.safe_load(stack.read_text(encoding="utf-8"))["config"]
    assert (config["modelfleet-k8s:stableVersion"], config["modelfleet-k8s:canaryVersion"],
            config["modelfleet-k8s:canaryWeight"]) == ("2", "", 0)
    # Only those three lines changed: comments and every other setting stay.
    before, after = original.splitlines(), stack.read_text(encoding="utf-8").splitlines()
    changed = [b for b, a in zip(before, after, strict=True) if a != b]
    assert [line.split(":")[1] for line in changed] == ["stableVersion", "canaryVersion", "canaryWeight"]


@pytest.mark.parametrize(("model", "gate"), [("erroring", "error_rate"), ("drifting", "drift_psi")])
def test_bad_canary_is_rolled_back_in_the_settings_file(
        prometheus: tuple[Prometheus, float], tmp_path: Path, model: str, gate: str) -> None:
    server, start = prometheus
    settings = tmp_path / "k8s.yml"
    settings.write_text("# render settings\nstable_version: '1'\ncanary_version: '2'\ncanary_weight: 0\n"
                        "traffic: gateway\n", encoding="utf-8")
    target = WeightsFile(settings, "settings")
    spec = load_spec(_spec(tmp_path, model))
    store = StateStore(tmp_path / "state")
    clock = ReplayClock(start + 600)
    first = rollout_step(spec, target, PrometheusClient(server.url), store, clock=clock)
    assert (first.decision, first.weight) == ("start", 10)
    clock.sleep(20)
    judged = rollout_step(spec, target, PrometheusClient(server.url), store, clock=clock, max_wait=60)
    assert (judged.decision, judged.done) == ("rollback", True)
    assert judged.outcome is not None
    failed = [g["name"] for g in judged.outcome.result()["gates"] if g["verdict"] == "fail"]
    assert gate in failed
    data = yaml.safe_load(settings.read_text(encoding="utf-8"))
    assert (data["stable_version"], data["canary_version"], data["canary_weight"]) == ("1", "", 0)
    assert settings.read_text(encoding="utf-8").startswith("# render settings\n")
