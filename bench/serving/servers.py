"""The servers bench/serving measures, and one server's life (stdlib only): launch, wait until ready, check its
answers against onnxruntime, stop it cleanly.

:data:`SERVERS` describes modelfleet and the peers; :func:`launch` starts one on one model (pinned to a core,
in its own process group), :func:`wait_ready`, :func:`verify`, :func:`stop` (its own signal, SIGKILL to the
group only as a last resort) and :func:`log_problems` follow it. c1.py and grpc_ab.py reuse them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import tail
from bench.serving.accounting import group_members

PEERS_DIR = Path(__file__).resolve().parent / "peers"
HOST = "127.0.0.1"
TOLERANCE = 1e-5
READY_TIMEOUT_S = 240.0
STOP_TIMEOUT_S = 40.0
DEFAULT_SERVERS = ("modelfleet", "mlserver", "mlserver-inproc", "kserve", "pytriton")


@dataclass(frozen=True)
class Server:
    name: str
    venv: str | None  # peer virtualenv, None for modelfleet's interpreter
    family: str  # "ours", "mlserver/kserve", "pytriton"
    stop_signal: signal.Signals
    ports: int  # how many free ports it needs (HTTP first, gRPC second)
    summary: str


SERVERS: dict[str, Server] = {s.name: s for s in (
    Server("modelfleet", None, "ours", signal.SIGTERM, 2,
           "modelfleet serve: uvicorn+uvloop+httptools, plain ASGI app, dynamic batching (eager dispatch), "
           "inference on the event loop"),
    Server("mlserver", "mlserver", "mlserver/kserve", signal.SIGTERM, 3,
           "MLServer 1.7, default parallel_workers=1 (inference in one worker process fed over IPC), "
           "adaptive batching, custom ORT runtime"),
    Server("mlserver-inproc", "mlserver", "mlserver/kserve", signal.SIGTERM, 3,
           "MLServer 1.7, parallel_workers=0 (inference in the server process), adaptive batching, "
           "custom ORT runtime"),
    Server("kserve", "kserve", "mlserver/kserve", signal.SIGTERM, 2,
           "KServe 0.21 ModelServer (FastAPI/uvicorn, grpc.aio), custom kserve.Model; no batching (KServe "
           "batches only in its Kubernetes sidecar agent)"),
    Server("pytriton", "pytriton", "pytriton", signal.SIGINT, 3,
           "PyTriton 0.7: Triton server (C++ HTTP/gRPC front ends, dynamic batcher) -> Python backend stub -> "
           "this Python process over shared memory"),
)}


@dataclass
class Running:
    server: Server
    model: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    started: float
    log_handle: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


def free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((HOST, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def http(method: str, url: str, body: bytes | None = None, timeout: float = 10.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method,
                                     headers={"Content-Type": "application/json"} if body else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def launch(server: Server, model: dict[str, Any], ctx: dict[str, Any], work: Path, cpu: int) -> Running:
    ports = free_ports(server.ports)
    port = ports[0]
    name = model["name"]
    server_dir = work / f"{server.name}-{name}"
    server_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PEERS_DIR)
    env["PYTHONUNBUFFERED"] = "1"
    if server.venv is None:
        argv = [ctx["modelfleet_python"], "-m", "modelfleet.cli", "serve", model["artifact"], "--host", HOST,
                "--port", str(port), "--grpc-port", str(ports[1]), "--threads", "1", "--max-batch",
                str(model["max_batch"]), "--max-queue-delay-us", str(model["max_queue_delay_us"])]
        env.pop("PYTHONPATH")
    elif server.venv == "mlserver":
        venv = ctx["venvs"]["mlserver"]
        settings = {"host": HOST, "http_port": ports[0], "grpc_port": ports[1], "metrics_port": ports[2],
                    "parallel_workers": 0 if server.name == "mlserver-inproc" else 1, "debug": False}
        model_settings = {"name": name, "implementation": "mlserver_ort.OrtRuntime",
                          "parameters": {"uri": model["onnx"], "version": model["version"]},
                          "max_batch_size": model["max_batch"],
                          "max_batch_time": model["max_queue_delay_us"] / 1e6}
        (server_dir / "settings.json").write_text(json.dumps(settings, indent=1))
        (server_dir / name).mkdir(exist_ok=True)
        (server_dir / name / "model-settings.json").write_text(json.dumps(model_settings, indent=1))
        argv = [str(Path(venv["python"]).parent / "mlserver"), "start", str(server_dir)]
    elif server.venv == "kserve":
        venv = ctx["venvs"]["kserve"]
        argv = [venv["python"], str(PEERS_DIR / "kserve_ort.py"), "--model_name", name, "--model_path",
                model["onnx"], "--http_port", str(port), "--grpc_port", str(ports[1]), "--enable_grpc", "true"]
    elif server.venv == "pytriton":
        venv = ctx["venvs"]["pytriton"]
        env["LD_LIBRARY_PATH"] = ":".join(p for p in (venv["libdir"], env.get("LD_LIBRARY_PATH", "")) if p)
        argv = [venv["python"], str(PEERS_DIR / "pytriton_ort.py"), "--model-name", name, "--model-path",
                model["onnx"], "--http-port", str(ports[0]), "--grpc-port", str(ports[1]), "--metrics-port",
                str(ports[2]), "--max-batch", str(model["max_batch"]), "--max-queue-delay-us",
                str(model["max_queue_delay_us"])]
    else:  # pragma: no cover - table above is exhaustive
        raise ValueError(server.name)
    full = ["taskset", "-c", str(cpu), *argv]
    log_path = work / f"{server.name}-{name}.log"
    handle = log_path.open("wb")
    handle.write(f"$ {shlex.join(full)}\n".encode())
    handle.flush()
    proc = subprocess.Popen(full, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=server_dir,
                            start_new_session=True)
    return Running(server, name, proc, port, log_path, time.monotonic(), handle, {"argv": full, "grpc_port": ports[1]})


def wait_ready(running: Running) -> float:
    url = f"http://{HOST}:{running.port}/v2/models/{running.model}/ready"
    deadline = running.started + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if running.proc.poll() is not None:
            raise RuntimeError(f"exited {running.proc.returncode} before it was ready; last lines of "
                               f"{running.log}:\n{tail(running.log)}")
        with contextlib.suppress(OSError):
            status, _ = http("GET", url, timeout=2.0)
            if status == 200:
                return time.monotonic() - running.started
        time.sleep(0.2)
    raise RuntimeError(f"not ready after {READY_TIMEOUT_S:.0f} s; last lines of {running.log}:\n{tail(running.log)}")


def stop(running: Running) -> dict[str, Any]:
    """The server's own clean shutdown signal; SIGKILL to its process group only as a last resort."""
    pgid = running.proc.pid
    started = time.monotonic()
    result: dict[str, Any] = {"signal": running.server.stop_signal.name}
    if running.proc.poll() is None:
        running.proc.send_signal(running.server.stop_signal)
    try:
        result["exit_code"] = running.proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        result["exit_code"] = None
    # Children (MLServer's workers, tritonserver and its Python stub) must be gone too.
    deadline = time.monotonic() + 10.0
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    leftovers = group_members(pgid)
    result["clean"] = result["exit_code"] is not None and not leftovers
    if leftovers:
        result["leftovers"] = [f"{p.pid} {p.comm}" for p in leftovers]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            running.proc.wait(timeout=5)
    result["seconds"] = round(time.monotonic() - started, 2)
    if running.log_handle:
        running.log_handle.close()
    return result


# Error-level lines Triton prints on every CPU-only start (no GPU driver; PyTriton's generated config).
BENIGN_LOG_LINES = ("CudaDriverHelper has not been initialized", "Failed to set config modification time")


def log_problems(path: Path) -> list[str]:
    pattern = re.compile(r"Traceback|\bERROR\b|\bCRITICAL\b|Exception|^E\d{4} |\berror:")
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    return [line[:240] for line in lines
            if pattern.search(line) and not any(benign in line for benign in BENIGN_LOG_LINES)][:10]


def flatten(data: Any) -> list[float]:
    if isinstance(data, list):
        return [v for item in data for v in flatten(item)]
    return [float(data)]


def verify(running: Running, model: dict[str, Any]) -> dict[str, Any]:
    url = f"http://{HOST}:{running.port}/v2/models/{running.model}/infer"
    worst = 0.0
    for index, check in enumerate(model["checks"]):
        status, body = http("POST", url, check["body"].encode())
        if status != 200:
            raise RuntimeError(f"check row {index}: HTTP {status}: {body[:300]!r}")
        answer = json.loads(body)
        outputs = {o["name"]: o for o in answer.get("outputs", [])}
        output = outputs.get(model["probabilities_output"])
        if output is None:
            raise RuntimeError(f"check row {index}: no output {model['probabilities_output']!r} in {body[:300]!r}")
        got = flatten(output["data"])
        expected = check["expected"]
        if len(got) != len(expected):
            raise RuntimeError(f"check row {index}: {len(got)} values, onnxruntime gives {len(expected)}")
        diff = max(abs(a - b) for a, b in zip(got, expected, strict=True))
        worst = max(worst, diff)
        if diff > TOLERANCE:
            raise RuntimeError(f"check row {index}: max |diff| {diff:.3g} > {TOLERANCE} (got {got}, "
                               f"onnxruntime {expected})")
    return {"rows": len(model["checks"]), "max_abs_diff": worst, "tolerance": TOLERANCE,
            "sample_response": body.decode(errors="replace")[:400]}
