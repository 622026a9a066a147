"""Artifact directories: ``model.onnx`` + ``profile.json`` + ``manifest.json``, checksummed and atomic.

An artifact lives at ``<root>/<name>/<version>/``. Its manifest lists the sha256 of every other file;
nothing is served or profiled whose checksums do not match (:func:`verify_artifact`). Artifacts are
published atomically: built in a temporary sibling directory, then renamed into place, so a crash or
an error never leaves a half-written artifact behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from modelfleet.errors import ArtifactError, SpecError
from modelfleet.fsutil import fsync_directory
from modelfleet.spec import ModelSpec, parse_spec

MANIFEST = "manifest.json"
MODEL_FILE = "model.onnx"
FP16_MODEL_FILE = "model.fp16.onnx"
PROFILE_FILE = "profile.json"
MANIFEST_FORMAT = 1
_CHUNK = 1 << 20


class Manifest(BaseModel):
    """What ``manifest.json`` records about an artifact."""

    model_config = ConfigDict(extra="forbid")

    format: int = MANIFEST_FORMAT
    name: str
    version: str
    build_key: str = Field(description="sha256 of source bytes, spec identity and converter versions")
    spec_sha256: str
    spec: dict[str, Any] = Field(description="the spec's build identity: inputs, outputs, features, task, drift")
    source: dict[str, Any]
    converters: dict[str, str]
    created: str
    files: dict[str, str] = Field(description="file name -> sha256")
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    optimization: dict[str, Any]
    parity: dict[str, Any]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def artifact_dir(root: Path, name: str, version: str) -> Path:
    return root / name / version


def read_manifest(directory: Path) -> Manifest | None:
    """The manifest of an artifact directory, ``None`` if the directory has none."""
    path = directory / MANIFEST
    if not path.exists():
        return None
    try:
        return Manifest.model_validate_json(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: unreadable manifest: {exc}") from None


def verify_artifact(directory: Path) -> Manifest:
    """The manifest of ``directory`` after checking every listed file against its sha256."""
    manifest = read_manifest(directory)
    if manifest is None:
        raise ArtifactError(f"{directory}: no {MANIFEST}; not a modelfleet artifact")
    for name, expected in sorted(manifest.files.items()):
        path = directory / name
        if not path.is_file():
            raise ArtifactError(f"{path}: listed in the manifest but missing")
        actual = sha256_file(path)
        if actual != expected:
            raise ArtifactError(f"{path}: sha256 {actual} does not match the manifest's {expected}")
    return manifest


def artifact_spec(directory: Path, manifest: Manifest) -> ModelSpec:
    """The spec an artifact was built from (its build identity: inputs, outputs, features, task)."""
    try:
        return parse_spec(manifest.spec, directory, f"{directory / MANIFEST} (spec)")
    except SpecError as exc:
        raise ArtifactError(str(exc)) from None


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


@contextlib.contextmanager
def staging_dir(target: Path) -> Iterator[Path]:
    """A temporary directory beside ``target`` that is removed unless published with :func:`publish`."""
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent))
    except OSError as exc:
        raise ArtifactError(f"cannot write under {parent}: {exc.strerror or exc}") from None
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def publish(staging: Path, target: Path) -> None:
    """Atomically move a fully written staging directory to ``target`` (replacing an old one)."""
    for entry in staging.iterdir():
        with entry.open("rb") as handle:
            os.fsync(handle.fileno())
    staging.chmod(0o755)
    if target.exists():
        retired = target.with_name(f".{target.name}.old")
        shutil.rmtree(retired, ignore_errors=True)
        target.rename(retired)
        staging.rename(target)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        staging.rename(target)
    fsync_directory(target.parent)
