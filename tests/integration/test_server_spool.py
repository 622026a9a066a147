"""The payload spool of a real server: sampled records on disk that decode with the documented reader,
rotation by size, a bounded total with the oldest segments dropped and counted, failures that never
reach a request."""

from __future__ import annotations

import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from harness import wait_for
from serverkit import Server, StartServer, spool_lines, tensor

from modelfleet.spool.record import decode, segment_sequence

pytestmark = pytest.mark.integration

ROW = [30.0, 40000.0, 0.3, 3.0, 1.0, 0.5, 1.0, 0.0]


def _spooled(server: Server, outcome: str = "written") -> float:
    return server.metrics().value("modelfleet_spool_records_total", outcome=outcome)


def _dropped(server: Server, reason: str) -> float:
    return server.metrics().value("modelfleet_spool_records_dropped_total", reason=reason)


def _one_row(server: Server, request_id: str) -> None:
    response = server.infer("credit-risk", {"id": request_id, "inputs": [tensor("x", "FP32", [ROW], [1, 8])]})
    assert response.status == 200, response.body


def test_records_decode_with_request_id_inputs_and_outputs(start_server: StartServer, credit_risk_artifact: Path,
                                                           credit_rows: np.ndarray, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    server = start_server(credit_risk_artifact, "--spool-dir", str(spool))
    started = time.time()
    sent: dict[str, tuple[np.ndarray, dict[str, list[float]]]] = {}
    for k in range(1, 6):
        rows = credit_rows[10 * k:10 * k + k]
        payload = {"inputs": [tensor("x", "FP32", rows.tolist(), rows.shape)]}
        if k != 5:
            payload["id"] = f"spool-{k}"  # the fifth gets an id from the server
        body = server.infer("credit-risk", payload).json()
        sent[body["id"]] = (rows, {o["name"]: o["data"] for o in body["outputs"]})
    assert "spool-1" in sent and len(sent) == 5
    lines = wait_for(lambda: len(found := spool_lines(spool / "credit-risk" / "1")) == 5 and found, 10,
                     what="five records on disk")
    records = [decode(line) for line in lines]
    assert {r.id for r in records} == set(sent)
    for record in records:
        rows, outputs = sent[record.id]
        assert (record.model, record.version) == ("credit-risk", "1")
        assert started <= record.ts <= time.time()
        assert record.rows == len(rows)
        np.testing.assert_array_equal(record.inputs["x"].astype(np.float32), rows)
        np.testing.assert_array_equal(record.outputs["label"].ravel(), outputs["label"])
        np.testing.assert_allclose(record.outputs["probabilities"].ravel(), outputs["probabilities"], rtol=1e-7)
        assert record.outputs["probabilities"].shape == (len(rows), 2)
    assert _spooled(server) == 5


def test_rotation_by_size_and_a_bounded_total_drop_the_oldest(start_server: StartServer, credit_risk_artifact: Path,
                                                              tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    server = start_server(credit_risk_artifact, "--spool-dir", str(spool), "--spool-segment-bytes", "1024",
                          "--spool-max-bytes", "3072")
    ids = [f"r-{k:03d}" for k in range(40)]
    for request_id in ids:
        _one_row(server, request_id)
    wait_for(lambda: _spooled(server) == 40, 10, what="40 records written")
    evicted = _dropped(server, "evicted")
    assert server.stop() == 0
    segments = sorted(spool.joinpath("credit-risk", "1").iterdir())
    sizes = [p.stat().st_size for p in segments]
    assert len(segments) >= 3, sizes
    assert all(size <= 1024 for size in sizes), sizes
    assert sum(sizes) <= 3072, sizes
    sequences = [segment_sequence(p.name) for p in segments]
    assert sequences == list(range(sequences[0], sequences[0] + len(segments)))  # no gaps: oldest first gone
    assert sequences[0] > 1
    kept = [decode(line).id for line in spool_lines(spool / "credit-risk" / "1")]
    assert kept == ids[len(ids) - len(kept):]  # exactly the newest records survive, in order
    assert evicted == len(ids) - len(kept) > 0


def test_sampling_writes_a_share_and_counts_the_rest(start_server: StartServer, credit_risk_artifact: Path,
                                                     tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    server = start_server(credit_risk_artifact, "--spool-dir", str(spool), "--spool-sample-rate", "0.5")
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda k: _one_row(server, f"s-{k}"), range(120)))
    wait_for(lambda: _spooled(server) + _spooled(server, "sampled_out") == 120, 10, what="all offers counted")
    written = _spooled(server)
    assert 20 < written < 100  # 0.5 of 120; outside this range with probability < 1e-12
    assert server.stop() == 0
    assert len(spool_lines(spool / "credit-risk" / "1")) == written


def test_disk_failures_never_fail_a_request_and_are_counted(start_server: StartServer, credit_risk_artifact: Path,
                                                            tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    directory = spool / "credit-risk" / "1"
    # Segments smaller than a record: every record opens a new segment, so every write touches the directory.
    server = start_server(credit_risk_artifact, "--spool-dir", str(spool), "--spool-segment-bytes", "100",
                          "--spool-max-bytes", "100000")
    _one_row(server, "before")
    wait_for(lambda: _spooled(server) == 1, 10, what="the first record")
    shutil.rmtree(directory)
    directory.write_text("not a directory any more")  # the spool's directory is gone: every write fails
    for k in range(5):
        _one_row(server, f"during-{k}")  # asserts 200
    wait_for(lambda: _dropped(server, "io_error") == 5, 10, what="five I/O errors counted")
    assert server.get("/v2/health/ready").status == 200
    directory.unlink()  # the disk comes back: so does the spool
    _one_row(server, "after")
    wait_for(lambda: _spooled(server) == 2, 10, what="writing to resume")
    assert server.stop() == 0
    assert [decode(line).id for line in spool_lines(directory)] == ["after"]


@pytest.mark.parametrize(("args", "reason"), [
    (["--spool-sample-rate", "0"], "sample_rate must be in (0, 1]"),
    (["--spool-segment-bytes", "4096", "--spool-max-bytes", "1024"], "need 0 < segment_bytes <= max_bytes"),
    (["--spool-dir-is-a-file"], "Not a directory"),
])
def test_unusable_spool_settings_mean_not_ready_with_the_reason(start_server: StartServer, typed_artifact: Path,
                                                                tmp_path: Path, args: list[str], reason: str) -> None:
    target = tmp_path / "spool"
    if args == ["--spool-dir-is-a-file"]:
        target.write_text("a file")
        args = []
    server = start_server(typed_artifact, "--spool-dir", str(target), *args, wait="live")

    def settled() -> dict[str, str] | None:
        body: dict[str, str] = server.get("/v2/health/ready").json()
        return body if body["reason"] not in ("loading the model", "warming up") else None

    body = wait_for(settled, 20, what="the spool setup to fail")
    assert body["reason"].startswith(f"payload spool {target}: ") and reason in body["reason"]
    assert server.infer("typed", {"inputs": [tensor("x", "FP32", [1, 2, 3], [1, 3])]}).status == 503
