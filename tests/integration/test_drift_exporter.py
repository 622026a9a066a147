"""The drift exporter daemon on real spools: detection, promtool, restart and kill -9 recovery, rotation,
deletion, malformed lines, versions appearing later, and the HTML report."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import orjson
import pytest
from drift_daemon import MODEL, Daemon, rows_in, spool_traffic, value
from harness import wait_for

from modelfleet.spool.record import Tensor, encode, segment_name, segment_sequence

pytestmark = pytest.mark.integration
FEATURES = ["age", "income", "debt_ratio", "credit_lines", "late_payments", "utilization", "region", "employment"]
SHIFTED = {"income", "utilization"}


def _start(daemons: list[Daemon], spool: Path, artifacts: Path, state: Path, *extra: str) -> Daemon:
    daemon = Daemon(spool, artifacts, state, *extra)
    daemons.append(daemon)
    return daemon.start()


def test_drift_on_shifted_features_only_and_promtool_clean(artifacts: Path, train: ModuleType, tmp_path: Path,
                                                           daemons: list[Daemon], promtool: str) -> None:
    spool = tmp_path / "spool"
    spool_traffic(spool, artifacts, train.generate, records=300, rows_per_record=4, shift=1.0)
    daemon = _start(daemons, spool, artifacts, tmp_path / "state")
    rows_in(daemon, 1200)
    rows_in(daemon, 1200, window="1m")
    metrics = daemon.metrics()
    for window in ("1m", "10m"):
        for feature in FEATURES:
            labels = {"model": MODEL, "version": "1", "feature": feature, "window": window}
            detected = value(metrics, "modelfleet_feature_drift_detected", **labels)
            psi = value(metrics, "modelfleet_feature_psi", **labels)
            assert psi is not None and detected is not None
            if feature in SHIFTED:
                assert detected == 1.0 and psi > 0.2, (feature, window, psi)
            else:
                assert detected == 0.0 and psi < 0.1, (feature, window, psi)
        drifted = value(metrics, "modelfleet_features_drifted", model=MODEL, version="1", window=window)
        assert drifted == 2
    base = {"model": MODEL, "version": "1", "window": "10m"}
    assert value(metrics, "modelfleet_feature_ks_pvalue", feature="income", **base) < 1e-6
    assert value(metrics, "modelfleet_feature_chi2_pvalue", feature="region", **base) is not None
    assert value(metrics, "modelfleet_feature_unseen_ratio", feature="region", **base) == 0.0
    assert value(metrics, "modelfleet_feature_out_of_range_ratio", feature="income", **base) > 0
    assert value(metrics, "modelfleet_prediction_psi", output="label", **base) is not None
    assert value(metrics, "modelfleet_prediction_wasserstein_normed", output="score[1]", **base) is not None
    assert value(metrics, "modelfleet_drift_records_read_total", model=MODEL, version="1") == 300
    assert value(metrics, "modelfleet_drift_version_loaded", model=MODEL, version="1") == 1

    text = daemon.metrics_text()
    for line in text.splitlines():
        if line.startswith("modelfleet_feature_") or line.startswith("modelfleet_window_"):
            assert re.search(r'model="credit-risk".*version="1"', line) and 'window="' in line, line
    checked = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
    assert checked.returncode == 0 and not checked.stdout and not checked.stderr, checked


def test_restart_and_kill9_count_every_record_once(artifacts: Path, train: ModuleType, tmp_path: Path,
                                                     daemons: list[Daemon]) -> None:
    spool, state = tmp_path / "spool", tmp_path / "state"
    spool_traffic(spool, artifacts, train.generate, records=200, rows_per_record=2, prefix="a")
    first = _start(daemons, spool, artifacts, state)
    rows_in(first, 400)
    before = first.metrics()
    assert first.stop() in (0, -15, 143)

    second = _start(daemons, spool, artifacts, state)  # graceful restart: the window comes back at once
    after = second.metrics()
    for window in ("1m", "10m"):
        assert value(after, "modelfleet_window_rows", model=MODEL, version="1", window=window) == 400
    for feature in FEATURES:
        labels = {"model": MODEL, "version": "1", "feature": feature, "window": "10m"}
        assert value(after, "modelfleet_feature_psi", **labels) == value(before, "modelfleet_feature_psi", **labels)
    assert value(after, "modelfleet_drift_records_read_total", model=MODEL, version="1") == 200

    # kill -9 while a large backlog is being read (rotating segments), checkpointing every 0.5 s.
    spool_traffic(spool, artifacts, train.generate, records=3000, seed=2, prefix="b", segment_bytes=64 << 10)
    wait_for(lambda: (value(second.metrics(), "modelfleet_drift_records_read_total", model=MODEL, version="1")
                      or 0) > 200, 20, what="reading of the backlog to start")
    second.kill()  # typically ~2000 of the 3000 read, some of them after the last checkpoint

    third = _start(daemons, spool, artifacts, state)
    spool_traffic(spool, artifacts, train.generate, records=10, seed=3, prefix="c")  # read after everything else
    rows_in(third, 400 + 3000 + 10)
    metrics = third.metrics()
    assert value(metrics, "modelfleet_drift_records_read_total", model=MODEL, version="1") == 3210
    assert value(metrics, "modelfleet_drift_rows_read_total", model=MODEL, version="1") == 3410
    assert value(metrics, "modelfleet_drift_checkpoint_age_seconds") is not None


def test_rotation_deletion_and_malformed_lines(artifacts: Path, train: ModuleType, tmp_path: Path,
                                               daemons: list[Daemon]) -> None:
    spool, state = tmp_path / "spool", tmp_path / "state"
    _, writer = spool_traffic(spool, artifacts, train.generate, records=150, segment_bytes=4096, prefix="a")
    assert writer.stats.segments_rotated >= 5
    daemon = _start(daemons, spool, artifacts, state)
    rows_in(daemon, 150)
    daemon.stop()

    directory = spool / MODEL / "1"
    read_up_to = max(s for s in map(segment_sequence, (p.name for p in directory.iterdir())) if s is not None)
    # While the exporter is down the writer fills the spool and evicts segments it never read.
    _, writer = spool_traffic(spool, artifacts, train.generate, records=400, segment_bytes=4096,
                              max_bytes=16384, prefix="b")
    remaining = sorted(s for s in map(segment_sequence, (p.name for p in directory.iterdir())) if s is not None)
    unread_lost = sum(1 for s in range(read_up_to + 1, remaining[0]))
    assert writer.stats.dropped["evicted"] > 0 and unread_lost > 0
    unread = sum((directory / segment_name(s)).read_bytes().count(b"\n") for s in remaining if s > read_up_to)

    x = train.generate(1, seed=5)[0]
    good = {"inputs": {"x": Tensor("FP32", x)}, "outputs": {"label": Tensor("INT64", np.zeros(1, np.int64)),
                                                            "probabilities": Tensor("FP32", np.full((1, 2), 0.5))}}
    lines = [b"not json\n", b'{"v": 9}\n', b'{"v": 1, "id": "x"}\n',
             encode("w", time.time(), "other-model", "1", **good),
             encode("n", time.time(), MODEL, "1", {"x": Tensor("FP32", x[:, :3])}, good["outputs"]),
             b'{"v": 1, "id": "s", "ts": 1, "model": "m", "version": "1", "inputs": {"x": {"datatype": "FP32", '
             b'"shape": [2, 8], "data": [1, 2]}}, "outputs": {"label": {"shape": [1], "data": [0]}}}\n',
             encode("f", time.time() + 86400, MODEL, "1", **good),
             encode("ok1", time.time(), MODEL, "1", **good),
             b'{"v": 1, "id": "cut-short']
    (directory / segment_name(remaining[-1] + 1)).write_bytes(b"".join(lines))
    (directory / segment_name(remaining[-1] + 2)).write_bytes(encode("ok2", time.time(), MODEL, "1", **good))

    daemon = _start(daemons, spool, artifacts, state)
    expected = 150 + unread + 2
    rows_in(daemon, expected)
    metrics = daemon.metrics()
    base = {"model": MODEL, "version": "1"}
    malformed = {reason: value(metrics, "modelfleet_drift_records_malformed_total", reason=reason, **base)
                 for reason in ("json", "version", "schema", "wrong_version", "schema_mismatch", "shape",
                                "timestamp", "partial_line", "rows", "oversized")}
    assert malformed == {"json": 1, "version": 1, "schema": 1, "wrong_version": 1, "schema_mismatch": 1, "shape": 1,
                         "timestamp": 1, "partial_line": 1, "rows": 0, "oversized": 0}
    lost = value(metrics, "modelfleet_drift_spool_segments_lost_total", **base)
    assert lost is not None and unread_lost <= lost <= unread_lost + 1  # +1: the read-out checkpointed segment
    assert daemon.request("GET", "/healthz")[0] == 200


def test_new_versions_are_picked_up_without_restart(artifacts: Path, train: ModuleType, tmp_path: Path,
                                                    daemons: list[Daemon]) -> None:
    spool, state, root = tmp_path / "spool", tmp_path / "state", tmp_path / "artifacts"
    (root / MODEL).mkdir(parents=True)
    shutil.copytree(artifacts / MODEL / "1", root / MODEL / "1")
    spool_traffic(spool, root, train.generate, records=20)
    daemon = _start(daemons, spool, root, state)
    rows_in(daemon, 20)

    spool_traffic(spool, artifacts, train.generate, version="2", records=30, seed=9)
    wait_for(lambda: value(daemon.metrics(), "modelfleet_drift_version_loaded", model=MODEL, version="2") == 0,
             10, what="version 2 to be reported without an artifact")
    health = orjson.loads(daemon.request("GET", "/healthz")[1])
    assert f"{MODEL}/2" in health["not_watched"] and health["watching"] == [f"{MODEL}/1"]

    staging = root / MODEL / ".2.tmp"
    shutil.copytree(artifacts / MODEL / "2", staging)
    staging.rename(root / MODEL / "2")  # published atomically, as `modelfleet convert` does
    rows_in(daemon, 30, version="2")
    metrics = daemon.metrics()
    assert value(metrics, "modelfleet_drift_version_loaded", model=MODEL, version="2") == 1
    assert value(metrics, "modelfleet_window_rows", model=MODEL, version="1", window="10m") == 20


def test_html_report_from_spool_and_from_data(artifacts: Path, train: ModuleType, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool_traffic(spool, artifacts, train.generate, records=200, rows_per_record=2, shift=1.0,
                  seed=3)  # a sample whose undrifted features are far from significance
    report = tmp_path / "report.html"
    command = [sys.executable, "-m", "modelfleet.cli", "drift", "report", "--artifact", str(artifacts / MODEL / "1")]
    subprocess.run([*command, "--spool-dir", str(spool), "--output", str(report)], check=True, timeout=60)
    page = report.read_text()
    assert "<script" not in page and not re.search(r'(src|href)="(https?:)?//', page)
    assert page.count("<svg") == len(FEATURES) + 3  # features, then label and the two class scores
    assert "income — drift" in page and "utilization — drift" in page and "age — drift" not in page
    assert page.count('<tr class="drift">') >= 2

    np.savez(tmp_path / "current.npz", x=train.generate(600, seed=21)[0])
    subprocess.run([*command, "--data", str(tmp_path / "current.npz"), "--output", str(report)], check=True,
                   timeout=60)
    page = report.read_text()
    assert "— drift" not in page and "600 rows" in page
