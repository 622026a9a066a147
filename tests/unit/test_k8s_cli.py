"""``modelfleet k8s render``: a YAML stream equal to the builder's objects, and exit status 2 on bad input.

No cluster here: the output is checked as data (and against schemas in test_k8s_schemas.py).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from k8s_cases import CREDIT_RISK, REPO, SHA_1, SHA_2, canary_settings, make_spec

from modelfleet.cli import main
from modelfleet.exitcodes import ExitCode
from modelfleet.k8s import build


def test_render_prints_the_builders_objects(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["k8s", "render", str(CREDIT_RISK), "--canary-version", "2", "--canary-weight", "10",
                 "--set", "artifact.source=url", "--set", "artifact.url=https://models.example.com/{name}/{version}.tar.gz",
                 "--set", f"artifact.sha256={{'1': '{SHA_1}', '2': '{SHA_2}'}}"]) == ExitCode.OK
    out = capsys.readouterr().out
    assert out.startswith("---\n")
    assert list(yaml.safe_load_all(out)) == build(make_spec(), canary_settings(10))


def test_settings_file_then_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = tmp_path / "k8s.yml"
    settings.write_text("namespace: ml\ntraffic: replicas\nreplicas: 4\ncanary_version: '2'\n", encoding="utf-8")
    assert main(["k8s", "render", str(CREDIT_RISK), "-f", str(settings), "--canary-weight", "50",
                 "--set", "monitoring.service_monitor=false"]) == ExitCode.OK
    captured = capsys.readouterr()
    assert captured.err == ""  # 2 of 4 pods: the 50% asked for
    items = list(yaml.safe_load_all(captured.out))
    assert {o["metadata"].get("namespace") for o in items if o["kind"] != "Namespace"} == {"ml"}
    assert [o["spec"]["replicas"] for o in items if o["kind"] == "Deployment"] == [2, 2]
    assert not [o for o in items if o["kind"] in ("ServiceMonitor", "HTTPRoute")]


def test_coarse_replica_split_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["k8s", "render", str(CREDIT_RISK), "--canary-version", "2", "--canary-weight", "10",
                 "--set", "traffic=replicas", "--set", "replicas=4"]) == ExitCode.OK
    assert "gives the canary 25% of the pods (canary_weight 10)" in capsys.readouterr().err


@pytest.mark.parametrize(("args", "message"), [
    (["--canary-version", "2", "--canary-weight", "101"], "canary_weight: Input should be less than or equal to 100"),
    (["--canary-version", "2", "--canary-weight", "-5"], "canary_weight: Input should be greater than or equal to 0"),
    (["--canary-version", "1"], "canary_version: 1 is the stable version too"),
    (["--set", "replica=2"], "replica: unknown setting"),
    (["--set", "novalue"], "--set 'novalue': expected key=value"),
    (["--settings", "/nonexistent/k8s.yml"], "settings file /nonexistent/k8s.yml"),
])
def test_bad_input_exits_2_with_one_line_per_problem(args: list[str], message: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["k8s", "render", str(CREDIT_RISK), *args]) == ExitCode.USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("modelfleet k8s: error: ")
    assert message in captured.err


def test_bad_spec_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "model.yml"
    spec.write_text(CREDIT_RISK.read_text(encoding="utf-8") + "replicas: 3\n", encoding="utf-8")
    assert main(["k8s", "render", str(spec)]) == ExitCode.USAGE
    assert "replicas: unknown field" in capsys.readouterr().err


def test_the_installed_command_streams_yaml() -> None:
    done = subprocess.run([sys.executable, "-m", "modelfleet.cli", "k8s", "render", str(CREDIT_RISK)],
                          capture_output=True, text=True, timeout=60, check=False, cwd=REPO,
                          env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert [o["kind"] for o in yaml.safe_load_all(done.stdout)][:2] == ["Namespace", "Deployment"]
