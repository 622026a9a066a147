"""Small stand-ins for the Pulumi program tests: an artifact directory with a valid manifest (its model
bytes are not a real ONNX graph: the programs only stage and checksum them) and a wheelhouse of names."""

from __future__ import annotations

import hashlib
from pathlib import Path

from modelfleet.artifact import MANIFEST, MODEL_FILE, PROFILE_FILE, Manifest


def fake_artifact(root: Path, name: str, version: str) -> Path:
    directory = root / name / version
    directory.mkdir(parents=True)
    files = {MODEL_FILE: f"onnx bytes of {name} v{version}".encode(), PROFILE_FILE: b"{}"}
    for file, data in files.items():
        (directory / file).write_bytes(data)
    manifest = Manifest(name=name, version=version, build_key=f"key-{version}", spec_sha256="0" * 64, spec={},
                        source={}, converters={}, created="2026-01-01T00:00:00Z",
                        files={f: hashlib.sha256(d).hexdigest() for f, d in files.items()},
                        inputs=[], outputs=[], optimization={}, parity={})
    (directory / MANIFEST).write_text(manifest.model_dump_json())
    return directory


def fake_wheelhouse(root: Path) -> Path:
    root.mkdir(parents=True)
    for wheel in ("modelfleet-0.1.0-py3-none-any.whl", "numpy-2.0.0-cp311-cp311-manylinux_2_28_x86_64.whl"):
        (root / wheel).write_bytes(b"wheel")
    return root
