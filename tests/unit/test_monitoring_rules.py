"""The Prometheus rules in monitoring/: promtool accepts them, their unit tests pass, and nothing is untested.

- ``promtool check rules`` on every rule file, ``promtool test rules`` on every test file (one test id each);
- every alert has a promtool case where it fires and one where it must not (an ``alert_rule_test`` with
  empty ``exp_alerts``); every recording rule has a ``promql_expr_test`` that expects samples of it and one
  that expects none;
- every alert has a ``severity`` label and ``summary``, ``description`` and ``runbook_url`` annotations,
  and its runbook anchor exists in docs/alerts.md.

promtool comes from the Debian package ``prometheus`` (scripts/bootstrap-apt.sh); ``PROMTOOL`` overrides
the one on PATH. Without it these tests fail: they are never skipped.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
RULES_DIR = REPO / "monitoring" / "rules"
TESTS_DIR = REPO / "monitoring" / "tests"
RUNBOOK = REPO / "docs" / "alerts.md"
RUNBOOK_URL = "https://github.com/modelfleet/modelfleet/blob/main/docs/alerts.md"

RULE_FILES = sorted(RULES_DIR.glob("*.yml"))
TEST_FILES = sorted(TESTS_DIR.glob("*.yml"))
SEVERITIES = {"critical", "warning", "info"}
REQUIRED_ANNOTATIONS = ("summary", "description", "runbook_url")
# Queried by the canary analysis and the dashboards under exactly these names.
REQUIRED_RECORDS = (
    {
        f"model_version:modelfleet_{name}:{window}"
        for window in ("rate1m", "rate5m")
        for name in ("requests", "errors", "error_ratio")
    }
    | {
        f"model_version:modelfleet_request_duration_seconds:{quantile}_{window}"
        for quantile in ("p50", "p95", "p99")
        for window in ("1m", "5m")
    }
    | {
        "model:modelfleet_canary_vs_stable_p99:ratio5m",
        "model:modelfleet_canary_vs_stable_error_ratio:ratio5m",
    }
)
# level:metric:operations (https://prometheus.io/docs/practices/rules/)
RECORD_NAME = re.compile(r"^[a-z][a-z0-9_]*:[a-zA-Z_][a-zA-Z0-9_]*:[a-z0-9_]+$")


def _load(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(document, dict), f"{path}: not a YAML mapping"
    return document


def _ids(paths: list[Path]) -> list[str]:
    return [path.name for path in paths]


@dataclass
class Rule:
    kind: str  # "alert" or "record"
    name: str
    path: Path
    body: dict[str, Any]


def _rules() -> Iterator[Rule]:
    for path in RULE_FILES:
        for group in _load(path).get("groups") or []:
            for body in group.get("rules") or []:
                kind = "alert" if "alert" in body else "record"
                yield Rule(kind, str(body[kind]), path, body)


ALERTS = [rule for rule in _rules() if rule.kind == "alert"]
RECORDS = [rule for rule in _rules() if rule.kind == "record"]
ALERT_NAMES = sorted({rule.name for rule in ALERTS})
RECORD_NAMES = sorted({rule.name for rule in RECORDS})


@dataclass
class Coverage:
    """What the promtool test files exercise."""

    firing: set[str] = field(default_factory=set)
    silent: set[str] = field(default_factory=set)
    expressions: list[tuple[str, bool]] = field(default_factory=list)  # (expr, expects samples)
    rule_files: set[Path] = field(default_factory=set)

    def records(self, name: str, *, with_samples: bool) -> bool:
        token = re.compile(rf"(?<![\w:]){re.escape(name)}(?![\w:])")
        return any(token.search(expr) and has == with_samples for expr, has in self.expressions)


def _coverage() -> Coverage:
    coverage = Coverage()
    for path in TEST_FILES:
        document = _load(path)
        for rule_file in document.get("rule_files") or []:
            coverage.rule_files.add((path.parent / rule_file).resolve())
        for group in document.get("tests") or []:
            for case in group.get("alert_rule_test") or []:
                (coverage.firing if case.get("exp_alerts") else coverage.silent).add(str(case["alertname"]))
            for case in group.get("promql_expr_test") or []:
                coverage.expressions.append((str(case["expr"]), bool(case.get("exp_samples"))))
    return coverage


COVERAGE = _coverage()


def _run(promtool: str, *args: str) -> None:
    result = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=600, check=False, cwd=REPO)
    assert result.returncode == 0, f"promtool {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"


def test_files_exist() -> None:
    assert RULE_FILES, f"no rule files in {RULES_DIR}"
    assert TEST_FILES, f"no promtool test files in {TESTS_DIR}"
    assert ALERT_NAMES and RECORD_NAMES


@pytest.mark.parametrize("path", RULE_FILES, ids=_ids(RULE_FILES))
def test_promtool_check_rules(promtool: str, path: Path) -> None:
    _run(promtool, "check", "rules", str(path))


@pytest.mark.parametrize("path", TEST_FILES, ids=_ids(TEST_FILES))
def test_promtool_test_rules(promtool: str, path: Path) -> None:
    _run(promtool, "test", "rules", str(path))


@pytest.mark.parametrize("path", RULE_FILES, ids=_ids(RULE_FILES))
def test_rule_file_is_tested(path: Path) -> None:
    assert path.resolve() in COVERAGE.rule_files, f"no file in {TESTS_DIR} loads {path.name} (rule_files)"


@pytest.mark.parametrize("name", ALERT_NAMES)
def test_alert_fires_and_stays_silent_in_tests(name: str) -> None:
    missing = [
        what
        for what, seen in (
            ("a case where it fires (non-empty exp_alerts)", COVERAGE.firing),
            ("a case where it must not fire (empty exp_alerts)", COVERAGE.silent),
        )
        if name not in seen
    ]
    assert not missing, f"alert {name}: the promtool tests lack {' and '.join(missing)}"


@pytest.mark.parametrize("name", RECORD_NAMES)
def test_recording_rule_is_tested(name: str) -> None:
    assert COVERAGE.records(name, with_samples=True), f"{name}: no promql_expr_test expects samples of it"
    assert COVERAGE.records(name, with_samples=False), f"{name}: no promql_expr_test expects it to be empty"


@pytest.mark.parametrize("name", RECORD_NAMES)
def test_recording_rule_name(name: str) -> None:
    assert RECORD_NAME.match(name), f"{name}: not in the level:metric:operations form"


def test_required_recording_rules_exist() -> None:
    assert not REQUIRED_RECORDS - set(RECORD_NAMES), "recording rules the canary analysis queries are missing"


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    anchors = set()
    for line in markdown.splitlines():
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            text = re.sub(r"[`*_]", "", heading.group(1)).strip().lower()
            anchors.add(re.sub(r"\s", "-", re.sub(r"[^\w\- ]", "", text)))
    return anchors


@pytest.mark.parametrize("rule", ALERTS, ids=[f"{rule.name}@{rule.path.name}" for rule in ALERTS])
def test_alert_metadata(rule: Rule) -> None:
    labels = rule.body.get("labels") or {}
    annotations = rule.body.get("annotations") or {}
    assert labels.get("severity") in SEVERITIES, f"{rule.name}: severity must be one of {sorted(SEVERITIES)}"
    missing = [key for key in REQUIRED_ANNOTATIONS if not str(annotations.get(key, "")).strip()]
    assert not missing, f"{rule.name}: missing annotations {missing}"
    anchor = rule.name.lower()
    assert annotations["runbook_url"] == f"{RUNBOOK_URL}#{anchor}", f"{rule.name}: runbook_url must end in #{anchor}"
    assert anchor in _anchors(RUNBOOK.read_text(encoding="utf-8")), f"{rule.name}: docs/alerts.md has no #{anchor}"
    if labels.get("retrain") is not None:
        assert labels["retrain"] == "true", f'{rule.name}: retrain is the string "true" or absent'
