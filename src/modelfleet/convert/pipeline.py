"""Build a stamped artifact from a model spec: convert → validate → optimize → parity → profile → publish.

The artifact is keyed by a build key (sha256 over the source bytes, the spec's build identity, the
sample/reference data and the converter versions). A second build with the same key changes
nothing; a different key for an existing ``name/version`` is refused unless forced, because a
published version is immutable (a source that changed between runs must get a new version).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from modelfleet import artifact
from modelfleet.convert import frontends, optimize, parity, validate
from modelfleet.errors import ArtifactError, ConversionError
from modelfleet.spec import Framework, ModelSpec
from modelfleet.stats.columns import build_profile
from modelfleet.stats.profile import PROFILE_FORMAT
from modelfleet.tensors import load_tensor_file

STAGES = ("read", "convert", "check", "optimize", "parity", "fp16", "profile", "publish")
Progress = Callable[[str], None]

_CONVERTER_PACKAGES: dict[Framework, tuple[str, ...]] = {
    Framework.SKLEARN: ("scikit-learn", "skl2onnx"),
    Framework.PYTORCH: ("torch",),
    Framework.ONNX: (),
    Framework.TENSORFLOW: ("tensorflow", "tf2onnx"),
}


@dataclass
class BuildResult:
    """What a build did (or, in check mode, would do)."""

    changed: bool
    path: Path
    outcome: str  # built | rebuilt | unchanged | would build | would rebuild
    reason: str
    build_key: str
    manifest: dict[str, Any] | None
    previous: dict[str, Any] | None
    timings: dict[str, float] = field(default_factory=dict)


def converter_versions(framework: Framework) -> dict[str, str]:
    versions = {}
    for package in ("modelfleet", "onnx", "onnxruntime", *_CONVERTER_PACKAGES[framework]):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "absent"
    return versions


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConversionError(f"{what} {path}: no such file") from None
    except IsADirectoryError:
        raise ConversionError(f"{what} {path}: is a directory, not a file") from None
    except OSError as exc:
        raise ConversionError(f"{what} {path}: cannot be read: {exc.strerror or exc}") from None


@dataclass(frozen=True)
class _Inputs:
    files: frontends.SourceFiles
    hashes: dict[str, str]


def _read_inputs(spec: ModelSpec) -> _Inputs:
    model = _read(spec.source.path, "source.path")
    factory = None
    hashes = {"source": artifact.sha256_bytes(model)}
    if spec.source.factory is not None:
        factory = _read(spec.source.path.parent / spec.source.factory.split(":")[0], "source.factory")
        hashes["factory"] = artifact.sha256_bytes(factory)
    if spec.convert.parity is not None:
        hashes["samples"] = artifact.sha256_bytes(_read(spec.convert.parity.samples, "convert.parity.samples"))
    if spec.reference is not None:
        hashes["reference"] = artifact.sha256_bytes(_read(spec.reference, "reference"))
    return _Inputs(frontends.SourceFiles(model=model, factory=factory), hashes)


def build_key(spec: ModelSpec, hashes: dict[str, str]) -> str:
    material = {"spec": spec.build_identity(), "inputs": hashes,
                "converters": converter_versions(spec.source.framework),
                "formats": {"manifest": artifact.MANIFEST_FORMAT, "profile": PROFILE_FORMAT}}
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def _describe_difference(previous: artifact.Manifest, spec: ModelSpec, hashes: dict[str, str]) -> str:
    changes = []
    if previous.source.get("sha256") != hashes["source"]:
        changes.append(f"source sha256 {str(previous.source.get('sha256'))[:12]}… → {hashes['source'][:12]}…")
    if previous.spec_sha256 != spec.spec_sha256:
        changes.append("conversion settings in the spec changed")
    if previous.converters != converter_versions(spec.source.framework):
        changes.append("converter versions changed")
    if previous.source.get("inputs", {}) != {k: v for k, v in hashes.items() if k != "source"}:
        changes.append("sample or reference data changed")
    return "; ".join(changes) or "build key changed"


class _Timer:
    def __init__(self, progress: Progress | None) -> None:
        self.timings: dict[str, float] = {}
        self._progress = progress

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if self._progress is not None:
            self._progress(name)
        started = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = round(time.perf_counter() - started, 4)


def build_artifact(spec: ModelSpec, output_root: Path, *, force: bool = False, check_only: bool = False,
                   progress: Progress | None = None) -> BuildResult:
    """Build ``output_root/<name>/<version>`` from ``spec`` unless an identical build is already there."""
    timer = _Timer(progress)
    target = artifact.artifact_dir(output_root, spec.name, spec.version)
    with timer.stage("read"):
        inputs = _read_inputs(spec)
        key = build_key(spec, inputs.hashes)
        previous = _existing_manifest(target, force)
    previous_dict = previous.model_dump(mode="json") if previous else None
    if previous is not None and previous.build_key == key:
        try:
            artifact.verify_artifact(target)
        except ArtifactError as exc:
            outcome, reason = "rebuilt", f"the existing artifact is damaged ({exc})"
        else:
            return BuildResult(False, target, "unchanged", "an identical build is in place", key,
                               previous_dict, previous_dict, timer.timings)
    elif previous is not None:
        reason = _describe_difference(previous, spec, inputs.hashes)
        if not force:
            raise ArtifactError(
                f"{target} already holds a different build of {spec.name} version {spec.version} ({reason}). "
                "A published version is immutable: raise `version` in the spec to publish this model, "
                "or force the rebuild.")
        outcome = "rebuilt"
    else:
        outcome, reason = "built", "no artifact at this version yet"
    if check_only:
        would = "would rebuild" if outcome == "rebuilt" else "would build"
        return BuildResult(True, target, would, reason, key, None, previous_dict, timer.timings)
    manifest = _build(spec, inputs, key, target, timer)
    return BuildResult(True, target, outcome, reason, key, manifest, previous_dict, timer.timings)


def _existing_manifest(target: Path, force: bool) -> artifact.Manifest | None:
    try:
        return artifact.read_manifest(target)
    except ArtifactError:
        if force:
            return None
        raise


def _samples(spec: ModelSpec) -> tuple[dict[str, np.ndarray], str]:
    if spec.convert.parity is not None:
        return load_tensor_file(spec.convert.parity.samples, spec.inputs, purpose="convert.parity.samples",
                                allow_nan=False), "convert.parity.samples"
    if spec.reference is not None:
        arrays = load_tensor_file(spec.reference, spec.inputs, purpose="reference", allow_nan=True)
        return {k: v[:64] for k, v in arrays.items()}, "reference"
    raise ConversionError("convert.parity.samples: needed to trace and check the model (or give `reference`)")


def _build(spec: ModelSpec, inputs: _Inputs, key: str, target: Path, timer: _Timer) -> dict[str, Any]:
    with timer.stage("convert"):
        samples, samples_from = _samples(spec)
        exported = frontends.export(spec, inputs.files, samples)
    with timer.stage("check"):
        validate.check_graph(exported.model)
        graph_inputs, graph_outputs = validate.check_signature(spec, exported.model)
    level = optimize.offline_level(spec)
    with timer.stage("optimize"):
        model = optimize.optimize(exported.model, level)
    with timer.stage("parity"):
        expected = exported.predict(samples)
        output_names, actual = optimize.run(model, samples)
        rtol, atol = ((spec.convert.parity.rtol, spec.convert.parity.atol) if spec.convert.parity
                      else (1e-4, 1e-5))
        parity_report: dict[str, Any] = {
            "samples": int(next(iter(samples.values())).shape[0]), "from": samples_from,
            "outputs": parity.compare_outputs(spec, output_names, expected, actual, rtol, atol)}
    fp16_model = None
    if spec.convert.fp16:
        with timer.stage("fp16"):
            fp16_model = optimize.to_fp16(model)
            fp16_names, fp16_actual = optimize.run(fp16_model, samples)
            f_rtol, f_atol = ((spec.convert.parity.fp16_rtol, spec.convert.parity.fp16_atol)
                              if spec.convert.parity else (1e-2, 1e-3))
            parity_report["fp16"] = parity.compare_outputs(spec, fp16_names, expected, fp16_actual, f_rtol, f_atol)
    with timer.stage("profile"):
        if spec.reference is not None:
            reference = load_tensor_file(spec.reference, spec.inputs, purpose="reference", allow_nan=True)
        else:
            reference = samples
        ref_names, ref_outputs = optimize.run(model, reference)
        profile = build_profile(spec, reference, ref_names, ref_outputs)
    with timer.stage("publish"):
        created = datetime.now(UTC).isoformat(timespec="seconds")
        stamp = {
            "modelfleet.name": spec.name,
            "modelfleet.version": spec.version,
            "modelfleet.build_key": key,
            "modelfleet.source_sha256": inputs.hashes["source"],
            "modelfleet.framework": spec.source.framework.value,
            "modelfleet.framework_version": exported.framework_version,
            "modelfleet.opset": str(_opset(model)),
            "modelfleet.spec_sha256": spec.spec_sha256,
            "modelfleet.created": created,
        }
        with artifact.staging_dir(target) as staging:
            files = {artifact.MODEL_FILE: _stamped(model, stamp),
                     artifact.PROFILE_FILE: (profile.model_dump_json() + "\n").encode()}
            if fp16_model is not None:
                files[artifact.FP16_MODEL_FILE] = _stamped(fp16_model, stamp | {"modelfleet.precision": "fp16"})
            for name, data in files.items():
                (staging / name).write_bytes(data)
            manifest = artifact.Manifest(
                name=spec.name, version=spec.version, build_key=key, spec_sha256=spec.spec_sha256,
                spec=spec.build_identity(),
                source={"framework": spec.source.framework.value, "path": str(spec.source.path),
                        "sha256": inputs.hashes["source"], "framework_version": exported.framework_version,
                        "inputs": {k: v for k, v in inputs.hashes.items() if k != "source"}},
                converters=converter_versions(spec.source.framework), created=created,
                files={name: artifact.sha256_file(staging / name) for name in sorted(files)},
                inputs=graph_inputs, outputs=graph_outputs,
                optimization={"requested": spec.convert.optimize, "offline": level,
                              "online": spec.convert.optimize, "opset": _opset(model),
                              "fp16": spec.convert.fp16},
                parity=parity_report,
            )
            artifact.write_json(staging / artifact.MANIFEST, manifest.model_dump(mode="json"))
            _check_source_unchanged(spec, inputs)
            artifact.publish(staging, target)
    return manifest.model_dump(mode="json")


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _stamped(model: onnx.ModelProto, stamp: dict[str, str]) -> bytes:
    stamped = onnx.ModelProto()
    stamped.CopyFrom(model)
    kept = [p for p in stamped.metadata_props if not p.key.startswith("modelfleet.")]
    del stamped.metadata_props[:]
    stamped.metadata_props.extend(kept)
    for key_name, value in sorted(stamp.items()):
        stamped.metadata_props.add(key=key_name, value=value)
    return bytes(stamped.SerializeToString())


def _check_source_unchanged(spec: ModelSpec, inputs: _Inputs) -> None:
    """Refuse to publish when the source file changed while it was being converted."""
    try:
        now = artifact.sha256_file(spec.source.path)
    except OSError as exc:
        raise ConversionError(f"source.path {spec.source.path}: vanished during conversion: {exc}") from None
    if now != inputs.hashes["source"]:
        raise ConversionError(f"source.path {spec.source.path}: changed during conversion (sha256 "
                              f"{inputs.hashes['source'][:12]}… → {now[:12]}…); nothing was published, run again")
