"""Client load for credit-risk: one-row inference requests round-robin to routers, every outcome counted.

Used by `make demo` (scripts/demo_fleet.py) and the Molecule fleet scenario, so that both count failed
requests the same way. ``shift > 0`` sends drifted traffic (see ``train.generate``).
"""

from __future__ import annotations

import importlib.util
import json
import threading
import time
from collections import Counter
from pathlib import Path

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
                 seed: int = 101, timeout: float = 10.0) -> None:
        super().__init__(daemon=True)
        self.bodies = [json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 8], "data": row}]})
                       for row in _generate(4000, seed, shift)]
        self.routers, self.clients, self.period, self.timeout = routers, clients, 1.0 / rate_per_client, timeout
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
        with httpx.Client(timeout=self.timeout) as client:
            sent = 0
            while not self.stopping.is_set():
                started = time.monotonic()
                router = self.routers[(index + sent) % len(self.routers)]
                body = self.bodies[(index * 997 + sent) % len(self.bodies)]
                version, detail = "", ""
                try:
                    response = client.post(f"{router}/v2/models/{MODEL}/infer", content=body,
                                           headers={"content-type": "application/json"})
                    outcome = "ok" if response.status_code == 200 else f"HTTP {response.status_code}"
                    if outcome == "ok":
                        version = str(response.json().get("model_version", "?"))
                    else:
                        detail = response.text[:200]
                except httpx.HTTPError as exc:
                    outcome, detail = type(exc).__name__, str(exc)[:200]
                with self.lock:
                    self.outcomes[outcome] += 1
                    if version:
                        self.versions[version] += 1
                        self.routed[router] += 1
                    if outcome != "ok":
                        self.failures.append(f"{time.strftime('%H:%M:%S')} {router} {outcome} {detail}")
                sent += 1
                time.sleep(max(0.0, self.period - (time.monotonic() - started)))

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
