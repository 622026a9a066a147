"""PENDING (not collected: the fleet scenario takes ~40 minutes; the integrator decides whether it grows).

Fleet tests for the faults of issue 15 handled on branch onehome: a serving host lost mid-rollout (the policy,
then the reconciliation on the next run) and the monitoring host down during rollback_model.yml. Meant to be
pasted into molecule/fleet/tests/test_fleet.py AFTER test_no_client_request_failed (the first one stops a
serving host, so the module-scoped load, which drives both routers, would count the stopped router's refused
connections; it measures the other router's clients with its own load instead), after the pending lock tests
(test_fleet_lock.py, versions 7 and 8). Uses version 9. Written against the code of branch onehome; never run.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from test_fleet import (
    MODEL,
    ROUTERS,
    SERVING_HOSTS,
    _load,
    _load_variants,
    playbook,
    release,
    report_steps,
    rollout_state,
)

MONITORING_HOST = "mft-monitor"
FILE_SD = "/etc/prometheus/file_sd"


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=300)


def active(host: str, version: str) -> bool:
    done = docker("exec", host, "systemctl", "is-active", f"modelfleet-serve@{MODEL}-{version}.service", check=False)
    return done.stdout.strip() == "active"


def router_weights(host: str) -> dict[str, int]:
    """The model's server weights on the host's HAProxy (`show servers state`)."""
    text = docker("exec", host, "sh", "-c",
                  f"echo 'show servers state {MODEL}' | socat stdio /run/haproxy/admin.sock").stdout
    rows = [line.split() for line in text.splitlines()[2:] if line.strip()]
    return {row[3]: int(row[7]) for row in rows}


def wait_until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(1)
    pytest.fail(f"timed out waiting for {what}")


def test_a_serving_host_lost_mid_rollout(workdir: Path) -> None:
    lost, kept = SERVING_HOSTS[1], SERVING_HOSTS[0]
    stable = release(kept)["stable"]["version"]
    spec = _load_variants().make_variant("good", "9", workdir / "v9-good")
    # The clients of the router that stays up: none of their requests may fail.
    clients = _load("traffic").Traffic([ROUTERS[0]], clients=2, rate_per_client=20.0)
    clients.start()
    outcome: dict[str, Any] = {}
    runner = threading.Thread(target=lambda: outcome.update(
        run=playbook("deploy_model.yml", workdir, "-e", f"model_spec={spec}", check=False)), daemon=True)
    runner.start()
    try:
        # Once the first step's weights are set (25% to canary 9), the host goes away.
        state_file = workdir / "rollouts" / f"{MODEL}.json"
        wait_until(lambda: state_file.exists() and json.loads(state_file.read_text()).get("canary") == "9"
                   and json.loads(state_file.read_text()).get("window_start"), 300, "the first step of canary 9")
        docker("stop", lost)
        runner.join(timeout=600)
        run = outcome["run"]
        # The policy: paused, rolled back on the reachable host, the run fails as a rollback does, naming the host.
        assert run.returncode in (2, 4), run.stdout[-4000:]
        assert f"Lost mid-rollout, left as they were until the next deploy_model.yml or rollback_model.yml " \
               f"reconciles them: {lost}" in run.stdout
        state = rollout_state(workdir)
        report_steps(state)
        assert state["phase"] == "rolled_back" and f"serving host {lost} lost mid-rollout" in state["last_reason"]
        assert release(kept)["stable"]["version"] == stable and release(kept)["canary"] is None
        assert not active(kept, "9")
        assert clients.failed() == 0, clients.failures[:20]
    finally:
        clients.stop()
        docker("start", lost, check=False)

    # Back: it still has the step's weights, canary 9 and a record naming it (what issue 15 saw).
    wait_until(lambda: docker("exec", lost, "systemctl", "is-active", "haproxy", check=False).stdout.strip()
               == "active", 120, f"HAProxy on {lost}")
    assert release(lost)["canary"]["version"] == "9"
    # The next deploy reconciles it first, then rolls canary 9 out on both hosts (a good version: promoted).
    again = playbook("deploy_model.yml", workdir, "-e", f"model_spec={spec}")
    assert re.search(rf"{lost}: {MODEL} abort: the fleet's rollout of canary 9 ended rolled_back", again.stdout)
    for host in SERVING_HOSTS:
        record = release(host)
        assert record["stable"]["version"] == "9" and record["canary"] is None, (host, record)
        assert record["previous"]["version"] == stable
        assert not active(host, stable)
        slot = record["stable"]["slot"]
        assert router_weights(host)[slot] == 100, router_weights(host)


def test_rollback_model_with_the_monitoring_host_stopped(load: Any, workdir: Path) -> None:
    before = release(SERVING_HOSTS[0])
    current, previous = before["stable"]["version"], before["previous"]["version"]
    docker("stop", MONITORING_HOST)
    try:
        done = playbook("rollback_model.yml", workdir, "-e", f"model={MODEL}")  # exits 0
        assert f"monitoring host(s) {MONITORING_HOST} could not be reached" in done.stdout
        for host in SERVING_HOSTS:
            record = release(host)
            assert record["stable"]["version"] == previous and record["previous"] is None, record
            assert active(host, previous) and not active(host, current), "no version runs unrecorded"
        time.sleep(3)
        answered = load.snapshot()[1][previous]
        time.sleep(3)
        assert load.snapshot()[1][previous] > answered, f"v{previous} answers"
    finally:
        docker("start", MONITORING_HOST, check=False)
    wait_until(lambda: docker("exec", MONITORING_HOST, "curl", "-fsS", "http://127.0.0.1:9090/-/ready",
                              check=False).returncode == 0, 120, "Prometheus back")
    playbook("monitoring.yml", workdir, "--tags", "file_sd")
    for host in SERVING_HOSTS:
        targets = json.loads(docker("exec", MONITORING_HOST, "cat",
                                    f"{FILE_SD}/modelfleet-serve-{host}-{MODEL}.json").stdout)
        assert [t["labels"]["version"] for t in targets] == [previous], targets
    assert load.failed() == 0, load.failures[:20]
