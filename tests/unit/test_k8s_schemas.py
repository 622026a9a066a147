"""Every object ``modelfleet k8s render`` makes, validated offline against pinned schemas.

Built-in kinds: kubernetes-validate's bundled JSON schemas of Kubernetes 1.29 and 1.37, strict (unknown
fields are errors). HTTPRoute, ServiceMonitor and PrometheusRule: the OpenAPI schemas of their CRDs, vendored
in k8s_crd_schemas/ (gateway-api v1.6.1, prometheus-operator v0.93.0), made strict the same way. No API
server exists here, so the CRDs' CEL rules (x-kubernetes-validations) and admission webhooks are not run:
that needs a real cluster (docs/kubernetes.md).
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
from k8s_cases import canary_settings, gpu_spec, make_spec, objects, one, settings

KUBERNETES_VERSIONS = ("1.29", "1.37")
CRD_SCHEMAS = Path(__file__).parent / "k8s_crd_schemas"
CRD_KINDS = {"HTTPRoute": "httproute-v1.json", "ServiceMonitor": "servicemonitor-v1.json",
             "PrometheusRule": "prometheusrule-v1.json"}

CASES = {
    "stable-only": lambda: objects(),
    "canary-url-gateway": lambda: objects(config=canary_settings(
        10, hostnames=["models.example.com"], gateway={"name": "edge", "namespace": "gateways",
                                                       "section_name": "https"})),
    "canary-weight-0": lambda: objects(config=canary_settings(0)),
    "gpu-mig-tolerations": lambda: objects(gpu_spec(1), settings(
        gpu_resource="nvidia.com/mig-1g.10gb", node_selector={"nvidia.com/gpu.product": "A100-SXM4-40GB"},
        runtime_class_name="nvidia", image_pull_secrets=["registry"],
        tolerations=[{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}])),
    "hpa": lambda: objects(config=canary_settings(50, autoscaling={"enabled": True, "max_replicas": 8})),
    "replicas-pvc": lambda: objects(config=canary_settings(
        50, traffic="replicas", replicas=4,
        artifact={"source": "pvc", "claim": "models", "sha256": {"1": "a" * 64, "2": "b" * 64}})),
    "no-sidecar": lambda: objects(make_spec(), settings(drift_exporter={"enabled": False}, create_namespace=False)),
}


def _strict(node: Any) -> Any:
    """The schema with ``additionalProperties: false`` wherever it lists properties and allows no others."""
    # The API server prunes unknown fields of a CRD object silently; here they are errors, as typos should be.
    if isinstance(node, list):
        return [_strict(v) for v in node]
    if not isinstance(node, dict):
        return node
    strict = {k: _strict(v) for k, v in node.items()}
    if isinstance(strict.get("pattern"), str) and strict["pattern"].startswith("^(?i)"):
        strict["pattern"] = "(?i)^" + strict["pattern"][5:]  # Go's RE2 takes flags anywhere; Python only first
    if ("properties" in strict and "additionalProperties" not in strict
            and not strict.get("x-kubernetes-preserve-unknown-fields")):
        strict["additionalProperties"] = False
    return strict


@cache
def _crd_validator(kind: str) -> jsonschema.protocols.Validator:
    schema = _strict(json.loads((CRD_SCHEMAS / CRD_KINDS[kind]).read_text(encoding="utf-8")))
    validator_class = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    validator_class.check_schema(schema)
    return validator_class(schema)


def _validate(obj: dict[str, Any], version: str) -> None:
    if obj["kind"] in CRD_KINDS:
        _crd_validator(obj["kind"]).validate(obj)
    else:
        kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_every_rendered_object_is_valid(case: str, version: str) -> None:
    items = CASES[case]()
    for obj in items:
        try:
            _validate(obj, version)
        except jsonschema.ValidationError as exc:
            where = ".".join(map(str, exc.absolute_path))
            pytest.fail(f"{case}: {obj['kind']}/{obj['metadata']['name']} at {where}: {exc.message}")


def test_the_cases_cover_every_kind() -> None:
    kinds = {obj["kind"] for make in CASES.values() for obj in make()}
    assert kinds == {"Namespace", "Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler",
                     "HTTPRoute", "ServiceMonitor", "PrometheusRule"}


@pytest.mark.parametrize(("kind", "change", "complaint"), [
    ("HTTPRoute", lambda o: o["spec"]["rules"][0]["backendRefs"][0].update(weight=1000001), "1000001"),
    ("HTTPRoute", lambda o: o["spec"]["rules"][0]["backendRefs"][0].update(wieght=1), "wieght"),
    ("ServiceMonitor", lambda o: o["spec"]["endpoints"][0].update(interval="15 seconds"), "15 seconds"),
    ("PrometheusRule", lambda o: o["spec"]["groups"][0]["rules"][0].pop("expr"), "expr"),
    ("Deployment", lambda o: o["spec"]["template"]["spec"]["containers"][0].update(readinesProbe={}),
     "readinesProbe"),
    ("Deployment", lambda o: o["spec"].update(replicas="two"), "two"),
    ("Service", lambda o: o["spec"]["ports"][0].update(targetport="http"), "targetport"),
])
def test_the_validators_catch_broken_objects(kind: str, change: Any, complaint: str) -> None:
    broken = copy.deepcopy(one(objects(), kind))
    _validate(broken, KUBERNETES_VERSIONS[-1])
    change(broken)
    with pytest.raises(jsonschema.ValidationError, match=complaint):
        _validate(broken, KUBERNETES_VERSIONS[-1])
