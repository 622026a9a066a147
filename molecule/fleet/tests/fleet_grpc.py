"""gRPC clients of the fleet's routers and the routers' own per-server counters (issue 13), for test_fleet.py.

Clients speak the Open Inference Protocol over gRPC (tritonclient.grpc, unchanged, as teams moving from Triton
do) to both routers' gRPC port. The split of their calls between the versions comes from HAProxy's own
per-server counters of the model's gRPC backend (the router's metrics endpoint), read every quarter second with
the weights: the calls between the first and the last read that both show a step's weights were all balanced at
those weights, so none from before or after the step is counted in it.
"""

from __future__ import annotations

import functools
import math
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx


def grpc_routers(routers: list[str]) -> list[str]:
    """The routers' gRPC addresses (port 8001) from their HTTP URLs (port 8000)."""
    return [router.removeprefix("http://").replace(":8000", ":8001") for router in routers]


def metrics_urls(routers: list[str]) -> list[str]:
    """The routers' per-server metrics endpoints (port 8404)."""
    return [router.replace(":8000", ":8404") + "/metrics?scope=server" for router in routers]


@functools.cache
def _server_line(backend: str) -> re.Pattern[str]:
    """The metrics lines of ``backend``'s servers' weight and balanced calls (compiled once per backend)."""
    return re.compile(r'^haproxy_server_(weight|sessions_total)\{(?=[^}]*proxy="' + re.escape(backend)
                      + r'")[^}]*server="(\w+)"[^}]*\} (\S+)$', re.MULTILINE)


class Reading:
    """One read of a router's gRPC backend: weight and calls balanced so far, per server."""

    def __init__(self, text: str, backend: str) -> None:
        self.weights: dict[str, int] = {}
        self.calls: dict[str, int] = {}
        for field, server, value in _server_line(backend).findall(text):
            (self.weights if field == "weight" else self.calls)[server] = int(float(value))


class CounterSampler(threading.Thread):
    """Reads every router's metrics endpoint every ``period`` seconds until :meth:`stop`."""

    def __init__(self, urls: list[str], backend: str, period: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.urls, self.backend, self.period = urls, backend, period
        self.readings: dict[str, list[Reading]] = {url: [] for url in urls}
        self.stopping = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=2.0) as client:
            while not self.stopping.is_set():
                for url in self.urls:
                    try:
                        reading = Reading(client.get(url).text, self.backend)
                    except httpx.HTTPError:
                        continue
                    if reading.weights and reading.calls:
                        self.readings[url].append(reading)
                time.sleep(self.period)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=10)


def calls_at_step(readings: list[Reading], canary_weight: int) -> tuple[int, int]:
    """(canary calls, all calls) between the first and last reads of the longest run showing the step's weights."""
    step = sorted([canary_weight, 100 - canary_weight])
    runs: list[list[Reading]] = [[]]
    for reading in readings:
        if sorted(reading.weights.values()) == step:
            runs[-1].append(reading)
        elif runs[-1]:
            runs.append([])
    longest = max(runs, key=len)
    if len(longest) < 2:
        return 0, 0
    first, last = longest[0], longest[-1]
    canary = next(server for server, weight in first.weights.items() if weight == canary_weight)
    counted = {server: last.calls[server] - first.calls[server] for server in first.calls}
    return counted[canary], sum(counted.values())


def assert_split_by_weight(sampler: CounterSampler, canary_weight: int) -> None:
    """Each router balanced its gRPC calls at the step's weights: round robin at 25/75 gives the canary 25 % of
    them; the bound is binomial (4.5 sigma, never a fixed tolerance)."""
    for url, readings in sampler.readings.items():
        canary, total = calls_at_step(readings, canary_weight)
        share = canary_weight / 100
        bound = 4.5 * math.sqrt(total * share * (1 - share)) + 2
        print(f"{url}: canary {canary} of {total} gRPC calls at {canary_weight} % (expected {total * share:.0f} "
              f"± {bound:.0f}); {len(readings)} reads")
        assert total >= 50, f"{url}: too few gRPC calls counted at the {canary_weight} % step to judge ({total})"
        assert abs(canary - total * share) <= bound, (url, canary, total)


@contextmanager
def grpc_clients(traffic_module: Any, routers: list[str]) -> Iterator[Any]:
    """Two tritonclient.grpc clients at 30 calls/s each against every router's gRPC port while the block runs.
    Beside good versions only: a slot killed under gRPC clients may cut the calls whose answer it had begun, and a
    model server's gRPC error is passed on, not retried (docs/router.md), so the killed and erroring canaries would
    fail calls that the zero-failure checks count."""
    generator = traffic_module.Traffic(grpc_routers(routers), clients=2, rate_per_client=30.0, protocol="grpc",
                                       seed=303)
    generator.start()
    time.sleep(3)
    try:
        yield generator
    finally:
        generator.stop()
        outcomes, versions = generator.snapshot()
        print(f"\ngRPC calls: {dict(outcomes)}; answered by version: {dict(versions)}")
        for line in generator.failures[:50]:
            print("  failed:", line)
