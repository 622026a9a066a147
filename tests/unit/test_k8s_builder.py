"""The Kubernetes builder (modelfleet.k8s): objects from the model spec and settings, and its errors.

Pure logic: no cluster is needed (none exists here); test_k8s_schemas.py validates the same objects against
the Kubernetes and CRD schemas.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from k8s_cases import (
    RULES_DIR,
    SHA_1,
    SHA_2,
    canary_settings,
    container,
    gpu_spec,
    make_spec,
    objects,
    of_kind,
    one,
    settings,
)

from modelfleet.errors import UsageError
from modelfleet.k8s import build, parse_settings
from modelfleet.k8s.traffic import split_replicas


def _backends(items: list[dict[str, Any]]) -> dict[str, int]:
    route = one(items, "HTTPRoute")
    return {b["name"]: b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]}


def test_stable_only_gets_every_object_once() -> None:
    items = objects()
    assert [o["kind"] for o in items] == ["Namespace", "Deployment", "Service", "PodDisruptionBudget", "HTTPRoute",
                                          "ServiceMonitor", "PrometheusRule"]
    assert _backends(items) == {"credit-risk-v1": 100}
    assert {o["metadata"].get("namespace", o["metadata"]["name"]) for o in items} == {"modelfleet"}


@pytest.mark.parametrize(("weight", "stable", "canary"), [(0, 100, 0), (10, 90, 10), (50, 50, 50), (100, 0, 100)])
def test_route_weights_are_explicit_and_add_up_to_100(weight: int, stable: int, canary: int) -> None:
    items = objects(config=canary_settings(weight))
    assert _backends(items) == {"credit-risk-v1": stable, "credit-risk-v2": canary}
    assert one(items, "Deployment", "credit-risk-v2")["metadata"]["labels"]["modelfleet.io/role"] == "canary"


def test_service_selectors_select_exactly_their_deployments_pods() -> None:
    items = objects(config=canary_settings())
    for deployment in of_kind(items, "Deployment"):
        name = deployment["metadata"]["name"]
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        selector = one(items, "Service", name)["spec"]["selector"]
        assert selector == deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= pod_labels.items()
        assert one(items, "PodDisruptionBudget", name)["spec"]["selector"]["matchLabels"] == selector
    stable, canary = (one(items, "Service", n)["spec"]["selector"] for n in ("credit-risk-v1", "credit-risk-v2"))
    assert stable != canary


def test_probes_are_the_oip_health_endpoints() -> None:
    server = container(one(objects(), "Deployment"), "model-server")
    assert server["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert server["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert server["command"][:3] == ["modelfleet", "serve", "/opt/modelfleet/models/credit-risk/1"]


def test_drift_exporter_sidecar_shares_the_spool_volume() -> None:
    deployment = one(objects(), "Deployment")
    server, exporter = container(deployment, "model-server"), container(deployment, "drift-exporter")
    spool = {m["mountPath"]: m["name"] for m in server["volumeMounts"]}["/spool"]
    assert {"name": spool, "mountPath": "/spool"} in exporter["volumeMounts"]
    assert {"name": spool, "emptyDir": {}} in deployment["spec"]["template"]["spec"]["volumes"]
    assert server["command"][server["command"].index("--spool-dir") + 1] == "/spool"
    assert exporter["command"][exporter["command"].index("--spool-dir") + 1] == "/spool"


def test_gpu_requests_limits_and_toleration() -> None:
    deployment = one(objects(gpu_spec(2), settings(node_selector={"gpu": "a100"}, runtime_class_name="nvidia")),
                     "Deployment")
    resources = container(deployment, "model-server")["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == "2" == resources["requests"]["nvidia.com/gpu"]
    pod = deployment["spec"]["template"]["spec"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["nodeSelector"] == {"gpu": "a100"}
    assert pod["runtimeClassName"] == "nvidia"
    assert "nvidia.com/gpu" not in container(deployment, "drift-exporter")["resources"]["limits"]


def test_mig_resource_name_and_cpu_only_pods() -> None:
    mig = one(objects(gpu_spec(1), settings(gpu_resource="nvidia.com/mig-1g.10gb")), "Deployment")
    assert container(mig, "model-server")["resources"]["limits"] == {"memory": "8Gi", "nvidia.com/mig-1g.10gb": "1"}
    cpu = one(objects(), "Deployment")
    assert "tolerations" not in cpu["spec"]["template"]["spec"]
    assert container(cpu, "model-server")["resources"]["limits"] == {"memory": "1Gi"}


def test_hpa_owns_replicas() -> None:
    without = one(objects(config=settings(replicas=3)), "Deployment")
    assert without["spec"]["replicas"] == 3
    items = objects(config=canary_settings(autoscaling={"enabled": True, "min_replicas": 2, "max_replicas": 6}))
    for deployment in of_kind(items, "Deployment"):
        assert "replicas" not in deployment["spec"]
        hpa = one(items, "HorizontalPodAutoscaler", deployment["metadata"]["name"])
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                                 "name": deployment["metadata"]["name"]}
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)


def test_argo_cd_applies_the_split_after_the_workloads() -> None:
    for traffic, kind in (("gateway", "HTTPRoute"), ("replicas", "Service")):
        split = one(objects(config=canary_settings(50, traffic=traffic)), kind, "credit-risk")
        assert split["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"] == "1"
    assert "annotations" not in one(objects(), "Deployment")["metadata"]  # wave 0


def test_replica_ratio_fallback() -> None:
    items = objects(config=canary_settings(50, traffic="replicas", replicas=4))
    assert not of_kind(items, "HTTPRoute")
    replicas = {d["metadata"]["name"]: d["spec"]["replicas"] for d in of_kind(items, "Deployment")}
    assert replicas == {"credit-risk-v1": 2, "credit-risk-v2": 2}
    assert one(items, "Service", "credit-risk")["metadata"]["annotations"]["modelfleet.io/canary-share"] == "50"
    coarse = objects(config=canary_settings(10, traffic="replicas", replicas=4))
    assert one(coarse, "Service", "credit-risk")["metadata"]["annotations"]["modelfleet.io/canary-share"] == "25"
    shared = one(items, "Service", "credit-risk")["spec"]["selector"]
    for deployment in of_kind(items, "Deployment"):
        assert shared.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


@pytest.mark.parametrize(("total", "weight", "expected"),
                         [(4, 10, (3, 1)), (4, 50, (2, 2)), (10, 10, (9, 1)), (1, 10, (1, 1)), (3, 0, (3, 0)),
                          (3, 100, (0, 3)), (2, 90, (1, 1))])
def test_split_replicas(total: int, weight: int, expected: tuple[int, int]) -> None:
    assert split_replicas(total, weight) == expected


@pytest.mark.parametrize(("source", "env_sha", "script_has"), [
    ({"source": "url", "url": "https://models.example.com/{name}/{version}.tar.gz"}, SHA_1, "sha256sum -c"),
    ({"source": "pvc", "claim": "models"}, SHA_1, "manifest.json"),
])
def test_init_container_verifies_the_checksum(source: dict[str, Any], env_sha: str, script_has: str) -> None:
    config = settings(artifact={**source, "sha256": {"1": SHA_1}})
    init = container(one(objects(config=config), "Deployment"), "fetch-artifact")
    env = {e["name"]: e["value"] for e in init["env"]}
    assert env["ARTIFACT_SHA256"] == env_sha
    assert script_has in init["command"][-1] and "modelfleet verify" in init["command"][-1]
    if source["source"] == "url":
        assert env["ARTIFACT_URL"] == "https://models.example.com/credit-risk/1.tar.gz"


def test_image_artifact_is_verified_against_its_manifest() -> None:
    init = container(one(objects(), "Deployment"), "fetch-artifact")
    assert init["command"][-1].strip().endswith('modelfleet verify "$ARTIFACT_DIR"')


def test_prometheus_rule_is_monitoring_rules_unchanged() -> None:
    rule = one(objects(), "PrometheusRule")
    expected = [g for path in sorted(RULES_DIR.glob("*.yml"))
                for g in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]]
    assert rule["spec"]["groups"] == expected
    assert len(expected) >= 5


def test_service_monitor_names_the_jobs_the_rules_use() -> None:
    monitor = one(objects(), "ServiceMonitor")
    jobs = {e["port"]: e["relabelings"][0]["replacement"] for e in monitor["spec"]["endpoints"]}
    assert jobs == {"http": "modelfleet-serve", "drift": "modelfleet-drift"}
    rules = "".join(p.read_text(encoding="utf-8") for p in RULES_DIR.glob("*.yml"))
    assert all(f'job="{job}"' in rules for job in jobs.values())
    service = one(objects(), "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()


@pytest.mark.parametrize(("fields", "message"), [
    ({"canary_weight": -1}, "canary_weight: Input should be greater than or equal to 0"),
    ({"canary_weight": 101}, "canary_weight: Input should be less than or equal to 100"),
    ({"canary_wieght": 10}, "canary_wieght: unknown setting"),
    ({"autoscaling": {"enabled": True, "maximum": 3}}, "autoscaling.maximum: unknown setting"),
    ({"artifact": {"source": "url"}}, "source url needs url"),
    ({"artifact": {"source": "pvc", "claim": "m", "sha256": {"1": "abc"}}}, "is not 64 lowercase hex digits"),
    ({"gpu_resource": "gpu"}, "gpu_resource: String should match pattern"),
])
def test_bad_settings_are_usage_errors(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match="invalid Kubernetes settings") as caught:
        parse_settings(fields)
    assert message in str(caught.value)


@pytest.mark.parametrize(("spec_fields", "fields", "message"), [
    ({}, {"canary_version": "2", "canary_weight": 25}, "canary_weight: 25 is not a step of rollout.steps; "
                                                       "use one of 0, 10, 50, 100"),
    ({}, {"canary_weight": 10}, "canary_weight: 10 without canary_version"),
    ({}, {"canary_version": "1"}, "canary_version: 1 is the stable version too"),
    ({"providers": ["cuda", "cpu"]}, {}, "serving.resources.gpus: 0, but serving.providers lists cuda"),
    ({}, {"artifact": {"source": "url", "url": "https://x/{version}", "sha256": {"1": SHA_1}}, "canary_version": "2"},
     "artifact.sha256: no checksum for version(s) 2"),
    ({}, {"artifact": {"source": "pvc", "claim": "models"}}, "artifact.sha256: no checksum for version(s) 1"),
    ({}, {"traffic": "replicas", "autoscaling": {"enabled": True}}, "an HPA would change the replica ratio"),
])
def test_settings_that_contradict_the_spec_fail_at_render(spec_fields: dict[str, Any], fields: dict[str, Any],
                                                          message: str) -> None:
    with pytest.raises(UsageError, match="for model credit-risk") as caught:
        build(make_spec(**spec_fields), parse_settings(fields))
    assert message in str(caught.value)


def test_canary_weight_zero_is_valid_and_sends_nothing() -> None:
    pvc = {"source": "pvc", "claim": "m", "sha256": {"1": SHA_1, "2": SHA_2}}
    items = build(make_spec(), canary_settings(0, artifact=pvc))
    assert _backends(items)["credit-risk-v2"] == 0
    assert len(of_kind(items, "Deployment")) == 2


def test_missing_rules_dir_is_a_usage_error(tmp_path: Any) -> None:
    with pytest.raises(UsageError, match=r"no \*\.yml rule files"):
        build(make_spec(), settings(monitoring={"rules_dir": str(tmp_path)}))
    assert not of_kind(build(make_spec(), settings(monitoring={"rules_dir": str(tmp_path), "prometheus_rule": False})),
                       "PrometheusRule")
