"""Run the function handler on its real local runtimes and talk to it.

- :class:`Emulator`: the AWS Lambda Runtime Interface Emulator (``make lambda-rie`` extracts it from the
  aws-sam-cli wheel) running ``python -m awslambdaric modelfleet.serverless.aws_lambda.handler``, bound
  to loopback; invoked over HTTP as Lambda's Invoke API (``/2015-03-31/functions/function/invocations``).
- :class:`FunctionsFramework`: Google's ``functions-framework`` serving ``modelfleet/serverless/gcf.py``.
- Lambda HTTP events as Function URLs, API Gateway HTTP APIs (v2) and REST APIs (v1) send them.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from harness import free_port, wait_for
from serverkit import HOST, Response, request, tensor

from modelfleet.convert import build_artifact
from modelfleet.spec import load_spec

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
INVOKE = "/2015-03-31/functions/function/invocations"


_BUILT: dict[str, dict[str, Path]] = {}


def example_artifacts(trained_examples: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """credit-risk and mlp (both examples, trained and converted by the real pipeline), built once per session."""
    if "examples" not in _BUILT:
        root = tmp_path_factory.mktemp("function-artifacts")
        _BUILT["examples"] = {name: build_artifact(load_spec(trained_examples / name / "model.yml"), root).path
                              for name in ("credit-risk", "mlp")}
    return _BUILT["examples"]


def rows(trained_examples: Path, example: str, count: int) -> np.ndarray:
    """The first ``count`` rows of an example's reference data (float32)."""
    with np.load(trained_examples / example / "data" / "reference.npz") as data:
        return np.asarray(data["x"][:count], dtype=np.float32)


def payload(x: np.ndarray, request_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"inputs": [tensor("x", "FP32", x.ravel().tolist(), x.shape)]}
    if request_id is not None:
        body["id"] = request_id
    return body


def rie_path() -> Path:
    """The emulator binary; the test FAILS (never skips) when it is missing."""
    path = Path(os.environ.get("LAMBDA_RIE") or REPO / ".cache" / "lambda-rie" / "aws-lambda-rie-x86_64")
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `make lambda-rie` (extracts it from the aws-sam-cli wheel) "
                    "or set LAMBDA_RIE=/path/to/aws-lambda-rie-x86_64")
    return path


def function_env(artifact: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MODELFLEET_"))}
    pythonpath = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH", "")) if p)
    return {**env, "PYTHONPATH": pythonpath, "MODELFLEET_ARTIFACT": str(artifact), **extra}


class _Process:
    def __init__(self, workdir: Path, name: str) -> None:
        self.log = workdir / f"{name}-{time.monotonic_ns()}.log"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    def _spawn(self, command: list[str], env: dict[str, str]) -> None:
        with self.log.open("wb") as log:
            # A session of its own: stop() signals the whole group (functions-framework's server runs in a
            # child that outlived its parent's SIGTERM, two of them left behind by one make test).
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.log.parent,
                                            start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def json_lines(self) -> list[dict[str, Any]]:
        """Every line of the output that is a JSON object (records, EMF, structured messages)."""
        found = []
        for line in self.output().splitlines():
            if line.startswith("{"):
                try:
                    value = json.loads(line)
                except ValueError:
                    continue
                if isinstance(value, dict):
                    found.append(value)
        return found

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is not None:
            self._signal_group(signal.SIGKILL)  # the leader is gone; whatever it started goes too
            return
        self._signal_group(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self.process.wait(5)
        self._signal_group(signal.SIGKILL)  # whatever of the group outlived the leader

    def _signal_group(self, signum: signal.Signals) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)


class Emulator(_Process):
    """The Lambda Runtime Interface Emulator with the handler; the runtime starts on the first invoke."""

    def __init__(self, artifact: Path, workdir: Path, **env: str) -> None:
        super().__init__(workdir, "rie")
        self.artifact = artifact
        self.env = env

    def start(self) -> Emulator:
        self.port = free_port()
        command = [str(rie_path()), "--runtime-interface-emulator-address", f"{HOST}:{self.port}",
                   "--runtime-api-address", f"{HOST}:{free_port()}",
                   sys.executable, "-m", "awslambdaric", "modelfleet.serverless.aws_lambda.handler"]
        self._spawn(command, function_env(self.artifact, AWS_LAMBDA_FUNCTION_TIMEOUT="60", **self.env))

        def listening() -> bool:
            with socket.create_connection((HOST, self.port), timeout=1):
                return True

        wait_for(listening, 20, what=f"the emulator to listen\n{self.output()}")
        return self

    def invoke(self, event: Any, status: int = 200) -> Any:
        """Invoke the function with ``event`` (JSON); the function's result (JSON), or the error the
        emulator answers (status 502 when the function failed)."""
        response = request(self.port, "POST", INVOKE, json.dumps(event).encode(), timeout=120)
        assert response.status == status, (response, self.output())
        return json.loads(response.body)

    def http(self, method: str, path: str, body: bytes | str | dict[str, Any] | None = None, *,
             kind: str = "url") -> Response:
        """An HTTP request through a Lambda event of ``kind`` (``url``, ``http-api`` with a stage, ``rest``)."""
        result = self.invoke(http_event(method, path, body, kind=kind))
        assert set(result) >= {"statusCode", "headers", "body"}, result
        raw = base64.b64decode(result["body"]) if result.get("isBase64Encoded") else result["body"].encode()
        return Response(result["statusCode"], {k.lower(): v for k, v in result["headers"].items()}, raw)


def http_event(method: str, path: str, body: bytes | str | dict[str, Any] | None = None, *,
               kind: str = "url") -> dict[str, Any]:
    """A Lambda HTTP event as AWS sends it (bodies base64-encoded for the REST API, as for binary media)."""
    if isinstance(body, dict):
        body = json.dumps(body)
    raw = body.encode() if isinstance(body, str) else body
    headers = {"content-type": "application/json", "host": "example.lambda-url.eu-west-1.on.aws"}
    if kind == "rest":
        return {"resource": "/{proxy+}", "path": path, "httpMethod": method, "headers": headers,
                "multiValueHeaders": {k: [v] for k, v in headers.items()}, "queryStringParameters": None,
                "requestContext": {"stage": "prod", "path": f"/prod{path}", "httpMethod": method},
                "body": base64.b64encode(raw).decode() if raw is not None else None,
                "isBase64Encoded": raw is not None}
    stage = "prod" if kind == "http-api" else "$default"
    raw_path = f"/prod{path}" if kind == "http-api" else path
    return {"version": "2.0", "routeKey": "$default", "rawPath": raw_path, "rawQueryString": "", "headers": headers,
            "requestContext": {"http": {"method": method, "path": raw_path, "protocol": "HTTP/1.1",
                                        "sourceIp": "127.0.0.1"}, "stage": stage},
            "body": raw.decode() if raw is not None else None, "isBase64Encoded": False}


class FunctionsFramework(_Process):
    """``functions-framework`` serving the Cloud Functions entry point on loopback."""

    def __init__(self, artifact: Path, workdir: Path, **env: str) -> None:
        super().__init__(workdir, "gcf")
        self.artifact = artifact
        self.env = env

    def launch(self) -> FunctionsFramework:
        self.port = free_port()
        binary = Path(sys.executable).with_name("functions-framework")
        command = [str(binary), "--source", str(SRC / "modelfleet" / "serverless" / "gcf.py"), "--target", "handler",
                   "--host", HOST, "--port", str(self.port)]
        self._spawn(command, function_env(self.artifact, **self.env))
        return self

    def start(self) -> FunctionsFramework:
        self.launch()

        def up() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"functions-framework exited with {self.process.returncode}:\n{self.output()}")
            return request(self.port, "GET", "/v2/health/live", timeout=5).status == 200

        wait_for(up, 60, what=f"functions-framework to answer\n{self.output()}")
        return self

    def http(self, method: str, path: str, body: bytes | str | dict[str, Any] | None = None) -> Response:
        return request(self.port, method, path, body, headers={"content-type": "application/json"})
