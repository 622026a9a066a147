"""The ``fetch-artifact`` init container's script, run for real: download, sha256 check, unpack, verify.

The script and environment are taken from the rendered Deployment and run by ``/bin/sh`` on this machine with
the real ``sha256sum``, ``tar``, ``python3`` and ``modelfleet verify``, against a real artifact served by a
local HTTP server (an object store's HTTPS endpoint stands in for it: no cluster or object store exists
here). Paths inside the pod (``/models``) are moved to a temporary directory.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serve_models import build_typed

from modelfleet.k8s import build, parse_settings
from modelfleet.spec import load_spec

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("artifact")
    return build_typed(root / "work", root / "artifacts")


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tar(source: Path, target: Path, *, tamper: bool = False) -> None:
    with tarfile.open(target, "w:gz") as archive:
        for path in sorted(source.iterdir()):
            if tamper and path.name == "model.onnx":
                changed = target.parent / "model.onnx"
                changed.write_bytes(path.read_bytes() + b"\0")
                archive.add(changed, arcname=path.name)
            else:
                archive.add(path, arcname=path.name)


def _run_init(artifact: Path, settings: dict[str, Any], models: Path) -> subprocess.CompletedProcess[str]:
    spec = load_spec(artifact.parents[2] / "work" / "typed" / "model.yml")
    deployment = next(o for o in build(spec, parse_settings(settings)) if o["kind"] == "Deployment")
    init = deployment["spec"]["template"]["spec"]["initContainers"][0]
    env = {e["name"]: e["value"].replace("/models", str(models)) for e in init["env"]}
    env |= {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "PYTHONPATH": str(REPO / "src"),
            "HOME": str(models.parent)}
    assert init["command"][:2] == ["/bin/sh", "-c"]
    return subprocess.run(init["command"], env=env, capture_output=True, text=True, timeout=120, check=False)


def _url_settings(base: str, digest: str) -> dict[str, Any]:
    return {"artifact": {"source": "url", "url": f"{base}/{{name}}-{{version}}.tar.gz", "sha256": {"1": digest}},
            "monitoring": {"prometheus_rule": False}}


def test_url_artifact_with_the_right_sum_is_unpacked_and_verified(
        artifact: Path, http_root: tuple[Path, str], tmp_path: Path) -> None:
    served, base = http_root
    _tar(artifact, served / "typed-1.tar.gz")
    models = tmp_path / "models"
    models.mkdir()
    done = _run_init(artifact, _url_settings(base, _sha256(served / "typed-1.tar.gz")), models)
    assert done.returncode == 0, done.stderr
    assert "typed v1: " in done.stdout and "files match the manifest" in done.stdout
    assert _sha256(models / "typed" / "1" / "model.onnx") == _sha256(artifact / "model.onnx")
    assert not list(models.glob(".*.tar.gz"))


def test_url_artifact_with_another_sum_is_refused(
        artifact: Path, http_root: tuple[Path, str], tmp_path: Path) -> None:
    served, base = http_root
    _tar(artifact, served / "typed-1.tar.gz")
    models = tmp_path / "models"
    models.mkdir()
    done = _run_init(artifact, _url_settings(base, "0" * 64), models)
    assert done.returncode != 0
    assert "FAILED" in done.stdout + done.stderr
    assert not (models / "typed" / "1").exists()


def test_url_archive_whose_files_differ_from_the_manifest_is_refused(
        artifact: Path, http_root: tuple[Path, str], tmp_path: Path) -> None:
    served, base = http_root
    _tar(artifact, served / "typed-1.tar.gz", tamper=True)
    models = tmp_path / "models"
    models.mkdir()
    done = _run_init(artifact, _url_settings(base, _sha256(served / "typed-1.tar.gz")), models)
    assert done.returncode == 2
    assert "does not match the manifest" in done.stderr


@pytest.mark.parametrize("tamper", [False, True])
def test_pvc_artifact_checks_manifest_sum_then_files(artifact: Path, tmp_path: Path, tamper: bool) -> None:
    models = tmp_path / "models"
    (models / "typed").mkdir(parents=True)
    copy = models / "typed" / "1"
    subprocess.run(["cp", "-r", str(artifact), str(copy)], check=True)
    if tamper:
        (copy / "model.onnx").chmod(0o644)
        with (copy / "model.onnx").open("ab") as handle:
            handle.write(b"\0")
    manifest_sum = _sha256(copy / "manifest.json")
    settings = {"artifact": {"source": "pvc", "claim": "models", "sha256": {"1": manifest_sum}},
                "monitoring": {"prometheus_rule": False}}
    done = _run_init(artifact, settings, models)
    assert done.returncode == (2 if tamper else 0), done.stderr
    settings["artifact"]["sha256"]["1"] = "f" * 64  # type: ignore[index]
    assert _run_init(artifact, settings, models).returncode != 0
