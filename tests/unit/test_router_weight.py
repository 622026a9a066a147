"""modelfleet.serving.router_weight against a fake HAProxy runtime API on a real unix socket.

The fake speaks the subset of the runtime API the module uses, with HAProxy 2.6's exact reply texts
(captured from a real HAProxy); tests/integration/test_router_haproxy.py runs the module against the real one.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socketserver
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import collection_root

REPO = Path(__file__).resolve().parents[2]

# Make this checkout importable as ansible_collections.modelfleet.serving (what `make collection` does for ansible).
sys.path.insert(0, str(collection_root()))

from ansible.module_utils import basic  # noqa: E402
from ansible_collections.modelfleet.serving.plugins.module_utils import haproxy_runtime, router_weights  # noqa: E402
from ansible_collections.modelfleet.serving.plugins.modules import router_weight  # noqa: E402

# `show stat` header of HAProxy 2.6.12 (Debian 12), verbatim.
STAT_HEADER = (
    "pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,"
    "bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,"
    "check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,req_rate,"
    "req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,lastsess,last_chk,last_agt,qtime,ctime,"
    "rtime,ttime,agent_status,agent_code,agent_duration,check_desc,agent_desc,check_rise,check_fall,check_health,"
    "agent_rise,agent_fall,agent_health,addr,cookie,mode,algo,conn_rate,conn_rate_max,conn_tot,intercepted,dcon,dses,"
    "wrew,connect,reuse,cache_lookups,cache_hits,srv_icur,src_ilim,qtime_max,ctime_max,rtime_max,ttime_max,eint,"
    "idle_conn_cur,safe_conn_cur,used_conn_cur,need_conn_est,uweight,agg_server_status,agg_server_check_status,"
    "agg_check_status,-,ssl_sess,ssl_reused_sess,ssl_failed_handshake,h2_headers_rcvd,h2_data_rcvd,h2_settings_rcvd,"
    "h2_rst_stream_rcvd,h2_goaway_rcvd,h2_detected_conn_protocol_errors,h2_detected_strm_protocol_errors,"
    "h2_rst_stream_resp,h2_goaway_resp,h2_open_connections,h2_backend_open_streams,h2_total_connections,"
    "h2_backend_total_streams,h1_open_connections,h1_open_streams,h1_total_connections,h1_total_streams,h1_bytes_in,"
    "h1_bytes_out,h1_spliced_bytes_in,h1_spliced_bytes_out,"
)
STATE_HEADER = (
    "# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight "
    "srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state "
    "bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr "
    "srv_agent_addr srv_agent_port"
)


class FakeServer:
    def __init__(self, weight: int, iweight: int, up: bool = True, admin_bits: int = 0) -> None:
        self.weight = weight
        self.iweight = iweight
        self.up = up
        self.admin_bits = admin_bits

    @property
    def op_state(self) -> int:
        return 2 if self.up and not self.admin_bits & 0x01 else 0

    @property
    def status(self) -> str:
        if self.admin_bits & 0x01:
            return "MAINT"
        if self.admin_bits & 0x08:
            return "DRAIN"
        return "UP" if self.up else "DOWN"


class FakeHAProxy:
    """The runtime API commands router_weight sends, answered like HAProxy 2.6 answers them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.backends: dict[str, dict[str, FakeServer]] = {
            "credit-risk": {"blue": FakeServer(100, 100), "green": FakeServer(0, 0)},
            "mlp": {"blue": FakeServer(100, 100), "green": FakeServer(0, 0, up=False)},
        }
        self.received: list[str] = []
        self.refuse: dict[str, str] = {}  # command -> reply
        self.level_admin = True
        self.lock = threading.Lock()
        fake = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                line = self.rfile.readline().decode().strip()
                with fake.lock:
                    fake.received.append(line)
                    reply = fake.answer(line)
                self.wfile.write(reply.encode())

        self.server = socketserver.ThreadingUnixStreamServer(str(path), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)

    @property
    def changes(self) -> list[str]:
        return [command for command in self.received if command.startswith("set ")]

    def answer(self, line: str) -> str:
        if line in self.refuse:
            return self.refuse[line]
        words = line.split()
        if words[:3] == ["show", "servers", "state"]:
            names = words[3:] or list(self.backends)
            if any(name not in self.backends for name in names):
                return "Can't find backend.\n"
            rows = []
            for be_id, name in enumerate(names, 3):
                for srv_id, (srv, info) in enumerate(self.backends[name].items(), 1):
                    rows.append(
                        f"{be_id} {name} {srv_id} {srv} 127.0.0.1 {info.op_state} {info.admin_bits} {info.weight} "
                        f"{info.iweight} 5 15 3 3 6 0 0 0 - 810{srv_id} - 0 0 - - 0"
                    )
            return "1\n" + STATE_HEADER + "\n" + "\n".join(rows) + "\n\n"
        if words[:2] == ["show", "stat"]:
            columns = STAT_HEADER.split(",")
            lines = ["# " + STAT_HEADER]
            for srv, info in self.backends.get(words[2], {}).items():
                values = dict(
                    pxname=words[2],
                    svname=srv,
                    status=info.status,
                    weight=str(info.weight),
                    check_status="L7OK" if info.up else "L4CON",
                    uweight=str(info.weight),
                    check_desc='"Layer7 check passed, really"' if info.up else "Layer4 connection problem",
                )
                lines.append(",".join(values.get(column, "") for column in columns))
            return "\n".join(lines) + "\n\n"
        if words[:2] == ["set", "server"] and len(words) == 5:
            if not self.level_admin:
                return "Permission denied\n\n"
            backend, _sep, srv = words[2].partition("/")
            if backend not in self.backends:
                return "No such backend.\n\n"
            if srv not in self.backends[backend]:
                return "No such server.\n\n"
            info = self.backends[backend][srv]
            if words[3] == "weight":
                weight = int(words[4])
                if not 0 <= weight <= 256:
                    return "Absolute weight can only be between 0 and 256 inclusive.\n\n"
                info.weight = weight
                return "\n"
            if words[3] == "state" and words[4] in ("ready", "drain", "maint"):
                info.admin_bits = {"ready": 0, "drain": 0x08, "maint": 0x01}[words[4]]
                return "\n"
            return "'set server <srv> state' expects 'ready', 'drain' and 'maint'.\n\n"
        return f"Unknown command: '{words[0]}'\n\n"

    def __enter__(self) -> FakeHAProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def haproxy() -> Iterator[FakeHAProxy]:
    # AF_UNIX paths are limited to 108 bytes: pytest's tmp_path can be longer.
    directory = Path(tempfile.mkdtemp(prefix="mf-hap-"))
    try:
        with FakeHAProxy(directory / "admin.sock") as fake:
            yield fake
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def module_args(args: dict[str, Any]) -> Iterator[None]:
    try:
        from ansible.module_utils.testing import patch_module_args
    except ImportError:  # ansible-core < 2.19
        from unittest import mock

        with mock.patch.object(basic, "_ANSIBLE_ARGS", json.dumps({"ANSIBLE_MODULE_ARGS": args}).encode()):
            yield
        return
    with patch_module_args(args):
        yield


def run_module(capsys: pytest.CaptureFixture[str], **args: Any) -> dict[str, Any]:
    """Run router_weight.main() in this process; return its JSON result (``failed`` set on failure)."""
    capsys.readouterr()
    with module_args(args), pytest.raises(SystemExit) as exited:
        router_weight.main()
    result: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert (exited.value.code == 0) == (not result.get("failed")), result
    return result


@pytest.fixture
def run(haproxy: FakeHAProxy, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Any:
    def runner(**args: Any) -> dict[str, Any]:
        args.setdefault("socket", str(haproxy.path))
        args.setdefault("state_file", str(tmp_path / "server-state"))
        return run_module(capsys, **args)

    return runner


# --- parsing ------------------------------------------------------------------------------------


def test_parse_servers_state_and_stat(haproxy: FakeHAProxy) -> None:
    rows = haproxy_runtime.parse_servers_state(haproxy.answer("show servers state credit-risk"))
    assert [(r["be_name"], r["srv_name"], r["srv_uweight"], r["srv_iweight"]) for r in rows] == [
        ("credit-risk", "blue", "100", "100"),
        ("credit-risk", "green", "0", "0"),
    ]
    stats = haproxy_runtime.parse_stat_csv(haproxy.answer("show stat credit-risk 4 -1"))
    # A quoted field with a comma does not shift the columns after it.
    assert stats[0]["check_desc"] == "Layer7 check passed, really"
    assert stats[0]["check_rise"] == "" and stats[0]["uweight"] == "100"
    with pytest.raises(haproxy_runtime.RuntimeApiError, match="unexpected reply"):
        haproxy_runtime.parse_servers_state("Can't find backend.\n")
    with pytest.raises(haproxy_runtime.RuntimeApiError, match="unexpected reply"):
        haproxy_runtime.parse_stat_csv("Unknown command\n")


@pytest.mark.parametrize(
    ("bits", "state"),
    [
        (0, "ready"),
        (0x01, "maint"),
        (0x04, "maint"),
        (0x08, "drain"),
        (0x10, "drain"),
        (0x09, "maint"),
        (0x20, "maint"),
        (0x40, "ready"),
    ],
)
def test_admin_state_from_bits(bits: int, state: str) -> None:
    assert haproxy_runtime.admin_state(bits) == state


def test_plan_raises_weights_before_lowering_them() -> None:
    current = {
        "blue": haproxy_runtime.ServerInfo("blue", 100, 100, 0, 2),
        "green": haproxy_runtime.ServerInfo("green", 0, 0, 0x01, 0),
    }
    opening, rest = router_weights.plan("m", current, {"blue": 0, "green": 100}, {"blue": "drain", "green": "drain"})
    # green leaves maintenance first (it must be checked before it can be waited for), blue drains last.
    assert opening == ["set server m/green state drain"]
    assert rest == ["set server m/green weight 100", "set server m/blue weight 0", "set server m/blue state drain"]
    assert router_weights.plan("m", current, {"blue": 100}, {}) == ([], [])


def test_connect_errors_name_the_cause() -> None:
    import socket

    api = haproxy_runtime.RuntimeApi("/nonexistent/admin.sock")
    assert "does not exist" in api._connect_error(OSError(errno.ENOENT, "x"))
    assert "become: true" in api._connect_error(OSError(errno.EACCES, "x"))
    assert "is not a socket" in api._connect_error(OSError(errno.ENOTSOCK, "x"))
    directory = Path(tempfile.mkdtemp(prefix="mf-hap-"))
    try:
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(str(directory / "admin.sock"))
        stale.close()  # the file stays, nobody listens: what a crashed HAProxy leaves behind
        with pytest.raises(haproxy_runtime.RuntimeApiError, match="stale socket file"):
            haproxy_runtime.RuntimeApi(str(directory / "admin.sock")).command("show info")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# --- the module ---------------------------------------------------------------------------------


def test_weights_change_then_idempotent(run: Any, haproxy: FakeHAProxy, tmp_path: Path) -> None:
    result = run(backend="credit-risk", weights={"blue": 10, "green": 90}, _ansible_diff=True)
    assert result["changed"]
    assert result["commands"] == ["set server credit-risk/green weight 90", "set server credit-risk/blue weight 10"]
    assert haproxy.changes == result["commands"]
    assert result["before"]["blue"]["weight"] == 100 and result["before"]["green"]["weight"] == 0
    assert result["after"]["blue"]["weight"] == 10 and result["after"]["green"]["weight"] == 90
    assert result["after"]["green"] == dict(
        weight=90,
        initial_weight=0,
        admin="ready",
        operational="up",
        status="UP",
        check="L7OK",
        check_desc="Layer7 check passed, really",
        up=True,
    )
    assert result["ready"] == {"blue": True, "green": True}
    assert result["diff"]["before"] == "credit-risk/blue: weight 100, ready\ncredit-risk/green: weight 0, ready\n"
    assert result["diff"]["after"] == "credit-risk/blue: weight 10, ready\ncredit-risk/green: weight 90, ready\n"
    # The state file HAProxy loads at start-up now carries the new weights.
    saved = (tmp_path / "server-state").read_text()
    assert result["state_file"] == str(tmp_path / "server-state")
    assert " credit-risk 2 green 127.0.0.1 2 0 90 0 " in saved and saved.startswith("1\n# be_id")

    haproxy.received.clear()
    again = run(backend="credit-risk", weights={"green": "90", "blue": 10}, _ansible_diff=True)
    assert not again["changed"] and again["commands"] == [] and haproxy.changes == []
    assert again["diff"]["before"] == again["diff"]["after"]
    assert "state_file" not in again


def test_check_mode_reads_only(run: Any, haproxy: FakeHAProxy, tmp_path: Path) -> None:
    result = run(
        backend="credit-risk",
        weights={"blue": 0, "green": 100},
        wait_ready=True,
        _ansible_check_mode=True,
        _ansible_diff=True,
    )
    assert result["changed"]
    assert result["commands"] == ["set server credit-risk/green weight 100", "set server credit-risk/blue weight 0"]
    assert haproxy.changes == [] and all(c.startswith("show ") for c in haproxy.received)
    assert result["after"]["green"]["weight"] == 100 and result["after"]["blue"]["weight"] == 0
    assert "+credit-risk/green: weight 100" not in result["diff"]["after"]
    assert "credit-risk/green: weight 100, ready" in result["diff"]["after"]
    assert haproxy.backends["credit-risk"]["green"].weight == 0
    assert not (tmp_path / "server-state").exists()


def test_single_server_weight_and_state(run: Any, haproxy: FakeHAProxy) -> None:
    result = run(backend="mlp", server="green", weight=5, state="maint")
    assert result["commands"] == ["set server mlp/green weight 5", "set server mlp/green state maint"]
    assert result["after"]["green"]["admin"] == "maint" and result["after"]["green"]["status"] == "MAINT"
    assert result["ready"] == {"green": False}
    drained = run(backend="mlp", server="green", state="drain")
    assert drained["commands"] == ["set server mlp/green state drain"]
    assert drained["after"]["green"]["admin"] == "drain"
    assert not run(backend="mlp", server="green", state="drain")["changed"]


def test_read_only_with_server_alone(run: Any, haproxy: FakeHAProxy) -> None:
    result = run(backend="mlp", server="green")
    assert not result["changed"] and result["commands"] == [] and haproxy.changes == []
    assert result["ready"] == {"green": False}
    assert result["before"] == result["after"]


def test_wait_ready_waits_before_routing(run: Any, haproxy: FakeHAProxy) -> None:
    green = haproxy.backends["mlp"]["green"]
    timer = threading.Timer(0.6, lambda: setattr(green, "up", True))
    timer.start()
    started = time.monotonic()
    result = run(backend="mlp", weights={"blue": 50, "green": 50}, wait_ready=True, wait_timeout=10)
    timer.join()
    assert result["changed"] and 0.4 < result["waited"] < 5 and time.monotonic() - started >= 0.6
    assert result["ready"] == {"blue": True, "green": True}
    # No weight was sent before green was up.
    assert haproxy.changes == ["set server mlp/green weight 50", "set server mlp/blue weight 50"]


def test_wait_ready_timeout_changes_nothing(run: Any, haproxy: FakeHAProxy) -> None:
    result = run(backend="mlp", weights={"blue": 0, "green": 100}, wait_ready=True, wait_timeout=1)
    assert result["failed"] and not result["changed"] and haproxy.changes == []
    assert "timed out after 1 s waiting for mlp/green" in result["msg"]
    assert "L4CON" in result["msg"] and "Layer4 connection problem" in result["msg"]
    # blue is set to weight 0: nobody waits for it; green is the one that must come up.
    assert "blue" not in result["msg"].split(":")[1]


def test_wait_ready_skips_servers_going_to_weight_zero(run: Any, haproxy: FakeHAProxy) -> None:
    result = run(backend="mlp", weights={"blue": 100, "green": 0}, wait_ready=True, wait_timeout=1)
    # Only blue (already up) is waited for; green, down and going to weight 0, is not.
    assert not result.get("failed") and not result["changed"] and result["waited"] < 0.5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (dict(backend="mlp", server="blue", weight=257), "weight of blue is 257; HAProxy weights are 0 to 256"),
        (dict(backend="mlp", server="blue", weight=-1), "weight of blue is -1"),
        (dict(backend="mlp", weights={"blue": "lots"}), "weight of blue must be an integer, not 'lots'"),
        (dict(backend="mlp", weights={"blue": True}), "weight of blue must be an integer"),
        (dict(backend="mlp", weights={}), "weights must name at least one server"),
        (dict(backend="mlp", weight=3), "one of the following is required: server, weights"),
        (dict(backend="mlp", server="blue", weights={"blue": 1}), "mutually exclusive: server|weights"),
        (dict(backend="mlp", server="blue", state="up"), "value of state must be one of: ready, drain, maint"),
        (dict(backend="mlp", server="blue", wait_timeout=-1), "wait_timeout must be >= 0"),
        (dict(server="blue"), "missing required arguments: backend"),
    ],
)
def test_argument_validation(run: Any, haproxy: FakeHAProxy, args: dict[str, Any], message: str) -> None:
    result = run(**args)
    assert result["failed"] and message in result["msg"], result["msg"]
    assert haproxy.changes == []


def test_unknown_backend_and_server(run: Any, haproxy: FakeHAProxy) -> None:
    result = run(backend="fraud", weights={"blue": 1})
    assert result["failed"] and "unknown backend 'fraud'" in result["msg"] and "Can't find backend." in result["msg"]
    result = run(backend="mlp", weights={"blue": 1, "purple": 2})
    assert result["failed"] and result["msg"] == "backend mlp has no server 'purple' (it has: blue, green)"
    assert haproxy.changes == []


def test_refused_command_reports_what_was_sent(run: Any, haproxy: FakeHAProxy) -> None:
    haproxy.refuse["set server credit-risk/blue weight 10"] = "Backend is using a static LB algorithm.\n\n"
    result = run(backend="credit-risk", weights={"blue": 10, "green": 90})
    assert result["failed"] and result["changed"]
    assert result["commands"] == ["set server credit-risk/green weight 90"]
    assert "HAProxy refused 'set server credit-risk/blue weight 10': Backend is using a static LB" in result["msg"]


def test_socket_errors(run: Any, haproxy: FakeHAProxy, tmp_path: Path) -> None:
    result = run(backend="mlp", server="blue", socket=str(tmp_path / "missing.sock"))
    assert result["failed"] and "does not exist" in result["msg"] and "level admin" in result["msg"]
    (tmp_path / "plain").write_text("")
    result = run(backend="mlp", server="blue", socket=str(tmp_path / "plain"))
    assert result["failed"] and "is not a socket" in result["msg"]
    haproxy.level_admin = False
    result = run(backend="mlp", server="blue", weight=1)
    assert result["failed"] and "Permission denied" in result["msg"] and "level admin" in result["msg"]


def test_state_file_failure_is_reported(run: Any, haproxy: FakeHAProxy, tmp_path: Path) -> None:
    result = run(backend="mlp", server="blue", weight=7, state_file=str(tmp_path / "no" / "dir" / "state"))
    assert result["failed"] and result["changed"]
    assert "the change was made, but HAProxy's server state file" in result["msg"]
    assert haproxy.backends["mlp"]["blue"].weight == 7
    result = run(backend="mlp", server="blue", weight=8, save_state=False, state_file=str(tmp_path / "x" / "s"))
    assert result["changed"] and "state_file" not in result


def test_socket_timeout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A socket that accepts but never answers fails after `timeout`, it does not hang the play."""
    import socket

    directory = Path(tempfile.mkdtemp(prefix="mf-hap-"))
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(str(directory / "s"))
        listener.listen(1)
        started = time.monotonic()
        result = run_module(capsys, backend="mlp", server="blue", socket=str(directory / "s"), timeout=0.5)
        assert result["failed"] and "no complete reply" in result["msg"]
        assert time.monotonic() - started < 5
    finally:
        listener.close()
        shutil.rmtree(directory, ignore_errors=True)


def test_documentation_matches_the_argument_spec() -> None:
    import yaml

    documented = yaml.safe_load(router_weight.DOCUMENTATION)["options"]
    assert set(documented) == set(router_weight.ARGUMENT_SPEC)
    for name, spec in router_weight.ARGUMENT_SPEC.items():
        assert documented[name]["type"] == spec["type"], name
        assert documented[name].get("default") == spec.get("default"), name
        assert documented[name].get("choices") == spec.get("choices"), name
    yaml.safe_load(router_weight.EXAMPLES)
    yaml.safe_load(router_weight.RETURN)
    assert os.access(REPO / "plugins" / "modules" / "router_weight.py", os.R_OK)


def test_grpc_backend_follows_the_weights(run: Any, haproxy: FakeHAProxy, tmp_path: Path) -> None:
    """The router's `<model>_grpc` backend (servers tracking the model's) gets the same weights; states reach it
    through HAProxy's track, so the module sends it none; grpc=false leaves it alone."""
    haproxy.backends["credit-risk_grpc"] = {"blue": FakeServer(100, 100), "green": FakeServer(0, 0)}
    planned = run(backend="credit-risk", weights={"blue": 70, "green": 30}, _ansible_check_mode=True,
                  _ansible_diff=True)
    assert planned["changed"] and haproxy.changes == [] and planned["grpc_backend"] == "credit-risk_grpc"
    assert planned["grpc_after"]["green"]["weight"] == 30
    assert planned["diff"]["after"].endswith("credit-risk_grpc/blue: weight 70, ready\n"
                                             "credit-risk_grpc/green: weight 30, ready\n")
    done = run(backend="credit-risk", weights={"blue": 70, "green": 30})
    assert done["commands"] == [
        "set server credit-risk/green weight 30", "set server credit-risk/blue weight 70",
        "set server credit-risk_grpc/green weight 30", "set server credit-risk_grpc/blue weight 70",
    ]
    assert haproxy.changes == done["commands"]
    assert {name: entry["weight"] for name, entry in done["grpc_after"].items()} == {"blue": 70, "green": 30}
    assert " credit-risk_grpc 2 green 127.0.0.1 2 0 30 0 " in (tmp_path / "server-state").read_text()

    # Out of line (someone used socat on one backend only): the next run brings the gRPC backend back in line.
    haproxy.backends["credit-risk_grpc"]["green"].weight = 99
    haproxy.received.clear()
    again = run(backend="credit-risk", weights={"blue": 70, "green": 30})
    assert again["changed"] and haproxy.changes == ["set server credit-risk_grpc/green weight 30"]

    haproxy.received.clear()
    assert run(backend="credit-risk", server="green", state="drain")["commands"] == [
        "set server credit-risk/green state drain"]
    assert not run(backend="credit-risk", weights={"blue": 0, "green": 100}, grpc=False)["grpc_backend"]
    assert haproxy.backends["credit-risk_grpc"]["green"].weight == 30

    haproxy.backends["credit-risk_grpc"] = {"a": FakeServer(1, 1)}
    failed = run(backend="credit-risk", weights={"blue": 50, "green": 50})
    assert failed["failed"] and failed["msg"].startswith("gRPC backend credit-risk_grpc has no server 'blue', 'green'")
