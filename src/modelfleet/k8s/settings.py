"""Typed settings of a model's Kubernetes deployment (what the model spec does not say).

The settings come from a YAML/JSON file, ``--set key=value`` overrides, or Pulumi stack config; all three go
through :func:`load_settings`, the one place where pydantic's validation errors become
:class:`~modelfleet.errors.UsageError` with one path-qualified line per problem (``canary_weight: must be
<= 100``). Unknown fields are errors, never ignored.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from modelfleet.durations import parse_duration
from modelfleet.errors import UsageError
from modelfleet.spec import DNS_LABEL

VERSION = r"^[1-9][0-9]{0,8}$"
SHA256 = r"^[0-9a-f]{64}$"
# A Kubernetes extended resource name: nvidia.com/gpu, nvidia.com/mig-1g.10gb, amd.com/gpu, ...
RESOURCE_NAME = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[a-zA-Z0-9]([-a-zA-Z0-9_.]*[a-zA-Z0-9])?$"
DEFAULT_RULES_DIR = Path(__file__).resolve().parents[3] / "monitoring" / "rules"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ArtifactSource(_Strict):
    """Where each version's artifact (``model.onnx``, ``profile.json``, ``manifest.json``) comes from.

    - ``url``: an init container downloads ``url`` (``{name}`` and ``{version}`` are filled in; a tar.gz of the
      artifact directory's files) and checks its sha256 against ``sha256[version]``, then every file against
      the manifest (``modelfleet verify``);
    - ``pvc``: the claim holds ``<name>/<version>/``; the init container checks ``manifest.json`` against
      ``sha256[version]`` (``sha256sum manifest.json`` of the built artifact), then every file against it;
    - ``image``: baked into the image under ``path``; the init container checks the files against the manifest.
    """

    source: Literal["url", "pvc", "image"] = "image"
    url: str | None = Field(default=None, description="http(s) URL template of the tar.gz: {name}, {version}")
    claim: str | None = Field(default=None, pattern=DNS_LABEL, description="PVC holding <name>/<version>/")
    path: str = Field(default="/opt/modelfleet/models", description="image: directory holding <name>/<version>/")
    sha256: dict[str, str] = Field(default_factory=dict, description="version -> sha256 (tar.gz or manifest.json)")

    @field_validator("sha256")
    @classmethod
    def _digests(cls, value: dict[str, str]) -> dict[str, str]:
        for version, digest in value.items():
            if not re.match(VERSION, version):
                raise ValueError(f"{version!r} is not a version (a positive integer)")
            if not re.match(SHA256, digest):
                raise ValueError(f"sha256 of version {version}: {digest!r} is not 64 lowercase hex digits")
        return value

    @model_validator(mode="after")
    def _where(self) -> ArtifactSource:
        if self.source == "url" and not (self.url and re.match(r"^https?://", self.url)):
            raise ValueError("source url needs url: an http(s) URL (object stores: their HTTPS endpoint)")
        if self.source == "pvc" and not self.claim:
            raise ValueError("source pvc needs claim: the PersistentVolumeClaim's name")
        return self


class GatewayRef(_Strict):
    """The Gateway the HTTPRoute attaches to (its ``parentRefs`` entry)."""

    name: str = Field(default="modelfleet", min_length=1)
    namespace: str | None = Field(default=None, pattern=DNS_LABEL)
    section_name: str | None = Field(default=None, min_length=1)


class Toleration(_Strict):
    key: str | None = None
    operator: Literal["Exists", "Equal"] = "Exists"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None


class Autoscaling(_Strict):
    """An autoscaling/v2 HorizontalPodAutoscaler per version; it then owns the Deployment's replicas."""

    enabled: bool = False
    min_replicas: int = Field(default=1, ge=1)
    max_replicas: int = Field(default=4, ge=1)
    cpu_utilization: int = Field(default=70, ge=1, le=100, description="target average CPU utilization, %")

    @model_validator(mode="after")
    def _bounds(self) -> Autoscaling:
        if self.max_replicas < self.min_replicas:
            raise ValueError(f"max_replicas {self.max_replicas} is below min_replicas {self.min_replicas}")
        return self


class DriftSidecar(_Strict):
    enabled: bool = True
    port: int = Field(default=9108, ge=1, le=65535)
    cpu: str = "100m"
    memory: str = "256Mi"


class Monitoring(_Strict):
    service_monitor: bool = True
    prometheus_rule: bool = True
    interval: str = "15s"
    rules_dir: Path = Field(default=DEFAULT_RULES_DIR, description="the rule files (monitoring/rules of modelfleet)")
    labels: dict[str, str] = Field(default_factory=dict, description="labels your Prometheus selects on")

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: str) -> str:
        parse_duration(value)
        return value


class K8sSettings(_Strict):
    """Everything about one model's deployment on Kubernetes that the model spec leaves open."""

    namespace: str = Field(default="modelfleet", pattern=DNS_LABEL)
    create_namespace: bool = True
    image: str = Field(default="modelfleet/runtime:0.1.0", min_length=1)
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    stable_version: str | None = Field(default=None, pattern=VERSION, description="default: the spec's version")
    canary_version: str | None = Field(default=None, pattern=VERSION)
    canary_weight: int = Field(default=0, ge=0, le=100, description="% of requests to the canary")
    traffic: Literal["gateway", "replicas"] = "gateway"
    gateway: GatewayRef = GatewayRef()
    hostnames: list[str] = Field(default_factory=list)
    replicas: int | None = Field(default=None, ge=1, description="pods per version (default: serving.instances)")
    gpu_resource: str = Field(default="nvidia.com/gpu", pattern=RESOURCE_NAME,
                              description="extended resource of a GPU, e.g. nvidia.com/mig-1g.10gb for a MIG slice")
    runtime_class_name: str | None = Field(default=None, pattern=DNS_LABEL,
                                           description="e.g. nvidia, where the GPU runtime is not the default")
    image_pull_secrets: list[str] = Field(default_factory=list, description="Secrets for a private registry")
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list, description="beyond nvidia.com/gpu (added for GPUs)")
    artifact: ArtifactSource = ArtifactSource()
    autoscaling: Autoscaling = Autoscaling()
    max_unavailable: int = Field(default=1, ge=1, description="PodDisruptionBudget per version")
    drift_exporter: DriftSidecar = DriftSidecar()
    monitoring: Monitoring = Monitoring()
    port: int = Field(default=8080, ge=1, le=65535)
    run_as_user: int = Field(default=10001, ge=1)
    shutdown_delay: float = Field(default=5.0, ge=0)
    drain_timeout: float = Field(default=30.0, ge=0)
    labels: dict[str, str] = Field(default_factory=dict, description="extra labels on every object")

    @field_validator("stable_version", "canary_version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif "[" not in part and part not in {"str", "int", "float", "bool"}:
            text += f".{part}" if text else part
    return text or "(top level)"


def _problem(error: Any) -> str:
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown setting (check the spelling; see docs/kubernetes.md)"
    return f"{_location(tuple(error['loc']))}: {message}"


def settings_error(source: str, problems: list[str]) -> UsageError:
    """The one error type of bad settings, listing each problem on its own line."""
    listed = "\n".join(f"  - {p}" for p in problems)
    return UsageError(f"invalid Kubernetes settings ({source}):\n{listed}")


def parse_settings(data: Any, source: str = "<settings>") -> K8sSettings:
    """Validate settings data; pydantic's errors become a :class:`UsageError` here and only here."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise settings_error(source, [f"(top level): expected a mapping, got {type(data).__name__}"])
    try:
        return K8sSettings.model_validate(data)
    except pydantic.ValidationError as exc:
        raise settings_error(source, list(dict.fromkeys(_problem(e) for e in exc.errors()))) from None


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply ``key.sub=value`` (value parsed as YAML: ``true``, ``3``, ``[a, b]``) to ``data`` in place."""
    key, sep, text = assignment.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise UsageError(f"--set {assignment!r}: expected key=value (nested keys with dots: autoscaling.enabled=true)")
    try:
        value = yaml.safe_load(text) if text else ""
    except yaml.YAMLError:
        value = text
    *parents, leaf = key.split(".")
    node = data
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise UsageError(f"--set {assignment!r}: {part} is not a mapping of settings")
        node = child
    node[leaf] = value


def load_settings(path: str | Path | None = None, overrides: list[str] | None = None,
                  base: dict[str, Any] | None = None) -> K8sSettings:
    """Settings from a YAML file (optional), then ``base`` entries, then ``key=value`` overrides, validated."""
    data: dict[str, Any] = {}
    source = "command line"
    if path is not None:
        source = str(path)
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise UsageError(f"settings file {path}: {exc.strerror or exc}") from None
        except yaml.YAMLError as exc:
            raise UsageError(f"settings file {path}: not valid YAML: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise settings_error(source, [f"(top level): expected a mapping, got {type(loaded).__name__}"])
        data.update(loaded or {})
    data.update({k: v for k, v in (base or {}).items() if v is not None})
    for assignment in overrides or []:
        apply_override(data, assignment)
    return parse_settings(data, source)
