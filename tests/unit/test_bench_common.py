"""bench/common.py: the helpers both benchmark runners import (smoke tests on this machine)."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # as the runners do: they are started by path

from bench import common  # noqa: E402


def test_the_runners_use_the_shared_helpers() -> None:
    for runner in ("serving", "drift"):
        text = (REPO / "bench" / runner / "run.py").read_text()
        assert "from bench.common import" in text
        assert "def cores_lock" not in text and "def log(" not in text and "def run_quiet" not in text


def test_machine_and_interpreter_facts() -> None:
    ticks = common.cpu_ticks()
    assert ticks and all(name.startswith("cpu") and name != "cpu" for name in ticks)
    assert "cpu" in common.cpu_ticks(all_cores=True)
    assert len(common.loadavg()) == 3
    env = common.host_environment(["src/modelfleet/serve"], dirty_key="serve_dirty")
    assert env["cores"] and "serve_dirty" in env["git"]
    assert common.interpreter_info(sys.executable)["executable"]
    assert "pytest" in common.package_versions(sys.executable, ["pytest", "no-such-package"], with_python=True)
    assert "python" not in common.package_versions(sys.executable, ["pytest"])


def test_cores_lock_makes_benchmarks_take_turns(tmp_path: Path) -> None:
    lock = tmp_path / "cores.lock"
    order: list[str] = []
    with common.cores_lock(lock, 10) as first:
        assert first["waited_s"] == 0

        def second() -> None:
            with common.cores_lock(lock, 10):
                order.append("second")

        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.3)
        order.append("first done")
    thread.join(10)
    assert order == ["first done", "second"]
    with common.cores_lock(lock, 10), pytest.raises(SystemExit, match="giving up"), common.cores_lock(lock, 0):
        pass
