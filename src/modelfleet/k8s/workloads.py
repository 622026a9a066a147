"""Per-version workloads: Deployment (model server + drift exporter sidecar), Service, HPA, PodDisruptionBudget.

Each version runs in its own Deployment, as each runs in its own process on bare metal: a crashing canary
never takes the stable down. The server writes sampled payloads to a spool ``emptyDir`` that the drift
exporter sidecar tails. The readiness probe is the server's ``/v2/health/ready``: a canary pod gets traffic
only once its model is loaded and warmed.
"""

from __future__ import annotations

from modelfleet.k8s import artifacts
from modelfleet.k8s.naming import DRIFT_PORT_NAME, SERVE_PORT_NAME, Obj, Release, metadata
from modelfleet.k8s.settings import K8sSettings
from modelfleet.spec import ModelSpec

SPOOL_DIR = "/spool"
GPU_TAINT = "nvidia.com/gpu"


def _security() -> Obj:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]}}


def _server_args(release: Release, spec: ModelSpec, settings: K8sSettings) -> list[str]:
    batching = spec.serving.batching
    return ["modelfleet", "serve", artifacts.artifact_dir(release, settings),
            "--host", "0.0.0.0", "--port", str(settings.port),
            "--spool-dir", SPOOL_DIR, "--trt-cache-dir", "/cache/trt",
            "--providers", ",".join(spec.serving.providers),
            "--max-batch", str(batching.max_batch), "--max-queue-delay-us", str(batching.max_queue_delay_us),
            "--max-queue-size", str(batching.max_queue_size),
            "--shutdown-delay", f"{settings.shutdown_delay:g}", "--drain-timeout", f"{settings.drain_timeout:g}"]


def _server_resources(spec: ModelSpec, settings: K8sSettings) -> Obj:
    resources = spec.serving.resources
    requests: dict[str, str] = {"memory": resources.memory}
    limits: dict[str, str] = {"memory": resources.memory}
    if resources.cpu is not None:
        requests["cpu"] = resources.cpu
    if resources.gpus > 0:  # extended resources: limits, and requests equal to them
        requests[settings.gpu_resource] = str(resources.gpus)
        limits[settings.gpu_resource] = str(resources.gpus)
    return {"requests": requests, "limits": limits}


def _probe(path: str, period: int, failures: int) -> Obj:
    return {"httpGet": {"path": path, "port": SERVE_PORT_NAME}, "periodSeconds": period,
            "timeoutSeconds": 2, "failureThreshold": failures}


def _server(release: Release, spec: ModelSpec, settings: K8sSettings) -> Obj:
    mounts = [*artifacts.models_mount(settings), {"name": "spool", "mountPath": SPOOL_DIR},
              {"name": "cache", "mountPath": "/cache"}, {"name": "tmp", "mountPath": "/tmp"}]
    return {
        "name": "model-server", "image": settings.image, "imagePullPolicy": settings.image_pull_policy,
        "command": _server_args(release, spec, settings),
        "ports": [{"name": SERVE_PORT_NAME, "containerPort": settings.port, "protocol": "TCP"}],
        "readinessProbe": _probe("/v2/health/ready", 5, 3),
        "livenessProbe": _probe("/v2/health/live", 10, 3),
        # Loading a model (a TensorRT engine build above all) may take minutes: liveness waits for it.
        "startupProbe": _probe("/v2/health/live", 5, 60),
        "resources": _server_resources(spec, settings),
        "volumeMounts": mounts, "securityContext": _security(),
    }


def _drift_exporter(settings: K8sSettings) -> Obj:
    sidecar = settings.drift_exporter
    return {
        "name": "drift-exporter", "image": settings.image, "imagePullPolicy": settings.image_pull_policy,
        "command": ["modelfleet", "drift-exporter", "--spool-dir", SPOOL_DIR,
                    "--artifacts-dir", artifacts.models_root(settings), "--state-dir", f"{SPOOL_DIR}/.drift-exporter",
                    "--host", "0.0.0.0", "--port", str(sidecar.port)],
        "ports": [{"name": DRIFT_PORT_NAME, "containerPort": sidecar.port, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/metrics", "port": DRIFT_PORT_NAME}, "periodSeconds": 10},
        "resources": {"requests": {"cpu": sidecar.cpu, "memory": sidecar.memory},
                      "limits": {"memory": sidecar.memory}},
        "volumeMounts": [*artifacts.models_mount(settings), {"name": "spool", "mountPath": SPOOL_DIR}],
        "securityContext": _security(),
    }


def _tolerations(spec: ModelSpec, settings: K8sSettings) -> list[Obj]:
    extra = [t.model_dump(exclude_none=True) for t in settings.tolerations]
    if spec.serving.resources.gpus > 0 and not any(t.get("key") == GPU_TAINT for t in extra):
        extra.insert(0, {"key": GPU_TAINT, "operator": "Exists", "effect": "NoSchedule"})
    return extra


def pod_spec(release: Release, spec: ModelSpec, settings: K8sSettings) -> Obj:
    containers = [_server(release, spec, settings)]
    if settings.drift_exporter.enabled:
        containers.append(_drift_exporter(settings))
    volumes = [v for v in [artifacts.models_volume(settings)] if v is not None]
    volumes += [{"name": "spool", "emptyDir": {}}, {"name": "cache", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}]
    pod: Obj = {
        "initContainers": [artifacts.init_container(release, settings, _security())],
        "containers": containers, "volumes": volumes,
        "terminationGracePeriodSeconds": int(settings.shutdown_delay + settings.drain_timeout + 10),
        "securityContext": {"runAsNonRoot": True, "runAsUser": settings.run_as_user,
                            "runAsGroup": settings.run_as_user, "fsGroup": settings.run_as_user,
                            "seccompProfile": {"type": "RuntimeDefault"}},
    }
    if settings.node_selector:
        pod["nodeSelector"] = dict(settings.node_selector)
    if settings.runtime_class_name:
        pod["runtimeClassName"] = settings.runtime_class_name
    if settings.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": secret} for secret in settings.image_pull_secrets]
    tolerations = _tolerations(spec, settings)
    if tolerations:
        pod["tolerations"] = tolerations
    return pod


def deployment(release: Release, spec: ModelSpec, settings: K8sSettings, replicas: int | None) -> Obj:
    """The version's Deployment; ``replicas`` is ``None`` (left out) when an HPA owns the count."""
    body: Obj = {
        "selector": {"matchLabels": release.selector()},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "template": {"metadata": {"labels": release.pod_labels(settings),
                                  "annotations": {"modelfleet.io/spec-sha256": spec.spec_sha256}},
                     "spec": pod_spec(release, spec, settings)},
    }
    if replicas is not None:
        body = {"replicas": replicas, **body}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": metadata(release.name, settings, release.labels(settings)), "spec": body}


def service(release: Release, settings: K8sSettings) -> Obj:
    """The version's ClusterIP Service: its selector is exactly the Deployment's pod selector."""
    ports = [{"name": SERVE_PORT_NAME, "port": settings.port, "targetPort": SERVE_PORT_NAME, "protocol": "TCP"}]
    if settings.drift_exporter.enabled:
        ports.append({"name": DRIFT_PORT_NAME, "port": settings.drift_exporter.port, "targetPort": DRIFT_PORT_NAME,
                      "protocol": "TCP"})
    labels = {**release.labels(settings), "modelfleet.io/scrape": "true"}
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata(release.name, settings, labels),
            "spec": {"type": "ClusterIP", "selector": release.selector(), "ports": ports}}


def autoscaler(release: Release, settings: K8sSettings) -> Obj:
    scaling = settings.autoscaling
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": metadata(release.name, settings, release.labels(settings)),
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": release.name},
                     "minReplicas": scaling.min_replicas, "maxReplicas": scaling.max_replicas,
                     "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                         "type": "Utilization", "averageUtilization": scaling.cpu_utilization}}}]}}


def disruption_budget(release: Release, settings: K8sSettings) -> Obj:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": metadata(release.name, settings, release.labels(settings)),
            "spec": {"maxUnavailable": settings.max_unavailable, "selector": {"matchLabels": release.selector()}}}
