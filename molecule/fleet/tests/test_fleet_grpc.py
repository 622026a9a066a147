"""gRPC through both routers during a canary rollout (issue 13), after the fault tests (pytest runs files in order).

Clients speak the Open Inference Protocol over gRPC (tritonclient.grpc, unchanged, as teams moving from Triton
do) to both routers' gRPC port while deploy_model.yml rolls out a good v10 under the HTTP load of the other
modules. Checked:

- no gRPC call fails, through the steps, the promotion and the old version's stop;
- the gRPC traffic follows the weights on each router. The count comes from HAProxy's own per-server counters
  of `credit-risk_grpc` (the router's metrics endpoint), read every quarter second with the weights: the calls
  between the first and the last read that both show the 25 % step's weights were all balanced at those
  weights, so none from before or after the step is counted in it. Round robin at 25/75 gives the canary
  25 % of them; the bound is binomial (4.5 sigma, never a fixed tolerance);
- both versions answered gRPC clients during the rollout, and only v10 after the promotion.

Then, under both loads, an operator changes v10's batching settings in its spec and runs deploy_model.yml again
(issue 15): the model_server role's handler restarts the running v10 on every host (the lone stable there, so a
surge stand-in of v10 serves meanwhile, over HTTP and gRPC); the new process runs with the new settings, the
release records and weights are as before, and no client call fails. (That a second run then restarts nothing
is the role's own test, tests/integration/test_ansible_model_server_restart.py: a third deploy here cost 1.5 min.)
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_fleet import (  # noqa: F401 (load and workdir are fixtures: this module gets its own instances)
    MODEL,
    ROUTERS,
    SERVING_HOSTS,
    _load,
    deploy,
    load,
    playbook,
    release,
    report_steps,
    rollout_state,
    workdir,
)

GRPC_ROUTERS = [router.removeprefix("http://").replace(":8000", ":8001") for router in ROUTERS]
METRICS = [router.replace(":8000", ":8404") + "/metrics?scope=server" for router in ROUTERS]
BACKEND = f"{MODEL}_grpc"
CANARY_STEP = 25  # test_fleet.ROLLOUT's first step
_SERVER_LINE = re.compile(r'^haproxy_server_(weight|sessions_total)\{(?=[^}]*proxy="' + re.escape(BACKEND)
                          + r'")[^}]*server="(\w+)"[^}]*\} (\S+)$', re.MULTILINE)


class Reading:
    """One read of a router's gRPC backend: weight and calls balanced so far, per server."""

    def __init__(self, text: str) -> None:
        self.weights: dict[str, int] = {}
        self.calls: dict[str, int] = {}
        for field, server, value in _SERVER_LINE.findall(text):
            (self.weights if field == "weight" else self.calls)[server] = int(float(value))


class CounterSampler(threading.Thread):
    """Reads every router's metrics endpoint every ``period`` seconds until :meth:`stop`."""

    def __init__(self, urls: list[str], period: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.urls, self.period = urls, period
        self.readings: dict[str, list[Reading]] = {url: [] for url in urls}
        self.stopping = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=2.0) as client:
            while not self.stopping.is_set():
                for url in self.urls:
                    try:
                        reading = Reading(client.get(url).text)
                    except httpx.HTTPError:
                        continue
                    if reading.weights and reading.calls:
                        self.readings[url].append(reading)
                time.sleep(self.period)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=10)


def calls_at_step(readings: list[Reading], canary_weight: int) -> tuple[int, int]:
    """(canary calls, all calls) between the first and last reads of the longest run showing the step's weights."""
    step = sorted([canary_weight, 100 - canary_weight])
    runs: list[list[Reading]] = [[]]
    for reading in readings:
        if sorted(reading.weights.values()) == step:
            runs[-1].append(reading)
        elif runs[-1]:
            runs.append([])
    longest = max(runs, key=len)
    if len(longest) < 2:
        return 0, 0
    first, last = longest[0], longest[-1]
    canary = next(server for server, weight in first.weights.items() if weight == canary_weight)
    counted = {server: last.calls[server] - first.calls[server] for server in first.calls}
    return counted[canary], sum(counted.values())


def test_calls_at_step_counts_only_between_reads_at_the_steps_weights() -> None:
    """The counting rule on made-up reads (a check of this module's own arithmetic)."""
    def reading(blue: int, green: int, calls_blue: int, calls_green: int) -> Reading:
        return Reading("\n".join([
            f'haproxy_server_weight{{proxy="{BACKEND}",server="blue"}} {blue}',
            f'haproxy_server_weight{{proxy="{BACKEND}",server="green"}} {green}',
            f'haproxy_server_sessions_total{{proxy="{BACKEND}",server="blue"}} {calls_blue}',
            f'haproxy_server_sessions_total{{proxy="{BACKEND}",server="green"}} {calls_green}',
            f'haproxy_server_weight{{proxy="{MODEL}",server="blue"}} 1']))
    readings = [reading(100, 0, 50, 0), reading(75, 25, 60, 0), reading(75, 25, 90, 10), reading(75, 25, 120, 20),
                reading(0, 100, 120, 90)]
    assert calls_at_step(readings, 25) == (20, 80)
    assert calls_at_step(readings[:2], 25) == (0, 0)


@pytest.fixture(scope="module")
def grpc_load() -> Iterator[Any]:
    generator = _load("traffic").Traffic(GRPC_ROUTERS, clients=2, rate_per_client=30.0, protocol="grpc", seed=303)
    generator.start()
    time.sleep(3)
    yield generator
    generator.stop()
    outcomes, versions = generator.snapshot()
    print(f"\ngRPC calls: {dict(outcomes)}; answered by version: {dict(versions)}")
    for line in generator.failures[:50]:
        print("  failed:", line)


def test_grpc_serves_through_both_routers(grpc_load: Any) -> None:
    time.sleep(2)
    outcomes, versions = grpc_load.snapshot()
    answered = grpc_load.answered()
    assert outcomes["ok"] > 0 and grpc_load.failed() == 0, (outcomes, grpc_load.failures[:10])
    assert all(answered[router] > 0 for router in GRPC_ROUTERS), answered
    stable = release(SERVING_HOSTS[0])["stable"]["version"]
    assert set(versions) == {stable}, versions


def test_a_rollout_splits_grpc_traffic_by_the_weights(load: Any, grpc_load: Any, workdir: Path) -> None:  # noqa: F811
    stable = release(SERVING_HOSTS[0])["stable"]["version"]
    sampler = CounterSampler(METRICS)
    sampler.start()
    try:
        deploy("good", 10, workdir)
    finally:
        sampler.stop()
    state = rollout_state(workdir)
    report_steps(state)
    assert state["phase"] == "promoted" and state["canary"] == "10", state["last_reason"]
    for url, readings in sampler.readings.items():
        canary, total = calls_at_step(readings, CANARY_STEP)
        share = CANARY_STEP / 100
        bound = 4.5 * math.sqrt(total * share * (1 - share)) + 2
        print(f"{url}: canary {canary} of {total} gRPC calls at {CANARY_STEP} % (expected {total * share:.0f} "
              f"± {bound:.0f}); {len(readings)} reads")
        assert total >= 50, f"{url}: too few gRPC calls counted at the {CANARY_STEP} % step to judge ({total})"
        assert abs(canary - total * share) <= bound, (url, canary, total)
    _outcomes, versions = grpc_load.snapshot()
    assert versions[stable] > 0 and versions["10"] > 0, versions
    before = grpc_load.snapshot()[1]
    time.sleep(3)
    after = grpc_load.snapshot()[1]
    assert after["10"] > before["10"] and after[stable] == before[stable], "only v10 answers after the promotion"


def test_no_grpc_call_failed(load: Any, grpc_load: Any) -> None:  # noqa: F811
    assert grpc_load.failed() == 0, grpc_load.failures[:20]
    assert load.failed() == 0, load.failures[:20]


def docker_exec(host: str, *command: str) -> str:
    return subprocess.run(["docker", "exec", host, *command], capture_output=True, text=True, check=True,
                          timeout=60).stdout.strip()


def main_pid(host: str, instance: str) -> int:
    return int(docker_exec(host, "systemctl", "show", f"modelfleet-serve@{instance}.service", "-p", "MainPID",
                           "--value"))


def router_weights(host: str) -> str:
    """The model's HTTP and gRPC backends' server weights and admin states (`show servers state`)."""
    rows = []
    for backend in (MODEL, f"{MODEL}_grpc"):
        text = docker_exec(host, "sh", "-c",
                           f"echo 'show servers state {backend}' | socat stdio /run/haproxy/admin.sock")
        rows += [" ".join(line.split()[i] for i in (1, 3, 6, 7)) for line in text.splitlines()[2:] if line.strip()]
    return "\n".join(rows)


def test_a_changed_batching_setting_restarts_the_running_version(load: Any, grpc_load: Any,  # noqa: F811
                                                                  workdir: Path) -> None:  # noqa: F811
    spec = workdir / "v10-good" / "model.yml"
    text = spec.read_text()
    assert "batching: {max_batch: 64, max_queue_delay_us: 2000}" in text, text
    spec.write_text(text.replace("batching: {max_batch: 64, max_queue_delay_us: 2000}",
                                 "batching: {max_batch: 16, max_queue_delay_us: 500}"))
    instance = f"{MODEL}-10"
    pids = {host: main_pid(host, instance) for host in SERVING_HOSTS}
    records = {host: release(host) for host in SERVING_HOSTS}
    weights = {host: router_weights(host) for host in SERVING_HOSTS}
    failed_before = load.failed(), grpc_load.failed()
    answered_before = sum(load.snapshot()[0].values()), sum(grpc_load.snapshot()[0].values())

    done = playbook("deploy_model.yml", workdir, "-e", f"model_spec={spec}")
    assert "Restart the changed versions of the model" in done.stdout, done.stdout[-4000:]
    for host in SERVING_HOSTS:
        pid = main_pid(host, instance)
        assert pid not in (0, pids[host]), f"{instance} was not restarted on {host}"
        command = docker_exec(host, "cat", f"/proc/{pid}/cmdline").replace("\0", " ")
        assert "--max-batch 16" in command and "--max-queue-delay-us 500" in command, command
        assert release(host) == records[host]
        assert router_weights(host) == weights[host]
        assert "surge" not in docker_exec(host, "sh", "-c", "ls /etc/modelfleet/serve"), "the stand-in is retired"
    answered = sum(load.snapshot()[0].values()) - answered_before[0], \
        sum(grpc_load.snapshot()[0].values()) - answered_before[1]
    print(f"during the restart run: {answered[0]} HTTP requests, {answered[1]} gRPC calls; results "
          f"{json.dumps([line for line in done.stdout.splitlines() if 'method' in line][:4])}")
    assert (load.failed(), grpc_load.failed()) == failed_before == (0, 0), (load.failures[:10], grpc_load.failures[:10])
    assert answered[0] > 0 and answered[1] > 0
