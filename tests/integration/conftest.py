"""Fixtures of the model server tests: artifacts built by the real pipeline, real server processes."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from drift_daemon import Daemon, build_artifacts, train_module
from serve_models import build_slow, build_typed
from serverkit import Server, StartServer

from modelfleet.convert import build_artifact
from modelfleet.spec import load_spec

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def serve_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("serve")


@pytest.fixture(scope="session")
def credit_risk_artifact(serve_root: Path) -> Path:
    """examples/credit-risk trained (scikit-learn) and converted: the realistic tabular model."""
    source = serve_root / "examples" / "credit-risk"
    shutil.copytree(REPO / "examples" / "credit-risk", source,
                    ignore=shutil.ignore_patterns("data", "*.joblib", "__pycache__"))
    subprocess.run([sys.executable, str(source / "train.py")], check=True, capture_output=True, timeout=300)
    return build_artifact(load_spec(source / "model.yml"), serve_root / "artifacts").path


@pytest.fixture(scope="session")
def mlp_artifact(trained_examples: Path, serve_root: Path) -> Path:
    """examples/mlp trained (PyTorch) and converted: the second example, max batch 32."""
    return build_artifact(load_spec(trained_examples / "mlp" / "model.yml"), serve_root / "artifacts").path


@pytest.fixture(scope="session")
def mlp_server(mlp_artifact: Path, serve_root: Path) -> Iterator[Server]:
    server = Server(mlp_artifact, serve_root, "--grpc-port", "0").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def typed_artifact(serve_root: Path) -> Path:
    return build_typed(serve_root / "sources", serve_root / "artifacts")


@pytest.fixture(scope="session")
def slow_artifact(serve_root: Path) -> Path:
    return build_slow(serve_root / "sources", serve_root / "artifacts")


@pytest.fixture(scope="session")
def slow_iterations(slow_artifact: Path) -> Callable[[float], int]:
    """Loop iterations of the slow model that take about ``seconds`` on this machine."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(slow_artifact / "model.onnx"), providers=["CPUExecutionProvider"])
    probe = 2000
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        session.run(None, {"x": np.array([[probe, 0]], np.float32)})
        timings.append(time.perf_counter() - started)
    per_iteration = min(timings) / probe
    return lambda seconds: max(1, round(seconds / per_iteration))


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    """``start_server(artifact, *cli_args, wait="ready"|"live")``: a server for this test only."""
    servers: list[Server] = []

    def start(artifact: Path, *args: str, wait: str = "ready") -> Server:
        server = Server(artifact, tmp_path, *args)
        servers.append(server)
        return server.start(wait)

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def credit_server(credit_risk_artifact: Path, serve_root: Path) -> Iterator[Server]:
    """One shared credit-risk server, HTTP and gRPC (tests must not depend on its counters' absolute values)."""
    server = Server(credit_risk_artifact, serve_root, "--grpc-port", "0").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def typed_server(typed_artifact: Path, serve_root: Path) -> Iterator[Server]:
    server = Server(typed_artifact, serve_root, "--grpc-port", "0").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def credit_rows(credit_risk_artifact: Path) -> np.ndarray:
    """Real reference rows of the credit-risk model (float32, shape [n, 8])."""
    reference = credit_risk_artifact.parents[2] / "examples" / "credit-risk" / "data" / "reference.npz"
    return np.load(reference)["x"][:200].astype(np.float32)


# --- drift exporter (artifacts of the trained examples, the examples' data generator, daemons) ---

@pytest.fixture(scope="module")
def artifacts(trained_examples: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_artifacts(trained_examples, tmp_path_factory.mktemp("drift-artifacts"))


@pytest.fixture(scope="module")
def train(trained_examples: Path) -> ModuleType:
    return train_module(trained_examples)


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.close()
