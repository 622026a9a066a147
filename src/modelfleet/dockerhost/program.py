"""The resources of ``pulumi/docker``: one model's images and containers on one Docker host.

The containers share one network namespace, held by a small ``net`` container that publishes the ports:
HAProxy routes to the slots on 127.0.0.1 exactly as on a bare-metal host (the router role's template is
reused unchanged), and a new router configuration (a canary weight) replaces the router alone.

- ``<prefix>-<model>-net``     holds the namespace; publishes router, router metrics, drift exporter, slots
- ``<prefix>-<model>-blue``    model server of ``stableVersion`` (:8101), image with that artifact inside
- ``<prefix>-<model>-green``   model server of ``canaryVersion`` (:8102), when one is set
- ``<prefix>-<model>-router``  HAProxy (:8000, metrics :8404), weights 100 - canaryWeight / canaryWeight
- ``<prefix>-<model>-drift``   drift exporter (:9108), reads the slots' payload spool (a shared volume)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_docker as docker

from modelfleet.artifact import MANIFEST, read_manifest, sha256_file
from modelfleet.dockerhost.context import stage_context
from modelfleet.dockerhost.router import CONFIG_PATH, render_haproxy
from modelfleet.dockerhost.settings import (
    BLUE_PORT,
    DRIFT_PORT,
    GREEN_PORT,
    ROUTER_METRICS_PORT,
    ROUTER_PORT,
    DockerHostSettings,
)
from modelfleet.errors import ArtifactError

DATA = "/var/lib/modelfleet"
SPOOL, MODELS, DRIFT_STATE = f"{DATA}/spool", f"{DATA}/models", f"{DATA}/drift"


@dataclass(frozen=True)
class Slot:
    name: str  # blue | green
    version: str
    port: int


def _image(name: str, settings: DockerHostSettings, version: str, parent: pulumi.Resource) -> docker.Image:
    artifact = settings.artifacts_dir / settings.model / version
    context = stage_context(artifact, settings.wheelhouse, settings.context_dir / f"{settings.model}-{version}",
                            dockerfile=settings.dockerfile)
    return docker.Image(
        name, image_name=f"{settings.repository}:{version}", skip_push=True,
        build=docker.DockerBuildArgs(context=str(context.path), dockerfile=str(context.dockerfile),
                                     args=context.build_args(settings.base_image, settings.flavour)),
        opts=pulumi.ResourceOptions(parent=parent))


def _artifact_uploads(settings: DockerHostSettings, version: str) -> list[docker.ContainerUploadArgs]:
    """The files of a version's artifact, for a container whose image does not hold it."""
    directory = settings.artifacts_dir / settings.model / version
    manifest = read_manifest(directory)
    if manifest is None:
        raise ArtifactError(f"{directory}: no {MANIFEST}; convert the model first (`modelfleet convert`)")
    hashes = {MANIFEST: sha256_file(directory / MANIFEST), **manifest.files}
    return [docker.ContainerUploadArgs(file=f"{MODELS}/{settings.model}/{version}/{name}",
                                       source=str(directory / name), source_hash=digest, permissions="0644")
            for name, digest in sorted(hashes.items())]


class DockerModelHost(pulumi.ComponentResource):
    """One model (stable + optional canary) with router and drift exporter on one Docker host."""

    def __init__(self, name: str, settings: DockerHostSettings, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("modelfleet:docker:ModelHost", name, None, opts)
        s = settings
        base = f"{s.name_prefix}-{s.model}"
        child = pulumi.ResourceOptions(parent=self)
        slots = [Slot("blue", s.stable_version, BLUE_PORT)]
        if s.canary_version is not None:
            slots.append(Slot("green", s.canary_version, GREEN_PORT))
        self.images = {slot.version: _image(f"{name}-v{slot.version}", s, slot.version, self) for slot in slots}
        stable_image = self.images[s.stable_version]

        self.spool = docker.Volume(f"{name}-spool", name=f"{base}-spool", opts=child)
        self.drift_state = docker.Volume(f"{name}-drift-state", name=f"{base}-drift", opts=child)

        published = [(ROUTER_PORT, s.router_port), (ROUTER_METRICS_PORT, s.router_metrics_port),
                     (DRIFT_PORT, s.drift_exporter_port)]
        if s.server_ports:
            published += [(BLUE_PORT, BLUE_PORT), (GREEN_PORT, GREEN_PORT)]
        self.net = docker.Container(
            f"{name}-net", name=f"{base}-net", image=s.router_image, entrypoints=["sleep", "infinity"], init=True,
            restart="unless-stopped",
            ports=[docker.ContainerPortArgs(internal=i, external=e, ip=s.bind_address) for i, e in published],
            opts=child)
        network_mode = self.net.id.apply(lambda cid: f"container:{cid}")

        self.slots: dict[str, docker.Container] = {}
        for slot in slots:
            self.slots[slot.name] = docker.Container(
                f"{name}-{slot.name}", name=f"{base}-{slot.name}", image=self.images[slot.version].image_name,
                network_mode=network_mode, restart="unless-stopped", gpus=s.gpus or None,
                command=["--host", "0.0.0.0", "--port", str(slot.port), "--spool-dir", SPOOL,
                         "--spool-max-bytes", str(s.spool_max_bytes), "--shutdown-delay", "2",
                         "--drain-timeout", "30"],
                envs=[f"MODELFLEET_HEALTH_URL=http://127.0.0.1:{slot.port}/v2/health/ready"],
                volumes=[docker.ContainerVolumeArgs(volume_name=self.spool.name, container_path=SPOOL)],
                labels=[docker.ContainerLabelArgs(label=k, value=v) for k, v in
                        {"io.modelfleet.model": s.model, "io.modelfleet.version": slot.version,
                         "io.modelfleet.slot": slot.name}.items()],
                stop_timeout=45, opts=child)

        haproxy_cfg = render_haproxy(s.model, BLUE_PORT, GREEN_PORT, s.canary_weight,
                                     port=ROUTER_PORT, metrics_port=ROUTER_METRICS_PORT)
        self.router = docker.Container(
            f"{name}-router", name=f"{base}-router", image=s.router_image, network_mode=network_mode,
            restart="unless-stopped", uploads=[docker.ContainerUploadArgs(file=CONFIG_PATH, content=haproxy_cfg)],
            opts=child)

        # The exporter runs from the stable image (its artifact inside); other versions' artifacts are uploaded.
        uploads = [u for slot in slots if slot.version != s.stable_version
                   for u in _artifact_uploads(s, slot.version)]
        self.drift = docker.Container(
            f"{name}-drift", name=f"{base}-drift", image=stable_image.image_name, network_mode=network_mode,
            restart="unless-stopped", entrypoints=["modelfleet", "drift-exporter"],
            command=["--spool-dir", SPOOL, "--artifacts-dir", MODELS, "--state-dir", DRIFT_STATE,
                     "--host", "0.0.0.0", "--port", str(DRIFT_PORT)],
            envs=[f"MODELFLEET_HEALTH_URL=http://127.0.0.1:{DRIFT_PORT}/metrics"],
            volumes=[docker.ContainerVolumeArgs(volume_name=self.spool.name, container_path=SPOOL),
                     docker.ContainerVolumeArgs(volume_name=self.drift_state.name, container_path=DRIFT_STATE)],
            uploads=uploads, opts=child)

        self.endpoint = pulumi.Output.concat("http://", s.bind_address, ":", str(s.router_port))
        self.register_outputs({"endpoint": self.endpoint, "router_config": haproxy_cfg,
                               "images": {v: i.image_name for v, i in self.images.items()}})


def build(settings: DockerHostSettings, program_dir: Path) -> DockerModelHost:
    """What ``pulumi/docker/__main__.py`` calls: the component, and its stack outputs exported."""
    host = DockerModelHost(settings.model, settings.resolved(program_dir))
    pulumi.export("endpoint", host.endpoint)
    pulumi.export("images", {v: i.image_name for v, i in host.images.items()})
    pulumi.export("containers", {k: c.name for k, c in
                                 {**host.slots, "router": host.router, "drift": host.drift, "net": host.net}.items()})
    return host
