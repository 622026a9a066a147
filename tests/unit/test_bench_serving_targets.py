"""bench/serving: how an h2load run is counted (gRPC errors hide behind HTTP 200) and how issue 13's targets are
judged from one run's results (no server started: the figures are made up, the arithmetic is what is tested)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # as the runners do: they are started by path

from bench.serving import grpc_load, targets  # noqa: E402

H2LOAD_OUT = """finished in 5.00s, 2000.00 req/s, 300.00KB/s
requests: 10000 total, 10000 started, 10000 done, {ok} succeeded, 0 failed, 1 errored, 2 timeout
status codes: {ok} 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 1.50MB (1572864) total, 100.00KB (102400) headers (space savings 90.00%), 400.00KB ({data}) data
"""


def test_every_answer_accounted_for_by_its_bytes_is_ok() -> None:
    out = H2LOAD_OUT.format(ok=10000, data=10000 * 40)
    summary = grpc_load.summarize(out, [100, 200, 300, 400], 5, 40)
    assert summary["grpc_not_ok"] == 0 and summary["non2xx"] == 0
    assert summary["ok_rps"] == summary["rps"] == 2000.0
    assert summary["socket_errors"] == 3
    assert summary["latency_us"]["p50"] == 300 and summary["latency_us"]["max"] == 400


def test_grpc_errors_are_the_answers_the_data_bytes_lack() -> None:
    # 250 of 10,000 calls were refused (grpc-status in the trailers, HTTP 200, no message).
    out = H2LOAD_OUT.format(ok=10000, data=9750 * 40)
    summary = grpc_load.summarize(out, [], 5, 40)
    assert summary["grpc_not_ok"] == 250 and summary["non2xx"] == 250
    assert summary["ok_rps"] == 9750 / 5 and summary["rps"] == 2000.0


def test_an_h2load_summary_without_a_figure_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="succeeded"):
        grpc_load.summarize("finished in 5.00s\n", [], 5, 40)


def _run(concurrency: int, protocol: str, ok_rps: float, rows: int = 1, cpu: float | None = None) -> dict[str, Any]:
    return {"concurrency": concurrency, "protocol": protocol, "rows": rows, "ok_rps": ok_rps,
            "rows_per_s": ok_rps * rows, "req_per_cpu_s": cpu}


def _results(ours_grpc: float, peer_grpc: float, ours_json: float, rows32: float) -> dict[str, Any]:
    return {
        "settings": {"concurrency": [1, 32], "models": ["credit-risk", grpc_load.LARGE_MODEL],
                     "large_concurrency": [1]},
        "ceiling": {"credit-risk": {"batches": {"32": {"rows_per_s": 1_000_000.0, "rows_per_cpu_s": 1_000_000.0}}}},
        "servers": [
            {"server": "modelfleet", "model": "credit-risk",
             "runs": [_run(32, "grpc", ours_grpc), _run(32, "json", ours_json), _run(1, "json", 10.0),
                      _run(1, "json", rows32, rows=grpc_load.BATCH_ROWS)]},
            {"server": "pytriton", "model": "credit-risk", "runs": [_run(32, "grpc", peer_grpc)]},
            {"server": "kserve", "model": "credit-risk", "runs": [_run(32, "grpc", peer_grpc / 2)]},
            {"server": "modelfleet", "model": grpc_load.LARGE_MODEL,
             "runs": [_run(1, "json", 10.0), _run(1, "binary", 150.0), _run(1, "grpc", 90.0)]},
        ],
    }


def test_targets_compare_with_the_best_peer_the_own_json_and_the_ceiling() -> None:
    checks = {c["target"]: c for c in targets.targets(_results(ours_grpc=5000, peer_grpc=2000, ours_json=8000,
                                                                 rows32=4000))}
    best_peer = checks["credit-risk: gRPC 1 row C=32 ÷ best peer's gRPC"]
    assert best_peer["value"] == 2.5 and best_peer["met"] and "(pytriton)" in best_peer["detail"]
    own_json = checks["credit-risk: gRPC 1 row C=32 ÷ JSON (this run)"]
    assert own_json["value"] == 5000 / 8000 and not own_json["met"]
    ceiling = checks["credit-risk: json 32 rows/req ÷ ORT batch-32 ceiling"]
    assert ceiling["value"] == pytest.approx(4000 * 32 / 1_000_000) and ceiling["met"]
    binary = checks["large input: binary ÷ JSON at C=1"]
    assert binary["met"] and binary["value"] == 15
    assert not checks["large input: grpc ÷ JSON at C=1"]["met"]
    table = targets.targets_markdown(list(checks.values()))
    assert table.count("**no**") == sum(not c["met"] for c in checks.values())


def test_no_target_without_the_rows_it_needs() -> None:
    results = _results(ours_grpc=5000, peer_grpc=2000, ours_json=8000, rows32=4000)
    results["servers"] = [record for record in results["servers"] if record["server"] == "modelfleet"
                          and record["model"] == "credit-risk"]
    results["servers"][0]["runs"] = [run for run in results["servers"][0]["runs"] if run["protocol"] == "json"]
    names = [c["target"] for c in targets.targets(results)]
    assert names == ["credit-risk: json 32 rows/req ÷ ORT batch-32 ceiling"]
    assert targets.targets_markdown([]) == ""
