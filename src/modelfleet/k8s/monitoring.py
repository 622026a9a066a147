"""ServiceMonitor and PrometheusRule (prometheus-operator) for a model's versions.

The PrometheusRule's groups are the rule files of ``monitoring/rules/`` read as they are: the same alerts
and recording rules as the bare-metal prometheus role (one home). The ServiceMonitor gives the scraped
series the job names those rules select on (``modelfleet-serve``, ``modelfleet-drift``) and a ``host``
label (the node), as the bare-metal scrape configuration does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from modelfleet.errors import UsageError
from modelfleet.k8s.naming import DRIFT_PORT_NAME, SERVE_PORT_NAME, Obj, metadata, model_labels
from modelfleet.k8s.settings import K8sSettings
from modelfleet.spec import ModelSpec

JOBS = {SERVE_PORT_NAME: "modelfleet-serve", DRIFT_PORT_NAME: "modelfleet-drift"}


def rule_groups(rules_dir: Path) -> list[dict[str, Any]]:
    """Every group of every ``*.yml`` in ``rules_dir``, files in name order, contents unchanged."""
    files = sorted(rules_dir.glob("*.yml"))
    if not files:
        raise UsageError(f"monitoring.rules_dir: no *.yml rule files in {rules_dir} "
                         "(point it at modelfleet's monitoring/rules, or set monitoring.prometheus_rule=false)")
    groups: list[dict[str, Any]] = []
    for path in files:
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise UsageError(f"monitoring.rules_dir: {path}: cannot be read: {exc}") from None
        if not isinstance(document, dict) or not isinstance(document.get("groups"), list):
            raise UsageError(f"monitoring.rules_dir: {path}: not a Prometheus rule file (no groups list)")
        groups.extend(document["groups"])
    return groups


def prometheus_rule(spec: ModelSpec, settings: K8sSettings) -> Obj:
    labels = {**model_labels(spec, settings), **settings.monitoring.labels}
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
            "metadata": metadata(f"{spec.name}-rules", settings, labels),
            "spec": {"groups": rule_groups(settings.monitoring.rules_dir)}}


def _endpoint(port: str, settings: K8sSettings) -> Obj:
    return {"port": port, "path": "/metrics", "interval": settings.monitoring.interval,
            "relabelings": [
                {"action": "replace", "targetLabel": "job", "replacement": JOBS[port]},
                {"action": "replace", "sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "host"},
                {"action": "replace", "sourceLabels": ["__meta_kubernetes_pod_name"], "targetLabel": "pod"},
            ]}


def service_monitor(spec: ModelSpec, settings: K8sSettings) -> Obj:
    """Scrapes every version's Service: the server's ``/metrics`` and the drift exporter sidecar's."""
    ports = [SERVE_PORT_NAME] + ([DRIFT_PORT_NAME] if settings.drift_exporter.enabled else [])
    labels = {**model_labels(spec, settings), **settings.monitoring.labels}
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
            "metadata": metadata(spec.name, settings, labels),
            "spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": spec.name,
                                                  "modelfleet.io/scrape": "true"}},
                     "namespaceSelector": {"matchNames": [settings.namespace]},
                     "endpoints": [_endpoint(port, settings) for port in ports]}}
