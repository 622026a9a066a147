"""What grpcio itself costs per unary call, before any model code: the floor of a Python gRPC front end.

An echo ``inference.GRPCInferenceService/ModelInfer`` (bytes in, a fixed 5-byte message out, no protobuf
parsing) on core 0, served by grpc.aio (asyncio, or uvloop as ``modelfleet serve`` runs it) and by grpcio's
thread-pool server, each driven by h2load (one connection per stream, C connections) on core 1; the server's
CPU (utime + stime of all its threads) per call. Compare with modelfleet's whole gRPC path
(``bench/serving/run.sh``: about 560 µs per call on 2026-12-06) and its whole JSON path (about 170 µs).

The "hand-off" server is the thread-pool server whose handler hands each call to a uvloop event loop in the
main thread (where a real server's data plane lives) with ``asyncio.run_coroutine_threadsafe(...).result()``
and waits for the answer. (modelfleet's own batched hand-off, measured here until 2026-12-07, is gone with
the front end that used it.)

The "modelfleet h2" servers are modelfleet's own gRPC transport (``modelfleet.serve.grpcapi.h2``, as
``modelfleet serve`` runs it: HTTP/2 parsed on the uvloop event loop, no thread per call) answering the echo
at once, or from a coroutine run as a task (as ``ModelInfer`` is).

    .venv/bin/python bench/serving/grpc_floor.py [--seconds 5] [--concurrency 1,32] [--rounds 2]
        [--servers 'uvloop|hand-off']
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from concurrent import futures
from pathlib import Path
from typing import Any

SERVICE, METHOD = "inference.GRPCInferenceService", "ModelInfer"
ANSWER = b"\x0a\x03abc"
SERVERS = {"aio (asyncio)": ["aio"], "aio (uvloop)": ["aio", "uvloop"], "sync, 16 threads": ["sync", "16"],
           "sync, 4 threads": ["sync", "4"],
           "sync + hand-off, run_coroutine_threadsafe, 16 threads": ["handoff", "16"],
           "modelfleet h2, in the loop": ["h2", "inline"], "modelfleet h2, as a task": ["h2", "task"]}


def serve(kind: str, port: int, option: str | None = None) -> None:
    """Run one echo server until killed (the child process)."""
    import grpc
    import grpc.aio

    def echo(_data: bytes, _context: object) -> bytes:
        return ANSWER

    async def aecho(_data: bytes, _context: object) -> bytes:
        return ANSWER

    def handler(function: object) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(SERVICE, {METHOD: grpc.unary_unary_rpc_method_handler(function)})

    if kind == "aio":
        async def main() -> None:
            server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
            server.add_generic_rpc_handlers([handler(aecho)])
            server.add_insecure_port(f"127.0.0.1:{port}")
            await server.start()
            await server.wait_for_termination()

        if option == "uvloop":
            import uvloop
            uvloop.install()
        asyncio.run(main())
    elif kind == "handoff":
        import uvloop

        async def main_handoff() -> None:
            loop = asyncio.get_running_loop()

            def hand(data: bytes, context: object) -> bytes:
                return asyncio.run_coroutine_threadsafe(aecho(data, context), loop).result()

            pool = futures.ThreadPoolExecutor(max_workers=int(option or 16))
            server = grpc.server(pool, options=[("grpc.so_reuseport", 0)])
            server.add_generic_rpc_handlers([handler(hand)])
            server.add_insecure_port(f"127.0.0.1:{port}")
            server.start()
            await asyncio.Event().wait()  # killed by the bench

        uvloop.install()
        asyncio.run(main_handoff())
    elif kind == "h2":
        import uvloop

        from modelfleet.serve.grpcapi.h2 import Answer, GrpcConnection, Limits

        async def answer(_data: bytes) -> Answer:
            return ANSWER

        def dispatch(_path: str, data: bytes) -> Any:
            return ANSWER if option == "inline" else answer(data)

        async def main_h2() -> None:
            limits = Limits(max_message=1 << 20, max_streams=128)
            server = await asyncio.get_running_loop().create_server(
                lambda: GrpcConnection(dispatch, limits, lambda _c: None), "127.0.0.1", port)
            await server.serve_forever()

        uvloop.install()
        asyncio.run(main_h2())
    else:
        pool = futures.ThreadPoolExecutor(max_workers=int(option or 4))
        server = grpc.server(pool, options=[("grpc.so_reuseport", 0)])
        server.add_generic_rpc_handlers([handler(echo)])
        server.add_insecure_port(f"127.0.0.1:{port}")
        server.start()
        server.wait_for_termination()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def measure(name: str, argv: list[str], seconds: int, concurrency: int, body: str) -> str:
    port = free_port()
    server = subprocess.Popen(["taskset", "-c", "0", sys.executable, __file__, "--serve", *argv[:1], str(port),
                               *argv[1:]])
    try:
        load = ["taskset", "-c", "1", "h2load", "-t1", f"-c{concurrency}", "-m1", "-d", body,
                "-H", "content-type: application/grpc", "-H", "te: trailers",
                f"http://127.0.0.1:{port}/{SERVICE}/{METHOD}"]
        time.sleep(2)
        subprocess.run([*load, "-D1"], capture_output=True, check=True)  # warm-up; fails if the server is not up
        before = cpu_seconds(server.pid)
        out = subprocess.run([*load, f"-D{seconds}"], capture_output=True, text=True, check=True).stdout
        used = cpu_seconds(server.pid) - before
    finally:
        server.kill()
        server.wait()
    found = re.search(r"(\d+) succeeded", out)
    calls = int(found.group(1)) if found else 0
    return (f"| {name} | {concurrency} | {calls / seconds:,.0f} | {100 * used / seconds:.0f} | "
            f"{1e6 * used / calls if calls else float('nan'):.0f} | {os.getloadavg()[0]:.1f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--concurrency", default="32", help="connections, comma-separated (default 32)")
    parser.add_argument("--servers", default="",
                        help="only the servers whose name contains one of these |-separated strings")
    parser.add_argument("--rounds", type=int, default=1, help="every point this many times, in turn")
    parser.add_argument("--serve", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]), *(args.serve[2:3]))
        return 0
    words = [w for w in args.servers.split("|") if w]
    servers = {name: argv for name, argv in SERVERS.items() if not words or any(w in name for w in words)}
    with tempfile.NamedTemporaryFile(suffix=".grpc") as body:
        body.write(b"\x00" + len(ANSWER).to_bytes(4, "big") + ANSWER)  # a length-prefixed gRPC message
        body.flush()
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, {args.seconds} s per point, "
              f"load average {os.getloadavg()[0]:.1f}")
        print("| server | C | calls/s | server CPU % | server CPU µs/call | load avg |\n|---|--:|--:|--:|--:|--:|")
        for _ in range(args.rounds):
            for concurrency in (int(c) for c in args.concurrency.split(",")):
                for name, argv in servers.items():
                    print(measure(name, argv, args.seconds, concurrency, body.name), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
