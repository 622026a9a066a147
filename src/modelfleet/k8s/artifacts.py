"""The init container that puts a version's artifact in place and verifies its checksums before serving.

Nothing is served whose checksum does not match: the init container fails (and the pod never starts) when
the download's sha256 (``url``) or the manifest's sha256 (``pvc``) differs from the one in the settings, or
when any file differs from the manifest (``modelfleet verify``, every source).
"""

from __future__ import annotations

from typing import Any

from modelfleet.k8s.naming import Obj, Release
from modelfleet.k8s.settings import K8sSettings

MODELS_DIR = "/models"
MODELS_VOLUME = "models"

# Download with the image's own Python (no curl needed), check the sha256, unpack, check every file.
_URL_SCRIPT = """set -eu
archive="$MODELS_DIR/.$MODEL_NAME-$MODEL_VERSION.tar.gz"
python3 -c 'import shutil, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=60) as r, open(sys.argv[2], "wb") as f:
    shutil.copyfileobj(r, f)' "$ARTIFACT_URL" "$archive"
echo "$ARTIFACT_SHA256  $archive" | sha256sum -c -
mkdir -p "$ARTIFACT_DIR"
tar -xzf "$archive" -C "$ARTIFACT_DIR"
rm -f "$archive"
modelfleet verify "$ARTIFACT_DIR"
"""
_PVC_SCRIPT = """set -eu
echo "$ARTIFACT_SHA256  $ARTIFACT_DIR/manifest.json" | sha256sum -c -
modelfleet verify "$ARTIFACT_DIR"
"""
_IMAGE_SCRIPT = """set -eu
modelfleet verify "$ARTIFACT_DIR"
"""


def models_root(settings: K8sSettings) -> str:
    """Where ``<name>/<version>/`` directories are, inside the pod's containers."""
    return settings.artifact.path if settings.artifact.source == "image" else MODELS_DIR


def artifact_dir(release: Release, settings: K8sSettings) -> str:
    return f"{models_root(settings)}/{release.model}/{release.version}"


def models_volume(settings: K8sSettings) -> Obj | None:
    """The volume holding the artifacts (``None`` when they are in the image)."""
    if settings.artifact.source == "url":
        return {"name": MODELS_VOLUME, "emptyDir": {}}
    if settings.artifact.source == "pvc":
        claim = {"claimName": settings.artifact.claim, "readOnly": True}
        return {"name": MODELS_VOLUME, "persistentVolumeClaim": claim}
    return None


def models_mount(settings: K8sSettings, *, writable: bool = False) -> list[Obj]:
    if settings.artifact.source == "image":
        return []
    read_only = not (writable and settings.artifact.source == "url")
    return [{"name": MODELS_VOLUME, "mountPath": MODELS_DIR, "readOnly": read_only}]


def init_container(release: Release, settings: K8sSettings, security: Obj) -> Obj:
    """The ``fetch-artifact`` init container of one version (checksum from ``settings.artifact.sha256``)."""
    source = settings.artifact
    env: list[dict[str, Any]] = [
        {"name": "MODELS_DIR", "value": models_root(settings)},
        {"name": "MODEL_NAME", "value": release.model},
        {"name": "MODEL_VERSION", "value": release.version},
        {"name": "ARTIFACT_DIR", "value": artifact_dir(release, settings)},
    ]
    if source.source in ("url", "pvc"):
        env.append({"name": "ARTIFACT_SHA256", "value": source.sha256[release.version]})
    if source.source == "url":
        assert source.url is not None  # checked by ArtifactSource
        env.append({"name": "ARTIFACT_URL",
                    "value": source.url.replace("{name}", release.model).replace("{version}", release.version)})
    script = {"url": _URL_SCRIPT, "pvc": _PVC_SCRIPT, "image": _IMAGE_SCRIPT}[source.source]
    container: Obj = {"name": "fetch-artifact", "image": settings.image, "imagePullPolicy": settings.image_pull_policy,
                      "command": ["/bin/sh", "-c", script], "env": env,
                      "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
                      "securityContext": security}
    mounts = models_mount(settings, writable=True)
    if mounts:
        container["volumeMounts"] = mounts
    return container
