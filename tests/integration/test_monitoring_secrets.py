"""Secrets of the monitoring roles: never shown by ``--check --diff``; Prometheus's web config really guards it.

- ansible-playbook ``--check --diff`` of the prometheus and alertmanager roles' configuration tasks against
  localhost (promtool and amtool are real; check mode writes nothing) with a scrape password, web users, an
  SMTP password and a webhook token: the run reaches the tasks that write them, and none is printed.
- The role's web.yml template rendered by ansible (bcrypt hashes from modelfleet.serving.bcrypt_hash) and a
  real Prometheus started with it (TLS and basic auth): the rollout's PrometheusClient gets answers with the
  credentials and the CA, and a clear error without them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import REPO, ansible_env, free_port, need, wait_for

from modelfleet.rollout.prometheus import PrometheusClient, PrometheusError

pytestmark = pytest.mark.integration

SECRETS = {
    "scrape": "SECRET-scrape-password-71c3",
    "web": "SECRET-web-password-5e0a",
    "smtp": "SECRET-smtp-password-9b42",
    "webhook": "SECRET-webhook-token-d817",
}


def _playbook(tmp: Path, text: str, *args: str) -> tuple[int, str, dict[str, Any]]:
    playbook = tmp / "play.yml"
    playbook.write_text(text)
    command = [shutil.which("ansible-playbook", path=ansible_env()["PATH"]) or "ansible-playbook", str(playbook),
               *args]
    done = subprocess.run(command, env=ansible_env(), capture_output=True, text=True, timeout=600, cwd=REPO)
    output = done.stdout + done.stderr
    return done.returncode, output, json.loads(done.stdout)


def _changed(run: dict[str, Any], name: str) -> list[bool]:
    """Whether each task of this name (one per role) would change localhost."""
    return [bool(task["hosts"]["localhost"].get("changed")) for play in run["plays"] for task in play["tasks"]
            if task["task"]["name"].endswith(f" : {name}") and "localhost" in task["hosts"]]


def test_check_diff_of_the_monitoring_roles_prints_no_secret(tmp_path: Path) -> None:
    need("promtool", "prometheus")
    need("amtool", "prometheus-alertmanager")
    scratch = tmp_path / "etc"
    play = yaml.safe_dump([{
        "name": "Monitoring roles in check mode",
        "hosts": "localhost",
        "connection": "local",
        "gather_facts": False,
        "vars": {
            "prometheus_config_dir": f"{scratch}/prometheus",
            "prometheus_file_sd_dir": f"{scratch}/prometheus/file_sd",
            "prometheus_scrape_configs_extra": [{
                "job_name": "authenticated",
                "basic_auth": {"username": "scraper", "password": SECRETS["scrape"]},
                "static_configs": [{"targets": ["127.0.0.1:9999"]}],
            }],
            "prometheus_web_basic_auth_users": {"ops": SECRETS["web"]},
            "alertmanager_config_file": f"{scratch}/alertmanager.yml",
            "alertmanager_smtp_password_file": f"{scratch}/smtp-password",
            "alertmanager_smtp_smarthost": "mail.example:587",
            "alertmanager_smtp_from": "fleet@example.com",
            "alertmanager_smtp_auth_username": "fleet",
            "alertmanager_smtp_auth_password": SECRETS["smtp"],
            "alertmanager_oncall_webhook_urls": [f"https://hooks.example/{SECRETS['webhook']}"],
        },
        "roles": ["modelfleet.serving.prometheus", "modelfleet.serving.alertmanager"],
    }])
    code, output, run = _playbook(tmp_path, play, "--check", "--diff",
                                  "--tags", "prometheus_config,alertmanager_config")
    assert code == 0, output[-4000:]
    # The tasks that write the secrets ran and would change something: their silence is not a skip.
    assert _changed(run, "Install the configuration") == [True, True]  # prometheus.yml, alertmanager.yml
    assert _changed(run, "Install the web configuration (TLS, basic auth)") == [True]
    assert _changed(run, "Write the SMTP password") == [True]
    # --diff is on: files without secrets (the rule files) show their content.
    assert "modelfleet-serving.yml" in output and '"diff"' in output
    for name, secret in SECRETS.items():
        assert secret not in output, f"the {name} secret is printed by --check --diff"
    assert not scratch.exists(), "check mode wrote files"


def _certificate(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "prometheus.crt", tmp / "prometheus.key"
    subprocess.run([need("openssl", "openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=60)
    return cert, key


def test_web_config_of_the_role_guards_prometheus_and_the_rollout_client_logs_in(tmp_path: Path) -> None:
    binary = need("prometheus", "prometheus")
    cert, key = _certificate(tmp_path)
    web = tmp_path / "web.yml"
    play = yaml.safe_dump([{
        "name": "Render the prometheus role's web configuration",
        "hosts": "localhost",
        "connection": "local",
        "gather_facts": False,
        "vars": {
            "_prometheus_web_tls": True,
            "prometheus_web_tls_cert_file": str(cert),
            "prometheus_web_tls_key_file": str(key),
            "prometheus_web_basic_auth_users": {"ops": SECRETS["web"], "grafana": "other-password"},
        },
        "tasks": [{
            "name": "Render web.yml",
            "ansible.builtin.template": {"src": str(REPO / "roles/prometheus/templates/web.yml.j2"),
                                         "dest": str(web), "mode": "0600"},
            "no_log": True,
        }],
    }])
    code, output, _run = _playbook(tmp_path, play)
    assert code == 0, output[-4000:]
    rendered = yaml.safe_load(web.read_text())
    assert set(rendered["basic_auth_users"]) == {"ops", "grafana"}
    assert all(h.startswith("$2y$10$") for h in rendered["basic_auth_users"].values())
    assert SECRETS["web"] not in web.read_text()
    check = subprocess.run([need("promtool", "prometheus"), "check", "web-config", str(web)],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    # The same input renders the same hashes: a rerun of the role changes nothing.
    first = web.read_text()
    code, output, _run = _playbook(tmp_path, play)
    assert code == 0 and web.read_text() == first

    (tmp_path / "prometheus.yml").write_text("global: {scrape_interval: 15s}\n")
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    with (tmp_path / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(
            [binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--web.listen-address=127.0.0.1:{port}",
             f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.config.file={web}"],
            stdout=log, stderr=subprocess.STDOUT)
    try:
        client = PrometheusClient(url, username="ops", password=SECRETS["web"], ca_path=str(cert), timeout=5)

        def answered() -> bool:
            assert process.poll() is None, (tmp_path / "prometheus.log").read_text()
            try:
                return client.query("vector(7)", 1_000_000.0)[0].value == 7.0
            except PrometheusError as exc:
                if exc.unreachable:
                    return False
                raise

        wait_for(answered, 30, what="Prometheus with TLS and basic auth to answer")
        with pytest.raises(PrometheusError, match="HTTP 401"):
            PrometheusClient(url, ca_path=str(cert), timeout=5).query("vector(7)", 1_000_000.0)
        with pytest.raises(PrometheusError, match="HTTP 401"):
            PrometheusClient(url, username="ops", password="wrong", ca_path=str(cert), timeout=5).query("up", 1.0)
        with pytest.raises(PrometheusError, match=r"certificate|unreachable|SSL"):
            PrometheusClient(url, username="ops", password=SECRETS["web"], timeout=5).query("up", 1.0)
    finally:
        process.terminate()
        process.wait(20)
