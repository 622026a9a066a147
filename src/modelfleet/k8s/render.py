"""The builder: a model spec + settings -> the plain Kubernetes objects of its deployment.

``build(spec, settings)`` checks the settings against the spec first (every problem at once, as a
:class:`~modelfleet.errors.UsageError`), then returns the objects as dicts: the namespace, per version a
Deployment, Service, PodDisruptionBudget (and HPA), the traffic split, and the monitoring objects. The
Pulumi component and ``modelfleet k8s render`` both call it: one definition, two front ends.
"""

from __future__ import annotations

from collections.abc import Iterable

import yaml

from modelfleet.k8s import monitoring, traffic, workloads
from modelfleet.k8s.naming import Obj, model_labels, releases
from modelfleet.k8s.settings import K8sSettings, settings_error
from modelfleet.spec import ModelSpec

GPU_PROVIDERS = ("cuda", "tensorrt")


def problems(spec: ModelSpec, settings: K8sSettings) -> list[str]:
    """What makes these settings unusable with this spec (empty when nothing does)."""
    found = traffic.weight_problems(spec, settings)
    stable = settings.stable_version or spec.version
    if settings.canary_version is not None and settings.canary_version == stable:
        found.append(f"canary_version: {settings.canary_version} is the stable version too "
                     "(a canary is a different version; set stable_version to the one serving now)")
    gpu_providers = [p for p in spec.serving.providers if p in GPU_PROVIDERS]
    if gpu_providers and spec.serving.resources.gpus == 0:
        found.append(f"serving.resources.gpus: 0, but serving.providers lists {', '.join(gpu_providers)}: "
                     "the pods would get no GPU (request at least 1, or serve with providers: [cpu])")
    if settings.artifact.source in ("url", "pvc"):
        versions = list(dict.fromkeys([stable, *([settings.canary_version] if settings.canary_version else [])]))
        missing = [v for v in versions if v not in settings.artifact.sha256]
        if missing:
            what = "the tar.gz" if settings.artifact.source == "url" else "its manifest.json"
            found.append(f"artifact.sha256: no checksum for version(s) {', '.join(missing)} "
                         f"(sha256 of {what}; nothing is served unverified)")
    if settings.traffic == "replicas" and settings.autoscaling.enabled:
        found.append("autoscaling.enabled: an HPA would change the replica ratio that splits the traffic "
                     "(traffic: replicas); use traffic: gateway with autoscaling")
    return found


def build(spec: ModelSpec, settings: K8sSettings) -> list[Obj]:
    """Every object of the deployment, in apply order (namespace first)."""
    found = problems(spec, settings)
    if found:
        raise settings_error(f"for model {spec.name}", found)
    objects: list[Obj] = []
    if settings.create_namespace:
        objects.append({"apiVersion": "v1", "kind": "Namespace",
                        "metadata": {"name": settings.namespace, "labels": model_labels(spec, settings)}})
    deployed = releases(spec, settings)
    total = settings.replicas or spec.serving.instances
    counts = dict(zip(("stable", "canary"), traffic.split_replicas(total, settings.canary_weight), strict=True))
    for release in deployed:
        replicas: int | None = total
        if settings.autoscaling.enabled:
            replicas = None
        elif settings.traffic == "replicas" and len(deployed) > 1:
            replicas = counts[release.role]
        objects.append(workloads.deployment(release, spec, settings, replicas))
        objects.append(workloads.service(release, settings))
        objects.append(workloads.disruption_budget(release, settings))
        if settings.autoscaling.enabled:
            objects.append(workloads.autoscaler(release, settings))
    if settings.traffic == "gateway":
        objects.append(traffic.http_route(spec, settings, deployed))
    else:
        split = traffic.split_replicas(total, settings.canary_weight) if len(deployed) > 1 else (total, 0)
        objects.append(traffic.shared_service(spec, settings, split))
    if settings.monitoring.service_monitor:
        objects.append(monitoring.service_monitor(spec, settings))
    if settings.monitoring.prometheus_rule:
        objects.append(monitoring.prometheus_rule(spec, settings))
    return objects


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the init container's script, rule expressions) as readable ``|`` blocks."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value and not any(line != line.rstrip() for line in value.splitlines()) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def to_yaml(objects: Iterable[Obj]) -> str:
    """A YAML stream of the objects (``---`` between documents), as ``helm template`` prints."""
    return "".join("---\n" + yaml.dump(obj, Dumper=_Dumper, sort_keys=False, width=120) for obj in objects)
