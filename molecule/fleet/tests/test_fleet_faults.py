"""The fleet under faults (issue 15), after test_fleet.py's rollouts (pytest runs the files in name order).

In this order, each on the fleet that the one before left:
- a deploy (v8) while another owner holds the lock of one host is refused and gives back what it took; the
  other owner's lock stays for the next test;
- a rollout interrupted by killing its controller resumes from a second checkout (v8): the first controller breaks
  the other owner's lock with rollout_break_lock and goes on, the second breaks the killed one's lock, resumes its
  rollout, promotes v8 and gives the lock back (one deploy, not one per lock case: each costs 1.5 min here);
- rollback_model.yml with the monitoring host stopped returns to the previous version (v1), and
  `monitoring.yml --tags file_sd` catches Prometheus's targets up afterwards;
The lost serving host is test_fleet_lost_host.py, the scenario's last test (it stops a host).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from test_fleet import (  # noqa: F401 (load and workdir are fixtures: this module gets its own instances)
    INVENTORY,
    MODEL,
    PROJECT,
    ROLLOUT,
    SERVING_HOSTS,
    _load_variants,
    load,
    playbook,
    release,
    report_steps,
    workdir,
)

RELEASES = "/var/lib/modelfleet/releases"


def said_by(result: subprocess.CompletedProcess[str]) -> str:
    """All that ansible-playbook printed: ansible-core writes failures and warnings to stderr, the rest to stdout."""
    return result.stdout + "\n" + result.stderr


# Another controller's lock of the model, as fleet_lock writes it.
FOREIGN_LOCK = {"format": 1, "owner": "ci@runner-7", "controller": "runner-7", "pid": 4242,
                "purpose": "deploy credit-risk v9", "acquired_at": time.time() - 90}


def host_file(host: str, name: str) -> dict[str, Any] | None:
    done = subprocess.run(["docker", "exec", host, "cat", f"{RELEASES}/{name}"], capture_output=True, text=True,
                          check=False)
    data: dict[str, Any] | None = json.loads(done.stdout) if done.returncode == 0 else None
    return data


def test_a_second_deploy_is_refused_while_another_owner_holds_the_lock(load: Any, workdir: Path) -> None:  # noqa: F811
    # Another controller's lock, as fleet_lock writes it, on one host only: the run must give back what it took.
    subprocess.run(["docker", "exec", "-i", SERVING_HOSTS[1], "sh", "-c", f"cat > {RELEASES}/{MODEL}.lock"],
                   input=json.dumps(FOREIGN_LOCK), text=True, check=True)
    spec = _load_variants().make_variant("good", "8", workdir / "v8-good")
    refused = playbook("deploy_model.yml", workdir, "-e", f"model_spec={spec}", check=False)
    assert refused.returncode != 0
    said = said_by(refused)
    assert "locked by ci@runner-7 on runner-7 (pid 4242)" in said and "s ago" in said, said[-4000:]
    assert host_file(SERVING_HOSTS[0], f"{MODEL}.lock") is None, "the lock taken on the other host is given back"
    assert host_file(SERVING_HOSTS[1], f"{MODEL}.lock") == FOREIGN_LOCK, "the other owner's lock is left alone"
    assert all(release(host)["canary"] is None for host in SERVING_HOSTS), "nothing was installed"
    # The next test's first controller breaks this lock (rollout_break_lock) and goes on.


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc), children first found first."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def kill_controller(pid: int) -> None:
    """Kill ansible-playbook as a lost controller dies: with every worker. Ansible's workers call setsid, so the
    playbook's process group does not hold them; stopped first, the playbook forks no new one meanwhile."""
    os.kill(pid, signal.SIGSTOP)
    for worker in descendants(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker, signal.SIGKILL)
    os.killpg(pid, signal.SIGKILL)


def test_an_interrupted_rollout_resumes_from_another_checkout(load: Any, workdir: Path) -> None:  # noqa: F811
    spec = workdir / "v8-good" / "model.yml"  # the refused deploy's version (the test before)
    assert host_file(SERVING_HOSTS[1], f"{MODEL}.lock") == FOREIGN_LOCK, "the test before left the other owner's lock"
    overrides = workdir / "overrides.json"
    overrides.write_text(json.dumps({"rollout_overrides": ROLLOUT, "rollout_state_dir": str(workdir / "rollouts")}))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(PROJECT / ".cache" / "collections"), ANSIBLE_NOCOLOR="1")
    first_log = workdir / "first-checkout.log"
    with first_log.open("w") as log:
        first = subprocess.Popen(["ansible-playbook", "-i", str(INVENTORY),
                                  str(PROJECT / "playbooks" / "deploy_model.yml"), "-e", f"@{overrides}",
                                  "-e", f"model_spec={spec}", "-e", "rollout_break_lock=true",
                                  "-e", "rollout_lock_owner=ops@first-checkout"],
                                 env=env, cwd=PROJECT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    # Wait until the hosts keep a state with at least one analysis of canary 8, then kill the controller hard.
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        kept = host_file(SERVING_HOSTS[0], f"{MODEL}.rollout.json")
        if kept and kept["canary"] == "8" and kept["phase"] == "progressing" and kept["history"]:
            break
        time.sleep(0.5)
    else:
        kill_controller(first.pid)
        pytest.fail("the first step of canary 8 was not analysed")
    kill_controller(first.pid)
    first.wait(30)
    assert "broke the lock of ci@runner-7" in first_log.read_text(), first_log.read_text()[-4000:]
    analysed = len(kept["history"])
    # A second checkout: its own, empty state directory, another owner; the killed one's lock is left behind
    # (a deploy without rollout_break_lock is refused by it: test_a_second_deploy_is_refused_...).
    second = workdir / "second-checkout-rollouts"
    resumed = playbook("deploy_model.yml", workdir, "-e", f"model_spec={spec}", "-e", f"rollout_state_dir={second}",
                       "-e", "rollout_lock_owner=ops@second-checkout", "-e", "rollout_break_lock=true")
    assert "broke the lock of ops@first-checkout" in said_by(resumed), said_by(resumed)[-4000:]
    state = json.loads((second / f"{MODEL}.json").read_text())
    report_steps(state)
    assert state["phase"] == "promoted" and state["canary"] == "8", state["last_reason"]
    assert len(state["history"]) > analysed and state["history"][:analysed] == kept["history"], \
        "the second checkout resumed the first one's rollout, not a new one"
    for host in SERVING_HOSTS:
        assert release(host)["stable"]["version"] == "8"
        assert host_file(host, f"{MODEL}.rollout.json") == state
        assert host_file(host, f"{MODEL}.lock") is None, f"the lock is given back on {host}"


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


def test_rollback_model_with_the_monitoring_host_stopped(load: Any, workdir: Path) -> None:  # noqa: F811
    before = release(SERVING_HOSTS[0])
    current, previous = before["stable"]["version"], before["previous"]["version"]
    docker("stop", MONITORING_HOST)
    try:
        done = playbook("rollback_model.yml", workdir, "-e", f"model={MODEL}")  # exits 0
        assert f"monitoring host(s) {MONITORING_HOST} could not be reached" in said_by(done), said_by(done)[-4000:]
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
