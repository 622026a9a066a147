"""gRPC (Open Inference Protocol) through the router role's HAProxy to real model servers.

Real HAProxy (Debian 2.6) from roles/router/templates/haproxy.cfg.j2 (the `Router` helper of
test_router_haproxy.py), real `modelfleet serve` processes with `--grpc-port` in the slots (each slot's gRPC
port = its HTTP port + router_grpc_port_offset, as the model_server role starts them), tritonclient.grpc and
plain grpc stubs as clients, weights set by the real router_weight module.
"""

from __future__ import annotations

import csv
import math
import shutil
import signal
import socket
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as triton
from client_threads import ClientThreads
from harness import free_port, need, wait_for
from serverkit import Server
from test_router_haproxy import Router, module_direct  # noqa: F401 (a fixture)
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc
from tritonclient.utils import InferenceServerException

pytestmark = pytest.mark.integration

HOST = "127.0.0.1"
OFFSET = 100  # router_grpc_port_offset / model_server_grpc_port_offset
SLOT_HEADER = "x-modelfleet-slot"


@pytest.fixture(autouse=True, scope="module")
def _tools() -> None:
    need("haproxy", "haproxy")


def slot_ports() -> tuple[int, int]:
    """A free HTTP port whose gRPC companion (port + OFFSET) is free too."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind((HOST, port + OFFSET))
            except OSError:
                continue
        return port, port + OFFSET
    raise AssertionError("no free pair of ports")


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="mf-grpc-"))  # unix socket paths are limited to 108 bytes
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def stack(workdir: Path, tmp_path: Path) -> Iterator[Callable[..., tuple[Router, dict[tuple[str, str], Server]]]]:
    """``stack({(model, slot): artifact}, server_args=(...), **role_vars)`` → (router, servers): real servers, HTTP and
    gRPC (``server_args``: more options of ``modelfleet serve``)."""
    routers: list[Router] = []
    servers: list[Server] = []

    def make(slots: dict[tuple[str, str], Path], server_args: tuple[str, ...] = (),
             **overrides: Any) -> tuple[Router, dict[tuple[str, str], Server]]:
        models = sorted({model for model, _ in slots})
        ports = {(m, s): slot_ports() for m in models for s in ("blue", "green")}
        started = {}
        for (model, slot), artifact in slots.items():
            http, grpc_port = ports[model, slot]
            server = Server(artifact, tmp_path, "--port", str(http), "--grpc-port", str(grpc_port),
                            "--shutdown-delay", "0", *server_args)
            servers.append(server)
            started[model, slot] = server.start()
            assert started[model, slot].grpc_port == grpc_port
        specs = [dict(name=m, blue_port=ports[m, "blue"][0], green_port=ports[m, "green"][0]) for m in models]
        router = Router(workdir, specs, router_grpc_port_offset=OFFSET, **overrides)
        routers.append(router)
        router.start()
        for model, slot in slots:
            router.wait_up(model, slot)
        return router, started

    yield make
    for router in routers:
        router.stop()
    for server in servers:
        server.stop()


def stub(router: Router) -> tuple[grpc.Channel, pb_grpc.GRPCInferenceServiceStub]:
    channel = grpc.insecure_channel(f"{HOST}:{router.grpc_port}")
    return channel, pb_grpc.GRPCInferenceServiceStub(channel)


def infer_request(model: str, rows: np.ndarray) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model)
    tensor = request.inputs.add(name="x", datatype="FP32", shape=list(rows.shape))
    del tensor
    request.raw_input_contents.append(np.ascontiguousarray(rows, dtype=np.float32).tobytes())
    return request


def slot_of(call: grpc.Call) -> str:
    return dict(call.initial_metadata() or ()).get(SLOT_HEADER, "?")


def grpc_split(router: Router, model: str, rows: np.ndarray, calls: int) -> Counter[str]:
    """Slots that answered ``calls`` sequential ModelInfer calls on one channel (one HTTP/2 connection)."""
    channel, service = stub(router)
    counts: Counter[str] = Counter()
    try:
        request = infer_request(model, rows)
        for _ in range(calls):
            _, call = service.ModelInfer.with_call(request, timeout=30)
            counts[slot_of(call)] += 1
    finally:
        channel.close()
    return counts


def binomial_bound(calls: int, share: float, z: float = 4.0) -> float:
    """Half-width of a z-sigma interval of a Binomial(calls, share) count: what random routing could miss by
    (weighted round robin does far better; a skew beyond this is not chance)."""
    return z * math.sqrt(calls * share * (1 - share))


def stat_rows(router: Router, backend: str) -> dict[str, dict[str, str]]:
    lines = router.cli(f"show stat {backend} 6 -1").splitlines()  # 2 backend + 4 server rows
    rows = csv.DictReader([lines[0][2:], *[line for line in lines[1:] if line.strip()]])
    return {row["svname"]: row for row in rows}


class GrpcLoad(ClientThreads):
    """Client threads, each with its own channel, sending ModelInfer calls; every outcome is recorded."""

    join_timeout = 60.0

    def __init__(self, router: Router, model: str, rows: np.ndarray, threads: int) -> None:
        super().__init__(threads)
        self.router = router
        self.request = infer_request(model, rows)
        self.results: list[tuple[float, str]] = []  # sent, slot
        self.errors: list[str] = []
        self.limit: int | None = None

    def _run(self) -> None:
        channel, service = stub(self.router)
        try:
            while not self.stopping.is_set():
                sent = time.monotonic()
                try:
                    _, call = service.ModelInfer.with_call(self.request, timeout=30)
                except grpc.RpcError as exc:
                    with self.lock:
                        self.errors.append(f"{exc.code()}: {exc.details()}")
                    continue
                with self.lock:
                    self.results.append((sent, slot_of(call)))
                    if self.limit is not None and len(self.results) >= self.limit:
                        self.stopping.set()
        finally:
            channel.close()

    def run(self, calls: int) -> GrpcLoad:
        self.limit = calls
        with self:
            self.stopping.wait(300)
        return self


def expected_outputs(artifact: Path, rows: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(artifact / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {"x": rows}), strict=True))


# --- tests --------------------------------------------------------------------------------------------


def test_grpc_routes_by_model_name(
    stack: Callable[..., Any], credit_risk_artifact: Path, mlp_artifact: Path, credit_rows: np.ndarray
) -> None:
    """Two models behind one gRPC port, server-level calls, unknown model → NOT_FOUND, a 600 kB request."""
    router, _ = stack({("credit-risk", "blue"): credit_risk_artifact, ("mlp", "blue"): mlp_artifact})
    client = triton.InferenceServerClient(f"{HOST}:{router.grpc_port}")
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.get_server_metadata(as_json=True)["name"] == "modelfleet"
        assert client.is_model_ready("credit-risk") and client.is_model_ready("mlp")
        assert client.get_model_metadata("mlp", as_json=True)["name"] == "mlp"
        assert client.get_model_metadata("credit-risk", as_json=True)["inputs"][0]["shape"] == ["-1", "8"]
        assert client.get_model_config("mlp", as_json=True)["config"]["name"] == "mlp"
        # ModelStatistics without a name (every model) goes to any slot, as the server-level calls do.
        assert client.get_inference_statistics(as_json=True)["model_stats"]

        for model, artifact, width in (("credit-risk", credit_risk_artifact, 8), ("mlp", mlp_artifact, 16)):
            rows = np.resize(credit_rows[:7], (7, width)).astype(np.float32)
            x = triton.InferInput("x", list(rows.shape), "FP32")
            x.set_data_from_numpy(rows)
            result = client.infer(model, [x])
            assert result.get_response().model_name == model
            for name, value in expected_outputs(artifact, rows).items():
                np.testing.assert_allclose(result.as_numpy(name), value, rtol=1e-5, atol=1e-6)

        with pytest.raises(InferenceServerException) as excinfo:
            client.infer("fraud", [x])
        print(f"\nunknown model through the router: {excinfo.value.status()} {excinfo.value.message()!r}")
        assert excinfo.value.status() == "StatusCode.NOT_FOUND"
        assert excinfo.value.message() == "unknown model fraud: not served by this router"
        # Unlike a model server (ModelReady of an unknown model: ready false), the router answers NOT_FOUND for
        # every call about a model it does not route.
        for call in (client.is_model_ready, client.get_model_metadata):
            with pytest.raises(InferenceServerException) as excinfo:
                call("credit-risk-2")
            assert excinfo.value.status() == "StatusCode.NOT_FOUND"

        # ~600 kB in one message (18 750 rows), far more than HAProxy's buffer (router_tune_bufsize, 32 kB): the
        # name is in the first bytes, so it is routed; the server splits it into batches.
        big = np.resize(credit_rows, (18_750, 8)).astype(np.float32)
        x = triton.InferInput("x", list(big.shape), "FP32")
        x.set_data_from_numpy(big)
        result = client.infer("credit-risk", [x], client_timeout=120)
        expected = expected_outputs(credit_risk_artifact, big)
        for name, value in expected.items():
            np.testing.assert_allclose(result.as_numpy(name), value, rtol=1e-5, atol=1e-6)
        print(f"\nlarge gRPC request through the router: {big.nbytes} bytes of input, {len(big)} rows answered")
    finally:
        client.close()

    # A path that is not an OIP method: UNIMPLEMENTED from the router itself.
    channel = grpc.insecure_channel(f"{HOST}:{router.grpc_port}")
    try:
        method = channel.unary_unary("/other.Service/Call", request_serializer=bytes, response_deserializer=bytes)
        with pytest.raises(grpc.RpcError) as raised:
            method(b"", timeout=10)
        assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        channel.close()
    # The HTTP front end is unchanged beside it.
    assert router.get("/v2/models/mlp/ready")[0] == 200


def test_an_oversized_grpc_message_through_the_router_is_the_servers_resource_exhausted(
    stack: Callable[..., Any], credit_risk_artifact: Path, credit_rows: np.ndarray
) -> None:
    """The router leaves gRPC's size limit to the model server (``--max-request-bytes``): a message over it, larger
    than HAProxy's buffer too, gets RESOURCE_EXHAUSTED with the server's message, and the channel keeps serving.
    (HAProxy refusing it by the frame header's length answers before the client has sent it all, then resets the
    stream: clients see CANCELLED "Stream removed"; docs/router.md.)"""
    router, _ = stack({("credit-risk", "blue"): credit_risk_artifact}, server_args=("--max-request-bytes", "100000"))
    channel, service = stub(router)
    try:
        small = infer_request("credit-risk", np.resize(credit_rows, (100, 8)).astype(np.float32))
        assert service.ModelInfer(small, timeout=30).model_name == "credit-risk"
        big = infer_request("credit-risk", np.resize(credit_rows, (18_750, 8)).astype(np.float32))
        with pytest.raises(grpc.RpcError) as raised:
            service.ModelInfer(big, timeout=30)
        print(f"\n{big.ByteSize()} bytes through the router: {raised.value.code()} {raised.value.details()!r}")
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert raised.value.details() == (f"request message of {big.ByteSize()} bytes exceeds the limit of 100000 "
                                          "bytes")
        assert service.ModelInfer(small, timeout=30).model_name == "credit-risk"
    finally:
        channel.close()


def test_grpc_weights_drain_reload(
    stack: Callable[..., Any], credit_risk_artifact: Path, credit_rows: np.ndarray,
    module_direct: Callable[..., dict[str, Any]],  # noqa: F811
) -> None:
    router, _ = stack({("credit-risk", "blue"): credit_risk_artifact, ("credit-risk", "green"): credit_risk_artifact})
    rows = credit_rows[:2]
    assert grpc_split(router, "credit-risk", rows, 20) == Counter(blue=20)  # first install: blue 100, green 0

    args = dict(socket=router.socket, state_file=router.state_file, backend="credit-risk")
    done = module_direct({**args, "weights": {"blue": 30, "green": 70}})
    assert done["changed"] and done["grpc_backend"] == "credit-risk_grpc", done
    assert done["commands"][2:] == ["set server credit-risk_grpc/green weight 70",
                                    "set server credit-risk_grpc/blue weight 30"]
    assert router.servers("credit-risk_grpc") == {"blue": (30, 0, 2), "green": (70, 0, 2)}

    calls = 1000
    split = grpc_split(router, "credit-risk", rows, calls)
    bound = binomial_bound(calls, 0.7)
    print(f"\ngRPC weights 30/70, one client: {dict(split)} of {calls} (expected green {0.7 * calls:.0f} "
          f"± {bound:.0f})")
    assert set(split) == {"blue", "green"} and abs(split["green"] - 0.7 * calls) <= bound

    # Concurrent clients: does anything (retries, redispatches) skew the split? HAProxy's own counters say.
    before = stat_rows(router, "credit-risk_grpc")
    load = GrpcLoad(router, "credit-risk", rows, threads=8).run(calls)
    after = stat_rows(router, "credit-risk_grpc")
    seen = Counter(slot for _, slot in load.results)
    total = sum(seen.values())
    served = {name: int(after[name]["stot"]) - int(before[name]["stot"]) for name in ("blue", "green")}
    retries = {name: (after[name]["wretr"], after[name]["wredis"]) for name in ("blue", "green", "BACKEND")}
    print(f"\ngRPC weights 30/70, 8 clients: clients saw {dict(seen)} of {total}; HAProxy stot per server "
          f"{served}; (wretr, wredis) {retries}; errors {load.errors[:3]}")
    assert load.errors == []
    assert abs(seen["green"] - 0.7 * total) <= binomial_bound(total, 0.7)
    assert served == {"blue": seen["blue"], "green": seen["green"]}
    assert all(value == ("0", "0") for value in retries.values())

    # Drain: health stays, no new calls (inherited through track).
    assert module_direct({**args, "server": "green", "state": "drain"})["changed"]
    assert router.servers("credit-risk_grpc")["green"][1] & 0x10  # inherited drain
    assert grpc_split(router, "credit-risk", rows, 50) == Counter(blue=50)
    assert module_direct({**args, "server": "green", "state": "ready"})["changed"]

    # Reloads keep the gRPC weights (they are in the server state file like the HTTP ones).
    router.reload()
    assert router.servers("credit-risk_grpc") == {"blue": (30, 0, 2), "green": (70, 0, 2)}
    assert router.servers("credit-risk") == {"blue": (30, 0, 2), "green": (70, 0, 2)}
    router.wait_up("credit-risk", "blue", "green")
    split = grpc_split(router, "credit-risk", rows, 200)
    assert abs(split["green"] - 140) <= binomial_bound(200, 0.7), split
    # Maintenance carries over too: all gRPC calls to blue.
    assert module_direct({**args, "server": "green", "state": "maint"})["changed"]
    assert grpc_split(router, "credit-risk", rows, 30) == Counter(blue=30)


def test_grpc_slot_killed_under_clients(
    stack: Callable[..., Any], credit_risk_artifact: Path, credit_rows: np.ndarray,
    module_direct: Callable[..., dict[str, Any]],  # noqa: F811
) -> None:
    router, servers = stack({("credit-risk", "blue"): credit_risk_artifact,
                             ("credit-risk", "green"): credit_risk_artifact})
    args = dict(socket=router.socket, state_file=router.state_file, backend="credit-risk")
    assert module_direct({**args, "weights": {"blue": 50, "green": 50}})["changed"]
    rows = credit_rows[:64]
    with GrpcLoad(router, "credit-risk", rows, threads=6) as load:
        wait_for(lambda: len(load.results) > 100, 30, what="gRPC traffic")
        killed = time.monotonic()
        servers["credit-risk", "green"].signal(signal.SIGKILL)
        wait_for(lambda: router.servers("credit-risk_grpc")["green"][2] == 0, 10, what="green down")
        marked_down = time.monotonic()
        wait_for(lambda: len([r for r in load.results if r[0] > marked_down]) > 100, 30, what="traffic after")
    after_kill = [r for r in load.results if r[0] >= killed]
    stats = stat_rows(router, "credit-risk_grpc")
    print(f"\nslot killed under 6 gRPC clients: {len(load.results)} calls, {len(after_kill)} after the kill, "
          f"errors {len(load.errors)} {load.errors[:3]}; (wretr, wredis) backend "
          f"{stats['BACKEND']['wretr']}, {stats['BACKEND']['wredis']}")
    # A call whose answer the killed server had already begun (DATA sent, trailers not) cannot be retried by any
    # router: that client sees its stream cut ("Stream removed"). Only such calls may fail, at most one per client
    # thread (the calls in flight at the kill); every other call is retried or redispatched to blue.
    cut_mid_answer = [error for error in load.errors if "Stream removed" in error]
    assert load.errors == cut_mid_answer and len(cut_mid_answer) <= 6, load.errors
    assert all(slot == "blue" for sent, slot in load.results if sent >= marked_down)
    # Calls met the dead slot before the HTTP health checks marked it down (the gRPC servers have no checks of
    # their own): HAProxy retried them elsewhere, or the test proved nothing.
    assert int(stats["BACKEND"]["wretr"]) + int(stats["BACKEND"]["wredis"]) > 0
