"""The traffic split between stable and canary: Gateway API HTTPRoute weights, or a replica ratio.

Gateway API weights are proportional and default to 1 when left out; weight 0 sends no traffic
(gateway-api #596). So every backendRef carries an explicit weight: ``100 - w`` for the stable and ``w``
for the canary, and a canary at weight 0 is deployed (and can become ready) without receiving requests.

Without Gateway API (``traffic: replicas``) one Service selects the pods of both versions and the split is
the ratio of their replicas: coarse (with 4 replicas, 25% steps), and only as even as kube-proxy's balancing.

Both carry Argo CD's sync wave 1 (the Deployments are in wave 0): Argo CD applies the split only once the
versions' Deployments are healthy. The Pulumi component orders them the same way (``depends_on``).
"""

from __future__ import annotations

from modelfleet.k8s.naming import SERVE_PORT_NAME, Obj, Release, metadata, model_labels
from modelfleet.k8s.settings import K8sSettings
from modelfleet.spec import ModelSpec

AFTER_WORKLOADS = {"argocd.argoproj.io/sync-wave": "1"}


def weight_problems(spec: ModelSpec, settings: K8sSettings) -> list[str]:
    """Why ``canary_weight`` cannot be used with this spec's rollout steps (empty when it can)."""
    weight = settings.canary_weight
    if settings.canary_version is None:
        return [f"canary_weight: {weight} without canary_version (no canary to send traffic to)"] if weight else []
    allowed = [0.0, *spec.rollout.steps]
    if float(weight) not in allowed:
        listed = ", ".join(f"{w:g}" for w in allowed)
        return [f"canary_weight: {weight} is not a step of rollout.steps; "
                f"use one of {listed} (0: deployed, no traffic)"]
    return []


def split_replicas(total: int, weight: int) -> tuple[int, int]:
    """(stable, canary) replicas closest to ``weight`` % for the canary; each side that gets traffic has a pod."""
    if weight == 0:
        return total, 0
    if weight == 100:
        return 0, total
    canary = min(max(round(total * weight / 100), 1), total - 1) if total > 1 else 1
    return max(total - canary, 1), canary


def http_route(spec: ModelSpec, settings: K8sSettings, releases: list[Release]) -> Obj:
    """One HTTPRoute with a backendRef per version, each with an explicit weight (0-100)."""
    weights = {"stable": 100 - settings.canary_weight if len(releases) > 1 else 100,
               "canary": settings.canary_weight}
    parent: Obj = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": settings.gateway.name}
    if settings.gateway.namespace:
        parent["namespace"] = settings.gateway.namespace
    if settings.gateway.section_name:
        parent["sectionName"] = settings.gateway.section_name
    backends = [{"group": "", "kind": "Service", "name": r.name, "port": settings.port, "weight": weights[r.role]}
                for r in releases]
    route_spec: Obj = {"parentRefs": [parent],
                       "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                                  "backendRefs": backends}]}
    if settings.hostnames:
        route_spec["hostnames"] = list(settings.hostnames)
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": metadata(spec.name, settings, model_labels(spec, settings),
                                 annotations={"modelfleet.io/canary-weight": str(settings.canary_weight),
                                              **AFTER_WORKLOADS}),
            "spec": route_spec}


def replica_share(stable: int, canary: int) -> float:
    """The canary's share of the pods, in percent: what ``traffic: replicas`` actually sends it."""
    return 100.0 * canary / (stable + canary) if stable + canary else 0.0


def shared_service(spec: ModelSpec, settings: K8sSettings, replicas: tuple[int, int]) -> Obj:
    """``traffic: replicas``: the Service clients call, over the pods of every version; the canary's share of the
    pods (``modelfleet.io/canary-share``, percent) is what it gets, whatever weight was asked for."""
    annotations = {**AFTER_WORKLOADS, "modelfleet.io/canary-weight": str(settings.canary_weight),
                   "modelfleet.io/canary-share": f"{replica_share(*replicas):g}"}
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": metadata(spec.name, settings, model_labels(spec, settings), annotations=annotations),
            "spec": {"type": "ClusterIP",
                     "selector": {"app.kubernetes.io/name": spec.name, "app.kubernetes.io/component": "model-server"},
                     "ports": [{"name": SERVE_PORT_NAME, "port": settings.port, "targetPort": SERVE_PORT_NAME,
                                "protocol": "TCP"}]}}
