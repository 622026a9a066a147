"""Interleaved rounds for bench/serving (stdlib only): the order of each round, and medians over rounds.

On a shared machine one measurement of a point moves by ±25 % from one run to the next, so a runner measures
every point once per round, going through all its servers each round in an order rotated by one each round
(no server always first or last), and reports medians. :func:`rotated`, :func:`median` and :func:`group` are
shared by run.py, c1.py and grpc_ab.py. :func:`merge_rounds` and :func:`count_rounds` combine run.py's rounds:
one record per (server, model) whose runs hold the medians (what targets.py and the report read), and, for
each target, in how many rounds it was met with that round's own figures.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any, TypeVar

from bench.serving.targets import targets

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)

# A merged point: the median over its rounds of these (None where no round has one) ...
MEDIAN_KEYS = ("rps", "ok_rps", "rows_per_s", "p50_ms", "p99_ms", "cpu_us_per_request", "req_per_cpu_s",
               "disturbance_pct")
MEDIAN_CPU_KEYS = ("seconds", "server_cpu_pct", "server_cpu_s", "wrk_cpu_pct", "other_on_server_core_pct",
                   "other_on_load_core_pct")
# ... the sum of these ...
SUM_KEYS = ("requests", "non2xx", "socket_errors")
# ... and these from each round.
ROUND_KEYS = ("ok_rps", "p50_ms", "p99_ms", "cpu_us_per_request", "req_per_cpu_s", "disturbance_pct", "noisy")


def rotated(items: Sequence[T], index: int) -> list[T]:
    """Round ``index``'s order: ``items`` starting at ``index`` (modulo their number)."""
    if not items:
        return []
    turn = index % len(items)
    return [*items[turn:], *items[:turn]]


def median(values: Iterable[float]) -> float:
    return float(statistics.median(values))


def group(items: Iterable[T], key: Callable[[T], K]) -> dict[K, list[T]]:
    """``items`` by ``key``, the keys in the order they first appear."""
    groups: dict[K, list[T]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return groups


def _median_present(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return median(present) if present else None


def point_key(run: dict[str, Any]) -> tuple[int, str, int]:
    """What identifies a point within a server's record: (concurrency, protocol, rows per request)."""
    return run["concurrency"], run.get("protocol", "json"), run.get("rows", 1)


def merge_point(measured: Sequence[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
    """One point's ``(round number, run)`` pairs as one run: medians, sums, † if any round stayed disturbed,
    and each round's own figures under ``rounds``."""
    runs = [run for _, run in measured]
    concurrency, protocol, rows = point_key(runs[0])
    merged: dict[str, Any] = {"concurrency": concurrency, "protocol": protocol, "rows": rows}
    merged |= {key: _median_present(run.get(key) for run in runs) for key in MEDIAN_KEYS}
    merged |= {key: sum(run.get(key, 0) for run in runs) for key in SUM_KEYS}
    cpu: dict[str, Any] = {key: _median_present(run["cpu"].get(key) for run in runs) for key in MEDIAN_CPU_KEYS}
    cores = sorted({core for run in runs for core in run["cpu"].get("core_steal_pct", {})})
    cpu["core_steal_pct"] = {core: median(run["cpu"].get("core_steal_pct", {}).get(core, 0.0) for run in runs)
                             for core in cores}
    merged["cpu"] = cpu
    merged["noisy_rounds"] = sum(bool(run.get("noisy")) for run in runs)
    merged["noisy"] = merged["noisy_rounds"] > 0
    merged["rounds"] = [{"round": number, **{key: run.get(key) for key in ROUND_KEYS}} for number, run in measured]
    return merged


def merge_rounds(rounds: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """run.py's rounds (``{"round", "order", "servers"}`` each) as one record per (server, model), in the order
    they first ran, whose runs are each point's medians over the rounds that measured it."""
    by_record = group(((r["round"], rec) for r in rounds for rec in r["servers"]),
                      key=lambda item: (item[1]["server"], item[1]["model"]))
    merged = []
    for (server, model), measured in by_record.items():
        points = group(((number, run) for number, rec in measured for run in rec["runs"]),
                       key=lambda item: point_key(item[1]))
        errors = [f"round {number}: {rec['error']}" for number, rec in measured if rec.get("error")]
        merged.append({"server": server, "model": model, "family": measured[0][1]["family"],
                       "rounds": [number for number, _ in measured],
                       "runs": [merge_point(pairs) for pairs in points.values()],
                       **({"error": "\n".join(errors)} if errors else {})})
    return merged


def measured_records(results: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    """Every (server, model) record as measured, with its round number (one round: ``servers``, round 1)."""
    if "rounds" in results:
        return [(r["round"], record) for r in results["rounds"] for record in r["servers"]]
    return [(1, record) for record in results["servers"]]


def count_rounds(checks: list[dict[str, Any]], results: dict[str, Any]) -> list[dict[str, Any]]:
    """Judge each target again with each round's own figures; adds ``rounds_met`` (how many rounds met it),
    ``rounds_judged`` (in how many it could be computed) and ``value_by_round`` to each check."""
    by_round = [(r["round"], {c["target"]: c for c in targets({**results, "servers": r["servers"]})})
                for r in results["rounds"]]
    for check in checks:
        judged = [(number, found[check["target"]]) for number, found in by_round if check["target"] in found]
        check["rounds_met"] = sum(bool(c["met"]) for _, c in judged)
        check["rounds_judged"] = len(judged)
        check["value_by_round"] = {str(number): c["value"] for number, c in judged}
    return checks
