"""Names and labels shared by every object of a model's deployment."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelfleet.k8s.settings import K8sSettings
from modelfleet.spec import ModelSpec

Obj = dict[str, Any]
PART_OF = "modelfleet"
SERVE_PORT_NAME = "http"
DRIFT_PORT_NAME = "drift"


@dataclass(frozen=True)
class Release:
    """One model version deployed as a Deployment + Service: its role is ``stable`` or ``canary``."""

    model: str
    version: str
    role: str

    @property
    def name(self) -> str:
        """Deployment, Service, HPA and PDB name: ``<model>-v<version>``."""
        return f"{self.model}-v{self.version}"

    def selector(self) -> dict[str, str]:
        """Pod labels that select this version (immutable: the role is not among them)."""
        return {"app.kubernetes.io/name": self.model, "app.kubernetes.io/instance": self.name}

    def pod_labels(self, settings: K8sSettings) -> dict[str, str]:
        return {**settings.labels, **self.selector(), "app.kubernetes.io/version": self.version,
                "app.kubernetes.io/component": "model-server", "app.kubernetes.io/part-of": PART_OF}

    def labels(self, settings: K8sSettings) -> dict[str, str]:
        """Labels of the version's objects; the role can change (promotion) without restarting pods."""
        return {**self.pod_labels(settings), "modelfleet.io/role": self.role}


def model_labels(spec: ModelSpec, settings: K8sSettings) -> dict[str, str]:
    """Labels of the objects that belong to the model as a whole (route, monitoring, namespace)."""
    return {**settings.labels, "app.kubernetes.io/name": spec.name, "app.kubernetes.io/part-of": PART_OF,
            "app.kubernetes.io/managed-by": "modelfleet"}


def metadata(name: str, settings: K8sSettings, labels: dict[str, str], **extra: Any) -> Obj:
    return {"name": name, "namespace": settings.namespace, "labels": dict(labels), **extra}


def releases(spec: ModelSpec, settings: K8sSettings) -> list[Release]:
    """The stable release and, when configured, the canary."""
    stable = Release(spec.name, settings.stable_version or spec.version, "stable")
    if settings.canary_version is None:
        return [stable]
    return [stable, Release(spec.name, settings.canary_version, "canary")]
