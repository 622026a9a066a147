"""The one copy of the test harness every layer shares (importable as ``harness``: tests/ is on sys.path).

- :func:`wait_for` polls a condition; :func:`free_port` picks a loopback port;
- :func:`need` finds an external tool or FAILS the test: a missing tool never turns a layer into a
  silent pass (install them with ``make bootstrap``; ``PROMTOOL=/path`` and the like override the lookup);
- :class:`Prometheus` runs a real Prometheus on loopback;
- :func:`collection_root` makes this checkout importable as the collection ``modelfleet.serving``;
- :func:`load_example` imports an example's script (``examples/<name>/<script>.py``) by path.
"""

from __future__ import annotations

import atexit
import functools
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def wait_for(check: Callable[[], T | None], timeout: float = 20.0, *, what: str = "condition",
             interval: float = 0.01) -> T:
    """Poll ``check`` until it returns something truthy (an ``OSError`` counts as not yet: a server
    still starting); fail after ``timeout`` seconds, naming ``what`` and the last error."""
    deadline = time.monotonic() + timeout
    error: OSError | None = None
    while True:
        try:
            value = check()
        except OSError as exc:
            value, error = None, exc
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}"
                                 + (f" (last error: {error})" if error else ""))
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def tool_path(name: str) -> str:
    """Where the tool ``name`` is: ``$NAME`` (upper case, ``-`` as ``_``), else on PATH or in the sbin/bin
    directories (Debian puts haproxy in /usr/sbin)."""
    return (os.environ.get(name.upper().replace("-", "_")) or shutil.which(name)
            or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin") or f"/usr/bin/{name}")


def need(name: str, package: str) -> str:
    """The tool's path; the test FAILS (never skips) when it is missing, in CI as on a workstation."""
    path = tool_path(name)
    if not Path(path).exists():
        pytest.fail(f"{name} is missing: install the Debian package {package} (make bootstrap) "
                    f"or set {name.upper().replace('-', '_')}=/path/to/it")
    return path


class Prometheus:
    """``prometheus`` on 127.0.0.1 with its own storage; ``config`` is a dict (written out) or a file."""

    def __init__(self, workdir: Path, config: dict[str, Any] | Path, *, port: int | None = None,
                 args: Sequence[str] = ()) -> None:
        binary = need("prometheus", "prometheus")
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        if isinstance(config, Path):
            self.config = config
        else:
            self.config = workdir / "prometheus.yml"
            self.config.write_text(yaml.safe_dump(config))
        self.log = workdir / "prometheus.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [binary, f"--config.file={self.config}", f"--web.listen-address=127.0.0.1:{self.port}",
                 f"--storage.tsdb.path={workdir / 'data'}", "--log.level=warn", *args],
                stdout=log, stderr=subprocess.STDOUT,
            )
        try:
            wait_for(self._ready, 30, what=f"Prometheus to be ready (log {self.log})")
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"prometheus exited with {self.process.returncode}:\n{self.log.read_text()}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=5) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def api(self, path: str, **params: str) -> tuple[int, dict[str, Any]]:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def query(self, expr: str) -> list[dict[str, Any]]:
        status, body = self.api("query", query=expr)
        assert status == 200 and body["status"] == "success", (expr, body)
        return list(body["data"]["result"])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@functools.cache
def collection_root() -> Path:
    """A directory (one per test process) holding ``ansible_collections/modelfleet/serving`` -> this checkout:
    for ``ANSIBLE_COLLECTIONS_PATH``, or on ``sys.path`` to import ``ansible_collections.modelfleet.serving``."""
    root = Path(tempfile.mkdtemp(prefix="modelfleet-collections-"))
    atexit.register(shutil.rmtree, root, True)
    link = root / "ansible_collections" / "modelfleet" / "serving"
    link.parent.mkdir(parents=True)
    link.symlink_to(REPO)
    return root


def ansible_env(**extra: str) -> dict[str, str]:
    """The environment of an ``ansible``/``ansible-playbook`` run against this checkout as the collection."""
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(collection_root()), "ANSIBLE_STDOUT_CALLBACK": "json",
            "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCALHOST_WARNING": "0", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
            "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}", **extra}


def load_example(path: Path) -> ModuleType:
    """The example script at ``path`` (e.g. ``<examples>/credit-risk/train.py``) imported as a module."""
    name = f"example_{path.parent.name}_{path.stem}".replace("-", "_")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
