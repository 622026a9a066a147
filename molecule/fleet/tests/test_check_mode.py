"""Check mode of the fleet playbooks; runs first in the verify step (file order), before test_fleet.py's rollouts.

- After converge (credit-risk v1 stable on both serving hosts), deploy_model.yml --check of v1 and
  monitoring.yml --check change nothing (changed=0 on every host); the deploy skips the host stack's roles
  (nothing they depend on changed).
- A changed setting of a host-stack role makes every host run the stack (--check --diff shows the change and
  changes nothing), and of all the stack's tasks only the one that the setting is about and the stack's record
  would change: the rest of the stack, re-asserted, changes nothing (what a run with
  -e deploy_model_host_stack=always would show, without a second run of the whole stack: 1 min here). A stopped
  service of the stack makes that host alone run it, which starts the service.
- deploy_model.yml --check --diff of a NEW version (v9, never built) succeeds: the conversion says it would
  build, the serving hosts say they would copy it, write its environment, start it and record it as the
  canary, the rollout plan (steps, gates, hosts) is shown; and nothing changed: no artifact on the
  controller, the same units running, files, release records and router weights on every host, no rollout
  state; no false "did not arrive intact" message.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from test_fleet import MODEL, PROJECT, SERVING_HOSTS, _load_variants, playbook, workdir  # noqa: F401

# Needs the converged fleet, not live traffic: `make test` runs these beside pytest (conftest.py).
pytestmark = pytest.mark.untimed

ROUTER_SOCKET = "/run/haproxy/admin.sock"
_WEIGHTS = f"""
import socket
s = socket.socket(socket.AF_UNIX); s.connect({ROUTER_SOCKET!r})
s.sendall(b"show servers state {MODEL}\\n"); print(s.makefile().read())
"""


def _sh(host: str, command: str) -> str:
    return subprocess.run(["docker", "exec", host, "sh", "-c", command], capture_output=True, text=True,
                          check=True).stdout


def host_state(host: str) -> dict[str, Any]:
    """What a deploy changes on a serving host: units, files, release record, router weights."""
    weights = subprocess.run(["docker", "exec", "-i", host, "python3", "-"], input=_WEIGHTS, capture_output=True,
                             text=True, check=True).stdout
    return {
        "units": _sh(host, "systemctl list-units 'modelfleet-serve@*' --state=active --no-legend --plain"),
        "env_files": _sh(host, "ls -l --time-style=+%s /etc/modelfleet/serve"),
        "versions": _sh(host, f"ls /var/lib/modelfleet/models/{MODEL}"),
        "release": _sh(host, f"cat /var/lib/modelfleet/releases/{MODEL}.json"),
        # Server name, address, admin state and weight of every slot (not the health-check counters).
        "weights": sorted(" ".join(line.split()[3:5] + line.split()[6:8]) for line in weights.splitlines()
                          if line.startswith(tuple("0123456789"))),
    }


def recap(output: str) -> dict[str, int]:
    """changed=N of every host in the PLAY RECAP."""
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", output, re.M)}


def changed_tasks(output: str) -> dict[str, set[str]]:
    """Task name -> hosts that reported changed, from the default callback's output."""
    tasks: dict[str, set[str]] = {}
    current = ""
    for line in output.splitlines():
        header = re.match(r"^TASK \[(?:[^:\]]+ : )?(.*)\] \*+$", line)
        if header:
            current = header.group(1)
        changed = re.match(r"^changed: \[([^\]]+)\]", line)
        if changed and current:
            tasks.setdefault(current, set()).add(changed.group(1).split(" -> ")[0])
    return tasks


def host_stack_reports(output: str) -> dict[str, str]:
    """Serving host -> what deploy_model.yml said of its host stack ("Report the host stack")."""
    return dict(re.findall(r'^ok: \[(mft-serving-\d)\] => \{\n\s+"msg": "host stack ([^"]*)"', output, re.M))


def test_check_mode_after_converge_changes_nothing(workdir: Path) -> None:  # noqa: F811
    spec = PROJECT / "examples" / MODEL / "model.yml"
    deployed = playbook("deploy_model.yml", workdir, "-e", f"model_spec={spec}", "--check")
    assert set(recap(deployed.stdout).values()) == {0}, recap(deployed.stdout)
    # The converge set the host stack up and recorded it: with nothing changed its roles are skipped ...
    assert host_stack_reports(deployed.stdout) == dict.fromkeys(
        SERVING_HOSTS, "unchanged since it was last set up: its roles are skipped"), deployed.stdout[-6000:]
    monitored = playbook("monitoring.yml", workdir, "--check")
    assert set(recap(monitored.stdout).values()) == {0}, recap(monitored.stdout)


def test_the_host_stack_is_set_up_again_where_a_setting_changed_or_a_service_stopped(workdir: Path) -> None:  # noqa: F811
    spec = PROJECT / "examples" / MODEL / "model.yml"
    record = {host: _sh(host, "cat /etc/modelfleet/host-stack") for host in SERVING_HOSTS}
    # A changed setting of a host-stack role (here given on the command line) makes every host run the stack.
    changed = playbook("deploy_model.yml", workdir, "-e", f"model_spec={spec}", "-e",
                       '{"node_exporter_disabled_collectors": ["arp"]}', "--check", "--diff")
    assert host_stack_reports(changed.stdout) == dict.fromkeys(
        SERVING_HOSTS, "set up (its roles, wheelhouse or settings changed)"), changed.stdout[-6000:]
    # The node exporter's unit and the stack's record would change; every other task of the stack, run in check
    # mode on every host, changes nothing.
    every = set(SERVING_HOSTS)
    assert changed_tasks(changed.stdout) == {"Harden the package's unit": every,
                                             "Record the host stack's fingerprint and services": every}, \
        changed_tasks(changed.stdout)
    assert recap(changed.stdout) == {"localhost": 0, **dict.fromkeys(SERVING_HOSTS, 2)}, recap(changed.stdout)
    assert "Start the node exporter" in changed.stdout  # the whole stack ran (its tasks' names are printed)
    assert "--no-collector.arp" in changed.stdout  # the diff of the unit
    assert {host: _sh(host, "cat /etc/modelfleet/host-stack") for host in SERVING_HOSTS} == record

    # A stopped service of the stack (the node exporter on one host): that host runs the stack and starts it.
    _sh(SERVING_HOSTS[0], "systemctl stop prometheus-node-exporter.service")
    healed = playbook("deploy_model.yml", workdir, "-e", f"model_spec={spec}")
    assert host_stack_reports(healed.stdout) == {SERVING_HOSTS[0]: "set up (a service is not running)",
                                                 SERVING_HOSTS[1]: "unchanged since it was last set up: its roles "
                                                                   "are skipped"}
    assert changed_tasks(healed.stdout).get("Start the node exporter") == {SERVING_HOSTS[0]}
    assert _sh(SERVING_HOSTS[0], "systemctl is-active prometheus-node-exporter.service").strip() == "active"
    assert recap(healed.stdout)[SERVING_HOSTS[1]] == 0


def test_check_mode_of_a_new_version_shows_the_plan_and_changes_nothing(workdir: Path) -> None:  # noqa: F811
    before = {host: host_state(host) for host in SERVING_HOSTS}
    state_file = workdir / "rollouts" / f"{MODEL}.json"
    state_before = state_file.read_text() if state_file.exists() else None
    spec = _load_variants().make_variant("good", "9", workdir / "v9-check")
    artifact = PROJECT / ".cache" / "artifacts" / MODEL / "9"

    result = playbook("deploy_model.yml", workdir, "-e", f"model_spec={spec}", "--check", "--diff")
    output = result.stdout + "\n" + result.stderr  # ansible-core writes failures and warnings to stderr
    assert "did not arrive intact" not in output and "could not be copied" not in output
    tasks = changed_tasks(output)
    every = set(SERVING_HOSTS)
    assert "localhost" in tasks["Convert, validate and stamp the model"]
    assert f"would build: {MODEL} v9 in" in output
    assert tasks["Report the artifact that would be copied (check mode): version 9"] == every
    assert tasks["Write the environment of version 9"] == every
    assert any(name.startswith("Start the version in slot") and hosts == every for name, hosts in tasks.items())
    assert tasks[f"Write the release record of {MODEL}"] == every
    plan = re.search(rf"would roll {MODEL} v9 out beside v\d+ on (.*): canary weights (.*)%", output)
    assert plan is not None, output[-6000:]
    assert set(plan.group(1).split(", ")) == every
    assert "gates " in output and "error_rate" in output

    assert not artifact.exists(), "check mode built the artifact"
    assert {host: host_state(host) for host in SERVING_HOSTS} == before, "check mode changed a serving host"
    assert (state_file.read_text() if state_file.exists() else None) == state_before
    for host in SERVING_HOSTS:
        assert json.loads(before[host]["release"]).get("canary") in (None, {})
