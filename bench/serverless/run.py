"""Cold start and warm latency of the Lambda handler under the Runtime Interface Emulator, both examples.

Cold start: the emulator and runtime are started fresh; the first invoke (a 1-row inference) pays the
runtime start, the imports and the artifact's verification, load and warm-up. Warm: the same request
repeated on that instance. Times are client-side (HTTP to the emulator), in milliseconds.

    python bench/serverless/run.py --rie .cache/lambda-rie/aws-lambda-rie-x86_64 [--colds 5 --warm 300]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
INVOKE = "/2015-03-31/functions/function/invocations"


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _artifact(example: str, root: Path) -> Path:
    from modelfleet.convert import build_artifact
    from modelfleet.spec import load_spec

    if not (REPO / "examples" / example / "data" / "reference.npz").exists():
        subprocess.run([sys.executable, str(REPO / "examples" / example / "train.py")], check=True)
    return build_artifact(load_spec(REPO / "examples" / example / "model.yml"), root).path


def _invoke(port: int, event: bytes) -> float:
    started = time.perf_counter()
    with urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}{INVOKE}", event), timeout=120) as r:
        body = json.loads(r.read())
    assert body.get("statusCode") == 200, body
    return (time.perf_counter() - started) * 1000


def _event(example: str) -> bytes:
    with np.load(REPO / "examples" / example / "data" / "reference.npz") as data:
        x = np.asarray(data["x"][:1], dtype=np.float32)
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}]}
    return json.dumps({"version": "2.0", "rawPath": f"/v2/models/{example}/infer", "body": json.dumps(body),
                       "requestContext": {"http": {"method": "POST"}}, "isBase64Encoded": False}).encode()


def _instance(rie: Path, artifact: Path, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = _port()
    env = {**os.environ, "MODELFLEET_ARTIFACT": str(artifact), "MODELFLEET_RECORD_SAMPLE_RATE": "0",
           "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    with log.open("ab") as out:
        process = subprocess.Popen([str(rie), "--runtime-interface-emulator-address", f"127.0.0.1:{port}",
                                    "--runtime-api-address", f"127.0.0.1:{_port()}", sys.executable, "-m",
                                    "awslambdaric", "modelfleet.serverless.aws_lambda.handler"],
                                   stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, port
        except OSError:
            time.sleep(0.01)
    raise RuntimeError("the emulator did not listen")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rie", required=True, type=Path)
    parser.add_argument("--colds", type=int, default=5, help="fresh instances per example")
    parser.add_argument("--warm", type=int, default=300, help="warm invokes per example (on the last instance)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-serverless-"))
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, logs in {work}")
    for example in ("credit-risk", "mlp"):
        artifact, event = _artifact(example, work / "artifacts"), _event(example)
        colds, warm = [], []
        for i in range(args.colds):
            process, port = _instance(args.rie, artifact, work / f"{example}.log")
            try:
                colds.append(_invoke(port, event))
                if i == args.colds - 1:
                    warm = [_invoke(port, event) for _ in range(args.warm)]
            finally:
                process.terminate()
                process.wait(10)
        q = statistics.quantiles(warm, n=100)
        print(f"{example}: cold start (first invoke) median {statistics.median(colds):.0f} ms "
              f"[min {min(colds):.0f}, max {max(colds):.0f}, n={len(colds)}]; warm 1-row invoke "
              f"p50 {q[49]:.2f} ms, p90 {q[89]:.2f} ms, p99 {q[98]:.2f} ms (n={len(warm)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
