"""``ModelDeployment``: a Pulumi ComponentResource that creates the builder's objects as typed resources.

The objects come from :func:`modelfleet.k8s.render.build` (the same as ``modelfleet k8s render``); each becomes
a typed pulumi_kubernetes resource (Namespace, Deployment, Service, HorizontalPodAutoscaler,
PodDisruptionBudget) or, for the CRD kinds (HTTPRoute, ServiceMonitor, PrometheusRule), a
``CustomResource`` — not ``yaml.ConfigGroup``, whose children do not exist under Pulumi's mocks
(pulumi-kubernetes #3183), so the unit tests could not see them.

``pulumi/k8s/__main__.py`` only calls :func:`from_config`: the stack configuration (``Pulumi.<stack>.yaml``)
holds the model spec's path and the settings; a rollout step is ``pulumi config set canaryWeight 50`` then
``pulumi up``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from modelfleet.k8s.naming import Obj
from modelfleet.k8s.render import build
from modelfleet.k8s.settings import K8sSettings, load_settings
from modelfleet.spec import ModelSpec, load_spec

_TYPED: dict[tuple[str, str], Callable[..., pulumi.CustomResource]] = {
    ("v1", "Namespace"): k8s.core.v1.Namespace,
    ("v1", "Service"): k8s.core.v1.Service,
    ("apps/v1", "Deployment"): k8s.apps.v1.Deployment,
    ("autoscaling/v2", "HorizontalPodAutoscaler"): k8s.autoscaling.v2.HorizontalPodAutoscaler,
    ("policy/v1", "PodDisruptionBudget"): k8s.policy.v1.PodDisruptionBudget,
}
# Stack config keys (Pulumi.yaml declares them) -> settings fields; everything else goes in `settings`.
CONFIG_KEYS = {"namespace": "namespace", "image": "image", "stableVersion": "stable_version",
               "canaryVersion": "canary_version", "canaryWeight": "canary_weight", "traffic": "traffic",
               "gpuResource": "gpu_resource"}


@dataclass(frozen=True)
class ModelDeploymentArgs:
    """What a model's deployment is made of: its validated spec and its Kubernetes settings."""

    spec: ModelSpec
    settings: K8sSettings


class ModelDeployment(pulumi.ComponentResource):
    """Stable and canary versions of one model, their traffic split and monitoring, as child resources."""

    objects: list[Obj]
    children: dict[str, pulumi.CustomResource]

    def __init__(self, name: str, args: ModelDeploymentArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("modelfleet:k8s:ModelDeployment", name, None, opts)
        self.objects = build(args.spec, args.settings)  # bad settings fail here, at preview
        self.children = {}
        for index, obj in enumerate(self.objects):
            depends = [self.children[key] for key in depends_on(obj, self.objects[:index])]
            options = pulumi.ResourceOptions(parent=self, depends_on=depends)
            self.children[_key(obj)] = _resource(f"{name}-{_key(obj)}", obj, options)
        releases = [o["metadata"]["name"] for o in self.objects if o["kind"] == "Deployment"]
        self.register_outputs({"namespace": args.settings.namespace, "deployments": releases,
                               "canary_version": args.settings.canary_version or "",
                               "canary_weight": args.settings.canary_weight})


def _key(obj: Obj) -> str:
    return f"{obj['kind'].lower()}-{obj['metadata']['name']}"


def depends_on(obj: Obj, earlier: list[Obj]) -> list[str]:
    """Children ``obj`` waits for: everything waits for the namespace; the traffic split waits for every version.

    pulumi-kubernetes considers a Deployment created only once its rollout is available (ready pods), so the
    HTTPRoute (or the shared Service of ``traffic: replicas``) changes weights only after a new canary can
    answer: no 503s from routing to a canary that is not ready (kserve #5983).
    """
    keys = [_key(o) for o in earlier if o["kind"] == "Namespace"]
    if is_traffic(obj):
        keys += [_key(o) for o in earlier if o["kind"] in ("Deployment", "Service") and not is_traffic(o)]
    return keys


def is_traffic(obj: Obj) -> bool:
    """The object that splits traffic: the HTTPRoute, or the Service over every version's pods."""
    return obj["kind"] == "HTTPRoute" or (obj["kind"] == "Service" and "modelfleet.io/role" not in
                                          obj["metadata"]["labels"])


def _resource(name: str, obj: Obj, opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
    """A typed resource for the built-in kinds, a CustomResource for the CRDs; ``name`` is Pulumi's, unique
    per stack (two models in one stack do not collide), the object keeps its own ``metadata.name``."""
    body = copy.deepcopy(obj)
    typed = _TYPED.get((body["apiVersion"], body["kind"]))
    if typed is not None:
        return typed(name, metadata=body["metadata"], spec=body.get("spec"), opts=opts)
    return k8s.apiextensions.CustomResource(name, api_version=body["apiVersion"], kind=body["kind"],
                                            metadata=body["metadata"], spec=body["spec"], opts=opts)


def args_from_config(config: pulumi.Config, project_dir: Path | None = None) -> ModelDeploymentArgs:
    """The spec (``model``: a path relative to the project) and settings (``settings`` + the typed keys)."""
    project_dir = project_dir or Path.cwd()
    spec_path = Path(config.require("model"))
    spec = load_spec(spec_path if spec_path.is_absolute() else project_dir / spec_path)
    base: dict[str, Any] = dict(config.get_object("settings") or {})
    for key, field in CONFIG_KEYS.items():
        value = config.get_int(key) if key == "canaryWeight" else config.get(key)
        if value is not None and value != "":
            base[field] = value
    rules_dir = base.get("monitoring", {}).get("rules_dir")
    if rules_dir is not None and not Path(rules_dir).is_absolute():
        base["monitoring"] = {**base["monitoring"], "rules_dir": str(project_dir / rules_dir)}
    return ModelDeploymentArgs(spec, load_settings(base=base))


def from_config(name: str | None = None) -> ModelDeployment:
    """The Pulumi program of ``pulumi/k8s``: one ModelDeployment from the stack configuration."""
    args = args_from_config(pulumi.Config())
    deployment = ModelDeployment(name or args.spec.name, args)
    pulumi.export("namespace", args.settings.namespace)
    pulumi.export("deployments", [o["metadata"]["name"] for o in deployment.objects if o["kind"] == "Deployment"])
    pulumi.export("canaryWeight", args.settings.canary_weight)
    return deployment
