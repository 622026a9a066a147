"""A fleet of serving hosts on this machine for the Ansible integration tests: one home for the fixture.

Each inventory host is this machine over the local connection, with its own data directory (standing in for
/var/lib/modelfleet) and its own real HAProxy rendered from the router role's template (test_router_haproxy's
``Router``) in front of two real slot servers shared by the hosts. No systemd: the roles' unit starts and
stops are attempted only. The playbooks run through ``ansible-playbook`` with the JSON callback.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness import ansible_env, free_port, need
from test_router_haproxy import SLOT_SERVER, Router, Slot

MODEL = "credit-risk"
HOSTS = ("serving-1", "serving-2")


@contextmanager
def router_fleet(prefix: str, hosts: tuple[str, ...] = HOSTS) -> Iterator[tuple[Path, dict[str, Router]]]:
    """A root directory with ``<host>/releases`` per host and a running router per host, both slots up."""
    need("haproxy", "haproxy")
    need("socat", "socat")
    root = Path(tempfile.mkdtemp(prefix=prefix))  # unix socket paths: at most 108 bytes
    (root / "slot.py").write_text(SLOT_SERVER)
    ports = {"blue": free_port(), "green": free_port()}
    slots = [Slot(root / "slot.py", f"{MODEL}-{slot}", port) for slot, port in ports.items()]
    routers: dict[str, Router] = {}
    try:
        for host in hosts:
            (root / host / "releases").mkdir(parents=True)
            routers[host] = Router(root / host, [{"name": MODEL, "blue_port": ports["blue"],
                                                  "green_port": ports["green"]}]).start()
        for router in routers.values():
            router.wait_up(MODEL, "blue", "green")
        yield root, routers
    finally:
        for router in routers.values():
            router.stop()
        for slot in slots:
            slot.kill()
        shutil.rmtree(root, ignore_errors=True)


def host_vars(root: Path, host: str, router: Router, **extra: Any) -> dict[str, Any]:
    """The inventory variables that point the roles at ``host``'s directories and router."""
    return {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}",
            "model_server_data_dir": str(root / host), "model_server_group": "root",
            "model_server_prometheus_hosts": [], "rollout_fleet_state_dir": str(root / host / "releases"),
            "rollout_router_socket": router.socket, "router_state_file": router.state_file, **extra}


def write_inventory(path: Path, hosts: dict[str, dict[str, Any]]) -> Path:
    """``hosts`` as the ``serving`` group of a JSON inventory at ``path``."""
    path.write_text(json.dumps({"all": {"children": {"serving": {"hosts": hosts}}}}))
    return path


def run_playbook(playbook: Path, inventory: Path, *args: str) -> tuple[int, dict[str, Any]]:
    """ansible-playbook's exit code and its JSON callback's result; ``args`` as on its command line."""
    env = ansible_env()
    command = [shutil.which("ansible-playbook", path=env["PATH"]) or "ansible-playbook", "-i", str(inventory),
               str(playbook), *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=inventory.parent)
    try:
        return done.returncode, json.loads(done.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"ansible-playbook printed no JSON (exit {done.returncode}):\n"
                             f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}") from None


def weights(router: Router, backend: str = MODEL) -> dict[str, int]:
    """Server name -> weight of ``backend`` on ``router``."""
    return {name: state[0] for name, state in router.servers(backend).items()}


def outcomes(result: dict[str, Any], task: str) -> dict[str, dict[str, Any]]:
    """Host -> result of every run of the task named ``task`` (without its role prefix)."""
    found: dict[str, dict[str, Any]] = {}
    for play in result["plays"]:
        for ran in play["tasks"]:
            if ran["task"]["name"].split(" : ", 1)[-1] == task:
                found.update(ran["hosts"])
    return found


def failure_messages(result: dict[str, Any]) -> list[str]:
    """The message of every failed task result."""
    return [str(outcome.get("msg")) for play in result["plays"] for task in play["tasks"]
            for outcome in task["hosts"].values() if outcome.get("failed")]
