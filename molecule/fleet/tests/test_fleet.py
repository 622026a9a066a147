"""The fleet end to end, under continuous client load through both routers.

Converge deployed credit-risk v1 on both serving hosts (and the monitoring host). These tests then roll
out canaries with the real deploy_model.yml: a good one is promoted; an erroring, a slow and a drifting
one, and one whose process is killed mid-rollout, are each rolled back by the gate made for them;
rollback_model.yml returns to the previous version. Every client request is counted; the goal is zero
failures. The tests run in file order (each builds on the fleet the previous one left).

gRPC (issue 13, fleet_grpc.py): during the good canary's rollout, gRPC clients of both routers see no failed
call, both versions answer them, only v2 after the promotion, and each router splits their calls by the step's
weight. Then, under both loads, an operator changes v2's batching settings in its spec and runs deploy_model.yml
again (issue 15): the model_server role's handler restarts the running v2 on every host (the lone stable there,
so a surge stand-in of v2 serves meanwhile, over HTTP and gRPC); the new process runs with the new settings, the
release records and weights are as before, and no client call fails. (That a second run then restarts nothing
is the role's own test, tests/integration/test_ansible_model_server_restart.py.)
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from fleet_grpc import CounterSampler, Reading, assert_split_by_weight, calls_at_step, grpc_clients, metrics_urls
from harness import load_example

PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
SCENARIO = Path(__file__).resolve().parents[1]
INVENTORY = SCENARIO / "inventory" / "hosts.yml"
ROUTERS = ["http://172.30.0.21:8000", "http://172.30.0.22:8000"]
SERVING_HOSTS = ["mft-serving-1", "mft-serving-2"]
MODEL = "credit-risk"
GRPC_BACKEND = f"{MODEL}_grpc"
# Seconds-long steps so that a whole rollout takes about a minute; gates as an operator would set them.
# The gates judge with confidence: a p99 needs a few hundred requests per version and step, hence the load.
STEPS = [25, 100]
ROLLOUT = {
    "steps": STEPS,
    "interval": "12s",
    "min_requests": 100,
    "failure_limit": 1,
    "inconclusive_limit": 4,
    "gates": {"error_rate": 0.01, "p99_latency_ms": 250, "latency_vs_stable": 2.0, "drift_psi": 0.2},
}


def _load(name: str) -> ModuleType:
    """A script of examples/credit-risk (variants.py, traffic.py) as a module."""
    return load_example(PROJECT / "examples" / "credit-risk" / f"{name}.py")


def _load_variants() -> ModuleType:
    return _load("variants")


def traffic(**options: Any) -> Any:
    """The examples' client load (examples/credit-risk/traffic.py) against both routers."""
    return _load("traffic").Traffic(ROUTERS, **options)


@pytest.fixture(scope="module")
def load() -> Iterator[Any]:
    generator = traffic(clients=4, rate_per_client=30.0)
    generator.start()
    time.sleep(3)
    yield generator
    generator.stop()
    outcomes, versions = generator.snapshot()
    print(f"\nclient requests: {dict(outcomes)}; answered by version: {dict(versions)}")
    for line in generator.failures[:50]:
        print("  failed:", line)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fleet")


def playbook(name: str, workdir: Path, *extra: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run one of the collection's playbooks against the scenario's fleet; its output goes to a log file."""
    overrides = workdir / "overrides.json"
    overrides.write_text(json.dumps({"rollout_overrides": ROLLOUT, "rollout_state_dir": str(workdir / "rollouts")}))
    command = ["ansible-playbook", "-i", str(INVENTORY), str(PROJECT / "playbooks" / name), "-e", f"@{overrides}",
               *extra]
    # profile_tasks: each task's time in the log (where a deploy's minutes go; CI has a 50-minute budget).
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(PROJECT / ".cache" / "collections"),
               ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1", ANSIBLE_CALLBACKS_ENABLED="ansible.posix.profile_tasks")
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=PROJECT, timeout=1200)
    log = workdir / f"{name}-{time.strftime('%H%M%S')}.log"
    log.write_text(result.stdout + result.stderr)
    print(f"\n{name} {' '.join(extra)}: rc={result.returncode} in {time.monotonic() - started:.0f} s (log {log})")
    print("\n".join(line for line in result.stdout.splitlines() if "PLAY RECAP" in line or line.startswith("mft-")))
    if check:
        assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    return result


def deploy(kind: str, version: int, workdir: Path, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    spec = _load_variants().make_variant(kind, str(version), workdir / f"v{version}-{kind}")
    return playbook("deploy_model.yml", workdir, "-e", f"model_spec={spec}", check=check)


def rollout_state(workdir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((workdir / "rollouts" / f"{MODEL}.json").read_text())
    return data


def release(host: str) -> dict[str, Any]:
    text = subprocess.run(["docker", "exec", host, "cat", f"/var/lib/modelfleet/releases/{MODEL}.json"],
                          capture_output=True, text=True, check=True).stdout
    data: dict[str, Any] = json.loads(text)
    return data


def failed_gates(state: dict[str, Any]) -> set[str]:
    return {gate["name"] for entry in state["history"] for gate in entry["gates"] if gate["verdict"] == "fail"}


def report_steps(state: dict[str, Any]) -> None:
    for entry in state["history"]:
        took = entry["time"] - entry["window_start"]
        print(f"step {entry['step']} at {entry['weight']}%: {entry['decision']} after {took:.0f} s: {entry['reason']}")


def test_v1_serves_through_both_routers(load: Any) -> None:
    time.sleep(2)
    outcomes, versions = load.snapshot()
    answered = load.answered()
    assert outcomes["ok"] > 0 and set(versions) == {"1"}, (outcomes, versions)
    assert all(answered[router] > 0 for router in ROUTERS), answered
    for host in SERVING_HOSTS:
        assert release(host)["stable"]["version"] == "1"


def test_good_canary_is_promoted_under_load(load: Any, workdir: Path) -> None:
    with grpc_clients(_load("traffic"), ROUTERS) as grpc:
        answered = grpc.answered()
        assert grpc.failed() == 0 and all(answered[router] > 0 for router in grpc.routers), \
            (grpc.snapshot(), grpc.failures[:10])
        assert set(grpc.snapshot()[1]) == {"1"}, grpc.snapshot()
        sampler = CounterSampler(metrics_urls(ROUTERS), GRPC_BACKEND)
        sampler.start()
        try:
            deploy("good", 2, workdir)
        finally:
            sampler.stop()
        # One window after the promotion for both protocols: only v2 answers.
        before, before_http = grpc.snapshot()[1], load.snapshot()[1]
        time.sleep(3)
        after, after_http = grpc.snapshot()[1], load.snapshot()[1]
    state = rollout_state(workdir)
    report_steps(state)
    assert state["phase"] == "promoted", state["last_reason"]
    assert [entry["decision"] for entry in state["history"]][-1] == "promote"
    for host in SERVING_HOSTS:
        record = release(host)
        assert record["stable"]["version"] == "2" and record["previous"]["version"] == "1" and not record["canary"]
    assert after_http["2"] > before_http["2"], "v2 answers after the promotion"
    assert grpc.failed() == 0, grpc.failures[:20]
    assert before["1"] > 0 and before["2"] > 0, before
    assert after["2"] > before["2"] and after["1"] == before["1"], "only v2 answers gRPC calls after the promotion"
    assert_split_by_weight(sampler, STEPS[0])


def docker_exec(host: str, *command: str) -> str:
    return subprocess.run(["docker", "exec", host, *command], capture_output=True, text=True, check=True,
                          timeout=60).stdout.strip()


def main_pid(host: str, instance: str) -> int:
    return int(docker_exec(host, "systemctl", "show", f"modelfleet-serve@{instance}.service", "-p", "MainPID",
                           "--value"))


def slot_states(host: str) -> str:
    """The model's HTTP and gRPC backends' server weights and admin states (`show servers state`)."""
    rows = []
    for backend in (MODEL, GRPC_BACKEND):
        text = docker_exec(host, "sh", "-c",
                           f"echo 'show servers state {backend}' | socat stdio /run/haproxy/admin.sock")
        rows += [" ".join(line.split()[i] for i in (1, 3, 6, 7)) for line in text.splitlines()[2:] if line.strip()]
    return "\n".join(rows)


def test_a_changed_batching_setting_restarts_the_running_version(load: Any, workdir: Path) -> None:
    spec = workdir / "v2-good" / "model.yml"
    text = spec.read_text()
    assert "batching: {max_batch: 64, max_queue_delay_us: 2000}" in text, text
    spec.write_text(text.replace("batching: {max_batch: 64, max_queue_delay_us: 2000}",
                                 "batching: {max_batch: 16, max_queue_delay_us: 500}"))
    instance = f"{MODEL}-2"
    pids = {host: main_pid(host, instance) for host in SERVING_HOSTS}
    records = {host: release(host) for host in SERVING_HOSTS}
    slots = {host: slot_states(host) for host in SERVING_HOSTS}
    failed_before = load.failed()
    answered_before = sum(load.snapshot()[0].values())
    with grpc_clients(_load("traffic"), ROUTERS) as grpc:
        calls_before = sum(grpc.snapshot()[0].values())
        done = playbook("deploy_model.yml", workdir, "-e", f"model_spec={spec}")
        calls = sum(grpc.snapshot()[0].values()) - calls_before
    assert "Restart the changed versions of the model" in done.stdout, done.stdout[-4000:]
    for host in SERVING_HOSTS:
        pid = main_pid(host, instance)
        assert pid not in (0, pids[host]), f"{instance} was not restarted on {host}"
        command = docker_exec(host, "cat", f"/proc/{pid}/cmdline").replace("\0", " ")
        assert "--max-batch 16" in command and "--max-queue-delay-us 500" in command, command
        assert release(host) == records[host]
        assert slot_states(host) == slots[host]
        assert "surge" not in docker_exec(host, "sh", "-c", "ls /etc/modelfleet/serve"), "the stand-in is retired"
    answered = sum(load.snapshot()[0].values()) - answered_before
    print(f"during the restart run: {answered} HTTP requests, {calls} gRPC calls; results "
          f"{json.dumps([line for line in done.stdout.splitlines() if 'method' in line][:4])}")
    assert (load.failed(), grpc.failed()) == (failed_before, 0) == (0, 0), (load.failures[:10], grpc.failures[:10])
    assert answered > 0 and calls > 0


def test_calls_at_step_counts_only_between_reads_at_the_steps_weights() -> None:
    """fleet_grpc's counting rule on made-up reads (a check of the scenario's own arithmetic)."""
    def reading(blue: int, green: int, calls_blue: int, calls_green: int) -> Reading:
        return Reading("\n".join([
            f'haproxy_server_weight{{proxy="{GRPC_BACKEND}",server="blue"}} {blue}',
            f'haproxy_server_weight{{proxy="{GRPC_BACKEND}",server="green"}} {green}',
            f'haproxy_server_sessions_total{{proxy="{GRPC_BACKEND}",server="blue"}} {calls_blue}',
            f'haproxy_server_sessions_total{{proxy="{GRPC_BACKEND}",server="green"}} {calls_green}',
            f'haproxy_server_weight{{proxy="{MODEL}",server="blue"}} 1']), GRPC_BACKEND)
    readings = [reading(100, 0, 50, 0), reading(75, 25, 60, 0), reading(75, 25, 90, 10), reading(75, 25, 120, 20),
                reading(0, 100, 120, 90)]
    assert calls_at_step(readings, 25) == (20, 80)
    assert calls_at_step(readings[:2], 25) == (0, 0)


@pytest.mark.parametrize(
    ("kind", "version", "gates"),
    [
        ("erroring", 3, {"error_rate"}),
        ("slow", 4, {"latency_vs_stable", "p99_latency_ms"}),
        ("drift", 5, {"drift_psi"}),
    ],
)
def test_bad_canary_is_rolled_back_by_its_gate(load: Any, workdir: Path, kind: str, version: int,
                                               gates: set[str]) -> None:
    result = deploy(kind, version, workdir, check=False)
    state = rollout_state(workdir)
    report_steps(state)
    assert result.returncode != 0, "a rolled-back deployment fails the play"
    assert "was rolled back" in result.stdout
    assert state["phase"] == "rolled_back", state["last_reason"]
    assert failed_gates(state) & gates, (failed_gates(state), state["last_reason"])
    for host in SERVING_HOSTS:
        record = release(host)
        assert record["stable"]["version"] == "2" and not record["canary"]


def test_killed_canary_is_rolled_back(load: Any, workdir: Path) -> None:
    spec = _load_variants().make_variant("good", "6", workdir / "v6-good")
    overrides = workdir / "overrides.json"
    runner = threading.Thread(target=lambda: playbook("deploy_model.yml", workdir, "-e", f"model_spec={spec}",
                                                      check=False), daemon=True)
    runner.start()
    # Wait until the canary takes traffic (the first step's weight is set), then kill it hard.
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        state_file = workdir / "rollouts" / f"{MODEL}.json"
        if state_file.exists() and overrides.exists():
            state = json.loads(state_file.read_text())
            if state.get("canary") == "6" and state.get("phase") == "progressing" and state.get("window_start"):
                break
        time.sleep(0.5)
    else:
        pytest.fail("the canary's first step did not start")
    time.sleep(2)
    subprocess.run(["docker", "exec", SERVING_HOSTS[0], "systemctl", "kill", "--signal=SIGKILL",
                    f"modelfleet-serve@{MODEL}-6.service"], check=True)
    runner.join(timeout=600)
    state = rollout_state(workdir)
    report_steps(state)
    assert state["phase"] == "rolled_back", state["last_reason"]
    assert failed_gates(state) & {"canary_up", "canary_restarts"}, state["last_reason"]
    for host in SERVING_HOSTS:
        assert release(host)["stable"]["version"] == "2" and not release(host)["canary"]


def test_rollback_model_returns_to_the_previous_version(load: Any, workdir: Path) -> None:
    playbook("rollback_model.yml", workdir, "-e", f"model={MODEL}")
    for host in SERVING_HOSTS:
        record = release(host)
        assert record["stable"]["version"] == "1" and not record["previous"], record
    time.sleep(3)
    before = load.snapshot()[1]["1"]
    time.sleep(3)
    assert load.snapshot()[1]["1"] > before, "v1 answers again"
    second = playbook("rollback_model.yml", workdir, "-e", f"model={MODEL}")
    recap = re.findall(r"^mft-\S+\s+: .*changed=(\d+)", second.stdout, re.MULTILINE)
    assert recap and set(recap) == {"0"}, "a second rollback changes nothing"


def test_no_client_request_failed(load: Any) -> None:
    outcomes, versions = load.snapshot()
    print(f"\nclient requests so far: {dict(outcomes)}; by version: {dict(versions)}")
    assert load.failed() == 0, load.failures[:20]


def prometheus_alerts(name: str) -> list[dict[str, Any]]:
    response = httpx.get("http://172.30.0.20:9090/api/v1/alerts", timeout=5.0)
    alerts: list[dict[str, Any]] = response.json()["data"]["alerts"]
    return [alert for alert in alerts if alert["labels"].get("alertname") == name]


def retrain_requests() -> list[dict[str, Any]]:
    result = subprocess.run(["docker", "exec", "mft-monitor", "cat", "/var/lib/modelfleet-retrain-hook/requests.jsonl"],
                            capture_output=True, text=True, check=False)
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def test_drifted_traffic_reaches_the_retraining_hook(load: Any) -> None:
    """Drifted inputs -> drift exporter -> Prometheus alert -> Alertmanager -> retraining hook's command."""
    before = len(retrain_requests())
    drifted = traffic(clients=4, rate_per_client=20.0, shift=1.0)
    started = time.monotonic()
    drifted.start()
    pending_after = fired_after = None
    try:
        deadline = started + 300
        while time.monotonic() < deadline:
            if pending_after is None and any(alert["labels"].get("version") == "1"
                                             for alert in prometheus_alerts("ModelFeatureDrift")):
                pending_after = time.monotonic() - started
            requests = retrain_requests()[before:]
            if any(request.get("model") == MODEL for request in requests):
                fired_after = time.monotonic() - started
                break
            time.sleep(1)
    finally:
        drifted.stop()
    print(f"\ndrifted traffic -> ModelFeatureDrift pending after {pending_after} s; retraining hook ran after "
          f"{fired_after} s (test copy of the rule with for: 20s; the shipped rule waits for: 10m)")
    assert fired_after is not None, "the retraining hook never ran"
    request = next(r for r in retrain_requests()[before:] if r.get("model") == MODEL)
    assert request["version"] == "1"
    assert {"income", "utilization"} & set(request["features"]), request
    assert drifted.failed() == 0
