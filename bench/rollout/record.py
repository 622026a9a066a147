"""Record the model server's request latency histogram under load, for the rollout simulation.

Converts examples/credit-risk, starts the real server (``modelfleet serve``) on loopback, sends requests from
concurrent clients at a fixed total rate for a while, then reads ``modelfleet_request_duration_seconds`` from
its /metrics and writes the bucket counts as JSON (``latency-credit-risk.json`` beside this file).

    python bench/rollout/record.py [--rate 200] [--seconds 60] [--clients 8] [--output F]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
SPEC = ROOT / "examples" / "credit-risk" / "model.yml"
METRIC = "modelfleet_request_duration_seconds"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_ready(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"the server at {url} did not become ready in {timeout:.0f} s")


def client(url: str, period: float, stop: threading.Event, seed: int, counts: dict[str, int]) -> None:
    rng = np.random.default_rng(seed)
    next_at = time.monotonic() + rng.random() * period
    while not stop.is_set():
        row = [float(rng.normal(40, 10)), float(rng.normal(50000, 12000)), float(rng.random()),
               float(rng.integers(0, 10)), float(rng.poisson(1)), float(rng.random()), float(rng.integers(0, 4)),
               float(rng.integers(0, 3))]
        body = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 8], "data": row}]}).encode()
        request = urllib.request.Request(f"{url}/v2/models/credit-risk/infer", data=body,
                                         headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                answer.read()
            counts["ok"] += 1
        except OSError:
            counts["failed"] += 1
        next_at += period
        time.sleep(max(0.0, next_at - time.monotonic()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second, all clients together")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--output", type=Path, default=HERE / "latency-credit-risk.json")
    args = parser.parse_args()
    python = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        command = str(Path(python).with_name("modelfleet"))
        subprocess.run([command, "convert", str(SPEC), "--output", tmp, "--quiet"], check=True)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen([command, "serve", f"{tmp}/credit-risk/1", "--spec", str(SPEC), "--port", str(port),
                                   "--log-level", "warning"], env=dict(os.environ))
        try:
            wait_ready(url)
            stop = threading.Event()
            counts = {"ok": 0, "failed": 0}
            threads = [threading.Thread(target=client, args=(url, args.clients / args.rate, stop, i, counts))
                       for i in range(args.clients)]
            for thread in threads:
                thread.start()
            time.sleep(args.seconds)
            stop.set()
            for thread in threads:
                thread.join()
            with urllib.request.urlopen(f"{url}/metrics", timeout=10) as answer:
                text = answer.read().decode()
        finally:
            server.terminate()
            server.wait(timeout=30)
    cumulative: list[tuple[float, float]] = []
    for family in text_string_to_metric_families(text):
        if family.name == METRIC:
            cumulative = sorted((float(s.labels["le"]), s.value) for s in family.samples
                                if s.name == f"{METRIC}_bucket")
    if not cumulative:
        raise SystemExit(f"{METRIC} not found in the server's /metrics")
    counts_by_bucket = [round(c - (cumulative[i - 1][1] if i else 0.0)) for i, (_le, c) in enumerate(cumulative)]
    data = {
        "source": f"modelfleet serve credit-risk v1 on {platform.node()} ({os.cpu_count()} cores), "
                  f"{args.clients} clients at {args.rate:g} req/s for {args.seconds:g} s, "
                  f"{counts['ok']} answered, {counts['failed']} failed, {time.strftime('%Y-%m-%d')}",
        "bounds": [le for le, _ in cumulative[:-1]],
        "counts": counts_by_bucket,
    }
    args.output.write_text(json.dumps(data, indent=1) + "\n")
    print(f"{args.output}: {sum(counts_by_bucket)} requests; {data['source']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
