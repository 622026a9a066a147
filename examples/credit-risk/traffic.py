"""Client load for credit-risk: one-row inference requests round-robin to routers, every outcome counted.

Used by `make demo` (scripts/demo_fleet.py) and the Molecule fleet scenario, so that both count failed
requests the same way. ``shift > 0`` sends drifted traffic (see ``train.generate``). ``protocol="grpc"`` sends
the same rows over the Open Inference Protocol's gRPC with tritonclient (routers given as ``host:port``).
"""

from __future__ import annotations

import importlib.util
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
MODEL = "credit-risk"


def _generate(rows: int, seed: int, shift: float) -> list[list[float]]:
    spec = importlib.util.spec_from_file_location("credit_risk_train", HERE / "train.py")
    if spec is None or spec.loader is None:
        raise ImportError(HERE / "train.py")
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    features, _labels = train.generate(rows, seed=seed, shift=shift)
    return [row.tolist() for row in features]


class Traffic(threading.Thread):
    """``clients`` clients at ``rate_per_client`` requests/s each, until :meth:`stop`."""

    def __init__(self, routers: list[str], *, clients: int = 4, rate_per_client: float = 12.0, shift: float = 0.0,
                 seed: int = 101, timeout: float = 10.0, protocol: str = "http") -> None:
        super().__init__(daemon=True)
        if protocol not in ("http", "grpc"):
            raise ValueError(f"protocol must be http or grpc, not {protocol!r}")
        self.rows = _generate(4000, seed, shift)
        self.bodies = [json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 8], "data": row}]})
                       for row in self.rows]
        self.routers, self.clients, self.period, self.timeout = routers, clients, 1.0 / rate_per_client, timeout
        self.protocol = protocol
        self.outcomes: Counter[str] = Counter()
        self.versions: Counter[str] = Counter()
        self.routed: Counter[str] = Counter()
        self.failures: list[str] = []
        self.stopping = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        workers = [threading.Thread(target=self._client, args=(index,), daemon=True) for index in range(self.clients)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=30)

    def _client(self, index: int) -> None:
        with self._http_caller() if self.protocol == "http" else self._grpc_caller() as call:
            sent = 0
            while not self.stopping.is_set():
                started = time.monotonic()
                router = self.routers[(index + sent) % len(self.routers)]
                outcome, version, detail = call(router, (index * 997 + sent) % len(self.rows))
                with self.lock:
                    self.outcomes[outcome] += 1
                    if version:
                        self.versions[version] += 1
                        self.routed[router] += 1
                    if outcome != "ok":
                        self.failures.append(f"{time.strftime('%H:%M:%S')} {router} {outcome} {detail}")
                sent += 1
                time.sleep(max(0.0, self.period - (time.monotonic() - started)))

    @contextmanager
    def _http_caller(self) -> Iterator[Callable[[str, int], tuple[str, str, str]]]:
        """One request as (outcome, answering version, detail): outcome ``ok``, ``HTTP <status>`` or the error."""
        with httpx.Client(timeout=self.timeout) as client:
            def call(router: str, row: int) -> tuple[str, str, str]:
                try:
                    response = client.post(f"{router}/v2/models/{MODEL}/infer", content=self.bodies[row],
                                           headers={"content-type": "application/json"})
                except httpx.HTTPError as exc:
                    return type(exc).__name__, "", str(exc)[:200]
                if response.status_code != 200:
                    return f"HTTP {response.status_code}", "", response.text[:200]
                return "ok", str(response.json().get("model_version", "?")), ""
            yield call

    @contextmanager
    def _grpc_caller(self) -> Iterator[Callable[[str, int], tuple[str, str, str]]]:
        """As :meth:`_http_caller`, over gRPC (tritonclient); outcome ``gRPC <status>`` for an error status."""
        import numpy as np
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        clients: dict[str, Any] = {}

        def call(router: str, row: int) -> tuple[str, str, str]:
            if router not in clients:
                clients[router] = grpcclient.InferenceServerClient(url=router)
            tensor = grpcclient.InferInput("x", [1, 8], "FP32")
            tensor.set_data_from_numpy(np.asarray([self.rows[row]], dtype=np.float32))
            try:
                result = clients[router].infer(MODEL, [tensor], client_timeout=self.timeout)
            except InferenceServerException as exc:
                return f"gRPC {exc.status()}", "", str(exc.message())[:200]
            return "ok", str(result.get_response().model_version or "?"), ""
        try:
            yield call
        finally:
            for client in clients.values():
                client.close()

    def snapshot(self) -> tuple[Counter[str], Counter[str]]:
        """Outcomes and answering versions so far."""
        with self.lock:
            return Counter(self.outcomes), Counter(self.versions)

    def answered(self) -> Counter[str]:
        """Requests answered (HTTP 200) so far, per router."""
        with self.lock:
            return Counter(self.routed)

    def failed(self) -> int:
        with self.lock:
            return sum(count for outcome, count in self.outcomes.items() if outcome != "ok")
