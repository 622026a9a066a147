"""Load for bench/serving (stdlib only): one wrk run, one measured point, one server on one model.

- :func:`wrk`: one run of wrk with ``oip.lua`` (OIP JSON or binary tensors), its ``WRK_JSON`` line parsed;
- :func:`measure_point`: warm-up and measured run at one concurrency (wrk, or h2load for gRPC), with the CPU
  the server got, measured again while others disturbed it (the least disturbed attempt is kept);
- :func:`bench_one`: start a server on a model, check its answers, measure each kind of request at each
  concurrency, stop it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench.common import loadavg, log, run_quiet, tail
from bench.serving.accounting import Window, disturbance, ps_snapshot, wait_quiet
from bench.serving.grpc_load import LARGE_MODEL, Load, check_load, h2load
from bench.serving.servers import HOST, Running, Server, launch, log_problems, stop, verify, wait_ready

LUA_SCRIPT = Path(__file__).resolve().parent / "oip.lua"


def wrk(url: str, body_file: str, concurrency: int, seconds: int, cpu: int,
        header_bytes: int | None = None) -> dict[str, Any]:
    """One wrk run (one thread, ``concurrency`` connections, pinned to ``cpu``): its figures, req/s and ms added."""
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
    """``server`` on ``model``: wait for quiet cores, start, check, measure every load at every concurrency, stop."""
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
