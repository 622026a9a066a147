"""pulumi/k8s and the ModelDeployment component under Pulumi's mocks (``pulumi.runtime.set_mocks``).

No Pulumi CLI, provider plugin or cluster exists here: the mocks stand in for the Pulumi engine (they record
every resource registration and echo its inputs back), and each program runs in its own event loop and a
fresh context (Pulumi's settings and root stack live in context variables). What `pulumi up` would send to
the Kubernetes provider is then checked: kinds, GPU limits and tolerations, probes, weights = stack config,
selectors, sidecar, HPA vs replicas, the PrometheusRule, the init container's checksum, and Kubernetes
schemas. The provider's own behaviour (server-side apply, await logic) needs a real cluster.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import runpy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pulumi
import pytest
import yaml
from k8s_cases import REPO, RULES_DIR, SHA_1, SHA_2, canary_settings, gpu_spec, make_spec, settings

from modelfleet.errors import UsageError
from modelfleet.k8s import K8sSettings, build
from modelfleet.k8s.pulumi_component import CONFIG_KEYS, ModelDeployment, ModelDeploymentArgs, depends_on
from modelfleet.spec import ModelSpec, load_spec

PROGRAM = REPO / "pulumi" / "k8s"
# pulumi.export under mocks trips a DeprecationWarning inside pulumi (output.py); not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:NotImplemented should not be used:DeprecationWarning")
PROJECT = "modelfleet-k8s"


class Recorder(pulumi.runtime.Mocks):
    """Mock engine: keeps every registered resource (type, name, inputs); outputs echo the inputs."""

    def __init__(self) -> None:
        self.resources: list[pulumi.runtime.MockResourceArgs] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.resources.append(args)
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        return {}


def _ints(value: Any) -> Any:
    """Numbers come back from the mock engine as floats (protobuf Struct): 1.0 -> 1."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ints(v) for v in value]
    return value


def run_program(program: Callable[[], Any], config: dict[str, Any] | None = None,
                recorder: Recorder | None = None) -> list[dict[str, Any]]:
    """Run a Pulumi program under mocks in a fresh event loop and context; the Kubernetes objects it registered."""
    recorder = recorder or Recorder()

    def body() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            pulumi.runtime.set_mocks(recorder, project=PROJECT, stack="test", preview=False)
            pulumi.runtime.set_all_config({f"{PROJECT}:{k}": v if isinstance(v, str) else json.dumps(v)
                                           for k, v in (config or {}).items()})
            pulumi.runtime.test(program)()
        finally:
            loop.close()
            asyncio.set_event_loop(None)

    contextvars.Context().run(body)
    return [_ints(r.inputs) for r in recorder.resources if r.typ.startswith("kubernetes:")]


def component(spec: ModelSpec, config: K8sSettings) -> list[dict[str, Any]]:
    return run_program(lambda: ModelDeployment(spec.name, ModelDeploymentArgs(spec, config)))


def _find(resources: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [r for r in resources if r["kind"] == kind and name in (None, r["metadata"]["name"])]


def _pod(deployment: dict[str, Any]) -> dict[str, Any]:
    return deployment["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def _weights(resources: list[dict[str, Any]]) -> dict[str, int]:
    route = _find(resources, "HTTPRoute")[0]
    return {b["name"]: b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]}


def test_component_registers_exactly_the_builders_objects() -> None:
    spec, config = make_spec(), canary_settings(10)
    resources = component(spec, config)

    def key(obj: dict[str, Any]) -> tuple[str, str]:
        return obj["kind"], obj["metadata"]["name"]

    assert sorted(resources, key=key) == sorted(build(spec, config), key=key)  # registration order is async
    for obj in resources:
        if obj["kind"] not in ("HTTPRoute", "ServiceMonitor", "PrometheusRule"):
            kubernetes_validate.validate(obj, "1.37", strict=True)


def test_typed_resources_and_custom_resources() -> None:
    made: list[ModelDeployment] = []
    spec, config = make_spec(), canary_settings(10, autoscaling={"enabled": True})
    run_program(lambda: made.append(ModelDeployment(spec.name, ModelDeploymentArgs(spec, config))))
    classes = {key.split("-")[0]: type(child).__name__ for key, child in made[0].children.items()}
    assert classes == {"namespace": "Namespace", "deployment": "Deployment", "service": "Service",
                       "poddisruptionbudget": "PodDisruptionBudget",
                       "horizontalpodautoscaler": "HorizontalPodAutoscaler", "httproute": "CustomResource",
                       "servicemonitor": "CustomResource", "prometheusrule": "CustomResource"}
    assert len(made[0].children) == len(build(spec, config))


@pytest.mark.parametrize("traffic", ["gateway", "replicas"])
def test_traffic_split_waits_for_every_version(traffic: str) -> None:
    objects = build(make_spec(), canary_settings(50, traffic=traffic, replicas=2))
    order = {f"{o['kind'].lower()}-{o['metadata']['name']}": depends_on(o, objects[:i]) for i, o in enumerate(objects)}
    split = "httproute-credit-risk" if traffic == "gateway" else "service-credit-risk"
    assert order[split] == ["namespace-modelfleet", "deployment-credit-risk-v1", "service-credit-risk-v1",
                            "deployment-credit-risk-v2", "service-credit-risk-v2"]
    assert order["deployment-credit-risk-v2"] == ["namespace-modelfleet"]
    assert order["namespace-modelfleet"] == []


def test_two_models_in_one_stack_do_not_collide() -> None:
    recorder = Recorder()
    spec, mlp = make_spec(), load_spec(REPO / "examples" / "mlp" / "model.yml")

    def program() -> None:
        ModelDeployment(spec.name, ModelDeploymentArgs(spec, settings()))
        ModelDeployment(mlp.name, ModelDeploymentArgs(mlp, settings(create_namespace=False)))

    resources = run_program(program, recorder=recorder)
    names = [r.name for r in recorder.resources if r.typ.startswith("kubernetes:")]
    assert len(names) == len(set(names)) == len(resources) == 13
    assert "credit-risk-deployment-credit-risk-v1" in names and "mlp-deployment-mlp-v1" in names


def test_gpu_limits_tolerations_and_probes() -> None:
    resources = component(gpu_spec(1), settings(gpu_resource="nvidia.com/mig-1g.10gb", node_selector={"gpu": "yes"}))
    pod = _pod(_find(resources, "Deployment")[0])
    server = pod["containers"][0]
    assert server["resources"]["limits"]["nvidia.com/mig-1g.10gb"] == "1"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["nodeSelector"] == {"gpu": "yes"}
    assert server["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert server["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"


def test_selectors_match_service_labels_and_sidecar_shares_spool() -> None:
    resources = component(make_spec(), canary_settings(50))
    for deployment in _find(resources, "Deployment"):
        name = deployment["metadata"]["name"]
        service = _find(resources, "Service", name)[0]
        assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
        assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
        server, exporter = _pod(deployment)["containers"]
        assert exporter["name"] == "drift-exporter"
        assert {"name": "spool", "mountPath": "/spool"} in server["volumeMounts"]
        assert {"name": "spool", "mountPath": "/spool"} in exporter["volumeMounts"]
        init = _pod(deployment)["initContainers"][0]
        env = {e["name"]: e["value"] for e in init["env"]}
        assert env["ARTIFACT_SHA256"] == {"credit-risk-v1": SHA_1, "credit-risk-v2": SHA_2}[name]
        assert "sha256sum -c" in init["command"][-1]


def test_hpa_versus_replicas() -> None:
    fixed = component(make_spec(), settings(replicas=3))
    assert _find(fixed, "Deployment")[0]["spec"]["replicas"] == 3 and not _find(fixed, "HorizontalPodAutoscaler")
    scaled = component(make_spec(), settings(autoscaling={"enabled": True, "max_replicas": 5}))
    assert "replicas" not in _find(scaled, "Deployment")[0]["spec"]
    assert _find(scaled, "HorizontalPodAutoscaler")[0]["spec"]["maxReplicas"] == 5


def test_prometheus_rule_equals_monitoring_rules() -> None:
    rule = _find(component(make_spec(), settings()), "PrometheusRule")[0]
    expected = [g for path in sorted(RULES_DIR.glob("*.yml"))
                for g in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]]
    assert rule["spec"]["groups"] == expected


def test_bad_settings_fail_before_any_resource() -> None:
    with pytest.raises(UsageError, match="canary_version: 1 is the stable version too"):
        component(make_spec(), settings(canary_version="1"))


# --- the program in pulumi/k8s, with its Pulumi.yaml defaults and the example stack ---------------------

def _project() -> dict[str, Any]:
    return yaml.safe_load((PROGRAM / "Pulumi.yaml").read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def _stack_config(stack: dict[str, Any] | None) -> dict[str, Any]:
    """What the Pulumi CLI would pass: Pulumi.yaml's defaults, overridden by the stack's values."""
    config = {key: decl["default"] for key, decl in _project()["config"].items()}
    for key, value in (stack or {}).items():
        config[key.removeprefix(f"{PROJECT}:")] = value
    return {k: v for k, v in config.items() if v != ""}


def run_main(stack: dict[str, Any] | None, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    monkeypatch.chdir(PROGRAM)
    return run_program(lambda: runpy.run_path(str(PROGRAM / "__main__.py")), _stack_config(stack))


def test_project_config_is_typed_and_documented() -> None:
    project = _project()
    assert project["name"] == PROJECT and project["runtime"]["name"] == "python"
    for key, decl in project["config"].items():
        assert decl["type"] in ("string", "integer", "boolean"), key
        assert decl["description"] and "default" in decl, key
        assert key == "model" or key in CONFIG_KEYS, key
    assert set(CONFIG_KEYS) <= set(project["config"])
    assert "def " not in (PROGRAM / "__main__.py").read_text(encoding="utf-8")


def test_program_with_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    resources = run_main(None, monkeypatch)
    assert _weights(resources) == {"credit-risk-v1": 100}
    assert {r["metadata"].get("namespace") for r in resources if r["kind"] != "Namespace"} == {"modelfleet"}


def test_example_stack_weights_are_its_config(monkeypatch: pytest.MonkeyPatch) -> None:
    stack = yaml.safe_load((PROGRAM / "Pulumi.dev.yaml").read_text(encoding="utf-8"))["config"]
    resources = run_main(stack, monkeypatch)
    assert _weights(resources) == {"credit-risk-v1": 90, "credit-risk-v2": 10}
    assert all("replicas" not in d["spec"] for d in _find(resources, "Deployment"))  # autoscaling in the stack
    stack[f"{PROJECT}:canaryWeight"] = 50
    assert _weights(run_main(stack, monkeypatch)) == {"credit-risk-v1": 50, "credit-risk-v2": 50}


@pytest.mark.parametrize(("weight", "message"), [
    (-10, "canary_weight: Input should be greater than or equal to 0"),
    (150, "canary_weight: Input should be less than or equal to 100"),
    (30, "canary_weight: 30 is not a step of rollout.steps"),
])
def test_program_rejects_bad_weights(weight: int, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    stack = yaml.safe_load((PROGRAM / "Pulumi.dev.yaml").read_text(encoding="utf-8"))["config"]
    stack[f"{PROJECT}:canaryWeight"] = weight
    with pytest.raises(UsageError) as caught:
        run_main(stack, monkeypatch)
    assert message in str(caught.value)


def test_program_reports_a_bad_spec_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(Exception, match="no such file"):
        run_main({"model": str(tmp_path / "missing.yml")}, monkeypatch)
