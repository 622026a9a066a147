"""The router role's HAProxy configuration on a real HAProxy, driven by the real router_weight module.

HAProxy (/usr/sbin/haproxy, Debian 2.6) runs from roles/router/templates/haproxy.cfg.j2 rendered with the role's
defaults (paths moved into a temporary directory), in master-worker mode as under systemd. Reloads go
through the role's own state saver script, exactly as the systemd drop-in runs it. The slots are small HTTP
servers (and, in one test, two real model servers); the module runs as Ansible runs it.
"""

from __future__ import annotations

import csv
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml
from client_threads import ClientThreads
from harness import ansible_env, free_port, need, tool_path, wait_for
from serverkit import Server

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "router"
HAPROXY = tool_path("haproxy")
HOST = "127.0.0.1"


@pytest.fixture(autouse=True, scope="module")
def _tools() -> None:
    need("haproxy", "haproxy")
    need("socat", "socat")


# A slot: answers the health checks and inference requests, optionally slowly, names itself in its answers.
SLOT_SERVER = textwrap.dedent(
    """
    import json, sys, time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    name, port, delay = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # One write per response: headers and body in separate small segments would meet Nagle's algorithm
        # and the peer's delayed ACK (40 ms per request).
        wbufsize = 65536
        disable_nagle_algorithm = True

        def answer(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path.startswith("/v2/health/"):
                self.answer(200, {"ready": True})
            else:
                self.answer(200, {"name": "slot", "slot": name, "path": self.path})

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            time.sleep(delay)
            self.answer(200, {"model_name": self.path.split("/")[3], "slot": name, "bytes": len(body)})

        def log_message(self, *args):
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request, client_address):
            pass  # HAProxy closes health check connections with a reset

    Server(("127.0.0.1", port), Handler).serve_forever()
    """
)


class Slot:
    """A small HTTP server in one slot of one model."""

    def __init__(self, script: Path, name: str, port: int, delay: float = 0.0) -> None:
        self.name = name
        self.port = port
        self.process = subprocess.Popen([sys.executable, str(script), name, str(port), str(delay)])
        wait_for(self._listening, 10, what=f"slot {name} on {port}")

    def _listening(self) -> bool:
        assert self.process.poll() is None, f"slot {self.name} exited"
        try:
            socket.create_connection((HOST, self.port), timeout=1).close()
        except OSError:
            return False
        return True

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)


class Router:
    """HAProxy from the role's template, in master-worker mode (haproxy -W), as the Debian unit runs it."""

    def __init__(self, workdir: Path, models: list[dict[str, Any]], **overrides: Any) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.metrics_port = free_port()
        self.grpc_port = free_port()
        self.socket = str(workdir / "admin.sock")
        self.state_file = str(workdir / "server-state")
        self.config = workdir / "haproxy.cfg"
        self.log = workdir / "haproxy.log"
        self.save_state = workdir / "save-state"
        self.process: subprocess.Popen[bytes] | None = None
        self.variables: dict[str, Any] = {
            **render_defaults(),
            "router_models": models,
            "router_port": self.port,
            "router_grpc_port": self.grpc_port,
            "router_bind_address": HOST,
            "router_metrics_port": self.metrics_port,
            "router_metrics_bind_address": HOST,
            "router_stats_socket": self.socket,
            "router_state_file": self.state_file,
            "router_chroot": "",
            "router_haproxy_user": "",
            "router_haproxy_group": "",
            **overrides,
        }
        self.render()

    def render(self, **changes: Any) -> None:
        self.variables.update(changes)
        self.config.write_text(render("haproxy.cfg.j2", self.variables))
        self.save_state.write_text(render("modelfleet-haproxy-save-state.j2", self.variables))
        self.save_state.chmod(0o755)
        check = subprocess.run([HAPROXY, "-c", "-f", str(self.config)], capture_output=True, text=True, check=False)
        assert check.returncode == 0, check.stdout + check.stderr

    def start(self) -> Router:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [HAPROXY, "-W", "-f", str(self.config)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        wait_for(lambda: Path(self.socket).exists() and self.worker_pid() > 0, 10, what="HAProxy's runtime API")
        return self

    def cli(self, command: str) -> str:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(self.socket)
            sock.sendall(command.encode() + b"\n")
            return b"".join(iter(lambda: sock.recv(65536), b"")).decode()

    def worker_pid(self) -> int:
        try:
            match = re.search(r"^Pid: (\d+)$", self.cli("show info"), re.MULTILINE)
        except OSError:
            return 0
        return int(match.group(1)) if match else 0

    def servers(self, backend: str) -> dict[str, tuple[int, int, int]]:
        """(weight, admin state bits, operational state) of each server, from `show servers state`."""
        rows = [line.split() for line in self.cli(f"show servers state {backend}").splitlines()[2:] if line.strip()]
        return {row[3]: (int(row[7]), int(row[6]), int(row[5])) for row in rows}

    def checks(self, backend: str) -> dict[str, str]:
        """Last health check result of each server (L7OK, L4CON, INI before the first check...)."""
        lines = self.cli(f"show stat {backend} 4 -1").splitlines()
        rows = list(csv.DictReader([lines[0][2:], *[line for line in lines[1:] if line.strip()]]))
        return {row["svname"]: row["check_status"] for row in rows}

    def wait_up(self, backend: str, *names: str) -> None:
        """Wait until the servers passed a real health check (at start-up they count as up before any)."""

        def up() -> bool:
            state, checks = self.servers(backend), self.checks(backend)
            return all(state[name][2] == 2 and checks[name] == "L7OK" for name in names)

        wait_for(up, 15, what=f"{backend} {names} up")

    def wait_checked(self, backend: str) -> None:
        """Wait until every server of ``backend`` had its first health check. Just after a reload the old worker may
        still answer the admin socket, and it lists no server of a backend that only the new configuration has."""
        def checked() -> bool:
            checks = self.checks(backend)
            return bool(checks) and "INI" not in checks.values()
        wait_for(checked, 15, what=f"first health checks of {backend}")

    def reload(self) -> None:
        """What `systemctl reload haproxy` runs with the role's drop-in: check, save the state, SIGUSR2."""
        subprocess.run([HAPROXY, "-c", "-q", "-f", str(self.config)], check=True)
        subprocess.run([str(self.save_state)], check=True, capture_output=True)
        old = self.worker_pid()
        assert self.process is not None
        self.process.send_signal(signal.SIGUSR2)
        wait_for(lambda: self.worker_pid() not in (0, old), 10, what="a new HAProxy worker")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            self.process.wait(10)

    def get(self, path: str, port: int | None = None) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection(HOST, port or self.port, timeout=10)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            connection.close()

    def post(self, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection(HOST, self.port, timeout=10)
        try:
            connection.request("POST", path, body=body, headers={"content-type": "application/json"})
            response = connection.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            connection.close()

    def split(self, model: str, requests: int) -> Counter[str]:
        """Slots that answered ``requests`` sequential inference requests on one keep-alive connection."""
        connection = http.client.HTTPConnection(HOST, self.port, timeout=10)
        counts: Counter[str] = Counter()
        try:
            for _ in range(requests):
                connection.request("POST", f"/v2/models/{model}/infer", body=b"{}")
                response = connection.getresponse()
                response.read()
                assert response.status == 200, response.status
                counts[response.getheader("x-modelfleet-slot") or "?"] += 1
        finally:
            connection.close()
        return counts

    def retried_log_lines(self) -> list[str]:
        """Request log lines of requests HAProxy retried (the 5th field of actconn/feconn/beconn/srvconn/retries)."""
        pattern = re.compile(r" \d+/\d+/\d+/\d+/(\+?)(\d+) ")
        lines = []
        for line in self.log.read_text(errors="replace").splitlines():
            match = pattern.search(line)
            if match and (match.group(1) or int(match.group(2)) > 0):
                lines.append(line)
        return lines


def render_defaults() -> dict[str, Any]:
    defaults: dict[str, Any] = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    internal: dict[str, Any] = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
    return {**defaults, **internal, "ansible_managed": "Ansible managed (rendered by the tests)"}


def render(template: str, variables: dict[str, Any]) -> str:
    # The template module's Jinja settings: trim_blocks on, lstrip_blocks off.
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(ROLE / "templates"),
        trim_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    return environment.get_template(template).render(**variables)


class Load(ClientThreads):
    """Client threads sending inference requests over keep-alive connections; every outcome is recorded."""

    def __init__(self, port: int, model: str, threads: int, body: bytes = b'{"inputs": []}') -> None:
        super().__init__(threads)
        self.port = port
        self.path = f"/v2/models/{model}/infer"
        self.body = body
        self.results: list[tuple[float, float, int, str]] = []  # sent, done, status, slot
        self.errors: list[str] = []

    def _run(self) -> None:
        connection = http.client.HTTPConnection(HOST, self.port, timeout=15)
        while not self.stopping.is_set():
            sent = time.monotonic()
            try:
                connection.request("POST", self.path, body=self.body, headers={"content-type": "application/json"})
                response = connection.getresponse()
                payload = response.read()
                done = time.monotonic()
                slot = response.getheader("x-modelfleet-slot") or ""
                with self.lock:
                    self.results.append((sent, done, response.status, slot))
                    if response.status != 200:
                        self.errors.append(f"{response.status} {payload[:200]!r}")
            except (OSError, http.client.HTTPException) as exc:
                with self.lock:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                connection.close()
                connection = http.client.HTTPConnection(HOST, self.port, timeout=15)
        connection.close()


    def statuses(self) -> Counter[int]:
        with self.lock:
            return Counter(status for _, _, status, _ in self.results)


# --- running the module -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ansible() -> Callable[..., dict[str, Any]]:
    """``ansible(args, *flags)``: the module through `ansible localhost -m modelfleet.serving.router_weight`."""
    env = ansible_env(ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_PYTHON_INTERPRETER=sys.executable)
    command = shutil.which("ansible", path=env["PATH"]) or "ansible"

    def run(args: dict[str, Any], *flags: str) -> dict[str, Any]:
        done = subprocess.run(
            [command, "localhost", "-c", "local", "-m", "modelfleet.serving.router_weight", "-a", json.dumps(args),
             *flags],
            env=env, capture_output=True, text=True, timeout=120, cwd=REPO, check=False,
        )  # fmt: skip
        output = json.loads(done.stdout)
        result: dict[str, Any] = output["plays"][0]["tasks"][0]["hosts"]["localhost"]
        return result

    return run


@pytest.fixture(scope="module")
def module_direct(collections_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., dict[str, Any]]:
    """The module run directly (`python router_weight.py args.json`): what the AnsiballZ payload does on a host,
    without Ansible's own start-up, for timing the weight change itself."""
    argsdir = tmp_path_factory.mktemp("module-args")
    env = {**os.environ, "PYTHONPATH": str(collections_root)}
    script = collections_root / "ansible_collections/modelfleet/serving/plugins/modules/router_weight.py"

    def run(args: dict[str, Any]) -> dict[str, Any]:
        argfile = argsdir / f"{time.monotonic_ns()}.json"
        argfile.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
        done = subprocess.run(
            [sys.executable, str(script), str(argfile)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    return run


# --- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture
def workdir() -> Iterator[Path]:
    # Unix socket paths are limited to 108 bytes; pytest's tmp_path can be longer.
    path = Path(tempfile.mkdtemp(prefix="mf-router-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def slot_script(workdir: Path) -> Path:
    script = workdir / "slot.py"
    script.write_text(SLOT_SERVER)
    return script


@pytest.fixture
def fleet(workdir: Path, slot_script: Path) -> Iterator[Callable[..., Any]]:
    """``fleet(models, slots={(model, slot): delay}, **role_vars)`` → (router, {(model, slot): Slot})."""
    routers: list[Router] = []
    slots: list[Slot] = []

    def make(models: list[str], slots_up: dict[tuple[str, str], float], **overrides: Any) -> tuple[Router, Any]:
        ports = {(m, s): free_port() for m in models for s in ("blue", "green")}
        specs = [dict(name=m, blue_port=ports[m, "blue"], green_port=ports[m, "green"]) for m in models]
        router = Router(workdir, specs, **overrides)
        routers.append(router)
        started = {}
        for (model, slot), delay in slots_up.items():
            started[model, slot] = Slot(slot_script, f"{model}-{slot}", ports[model, slot], delay)
            slots.append(started[model, slot])
        router.start()
        return router, started

    yield make
    for router in routers:
        router.stop()
    for slot in slots:
        slot.kill()


def assert_share(split: Counter[str], slot: str, expected: float, tolerance: float = 0.02) -> None:
    """Weighted round robin is exact over a full cycle, and off by a request or two right after a change."""
    share = split[slot] / sum(split.values())
    assert abs(share - expected) <= tolerance, f"{slot} got {share:.1%} of {dict(split)}, expected {expected:.0%}"


def weights_args(router: Router, backend: str, **params: Any) -> dict[str, Any]:
    return dict(socket=router.socket, state_file=router.state_file, backend=backend, **params)


# --- tests --------------------------------------------------------------------------------------------


def test_role_defaults_match_argument_specs() -> None:
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    specs = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    assert set(defaults) == set(specs)
    for name, value in defaults.items():
        assert specs[name].get("default") == value, name


def test_routing_health_and_errors(fleet: Callable[..., Any]) -> None:
    router, _ = fleet(["credit-risk", "mlp"], {("credit-risk", "blue"): 0.0}, router_max_body=1000)
    assert router.get("/v2/health/live")[0] == 200
    router.wait_up("credit-risk", "blue")
    router.wait_checked("mlp")
    status, _, body = router.get("/v2/health/ready")
    assert status == 503 and json.loads(body) == {"ready": False, "reason": "no slot of mlp is up"}

    status, headers, body = router.post("/v2/models/credit-risk/infer", b"{}")
    assert status == 200 and headers["x-modelfleet-slot"] == "blue" and json.loads(body)["slot"] == "credit-risk-blue"
    status, headers, body = router.get("/v2/models/credit-risk")
    assert status == 200 and json.loads(body)["path"] == "/v2/models/credit-risk"
    # Paths that are not about one model go to any slot that is up.
    status, headers, body = router.get("/v2")
    assert status == 200 and headers["x-modelfleet-slot"] == "credit-risk_blue"
    # A model name that only starts like a served one is not routed to it.
    status, headers, body = router.get("/v2/models/credit-risk-2/ready")
    assert status == 404 and json.loads(body) == {"error": "unknown model credit-risk-2: not served by this router"}
    status, _, body = router.get("/metrics")
    assert status == 404 and json.loads(body) == {"error": "no route for /metrics"}
    # No slot of mlp up: the server's error format, not an HTML page.
    status, headers, body = router.post("/v2/models/mlp/infer", b"{}")
    assert status == 503 and headers["content-type"] == "application/json" and "error" in json.loads(body)
    status, _, body = router.post("/v2/models/credit-risk/infer", b"x" * 1001)
    assert status == 413 and json.loads(body) == {"error": "request body larger than 1000 bytes"}


def test_weights_move_traffic(fleet: Callable[..., Any], ansible: Callable[..., dict[str, Any]]) -> None:
    router, _ = fleet(["credit-risk"], {("credit-risk", "blue"): 0.0, ("credit-risk", "green"): 0.0})
    router.wait_up("credit-risk", "blue", "green")
    # A first install: the configured weights, blue 100 and green 0.
    assert router.split("credit-risk", 200) == Counter(blue=200)

    args = weights_args(router, "credit-risk", weights={"blue": 10, "green": 90})
    planned = ansible(args, "--check", "--diff")
    # The model's gRPC backend follows (tests/integration/test_router_grpc.py sends gRPC through it).
    assert planned["changed"] and planned["commands"] == [
        "set server credit-risk/green weight 90",
        "set server credit-risk/blue weight 10",
        "set server credit-risk_grpc/green weight 90",
        "set server credit-risk_grpc/blue weight 10",
    ]
    assert router.servers("credit-risk") == {"blue": (100, 0, 2), "green": (0, 0, 2)}

    done = ansible(args, "--diff")
    assert done["changed"] and done["after"]["green"]["weight"] == 90 and done["after"]["green"]["up"]
    assert done["diff"]["after"] == (
        "credit-risk/blue: weight 10, ready\ncredit-risk/green: weight 90, ready\n"
        "credit-risk_grpc/blue: weight 10, ready\ncredit-risk_grpc/green: weight 90, ready\n"
    )
    assert router.servers("credit-risk_grpc") == {"blue": (10, 0, 2), "green": (90, 0, 2)}
    split = router.split("credit-risk", 1000)
    share = split["green"] / 1000
    print(f"\nweights blue 10 / green 90: measured {dict(split)} of 1000 requests (green {share:.1%})")
    assert abs(share - 0.9) <= 0.01

    again = ansible(args)
    assert not again["changed"] and again["commands"] == []

    drained = ansible(weights_args(router, "credit-risk", server="green", state="drain"))
    assert drained["changed"] and drained["after"]["green"]["admin"] == "drain"
    assert router.split("credit-risk", 50) == Counter(blue=50)
    assert ansible(weights_args(router, "credit-risk", server="green", state="ready"))["changed"]

    # A body larger than HAProxy's buffer (router_tune_bufsize) is streamed through (it just cannot be retried).
    status, _, body = router.post("/v2/models/credit-risk/infer", b"x" * 300_000)
    assert status == 200 and json.loads(body)["bytes"] == 300_000

    failed = ansible(weights_args(router, "credit-risk", weights={"blue": 1, "purple": 2}))
    assert failed["failed"] and failed["msg"] == "backend credit-risk has no server 'purple' (it has: blue, green)"
    failed = ansible(weights_args(router, "fraud", server="blue", weight=1))
    assert failed["failed"] and "unknown backend 'fraud'" in failed["msg"]


def test_wait_ready_routes_only_to_a_checked_slot(
    fleet: Callable[..., Any], module_direct: Callable[..., dict[str, Any]], slot_script: Path
) -> None:
    router, _ = fleet(["credit-risk"], {("credit-risk", "blue"): 0.0})
    router.wait_up("credit-risk", "blue")
    router.wait_checked("credit-risk")
    args = weights_args(router, "credit-risk", weights={"blue": 90, "green": 10}, wait_ready=True)
    failed = module_direct({**args, "wait_timeout": 1})
    assert failed["failed"] and not failed["changed"] and failed["commands"] == []
    assert "waiting for credit-risk/green" in failed["msg"] and "L4CON" in failed["msg"]
    assert router.servers("credit-risk") == {"blue": (100, 0, 2), "green": (0, 0, 0)}

    green_port = router.variables["router_models"][0]["green_port"]
    slots: list[Slot] = []
    starter = threading.Timer(0.5, lambda: slots.append(Slot(slot_script, "credit-risk-green", green_port)))
    starter.start()
    try:
        done = module_direct({**args, "wait_timeout": 30})
        starter.join()
        assert done["changed"] and done["ready"] == {"blue": True, "green": True}
        # Started after 0.5 s, then `rise 2` checks 250 ms to 1 s apart.
        assert 0.5 < done["waited"] < 5, done["waited"]
        assert_share(router.split("credit-risk", 500), "green", 0.10)
        print(f"\nwait_ready: green started 0.5 s into the wait; weights set after {done['waited']:.2f} s")
    finally:
        for slot in slots:
            slot.kill()


def test_weight_change_latency(
    fleet: Callable[..., Any], ansible: Callable[..., dict[str, Any]], module_direct: Callable[..., dict[str, Any]]
) -> None:
    """Time from the start of a weight change until traffic follows it, three ways: the bare runtime API
    commands the module sends, the module run directly, and the module through `ansible -m`."""
    router, _ = fleet(["credit-risk"], {("credit-risk", "blue"): 0.0, ("credit-risk", "green"): 0.0})
    router.wait_up("credit-risk", "blue", "green")

    def bare(args: dict[str, Any]) -> dict[str, Any]:
        for slot, weight in sorted(args["weights"].items(), key=lambda item: -item[1]):
            assert router.cli(f"set server credit-risk/{slot} weight {weight}").strip() == ""
        return {"changed": True}

    timings = {}
    for how, run, target in (
        ("runtime API", bare, {"blue": 0, "green": 100}),
        ("module", module_direct, {"blue": 100, "green": 0}),
        ("ansible -m", ansible, {"blue": 0, "green": 100}),
    ):
        new_slot = max(target, key=lambda slot: target[slot])
        old_slot = min(target, key=lambda slot: target[slot])
        with Load(router.port, "credit-risk", threads=1) as load:
            wait_for(lambda load=load: len(load.results) > 50, 10, what="traffic")  # type: ignore[misc]
            started = time.monotonic()
            result = run(weights_args(router, "credit-risk", weights=target))
            returned = time.monotonic()
            assert result["changed"], result
            time.sleep(0.3)
        assert not load.errors
        first_new = min(done for sent, done, _, slot in load.results if slot == new_slot and sent >= started)
        late_old = [r for r in load.results if r[3] == old_slot and r[0] >= returned]
        timings[how] = (1000 * (returned - started), 1000 * (first_new - started))
        assert late_old == [], f"{len(late_old)} requests sent after the {how} call returned still went to {old_slot}"
        assert first_new - returned < 0.2, f"{how}: traffic followed {first_new - returned:.3f} s after the call"
    print(
        "\nweight change (call duration / first answer from the new slot, from the start of the call): "
        + "; ".join(f"{how} {call:.1f} ms / {first:.1f} ms" for how, (call, first) in timings.items())
        + "; no request sent after a call returned reached the old slot"
    )


def test_dying_slot_costs_clients_nothing(fleet: Callable[..., Any], module_direct: Callable[..., Any]) -> None:
    # Slow slots (20 ms per request), so that requests are in flight on the slot when it dies.
    router, slots = fleet(["credit-risk"], {("credit-risk", "blue"): 0.02, ("credit-risk", "green"): 0.02})
    router.wait_up("credit-risk", "blue", "green")
    assert module_direct(weights_args(router, "credit-risk", weights={"blue": 50, "green": 50}))["changed"]
    body = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 8], "data": [0.5] * 8}]}).encode()
    with Load(router.port, "credit-risk", threads=8, body=body) as load:
        time.sleep(1.0)
        killed = time.monotonic()
        slots["credit-risk", "green"].kill()
        wait_for(lambda: router.servers("credit-risk")["green"][2] == 0, 10, what="green marked down")
        marked_down = time.monotonic()
        time.sleep(1.0)
    statuses = load.statuses()
    after_kill = [r for r in load.results if r[0] >= killed]
    retried = router.retried_log_lines()
    print(
        f"\nslot killed under load (8 clients): {sum(statuses.values())} requests, statuses {dict(statuses)}, "
        f"client errors {len(load.errors)}; {len(retried)} requests retried by HAProxy; green marked down "
        f"{1000 * (marked_down - killed):.0f} ms after the kill; {len(after_kill)} requests after the kill"
    )
    assert load.errors == [], load.errors[:5]
    assert set(statuses) == {200} and len(after_kill) > 100
    assert retried, "no request was in flight on the killed slot: the test proved nothing"
    assert all(r[3] == "blue" for r in load.results if r[0] >= marked_down)


def test_reload_and_restart_keep_runtime_weights(
    fleet: Callable[..., Any], module_direct: Callable[..., Any], workdir: Path, slot_script: Path
) -> None:
    router, _ = fleet(
        ["credit-risk", "mlp"],
        {("credit-risk", "blue"): 0.0, ("credit-risk", "green"): 0.0, ("mlp", "blue"): 0.0, ("mlp", "green"): 0.0},
    )
    router.wait_up("credit-risk", "blue", "green")
    router.wait_up("mlp", "blue", "green")
    assert module_direct(weights_args(router, "credit-risk", weights={"blue": 30, "green": 70}))["changed"]
    assert module_direct(weights_args(router, "mlp", weights={"blue": 0, "green": 100}))["changed"]
    assert module_direct(weights_args(router, "mlp", server="blue", state="maint"))["changed"]
    expected = {"blue": (30, 0, 2), "green": (70, 0, 2)}
    assert router.servers("credit-risk") == expected

    # Reloads under load, as the drop-in does them: no client sees them, weights and states are kept.
    with Load(router.port, "credit-risk", threads=4) as load:
        for _ in range(3):
            time.sleep(0.3)
            router.reload()
        time.sleep(0.5)
    assert load.errors == [] and set(load.statuses()) == {200}
    assert router.servers("credit-risk") == expected
    assert router.servers("mlp") == {"blue": (0, 1, 0), "green": (100, 0, 2)}
    assert_share(router.split("credit-risk", 500), "green", 0.70)

    # The role adds a model: new configuration, reload; the running models keep their weights.
    models = router.variables["router_models"] + [dict(name="fraud", blue_port=free_port(), green_port=free_port())]
    router.render(router_models=models)
    router.reload()
    assert router.servers("credit-risk") == expected
    router.wait_checked("fraud")  # nothing runs in its slots: down once checked (HAProxy starts servers up)
    # Read until the new worker answers (the old one, still draining after the reload, does not know "fraud").
    fraud = {"blue": (100, 0, 0), "green": (0, 0, 0)}
    wait_for(lambda: router.servers("fraud") == fraud, 10, what=f"fraud's servers {fraud}")

    # HAProxy dies (no state saved on the way out) and starts again: it loads the file the module wrote.
    assert module_direct(weights_args(router, "credit-risk", weights={"blue": 20, "green": 80}))["state_file"]
    router.stop(signal.SIGKILL)
    router.start()
    router.wait_up("credit-risk", "blue", "green")
    assert router.servers("credit-risk") == {"blue": (20, 0, 2), "green": (80, 0, 2)}
    assert_share(router.split("credit-risk", 500), "green", 0.80)


def test_prometheus_endpoint_passes_promtool(fleet: Callable[..., Any], promtool: str) -> None:
    router, _ = fleet(["credit-risk"], {("credit-risk", "blue"): 0.0})
    router.wait_up("credit-risk", "blue")
    router.split("credit-risk", 10)
    status, headers, body = router.get("/metrics", port=router.metrics_port)
    assert status == 200 and headers["content-type"].startswith("text/plain")
    text = body.decode()
    for needle in (
        'haproxy_server_weight{proxy="credit-risk",server="blue"} 100',
        'haproxy_server_weight{proxy="credit-risk",server="green"} 0',
        'haproxy_server_status{proxy="credit-risk",server="blue",state="UP"} 1',
        'haproxy_backend_http_responses_total{proxy="credit-risk",code="2xx"} 10',
        'haproxy_server_retry_warnings_total{proxy="credit-risk",server="blue"}',
        'haproxy_backend_redispatch_warnings_total{proxy="credit-risk"}',
    ):
        assert needle in text, needle
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    problems = {line.strip() for line in (check.stdout + check.stderr).splitlines() if line.strip()}
    # HAProxy 2.6 names one counter without _total; that is HAProxy's exporter, not our configuration.
    known = {'haproxy_process_failed_resolutions counter metrics should have "_total" suffix'}
    print(f"\npromtool check metrics on HAProxy's /metrics ({len(text.splitlines())} lines): {sorted(problems)}")
    assert problems <= known, problems - known


def test_real_model_servers_behind_the_router(
    credit_risk_artifact: Path, workdir: Path, credit_rows: Any, tmp_path: Path
) -> None:
    """Two real model servers in the slots; tritonclient through the router; one slot stopped gracefully
    (SIGTERM: not ready first, then the listener closes) under load costs nothing."""
    import tritonclient.http as triton

    servers = [Server(credit_risk_artifact, tmp_path, "--shutdown-delay", "3") for _ in range(2)]
    router = None
    try:
        for server in servers:
            server.start()
        specs = [dict(name="credit-risk", blue_port=servers[0].port, green_port=servers[1].port)]
        router = Router(workdir, specs).start()
        router.cli("set server credit-risk/green weight 100")
        router.wait_up("credit-risk", "blue", "green")

        client = triton.InferenceServerClient(url=f"{HOST}:{router.port}", network_timeout=30.0)
        assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("credit-risk")
        rows = credit_rows[:5]
        x = triton.InferInput("x", list(rows.shape), "FP32")
        x.set_data_from_numpy(rows, binary_data=False)
        result = client.infer("credit-risk", [x], outputs=[triton.InferRequestedOutput("label", binary_data=False)])
        assert result.as_numpy("label").shape == (5,)
        client.close()

        body = json.dumps(
            {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 8], "data": rows[:2].ravel().tolist()}]}
        ).encode()
        with Load(router.port, "credit-risk", threads=4, body=body) as load:
            time.sleep(0.5)
            servers[1].signal(signal.SIGTERM)
            assert servers[1].wait(30) == 0
            time.sleep(0.5)
        statuses = load.statuses()
        print(f"\nreal servers, green stopped with SIGTERM under load: statuses {dict(statuses)}, errors {load.errors}")
        assert load.errors == [] and set(statuses) == {200}
    finally:
        if router is not None:
            router.stop()
        for server in servers:
            server.stop()
