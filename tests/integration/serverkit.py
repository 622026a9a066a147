"""Run the real model server (`python -m modelfleet.cli serve`) on loopback and talk to it.

Stdlib HTTP only (http.client, raw sockets): what the server receives is exactly what a test sends.
"""

from __future__ import annotations

import http.client
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from harness import wait_for
from prometheus_client.parser import text_string_to_metric_families

HOST = "127.0.0.1"
_LISTENING = re.compile(rb"running on http://127\.0\.0\.1:(\d+)")
_GRPC_LISTENING = re.compile(rb"gRPC running on 127\.0\.0\.1:(\d+)")
T = TypeVar("T")


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def error(self) -> str:
        """The message of an ``{"error": "..."}`` body (and check that the body is exactly that)."""
        assert self.headers.get("content-type") == "application/json", self.headers
        body = self.json()
        assert isinstance(body, dict) and set(body) == {"error"} and isinstance(body["error"], str), body
        return str(body["error"])


def request(port: int, method: str, path: str, body: bytes | str | dict[str, Any] | None = None,
            headers: dict[str, str] | None = None, timeout: float = 30.0) -> Response:
    if isinstance(body, dict):
        body = json.dumps(body)
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers={"Connection": "close", **(headers or {})})
        response = connection.getresponse()
        return Response(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        connection.close()


def raw_exchange(port: int, data: bytes, *, timeout: float = 10.0, close_after: bool = False) -> bytes:
    """Send raw bytes on a fresh connection; return everything the server answers until it closes."""
    import socket

    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(data)
        if close_after:
            return b""
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
            if b"\r\n\r\n" in b"".join(chunks) and _complete(b"".join(chunks)):
                break
        return b"".join(chunks)


def _complete(raw: bytes) -> bool:
    head, _, body = raw.partition(b"\r\n\r\n")
    match = re.search(rb"(?i)content-length:\s*(\d+)", head)
    return match is not None and len(body) >= int(match.group(1))


class Metrics:
    """One scrape of /metrics, parsed with prometheus_client's own parser."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}

    def samples(self, name: str, **labels: str) -> list[tuple[dict[str, str], float]]:
        found = []
        for family in self.families.values():
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    found.append((dict(sample.labels), float(sample.value)))
        return found

    def value(self, name: str, **labels: str) -> float:
        """Sum of the samples named ``name`` whose labels include ``labels`` (0 when there are none)."""
        return sum(v for _, v in self.samples(name, **labels))


class Server:
    """A `modelfleet serve` subprocess on 127.0.0.1 (port chosen by the kernel, read from its log)."""

    def __init__(self, artifact: Path, workdir: Path, *args: str) -> None:
        self.artifact = artifact
        self.log = workdir / f"server-{time.monotonic_ns()}.log"
        self.args = args
        self.port = 0
        self.grpc_port = 0  # with --grpc-port: the port it listens on
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def grpc_address(self) -> str:
        return f"{HOST}:{self.grpc_port}"

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        assert self.process is not None
        return self.process

    def start(self, wait: str = "ready", timeout: float = 60.0) -> Server:
        command = [sys.executable, "-m", "modelfleet.cli", "serve", str(self.artifact), "--host", HOST,
                   "--port", "0", *self.args]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)

        def listening() -> int | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.output()}")
            match = _LISTENING.search(self.log.read_bytes())
            return int(match.group(1)) if match else None

        self.port = wait_for(listening, timeout, what=f"the server to listen\n{self.output()}")
        if "--grpc-port" in self.args:
            match = _GRPC_LISTENING.search(self.log.read_bytes())
            assert match, f"no gRPC listener in the log:\n{self.output()}"
            self.grpc_port = int(match.group(1))
        if wait == "ready":
            wait_for(lambda: self.get("/v2/health/ready").status == 200, timeout,
                     what=f"readiness\n{self.output()}")
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def get(self, path: str, **kwargs: Any) -> Response:
        return request(self.port, "GET", path, **kwargs)

    def post(self, path: str, body: bytes | str | dict[str, Any] | None = None, **kwargs: Any) -> Response:
        return request(self.port, "POST", path, body, **kwargs)

    def infer(self, model: str, payload: dict[str, Any] | bytes, version: str | None = None,
              **kwargs: Any) -> Response:
        path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
        return self.post(path, payload, **kwargs)

    def metrics(self) -> Metrics:
        response = self.get("/metrics")
        assert response.status == 200, response
        return Metrics(response.body.decode())

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            raise AssertionError(f"server ignored SIGTERM for 15 s:\n{self.output()}") from None


StartServer = Callable[..., Server]


def spool_lines(directory: Path) -> list[bytes]:
    """Complete record lines of every segment under ``directory``, oldest segment first."""
    lines: list[bytes] = []
    for segment in sorted(directory.glob("*.jsonl")):
        data = segment.read_bytes()
        lines.extend(line + b"\n" for line in data.split(b"\n")[:-1])
    return lines


def tensor(name: str, datatype: str, data: Any, shape: Iterable[int]) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": list(shape), "data": data}
