"""Settings of ``pulumi/docker``: one model (stable and optional canary) on one Docker host.

Keys are the camelCase names of Pulumi.yaml's ``config:`` block; relative paths are resolved against the
program's directory (Pulumi runs it there).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from modelfleet.spec import DNS_LABEL
from modelfleet.stackconfig import StackSettings

VERSION = r"^[1-9][0-9]{0,8}$"
GPUS = re.compile(r"^(all|device=[A-Za-z0-9-]+(,[A-Za-z0-9-]+)*)$")
# Inside the host's shared network namespace (see program.py): what the containers listen on.
BLUE_PORT, GREEN_PORT, ROUTER_PORT, ROUTER_METRICS_PORT, DRIFT_PORT = 8101, 8102, 8000, 8404, 9108

Port = int


class DockerHostSettings(StackSettings):
    """What the program needs; every field is one stack configuration key."""

    model: str = Field(pattern=DNS_LABEL, description="model name (the artifact's, DNS-safe)")
    stable_version: str = Field(pattern=VERSION, description="version served in the blue slot")
    canary_version: str | None = Field(None, pattern=VERSION, description="version in the green slot (optional)")
    canary_weight: int = Field(0, ge=0, le=100, description="router weight of the canary, 0-100")
    artifacts_dir: Path = Field(Path("../../.cache/artifacts"), description="artifact root (<dir>/<model>/<version>)")
    wheelhouse: Path = Field(Path("../../.cache/wheelhouse"), description="wheels of the runtime (`make wheelhouse`)")
    dockerfile: Path = Field(Path("../../docker/Dockerfile"))
    context_dir: Path = Field(Path("../../.cache/docker-context"), description="where build contexts are staged")
    base_image: str = Field("debian:12-slim", min_length=1)
    flavour: Literal["cpu", "cuda"] = "cpu"
    gpus: str = Field("", description="'' (none), 'all' or 'device=0,1' (docker run --gpus)")
    image_repository: str = Field("", description="image name without tag (default modelfleet/<model>)")
    router_image: str = Field("haproxy:2.6", min_length=1)
    bind_address: str = Field("0.0.0.0", min_length=1, description="host address the ports are published on")
    router_port: Port = Field(ROUTER_PORT, ge=1, le=65535)
    router_metrics_port: Port = Field(ROUTER_METRICS_PORT, ge=1, le=65535)
    drift_exporter_port: Port = Field(DRIFT_PORT, ge=1, le=65535)
    server_ports: bool = Field(True, description="also publish the slots' ports (8101, 8102) for Prometheus")
    name_prefix: str = Field("modelfleet", pattern=DNS_LABEL, description="prefix of container and volume names")
    spool_max_bytes: int = Field(256 << 20, gt=0)

    @field_validator("canary_version", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _consistent(self) -> DockerHostSettings:
        problems = []
        if self.canary_version is not None and self.canary_version == self.stable_version:
            problems.append(f"canaryVersion: equals stableVersion ({self.stable_version}); a canary is another "
                            "version (unset canaryVersion to serve the stable one alone)")
        if self.canary_version is None and self.canary_weight:
            problems.append(f"canaryWeight: {self.canary_weight} with no canaryVersion; set canaryVersion or "
                            "the weight to 0")
        if self.gpus and not GPUS.match(self.gpus):
            problems.append(f"gpus: {self.gpus!r} is not 'all' or 'device=<id>[,<id>...]'")
        if self.gpus and self.flavour == "cpu":
            problems.append("gpus: GPUs requested for the cpu flavour; set flavour to cuda (or gpus to '')")
        if self.flavour == "cuda" and not self.gpus:
            problems.append("flavour: cuda needs GPUs; set gpus to 'all' or 'device=<id>'")
        published = {"routerPort": self.router_port, "routerMetricsPort": self.router_metrics_port,
                     "driftExporterPort": self.drift_exporter_port}
        if self.server_ports:
            published |= {"serverPorts (blue)": BLUE_PORT, "serverPorts (green)": GREEN_PORT}
        seen: dict[int, str] = {}
        for key, port in published.items():
            if port in seen:
                problems.append(f"{key}: port {port} is also {seen[port]}")
            seen.setdefault(port, key)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def repository(self) -> str:
        return self.image_repository or f"modelfleet/{self.model}"

    def resolved(self, base: Path) -> DockerHostSettings:
        """The same settings with relative paths made absolute against ``base``."""
        def absolute(path: Path) -> Path:
            return path if path.is_absolute() else (base / path).resolve()

        return self.model_copy(update={name: absolute(getattr(self, name))
                                       for name in ("artifacts_dir", "wheelhouse", "dockerfile", "context_dir")})
