"""Every role task that writes a file which may hold credentials hides it from ``--diff`` (and logs).

The monitoring roles' check-mode run (tests/integration/test_monitoring_secrets.py) covers what runs on
localhost; Grafana is not installed here, so its tasks (and the others') are checked as written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import REPO

#: (role, task name) -> what the file may hold.
SECRET_FILES = {
    ("prometheus", "Install the configuration"): "scrape credentials (basic auth, bearer tokens)",
    ("prometheus", "Install the web configuration (TLS, basic auth)"): "web users' password hashes",
    ("alertmanager", "Install the configuration"): "receiver credentials (SMTP, webhook URLs with tokens)",
    ("alertmanager", "Write the SMTP password"): "the SMTP password",
    ("alertmanager", "Write the retraining hook's bearer token"): "a bearer token",
    ("alertmanager", "Write the retraining hook's environment"): "the hook's settings, tokens among them",
    ("grafana", "Provision the data sources"): "data source credentials",
    ("grafana", "Set the admin password in grafana.ini"): "the admin password",
    ("drift_exporter", "Write the web configuration (TLS, basic auth)"): "web users' password hashes",
}


def _tasks(role: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}

    def walk(tasks: list[dict[str, Any]]) -> None:
        for task in tasks or []:
            for key in ("block", "rescue", "always"):
                walk(task.get(key, []))
            if "name" in task:
                found[task["name"]] = task

    for path in sorted((REPO / "roles" / role / "tasks").glob("*.yml")):
        walk(yaml.safe_load(path.read_text()))
    return found


@pytest.mark.parametrize(("role", "name"), sorted(SECRET_FILES))
def test_files_with_credentials_are_never_diffed(role: str, name: str) -> None:
    tasks = _tasks(role)
    assert name in tasks, f"roles/{role}: no task {name!r} (renamed? update SECRET_FILES)"
    task = tasks[name]
    assert task.get("diff") is False or task.get("no_log") is True, (
        f"roles/{role}: {name!r} writes {SECRET_FILES[(role, name)]}: it needs diff: false or no_log: true")


def test_every_template_task_of_the_monitoring_roles_is_classified() -> None:
    """A new template/copy task in a monitoring role is either listed above or shows no secret."""
    harmless = {"service-override.conf.j2", "prometheus.service.j2", "dashboards.yml.j2",
                "modelfleet-retrain-hook.service.j2", "modelfleet-drift-exporter.service.j2"}
    unclassified = []
    for role in ("prometheus", "alertmanager", "grafana", "drift_exporter"):
        for name, task in _tasks(role).items():
            module = next((k for k in task if k.endswith(("template", "copy"))), None)
            if module is None or (role, name) in SECRET_FILES or task.get("diff") is False:
                continue
            args = task[module]
            source = Path(str(args.get("src", ""))).name
            if (source in harmless or "rule" in name.lower() or "dashboard" in name.lower()
                    or name == "Install the repository key from the controller"):  # a public key
                continue
            unclassified.append(f"roles/{role}: {name}")
    assert unclassified == [], "classify these in SECRET_FILES or the harmless list"
