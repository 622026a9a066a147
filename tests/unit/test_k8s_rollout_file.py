"""``modelfleet rollout``'s edits of the stack / settings file, and its command line without a Prometheus.

The judgement itself runs against a real Prometheus in tests/integration/test_k8s_rollout.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from k8s_cases import CREDIT_RISK

from modelfleet.cli import main
from modelfleet.errors import UsageError
from modelfleet.exitcodes import ExitCode
from modelfleet.k8s.rollout import WeightsFile

STACK = """\
# my stack
config:
  modelfleet-k8s:model: ../../examples/credit-risk/model.yml
  modelfleet-k8s:canaryVersion: "2"   # the candidate
  modelfleet-k8s:canaryWeight: 10
  modelfleet-k8s:settings:
    canaryWeight: 99
"""


def test_stack_values_are_read_and_written_line_by_line(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(STACK, encoding="utf-8")
    target = WeightsFile(path, "stack")
    assert target.read() == (None, "2", 10)
    target.write(None, "2", 50)
    assert path.read_text(encoding="utf-8") == STACK.replace("canaryWeight: 10", "canaryWeight: 50")
    target.write("2", None, 0)
    text = path.read_text(encoding="utf-8")
    assert 'modelfleet-k8s:canaryVersion: ""   # the candidate' in text
    assert text.startswith('# my stack\nconfig:\n  modelfleet-k8s:stableVersion: "2"\n')
    assert "    canaryWeight: 99" in text  # a nested key of the same name is left alone
    assert target.read() == ("2", None, 0)


def test_settings_file_gets_missing_keys_appended(tmp_path: Path) -> None:
    path = tmp_path / "k8s.yml"
    path.write_text("namespace: ml\ncanary_version: 3\n", encoding="utf-8")
    target = WeightsFile(path, "settings")
    assert target.read() == (None, "3", 0)
    target.write(None, "3", 10)
    assert yaml.safe_load(path.read_text(encoding="utf-8")) == {"namespace": "ml", "canary_version": "3",
                                                                "canary_weight": 10}


@pytest.mark.parametrize(("text", "message"), [
    ("config: [1, 2]\n", "expected a mapping under config:"),
    ("config:\n  modelfleet-k8s:canaryWeight: ten\n", "is not a whole number of percent"),
    ("config: {modelfleet-k8s:canaryWeight: 10, modelfleet-k8s:canaryVersion: '2'}\n", "block-style"),
    ("config:\n  modelfleet-k8s:canaryVersion: >-\n    2\n  modelfleet-k8s:canaryWeight: 10\n",
     "not valid YAML|line by line"),
])
def test_unusable_files_are_usage_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "Pulumi.x.yaml"
    path.write_text(text, encoding="utf-8")
    target = WeightsFile(path, "stack")
    with pytest.raises(UsageError, match=message):
        target.read()
        target.write(None, "2", 50)


def test_command_without_a_canary_judges_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = tmp_path / "k8s.yml"
    settings.write_text("namespace: ml\n", encoding="utf-8")
    assert main(["rollout", str(CREDIT_RISK), "--prometheus", "http://127.0.0.1:9", "--settings",
                 str(settings)]) == ExitCode.OK
    assert "no canary in" in capsys.readouterr().out
    assert settings.read_text(encoding="utf-8") == "namespace: ml\n"


@pytest.mark.parametrize(("args", "message"), [
    (["--prometheus", "ftp://x", "--stack", "{stack}"], "is not an http:// or https:// URL"),
    (["--prometheus", "http://127.0.0.1:9", "--stack", "{missing}"], "No such file"),
    (["--prometheus", "http://127.0.0.1:9", "--stack", "{stack}", "--max-wait", "soon"], "--max-wait"),
])
def test_command_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                              message: str) -> None:
    stack = tmp_path / "Pulumi.dev.yaml"
    stack.write_text(STACK, encoding="utf-8")
    filled = [a.format(stack=stack, missing=tmp_path / "nope.yaml") for a in args]
    assert main(["rollout", str(CREDIT_RISK), *filled]) == ExitCode.USAGE
    assert message in capsys.readouterr().err
    assert stack.read_text(encoding="utf-8") == STACK


def test_command_starts_a_rollout_and_writes_the_first_step(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """``start`` needs no Prometheus yet: the first weight is the plan's first step."""
    stack = tmp_path / "Pulumi.dev.yaml"
    stack.write_text(STACK.replace("canaryWeight: 10", "canaryWeight: 0"), encoding="utf-8")
    assert main(["rollout", str(CREDIT_RISK), "--prometheus", "http://127.0.0.1:9", "--stack", str(stack),
                 "--json"]) == ExitCode.OK
    result = json.loads(capsys.readouterr().out)
    assert (result["decision"], result["canary_weight"], result["done"]) == ("start", 10, False)
    assert result["rollout"]["steps"] == [10, 50, 100]
    assert WeightsFile(stack, "stack").read() == (None, "2", 10)
    assert (tmp_path / ".modelfleet-rollout" / "credit-risk.json").is_file()
