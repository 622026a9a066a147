"""modelfleet's own front ends side by side: OIP JSON, Triton's binary tensor extension (HTTP) and gRPC.

Two models: a large-input one (150,528 FP32 values a row, an image-sized 3x224x224, reduced to its mean:
the protocol's cost is all there is) and the credit-risk example (one row of 8 values). The server runs on
core 0 (``taskset``), the clients (tritonclient.http / tritonclient.grpc, one process each, C processes) on
core 1. Reported per point: requests/s seen by the clients, client p50 latency, and the server's own time
per request (``modelfleet_request_duration_seconds`` sum/count over the point: from body read to answer,
independent of how fast the clients are). With Python clients the client side is the bottleneck for small
requests (compare the server's time per request, not req/s, there); for the large input it is not for
binary and gRPC.

    PYTHONPATH=src python bench/serving/protocols.py --artifacts .cache/artifacts [--duration 5] [--concurrency 1,4]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

LARGE = 3 * 224 * 224
HERE = Path(__file__).resolve().parent


def build_large(workdir: Path, out_root: Path) -> Path:
    """An ONNX artifact: x FP32 [-1, 150528] -> y FP32 [-1] (the row's mean)."""
    import onnx
    import yaml
    from onnx import TensorProto, helper

    from modelfleet.convert import build_artifact
    from modelfleet.spec import load_spec

    graph = helper.make_graph([helper.make_node("ReduceMean", ["x"], ["y"], axes=[1], keepdims=0)], "large",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", LARGE])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    source = workdir / "large"
    source.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(source / "model.onnx"))
    np.savez(source / "samples.npz", x=np.random.default_rng(0).random((2, LARGE), np.float32))
    spec = {"name": "large", "version": "1", "source": {"framework": "onnx", "path": "model.onnx"},
            "convert": {"opset": 17, "parity": {"samples": "samples.npz"}},
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, LARGE]}],
            "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1]}],
            "task": {"type": "regression"}, "serving": {"providers": ["cpu"], "batching": {"max_batch": 8}}}
    (source / "model.yml").write_text(yaml.safe_dump(spec))
    return build_artifact(load_spec(source / "model.yml"), out_root).path


def _client(protocol: str, address: str, model: str, rows: np.ndarray, window: Any, go: Any, queue: Any) -> None:
    """Connect, say so, wait for ``go``; then send requests back to back during ``window`` (start, end) and
    report their latencies."""
    latencies = []
    if protocol == "grpc":
        import tritonclient.grpc as client_lib
    else:
        import tritonclient.http as client_lib  # type: ignore[no-redef]
    client = client_lib.InferenceServerClient(address)
    binary = protocol != "json"
    first = True
    start = until = 0.0
    while first or time.perf_counter() < until:
        x = client_lib.InferInput("x", list(rows.shape), "FP32")
        if protocol == "grpc":
            x.set_data_from_numpy(rows)
            outputs = None
        else:
            x.set_data_from_numpy(rows, binary_data=binary)
            names = ["y"] if model == "large" else ["label", "probabilities"]
            outputs = None if binary else [client_lib.InferRequestedOutput(n, binary_data=False) for n in names]
        started = time.perf_counter()
        client.infer(model, [x], outputs=outputs)
        if first:  # connected and warm: wait for the others
            first = False
            queue.put("ready")
            go.wait()
            start, until = window[0], window[1]
        elif started >= start:
            latencies.append(time.perf_counter() - started)
    client.close()
    queue.put(latencies)


def _server_time(http: str) -> tuple[float, float]:
    text = urllib.request.urlopen(f"{http}/metrics", timeout=10).read().decode()
    total = sum(float(v) for v in re.findall(r"^modelfleet_request_duration_seconds_sum\{[^}]*\} (\S+)", text, re.M))
    count = sum(float(v) for v in re.findall(r"^modelfleet_request_duration_seconds_count\{[^}]*\} (\S+)", text,
                                            re.M))
    return total, count


def measure(http: str, grpc_address: str, model: str, rows: np.ndarray, protocol: str, concurrency: int,
            duration: float, pin: bool) -> dict[str, Any]:
    context = mp.get_context("spawn")
    queue = context.Queue()
    address = grpc_address if protocol == "grpc" else http.removeprefix("http://")
    # warm-up
    window = context.Array("d", 2)
    go = context.Event()
    workers = [context.Process(target=_client, args=(protocol, address, model, rows, window, go, queue))
               for _ in range(concurrency)]
    for worker in workers:
        worker.start()
        if pin and worker.pid:
            subprocess.run(["taskset", "-pc", "1", str(worker.pid)], capture_output=True, check=False)
    for _ in workers:
        assert queue.get() == "ready"
    before = _server_time(http)
    start = time.perf_counter()  # CLOCK_MONOTONIC: the same clock in every process
    window[0], window[1] = start, start + duration
    go.set()
    latencies = [lat for _ in workers for lat in queue.get()]
    for worker in workers:
        worker.join()
    after = _server_time(http)
    elapsed = duration  # requests started in [start, until); the last may end a little later
    served = after[1] - before[1]
    return {"model": model, "protocol": protocol, "C": concurrency, "req_s": len(latencies) / elapsed,
            "p50_ms": float(np.median(latencies)) * 1e3,
            "server_ms": (after[0] - before[0]) / served * 1e3 if served else float("nan")}


def serve(artifact: Path, log: Path, pin: bool) -> tuple[subprocess.Popen[bytes], str, str]:
    command = [sys.executable, "-m", "modelfleet.cli", "serve", str(artifact), "--port", "0", "--grpc-port", "0",
               "--log-level", "info"]
    if pin:
        command = ["taskset", "-c", "0", *command]
    process = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        http = re.search(r"running on (http://127\.0\.0\.1:\d+)", text)
        grpc = re.search(r"gRPC running on (127\.0\.0\.1:\d+)", text)
        ready = re.search(r"ready on ", text)
        if http and grpc and ready:
            return process, http.group(1), grpc.group(1)
        if process.poll() is not None:
            raise SystemExit(f"server exited:\n{text}")
        time.sleep(0.2)
    raise SystemExit(f"server not ready:\n{log.read_text(errors='replace')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifacts", default=".cache/artifacts", help="artifact root with credit-risk/1")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per point (default 5)")
    parser.add_argument("--concurrency", default="1,4", help="client processes per point (default 1,4)")
    args = parser.parse_args()
    pin = shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
    concurrency = [int(c) for c in args.concurrency.split(",")]
    rows_credit = np.load(Path("examples/credit-risk/data/reference.npz"))["x"][:1].astype(np.float32)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        models = {"large": (build_large(work / "src", work / "artifacts"),
                            np.random.default_rng(1).random((1, LARGE), np.float32)),
                  "credit-risk": (Path(args.artifacts) / "credit-risk" / "1", rows_credit)}
        for model, (artifact, rows) in models.items():
            process, http, grpc_address = serve(artifact, work / f"{model}.log", pin)
            try:
                for protocol in ("json", "binary", "grpc"):
                    for c in concurrency:
                        result = measure(http, grpc_address, model, rows, protocol, c, args.duration, pin)
                        results.append(result)
                        print(f"{model:12s} {protocol:7s} C={c:<3d} {result['req_s']:9.1f} req/s  "
                              f"p50 {result['p50_ms']:8.2f} ms  server {result['server_ms']:7.3f} ms/req", flush=True)
            finally:
                process.terminate()
                process.wait(30)
    print("\n| model | protocol | C | req/s | client p50 ms | server ms/req |\n|---|---|--:|--:|--:|--:|")
    for r in results:
        print(f"| {r['model']} | {r['protocol']} | {r['C']} | {r['req_s']:,.0f} | {r['p50_ms']:.2f} | "
              f"{r['server_ms']:.3f} |")


if __name__ == "__main__":
    main()
