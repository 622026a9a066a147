"""Which model versions a host serves: spool directories matched with verified artifacts.

A version is watched when ``<spool_dir>/<model>/<version>/`` exists (the server creates it when it
starts spooling) and ``<artifacts_dir>/<model>/<version>/`` is an artifact whose checksums match
its manifest. A version whose artifact is missing or broken is reported (metric and log), not
fatal; it is retried when its files change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from modelfleet.artifact import PROFILE_FILE, artifact_spec, verify_artifact
from modelfleet.errors import ArtifactError
from modelfleet.spec import DNS_LABEL, ModelSpec
from modelfleet.stats.profile import DataProfile

VersionKey = tuple[str, str]
_MODEL = re.compile(DNS_LABEL)
_VERSION = re.compile(r"^[1-9][0-9]{0,8}$")


@dataclass(frozen=True)
class VersionInfo:
    """Everything the exporter needs about one model version."""

    model: str
    version: str
    spool: Path
    artifact: Path
    spec: ModelSpec
    profile: DataProfile
    build_key: str
    output_names: tuple[str, ...]

    @property
    def key(self) -> VersionKey:
        return (self.model, self.version)


def scan_spool(spool_root: Path) -> list[VersionKey]:
    """``(model, version)`` of every version directory under the spool root."""
    found: list[VersionKey] = []
    try:
        models = sorted(p.name for p in spool_root.iterdir())
    except OSError:
        return found
    for model in models:
        if not _MODEL.match(model) or not (spool_root / model).is_dir():
            continue
        try:
            versions = sorted(p.name for p in (spool_root / model).iterdir())
        except OSError:
            continue
        found.extend((model, v) for v in versions if _VERSION.match(v) and (spool_root / model / v).is_dir())
    return found


def artifact_stamp(artifacts_root: Path, key: VersionKey) -> tuple[tuple[str, int, int], ...]:
    """Names, sizes and change times of a version's artifact files: a broken artifact is retried when it changes."""
    directory = artifacts_root / key[0] / key[1]
    try:
        return tuple(sorted((p.name, (s := p.stat()).st_size, s.st_ctime_ns) for p in directory.iterdir()))
    except OSError:
        return ()


def load_version(spool_root: Path, artifacts_root: Path, key: VersionKey) -> VersionInfo:
    """Verify a version's artifact and read its spec and reference profile (:class:`ArtifactError` if not)."""
    model, version = key
    directory = artifacts_root / model / version
    if not directory.is_dir():
        raise ArtifactError(f"{directory}: no artifact for {model} version {version}")
    manifest = verify_artifact(directory)
    if (manifest.name, manifest.version) != key:
        raise ArtifactError(f"{directory}: manifest is for {manifest.name} version {manifest.version}")
    spec = artifact_spec(directory, manifest)
    try:
        profile = DataProfile.model_validate_json((directory / PROFILE_FILE).read_bytes())
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{directory / PROFILE_FILE}: unreadable reference profile: {exc}") from None
    if not spec.features and not profile.predictions:
        raise ArtifactError(f"{directory}: the spec declares no features and the profile no predictions")
    output_names = tuple(str(o["name"]) for o in manifest.outputs)
    return VersionInfo(model, version, spool_root / model / version, directory, spec, profile, manifest.build_key,
                       output_names)
