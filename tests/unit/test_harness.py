"""The shared test harness (tests/harness.py): a missing tool fails, never skips; waits; the collection."""

from __future__ import annotations

import pytest
from harness import collection_root, free_port, need, wait_for


def test_a_missing_tool_fails_the_test(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMTOOL", "/nonexistent/promtool")
    with pytest.raises(pytest.fail.Exception, match="promtool is missing: install the Debian package prometheus"):
        need("promtool", "prometheus")


def test_wait_for_retries_connection_errors_and_names_what_it_waited_for() -> None:
    calls = iter([ConnectionRefusedError("refused"), None, "up"])

    def check() -> str | None:
        result = next(calls)
        if isinstance(result, OSError):
            raise result
        return result

    assert wait_for(check, 5, what="x") == "up"
    with pytest.raises(AssertionError, match=r"timed out after 0.05 s waiting for a port \(last error: nope\)"):
        wait_for(lambda: (_ for _ in ()).throw(OSError("nope")), 0.05, what="a port")
    assert 0 < free_port() < 65536


def test_the_checkout_is_the_collection() -> None:
    link = collection_root() / "ansible_collections" / "modelfleet" / "serving"
    assert (link / "galaxy.yml").is_file() and collection_root() is collection_root()
