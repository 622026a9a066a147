#!/usr/bin/env python3
"""C=1: `modelfleet serve` against a bare Starlette + orjson handler that runs the same session, no batching.

One request in flight at a time (wrk, one connection, on core 1); every server on core 0, each in its own
process group, all started at once and measured in turn, round after round, the order rotated each round
(so that a change in the machine's load falls on all of them alike). The bare handler (``bare-server``,
below) is the floor a batching server pays nothing above when it is alone: parse the OIP JSON, one
``session.run``, answer every output as OIP JSON.

    python bench/serving/c1.py --src main=/path/to/main/src --src fastpath=src      # one run
    python bench/serving/c1.py bare-server MODEL_ONNX MODEL_NAME PORT               # the bare server alone
    PYTHONPATH=src python bench/serving/c1.py dataplane ARTIFACT BODY_FILE SECONDS   # no HTTP: see below

``dataplane`` sends the same request through ``DataPlane.infer`` in a loop, one at a time (decode, batcher,
metrics, response object; no HTTP, no JSON encoding), and prints the CPU µs it costs per request: the part
of the server the batcher's fast path changes, without the scheduling noise of two processes on a busy
machine. The run does this too, for each ``--src``, after each round.

Each ``--src LABEL=DIR`` is a `modelfleet serve` started with ``PYTHONPATH=DIR`` (so two revisions of the
code are compared in one run with one interpreter); default: this checkout's src as ``modelfleet``. Run it
with an interpreter that has modelfleet's dependencies and starlette (the dev venv). Results:
``.cache/bench/c1-<UTC timestamp>.{md,json}``. Helpers (wrk, CPU accounting, server stop, rotation and
medians) are bench/serving's (measure.py, accounting.py, servers.py, rounds.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))  # started by path: bench.* from the checkout

from bench.common import cores_lock, host_environment, loadavg, log, run_quiet  # noqa: E402
from bench.serving.accounting import Window, wait_quiet  # noqa: E402
from bench.serving.measure import wrk  # noqa: E402
from bench.serving.rounds import group, median, rotated  # noqa: E402
from bench.serving.servers import HOST, Running, Server, free_ports, http, stop, wait_ready  # noqa: E402

MODEL_YML = ROOT / "examples" / "credit-risk" / "model.yml"
TOLERANCE = 1e-5


# --------------------------------------------------------------------------- the bare server


def bare_server(onnx: str, name: str, port: int) -> None:
    """Starlette + orjson, one ONNX Runtime session (one thread, as `modelfleet serve --threads 1`), no batching."""
    import numpy as np
    import orjson
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    sys.path.insert(0, str(HERE / "peers"))
    from ort_session import NUMPY_DTYPES, session, signature

    sess = session(onnx)
    _, outputs = signature(sess)
    output_names = [n for n, _, _ in outputs]
    output_types = {n: t for n, t, _ in outputs}

    async def infer(request: Request) -> Response:
        body = orjson.loads(await request.body())
        feeds = {t["name"]: np.asarray(t["data"], dtype=NUMPY_DTYPES[t["datatype"]]).reshape(t["shape"])
                 for t in body["inputs"]}
        results = sess.run(output_names, feeds)
        answer = {"model_name": name, "outputs": [
            {"name": n, "datatype": output_types[n], "shape": list(r.shape), "data": r.ravel().tolist()}
            for n, r in zip(output_names, results, strict=True)]}
        return Response(orjson.dumps(answer), media_type="application/json")

    async def ready(request: Request) -> Response:
        return Response(b'{"ready":true}', media_type="application/json")

    app = Starlette(routes=[Route(f"/v2/models/{name}/infer", infer, methods=["POST"]),
                            Route(f"/v2/models/{name}/ready", ready)])
    uvicorn.run(app, host=HOST, port=port, loop="uvloop", http="httptools", access_log=False, log_level="warning",
                server_header=False, date_header=False)


def dataplane_cost(artifact: str, body_file: str, seconds: float) -> None:
    """Print ``{"cpu_us_per_req": ..., "wall_us_per_req": ..., "requests": ...}`` for the loop described above."""
    import asyncio

    import uvloop

    from modelfleet.serve.dataplane import DataPlane, InferResponse, ServerSettings
    from modelfleet.serve.protocol import InferRequest, parse_infer_request
    from modelfleet.serve.runtime import RuntimeOptions, TensorInfo

    body = Path(body_file).read_bytes()

    async def decode(inputs: Sequence[TensorInfo], outputs: Sequence[TensorInfo],
                     max_batch: int | None) -> InferRequest:
        return parse_infer_request(body, inputs, outputs, max_batch)

    async def respond(response: InferResponse) -> None:
        pass

    async def loop() -> dict[str, float]:
        plane = DataPlane(ServerSettings(artifact=Path(artifact), runtime=RuntimeOptions(intra_op_threads=1)))
        await plane.startup()
        while not plane.ready:
            await asyncio.sleep(0.05)
        for _ in range(1000):
            await plane.infer(decode, respond)
        requests, cpu0, wall0 = 0, time.process_time(), time.perf_counter()
        while time.perf_counter() - wall0 < seconds:
            for _ in range(500):
                await plane.infer(decode, respond)
            requests += 500
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        await plane.shutdown()
        return {"cpu_us_per_req": round(1e6 * cpu / requests, 1), "wall_us_per_req": round(1e6 * wall / requests, 1),
                "requests": requests}

    print(json.dumps(uvloop.run(loop())))


# --------------------------------------------------------------------------- the run


def launch(label: str, argv: list[str], port: int, env: dict[str, str], work: Path, name: str, cpu: int) -> Running:
    full = ["taskset", "-c", str(cpu), *argv]
    log_path = work / f"{label}.log"
    handle = log_path.open("wb")
    handle.write(f"$ {shlex.join(full)}\n".encode())
    handle.flush()
    proc = subprocess.Popen(full, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=work, start_new_session=True)
    server = Server(label, None, "c1", signal.SIGTERM, 1, shlex.join(argv))
    return Running(server, name, proc, port, log_path, time.monotonic(), handle, {"argv": full})


def source_info(src: str, env: dict[str, str]) -> dict[str, Any]:
    """Where ``PYTHONPATH=src`` imports modelfleet from, and the commit of the checkout around it."""
    imported = run_quiet([sys.executable, "-c", "import modelfleet; print(modelfleet.__file__)"],
                         env=env | {"PYTHONPATH": str(Path(src).resolve())}).stdout.strip()
    if not Path(imported).resolve().is_relative_to(Path(src).resolve()):
        # A missing or wrong directory falls back to the installed (editable) modelfleet: both sides of an
        # A/B would then run the same code.
        raise SystemExit(f"--src {src}: PYTHONPATH={src} imports modelfleet from {imported or 'nowhere'}, not from "
                         f"that directory (it needs {src}/modelfleet/ with its generated *_pb2.py)")
    commit = run_quiet(["git", "-C", src, "rev-parse", "HEAD"]).stdout.strip()
    status = run_quiet(["git", "-C", src, "status", "--porcelain", "--", "."]).stdout.splitlines()
    return {"dir": src, "imports": imported, "commit": commit, "uncommitted": status[:5]}


def answer(port: int, name: str, body: bytes) -> dict[str, list[float]]:
    status, raw = http("POST", f"http://{HOST}:{port}/v2/models/{name}/infer", body)
    if status != 200:
        raise RuntimeError(f"port {port}: status {status}: {raw[:300]!r}")
    return {o["name"]: [float(v) for v in o["data"]] for o in json.loads(raw)["outputs"]}


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["bare-server"]:
        bare_server(argv[1], argv[2], int(argv[3]))
        return 0
    if argv[:1] == ["dataplane"]:
        dataplane_cost(argv[1], argv[2], float(argv[3]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", action="append", default=[], metavar="LABEL=DIR",
                        help="a modelfleet source tree to serve with (repeatable; default: this checkout's src)")
    parser.add_argument("--artifacts", type=Path, default=ROOT / ".cache" / "artifacts")
    parser.add_argument("--duration", type=int, default=5, help="seconds per measured point")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3, help="each server measured this many times, in turn")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--load-cpu", type=int, default=1)
    parser.add_argument("--quiet-wait", type=float, default=20.0, help="seconds to wait for quiet cores per round")
    args = parser.parse_args(argv)

    import orjson  # noqa: F401  (fail early: the bare server needs it, as it needs starlette)
    import starlette  # noqa: F401

    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = ROOT / ".cache" / "bench"
    work = out / "runs" / f"c1-{stamp}"
    work.mkdir(parents=True, exist_ok=True)
    info_json, body_file = work / "model.json", work / "body.json"
    prepared = run_quiet([sys.executable, str(HERE / "ort_tools.py"), "prepare", str(MODEL_YML),
                          str(args.artifacts.resolve()), str(info_json), str(body_file)])
    if prepared.returncode != 0:
        raise SystemExit(f"ort_tools.py prepare failed: {prepared.stderr.strip()}")
    model = json.loads(info_json.read_text())
    name, body = model["name"], body_file.read_bytes()
    sources = [tuple(s.split("=", 1)) for s in args.src] or [("modelfleet", str(ROOT / "src"))]

    servers: list[Running] = []
    ports = free_ports(len(sources) + 1)
    base_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONUNBUFFERED": "1"}
    source_infos = {label: source_info(src, base_env) for label, src in sources}  # before any server starts
    servers.append(launch("bare", [sys.executable, str(Path(__file__).resolve()), "bare-server", model["onnx"], name,
                                   str(ports[0])], ports[0], base_env, work, name, args.server_cpu))
    for (label, src), port in zip(sources, ports[1:], strict=True):
        env = base_env | {"PYTHONPATH": str(Path(src).resolve())}
        servers.append(launch(label, [sys.executable, "-m", "modelfleet.cli", "serve", model["artifact"], "--host",
                                      HOST, "--port", str(port), "--threads", "1", "--max-batch",
                                      str(model["max_batch"]), "--max-queue-delay-us",
                                      str(model["max_queue_delay_us"])], port, env, work, name, args.server_cpu))
    results: dict[str, Any] = {"started": stamp, "command": shlex.join([sys.executable, *sys.argv]),
                               "environment": host_environment(["src/modelfleet/serve", "bench/serving"]),
                               "sources": source_infos,
                               "model": {k: model[k] for k in ("name", "version", "max_batch", "max_queue_delay_us")},
                               "loadavg_start": loadavg(), "rounds": []}
    try:
        for running in servers:
            wait_ready(running)
        reference = answer(servers[0].port, name, body)
        for running in servers[1:]:  # every server answers what the bare session answers
            got = answer(running.port, name, body)
            worst = max(abs(a - b) for n in reference for a, b in zip(reference[n], got[n], strict=True))
            if worst > TOLERANCE:
                raise SystemExit(f"{running.server.name} answers differ from the bare session's by {worst}")
        with cores_lock(out / "cores.lock", timeout=600):
            for round_number in range(args.rounds):
                quiet = wait_quiet([args.server_cpu, args.load_cpu], 10.0, args.quiet_wait)
                log(f"round {round_number + 1}/{args.rounds}: load {loadavg()}, quiet {quiet}")
                points = []
                for running in rotated(servers, round_number):  # each server first in some round, last in another
                    url = f"http://{HOST}:{running.port}/v2/models/{name}/infer"
                    wrk(url, str(body_file), 1, args.warmup, args.load_cpu)
                    window = Window(running.proc.pid)
                    measured = wrk(url, str(body_file), 1, args.duration, args.load_cpu)
                    cpu = window.finish(args.server_cpu, args.load_cpu)
                    point = {"server": running.server.name, "rps": round(measured["ok_rps"], 1),
                             "p50_us": measured["latency_us"]["p50"], "p99_us": measured["latency_us"]["p99"],
                             "non2xx": measured["non2xx"], "socket_errors": measured["socket_errors"],
                             "server_cpu_pct": cpu["server_cpu_pct"],
                             "cpu_us_per_req": round(1e6 * cpu["server_cpu_s"] / max(1, measured["requests"]), 1),
                             "other_on_server_core_pct": cpu["other_on_server_core_pct"],
                             "other_on_load_core_pct": cpu["other_on_load_core_pct"],
                             "steal_server_core_pct": cpu["core_steal_pct"].get(f"cpu{args.server_cpu}", 0.0),
                             "other_processes": cpu["other_processes"][:4]}
                    log(f"  {point['server']}: {point['rps']:,.0f} req/s, p50 {point['p50_us']} µs, "
                        f"{point['cpu_us_per_req']} CPU µs/req, others on cores {point['other_on_server_core_pct']}"
                        f"/{point['other_on_load_core_pct']} %")
                    points.append(point)
                dataplane = {}
                for label, src in sources:
                    looped = run_quiet(["taskset", "-c", str(args.server_cpu), sys.executable, __file__, "dataplane",
                                          model["artifact"], str(body_file), str(args.duration)],
                                         env=base_env | {"PYTHONPATH": str(Path(src).resolve())})
                    if looped.returncode != 0:
                        raise RuntimeError(f"dataplane loop with {src}: {looped.stderr[-500:]}")
                    dataplane[label] = json.loads(looped.stdout.splitlines()[-1])
                log(f"  in-process data plane, CPU µs/req: {({k: v['cpu_us_per_req'] for k, v in dataplane.items()})}")
                results["rounds"].append({"loadavg": loadavg(), "quiet": quiet, "points": points,
                                          "dataplane": dataplane})
    finally:
        results["stops"] = {running.server.name: stop(running) for running in servers}
    results["loadavg_end"] = loadavg()
    results["summary"] = summary(results)
    markdown = report(results)
    (out / f"c1-{stamp}.json").write_text(json.dumps(results, indent=1))
    (out / f"c1-{stamp}.md").write_text(markdown)
    print(markdown)
    return 0


def summary(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per server, the median over rounds of each figure, and req/s as a fraction of the bare handler's."""
    by_server = group((point for round_ in results["rounds"] for point in round_["points"]),
                      key=lambda point: str(point["server"]))
    medians = {server: {key: median(p[key] for p in points)
                        for key in ("rps", "p50_us", "p99_us", "cpu_us_per_req", "server_cpu_pct",
                                    "other_on_server_core_pct", "other_on_load_core_pct")}
               for server, points in by_server.items()}
    for server, figures in medians.items():
        figures["rps_vs_bare"] = round(figures["rps"] / medians["bare"]["rps"], 3)
        figures["cpu_vs_bare"] = round(figures["cpu_us_per_req"] / medians["bare"]["cpu_us_per_req"], 3)
        figures["non2xx"] = sum(p["non2xx"] + p["socket_errors"] for p in by_server[server])
    return medians


def report(results: dict[str, Any]) -> str:
    lines = [f"C=1, credit-risk, one-row OIP JSON, {len(results['rounds'])} rounds (median shown); load average "
             f"{results['loadavg_start']} at the start, {results['loadavg_end']} at the end",
             "", "| server | req/s | ÷ bare | p50 µs | p99 µs | server CPU µs/req | ÷ bare | errors | "
             "others on core 0 % | others on core 1 % |", "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for server, f in results["summary"].items():
        lines.append(f"| {server} | {f['rps']:,.0f} | {f['rps_vs_bare']:.2f} | {f['p50_us']:.0f} | {f['p99_us']:.0f} "
                     f"| {f['cpu_us_per_req']:.0f} | {f['cpu_vs_bare']:.2f} | {f['non2xx']:.0f} "
                     f"| {f['other_on_server_core_pct']:.0f} | {f['other_on_load_core_pct']:.0f} |")
    lines += ["", "Each round (req/s, CPU µs/req):"]
    for number, round_ in enumerate(results["rounds"], 1):
        lines.append(f"- {number} (load {round_['loadavg']}): " + ", ".join(
            f"{p['server']} {p['rps']:,.0f} / {p['cpu_us_per_req']:.0f}" for p in round_["points"]))
    labels = list(results["rounds"][0]["dataplane"]) if results["rounds"] else []
    lines += ["", "In-process data plane (`c1.py dataplane`, no HTTP), CPU µs/req, median of rounds: " + ", ".join(
        f"{label} {median(r['dataplane'][label]['cpu_us_per_req'] for r in results['rounds']):.1f}"
        for label in labels) + " (each round: " + "; ".join(
        ", ".join(f"{label} {r['dataplane'][label]['cpu_us_per_req']:.1f}" for label in labels)
        for r in results["rounds"]) + ")"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
