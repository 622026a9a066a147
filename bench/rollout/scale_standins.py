"""Stand-ins of the rollout scale benchmark (bench/rollout/scale.py) on the controller: stdlib only.

- :class:`StandInPrometheus` is NOT Prometheus: it answers the rollout gates' instant queries so that every
  gate passes at once (every canary target up, no restarts, 100000 requests without an error), so a rollout
  step costs its interval plus what the playbook and the modules add — the figure the benchmark is after.
- :class:`WeightWatcher` reads every host's router weights through HAProxy's built-in Prometheus endpoint
  (the router role's metrics frontend, ``:8404/metrics?scope=server``) and records when each changed.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: What the stand-in answers for the canary's request count (the ``requests`` and ``error_rate`` gates).
REQUESTS = 100000


def stand_in_answer(promql: str, hosts: Sequence[str]) -> list[dict[str, Any]]:
    """The vector a passing canary would give for one gate query (see modelfleet.rollout.queries)."""
    def sample(value: float, **labels: str) -> dict[str, Any]:
        return {"metric": labels, "value": [time.time(), f"{value:g}"]}

    if "min_over_time(up{" in promql:
        return [sample(1, host=host) for host in hosts]
    if "resets(" in promql:
        return [sample(0, host=host) for host in hosts]
    if '"count", "errors"' in promql:
        return [sample(0, count="errors"), sample(REQUESTS, count="requests")]
    if promql.startswith("sum(increase(nv_inference_request_failure_total"):
        return [sample(0)]
    if promql.startswith("sum(increase({"):
        return [sample(REQUESTS)]
    return []


class StandInPrometheus:
    """An HTTP server on 127.0.0.1 with ``/api/v1/query`` (GET or POST) answering :func:`stand_in_answer`."""

    def __init__(self, hosts: Sequence[str]) -> None:
        self.hosts = list(hosts)
        self.queries: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, query: str) -> None:
                owner.queries.append(query)
                body = json.dumps({"status": "success", "data": {
                    "resultType": "vector", "result": stand_in_answer(query, owner.hosts)}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._reply(urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query).get("query", [""])[0])

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                self._reply(urllib.parse.parse_qs(raw).get("query", [""])[0])

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def server_weight(exposition: str, backend: str, server: str) -> int | None:
    """``haproxy_server_weight`` of ``backend``/``server`` in HAProxy's Prometheus text, if present."""
    pattern = (r'^haproxy_server_weight\{(?=[^}]*proxy="' + re.escape(backend) + r'")(?=[^}]*server="'
               + re.escape(server) + r'")[^}]*\}\s+(\S+)')
    found = re.search(pattern, exposition, re.MULTILINE)
    return int(float(found.group(1))) if found else None


@dataclass
class HostTrace:
    """One host's weight of the watched server, and every change seen (epoch seconds, new weight)."""

    host: str
    url: str
    weight: int | None = None
    changes: list[tuple[float, int]] = field(default_factory=list)
    errors: int = 0
    polls: int = 0


class WeightWatcher:
    """One thread per host polls its router every ``interval`` seconds; a change is stamped halfway between the
    poll that saw it and the one before (resolution: ``interval`` plus one request's time)."""

    def __init__(self, addresses: dict[str, str], backend: str, server: str, *, port: int = 8404,
                 interval: float = 0.1) -> None:
        self.backend, self.server, self.interval = backend, server, interval
        self.traces = {host: HostTrace(host, f"http://{address}:{port}/metrics?scope=server")
                       for host, address in addresses.items()}
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._poll, args=(trace,), daemon=True)
                         for trace in self.traces.values()]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def _read(self, trace: HostTrace) -> int | None:
        with urllib.request.urlopen(trace.url, timeout=2) as response:
            return server_weight(response.read().decode(), self.backend, self.server)

    def _poll(self, trace: HostTrace) -> None:
        before = time.time()
        while not self._stop.is_set():
            try:
                weight = self._read(trace)
            except OSError:
                trace.errors += 1
                weight = None
            now = time.time()
            trace.polls += 1
            if weight is not None and weight != trace.weight:
                if trace.weight is not None:
                    trace.changes.append(((before + now) / 2, weight))
                trace.weight = weight
            before = now
            self._stop.wait(self.interval)
