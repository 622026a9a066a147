"""The report of a bench/serving run (stdlib only): ratios against the peers and the markdown.

:func:`ratios` compares modelfleet with the best of MLServer/KServe and with PyTriton at the highest
concurrency; :func:`markdown` writes the tables (throughput and latency, raw ceiling, ratios, what else ran,
servers, failures, versions). With ``--rounds N`` ``results["servers"]`` holds the medians over the rounds
(rounds.py) and the rounds themselves are under ``results["rounds"]``: the tables of points show the medians
and each round's req/s, those of what ran (servers, other processes, failures) every round.
"""

from __future__ import annotations

from typing import Any

from bench.serving.rounds import measured_records
from bench.serving.servers import SERVERS
from bench.serving.targets import find_run

RATIO_METRICS = {"ok_rps": "req/s", "req_per_cpu_s": "req per server CPU-second"}


def ratios(results: dict[str, Any]) -> dict[str, Any]:
    """At the highest concurrency: modelfleet against the best of MLServer/KServe and against PyTriton."""
    records = results["servers"]
    top = max(results["settings"]["concurrency"])
    out: dict[str, Any] = {"concurrency": top, "models": {}}
    for model in results["settings"]["models"]:
        ours = find_run(records, "modelfleet", model, top)
        entry: dict[str, Any] = {}
        measured = {name: run for name in SERVERS if name != "modelfleet"
                    if (run := find_run(records, name, model, top)) is not None}
        if ours is None:
            out["models"][model] = entry
            continue
        for metric in RATIO_METRICS:
            mk = [(name, run) for name, run in measured.items()
                  if SERVERS[name].family == "mlserver/kserve" and run.get(metric)]
            if mk and ours.get(metric):
                best_name, best = max(mk, key=lambda item: item[1][metric])
                entry[f"{metric}_vs_best_mlserver_kserve"] = {
                    "peer": best_name, "ours": ours[metric], "peer_value": best[metric],
                    "ratio": ours[metric] / best[metric]}
            triton = measured.get("pytriton")
            if triton and triton.get(metric) and ours.get(metric):
                entry[f"{metric}_vs_pytriton"] = {"ours": ours[metric], "peer_value": triton[metric],
                                                  "ratio": ours[metric] / triton[metric]}
        entry["p99_ms"] = {"modelfleet": ours["p99_ms"], **{n: r["p99_ms"] for n, r in measured.items()}}
        entry["p99_peer_over_ours"] = {n: r["p99_ms"] / ours["p99_ms"] for n, r in measured.items()}
        ceiling = results["ceiling"].get(model, {}).get("batches", {}).get("32")
        if ceiling:
            entry["vs_ort_batch32_ceiling"] = {
                "ours_rows_per_s": ours["ok_rps"], "ours_rows_per_cpu_s": ours.get("req_per_cpu_s"),
                "ceiling_rows_per_s": ceiling["rows_per_s"], "fraction": ours["ok_rps"] / ceiling["rows_per_s"],
                "ceiling_rows_per_cpu_s": ceiling.get("rows_per_cpu_s"),
                "fraction_per_cpu_s": (ours["req_per_cpu_s"] / ceiling["rows_per_cpu_s"]
                                       if ours.get("req_per_cpu_s") and ceiling.get("rows_per_cpu_s") else None)}
        out["models"][model] = entry
    return out


def markdown(results: dict[str, Any]) -> str:
    """The whole report but the targets (targets.py's ``targets_markdown`` follows it)."""
    return "\n".join([*_header(results), *_throughput(results), *_ceiling(results), *_ratios(results),
                      *_others(results), *_servers(results), *_versions(results)])


def _rounds(results: dict[str, Any]) -> int:
    return int(results["settings"].get("rounds", 1))


def _header(results: dict[str, Any]) -> list[str]:
    s = results["settings"]
    env = results["environment"]
    server_cpu, load_cpu = s["server_cpu"], s["load_cpu"]
    rounds = _rounds(results)
    interleaved = (f", every point in {rounds} interleaved rounds (each server once per round, the order of the "
                   f"servers rotated each round; medians shown)" if rounds > 1 else "")
    return [f"# Serving benchmark {results['timestamp']}"
            + (" (INTERRUPTED: partial)" if results.get("interrupted") else ""), "",
            f"Command: `{results['command']}`  ",
            f"Machine: {env['cpu_model']}, {env['cores']} cores ({env['virtualization']}), kernel "
            f"{env['kernel']}, {env['memory_gib']} GiB  ",
            f"Servers on core {server_cpu} (`taskset -c {server_cpu}`), the load generator (wrk for HTTP, h2load "
            f"for gRPC, 1 thread) on core {load_cpu} (`taskset -c {load_cpu}`); {s['duration_s']} s per point after "
            f"{s['warmup_s']} s warm-up{interleaved}; protocols {', '.join(s.get('protocols', ['json']))}; "
            f"ONNX Runtime {env['onnxruntime']} with 1 intra-op thread in every server.  ",
            f"modelfleet at {env['git']['commit'][:12]}"
            + (f" (serve/ changes not committed: {', '.join(env['git']['serve_dirty'])})"
               if env["git"]["serve_dirty"] else "") + "."]


def _throughput(results: dict[str, Any]) -> list[str]:
    s = results["settings"]
    server_cpu, load_cpu = s["server_cpu"], s["load_cpu"]
    rounds = _rounds(results)
    each = " req/s each round |" if rounds > 1 else ""
    lines = ["", "## Throughput and latency", "",
             f"| server | model | protocol | rows/req | C | req/s |{each} p50 ms | p99 ms | non-2xx | socket errors | "
             f"server CPU % | CPU µs/req | req per CPU-s | others on core {server_cpu} % | "
             f"others on core {load_cpu} % |",
             "|---|---|---|--:|--:|--:|" + ("---|" if rounds > 1 else "") + "--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for record in results["servers"]:
        if record.get("error") and not record["runs"]:
            lines.append(f"| {record['server']} | {record['model']} | – | – | – | failed: see below "
                         "| | | | | | | | | |" + (" |" if rounds > 1 else ""))
        for run in record["runs"]:
            cpu = run["cpu"]
            per_req = f"{run['cpu_us_per_request']:.0f}" if run.get("cpu_us_per_request") else "–"
            per_cpu = f"{run['req_per_cpu_s']:,.0f}" if run.get("req_per_cpu_s") else "–"
            by_round = {r["round"]: r["ok_rps"] for r in run.get("rounds", [])}
            per_round = (" " + ", ".join(f"{by_round[n]:,.0f}" if n in by_round else "–"
                                         for n in range(1, rounds + 1)) + " |") if rounds > 1 else ""
            lines.append(
                f"| {record['server']} | {record['model']} | {run.get('protocol', 'json')} | {run.get('rows', 1)} | "
                f"{run['concurrency']}{' †' if run.get('noisy') else ''} | "
                f"{run['ok_rps']:,.0f} |{per_round} {run['p50_ms']:.2f} | {run['p99_ms']:.2f} | {run['non2xx']} | "
                f"{run['socket_errors']} | {cpu['server_cpu_pct']:.0f} | {per_req} | {per_cpu} | "
                f"{cpu['other_on_server_core_pct']:.0f} | {cpu['other_on_load_core_pct']:.0f} |")
    lines += ["", "req/s counts 2xx answers only (gRPC: answers with grpc-status 0, see bench/serving/grpc_load.py); "
              "latencies are wrk's or h2load's (closed loop, per connection). "
              f"'server CPU %' is the CPU time of the server's whole process group over the window (100 = all of "
              f"core {server_cpu}); 'CPU µs/req' and 'req per CPU-s' divide by it, so they change little when "
              f"other processes share the core. 'others on core N' is that core's busy time minus the server "
              f"(core {server_cpu}) or wrk (core {load_cpu}). A point during which others used more than "
              f"{s['max_other']:g} % of either core, or during which the hypervisor took that much of core "
              f"{server_cpu} (steal), was measured again (up to {s['retries']} times, only "
              f"once the cores were quiet) and the least disturbed attempt is shown; † marks points that stayed "
              f"above it (every attempt is in the JSON)."
              + (f" With {rounds} rounds every figure is the median over the rounds (non-2xx and socket errors: "
                 f"their sum), † marks a point that stayed above it in at least one round, and 'req/s each round' "
                 f"gives each round's req/s in round order (each round's raw figures: `rounds` in the JSON)."
                 if rounds > 1 else "")]
    return lines


def _ceiling(results: dict[str, Any]) -> list[str]:
    lines = ["", f"## Raw ONNX Runtime ceiling (in process, 1 thread, core {results['settings']['server_cpu']})", "",
             "| model | batch | rows/s | rows per CPU-s | calls/s | call p50 µs |", "|---|--:|--:|--:|--:|--:|"]
    for model, ceiling in results["ceiling"].items():
        if "error" in ceiling:
            lines.append(f"| {model} | – | failed | | | |")
            continue
        for size, b in ceiling["batches"].items():
            per_cpu = f"{b['rows_per_cpu_s']:,.0f}" if b.get("rows_per_cpu_s") else "–"
            lines.append(f"| {model} | {size} | {b['rows_per_s']:,.0f} | {per_cpu} | {b['calls_per_s']:,.0f} | "
                         f"{b['call_p50_us']:.1f} |")
    quiet = results.get("quiet_before_ceiling")
    if quiet:
        lines += ["", f"Before the ceiling ran, other processes used {quiet['other_pct']} of the cores (after "
                  f"waiting {quiet['waited_s']:.0f} s); rows per CPU-s does not depend on them."]
    return lines


def _ratios(results: dict[str, Any]) -> list[str]:
    r = results["ratios"]
    rounds = _rounds(results)
    lines = ["", f"## Ratios at C={r['concurrency']}" + (f" (medians over {rounds} rounds)" if rounds > 1 else ""),
             "", "| model | metric | modelfleet | best of MLServer/KServe | modelfleet ÷ it | PyTriton | "
             "modelfleet ÷ PyTriton |", "|---|---|--:|--:|--:|--:|--:|"]
    for model, entry in r["models"].items():
        for metric, label in RATIO_METRICS.items():
            mk = entry.get(f"{metric}_vs_best_mlserver_kserve")
            tr = entry.get(f"{metric}_vs_pytriton")
            if not mk and not tr:
                continue
            ours_value = (mk or tr or {}).get("ours", 0.0)
            lines.append(
                f"| {model} | {label} | {ours_value:,.0f} | "
                + (f"{mk['peer_value']:,.0f} ({mk['peer']}) | **{mk['ratio']:.2f}×** | " if mk else "– | – | ")
                + (f"{tr['peer_value']:,.0f} | **{tr['ratio']:.2f}×** |" if tr else "– | – |"))
    names = list(SERVERS)
    lines += ["", f"p99 latency (ms) at C={r['concurrency']}:", "",
              "| model | " + " | ".join(names) + " |", "|---|" + "--:|" * len(names)]
    for model, entry in r["models"].items():
        if "p99_ms" in entry:
            lines.append(f"| {model} | " + " | ".join(
                f"{entry['p99_ms'][n]:.2f}" if n in entry["p99_ms"] else "–" for n in names) + " |")
    for model, entry in r["models"].items():
        e = entry.get("vs_ort_batch32_ceiling")
        if e:
            per_cpu = (f"; per CPU-second, {e['ours_rows_per_cpu_s']:,.0f} vs {e['ceiling_rows_per_cpu_s']:,.0f} "
                       f"rows = {100 * e['fraction_per_cpu_s']:.2f} %" if e.get("fraction_per_cpu_s") else "")
            lines.append("")
            lines.append(f"{model}: modelfleet at C={r['concurrency']} serves {e['ours_rows_per_s']:,.0f} rows/s = "
                         f"**{100 * e['fraction']:.2f} %** of the raw ONNX Runtime batch-32 ceiling "
                         f"({e['ceiling_rows_per_s']:,.0f} rows/s){per_cpu}.")
    return lines


def _others(results: dict[str, Any]) -> list[str]:
    server_cpu = results["settings"]["server_cpu"]
    runs = [run for _, record in measured_records(results) for run in record["runs"]]
    lines = ["", "## What else ran", "",
             f"Load average at start {results['loadavg_start']}, at end {results['loadavg_end']}. "
             f"Processes outside the benchmark that used ≥ 2 % of a core during a measured window (from "
             f"/proc; processes that started and ended inside a window are not seen, only their share of "
             f"'others on core N'):", ""]
    steal = [run["cpu"]["core_steal_pct"].get(f"cpu{server_cpu}", 0.0)
             for run in runs if "core_steal_pct" in run["cpu"]]
    if steal:
        lines += [f"- hypervisor steal on core {server_cpu} during measured windows: max {max(steal):.1f} %, "
                  f"mean {sum(steal) / len(steal):.1f} %"]
    seen: dict[int, dict[str, Any]] = {}
    for run in runs:
        for other in run["cpu"]["other_processes"]:
            entry = seen.setdefault(other["pid"], {"pct": 0.0, "windows": 0, "cores": set(),
                                                   "what": other["cmd"][:100] or f"[{other['comm']}]"})
            entry["pct"] = max(entry["pct"], other["pct"])
            entry["windows"] += 1
            entry["cores"].add(other["cpu"])
    busy = sorted((e for e in seen.values() if e["pct"] >= 2.0), key=lambda e: -e["pct"])
    lines += [f"- `{e['what']}` — up to {e['pct']:.1f} % of a core, in {e['windows']} window(s), seen on core(s) "
              f"{', '.join(map(str, sorted(e['cores'])))}" for e in busy[:20]] or ["- none"]
    if len(busy) > 20:
        lines.append(f"- … and {len(busy) - 20} more (see the JSON)")
    return lines


def _servers(results: dict[str, Any]) -> list[str]:
    rounds = _rounds(results)
    measured = [(f"{record['server']}" + (f" (round {number})" if rounds > 1 else ""), record)
                for number, record in measured_records(results)]
    lines = ["", "## Servers", "", "| server | model | what runs | others before start % | startup s | "
             "answers vs ORT | stop |", "|---|---|---|---|--:|---|---|"]
    for label, record in measured:
        verify_text = (f"max abs diff {record['verify']['max_abs_diff']:.1e}" if "verify" in record
                       else "not checked")
        stop_info = record["stop"]
        stop_text = (f"{stop_info['signal']} → exit {stop_info['exit_code']} in {stop_info['seconds']} s"
                     + ("" if stop_info["clean"] else f", NOT clean {stop_info.get('leftovers', '')}"))
        quiet = ", ".join(f"{k} {v:.0f}" for k, v in record["quiet_before"]["other_pct"].items())
        lines.append(f"| {label} | {record['model']} | {SERVERS[record['server']].summary} | "
                     f"{quiet} (waited {record['quiet_before']['waited_s']:.0f} s) | {record.get('startup_s', '–')} | "
                     f"{verify_text} | {stop_text} |")
    failures = [(label, rec) for label, rec in measured if rec.get("error")] + [
        (name, {"model": "*", "error": error}) for name, error in results["peer_setup_errors"].items()]
    problems = [(label, rec) for label, rec in measured if rec["log_problems"]]
    if failures or problems:
        lines += ["", "## Failures and log problems", ""]
        for label, rec in failures:
            lines += [f"- {label} / {rec['model']}:", "", "  ```", *[f"  {ln}" for ln in
                      str(rec["error"]).splitlines()[-20:]], "  ```"]
        for label, rec in problems:
            lines += [f"- {label} / {rec['model']} log lines that look like errors:", "", "  ```",
                      *[f"  {ln}" for ln in rec["log_problems"]], "  ```"]
    return lines


def _versions(results: dict[str, Any]) -> list[str]:
    env = results["environment"]
    lines = ["", "## Versions", ""]
    for name, versions in env["packages"].items():
        lines.append(f"- {name}: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())))
    return [*lines, f"- wrk: {env['wrk']}; {env.get('h2load', 'h2load: ?')}",
            f"- wall time of this run: {results['wall_s']:.0f} s", ""]
