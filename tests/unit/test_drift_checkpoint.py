"""The version pipeline and the checkpoint: malformed records by reason, exact resume, atomic writes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from modelfleet.drift import checkpoint as checkpoint_module
from modelfleet.drift.checkpoint import CheckpointError, load_checkpoint, save_checkpoint, version_arrays
from modelfleet.drift.discovery import VersionInfo
from modelfleet.drift.joiner import LabelJoiner
from modelfleet.drift.pipeline import VersionPipeline
from modelfleet.spec import parse_spec
from modelfleet.spool.record import Tensor, encode, segment_name
from modelfleet.stats.columns import build_profile

OUTPUTS = ("label", "probabilities")
WINDOWS = {"1m": 60.0, "10m": 600.0}


def _info(tmp_path: Path, build_key: str = "k1") -> VersionInfo:
    spec = parse_spec({
        "name": "m", "version": "1", "source": {"framework": "onnx", "path": "model.onnx"},
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}],
        "outputs": [{"name": "label", "datatype": "INT64", "shape": [-1]},
                    {"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]}],
        "features": [{"name": "a", "type": "numeric"}, {"name": "c", "type": "categorical"}],
        "task": {"type": "classification", "labels": [0, 1], "output": "label", "probabilities": "probabilities"},
    }, tmp_path)
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.normal(size=500), rng.integers(0, 3, 500)]).astype(np.float32)
    probabilities = np.column_stack([rng.random(500), np.zeros(500)]).astype(np.float32)
    probabilities[:, 1] = 1 - probabilities[:, 0]
    labels = probabilities.argmax(axis=1).astype(np.int64)
    profile = build_profile(spec, {"x": x}, list(OUTPUTS), [labels, probabilities])
    return VersionInfo("m", "1", tmp_path / "spool" / "m" / "1", tmp_path, spec, profile, build_key, OUTPUTS)


def _record(request_id: str, rows: int, ts: float, model: str = "m") -> bytes:
    x = np.column_stack([np.linspace(-1, 1, rows), np.arange(rows) % 3]).astype(np.float32)
    probabilities = np.tile(np.asarray([[0.3, 0.7]], dtype=np.float32), (rows, 1))
    return encode(request_id, ts, model, "1", {"x": Tensor("FP32", x)},
                  {"label": Tensor("INT64", np.ones(rows, dtype=np.int64)),
                   "probabilities": Tensor("FP32", probabilities)})


def _append(info: VersionInfo, lines: list[bytes], sequence: int = 1) -> None:
    info.spool.mkdir(parents=True, exist_ok=True)
    with (info.spool / segment_name(sequence)).open("ab") as handle:
        handle.write(b"".join(lines))


def _joiner(pipeline: VersionPipeline) -> LabelJoiner:
    return LabelJoiner(lambda _v, raw: pipeline.validate_label(raw))


def test_pipeline_counts_good_records_and_skips_bad_ones_by_reason(tmp_path: Path) -> None:
    info = _info(tmp_path)
    now = time.time()
    good = _record("r1", 3, now)
    bad_rows = orjson.loads(good)
    bad_rows["outputs"]["label"] = {"datatype": "INT64", "shape": [2], "data": [1, 1]}
    strings = orjson.loads(good)
    strings["inputs"]["x"] = {"datatype": "BYTES", "shape": [3, 2], "data": [["a", "b"]] * 3}
    no_x = orjson.loads(good)
    no_x["inputs"] = {"y": no_x["inputs"]["x"]}
    _append(info, [good, b"not json\n", b'{"v": 2}\n', _record("r2", 1, now, model="other"),
                   _record("r3", 1, now + 3600), orjson.dumps(bad_rows) + b"\n", orjson.dumps(strings) + b"\n",
                   orjson.dumps(no_x) + b"\n", _record("r4", 2, now)])
    pipeline = VersionPipeline(info, 1.0, WINDOWS)
    joiner = _joiner(pipeline)
    assert pipeline.step(joiner, now) == 9
    counters = pipeline.counters
    assert (counters.records, counters.rows) == (2, 5)
    assert counters.malformed == {"json": 1, "version": 1, "wrong_version": 1, "timestamp": 1, "rows": 1,
                                  "type_mismatch": 1, "schema_mismatch": 1}
    assert pipeline.features.rows("1m", now) == 5
    assert sorted(joiner.predictions) == ["r1#0", "r1#1", "r1#2", "r4#0", "r4#1"]


def test_checkpoint_resumes_exactly_where_the_windows_end(tmp_path: Path) -> None:
    info = _info(tmp_path)
    now = time.time()
    _append(info, [_record(f"a{i}", 2, now) for i in range(5)])
    pipeline = VersionPipeline(info, 1.0, WINDOWS)
    pipeline.step(_joiner(pipeline), now)
    meta, arrays = pipeline.state()
    path = tmp_path / "state" / "checkpoint.npz"
    save_checkpoint(path, {"versions": {"m/1": meta}}, {f"v/m/1/{k}": v for k, v in arrays.items()})
    _append(info, [_record(f"b{i}", 1, now) for i in range(3)])
    pipeline.step(_joiner(pipeline), now)  # read after the checkpoint, then "crash"

    loaded_meta, loaded_arrays = load_checkpoint(path) or ({}, {})
    restored = VersionPipeline(info, 1.0, WINDOWS, loaded_meta["versions"]["m/1"],
                               version_arrays(loaded_arrays, "m", "1"))
    assert restored.features.rows("10m", now) == 10 and restored.counters.records == 5
    restored.step(_joiner(restored), now)
    assert restored.features.rows("10m", now) == 13 == pipeline.features.rows("10m", now)
    assert restored.counters.records == 8
    expected = pipeline.features.evaluate("1m", now)["a"].psi
    assert restored.features.evaluate("1m", now)["a"].psi == pytest.approx(expected)


def test_restored_windows_are_dropped_when_the_artifact_or_windows_changed(tmp_path: Path) -> None:
    info = _info(tmp_path)
    now = time.time()
    _append(info, [_record("a", 4, now)])
    pipeline = VersionPipeline(info, 1.0, WINDOWS)
    pipeline.step(_joiner(pipeline), now)
    meta, arrays = pipeline.state()
    rebuilt = VersionPipeline(_info(tmp_path, build_key="k2"), 1.0, WINDOWS, meta, arrays)
    assert rebuilt.features.rows("1m", now) == 0 and rebuilt.reader.position == pipeline.reader.position
    rewindowed = VersionPipeline(info, 1.0, {"1m": 60.0}, meta, arrays)
    assert rewindowed.features.rows("1m", now) == 0


def test_save_is_atomic_and_a_corrupt_file_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(path, {"n": 1}, {"a": np.arange(3)})

    def broken(handle: Any, **_arrays: Any) -> None:
        handle.write(b"PK half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module.np, "savez", broken)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"n": 2}, {"a": np.arange(5)})
    monkeypatch.undo()
    meta, arrays = load_checkpoint(path) or ({}, {})
    assert meta["n"] == 1 and arrays["a"].tolist() == [0, 1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.npz"]
    path.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="unreadable"):
        load_checkpoint(path)
    assert load_checkpoint(tmp_path / "absent.npz") is None
