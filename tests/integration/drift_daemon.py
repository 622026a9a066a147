"""Helpers for the drift exporter integration tests: artifacts, spool traffic, the daemon process, scrapes."""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import onnxruntime as ort
from harness import free_port, load_example, wait_for
from prometheus_client.parser import text_string_to_metric_families

from modelfleet.convert import build_artifact
from modelfleet.spec import load_spec
from modelfleet.spool.record import Tensor
from modelfleet.spool.writer import SpoolWriter

MODEL = "credit-risk"
Metrics = dict[tuple[str, tuple[tuple[str, str], ...]], float]
_ARTIFACTS: dict[str, Path] = {}


def build_artifacts(trained_examples: Path, root: Path) -> Path:
    """credit-risk versions 1 and 2 under ``root`` (built once per test session)."""
    if "root" not in _ARTIFACTS:
        spec = load_spec(trained_examples / MODEL / "model.yml")
        build_artifact(spec, root)
        build_artifact(spec.model_copy(update={"version": "2"}), root)
        _ARTIFACTS["root"] = root
    return _ARTIFACTS["root"]


def train_module(trained_examples: Path) -> ModuleType:
    """examples/credit-risk/train.py of the trained copy (for ``generate``)."""
    return load_example(trained_examples / MODEL / "train.py")


@dataclass
class Traffic:
    """What was spooled: request ids (one per record), features, true labels, predicted labels."""

    ids: list[str]
    rows_per_record: int
    x: np.ndarray
    y: np.ndarray
    predicted: np.ndarray

    @property
    def rows(self) -> int:
        return int(self.x.shape[0])


def spool_traffic(spool: Path, artifacts: Path, generate: Callable[..., Any], *, version: str = "1",
                  records: int = 100, rows_per_record: int = 1, seed: int = 1, shift: float = 0.0,
                  prefix: str = "r", segment_bytes: int = 1 << 20, max_bytes: int = 64 << 20,
                  timestamp: float | None = None) -> tuple[Traffic, SpoolWriter]:
    """Write ``records`` records of generated traffic with the real spool writer (closed when returned)."""
    session = ort.InferenceSession(str(artifacts / MODEL / version / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    x, y = generate(records * rows_per_record, seed=seed, shift=shift)
    label, probabilities = session.run(None, {"x": x})
    writer = SpoolWriter(spool, MODEL, version, segment_bytes=segment_bytes, max_bytes=max_bytes,
                         queue_size=records + 10, flush_interval=0.02).start()
    ids = []
    for i in range(records):
        rows = slice(i * rows_per_record, (i + 1) * rows_per_record)
        ids.append(f"{prefix}{i}")
        outputs = {"label": Tensor("INT64", label[rows]), "probabilities": Tensor("FP32", probabilities[rows])}
        assert writer.offer(ids[-1], timestamp or time.time(), {"x": Tensor("FP32", x[rows])}, outputs)
    writer.close()
    assert writer.stats.written == records
    return Traffic(ids, rows_per_record, x, y, label), writer


class Daemon:
    """``modelfleet drift-exporter`` as a real process on 127.0.0.1."""

    def __init__(self, spool: Path, artifacts: Path, state: Path, *extra: str, scheme: str = "http",
                 ssl_context: ssl.SSLContext | None = None, auth: tuple[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.args = [sys.executable, "-m", "modelfleet.cli", "drift-exporter", "--spool-dir", str(spool),
                     "--artifacts-dir", str(artifacts), "--state-dir", str(state), "--host", "127.0.0.1",
                     "--port", str(self.port), "--bucket", "1s", "--windows", "1m,10m",
                     "--discovery-interval", "0.3s", "--checkpoint-interval", "0.5s", "--log-level", "warning",
                     *extra]
        self.log = state.parent / f"exporter-{self.port}.log"
        self.ssl_context = ssl_context
        self.auth = auth
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> Daemon:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT,
                                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        wait_for(lambda: self._ready(), timeout, what=f"the exporter to answer on {self.url} (log {self.log})")
        return self

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"exporter exited with {self.process.returncode}: {self.log.read_text()}")
        try:
            return self.request("GET", "/healthz")[0] == 200
        except OSError:
            return False

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, auth: tuple[str, str] | None = None) -> tuple[int, bytes, Any]:
        headers = dict(headers or {})
        credentials = auth or self.auth
        if credentials is not None:
            headers["Authorization"] = "Basic " + base64.b64encode(":".join(credentials).encode()).decode()
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10, context=self.ssl_context) as response:
                return response.status, response.read(), response.headers
        except urllib.error.HTTPError as error:
            return error.code, error.read(), error.headers

    def metrics_text(self) -> str:
        status, body, _ = self.request("GET", "/metrics")
        assert status == 200, body
        return body.decode()

    def metrics(self) -> Metrics:
        found: Metrics = {}
        for family in text_string_to_metric_families(self.metrics_text()):
            for sample in family.samples:
                found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return found

    def stop(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()  # SIGKILL: no shutdown code runs
        self.process.wait(10)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(10)


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.get((name, tuple(sorted(labels.items()))))


def rows_in(daemon: Daemon, expected: float, version: str = "1", window: str = "10m", timeout: float = 20.0) -> None:
    """Wait until the window holds ``expected`` rows."""
    last: list[float | None] = [None]

    def reached() -> bool:
        last[0] = value(daemon.metrics(), "modelfleet_window_rows", model=MODEL, version=version, window=window)
        return last[0] == expected

    try:
        wait_for(reached, timeout, what=f"{expected} rows in window {window} of version {version}")
    except AssertionError as error:
        raise AssertionError(f"{error} (last seen {last[0]})") from None
