"""The Lambda container image, built for real: `modelfleet serverless package` on the harness's local Debian
image (the alternative-base-image pattern with awslambdaric), run in the test harness's Docker engine with the
Runtime Interface Emulator as entrypoint, invoked over HTTP; its predictions equal the server's. The package's
unzipped size is checked against Lambda's zip limit and reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from docker_engine import BASE_IMAGE, docker_host
from functionkit import INVOKE, REPO, example_artifacts, http_event, payload, rie_path, rows
from harness import free_port, wait_for
from serverkit import HOST, Server, request

from modelfleet.serverless.package import ZIP_UNZIPPED_LIMIT, tree_size

pytestmark = [pytest.mark.integration, pytest.mark.slow]
BASE = BASE_IMAGE
NAME = f"serverless-test-{os.getpid()}"


def _docker(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKER_HOST": docker_host()}
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, env=env, check=False)


def test_image_on_the_local_debian_base(trained_examples: Path, tmp_path: Path,
                                        tmp_path_factory: pytest.TempPathFactory) -> None:
    probe = _docker("image", "inspect", BASE, timeout=60)
    assert probe.returncode == 0, f"the harness's Docker engine or {BASE} is missing (make testbed): {probe.stderr}"
    artifact = example_artifacts(trained_examples, tmp_path_factory)["credit-risk"]
    out = tmp_path / "lambda"
    built = subprocess.run([sys.executable, "-m", "modelfleet.cli", "serverless", "package", str(artifact),
                            "--output", str(out), "--project", str(REPO), "--base-image", BASE,
                            "--rie", str(rie_path())], capture_output=True, text=True, timeout=900, check=False)
    assert built.returncode == 0, built.stderr
    unzipped = tree_size(out / "image" / "task")
    print(f"\nLambda task tree: {unzipped / 1e6:.1f} MB unzipped (zip limit {ZIP_UNZIPPED_LIMIT / 1e6:.0f} MB)")
    assert f"{unzipped / 1e6:.1f} MB unzipped" in built.stdout
    assert (out / "function.zip").exists() == (unzipped <= ZIP_UNZIPPED_LIMIT), built.stdout
    port = free_port()
    try:
        assert _docker("build", "-q", "-t", NAME, str(out / "image")).returncode == 0
        started = _docker("run", "-d", "--name", NAME, "-p", f"{HOST}:{port}:8080", NAME, timeout=60)
        assert started.returncode == 0, started.stderr
        x = rows(trained_examples, "credit-risk", 30)

        def answered() -> dict[str, object] | None:
            event = json.dumps(http_event("POST", "/v2/models/credit-risk/infer", payload(x, "img")))
            response = request(port, "POST", INVOKE, event, timeout=120)
            return response.json() if response.status == 200 else None

        result = wait_for(answered, 180, what="the container's function to answer")
        server = Server(artifact, tmp_path).start()
        try:
            expected = server.infer("credit-risk", payload(x, "img")).json()
        finally:
            server.stop()
        assert result["statusCode"] == 200, result
        mine = json.loads(str(result["body"]))
        assert mine["id"] == "img"
        for a, b in zip(mine["outputs"], expected["outputs"], strict=True):
            assert (a["name"], a["shape"]) == (b["name"], b["shape"])
            np.testing.assert_allclose(np.asarray(a["data"]), np.asarray(b["data"]), rtol=1e-6, atol=1e-7)
        logs = _docker("logs", NAME, timeout=60)
        assert "cold start: credit-risk version 1 verified" in logs.stdout + logs.stderr
    finally:
        _docker("rm", "-f", NAME, timeout=60)
        _docker("rmi", "-f", NAME, timeout=120)
