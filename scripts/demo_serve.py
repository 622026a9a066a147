"""Demo step: serve a converted example locally, send it traffic, show a prediction and the metrics.

    python scripts/demo_serve.py ARTIFACT_DIR EXAMPLE_DIR [--port 18080] [--requests 500]

Uses the example's own ``generate(rows, seed)`` for realistic rows. Stops the server with SIGTERM
and checks that it drains and exits 0, as a serving host's systemd would.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), bytes(error.read())
    except OSError:
        return 0, b""


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return dict(json.loads(response.read()))


def _generator(example: Path) -> Any:
    spec = importlib.util.spec_from_file_location(f"demo_{example.name}", example / "train.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact", type=Path)
    parser.add_argument("example", type=Path)
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()
    manifest = json.loads((args.artifact / "manifest.json").read_text())
    name, version = manifest["name"], manifest["version"]
    base = f"http://127.0.0.1:{args.port}"
    server = subprocess.Popen([sys.executable, "-m", "modelfleet.cli", "serve", str(args.artifact), "--port",
                               str(args.port), "--log-level", "warning"])
    try:
        deadline = time.monotonic() + 60
        while _get(f"{base}/v2/health/ready")[0] != 200:
            if server.poll() is not None or time.monotonic() > deadline:
                print(f"demo: the server did not become ready: {_get(f'{base}/v2/health/ready')[1]!r}")
                return 1
            time.sleep(0.2)
        rows, _labels = _generator(args.example)(args.requests, seed=99)
        started = time.perf_counter()
        for index, row in enumerate(rows):
            reply = _post(f"{base}/v2/models/{name}/infer", {"id": f"demo-{index}", "inputs": [
                {"name": "x", "datatype": "FP32", "shape": [1, len(row)], "data": row.tolist()}]})
        elapsed = time.perf_counter() - started
        outputs = {o["name"]: o["data"] for o in reply["outputs"]}
        print(f"{name} v{version} at {base}/v2/models/{name}/infer: last prediction {outputs}")
        print(f"  {args.requests} sequential requests in {elapsed:.2f} s "
              f"({args.requests / elapsed:.0f} requests/s from one Python client)")
        metrics = _get(f"{base}/metrics")[1].decode()
        shown = [line for line in metrics.splitlines()
                 if line.startswith(("nv_inference_request_success_total", "nv_inference_exec_count_total",
                                     "modelfleet_model_info"))]
        print("  " + "\n  ".join(shown))
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=60)
    print(f"  SIGTERM: drained and exited with status {code}")
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
