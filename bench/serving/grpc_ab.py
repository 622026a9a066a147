#!/usr/bin/env python3
"""modelfleet's gRPC and JSON paths from two (or more) source trees, interleaved in one run: server CPU per call.

Each ``--src LABEL=DIR`` is a `modelfleet serve --grpc-port` of credit-risk started with ``PYTHONPATH=DIR``
(one interpreter: this one), all on core 0, all started at once. Each round measures every server in turn
(the order rotated each round): one-row OIP JSON with wrk and the same row as a gRPC ``ModelInferRequest``
with h2load (one stream per connection), ``--concurrency`` connections, on core 1. Each body is checked
once against onnxruntime first (servers.py's ``verify``, grpc_load.py's ``check``). Medians over the rounds are
printed; everything raw goes to ``.cache/bench/grpc-ab-<UTC timestamp>.json``.

    .venv/bin/python bench/serving/grpc_ab.py --src main=/path/to/main/src --src branch=src [--rounds 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))  # started by path: bench.* from the checkout

from bench.common import cores_lock, host_environment, loadavg, log, run_quiet  # noqa: E402
from bench.serving.accounting import Window, wait_quiet  # noqa: E402
from bench.serving.c1 import MODEL_YML, launch, source_info  # noqa: E402
from bench.serving.grpc_load import GRPC_PATH, Load, check_load, h2load  # noqa: E402
from bench.serving.measure import wrk  # noqa: E402
from bench.serving.rounds import group, median, rotated  # noqa: E402
from bench.serving.servers import HOST, Running, free_ports, stop, verify, wait_ready  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", action="append", default=[], metavar="LABEL=DIR", required=True,
                        help="a modelfleet source tree (repeatable)")
    parser.add_argument("--artifacts", type=Path, default=ROOT / ".cache" / "artifacts")
    parser.add_argument("--duration", type=int, default=5, help="seconds per measured point")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--protocols", default="grpc,json")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--load-cpu", type=int, default=1)
    parser.add_argument("--quiet-wait", type=float, default=10.0, help="seconds to wait for quiet cores per round")
    args = parser.parse_args()

    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = ROOT / ".cache" / "bench"
    work = out / "runs" / f"grpc-ab-{stamp}"
    work.mkdir(parents=True, exist_ok=True)
    info_json, body_file = work / "model.json", work / "body.json"
    prepared = run_quiet([sys.executable, str(HERE / "ort_tools.py"), "prepare", str(MODEL_YML),
                          str(args.artifacts.resolve()), str(info_json), str(body_file)])
    if prepared.returncode != 0:
        raise SystemExit(f"ort_tools.py prepare failed: {prepared.stderr.strip()}")
    model = json.loads(info_json.read_text())
    made = run_quiet([sys.executable, str(HERE / "grpc_load.py"), "bodies", str(info_json), str(work / "rows1"),
                      "--rows", "1"])
    if made.returncode != 0:
        raise SystemExit(f"grpc_load.py bodies failed: {made.stderr.strip()}")
    bodies = json.loads(made.stdout)
    name = model["name"]
    grpc_load = Load("grpc", 1, bodies["grpc"], bodies["expected"])
    protocols = args.protocols.split(",")

    sources = [tuple(s.split("=", 1)) for s in args.src]
    base_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONUNBUFFERED": "1"}
    source_infos = {label: source_info(src, base_env) for label, src in sources}  # before any server starts
    ports = free_ports(2 * len(sources))
    servers: list[tuple[Running, int]] = []
    for index, (label, src) in enumerate(sources):
        port, grpc_port = ports[2 * index], ports[2 * index + 1]
        env = base_env | {"PYTHONPATH": str(Path(src).resolve())}
        argv = [sys.executable, "-m", "modelfleet.cli", "serve", model["artifact"], "--host", HOST, "--port",
                str(port), "--grpc-port", str(grpc_port), "--threads", "1", "--max-batch", str(model["max_batch"]),
                "--max-queue-delay-us", str(model["max_queue_delay_us"])]
        servers.append((launch(label, argv, port, env, work, name, args.server_cpu), grpc_port))
    results: dict[str, Any] = {"started": stamp, "command": shlex.join([sys.executable, *sys.argv]),
                               "environment": host_environment(["src/modelfleet/serve", "bench/serving"]),
                               "sources": source_infos,
                               "loadavg_start": loadavg(), "rounds": []}
    try:
        answer_bytes = {}
        for running, grpc_port in servers:
            wait_ready(running)
            verify(running, model)
            answer_bytes[running.server.name] = check_load(sys.executable, grpc_load, f"{HOST}:{grpc_port}",
                                                           name)["response_bytes"]
        with cores_lock(out / "cores.lock", timeout=600):
            for round_number in range(args.rounds):
                quiet = wait_quiet([args.server_cpu, args.load_cpu], 10.0, args.quiet_wait)
                log(f"round {round_number + 1}/{args.rounds}: load {loadavg()}, quiet {quiet}")
                points = []
                for running, grpc_port in rotated(servers, round_number):
                    for protocol in protocols:
                        if protocol == "json":
                            url = f"http://{HOST}:{running.port}/v2/models/{name}/infer"

                            def drive(seconds: int, url: str = url) -> dict[str, Any]:
                                return wrk(url, str(body_file), args.concurrency, seconds, args.load_cpu)
                        else:
                            expected = answer_bytes[running.server.name]

                            def drive(seconds: int, port: int = grpc_port, expected: int = expected) -> dict[str, Any]:
                                return h2load(f"{HOST}:{port}", grpc_load.body, args.concurrency, seconds,
                                              args.load_cpu, expected)
                        drive(args.warmup)
                        window = Window(running.proc.pid)
                        measured = drive(args.duration)
                        cpu = window.finish(args.server_cpu, args.load_cpu)
                        point = {"server": running.server.name, "protocol": protocol,
                                 "rps": round(measured["ok_rps"], 1), "p50_us": measured["latency_us"]["p50"],
                                 "p99_us": measured["latency_us"]["p99"],
                                 "errors": measured["non2xx"] + measured["socket_errors"],
                                 "server_cpu_pct": cpu["server_cpu_pct"],
                                 "cpu_us_per_call": round(1e6 * cpu["server_cpu_s"] / max(1, measured["requests"]), 1),
                                 "other_on_server_core_pct": cpu["other_on_server_core_pct"],
                                 "other_on_load_core_pct": cpu["other_on_load_core_pct"],
                                 "loadavg": loadavg()[0], "other_processes": cpu["other_processes"][:4]}
                        log(f"  {point['server']} {protocol}: {point['rps']:,.0f} calls/s, "
                            f"{point['cpu_us_per_call']} CPU µs/call, errors {point['errors']}, others on cores "
                            f"{point['other_on_server_core_pct']}/{point['other_on_load_core_pct']} %")
                        points.append(point)
                results["rounds"].append({"loadavg": loadavg(), "quiet": quiet, "points": points})
    finally:
        results["stops"] = {running.server.name: stop(running) for running, _ in servers}
    results["loadavg_end"] = loadavg()
    (out / f"grpc-ab-{stamp}.json").write_text(json.dumps(results, indent=1))
    print(report(results, args.concurrency))
    return 0 if all(s.get("clean") for s in results["stops"].values()) else 1


def report(results: dict[str, Any], concurrency: int) -> str:
    by_point = group((point for round_ in results["rounds"] for point in round_["points"]),
                     key=lambda point: (str(point["server"]), str(point["protocol"])))
    lines = [f"credit-risk, one row, C={concurrency}, {len(results['rounds'])} rounds (median; all rounds' CPU "
             f"µs/call and p99 in brackets); load average {results['loadavg_start']} at the start, "
             f"{results['loadavg_end']} at the end", "",
             "| source | protocol | calls/s | p50 µs | p99 µs | server CPU % | server CPU µs/call | errors |",
             "|---|---|--:|--:|--:|--:|--:|--:|"]
    for (server, protocol), points in by_point.items():
        def middle(key: str, points: list[dict[str, Any]] = points) -> float:
            return median(p[key] for p in points)
        lines.append(f"| {server} | {protocol} | {middle('rps'):,.0f} | {middle('p50_us'):,.0f} | "
                     f"{middle('p99_us'):,.0f} ({', '.join(format(p['p99_us'], ',.0f') for p in points)}) | "
                     f"{middle('server_cpu_pct'):.0f} | {middle('cpu_us_per_call'):.0f} "
                     f"({', '.join(format(p['cpu_us_per_call'], '.0f') for p in points)}) | "
                     f"{sum(p['errors'] for p in points)} |")
    lines.append(f"\nstops: {results['stops']}; gRPC path {GRPC_PATH}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
