"""Issue 13's serving targets, checked against one run of bench/serving/run.py (standard library only).

- gRPC, one row per request, at the highest concurrency: modelfleet >= 2x the best peer's gRPC, and >= its own
  one-row JSON (in the same run, and the figure docs/serving-benchmark.md had before gRPC: ``JSON_BEFORE``);
- the large-input model: binary HTTP and gRPC >= 10x JSON's requests/s, at each concurrency;
- 32 rows per request: modelfleet's rows/s >= 10 % of the raw ONNX Runtime batch-32 ceiling (same run).

With ``--rounds N`` the figures are the medians over the rounds (rounds.py); rounds.py's ``count_rounds``
judges each target again round by round.
"""

from __future__ import annotations

from typing import Any

from bench.serving.grpc_load import BATCH_ROWS, LARGE_MODEL

# modelfleet's one-row JSON req/s at C=32 in docs/serving-benchmark.md's run of 2026-11-25 ("today's").
JSON_BEFORE = {"credit-risk": 10_017.0, "mlp": 9_232.0}
JSON_BEFORE_PER_CPU_S = {"credit-risk": 10_044.0, "mlp": 9_303.0}
OURS = "modelfleet"


def find_run(records: list[dict[str, Any]], server: str, model: str, concurrency: int, protocol: str = "json",
             rows: int = 1) -> dict[str, Any] | None:
    for record in records:
        if record["server"] == server and record["model"] == model:
            for run in record["runs"]:
                if (run["concurrency"], run.get("protocol", "json"), run.get("rows", 1)) == (concurrency, protocol,
                                                                                             rows):
                    found: dict[str, Any] = run
                    return found
    return None


def _check(name: str, value: float, goal: float, detail: str, per_cpu: float | None) -> dict[str, Any]:
    """``per_cpu``: the same ratio from figures per server CPU-second (little moved by others on the core)."""
    return {"target": name, "value": value, "goal": goal, "met": value >= goal, "detail": detail,
            "value_per_cpu_s": per_cpu}


def _per_cpu(ours: dict[str, Any], other: dict[str, Any] | float | None, rows: int = 1) -> float | None:
    mine = ours.get("req_per_cpu_s")
    theirs = other.get("req_per_cpu_s") if isinstance(other, dict) else other
    return mine * rows / theirs if mine and theirs else None


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    records = results["servers"]
    settings = results["settings"]
    top = max(settings["concurrency"])
    checks = []
    for model in settings["models"]:
        if model == LARGE_MODEL:
            continue
        grpc = find_run(records, OURS, model, top, "grpc")
        peers = [(r["server"], run) for r in records if r["server"] != OURS and r["model"] == model
                 if (run := find_run([r], r["server"], model, top, "grpc")) is not None]
        if grpc and peers:
            name, best = max(peers, key=lambda item: item[1]["ok_rps"])
            checks.append(_check(f"{model}: gRPC 1 row C={top} ÷ best peer's gRPC", grpc["ok_rps"] / best["ok_rps"],
                                 2.0, f"{grpc['ok_rps']:,.0f} vs {best['ok_rps']:,.0f} req/s ({name})",
                                 _per_cpu(grpc, max((run for _, run in peers),
                                                    key=lambda run: run.get("req_per_cpu_s") or 0.0))))
        json_run = find_run(records, OURS, model, top, "json")
        if grpc and json_run:
            checks.append(_check(f"{model}: gRPC 1 row C={top} ÷ JSON (this run)", grpc["ok_rps"] / json_run["ok_rps"],
                                 1.0, f"{grpc['ok_rps']:,.0f} vs {json_run['ok_rps']:,.0f} req/s",
                                 _per_cpu(grpc, json_run)))
        if grpc and model in JSON_BEFORE:
            checks.append(_check(f"{model}: gRPC 1 row C={top} ÷ JSON of 2026-11-25",
                                 grpc["ok_rps"] / JSON_BEFORE[model], 1.0,
                                 f"{grpc['ok_rps']:,.0f} vs {JSON_BEFORE[model]:,.0f} req/s",
                                 _per_cpu(grpc, JSON_BEFORE_PER_CPU_S.get(model))))
        ceiling = results["ceiling"].get(model, {}).get("batches", {}).get(str(BATCH_ROWS))
        for protocol in ("json", "grpc"):
            runs = [run for c in settings["concurrency"]
                    if (run := find_run(records, OURS, model, c, protocol, BATCH_ROWS)) is not None]
            if ceiling and runs:
                best = max(runs, key=lambda run: run["rows_per_s"])
                checks.append(_check(f"{model}: {protocol} {BATCH_ROWS} rows/req ÷ ORT batch-{BATCH_ROWS} ceiling",
                                     best["rows_per_s"] / ceiling["rows_per_s"], 0.10,
                                     f"{best['rows_per_s']:,.0f} rows/s at C={best['concurrency']} vs "
                                     f"{ceiling['rows_per_s']:,.0f}",
                                     max((v for run in runs if (v := _per_cpu(run, ceiling.get("rows_per_cpu_s"),
                                                                              BATCH_ROWS)) is not None), default=None)))
    for c in settings.get("large_concurrency", []):
        json_run = find_run(records, OURS, LARGE_MODEL, c, "json")
        for protocol in ("binary", "grpc"):
            run = find_run(records, OURS, LARGE_MODEL, c, protocol)
            if json_run and run and json_run["ok_rps"]:
                checks.append(_check(f"large input: {protocol} ÷ JSON at C={c}", run["ok_rps"] / json_run["ok_rps"],
                                     10.0, f"{run['ok_rps']:,.1f} vs {json_run['ok_rps']:,.1f} req/s",
                                     _per_cpu(run, json_run)))
    return checks


def _show(value: float, percent: bool) -> str:
    return f"{100 * value:.1f} %" if percent else f"{value:.2f}×"


def targets_markdown(checks: list[dict[str, Any]]) -> str:
    """The targets as a table; with rounds (rounds.py's ``count_rounds``), also in how many rounds each held."""
    rounds = any("rounds_judged" in c for c in checks)
    lines = ["", "## Issue 13 targets (modelfleet)", "",
             "| target | value | goal | met | figures | same ratio per server CPU-s |"
             + (" rounds met |" if rounds else ""), "|---|--:|--:|---|---|--:|" + ("--:|" if rounds else "")]
    for c in checks:
        percent = "ceiling" in c["target"]
        goal = f"≥ {100 * c['goal']:.0f} %" if percent else f"≥ {c['goal']:g}×"
        per_cpu = _show(c["value_per_cpu_s"], percent) if c.get("value_per_cpu_s") else "–"
        held = (f" {c['rounds_met']} of {c['rounds_judged']} |" if "rounds_judged" in c else " – |") if rounds else ""
        lines.append(f"| {c['target']} | {_show(c['value'], percent)} | {goal} | {'yes' if c['met'] else '**no**'} | "
                     f"{c['detail']} | {per_cpu} |{held}")
    if rounds:
        lines += ["", "Value and met: from the medians over the rounds. Rounds met: in how many rounds the ratio, "
                  "computed from that round's own figures, reached the goal (of the rounds that measured both sides)."]
    return "\n".join([*lines, ""]) if checks else ""
