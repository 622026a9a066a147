"""The test harness's Docker engine (scripts/testbed.sh) as the integration tests use it.

Tests FAIL (never skip) when the engine, the base image or the wheelhouse is missing: ``make testbed``
starts the engine and imports ``local/debian12-systemd``; ``make wheelhouse`` builds the runtime's wheels.
``DOCKER_HOST``, ``MODELFLEET_TEST_BASE_IMAGE`` and ``MODELFLEET_WHEELHOUSE`` override the defaults.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from harness import need

REPO = Path(__file__).resolve().parents[2]
BASE_IMAGE = os.environ.get("MODELFLEET_TEST_BASE_IMAGE", "local/debian12-systemd:latest")


def docker_host() -> str:
    return os.environ.get("DOCKER_HOST") or f"unix://{REPO / '.cache' / 'testbed' / 'docker' / 'docker.sock'}"


def wheelhouse() -> Path:
    path = Path(os.environ.get("MODELFLEET_WHEELHOUSE") or REPO / ".cache" / "wheelhouse")
    if not any(path.glob("modelfleet-*.whl")):
        pytest.fail(f"no wheelhouse at {path}: run `make wheelhouse` (or set MODELFLEET_WHEELHOUSE)")
    return path


class Docker:
    """The docker CLI against the harness's engine; the legacy builder (no buildx plugin here)."""

    def __init__(self) -> None:
        self.binary = need("docker", "docker.io")
        self.env = {**os.environ, "DOCKER_HOST": docker_host(), "DOCKER_BUILDKIT": "0"}
        probe = self.run("version", "--format", "{{.Server.Version}}", check=False)
        if probe.returncode != 0:
            pytest.fail(f"no Docker engine at {self.env['DOCKER_HOST']}: run `make testbed` ({probe.stderr.strip()})")
        if self.run("image", "inspect", BASE_IMAGE, check=False).returncode != 0:
            pytest.fail(f"base image {BASE_IMAGE} missing from the engine: run `make testbed`")

    def run(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([self.binary, *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} exited {result.returncode}:\n{result.stdout[-3000:]}"
                                 f"\n{result.stderr[-3000:]}")
        return result

    def build(self, tag: str, context: Path, build_args: dict[str, str], extra: Sequence[str] = ()) -> str:
        args = [f"--build-arg={k}={v}" for k, v in build_args.items()]
        return self.run("build", "--tag", tag, *args, *extra, str(context)).stdout

    def remove(self, *, containers: Sequence[str] = (), images: Sequence[str] = ()) -> None:
        if containers:
            self.run("rm", "--force", "--volumes", *containers, check=False)
        if images:
            self.run("rmi", "--force", *images, check=False)
