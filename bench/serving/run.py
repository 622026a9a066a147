#!/usr/bin/env python3
"""Serving benchmark: modelfleet's model server side by side with MLServer, KServe and PyTriton.

One run: prepare one virtualenv per peer (cached), serve the example models' model.onnx with each
server in turn (server pinned to one core, the load generator to the other), check every server's
answer against onnxruntime, load it at each concurrency (wrk for OIP JSON and binary tensors, h2load
for gRPC: grpc_load.py), measure the raw in-process ONNX Runtime ceiling, and write a markdown table,
issue 13's targets (targets.py) and raw JSON to .cache/bench/serving-<timestamp>.{md,json}.

Standard library only: everything that needs numpy/onnxruntime runs in a child interpreter
(ort_tools.py in modelfleet's interpreter, peers/*.py in the peers' virtualenvs).
See README.md beside this file.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))  # started by path (run.sh, make bench-serving): bench.common from the checkout

from bench.common import (  # noqa: E402
    children_cpu_s,
    cores_lock,
    cpu_ticks,
    default_modelfleet_python,
    host_environment,
    interpreter_info,
    loadavg,
    log,
    run_quiet,
    tail,
    terminate_as_interrupt,
)
from bench.common import ensure_venv as common_ensure_venv  # noqa: E402
from bench.common import package_versions as common_package_versions  # noqa: E402
from bench.serving.grpc_load import (  # noqa: E402
    LARGE_MODEL,
    Load,
    check_load,
    h2load,
    h2load_version,
    loads_for,
    prepare_bodies,
)
from bench.serving.targets import find_run, targets, targets_markdown  # noqa: E402

PEERS_DIR = HERE / "peers"
LUA_SCRIPT = HERE / "oip.lua"
HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
TOLERANCE = 1e-5
READY_TIMEOUT_S = 240.0
STOP_TIMEOUT_S = 40.0
MISSING_ARTIFACT = 3  # ort_tools.py prepare: the artifact is not built yet
DEFAULT_SERVERS = ("modelfleet", "mlserver", "mlserver-inproc", "kserve", "pytriton")
DEFAULT_MODELS = ("credit-risk", "mlp", LARGE_MODEL)

# What each peer's virtualenv gets (plus onnxruntime pinned to modelfleet's own release).
# The pins are the ones TESTBED.md found necessary: MLServer 1.7 breaks with starlette >= 0.47 and
# with uvloop >= 0.22 ("There is no current event loop"), and parses HTTP in pure Python without
# httptools; KServe 0.21 needs a newer starlette than MLServer, hence separate venvs; PyTriton's
# bundled Triton needs numpy < 2.
PEER_REQUIREMENTS: dict[str, list[str]] = {
    "mlserver": ["mlserver~=1.7.0", "starlette<0.47", "uvloop<0.22", "httptools"],
    "kserve": ["kserve~=0.21.0", "httptools"],
    "pytriton": ["nvidia-pytriton~=0.7.0", "numpy<2"],
}
PEER_IMPORTS = {"mlserver": "mlserver, onnxruntime, uvloop, httptools",
                "kserve": "kserve, onnxruntime, httptools",
                "pytriton": "pytriton.triton, onnxruntime"}
KEY_PACKAGES = ("mlserver", "kserve", "nvidia-pytriton", "tritonclient", "onnxruntime", "numpy", "starlette",
                "fastapi", "uvicorn", "uvloop", "httptools", "modelfleet")


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


# --------------------------------------------------------------------------- small utilities


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


# --------------------------------------------------------------------------- /proc accounting


@dataclass(frozen=True)
class ProcStat:
    pid: int
    comm: str
    pgrp: int
    ticks: int  # utime + stime
    cpu: int  # processor it last ran on


def proc_stats() -> dict[int, ProcStat]:
    stats: dict[int, ProcStat] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1: raw.rindex(")")]
        rest = raw[raw.rindex(")") + 2:].split()
        # rest[0] is field 3 (state): pgrp is field 5, utime/stime 14/15, processor 39.
        stats[int(entry.name)] = ProcStat(int(entry.name), comm, int(rest[2]), int(rest[11]) + int(rest[12]),
                                          int(rest[36]))
    return stats


def group_members(pgid: int, stats: dict[int, ProcStat] | None = None) -> list[ProcStat]:
    return [s for s in (stats or proc_stats()).values() if s.pgrp == pgid]


def cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""
    return " ".join(raw.replace("\0", " ").split())


def ps_snapshot(limit: int = 12) -> list[dict[str, Any]]:
    """The processes with the most CPU time since they started (ps-like), with the core they last ran on."""
    result = run_quiet(["ps", "-eo", "pid,psr,pcpu,etimes,comm", "--sort=-pcpu", "--no-headers"])
    rows = []
    for line in result.stdout.splitlines()[:limit]:
        pid, psr, pcpu, etimes, comm = line.split(None, 4)
        rows.append({"pid": int(pid), "cpu": int(psr), "pcpu_lifetime": float(pcpu), "elapsed_s": int(etimes),
                     "comm": comm, "cmd": cmdline(int(pid))[:160]})
    return rows


def wait_quiet(cpus: Sequence[int], max_other: float, max_wait: float, pgid: int | None = None) -> dict[str, Any]:
    """Wait until other processes use at most max_other % of each core (2 s samples), at most max_wait s.

    The machine is shared: tests, builds and other benchmarks come and go. Nothing of the benchmark
    but an idle server (process group pgid, subtracted) runs while this samples.
    """
    started = time.monotonic()
    while True:
        cores0, procs0 = cpu_ticks(), proc_stats()
        time.sleep(2.0)
        cores1, procs1 = cpu_ticks(), proc_stats()
        own = 0.0
        if pgid is not None:
            own = 100.0 * sum(p.ticks - procs0[p.pid].ticks for p in group_members(pgid, procs1)
                              if p.pid in procs0) / CLK_TCK / 2.0
        busy = {}
        for cpu in cpus:
            b1, t1, _ = cores1[f"cpu{cpu}"]
            b0, t0, _ = cores0[f"cpu{cpu}"]
            busy[f"cpu{cpu}"] = round(100.0 * (b1 - b0) / max(1, t1 - t0), 1)
        other = {name: max(0.0, value - (own if name == f"cpu{cpus[0]}" else 0.0)) for name, value in busy.items()}
        waited = time.monotonic() - started
        if max(other.values()) <= max_other or waited >= max_wait:
            return {"waited_s": round(waited, 1), "other_pct": {k: round(v, 1) for k, v in other.items()},
                    "quiet": max(other.values()) <= max_other}


class Window:
    """CPU used during one wrk run: per core, by the server's process group, by wrk, by everything else."""

    def __init__(self, pgid: int) -> None:
        self.pgid = pgid
        self.t0 = time.monotonic()
        self.cores0 = cpu_ticks()
        self.procs0 = proc_stats()
        self.children0 = children_cpu_s()

    def finish(self, server_cpu: int, load_cpu: int) -> dict[str, Any]:
        seconds = time.monotonic() - self.t0
        cores1 = cpu_ticks()
        procs1 = proc_stats()
        wrk_s = children_cpu_s() - self.children0
        server_ticks = sum(p.ticks - self.procs0[p.pid].ticks if p.pid in self.procs0 else p.ticks
                           for p in group_members(self.pgid, procs1))
        cores: dict[str, float] = {}
        steal: dict[str, float] = {}
        for name, (busy, total, stolen) in cores1.items():
            busy0, total0, stolen0 = self.cores0.get(name, (busy, total, stolen))
            cores[name] = 100.0 * (busy - busy0) / max(1, total - total0)
            steal[name] = 100.0 * (stolen - stolen0) / max(1, total - total0)
        server_pct = 100.0 * server_ticks / CLK_TCK / seconds
        wrk_pct = 100.0 * wrk_s / seconds
        others: list[dict[str, Any]] = []
        for pid, after in procs1.items():
            before = self.procs0.get(pid)
            if after.pgrp == self.pgid or pid == os.getpid():
                continue
            # A process that started during the window counts whole; one that ended in it is not seen.
            pct = 100.0 * (after.ticks - (before.ticks if before else 0)) / CLK_TCK / seconds
            if pct >= 0.5:
                others.append({"pid": pid, "comm": after.comm, "cpu": after.cpu, "pct": round(pct, 1),
                               "cmd": cmdline(pid)[:160]})
        others.sort(key=lambda o: -o["pct"])
        server_core = cores.get(f"cpu{server_cpu}", 0.0)
        load_core = cores.get(f"cpu{load_cpu}", 0.0)
        return {
            "seconds": round(seconds, 3),
            "core_busy_pct": {k: round(v, 1) for k, v in cores.items()},
            "core_steal_pct": {k: round(v, 1) for k, v in steal.items()},  # time the hypervisor took away
            "server_cpu_pct": round(server_pct, 1),
            "server_cpu_s": round(server_ticks / CLK_TCK, 2),
            "wrk_cpu_pct": round(wrk_pct, 1),
            "other_on_server_core_pct": round(max(0.0, server_core - server_pct), 1),
            "other_on_load_core_pct": round(max(0.0, load_core - wrk_pct), 1),
            "other_processes": others[:8],  # those that ran while wrk did (excluding the server and wrk)
        }


# --------------------------------------------------------------------------- environments


def package_versions(python: str) -> dict[str, str]:
    return common_package_versions(python, KEY_PACKAGES)


def ensure_venv(name: str, base_python: str, ort_version: str, cache: Path, rebuild: bool) -> dict[str, Any]:
    """Create (or reuse) .cache/bench/venvs/<name>; returns its description or raises RuntimeError."""
    requirements = [*PEER_REQUIREMENTS[name], f"onnxruntime=={ort_version}"]
    return common_ensure_venv(cache / "venvs" / name, base_python, requirements, PEER_IMPORTS[name],
                              package_names=KEY_PACKAGES, rebuild=rebuild)


def prepare_model(model: str, mf_python: str, artifacts: Path, work: Path) -> dict[str, Any]:
    model_yml = ROOT / "examples" / model / "model.yml"
    if model == LARGE_MODEL:  # built on the fly (protocols.py), like the front-end comparison there
        code = ("import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); from protocols import "
                "build_large; build_large(Path(sys.argv[2]), Path(sys.argv[3]))")
        built = run_quiet([mf_python, "-c", code, str(HERE), str(work / "src"), str(work / "artifacts")], cwd=ROOT)
        if built.returncode != 0:
            raise SystemExit(f"building the large-input model failed:\n{built.stderr[-2000:]}")
        model_yml, artifacts = work / "src" / LARGE_MODEL / "model.yml", work / "artifacts"
    out_json = work / f"{model}.model.json"
    body = work / f"{model}.body.json"
    argv = [mf_python, str(HERE / "ort_tools.py"), "prepare", str(model_yml), str(artifacts), str(out_json),
            str(body)]
    result = run_quiet(argv)
    if result.returncode == MISSING_ARTIFACT:
        log(f"{model}: no artifact under {artifacts}; training and converting it")
        for step in ([mf_python, str(ROOT / "examples" / model / "train.py")],
                     [mf_python, "-m", "modelfleet.cli", "convert", str(model_yml), "--output", str(artifacts)]):
            built = run_quiet(step, cwd=ROOT)
            if built.returncode != 0:
                raise SystemExit(f"{shlex.join(step)} failed:\n{built.stdout[-2000:]}{built.stderr[-2000:]}")
        result = run_quiet(argv)
    if result.returncode != 0:
        raise SystemExit(f"{shlex.join(argv)} failed:\n{result.stderr[-3000:]}")
    info: dict[str, Any] = json.loads(out_json.read_text())
    return info


def ort_ceiling(model: dict[str, Any], mf_python: str, cpu: int, seconds: float) -> dict[str, Any]:
    argv = ["taskset", "-c", str(cpu), mf_python, str(HERE / "ort_tools.py"), "ceiling", model["onnx"],
            model["samples"], "--seconds", str(seconds), "--batch", "1", "--batch", "32"]
    result = run_quiet(argv)
    if result.returncode != 0:
        return {"error": result.stderr[-2000:]}
    ceiling: dict[str, Any] = json.loads(result.stdout)
    return ceiling


# --------------------------------------------------------------------------- servers


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


def wrk(url: str, body_file: str, concurrency: int, seconds: int, cpu: int,
        header_bytes: int | None = None) -> dict[str, Any]:
    argv = ["taskset", "-c", str(cpu), "wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--latency",
            "--timeout", "10s", "-s", str(LUA_SCRIPT), url, "--", body_file,
            *([str(header_bytes)] if header_bytes is not None else [])]
    result = run_quiet(argv, timeout=seconds + 60)
    line = next((ln for ln in result.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result (exit {result.returncode}): {result.stdout[-500:]}"
                           f"{result.stderr[-500:]}")
    data: dict[str, Any] = json.loads(line[len("WRK_JSON "):])
    duration = data["duration_us"] / 1e6
    errors = data["errors"]
    data["rps"] = data["requests"] / duration
    data["ok_rps"] = (data["requests"] - data["non2xx"]) / duration
    data["p50_ms"] = data["latency_us"]["p50"] / 1000
    data["p99_ms"] = data["latency_us"]["p99"] / 1000
    data["socket_errors"] = errors["connect"] + errors["read"] + errors["write"] + errors["timeout"]
    return data


def disturbance(cpu: dict[str, Any], server_cpu: int) -> float:
    """How much others got in the way: CPU they took on the server's core or on wrk's (a wrk that waits
    for its core leaves the server idle), or time the hypervisor took from the server's core."""
    return float(max(cpu["other_on_server_core_pct"], cpu["other_on_load_core_pct"],
                     cpu.get("core_steal_pct", {}).get(f"cpu{server_cpu}", 0.0)))


def measure_point(running: Running, model: str, load: Load, answer_bytes: int, concurrency: int,
                  args: argparse.Namespace) -> dict[str, Any]:
    """One point (load, concurrency): warm-up, measured run, again while others disturbed it (the least
    disturbed attempt is kept)."""
    cpus = (args.server_cpu, args.load_cpu)
    url = f"http://{HOST}:{running.port}/v2/models/{model}/infer"

    def drive(seconds: int) -> dict[str, Any]:
        if load.protocol == "grpc":
            return h2load(f"{HOST}:{running.extra['grpc_port']}", load.body, concurrency, seconds, args.load_cpu,
                          answer_bytes)
        return wrk(url, load.body, concurrency, seconds, args.load_cpu, load.header_bytes)

    attempts: list[dict[str, Any]] = []
    for attempt in range(1 + args.retries):
        if attempt:
            quiet = wait_quiet(cpus, args.max_other, args.retry_wait, running.proc.pid)
            if not quiet["quiet"]:
                log(f"  C={concurrency}: still busy after {quiet['waited_s']} s (others "
                    f"{quiet['other_pct']}); keeping what was measured")
                break
            log(f"  C={concurrency}: quiet after {quiet['waited_s']} s; measuring again")
        if args.warmup > 0:
            warm = drive(args.warmup)
            if warm["non2xx"] or warm["socket_errors"]:
                log(f"  warm-up C={concurrency}: {warm['non2xx']} non-2xx, "
                    f"{warm['socket_errors']} socket errors")
        window = Window(running.proc.pid)
        result = drive(args.duration)
        result["concurrency"] = concurrency
        result["protocol"], result["rows"] = load.protocol, load.rows
        result["rows_per_s"] = result["ok_rps"] * load.rows
        result["cpu"] = window.finish(args.server_cpu, args.load_cpu)
        cpu_s = result["cpu"]["server_cpu_s"]
        # CPU cost per answered request: barely moved by other processes sharing the core.
        ok = result["requests"] - result["non2xx"]
        result["cpu_us_per_request"] = 1e6 * cpu_s / ok if ok and cpu_s else None
        result["req_per_cpu_s"] = ok / cpu_s if cpu_s else None
        result["disturbance_pct"] = disturbance(result["cpu"], args.server_cpu)
        attempts.append(result)
        other = result["cpu"]["other_on_server_core_pct"]
        log(f"  {load.protocol} x{load.rows} C={concurrency:>3}: {result['ok_rps']:8.0f} req/s  "
            f"p50 {result['p50_ms']:6.2f} ms  p99 {result['p99_ms']:6.2f} ms  non-2xx {result['non2xx']}  "
            f"socket errors {result['socket_errors']}  server CPU {result['cpu']['server_cpu_pct']}% "
            f"({result['cpu_us_per_request'] or 0:.0f} µs/req)  "
            f"others on core {args.server_cpu}: {other}%, on core {args.load_cpu}: "
            f"{result['cpu']['other_on_load_core_pct']}%")
        if running.proc.poll() is not None:
            raise RuntimeError(f"server exited {running.proc.returncode} during the C={concurrency} run; "
                               f"last lines of {running.log}:\n{tail(running.log)}")
        if result["disturbance_pct"] <= args.max_other:
            break
    best = min(attempts, key=lambda a: a["disturbance_pct"])
    best["noisy"] = best["disturbance_pct"] > args.max_other
    best["attempts"] = [{"ok_rps": a["ok_rps"], "p50_ms": a["p50_ms"], "p99_ms": a["p99_ms"],
                         "non2xx": a["non2xx"], "disturbance_pct": a["disturbance_pct"],
                         "other_on_server_core_pct": a["cpu"]["other_on_server_core_pct"],
                         "other_on_load_core_pct": a["cpu"]["other_on_load_core_pct"]} for a in attempts]
    return best


def bench_one(server: Server, model: dict[str, Any], loads: list[Load], ctx: dict[str, Any], work: Path,
              args: argparse.Namespace) -> dict[str, Any]:
    record: dict[str, Any] = {"server": server.name, "model": model["name"], "family": server.family,
                              "loadavg_before": loadavg(), "ps_before": ps_snapshot(8), "runs": []}
    cpus = (args.server_cpu, args.load_cpu)
    record["quiet_before"] = wait_quiet(cpus, args.max_other, args.quiet_wait)
    if not record["quiet_before"]["quiet"]:
        log(f"machine still busy after {record['quiet_before']['waited_s']} s "
            f"(others {record['quiet_before']['other_pct']}); measuring anyway")
    log(f"{server.name} / {model['name']}: starting")
    running = launch(server, model, ctx, work, args.server_cpu)
    record["argv"] = running.extra["argv"]
    record["log"] = str(running.log)
    try:
        record["startup_s"] = round(wait_ready(running), 2)
        record["verify"] = verify(running, model)
        log(f"{server.name} / {model['name']}: ready in {record['startup_s']} s, answers match onnxruntime "
            f"(max |diff| {record['verify']['max_abs_diff']:.2g})")
        for load in loads:
            answer_bytes = 0
            if load.expected is not None:
                address = (f"{HOST}:{running.extra['grpc_port']}" if load.protocol == "grpc"
                           else f"{HOST}:{running.port}")
                try:
                    checked = check_load(ctx["modelfleet_python"], load, address, model["name"])
                except RuntimeError as exc:  # this kind of request only: the others are still measured
                    record.setdefault("skipped", []).append(str(exc))
                    log(f"  {load.protocol} x{load.rows}: answer does not check out, not measured: {exc}")
                    continue
                answer_bytes = checked["response_bytes"]
                record.setdefault("checks", []).append({"protocol": load.protocol, "rows": load.rows, **checked})
            for concurrency in (args.large_concurrency if model["name"] == LARGE_MODEL else args.concurrency):
                record["runs"].append(measure_point(running, model["name"], load, answer_bytes, concurrency, args))
    except (RuntimeError, OSError, ValueError) as exc:
        record["error"] = str(exc)
        log(f"{server.name} / {model['name']}: FAILED: {exc}")
    finally:
        record["stop"] = stop(running)
        record["log_problems"] = log_problems(running.log)
        record["loadavg_after"] = loadavg()
        state = "clean" if record["stop"]["clean"] else f"NOT clean: {record['stop']}"
        log(f"{server.name} / {model['name']}: stopped with {record['stop']['signal']} in "
            f"{record['stop']['seconds']} s, exit {record['stop']['exit_code']}, {state}")
    return record


# --------------------------------------------------------------------------- report


RATIO_METRICS = {"ok_rps": "req/s", "req_per_cpu_s": "req per server CPU-second"}


def ratios(results: dict[str, Any]) -> dict[str, Any]:
    """At the highest concurrency: modelfleet against the best of MLServer/KServe and against PyTriton."""
    records = results["servers"]
    top = max(results["settings"]["concurrency"])
    out: dict[str, Any] = {"concurrency": top, "models": {}}
    for model in results["settings"]["models"]:
        ours = find_run(records, "modelfleet", model, top)
        entry: dict[str, Any] = {}
        measured = {name: run for name in SERVERS if name != "modelfleet"
                    if (run := find_run(records, name, model, top)) is not None}
        if ours is None:
            out["models"][model] = entry
            continue
        for metric in RATIO_METRICS:
            mk = [(name, run) for name, run in measured.items()
                  if SERVERS[name].family == "mlserver/kserve" and run.get(metric)]
            if mk and ours.get(metric):
                best_name, best = max(mk, key=lambda item: item[1][metric])
                entry[f"{metric}_vs_best_mlserver_kserve"] = {
                    "peer": best_name, "ours": ours[metric], "peer_value": best[metric],
                    "ratio": ours[metric] / best[metric]}
            triton = measured.get("pytriton")
            if triton and triton.get(metric) and ours.get(metric):
                entry[f"{metric}_vs_pytriton"] = {"ours": ours[metric], "peer_value": triton[metric],
                                                  "ratio": ours[metric] / triton[metric]}
        entry["p99_ms"] = {"modelfleet": ours["p99_ms"], **{n: r["p99_ms"] for n, r in measured.items()}}
        entry["p99_peer_over_ours"] = {n: r["p99_ms"] / ours["p99_ms"] for n, r in measured.items()}
        ceiling = results["ceiling"].get(model, {}).get("batches", {}).get("32")
        if ceiling:
            entry["vs_ort_batch32_ceiling"] = {
                "ours_rows_per_s": ours["ok_rps"], "ours_rows_per_cpu_s": ours.get("req_per_cpu_s"),
                "ceiling_rows_per_s": ceiling["rows_per_s"], "fraction": ours["ok_rps"] / ceiling["rows_per_s"],
                "ceiling_rows_per_cpu_s": ceiling.get("rows_per_cpu_s"),
                "fraction_per_cpu_s": (ours["req_per_cpu_s"] / ceiling["rows_per_cpu_s"]
                                       if ours.get("req_per_cpu_s") and ceiling.get("rows_per_cpu_s") else None)}
        out["models"][model] = entry
    return out


def markdown(results: dict[str, Any]) -> str:
    s = results["settings"]
    env = results["environment"]
    server_cpu, load_cpu = s["server_cpu"], s["load_cpu"]
    lines = [f"# Serving benchmark {results['timestamp']}"
             + (" (INTERRUPTED: partial)" if results.get("interrupted") else ""), "",
             f"Command: `{results['command']}`  ",
             f"Machine: {env['cpu_model']}, {env['cores']} cores ({env['virtualization']}), kernel "
             f"{env['kernel']}, {env['memory_gib']} GiB  ",
             f"Servers on core {server_cpu} (`taskset -c {server_cpu}`), the load generator (wrk for HTTP, h2load "
             f"for gRPC, 1 thread) on core {load_cpu} (`taskset -c {load_cpu}`); {s['duration_s']} s per point after "
             f"{s['warmup_s']} s warm-up; protocols {', '.join(s.get('protocols', ['json']))}; ONNX Runtime "
             f"{env['onnxruntime']} with 1 intra-op thread in every server.  ",
             f"modelfleet at {env['git']['commit'][:12]}"
             + (f" (serve/ changes not committed: {', '.join(env['git']['serve_dirty'])})"
                if env["git"]["serve_dirty"] else "") + ".", "",
             "## Throughput and latency", "",
             f"| server | model | protocol | rows/req | C | req/s | p50 ms | p99 ms | non-2xx | socket errors | "
             f"server CPU % | CPU µs/req | req per CPU-s | others on core {server_cpu} % | "
             f"others on core {load_cpu} % |",
             "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for record in results["servers"]:
        if record.get("error") and not record["runs"]:
            lines.append(f"| {record['server']} | {record['model']} | – | – | – | failed: see below "
                         "| | | | | | | | | |")
        for run in record["runs"]:
            cpu = run["cpu"]
            per_req = f"{run['cpu_us_per_request']:.0f}" if run.get("cpu_us_per_request") else "–"
            per_cpu = f"{run['req_per_cpu_s']:,.0f}" if run.get("req_per_cpu_s") else "–"
            lines.append(
                f"| {record['server']} | {record['model']} | {run.get('protocol', 'json')} | {run.get('rows', 1)} | "
                f"{run['concurrency']}{' †' if run.get('noisy') else ''} | "
                f"{run['ok_rps']:,.0f} | {run['p50_ms']:.2f} | {run['p99_ms']:.2f} | {run['non2xx']} | "
                f"{run['socket_errors']} | {cpu['server_cpu_pct']:.0f} | {per_req} | {per_cpu} | "
                f"{cpu['other_on_server_core_pct']:.0f} | {cpu['other_on_load_core_pct']:.0f} |")
    lines += ["", "req/s counts 2xx answers only (gRPC: answers with grpc-status 0, see bench/serving/grpc_load.py); "
              "latencies are wrk's or h2load's (closed loop, per connection). "
              f"'server CPU %' is the CPU time of the server's whole process group over the window (100 = all of "
              f"core {server_cpu}); 'CPU µs/req' and 'req per CPU-s' divide by it, so they change little when "
              f"other processes share the core. 'others on core N' is that core's busy time minus the server "
              f"(core {server_cpu}) or wrk (core {load_cpu}). A point during which others used more than "
              f"{s['max_other']:g} % of either core, or during which the hypervisor took that much of core "
              f"{server_cpu} (steal), was measured again (up to {s['retries']} times, only "
              f"once the cores were quiet) and the least disturbed attempt is shown; † marks points that stayed "
              f"above it (every attempt is in the JSON).", "",
              f"## Raw ONNX Runtime ceiling (in process, 1 thread, core {server_cpu})", "",
              "| model | batch | rows/s | rows per CPU-s | calls/s | call p50 µs |", "|---|--:|--:|--:|--:|--:|"]
    for model, ceiling in results["ceiling"].items():
        if "error" in ceiling:
            lines.append(f"| {model} | – | failed | | | |")
            continue
        for size, b in ceiling["batches"].items():
            per_cpu = f"{b['rows_per_cpu_s']:,.0f}" if b.get("rows_per_cpu_s") else "–"
            lines.append(f"| {model} | {size} | {b['rows_per_s']:,.0f} | {per_cpu} | {b['calls_per_s']:,.0f} | "
                         f"{b['call_p50_us']:.1f} |")
    quiet = results.get("quiet_before_ceiling")
    if quiet:
        lines += ["", f"Before the ceiling ran, other processes used {quiet['other_pct']} of the cores (after "
                  f"waiting {quiet['waited_s']:.0f} s); rows per CPU-s does not depend on them."]
    r = results["ratios"]
    lines += ["", f"## Ratios at C={r['concurrency']}", "",
              "| model | metric | modelfleet | best of MLServer/KServe | modelfleet ÷ it | PyTriton | "
              "modelfleet ÷ PyTriton |", "|---|---|--:|--:|--:|--:|--:|"]
    for model, entry in r["models"].items():
        for metric, label in RATIO_METRICS.items():
            mk = entry.get(f"{metric}_vs_best_mlserver_kserve")
            tr = entry.get(f"{metric}_vs_pytriton")
            if not mk and not tr:
                continue
            ours_value = (mk or tr or {}).get("ours", 0.0)
            lines.append(
                f"| {model} | {label} | {ours_value:,.0f} | "
                + (f"{mk['peer_value']:,.0f} ({mk['peer']}) | **{mk['ratio']:.2f}×** | " if mk else "– | – | ")
                + (f"{tr['peer_value']:,.0f} | **{tr['ratio']:.2f}×** |" if tr else "– | – |"))
    names = list(SERVERS)
    lines += ["", f"p99 latency (ms) at C={r['concurrency']}:", "",
              "| model | " + " | ".join(names) + " |", "|---|" + "--:|" * len(names)]
    for model, entry in r["models"].items():
        if "p99_ms" in entry:
            lines.append(f"| {model} | " + " | ".join(
                f"{entry['p99_ms'][n]:.2f}" if n in entry["p99_ms"] else "–" for n in names) + " |")
    for model, entry in r["models"].items():
        e = entry.get("vs_ort_batch32_ceiling")
        if e:
            per_cpu = (f"; per CPU-second, {e['ours_rows_per_cpu_s']:,.0f} vs {e['ceiling_rows_per_cpu_s']:,.0f} "
                       f"rows = {100 * e['fraction_per_cpu_s']:.2f} %" if e.get("fraction_per_cpu_s") else "")
            lines.append("")
            lines.append(f"{model}: modelfleet at C={r['concurrency']} serves {e['ours_rows_per_s']:,.0f} rows/s = "
                         f"**{100 * e['fraction']:.2f} %** of the raw ONNX Runtime batch-32 ceiling "
                         f"({e['ceiling_rows_per_s']:,.0f} rows/s){per_cpu}.")
    lines += ["", "## What else ran", "",
              f"Load average at start {results['loadavg_start']}, at end {results['loadavg_end']}. "
              f"Processes outside the benchmark that used ≥ 2 % of a core during a measured window (from "
              f"/proc; processes that started and ended inside a window are not seen, only their share of "
              f"'others on core N'):", ""]
    steal = [run["cpu"]["core_steal_pct"].get(f"cpu{server_cpu}", 0.0)
             for record in results["servers"] for run in record["runs"] if "core_steal_pct" in run["cpu"]]
    if steal:
        lines += [f"- hypervisor steal on core {server_cpu} during measured windows: max {max(steal):.1f} %, "
                  f"mean {sum(steal) / len(steal):.1f} %"]
    seen: dict[int, dict[str, Any]] = {}
    for record in results["servers"]:
        for run in record["runs"]:
            for other in run["cpu"]["other_processes"]:
                entry = seen.setdefault(other["pid"], {"pct": 0.0, "windows": 0, "cores": set(),
                                                       "what": other["cmd"][:100] or f"[{other['comm']}]"})
                entry["pct"] = max(entry["pct"], other["pct"])
                entry["windows"] += 1
                entry["cores"].add(other["cpu"])
    busy = sorted((e for e in seen.values() if e["pct"] >= 2.0), key=lambda e: -e["pct"])
    lines += [f"- `{e['what']}` — up to {e['pct']:.1f} % of a core, in {e['windows']} window(s), seen on core(s) "
              f"{', '.join(map(str, sorted(e['cores'])))}" for e in busy[:20]] or ["- none"]
    if len(busy) > 20:
        lines.append(f"- … and {len(busy) - 20} more (see the JSON)")
    lines += ["", "## Servers", "", "| server | model | what runs | others before start % | startup s | "
              "answers vs ORT | stop |", "|---|---|---|---|--:|---|---|"]
    for record in results["servers"]:
        verify_text = (f"max abs diff {record['verify']['max_abs_diff']:.1e}" if "verify" in record
                       else "not checked")
        stop_info = record["stop"]
        stop_text = (f"{stop_info['signal']} → exit {stop_info['exit_code']} in {stop_info['seconds']} s"
                     + ("" if stop_info["clean"] else f", NOT clean {stop_info.get('leftovers', '')}"))
        quiet = ", ".join(f"{k} {v:.0f}" for k, v in record["quiet_before"]["other_pct"].items())
        lines.append(f"| {record['server']} | {record['model']} | {SERVERS[record['server']].summary} | "
                     f"{quiet} (waited {record['quiet_before']['waited_s']:.0f} s) | {record.get('startup_s', '–')} | "
                     f"{verify_text} | {stop_text} |")
    failures = [rec for rec in results["servers"] if rec.get("error")] + [
        {"server": n, "model": "*", "error": e} for n, e in results["peer_setup_errors"].items()]
    problems = [rec for rec in results["servers"] if rec["log_problems"]]
    if failures or problems:
        lines += ["", "## Failures and log problems", ""]
        for rec in failures:
            lines += [f"- {rec['server']} / {rec['model']}:", "", "  ```", *[f"  {ln}" for ln in
                      str(rec["error"]).splitlines()[-20:]], "  ```"]
        for rec in problems:
            lines += [f"- {rec['server']} / {rec['model']} log lines that look like errors:", "", "  ```",
                      *[f"  {ln}" for ln in rec["log_problems"]], "  ```"]
    lines += ["", "## Versions", ""]
    for name, versions in env["packages"].items():
        lines.append(f"- {name}: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())))
    lines += [f"- wrk: {env['wrk']}; {env.get('h2load', 'h2load: ?')}",
              f"- wall time of this run: {results['wall_s']:.0f} s", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def environment(ctx: dict[str, Any]) -> dict[str, Any]:
    lscpu = run_quiet(["lscpu"]).stdout
    hypervisor = re.search(r"Hypervisor vendor:\s*(.*)", lscpu)
    wrk_version = run_quiet(["wrk", "-v"])
    wrk_text = wrk_version.stdout + wrk_version.stderr
    host = host_environment(["src/modelfleet/serve"], dirty_key="serve_dirty")
    return {
        **{key: host[key] for key in ("cpu_model", "cores")},
        "virtualization": f"{hypervisor.group(1).strip()} VM" if hypervisor else "bare metal or unknown",
        **{key: host[key] for key in ("kernel", "memory_gib")},
        "wrk": wrk_text.splitlines()[0] if wrk_text else "?",
        "h2load": h2load_version(),
        "onnxruntime": ctx["ort_version"],
        "git": host["git"],
        "packages": {"modelfleet": ctx["modelfleet_packages"],
                     **{name: v["packages"] for name, v in ctx["venvs"].items()}},
        "interpreters": {"modelfleet": ctx["modelfleet_interpreter"],
                         **{name: {"python": v["python"], "libdir": v["libdir"]} for name, v in ctx["venvs"].items()}},
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modelfleet-python", default=default_modelfleet_python(),
                        help="interpreter with modelfleet installed (default: /work/.venv-dev/bin/python if "
                             "present, else the checkout's .venv)")
    parser.add_argument("--peer-python", default="python3",
                        help="base interpreter for the peers' virtualenvs (default python3)")
    parser.add_argument("--servers", default=",".join(DEFAULT_SERVERS),
                        help=f"comma-separated, from {', '.join(SERVERS)} (default all)")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS),
                        help=f"examples/<model> to serve; {LARGE_MODEL!r}: the large-input model, built on the fly "
                             "and served by the --extra-servers only")
    parser.add_argument("--protocols", default="json,grpc,binary",
                        help="json (wrk), grpc (h2load), binary (Triton's binary tensors over HTTP, wrk; large "
                             "input only); default all")
    parser.add_argument("--extra-servers", default="modelfleet",
                        help="servers that also get the large-input model and 32-row requests (default modelfleet)")
    parser.add_argument("--concurrency", default="1,8,32", help="connections per point (default 1,8,32)")
    parser.add_argument("--large-concurrency", default="1,8",
                        help="connections per point for the large-input model (default 1,8)")
    parser.add_argument("--duration", type=int, default=10, help="seconds measured per point (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of unmeasured load before each point")
    parser.add_argument("--ceiling-seconds", type=float, default=3.0,
                        help="seconds per batch size for the raw ONNX Runtime ceiling")
    parser.add_argument("--max-other", type=float, default=10.0,
                        help="a point during which other processes used more than this %% of either core "
                             "is measured again (default 10)")
    parser.add_argument("--retries", type=int, default=2, help="extra attempts for a noisy point (default 2)")
    parser.add_argument("--quiet-wait", type=float, default=60.0,
                        help="before each server starts, wait up to this many seconds for the cores to be "
                             "quiet (default 60)")
    parser.add_argument("--retry-wait", type=float, default=20.0,
                        help="before measuring a noisy point again, wait up to this long for quiet (default 20)")
    parser.add_argument("--lock-timeout", type=float, default=3600.0,
                        help="longest wait for .cache/bench/cores.lock, held by a benchmark that is measuring")
    parser.add_argument("--server-cpu", type=int, default=0, help="core the servers are pinned to")
    parser.add_argument("--load-cpu", type=int, default=1, help="core wrk is pinned to")
    parser.add_argument("--artifacts", type=Path, default=ROOT / ".cache" / "artifacts",
                        help="artifact root (<root>/<name>/<version>); missing ones are built")
    parser.add_argument("--cache", type=Path, default=ROOT / ".cache" / "bench",
                        help="venvs, logs and results (default .cache/bench)")
    parser.add_argument("--rebuild-venvs", action="store_true", help="recreate the peers' virtualenvs")
    parser.add_argument("--prepare-only", action="store_true", help="only create the virtualenvs")
    args = parser.parse_args(argv)
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = sorted(set(args.servers) - set(SERVERS))
    if unknown:
        parser.error(f"unknown servers {unknown}; choose from {', '.join(SERVERS)}")
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.large_concurrency = [int(c) for c in args.large_concurrency.split(",")]
    args.protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]
    args.extra_servers = [s.strip() for s in args.extra_servers.split(",") if s.strip()]
    if args.server_cpu == args.load_cpu:
        parser.error("--server-cpu and --load-cpu must differ")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    for tool, package in (("wrk", "wrk"), ("taskset", "util-linux"), ("h2load", "nghttp2-client")):
        if shutil.which(tool) is None and (tool != "h2load" or "grpc" in args.protocols):
            raise SystemExit(f"{tool} not found (apt-get install -y {package})")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    cache: Path = args.cache.resolve()
    work = cache / "runs" / stamp
    work.mkdir(parents=True, exist_ok=True)
    mf_python = args.modelfleet_python
    mf_interp = interpreter_info(mf_python)
    mf_packages = package_versions(mf_python)
    if "modelfleet" not in mf_packages or "onnxruntime" not in mf_packages:
        raise SystemExit(f"{mf_python}: modelfleet and onnxruntime must be installed there")
    ctx: dict[str, Any] = {"modelfleet_python": mf_python, "modelfleet_interpreter": mf_interp,
                           "modelfleet_packages": mf_packages, "ort_version": mf_packages["onnxruntime"],
                           "venvs": {}}
    setup_errors: dict[str, str] = {}
    for name in dict.fromkeys(SERVERS[s].venv for s in args.servers if SERVERS[s].venv):
        assert name is not None
        try:
            ctx["venvs"][name] = ensure_venv(name, args.peer_python, ctx["ort_version"], cache, args.rebuild_venvs)
            state = "reused" if ctx["venvs"][name]["reused"] else f"built in {ctx['venvs'][name]['install_s']} s"
            log(f"venv {name}: {state}")
        except (RuntimeError, OSError) as exc:
            setup_errors[name] = str(exc)
            log(f"venv {name}: FAILED: {exc}")
    if args.prepare_only:
        return 1 if setup_errors else 0

    models = {m: prepare_model(m, mf_python, args.artifacts.resolve(), work) for m in args.models}
    bodies = {m: prepare_bodies(mf_python, work / f"{m}.model.json", work, m == LARGE_MODEL) for m in models}
    results: dict[str, Any] = {
        "timestamp": stamp,
        "command": shlex.join([sys.executable, str(Path(sys.argv[0])), *(argv if argv is not None else sys.argv[1:])]),
        "settings": {"servers": args.servers, "models": args.models, "concurrency": args.concurrency,
                     "large_concurrency": args.large_concurrency, "protocols": args.protocols,
                     "extra_servers": args.extra_servers,
                     "duration_s": args.duration, "warmup_s": args.warmup, "server_cpu": args.server_cpu,
                     "load_cpu": args.load_cpu, "ceiling_seconds": args.ceiling_seconds, "tolerance": TOLERANCE,
                     "max_other": args.max_other, "retries": args.retries, "quiet_wait_s": args.quiet_wait,
                     "retry_wait_s": args.retry_wait},
        "loadavg_start": loadavg(), "ps_start": ps_snapshot(),
        "models": {m: {k: v for k, v in info.items() if k != "checks"} for m, info in models.items()},
        "peer_setup_errors": setup_errors, "ceiling": {}, "servers": [],
    }
    results["interrupted"] = False
    with terminate_as_interrupt(), cores_lock(cache / "cores.lock", args.lock_timeout) as lock:
        results["lock"] = lock
        try:
            results["quiet_before_ceiling"] = wait_quiet((args.server_cpu, args.load_cpu), args.max_other,
                                                         args.quiet_wait)
            for name, info in models.items():
                if name == LARGE_MODEL:
                    continue
                log(f"raw ONNX Runtime ceiling for {name} (core {args.server_cpu})")
                results["ceiling"][name] = ort_ceiling(info, mf_python, args.server_cpu, args.ceiling_seconds)
            for server_name in args.servers:
                server = SERVERS[server_name]
                if server.venv and server.venv not in ctx["venvs"]:
                    continue
                extra = server_name in args.extra_servers
                for name, info in models.items():
                    if name == LARGE_MODEL and not extra:
                        continue
                    loads = loads_for(name, info["body_file"], bodies[name], extra, args.protocols)
                    results["servers"].append(bench_one(server, info, loads, ctx, work, args))
        except KeyboardInterrupt:
            results["interrupted"] = True
            log("interrupted (the server that was running has been stopped); reporting what was measured")
    results["loadavg_end"] = loadavg()
    results["ps_end"] = ps_snapshot()
    results["environment"] = environment(ctx)
    results["ratios"] = ratios(results)
    results["targets"] = targets(results)
    results["wall_s"] = time.monotonic() - started
    report = markdown(results) + targets_markdown(results["targets"])
    out_md = cache / f"serving-{stamp}.md"
    out_json = cache / f"serving-{stamp}.json"
    out_md.write_text(report)
    out_json.write_text(json.dumps(results, indent=1))
    print()
    print(report)
    log(f"wrote {out_md} and {out_json} (logs in {work})")
    if results["interrupted"]:
        return 130
    failed = setup_errors or any(rec.get("error") or not rec["stop"]["clean"] for rec in results["servers"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
