"""A drift alert end to end: a real exporter, Prometheus and Alertmanager configured by the roles' own
templates (rendered by Ansible with the role defaults), the collection's ModelFeatureDrift rule, and the
retraining hook as a real process running a command. Also: the validators the roles run refuse broken
configurations rendered from the same templates."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import Prometheus, free_port, need, tool_path, wait_for
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

REPO = Path(__file__).resolve().parents[2]
ROLES = REPO / "roles"
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")
ALERTMANAGER = tool_path("prometheus-alertmanager")
PROMTOOL = tool_path("promtool")
AMTOOL = tool_path("amtool")

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True, scope="module")
def _tools() -> None:
    for name, package in (("prometheus", "prometheus"), ("prometheus-alertmanager", "prometheus-alertmanager"),
                          ("promtool", "prometheus"), ("amtool", "prometheus-alertmanager")):
        need(name, package)



def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


Render = tuple[str, str, Path, dict[str, Any]]  # role, template, destination, variables


def render(inventory: Path, *renders: Render) -> None:
    """Templates of the roles rendered by Ansible itself (one ansible-playbook run), each with its role's
    defaults and vars plus the given variables."""
    roles = sorted({role for role, *_rest in renders})
    playbook = [
        {
            "name": "Render",
            "hosts": "mon",
            "gather_facts": False,
            "vars_files": [str(ROLES / role / kind / "main.yml") for role in roles for kind in ("defaults", "vars")],
            "tasks": [
                {
                    "name": f"Render {dest}",
                    "ansible.builtin.template": {"src": str(ROLES / role / "templates" / template), "dest": str(dest)},
                    "vars": variables,
                }
                for role, template, dest, variables in renders
            ],
        }
    ]
    path = renders[0][2].parent / "render.yml"
    path.write_text(yaml.safe_dump(playbook, sort_keys=False))
    result = subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-i", str(inventory), str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={**os.environ, "ANSIBLE_LOCAL_TEMP": str(path.parent / ".ansible-tmp"), "ANSIBLE_NOCOLOR": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    """A monitoring host and a serving host, both this machine."""
    path = tmp_path / "inventory.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable},
                    "children": {
                        "monitoring": {"hosts": {"mon": {"modelfleet_scrape_address": "127.0.0.1"}}},
                        "serving": {"hosts": {"serving-1": {"modelfleet_scrape_address": "127.0.0.1"}}},
                    },
                }
            }
        )
    )
    return path


class Processes:
    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, *argv: str) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("wb")
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.running.append((name, process))
        return process

    def adopt(self, name: str, process: subprocess.Popen[bytes]) -> None:
        """Stop ``process``, started elsewhere, with the others."""
        self.running.append((name, process))

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def stop(self) -> None:
        for _name, process in reversed(self.running):
            process.terminate()
        for _name, process in self.running:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    started = Processes(tmp_path)
    yield started
    started.stop()


class DriftExporter(Collector):
    """The drift exporter's two series the drift alert reads, for three features of credit-risk v3."""

    def __init__(self) -> None:
        self.drifted: frozenset[str] = frozenset()

    def collect(self) -> Iterator[Metric]:
        drifted = self.drifted
        labels = ["model", "version", "feature", "window"]
        detected = GaugeMetricFamily("modelfleet_feature_drift_detected", "Drift detected.", labels=labels)
        psi = GaugeMetricFamily("modelfleet_feature_psi", "PSI.", labels=labels)
        for feature in ("age", "income", "region"):
            detected.add_metric(["credit-risk", "3", feature, "5m"], 1.0 if feature in drifted else 0.0)
            psi.add_metric(["credit-risk", "3", feature, "5m"], 0.35 if feature in drifted else 0.01)
        yield detected
        yield psi


def drift_rule(for_duration: str) -> dict[str, Any]:
    """The collection's ModelFeatureDrift alert (monitoring/rules), with a shorter `for` for the test."""
    groups = yaml.safe_load((REPO / "monitoring" / "rules" / "modelfleet-drift.yml").read_text())["groups"]
    rule = next(r for g in groups for r in g["rules"] if r.get("alert") == "ModelFeatureDrift")
    assert rule["labels"]["retrain"] == "true"
    return {"groups": [{"name": "drift-under-test", "rules": [{**rule, "for": for_duration}]}]}


def test_a_drift_alert_reaches_the_retraining_command(tmp_path: Path, inventory: Path, processes: Processes) -> None:
    prometheus_port, alertmanager_port, hook_port = free_port(), free_port(), free_port()

    # The drift exporter stand-in: the real metric names and labels, no drift yet.
    drift = DriftExporter()
    registry = CollectorRegistry()
    registry.register(drift)
    exporter, _thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        exporter_port = exporter.server_port

        # The retraining hook, with a command that keeps its stdin and environment.
        received = tmp_path / "received.json"
        writer = (
            f"import json, os, sys; document = json.load(sys.stdin); "
            f"document['env'] = {{k: v for k, v in os.environ.items() if k.startswith('MODELFLEET_')}}; "
            f"open({str(received)!r} + '.tmp', 'w').write(json.dumps(document)); "
            f"os.replace({str(received)!r} + '.tmp', {str(received)!r})"
        )
        processes.start(
            "hook",
            sys.executable,
            "-m",
            "modelfleet.alerting",
            "--listen",
            f"127.0.0.1:{hook_port}",
            "--command",
            f"{sys.executable} -c {json.dumps(writer)}",
            "--cooldown",
            "1h",
            "--state-file",
            str(tmp_path / "hook-state.json"),
        )

        # Alertmanager and Prometheus with the roles' configurations: defaults, the hook's URL, short waits.
        am_config, prom_config = tmp_path / "alertmanager.yml", tmp_path / "prometheus.yml"
        render(
            inventory,
            (
                "alertmanager",
                "alertmanager.yml.j2",
                am_config,
                {
                    "alertmanager_retrain_webhook_url": f"http://127.0.0.1:{hook_port}/alerts",
                    "alertmanager_retrain_group_wait": "1s",
                    "alertmanager_group_wait": "1s",
                },
            ),
            # The serving host's drift exporter is the stand-in.
            (
                "prometheus",
                "prometheus.yml.j2",
                prom_config,
                {
                    "prometheus_scrape_interval": "1s",
                    "prometheus_scrape_timeout": "1s",
                    "prometheus_evaluation_interval": "1s",
                    "prometheus_web_listen_address": f"127.0.0.1:{prometheus_port}",
                    "prometheus_drift_exporter_port": exporter_port,
                    "prometheus_alertmanager_port": alertmanager_port,
                    "prometheus_file_sd_dir": str(tmp_path / "file_sd"),
                },
            ),
        )
        assert subprocess.run([AMTOOL, "check-config", str(am_config)], capture_output=True).returncode == 0
        processes.start(
            "alertmanager",
            ALERTMANAGER,
            f"--config.file={am_config}",
            f"--web.listen-address=127.0.0.1:{alertmanager_port}",
            f"--storage.path={tmp_path / 'am-data'}",
            "--cluster.listen-address=",
        )

        # Prometheus with the role's configuration and the drift rule in rules.d/ beside it, as the role
        # installs them.
        (tmp_path / "rules.d").mkdir()
        (tmp_path / "rules.d" / "drift.yml").write_text(yaml.safe_dump(drift_rule("0s"), sort_keys=False))
        checked = subprocess.run([PROMTOOL, "check", "config", str(prom_config)], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "1 rules found" in checked.stdout
        server = Prometheus(tmp_path / "prometheus", prom_config, port=prometheus_port,
                            args=["--rules.alert.resend-delay=1s"])
        processes.adopt("prometheus", server.process)

        prometheus = server.url
        wait_for(lambda: get_json(f"http://127.0.0.1:{hook_port}/healthz")["status"] == "ok", 30, what="the hook")
        wait_for(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{alertmanager_port}/-/ready", timeout=2).status == 200,
            30,
            what="Alertmanager",
        )
        wait_for(
            lambda: get_json(f"{prometheus}/api/v1/alertmanagers")["data"]["activeAlertmanagers"],
            30,
            what="Prometheus to find Alertmanager",
        )

        def drift_target_up() -> bool:
            result = get_json(f'{prometheus}/api/v1/query?query=up{{job="modelfleet-drift"}}')["data"]["result"]
            return bool(result) and result[0]["value"][1] == "1" and result[0]["metric"]["host"] == "serving-1"

        wait_for(drift_target_up, 30, what="the first scrape of the exporter")
        assert not received.exists()

        # Drift on two features of credit-risk v3.
        flipped = time.monotonic()
        drift.drifted = frozenset({"age", "income"})  # one assignment: both in the same scrape

        def fired() -> dict[str, Any] | None:
            return json.loads(received.read_text()) if received.exists() else None

        document = wait_for(fired, 60, what="the retraining command", interval=0.02)
        latency = time.monotonic() - flipped
    finally:
        exporter.shutdown()
    print(
        f"\nmetric flip -> retraining command: {latency:.2f} s (scrape 1s, evaluation 1s, Alertmanager group_wait 1s)"
    )

    assert document["model"] == "credit-risk"
    assert document["version"] == "3"
    assert document["features"] == ["age", "income"]
    assert {a["labels"]["alertname"] for a in document["alerts"]} == {"ModelFeatureDrift"}
    assert all(a["labels"]["retrain"] == "true" for a in document["alerts"])
    assert document["env"]["MODELFLEET_MODEL"] == "credit-risk"
    assert document["env"]["MODELFLEET_VERSION"] == "3"
    assert document["env"]["MODELFLEET_FEATURES"] == ",".join(document["features"])
    assert latency < 30

    # Alertmanager's own view: the alert went to the retraining receiver and on to on-call.
    alerts = get_json(f"http://127.0.0.1:{alertmanager_port}/api/v2/alerts?filter=alertname%3D%22ModelFeatureDrift%22")
    assert {r["name"] for a in alerts for r in a["receivers"]} == {"modelfleet-retrain", "oncall"}

    # The trigger time is on disk, so a restarted hook would not trigger again within the cooldown.
    state = json.loads((tmp_path / "hook-state.json").read_text())
    assert [(t["model"], t["version"]) for t in state["triggers"]] == [("credit-risk", "3")]
    exposed = urllib.request.urlopen(f"http://127.0.0.1:{hook_port}/metrics", timeout=5).read().decode()
    assert 'modelfleet_retrain_requests_total{outcome="triggered"} 1.0' in exposed


def test_amtool_refuses_a_broken_configuration_from_the_template(tmp_path: Path, inventory: Path) -> None:
    tasks = yaml.safe_load((ROLES / "alertmanager" / "tasks" / "main.yml").read_text())
    install = next(t for t in tasks if t["name"] == "Install the configuration")
    validate = install["ansible.builtin.template"]["validate"]
    assert validate == "{{ _alertmanager_amtool }} check-config %s"

    def check(config: Path) -> subprocess.CompletedProcess[str]:
        argv = validate.replace("{{ _alertmanager_amtool }}", AMTOOL).split()
        return subprocess.run([part.replace("%s", str(config)) for part in argv], capture_output=True, text=True)

    good, broken, bad_matcher = tmp_path / "good.yml", tmp_path / "broken.yml", tmp_path / "bad-matcher.yml"
    render(
        inventory,
        ("alertmanager", "alertmanager.yml.j2", good, {"alertmanager_retrain_hook_enabled": True}),
        (
            "alertmanager",
            "alertmanager.yml.j2",
            broken,
            {"alertmanager_routes": [{"receiver": "team-nobody-defined", "matchers": ['team="x"']}]},
        ),
        (
            "alertmanager",
            "alertmanager.yml.j2",
            bad_matcher,
            {
                "alertmanager_inhibit_rules": [
                    {"source_matchers": ['severity=~"(critical"'], "target_matchers": ['severity="warning"']}
                ]
            },
        ),
    )
    assert check(good).returncode == 0
    routes = subprocess.run(
        [AMTOOL, "config", "routes", "test", f"--config.file={good}", "retrain=true", "model=m"],
        capture_output=True,
        text=True,
    )
    assert routes.stdout.strip() == "modelfleet-retrain,oncall"

    result = check(broken)
    assert result.returncode != 0
    assert 'undefined receiver "team-nobody-defined"' in result.stdout + result.stderr

    assert check(bad_matcher).returncode != 0


def test_promtool_refuses_a_broken_scrape_configuration_from_the_template(tmp_path: Path, inventory: Path) -> None:
    bad_values: list[tuple[dict[str, Any], str]] = [
        ({"prometheus_scrape_interval": "15x"}, 'not a valid duration string: "15x"'),
        ({"prometheus_scrape_timeout": "30s"}, "scrape timeout greater than scrape interval"),
        (
            {"prometheus_scrape_configs_extra": [{"job_name": "node"}]},
            'found multiple scrape configs with job name "node"',
        ),
    ]
    good = tmp_path / "good.yml"
    bad = [tmp_path / f"bad-{index}.yml" for index in range(len(bad_values))]
    render(
        inventory,
        ("prometheus", "prometheus.yml.j2", good, {}),
        *[
            ("prometheus", "prometheus.yml.j2", path, variables)
            for path, (variables, _message) in zip(bad, bad_values, strict=True)
        ],
    )
    checked = subprocess.run([PROMTOOL, "check", "config", str(good)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    config = yaml.safe_load(good.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) >= {
        "prometheus",
        "alertmanager",
        "node",
        "dcgm",
        "modelfleet-router",
        "modelfleet-drift",
        "modelfleet-serve",
    }
    assert jobs["node"]["static_configs"] == [
        {"targets": ["127.0.0.1:9100"], "labels": {"host": "serving-1"}},
        {"targets": ["127.0.0.1:9100"], "labels": {"host": "mon"}},
    ]
    assert jobs["modelfleet-serve"]["honor_labels"] is True
    assert jobs["dcgm"]["static_configs"] == []  # no host has modelfleet_gpu

    for path, (_variables, message) in zip(bad, bad_values, strict=True):
        result = subprocess.run([PROMTOOL, "check", "config", str(path)], capture_output=True, text=True)
        assert result.returncode != 0
        assert message in result.stdout + result.stderr


def test_promtool_check_config_also_refuses_a_broken_rule_beside_it(tmp_path: Path, inventory: Path) -> None:
    """Why the role stages the rules next to the configuration before checking: a broken rule file in
    rules.d/ fails `promtool check config`, so it never reaches the live directory."""
    config = tmp_path / "prometheus.yml"
    render(inventory, ("prometheus", "prometheus.yml.j2", config, {}))
    (tmp_path / "rules.d").mkdir()
    (tmp_path / "rules.d" / "drift.yml").write_text(yaml.safe_dump(drift_rule("10m")))
    assert subprocess.run([PROMTOOL, "check", "config", str(config)], capture_output=True).returncode == 0
    (tmp_path / "rules.d" / "broken.yml").write_text(
        "groups:\n  - name: broken\n    rules:\n      - alert: Broken\n        expr: sum(rate(x[5m]) by\n"
    )
    result = subprocess.run([PROMTOOL, "check", "config", str(config)], capture_output=True, text=True)
    assert result.returncode != 0
    assert "broken.yml" in result.stdout + result.stderr
    assert "parse error" in result.stdout + result.stderr
