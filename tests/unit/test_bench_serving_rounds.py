"""bench/serving/rounds.py: the order of interleaved rounds, the medians over them and the targets judged round by
round (no server started: made-up records shaped like run.py's)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # as the runners do: they are started by path

from bench.serving import report, rounds, targets  # noqa: E402


def test_each_round_rotates_the_order_by_one() -> None:
    servers = ["modelfleet", "mlserver", "kserve"]
    orders = [rounds.rotated(servers, index) for index in range(4)]
    assert orders == [["modelfleet", "mlserver", "kserve"], ["mlserver", "kserve", "modelfleet"],
                      ["kserve", "modelfleet", "mlserver"], ["modelfleet", "mlserver", "kserve"]]
    # Over as many rounds as servers, each goes first once and last once, and every round has all of them.
    assert sorted(order[0] for order in orders[:3]) == sorted(servers)
    assert sorted(order[-1] for order in orders[:3]) == sorted(servers)
    assert all(sorted(order) == sorted(servers) for order in orders)
    assert rounds.rotated([], 5) == []


def test_group_keeps_first_appearance_order_and_median_takes_the_middle() -> None:
    grouped = rounds.group(["b1", "a1", "b2"], key=lambda item: item[0])
    assert list(grouped) == ["b", "a"] and grouped["b"] == ["b1", "b2"]
    assert rounds.median([3.0, 1.0, 2.0]) == 2.0
    assert rounds.median([1.0, 4.0]) == 2.5


def _run(ok_rps: float, *, concurrency: int = 32, protocol: str = "grpc", p99: float = 2.0,
         cpu_s: float | None = 1.0, noisy: bool = False) -> dict[str, Any]:
    return {"concurrency": concurrency, "protocol": protocol, "rows": 1, "rps": ok_rps, "ok_rps": ok_rps,
            "rows_per_s": ok_rps, "p50_ms": p99 / 2, "p99_ms": p99, "requests": int(ok_rps), "non2xx": 1,
            "socket_errors": 0, "cpu_us_per_request": 1e6 * cpu_s / ok_rps if cpu_s else None,
            "req_per_cpu_s": ok_rps / cpu_s if cpu_s else None, "disturbance_pct": 1.0, "noisy": noisy,
            "cpu": {"seconds": 1.0, "server_cpu_pct": 90.0, "server_cpu_s": cpu_s, "wrk_cpu_pct": 50.0,
                    "other_on_server_core_pct": 1.0, "other_on_load_core_pct": 2.0,
                    "core_steal_pct": {"cpu0": 0.5, "cpu1": 0.0}, "other_processes": []}}


def _record(server: str, runs: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"server": server, "model": "credit-risk", "family": "ours" if server == "modelfleet" else "pytriton",
            "runs": runs, "quiet_before": {"other_pct": {"cpu0": 0.0, "cpu1": 0.0}, "waited_s": 2.0},
            "stop": {"signal": "SIGTERM", "exit_code": 0, "seconds": 0.5, "clean": True}, "log_problems": [], **extra}


def _rounds() -> list[dict[str, Any]]:
    """Three rounds of modelfleet against pytriton over gRPC at C=32; round 2 went first for pytriton and
    round 3's pytriton failed before it measured anything."""
    return [
        {"round": 1, "order": ["modelfleet", "pytriton"],
         "servers": [_record("modelfleet", [_run(5000), _run(900, concurrency=1)]),
                     _record("pytriton", [_run(2000)])]},
        {"round": 2, "order": ["pytriton", "modelfleet"],
         "servers": [_record("pytriton", [_run(3000, p99=4.0)]),
                     _record("modelfleet", [_run(5400, p99=1.0, noisy=True), _run(1100, concurrency=1)])]},
        {"round": 3, "order": ["modelfleet", "pytriton"],
         "servers": [_record("modelfleet", [_run(7000, p99=3.0, cpu_s=None), _run(1000, concurrency=1)]),
                     _record("pytriton", [], error="exited 1 before it was ready")]},
    ]


def test_merge_takes_each_points_median_over_the_rounds_that_measured_it() -> None:
    merged = rounds.merge_rounds(_rounds())
    assert [(r["server"], r["rounds"]) for r in merged] == [("modelfleet", [1, 2, 3]), ("pytriton", [1, 2, 3])]
    ours, peer = merged
    top = ours["runs"][0]
    assert (top["concurrency"], top["protocol"], top["rows"]) == (32, "grpc", 1)
    assert top["ok_rps"] == 5400 and top["p99_ms"] == 2.0 and top["p50_ms"] == 1.0
    # Round 3 has no CPU figure: the per-CPU medians are over the two rounds that have one.
    assert top["req_per_cpu_s"] == pytest.approx((5000 + 5400) / 2)
    assert top["cpu_us_per_request"] == pytest.approx((200 + 1e6 / 5400) / 2)
    assert top["non2xx"] == 3 and top["requests"] == 5000 + 5400 + 7000
    assert top["noisy"] and top["noisy_rounds"] == 1
    assert top["cpu"]["server_cpu_pct"] == 90.0 and top["cpu"]["core_steal_pct"] == {"cpu0": 0.5, "cpu1": 0.0}
    assert [(r["round"], r["ok_rps"]) for r in top["rounds"]] == [(1, 5000), (2, 5400), (3, 7000)]
    assert [r["ok_rps"] for r in ours["runs"][1]["rounds"]] == [900, 1100, 1000] and ours["runs"][1]["ok_rps"] == 1000
    assert peer["runs"][0]["ok_rps"] == 2500 and [r["round"] for r in peer["runs"][0]["rounds"]] == [1, 2]
    assert peer["error"] == "round 3: exited 1 before it was ready" and "error" not in ours
    # What targets.py reads finds the medians.
    assert targets.find_run(merged, "modelfleet", "credit-risk", 32, "grpc") is top


def _results() -> dict[str, Any]:
    measured = _rounds()
    return {"settings": {"concurrency": [1, 32], "models": ["credit-risk"], "large_concurrency": [], "rounds": 3,
                         "server_cpu": 0, "load_cpu": 1, "max_other": 10.0, "retries": 2},
            "ceiling": {}, "servers": rounds.merge_rounds(measured), "rounds": measured, "peer_setup_errors": {}}


def test_targets_come_from_the_medians_and_each_round_is_judged_on_its_own() -> None:
    results = _results()
    checks = rounds.count_rounds(targets.targets(results), results)
    best_peer = next(c for c in checks if c["target"] == "credit-risk: gRPC 1 row C=32 ÷ best peer's gRPC")
    # Medians: 5400 vs 2500 = 2.16x (met); round by round 2.5x (met), 1.8x (not), round 3 has no peer.
    assert best_peer["value"] == pytest.approx(5400 / 2500) and best_peer["met"]
    assert (best_peer["rounds_met"], best_peer["rounds_judged"]) == (1, 2)
    assert best_peer["value_by_round"] == {"1": 2.5, "2": 1.8}
    old_json = next(c for c in checks if "JSON of 2026-11-25" in c["target"])
    assert (old_json["rounds_met"], old_json["rounds_judged"]) == (0, 3)
    table = targets.targets_markdown(checks)
    assert "rounds met |" in table and "| 1 of 2 |" in table and "| 0 of 3 |" in table
    assert "rounds met" not in targets.targets_markdown(targets.targets(results))


def test_measured_records_are_every_rounds_or_the_one_run() -> None:
    results = _results()
    assert [(n, r["server"]) for n, r in rounds.measured_records(results)] == [
        (1, "modelfleet"), (1, "pytriton"), (2, "pytriton"), (2, "modelfleet"), (3, "modelfleet"), (3, "pytriton")]
    one = {"servers": _rounds()[0]["servers"]}
    assert [(n, r["server"]) for n, r in rounds.measured_records(one)] == [(1, "modelfleet"), (1, "pytriton")]


def test_the_throughput_table_shows_medians_and_each_rounds_req_per_s() -> None:
    results = _results()
    table = "\n".join(report._throughput(results))
    assert "| req/s | req/s each round | p50 ms |" in table
    assert "| modelfleet | credit-risk | grpc | 1 | 32 † | 5,400 | 5,000, 5,400, 7,000 | 1.00 | 2.00 |" in table
    assert "| pytriton | credit-risk | grpc | 1 | 32 | 2,500 | 2,000, 3,000, – |" in table
    assert "median over the rounds" in table
    one = {**results, "settings": {**results["settings"], "rounds": 1}, "servers": _rounds()[0]["servers"]}
    one_table = "\n".join(report._throughput(one))
    assert "each round" not in one_table and "median" not in one_table
    assert "| modelfleet | credit-risk | grpc | 1 | 32 | 5,000 | 1.00 | 2.00 |" in one_table
    servers = "\n".join(report._servers(results))
    assert "| pytriton (round 3) | credit-risk |" in servers and "- pytriton (round 3) / credit-risk:" in servers
