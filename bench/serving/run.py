#!/usr/bin/env python3
"""Serving benchmark: modelfleet's model server side by side with MLServer, KServe and PyTriton.

One run: prepare one virtualenv per peer (cached), serve the example models' model.onnx with each
server in turn (server pinned to one core, the load generator to the other), check every server's
answer against onnxruntime, load it at each concurrency (wrk for OIP JSON and binary tensors, h2load
for gRPC: grpc_load.py), measure the raw in-process ONNX Runtime ceiling, and write a markdown table,
issue 13's targets (targets.py) and raw JSON to .cache/bench/serving-<timestamp>.{md,json}.
With --rounds N every point is measured N times, in interleaved rounds (rounds.py), and medians reported.

Standard library only: everything that needs numpy/onnxruntime runs in a child interpreter
(ort_tools.py in modelfleet's interpreter, peers/*.py in the peers' virtualenvs).
This file parses the options and runs the whole; the parts: prepare.py (venvs, models, ceiling,
environment), servers.py (launch, check, stop), measure.py (load for one point, one server on one model),
accounting.py (CPU from /proc), rounds.py (interleaving, medians), report.py (markdown). See README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))  # started by path (run.sh, make bench-serving): bench.common from the checkout

from bench.common import (  # noqa: E402
    cores_lock,
    default_modelfleet_python,
    interpreter_info,
    loadavg,
    log,
    terminate_as_interrupt,
)
from bench.serving.accounting import ps_snapshot, wait_quiet  # noqa: E402
from bench.serving.grpc_load import LARGE_MODEL, loads_for, prepare_bodies  # noqa: E402
from bench.serving.measure import bench_one  # noqa: E402
from bench.serving.prepare import ensure_venv, environment, ort_ceiling, package_versions, prepare_model  # noqa: E402
from bench.serving.report import markdown, ratios  # noqa: E402
from bench.serving.rounds import count_rounds, measured_records, merge_rounds, rotated  # noqa: E402
from bench.serving.servers import DEFAULT_SERVERS, SERVERS, TOLERANCE  # noqa: E402
from bench.serving.targets import targets, targets_markdown  # noqa: E402

DEFAULT_MODELS = ("credit-risk", "mlp", LARGE_MODEL)


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
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure every point this many times, in interleaved rounds (all servers once per "
                             "round, their order rotated each round), and report the medians (default 1)")
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
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
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
    # A path relative to here would not start the servers, which run in the run's directory (not resolved: a venv's
    # python is a link that must stay one).
    mf_python = args.modelfleet_python
    if "/" in mf_python:
        mf_python = str(Path(mf_python).absolute())
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
                     "retry_wait_s": args.retry_wait, "rounds": args.rounds},
        "loadavg_start": loadavg(), "ps_start": ps_snapshot(),
        "models": {m: {k: v for k, v in info.items() if k != "checks"} for m, info in models.items()},
        "peer_setup_errors": setup_errors, "ceiling": {}, "servers": [],
    }
    results["interrupted"] = False
    servers = [name for name in args.servers if not SERVERS[name].venv or SERVERS[name].venv in ctx["venvs"]]
    rounds: list[dict[str, Any]] = []
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
            for index in range(args.rounds):
                order = rotated(servers, index)
                rounds.append({"round": index + 1, "order": order, "servers": []})
                if args.rounds > 1:
                    log(f"round {index + 1}/{args.rounds}: {', '.join(order)}")
                for server_name in order:
                    extra = server_name in args.extra_servers
                    for name, info in models.items():
                        if name == LARGE_MODEL and not extra:
                            continue
                        loads = loads_for(name, info["body_file"], bodies[name], extra, args.protocols)
                        rounds[-1]["servers"].append(bench_one(SERVERS[server_name], info, loads, ctx, work, args))
        except KeyboardInterrupt:
            results["interrupted"] = True
            log("interrupted (the server that was running has been stopped); reporting what was measured")
    if args.rounds == 1:  # as before rounds: the records as measured
        results["servers"] = rounds[0]["servers"] if rounds else []
    else:  # the medians, which targets.py and the report's tables of points read; every round as measured
        results["servers"] = merge_rounds(rounds)
        results["rounds"] = rounds
    results["loadavg_end"] = loadavg()
    results["ps_end"] = ps_snapshot()
    results["environment"] = environment(ctx)
    results["ratios"] = ratios(results)
    results["targets"] = targets(results)
    if args.rounds > 1:
        count_rounds(results["targets"], results)
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
    failed = setup_errors or any(rec.get("error") or not rec["stop"]["clean"] for _, rec in measured_records(results))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
