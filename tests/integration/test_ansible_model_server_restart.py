"""modelfleet.serving.model_server_restart in a real ansible-playbook run (local connection) against a real HAProxy
from the router role's template, under client load.

No systemd here outside containers: `systemctl` and `journalctl` on the play's PATH are stand-ins for systemd
(named so), small scripts that really start, stop and restart the slot server process of
`modelfleet-serve@<instance>` from the port in its environment file, and answer `systemctl show` with the process's
state and start time as systemd does. The module itself is unchanged: it runs them as it would run systemd's.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import ansible_env, free_port, need, wait_for
from test_model_server_restart import LOADING_SLOT, MODEL, Clients
from test_router_haproxy import Router

pytestmark = pytest.mark.integration

# A stand-in for systemctl: start/stop/restart/show of modelfleet-serve@<instance>.service; state in STATE_DIR.
SYSTEMCTL = textwrap.dedent(
    """\
    #!{python}
    import os, signal, subprocess, sys, time
    STATE, CONFIG, SLOT, LOAD = {state!r}, {config!r}, {slot!r}, {load!r}

    def instance(unit):
        return unit[len("modelfleet-serve@"):-len(".service")]

    def pid(name):
        try:
            value = int(open(os.path.join(STATE, name + ".pid")).read())
            os.kill(value, 0)
            return value
        except (OSError, ValueError):
            return None

    def stop(name):
        value = pid(name)
        if value:
            os.kill(value, signal.SIGTERM)
            while pid(name):
                time.sleep(0.05)
        for suffix in (".pid", ".started"):
            if os.path.exists(os.path.join(STATE, name + suffix)):
                os.unlink(os.path.join(STATE, name + suffix))

    def start(name):
        if pid(name):
            return
        env = dict(line.strip().split("=", 1) for line in open(os.path.join(CONFIG, "serve", name + ".env"))
                   if "=" in line and not line.startswith("#"))
        log = open(os.path.join(STATE, name + ".log"), "ab")
        process = subprocess.Popen([sys.executable, SLOT, name + "@" + env["MODELFLEET_SLOT"], env["MODELFLEET_PORT"],
                                    "0.01", str(LOAD)], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                   start_new_session=True)
        open(os.path.join(STATE, name + ".pid"), "w").write(str(process.pid))
        open(os.path.join(STATE, name + ".started"), "w").write(str(int(time.monotonic() * 1e6)))

    verb, unit = sys.argv[1], sys.argv[-1]
    name = instance(unit)
    open(os.path.join(STATE, "calls"), "a").write(verb + " " + unit + "\\n")
    if verb == "show":
        active = pid(name) is not None
        started = open(os.path.join(STATE, name + ".started")).read() if active else "0"
        print("ActiveState=" + ("active" if active else "inactive"))
        print("ExecMainStartTimestampMonotonic=" + started)
        print("NeedDaemonReload=" + ("yes" if os.path.exists(os.path.join(STATE, "unit-changed")) else "no"))
    elif verb == "daemon-reload":
        os.unlink(os.path.join(STATE, "unit-changed"))
    elif verb in ("stop", "restart"):
        stop(name)
    if verb in ("start", "restart"):
        start(name)
    """
)
JOURNALCTL = textwrap.dedent(
    """\
    #!{python}
    import os, sys
    name = sys.argv[sys.argv.index("-u") + 1][len("modelfleet-serve@"):-len(".service")]
    path = os.path.join({state!r}, name + ".log")
    print(open(path, errors="replace").read()[-2000:] if os.path.exists(path) else "")
    """
)
PLAYBOOK = """\
- name: Restart credit-risk's changed versions
  hosts: serving
  gather_facts: false
  tasks:
    - name: Restart them one slot at a time
      modelfleet.serving.model_server_restart:
        model: credit-risk
        only_stale: true
        config_dir: "{{ config_dir }}"
        unit_file: "{{ config_dir }}/unit"
        router_socket: "{{ router_socket }}"
        ready_timeout: 60
      register: restarted

    - name: Show the outcome
      ansible.builtin.debug:
        var: restarted
"""


class Host:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.config = root / "etc"
        self.state = root / "systemd"
        self.bin = root / "bin"
        for directory in (self.config / "serve", self.state, self.bin):
            directory.mkdir(parents=True)
        (self.config / "unit").write_text("")
        (root / "slot.py").write_text(LOADING_SLOT)
        for name, text in (("systemctl", SYSTEMCTL), ("journalctl", JOURNALCTL)):
            path = self.bin / name
            path.write_text(text.format(python=sys.executable, state=str(self.state), config=str(self.config),
                                        slot=str(root / "slot.py"), load=3.0))
            path.chmod(0o755)
        self.ports = {"blue": free_port(), "green": free_port()}
        self.router = Router(root, [{"name": MODEL, "blue_port": self.ports["blue"],
                                     "green_port": self.ports["green"]}])
        (root / "play.yml").write_text(PLAYBOOK)

    def configure(self, version: str, slot: str, args: str) -> str:
        name = f"{MODEL}-{version}"
        (self.config / "serve" / f"{name}.env").write_text(
            f"# modelfleet-serve@{name}\nMODELFLEET_SLOT={slot}\nMODELFLEET_HOST=0.0.0.0\n"
            f"MODELFLEET_PORT={self.ports[slot]}\nMODELFLEET_ARGS={args}\n"
        )
        return name

    def systemctl(self, *args: str) -> None:
        subprocess.run([str(self.bin / "systemctl"), *args], check=True, timeout=30)

    def calls(self) -> list[str]:
        path = self.state / "calls"
        return [line for line in path.read_text().splitlines() if not line.startswith("show")] if path.exists() else []

    def playbook(self, *flags: str) -> tuple[int, dict[str, Any]]:
        inventory = {"all": {"children": {"serving": {"hosts": {"serving-1": {
            "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
            "config_dir": str(self.config), "router_socket": self.router.socket}}}}}}
        (self.root / "hosts.json").write_text(json.dumps(inventory))
        env = ansible_env(PATH=f"{self.bin}:{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
        command = [shutil.which("ansible-playbook", path=env["PATH"]) or "ansible-playbook", "-i",
                   str(self.root / "hosts.json"), str(self.root / "play.yml"), *flags]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=self.root)
        return done.returncode, json.loads(done.stdout)

    def pids(self) -> list[int]:
        return [int(path.read_text()) for path in self.state.glob("*.pid")]


def outcome(result: dict[str, Any]) -> dict[str, Any]:
    task = result["plays"][0]["tasks"][0]
    found: dict[str, Any] = task["hosts"]["serving-1"]
    return found


@pytest.fixture
def host() -> Iterator[Host]:
    need("haproxy", "haproxy")
    root = Path(tempfile.mkdtemp(prefix="mf-arestart-"))
    made = Host(root)
    try:
        yield made
    finally:
        made.router.stop()
        for pid in made.pids():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)


def test_playbook_restarts_a_changed_lone_stable_by_surge_under_load(host: Host) -> None:
    stable = host.configure("3", "blue", "--max-batch 32")
    host.systemctl("start", f"modelfleet-serve@{stable}.service")
    host.router.start()
    host.router.wait_up(MODEL, "blue")

    # Unchanged configuration: nothing to do.
    code, result = host.playbook()
    assert code == 0 and outcome(result)["changed"] is False, outcome(result)
    assert outcome(result)["not_restarted"] == {stable: "running with its current configuration"}

    # The serving settings change (as the role's template task would write them).
    host.configure("3", "blue", "--max-batch 64")
    os.utime(host.config / "serve" / f"{stable}.env", (time.time() + 1, time.time() + 1))

    code, result = host.playbook("--check")
    assert code == 0, outcome(result)
    assert [(p["instance"], p["method"]) for p in outcome(result)["plan"]] == [(stable, "surge")]
    assert outcome(result)["changed"] is True and host.calls() == ["start modelfleet-serve@credit-risk-3.service"]

    (host.state / "unit-changed").write_text("")  # systemd would say NeedDaemonReload=yes
    with Clients(host.router.port) as clients:
        wait_for(lambda: len(clients.outcomes) >= 20, 20, what="client load under way")
        start = time.monotonic()
        code, result = host.playbook()
        end = time.monotonic()
        wait_for(lambda: len(clients.between(end, time.monotonic())) >= 20, 20, what="load after the restart")

    during = clients.between(start, end)
    print(f"ansible-playbook run: {len(during)} requests answered during it, {len(clients.outcomes)} in all, "
          f"{len(clients.failures())} failed")
    assert code == 0, outcome(result)
    assert [(r["instance"], r["method"]) for r in outcome(result)["restarted"]] == [(stable, "surge")]
    assert clients.failures() == []
    assert len(during) > 0 and "green" in {slot for _, _, slot in during}
    assert outcome(result)["daemon_reload"] is True
    assert host.calls()[1:] == ["daemon-reload daemon-reload",
                                "start modelfleet-serve@credit-risk-3-surge.service",
                                "restart modelfleet-serve@credit-risk-3.service",
                                "stop modelfleet-serve@credit-risk-3-surge.service"]
    assert {name: state[0] for name, state in host.router.servers(MODEL).items()} == {"blue": 100, "green": 0}

    # Restarted: current again.
    code, result = host.playbook()
    assert code == 0 and outcome(result)["changed"] is False, outcome(result)


def test_playbook_fails_clearly_on_an_unknown_instance_and_a_missing_router(host: Host) -> None:
    host.configure("3", "blue", "")
    host.systemctl("start", "modelfleet-serve@credit-risk-3.service")
    (host.root / "play.yml").write_text(PLAYBOOK.replace("model: credit-risk\n        only_stale: true",
                                                         "instances: [credit-risk-9]"))
    code, result = host.playbook()
    assert code == 2
    assert "unknown instance 'credit-risk-9'" in outcome(result)["msg"] and "credit-risk-3" in outcome(result)["msg"]

    (host.root / "play.yml").write_text(PLAYBOOK.replace("only_stale: true", "only_stale: false"))
    code, result = host.playbook()  # the router is not started: no socket
    assert code == 2
    assert "does not exist" in outcome(result)["msg"], outcome(result)["msg"]
    assert host.calls() == ["start modelfleet-serve@credit-risk-3.service"]


ROLE_PLAYBOOK = """\
- name: The model_server role's catch-up task and its handler
  hosts: serving
  gather_facts: false
  tasks:
    - name: Find stale versions (the role's task file, as main.yml includes it)
      ansible.builtin.include_role:
        name: modelfleet.serving.model_server
        tasks_from: restart_stale
      vars:
        model_server_name: credit-risk
        model_server_config_dir: "{{ config_dir }}"
        model_server_router_socket: "{{ router_socket }}"
        model_server_ready_timeout: 60
"""


def role_tasks(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Outcome of each task by name (without the "role : " prefix the json callback gives role tasks)."""
    tasks = result["plays"][0]["tasks"]
    return {task["task"]["name"].split(" : ", 1)[-1]: task["hosts"]["serving-1"] for task in tasks}


def test_role_catches_up_a_stale_version_through_its_handler(host: Host) -> None:
    (host.root / "play.yml").write_text(ROLE_PLAYBOOK)
    stable = host.configure("3", "blue", "--max-batch 32")
    host.systemctl("start", f"modelfleet-serve@{stable}.service")
    host.router.start()
    host.router.wait_up(MODEL, "blue")
    handler = "Restart the changed versions of the model"
    find = "Find running versions started before their configuration changed"

    code, result = host.playbook()
    assert code == 0 and role_tasks(result)[find]["changed"] is False and handler not in role_tasks(result)

    # The environment changed after the process started (a handler lost with a failed run).
    host.configure("3", "blue", "--max-batch 64")
    os.utime(host.config / "serve" / f"{stable}.env", (time.time() + 1, time.time() + 1))

    code, result = host.playbook("--check")
    assert code == 0
    tasks = role_tasks(result)
    assert tasks[find]["changed"] is True
    assert [(p["instance"], p["method"]) for p in tasks[handler]["plan"]] == [(stable, "surge")]
    assert tasks[handler]["restarted"] == [] and host.calls() == ["start modelfleet-serve@credit-risk-3.service"]

    with Clients(host.router.port) as clients:
        wait_for(lambda: len(clients.outcomes) >= 20, 20, what="client load under way")
        code, result = host.playbook()
    assert code == 0
    assert [(r["instance"], r["method"]) for r in role_tasks(result)[handler]["restarted"]] == [(stable, "surge")]
    print(f"role handler run: {len(clients.outcomes)} requests, {len(clients.failures())} failed")
    assert clients.failures() == [] and len(clients.outcomes) > 0

    code, result = host.playbook()
    assert code == 0 and role_tasks(result)[find]["changed"] is False and handler not in role_tasks(result)
