#!/usr/bin/python3
"""STAND-IN model server of the rollout scale benchmark (bench/rollout/scale.py), not modelfleet's server.

Runs on the light serving hosts with the host's own python3 (standard library only) and answers just what the
router and the rollout touch: the Open Inference Protocol health paths (HAProxy's check is /v2/health/ready),
model readiness, and a constant answer to infer. Usage: standin_backend.py PORT MODEL VERSION
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, MODEL, VERSION = int(sys.argv[1]), sys.argv[2], sys.argv[3]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path in ("/v2/health/ready", "/v2/health/live") or self.path.endswith("/ready"):
            self._answer(200, {"ready": True, "standin": True})
        else:
            self._answer(404, {"error": "stand-in backend: no route for " + self.path})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        if self.path.endswith("/infer"):
            self._answer(200, {"model_name": MODEL, "model_version": VERSION,
                               "outputs": [{"name": "y", "datatype": "FP32", "shape": [1, 1], "data": [0.0]}]})
        else:
            self._answer(404, {"error": "stand-in backend: no route for " + self.path})

    def log_message(self, format, *args):
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("0.0.0.0", PORT), Handler).serve_forever()
