"""model_server_restart's logic (plugins/module_utils/serve_restart.py) against a real HAProxy under client load.

HAProxy runs from the router role's template (test_router_haproxy.Router); the slots are real HTTP server processes
(test_router_haproxy.SLOT_SERVER) that take a few seconds to "load their model" before they listen, as a model
server does. systemd is not available here outside containers, so `SystemdStandIn` (a stand-in for systemd, named
so) really stops and starts those processes for `systemctl start/stop/restart modelfleet-serve@<instance>`, reading
the port from the instance's environment file as the unit does. Readiness goes through the module's own probe
(open_url on /v2/health/ready) and the router through the real runtime API client.

Clients (several threads, httpx, keep-alive) send inference requests through the router during every restart; a
failed request is any answer but 200 or any transport error.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jinja2
import pytest
import tritonclient.grpc as triton
import yaml
from client_threads import ClientThreads
from harness import REPO, collection_root, free_port, need, wait_for
from test_router_haproxy import SLOT_SERVER, Router

sys.path.insert(0, str(collection_root()))

from ansible_collections.modelfleet.serving.plugins.module_utils import serve_restart
from ansible_collections.modelfleet.serving.plugins.module_utils.haproxy_runtime import RuntimeApi
from ansible_collections.modelfleet.serving.plugins.modules.model_server_restart import probe

pytestmark = pytest.mark.integration

MODEL = "credit-risk"
LOAD_SECONDS = 3.0  # a restarted slot listens only after this long (loading its model)
# The slot server, preceded by its model load time.
LOADING_SLOT = "import sys, time\ntime.sleep(float(sys.argv[4]))\n" + SLOT_SERVER


class SystemdStandIn:
    """A stand-in for systemd (not available here): `modelfleet-serve@<instance>` units as slot server processes.

    start/stop/restart act on a real process listening on the port of the instance's environment file; stop is a
    SIGTERM, as systemd's KillSignal. started_at and journal answer what systemctl show and journalctl would.
    """

    def __init__(self, workdir: Path, config_dir: Path) -> None:
        self.workdir = workdir
        self.config_dir = config_dir
        self.script = workdir / "loading_slot.py"
        self.script.write_text(LOADING_SLOT)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.started: dict[str, float] = {}
        self.calls: list[tuple[str, str]] = []
        self.load_seconds = LOAD_SECONDS

    def _instance(self, unit: str) -> str:
        assert unit.startswith("modelfleet-serve@") and unit.endswith(".service"), unit
        return unit[len("modelfleet-serve@") : -len(".service")]

    def run(self, verb: str, unit: str) -> None:
        self.calls.append((verb, unit))
        instance = self._instance(unit)
        if verb in ("stop", "restart"):
            self._stop(instance)
        if verb in ("start", "restart"):
            self._start(instance, self.load_seconds)

    def _start(self, instance: str, load_seconds: float) -> None:
        if instance in self.processes and self.processes[instance].poll() is None:
            return
        env = serve_restart.read_env(str(self.config_dir / "serve" / f"{instance}.env"))
        log = (self.workdir / f"{instance}.log").open("ab")
        self.processes[instance] = subprocess.Popen(
            [sys.executable, str(self.script), f"{instance}@{env['MODELFLEET_SLOT']}", env["MODELFLEET_PORT"],
             "0.01", str(load_seconds)],
            stdout=log, stderr=subprocess.STDOUT,
        )
        self.started[instance] = time.time()

    def _stop(self, instance: str) -> None:
        process = self.processes.pop(instance, None)
        self.started.pop(instance, None)
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(10)

    def start_now(self, instance: str) -> None:
        """Boot: the instance already running (no load wait for the test's set-up)."""
        self._start(instance, 0.0)
        port = int(serve_restart.read_env(str(self.config_dir / "serve" / f"{instance}.env"))["MODELFLEET_PORT"])
        wait_for(lambda: probe("127.0.0.1", port), 15, what=f"{instance} ready")

    def pid(self, instance: str) -> int | None:
        process = self.processes.get(instance)
        return process.pid if process is not None and process.poll() is None else None

    def started_at(self, unit: str) -> float | None:
        instance = self._instance(unit)
        return self.started.get(instance) if self.pid(instance) else None

    def journal(self, unit: str, lines: int) -> str:
        path = self.workdir / f"{self._instance(unit)}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def close(self) -> None:
        for instance in list(self.processes):
            self._stop(instance)


class Clients(ClientThreads):
    """Client threads (httpx, keep-alive) sending inference requests through the router; every outcome kept."""

    def __init__(self, port: int, threads: int = 4) -> None:
        super().__init__(threads)
        self.url = f"http://127.0.0.1:{port}/v2/models/{MODEL}/infer"
        self.outcomes: list[tuple[float, str, str]] = []  # time answered, "ok" or the failure, slot

    def _run(self) -> None:
        with httpx.Client(timeout=20) as client:
            while not self.stopping.is_set():
                try:
                    response = client.post(self.url, json={"inputs": []})
                    outcome = "ok" if response.status_code == 200 else f"{response.status_code} {response.text[:100]}"
                    slot = response.headers.get("x-modelfleet-slot", "")
                except httpx.HTTPError as exc:
                    outcome, slot = f"{type(exc).__name__}: {exc}", ""
                with self.lock:
                    self.outcomes.append((time.monotonic(), outcome, slot))


    def between(self, start: float, end: float) -> list[tuple[float, str, str]]:
        with self.lock:
            return [outcome for outcome in self.outcomes if start <= outcome[0] <= end]

    def failures(self) -> list[str]:
        with self.lock:
            return [outcome for _, outcome, _ in self.outcomes if outcome != "ok"]


class Host:
    """One serving host: the router, the environment files of the model's versions, systemd's stand-in."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.config_dir = root / "etc"
        (self.config_dir / "serve").mkdir(parents=True)
        self.ports = {"blue": free_port(), "green": free_port()}
        self.router = Router(root, [{"name": MODEL, "blue_port": self.ports["blue"],
                                     "green_port": self.ports["green"]}])
        self.systemd = SystemdStandIn(root, self.config_dir)

    def configure(self, version: str, slot: str) -> str:
        instance = f"{MODEL}-{version}"
        (self.config_dir / "serve" / f"{instance}.env").write_text(
            f"# modelfleet-serve@{instance}: {MODEL} v{version} in slot {slot}\n"
            f"MODELFLEET_ARTIFACT=/var/lib/modelfleet/models/{MODEL}/{version}\nMODELFLEET_SLOT={slot}\n"
            f"MODELFLEET_HOST=0.0.0.0\nMODELFLEET_PORT={self.ports[slot]}\nMODELFLEET_ARGS=--max-batch 32\n"
        )
        return instance

    def weights(self) -> dict[str, tuple[int, int]]:
        """(weight, admin state bits) of each slot."""
        return {name: (state[0], state[1]) for name, state in self.router.servers(MODEL).items()}

    def restarter(self, router: bool = True) -> serve_restart.Restarter:
        api = RuntimeApi(self.router.socket) if router else None
        return serve_restart.Restarter(self.systemd, api, probe, ready_timeout=60, drain_timeout=20)

    def instance(self, name: str) -> serve_restart.Instance:
        return serve_restart.load(str(self.config_dir), name)


@pytest.fixture
def host() -> Iterator[Host]:
    need("haproxy", "haproxy")
    root = Path(tempfile.mkdtemp(prefix="mf-restart-"))  # unix socket paths: at most 108 bytes
    made = Host(root)
    try:
        yield made
    finally:
        made.router.stop()
        made.systemd.close()
        subprocess.run(["rm", "-rf", str(root)], check=False)


Outcomes = list[tuple[float, str, str]]


def restart_under_load(
    host: Host, restarter: serve_restart.Restarter, name: str
) -> tuple[dict[str, Any], Clients, Outcomes]:
    """Restart ``name`` while clients send requests; the outcome and the requests answered during the restart."""
    with Clients(host.router.port) as clients:
        wait_for(lambda: len(clients.between(0, time.monotonic())) >= 20, 20, what="client load under way")
        start = time.monotonic()
        try:
            outcome = restarter.restart(host.instance(name))
        finally:
            end = time.monotonic()
            wait_for(lambda: len(clients.between(end, time.monotonic())) >= 20, 20, what="load after the restart")
    during = clients.between(start, end)
    print(f"{name}: {len(during)} requests answered during the restart, {len(clients.outcomes)} in all, "
          f"{len(clients.failures())} failed")
    return outcome, clients, during


def test_lone_stable_restarts_by_surge_without_a_failed_request(host: Host) -> None:
    stable = host.configure("3", "blue")
    host.systemd.start_now(stable)
    host.router.start()
    host.router.wait_up(MODEL, "blue")
    before_pid = host.systemd.pid(stable)

    outcome, clients, during = restart_under_load(host, host.restarter(), stable)

    assert outcome["method"] == "surge", outcome
    assert clients.failures() == []
    assert len(during) > 0
    served_by = {slot for _, _, slot in during}
    assert "green" in served_by, served_by  # the stand-in served while blue restarted
    assert host.systemd.pid(stable) not in (None, before_pid)
    assert host.systemd.pid(f"{stable}-surge") is None
    assert not (host.config_dir / "serve" / f"{stable}-surge.env").exists()
    assert host.weights() == {"blue": (100, 0), "green": (0, 0)}  # weights and states as before
    verbs = [verb for verb, _ in host.systemd.calls]
    assert verbs == ["start", "restart", "stop"], host.systemd.calls


def test_two_weighted_slots_restart_by_drain_without_a_failed_request(host: Host) -> None:
    stable, canary = host.configure("2", "blue"), host.configure("3", "green")
    host.systemd.start_now(stable)
    host.systemd.start_now(canary)
    host.router.start()
    host.router.cli(f"set server {MODEL}/green weight 50")
    host.router.cli(f"set server {MODEL}/blue weight 50")
    host.router.wait_up(MODEL, "blue", "green")
    restarter = host.restarter()

    results = []
    for name in (canary, stable):  # one slot at a time
        outcome, clients, during = restart_under_load(host, restarter, name)
        results.append((outcome["method"], len(during), clients.failures()))

    assert [method for method, _, _ in results] == ["drain", "drain"], results
    assert all(failures == [] for _, _, failures in results), results
    assert all(count > 0 for _, count, _ in results), results
    assert host.weights() == {"blue": (50, 0), "green": (50, 0)}
    assert [verb for verb, _ in host.systemd.calls] == ["restart", "restart"]


def test_stable_beside_a_waiting_canary_is_deferred(host: Host) -> None:
    stable, canary = host.configure("2", "blue"), host.configure("3", "green")
    host.systemd.start_now(stable)
    host.systemd.start_now(canary)
    host.router.start()
    host.router.wait_up(MODEL, "blue", "green")  # green at its configured weight 0: a canary not yet weighted
    restarter = host.restarter()

    outcome = restarter.restart(host.instance(stable))

    assert outcome["method"] == "deferred"
    assert host.systemd.calls == []
    assert restarter.warnings and "untested version" in restarter.warnings[0]
    assert host.weights() == {"blue": (100, 0), "green": (0, 0)}


def test_control_plain_restart_of_the_lone_server_fails_requests(host: Host) -> None:
    """The same restart without the router's help (the 'undrained' method) loses requests: the load can fail."""
    stable = host.configure("3", "blue")
    host.systemd.start_now(stable)
    host.router.start()
    host.router.wait_up(MODEL, "blue")

    outcome, clients, _ = restart_under_load(host, host.restarter(router=False), stable)

    assert outcome["method"] == "undrained"
    assert len(clients.failures()) > 0
    assert any(failure.startswith("503") for failure in clients.failures()), clients.failures()[:5]


def test_restart_that_never_gets_ready_leaves_the_other_slot_serving(host: Host) -> None:
    stable, canary = host.configure("2", "blue"), host.configure("3", "green")
    host.systemd.start_now(stable)
    host.systemd.start_now(canary)
    host.router.start()
    host.router.cli(f"set server {MODEL}/green weight 50")
    host.router.wait_up(MODEL, "blue", "green")
    host.systemd.load_seconds = 3600.0  # the restarted server never listens
    restarter = serve_restart.Restarter(host.systemd, RuntimeApi(host.router.socket), probe, ready_timeout=2)

    with Clients(host.router.port) as clients:
        with pytest.raises(serve_restart.RestartError) as failed:
            restarter.restart(host.instance(canary))
        wait_for(lambda: len(clients.outcomes) >= 50, 20, what="load after the failed restart")

    message = str(failed.value)
    assert "did not become ready" in message and "left drained" in message and "journal" in message
    assert clients.failures() == []
    assert host.weights()["green"] == (50, 8)  # drained (ADMF_FDRAIN), weight unchanged
    assert host.weights()["blue"] == (100, 0)
    os.kill(host.systemd.pid(canary) or 0, 0)  # the unit was started: systemd would keep trying, as here


def unit_command(unit: str, env: dict[str, str], instance: str) -> list[str]:
    """The ExecStart of a rendered unit as systemd runs it: ``${VAR}`` one word (even empty), ``$VAR`` split."""
    line = unit.split("ExecStart=", 1)[1].split("\n# ", 1)[0].replace("\\\n", " ").replace("%i", instance)
    words: list[str] = []
    for word in line.split():
        if word.startswith("${") and word.endswith("}"):
            words.append(env.get(word[2:-1], ""))
        elif word.startswith("$"):
            words += env.get(word[1:], "").split()
        else:
            words.append(word)
    return words


def test_a_surge_stand_ins_configuration_starts_a_real_model_server(credit_risk_artifact: Path,
                                                                      tmp_path: Path) -> None:
    """The stand-in's environment on the role's unit starts `modelfleet serve` for real (not the slot stand-ins
    above): the free slot's HTTP and gRPC ports, no payload spool. The fleet found a stand-in the server refused
    (a spool sample rate of 0) that the slot stand-ins had accepted."""
    role = REPO / "roles" / "model_server"
    defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text())
    blue, green = free_port(), free_port()
    offset = free_port() - green
    variables = defaults | {
        "ansible_managed": "test", "model_server_instance": f"{MODEL}-3", "model_server_name": MODEL,
        "model_server_version": "3", "model_server_slot": "blue", "model_server_version_dir": str(credit_risk_artifact),
        "model_server_listen_address": "127.0.0.1", "model_server_ports": {"blue": blue, "green": green},
        "model_server_data_dir": str(tmp_path), "model_server_serving": {}, "model_server_group": "modelfleet",
        "model_server_grpc_port_offset": offset}
    templates = jinja2.Environment(loader=jinja2.FileSystemLoader(role / "templates"), undefined=jinja2.StrictUndefined)
    env = serve_restart.read_env_text(templates.get_template("instance.env.j2").render(variables))
    standin = serve_restart.standin_env(env, "green", green)
    unit = templates.get_template("modelfleet-serve@.service.j2").render(variables)
    command = unit_command(unit, standin, f"{MODEL}-3-surge")
    assert command[command.index("--spool-dir") + 1] == ""
    command = [sys.executable, "-m", "modelfleet.cli", *command[1:]]
    command[command.index("--trt-cache-dir") + 1] = str(tmp_path / "trt")
    with (tmp_path / "standin.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError("the stand-in's server exited:\n" + (tmp_path / "standin.log").read_text()[-3000:])
        try:
            return httpx.get(f"http://127.0.0.1:{green}/v2/health/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(ready, timeout=60, what="the stand-in's server ready", interval=0.2)
        client = triton.InferenceServerClient(f"127.0.0.1:{green + offset}")
        assert client.is_model_ready(MODEL), "the stand-in serves gRPC on the free slot's gRPC port"
        client.close()
        assert not (tmp_path / "spool").exists() or not any((tmp_path / "spool").rglob("*")), "no payload spool"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
