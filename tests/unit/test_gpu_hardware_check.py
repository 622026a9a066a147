"""The hardware check's logic off hardware: a STAND-IN nvidia-smi (a script printing recorded query output) and
a STAND-IN dcgm-exporter (an HTTP server serving an exposition). On a GPU host, `make gpu-hardware-check`."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelfleet.gpu import hardware_check


def fake_smi(tmp_path: Path, output: str, rc: int = 0) -> str:
    script = tmp_path / "nvidia-smi"
    script.write_text(f"#!/bin/sh\ncat <<'OUT'\n{output}OUT\nexit {rc}\n")
    script.chmod(0o755)
    return str(script)


@pytest.fixture
def exporter() -> Iterator[tuple[str, list[str]]]:
    """A STAND-IN dcgm-exporter: serves whatever text the test puts in the list."""
    body: list[str] = [""]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = body[0].encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/metrics", body
    finally:
        server.shutdown()
        server.server_close()


def exposition(names: list[str]) -> str:
    return "".join(f'{n}{{gpu="0",UUID="GPU-0",DCGM_FI_DRIVER_VERSION="570.86.15"}} 1\n' for n in names)


def test_nvidia_smi_parsed(tmp_path: Path) -> None:
    smi = fake_smi(tmp_path, "NVIDIA H200, 143771, Disabled, Enabled, 570.86.15\n")
    ok, report = hardware_check.check_nvidia_smi(smi)
    assert ok and report["parsed"][0]["memory_total_mib"] == 143771 and report["parsed"][0]["mig_mode"] == "disabled"


def test_nvidia_smi_failure(tmp_path: Path) -> None:
    ok, report = hardware_check.check_nvidia_smi(fake_smi(tmp_path, "No devices were found\n", rc=6))
    assert not ok and report == {"error": "No devices were found", "rc": 6}
    ok, report = hardware_check.check_nvidia_smi(str(tmp_path / "missing"))
    assert not ok and "No such file" in report["error"]


def test_dcgm_static_check_passes() -> None:
    ok, report = hardware_check.check_dcgm(None)
    assert ok and report["unknown"] == [] and report["collectors"] >= 20


def test_dcgm_exporter_missing_profiling_is_reported_not_failed(exporter: tuple[str, list[str]]) -> None:
    url, body = exporter
    collectors, _ = hardware_check.role_collectors()
    body[0] = exposition([c for c in collectors if not c.startswith("DCGM_FI_PROF_")])
    ok, report = hardware_check.check_dcgm(url)
    missing = report["exporter"]["missing"]
    assert ok and missing and all(m.startswith("DCGM_FI_PROF_") for m in missing)


def test_dcgm_exporter_missing_a_device_field_fails(exporter: tuple[str, list[str]]) -> None:
    url, body = exporter
    collectors, _ = hardware_check.role_collectors()
    body[0] = exposition([c for c in collectors if c != "DCGM_FI_DEV_XID_ERRORS"])
    ok, report = hardware_check.check_dcgm(url)
    assert not ok and report["exporter"]["missing"] == ["DCGM_FI_DEV_XID_ERRORS"]


def test_main_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    smi = fake_smi(tmp_path, "Tesla T4, 15360, [N/A], Disabled, 535.129.03\n")
    assert hardware_check.main(["--nvidia-smi", smi]) == 0
    assert '"passed": true' in capsys.readouterr().out
    assert hardware_check.main(["--nvidia-smi", str(tmp_path / "missing")]) == 1
