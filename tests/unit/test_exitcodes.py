"""Every command follows modelfleet.exitcodes: 0 ok, 1 runtime failure, 2 usage or input error, 130 interrupted."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from modelfleet import cli
from modelfleet.alerting import command as retrain_hook
from modelfleet.errors import ArtifactError
from modelfleet.exitcodes import ExitCode, run_handler


def test_the_convention() -> None:
    assert [int(code) for code in ExitCode] == [0, 1, 2, 130]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["convert", "missing.yml", "-o", "out"], "modelfleet convert: error: invalid model spec"),
        (["serve", ".", "--providers", "tpu"], "modelfleet serve: error: unknown provider(s) ['tpu']"),
        (["drift-exporter", "--spool-dir", "s", "--artifacts-dir", "a", "--bucket", "5 parsecs"],
         "modelfleet drift-exporter: error: '5 parsecs' is not a duration"),
        (["drift-exporter", "--spool-dir", "s", "--artifacts-dir", "a", "--alpha", "2"],
         "modelfleet drift-exporter: error: --alpha must be in (0, 1)"),
        (["drift", "report", "--artifact", "nowhere", "--data", "x.npz", "-o", "r.html"],
         "modelfleet drift: error: "),
        (["verify", "nowhere"], "modelfleet verify: error: "),
        (["retrain-hook", "--url", "ftp://x"], "modelfleet retrain-hook: error: 'ftp://x' is not an http(s) URL"),
    ],
)
def test_input_errors_exit_2_with_one_line_naming_the_command(
    argv: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert err.startswith(message) and "Traceback" not in err


@pytest.mark.parametrize(
    "argv",
    [["convert"], ["no-such-command"], ["retrain-hook", "--command", "x", "--cooldown", "soon"],
     ["retrain-hook", "--url", "http://x", "--url-timeout", "0"]],
)
def test_argparse_usage_errors_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == ExitCode.USAGE


def test_the_hook_on_its_own_uses_the_same_statuses(capsys: pytest.CaptureFixture[str]) -> None:
    assert retrain_hook.main(["--url", "http://x", "--max-body-bytes", "0"]) == ExitCode.USAGE
    assert capsys.readouterr().err.startswith("modelfleet retrain-hook: error: --max-body-bytes must be positive")
    with pytest.raises(SystemExit) as exited:
        retrain_hook.main(["--url", "http://x", "--listen", "nowhere"])
    assert exited.value.code == ExitCode.USAGE


def test_run_handler_maps_results_and_errors(capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace()

    def interrupted(_: argparse.Namespace) -> int:
        raise KeyboardInterrupt

    def damaged(_: argparse.Namespace) -> int:
        raise ArtifactError("model.onnx does not match")

    assert run_handler("p", lambda _: 0, args) == ExitCode.OK
    assert run_handler("p", lambda _: 1, args) == ExitCode.FAILURE
    assert run_handler("p", interrupted, args) == ExitCode.INTERRUPTED
    assert run_handler("p", damaged, args) == ExitCode.USAGE
    assert capsys.readouterr().err == "p: error: model.onnx does not match\n"
