"""Stage the model-server image's build context: the Dockerfile, the wheelhouse and one artifact.

The context holds only what the image needs (no repository, no other artifacts), so builds send little to
the engine and the runtime layer is reused for every model version: only the artifact layer differs.
Files are hard-linked where possible (same filesystem), copied otherwise.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from modelfleet.artifact import MANIFEST, verify_artifact
from modelfleet.errors import ArtifactError

REPO_ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = REPO_ROOT / "docker" / "Dockerfile"
FLAVOURS = ("cpu", "cuda")


@dataclass(frozen=True)
class BuildContext:
    """A staged context and the build arguments that go with it."""

    path: Path
    dockerfile: Path
    model: str
    version: str
    build_key: str

    def build_args(self, base_image: str, flavour: str) -> dict[str, str]:
        if flavour not in FLAVOURS:
            raise ValueError(f"flavour must be one of {', '.join(FLAVOURS)}, not {flavour!r}")
        return {"BASE_IMAGE": base_image, "FLAVOUR": flavour, "MODEL_NAME": self.model,
                "MODEL_VERSION": self.version}


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _check_wheelhouse(wheelhouse: Path) -> list[Path]:
    if not wheelhouse.is_dir():
        raise ArtifactError(f"{wheelhouse}: no wheelhouse there; build it with `make wheelhouse`")
    wheels = sorted(wheelhouse.glob("*.whl"))
    own = [w for w in wheels if w.name.startswith("modelfleet-")]
    if len(own) != 1:
        raise ArtifactError(f"{wheelhouse}: holds {len(own)} modelfleet wheels, needs exactly one "
                            "(rebuild it with `make wheelhouse`)")
    return wheels


def stage_context(artifact: Path, wheelhouse: Path, dest: Path, *, dockerfile: Path = DOCKERFILE) -> BuildContext:
    """Write ``dest`` (replaced if it exists) from a verified artifact and a wheelhouse of wheels."""
    manifest = verify_artifact(artifact)
    wheels = _check_wheelhouse(wheelhouse)
    if not dockerfile.is_file():
        raise ArtifactError(f"{dockerfile}: no Dockerfile there")
    shutil.rmtree(dest, ignore_errors=True)
    (dest / "wheelhouse").mkdir(parents=True)
    (dest / "artifact").mkdir()
    shutil.copy2(dockerfile, dest / "Dockerfile")
    for wheel in wheels:
        _link_or_copy(wheel, dest / "wheelhouse" / wheel.name)
    for name in [MANIFEST, *sorted(manifest.files)]:
        _link_or_copy(artifact / name, dest / "artifact" / name)
    return BuildContext(dest, dest / "Dockerfile", manifest.name, manifest.version, manifest.build_key)
