#!/usr/bin/env python3
"""Drift benchmark: modelfleet's streaming drift statistics against Evidently, alibi-detect, NannyML and scipy.

One run, on the same generated data for every library (20 numeric features of mixed shapes, a
100k-row reference, a stream in which 5 features drift moderately):

(a) cost of one drift evaluation of a 100k-row × 20-feature sliding window, recomputed every 10k rows;
(b) ingest rate (feature values per second on one core) of modelfleet's ``DriftWindows.add``;
(c) RSS: modelfleet streaming 10M rows (sampled every 1M rows), the peers evaluating 100k-row windows;
plus detection quality (true / false positives on the 5 drifted / 15 undrifted features) of every
library at its default threshold, of modelfleet with KS + Bonferroni, and of the exact scipy KS +
Bonferroni.

Every library runs in its own subprocess (clean RSS), pinned to one core with ``taskset``, each peer
from its own virtualenv under .cache/bench/drift-venvs/ (created on first use, reused afterwards).
Writes a markdown table and the raw JSON to .cache/bench/drift-<timestamp>.{md,json}.

Standard library only: numpy and the libraries run in the workers (workers/*.py). See README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))  # started by path (make bench-drift): bench.common from the checkout

from bench.common import (  # noqa: E402
    children_cpu_s,
    cores_lock,
    cpu_ticks,
    default_modelfleet_python,
    host_environment,
    loadavg,
    log,
    run_quiet,
)
from bench.common import ensure_venv as common_ensure_venv  # noqa: E402
from bench.common import package_versions as common_package_versions  # noqa: E402

WORKERS = HERE / "workers"
MIB = 1024 * 1024
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Versions found to install and run on Python 3.11 from PyPI (November 2026). Each peer gets its own
# virtualenv: alibi-detect 0.13 needs numpy < 2; Evidently 0.7.23 fails to import with pandas 3
# (pandas.core.dtypes.common.infer_dtype_from_object is gone); NannyML 0.13.1 imports statsmodels
# (nannyml.plots) without declaring it.
PEER_REQUIREMENTS: dict[str, list[str]] = {
    "alibi-detect": ["alibi-detect==0.13.0"],
    "nannyml": ["nannyml==0.13.1", "statsmodels"],
    "evidently": ["evidently==0.7.23", "pandas<3"],
}
PEER_IMPORTS = {"alibi-detect": "alibi_detect.cd", "nannyml": "nannyml.drift.univariate",
                "evidently": "evidently.presets"}
# One thread everywhere: the measurement is per core, and the workers are pinned to one core anyway.
THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "NUMBA_NUM_THREADS": "1", "NUMEXPR_MAX_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3",
              "NML_DISABLE_USAGE_LOGGING": "1", "TOKENIZERS_PARALLELISM": "false"}
ALL_LIBRARIES = ("modelfleet", "scipy", "alibi-detect", "nannyml", "evidently")


@dataclass(frozen=True)
class Library:
    name: str
    worker: str
    venv: str | None  # None: modelfleet's interpreter
    api: str


LIBRARIES: dict[str, Library] = {lib.name: lib for lib in (
    Library("modelfleet", "ours.py", None,
            "DriftWindows.evaluate() over 10 ring buckets of count sketches (PSI, JS, KS, normed Wasserstein; "
            "KS p-values vectorised)"),
    Library("scipy", "scipy_exact.py", None, "scipy.stats.ks_2samp per feature on the raw window (exact KS)"),
    Library("alibi-detect", "alibi_peer.py", "alibi-detect",
            "KSDrift(x_ref, p_val=0.05, correction='bonferroni').predict(window)"),
    Library("nannyml", "nannyml_peer.py", "nannyml",
            "UnivariateDriftCalculator(KS + JS, chunk_size=step).fit(ref); calculate(window).to_df()"),
    Library("evidently", "evidently_peer.py", "evidently",
            "Report([DataDriftPreset()], include_tests=True).run(window_df, reference_df).dict()"),
)}


# --------------------------------------------------------------------------- utilities


def core_ticks(cpu: int | None) -> tuple[int, int]:
    """(busy, total) jiffies of core ``cpu`` (all cores when None); stolen time is not busy."""
    busy, total, _steal = cpu_ticks(all_cores=True).get("cpu" if cpu is None else f"cpu{cpu}", (0, 0, 0))
    return busy, total


def wait_quiet(cpu: int | None, max_other_pct: float, max_wait_s: float) -> float:
    """Wait (up to ``max_wait_s``) until core ``cpu`` is at most ``max_other_pct`` % busy over 2 s; returns it."""
    deadline = time.monotonic() + max_wait_s
    while True:
        b0, t0 = core_ticks(cpu)
        time.sleep(2.0)
        b1, t1 = core_ticks(cpu)
        busy = 100.0 * (b1 - b0) / max(1, t1 - t0)
        if busy <= max_other_pct or time.monotonic() >= deadline:
            return busy
        log(f"core {cpu} is {busy:.0f} % busy with other work; waiting for it to quiet down")


def fmt_ms(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:,.2f} s"
    if value >= 10:
        return f"{value:,.0f} ms"
    return f"{value:.2f} ms"


def fmt_rate(value: float) -> str:
    return f"{value / 1e6:.2f} M" if value >= 1e6 else f"{value / 1e3:,.0f} k"


# --------------------------------------------------------------------------- virtualenvs


def package_versions(python: str, names: Sequence[str]) -> dict[str, str]:
    return common_package_versions(python, names, with_python=True)


def ensure_venv(name: str, base_python: str, venvs: Path, rebuild: bool) -> dict[str, Any]:
    """Create (or reuse) ``venvs/<name>`` with the peer's pinned requirements; raises RuntimeError."""
    described = common_ensure_venv(venvs / name, base_python, PEER_REQUIREMENTS[name], PEER_IMPORTS[name],
                                   package_names=[name, "numpy", "pandas", "scipy", "scikit-learn", "statsmodels"],
                                   with_python=True, upgrade_pip=True, env=THREAD_ENV, rebuild=rebuild)
    del described["libdir"]
    return described


# --------------------------------------------------------------------------- workers


def run_worker(python: str, worker: str, spec: dict[str, Any], cpu: int | None, timeout: float) -> dict[str, Any]:
    """Run one worker in a fresh process (pinned to ``cpu``); its last stdout line is its JSON result."""
    argv = [python, str(WORKERS / worker), json.dumps(spec)]
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu), *argv]
    env = {**os.environ, **THREAD_ENV, "PYTHONDONTWRITEBYTECODE": "1"}
    before = loadavg()
    busy0, total0 = core_ticks(cpu)
    cpu0 = children_cpu_s()
    started = time.monotonic()
    try:
        result = subprocess.run(argv, stdout=subprocess.PIPE, text=True, check=False, timeout=timeout, env=env,
                                cwd=WORKERS)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s", "argv": argv}
    wall = time.monotonic() - started
    lines = [ln for ln in result.stdout.splitlines() if ln.startswith("{")]
    if result.returncode != 0 or not lines:
        return {"error": f"exited {result.returncode}; stdout tail: {result.stdout[-1500:]}", "argv": argv}
    out: dict[str, Any] = json.loads(lines[-1])
    busy1, total1 = core_ticks(cpu)
    worker_s = children_cpu_s() - cpu0
    core_busy_s = (busy1 - busy0) / CLK_TCK
    out["process_wall_s"] = round(wall, 2)
    out["process_cpu_s"] = round(worker_s, 2)
    out["core_busy_pct"] = round(100.0 * (busy1 - busy0) / max(1, total1 - total0), 1)
    # Other processes' use of the worker's core while it ran (the worker used worker_s of it).
    out["other_on_core_pct"] = round(max(0.0, 100.0 * (core_busy_s - worker_s) / wall), 1) if cpu is not None else None
    out["loadavg_before"] = before
    out["loadavg_after"] = loadavg()
    return out


# --------------------------------------------------------------------------- analysis


def confusion(detected: dict[str, bool], drifted: set[str]) -> dict[str, Any]:
    found = {n for n, flag in detected.items() if flag}
    return {"tp": len(found & drifted), "fn": len(drifted - found), "fp": len(found - drifted),
            "tn": len(set(detected) - drifted - found), "false_alarms": sorted(found - drifted),
            "missed": sorted(drifted - found)}


def detection_views(name: str, result: dict[str, Any]) -> dict[str, str]:
    """The decision rules reported for one library: label -> key of the per-window dict."""
    if name == "nannyml":
        return {"NannyML KS (any chunk alerts)": "detected_kolmogorov_smirnov",
                "NannyML JS (any chunk alerts)": "detected_jensen_shannon"}
    if name == "modelfleet":
        views = {"modelfleet KS + Bonferroni": "detected"}
        rule = result.get("exporter_rule")
        if rule:
            views[f"modelfleet exporter default (KS + Bonferroni and PSI ≥ {rule['psi_threshold']:g})"] = \
                "detected_exporter_default"
        return views
    label = { "scipy": "scipy exact KS + Bonferroni",
             "alibi-detect": "alibi-detect KSDrift (Bonferroni)",
             "evidently": "Evidently DataDriftPreset (normed Wasserstein ≥ 0.1)"}[name]
    return {label: "detected"}


def headline(results: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """modelfleet's per-evaluation timing used for the ratios and the target: the one evaluate() per bucket
    of the long stream (cache state as in the exporter: right after add()); else all eval-worker calls."""
    stream = results["libraries"].get("modelfleet-stream", {}).get("evaluate", {})
    if stream.get("n"):
        return stream, "evaluate() once per bucket while streaming"
    return results["libraries"]["modelfleet"]["evaluate_all"], "evaluate() in the eval worker"


def headline_ms(results: dict[str, Any]) -> float:
    value: float = headline(results)[0]["median_ms"]
    return value


def analyse(results: dict[str, Any]) -> dict[str, Any]:
    meta = results["meta"]
    drifted = {f["name"] for f in meta["features"] if f["drifted"]}
    libs = results["libraries"]
    analysis: dict[str, Any] = {"detection": {}, "accuracy": {}, "ratios": {}, "targets": {}}
    for name, result in libs.items():
        if "windows" not in result:
            continue
        for label, key in detection_views(name, result).items():
            windows = result["windows"]
            first = confusion(windows[0][key], drifted)
            every = [confusion(w[key], drifted) for w in windows]
            analysis["detection"][label] = {
                "library": name, "first_window": first, "windows": len(windows),
                "windows_all_5_found": sum(c["tp"] == len(drifted) for c in every),
                "windows_with_false_alarm": sum(c["fp"] > 0 for c in every),
                "false_alarms_total": sum(c["fp"] for c in every),
                "tests_total": len(every) * (len(windows[0][key]) - len(drifted))}
            if name == "nannyml":
                share_key = key.replace("detected_", "alert_share_")
                for group, want in (("undrifted", False), ("drifted", True)):
                    shares = [w[share_key][f] for w in windows for f in w[share_key] if (f in drifted) == want]
                    analysis["detection"][label][f"chunk_alert_rate_{group}"] = sum(shares) / max(1, len(shares))
            if name == "alibi-detect":
                feature_mode = [confusion(w["detected_feature_mode"], drifted) for w in windows]
                analysis["detection"][label]["feature_mode_first_window"] = feature_mode[0]
    # modelfleet's sketch statistics against the exact ones, on the windows both evaluated.
    ours, exact = libs.get("modelfleet", {}), libs.get("scipy", {})
    if "windows" in ours and "windows" in exact:
        by_end = {w["end"]: w for w in ours["windows"]}
        ks_err, p_agree, decisions_agree, compared = 0.0, 0, 0, 0
        w_err_abs, w_err_rel, w_worst = 0.0, 0.0, ""
        for w in exact["windows"]:
            mine = by_end.get(w["end"])
            if mine is None:
                continue
            compared += 1
            decisions_agree += mine["detected"] == w["detected"]
            for feature, s in w["stats"].items():
                m = mine["stats"][feature]
                ks_err = max(ks_err, abs(m["ks"] - s["ks"]))
                p_agree += (m["ks_pvalue"] < 0.05 / len(w["stats"])) == (s["ks_pvalue"] < 0.05 / len(w["stats"]))
                if "wasserstein_normed" in s:
                    diff = abs(m["wasserstein_normed"] - s["wasserstein_normed"])
                    w_err_abs = max(w_err_abs, diff)
                    if s["wasserstein_normed"] >= 0.05 and diff / s["wasserstein_normed"] > w_err_rel:
                        w_err_rel = diff / s["wasserstein_normed"]
                        w_worst = (f"{feature}: {m['wasserstein_normed']:.4f} vs exact "
                                   f"{s['wasserstein_normed']:.4f}")
        analysis["accuracy"] = {"windows_compared": compared, "max_abs_ks_error": ks_err,
                                "ks_error_bound": ours.get("ks_error_bound_max"),
                                "windows_same_decisions": decisions_agree,
                                "max_abs_wasserstein_normed_error": w_err_abs,
                                "max_rel_wasserstein_normed_error_where_exact_ge_0.05": w_err_rel,
                                "worst_wasserstein_normed": w_worst}
    # Ratios.
    peers = {n: r["evaluate"]["median_ms"] for n, r in libs.items()
             if n in ("alibi-detect", "nannyml", "evidently") and r.get("evaluate", {}).get("n")}
    if "evaluate" in ours and peers:
        fastest = min(peers, key=lambda n: peers[n])
        mine = headline_ms(results)
        analysis["ratios"]["evaluate"] = {
            "ours_ms": mine, "ours_p95_ms": headline(results)[0]["p95_ms"], "ours_timing": headline(results)[1],
            "fastest_peer": fastest, "fastest_peer_ms": peers[fastest],
            "ratio_vs_fastest_peer": peers[fastest] / mine,
            "ratio_vs_each": {n: v / mine for n, v in peers.items()},
            "ratio_vs_scipy_exact": (exact["evaluate"]["median_ms"] / mine) if exact.get("evaluate") else None,
            "ours_in_stream_ms": results["libraries"].get("modelfleet-stream", {}).get("evaluate", {}).get("median_ms")}
    stream = libs.get("modelfleet-stream", {})
    if "rss_samples" in stream:
        samples = stream["rss_samples"]
        rss = [s["rss_mib"] for s in samples]
        marks = {}
        for fraction in (0.1, 0.5, 1.0):
            target = int(stream["rows"] * fraction)
            near = min(samples, key=lambda s, t=target: abs(s["rows"] - t))  # type: ignore[misc]
            marks[str(near["rows"])] = near["rss_mib"]
        analysis["ratios"]["rss"] = {"marks": marks, "min_mib": min(rss), "max_mib": max(rss),
                                     "growth_first_to_last_mib": rss[-1] - rss[0],
                                     "peak_mib": max(stream["memory_end"]["peak_rss_mib"],
                                                     *(s["peak_rss_mib"] for s in samples)),
                                     "flat": max(rss) - min(rss) < 2.0}
        analysis["ratios"]["ingest_stream_values_per_s"] = stream["values_per_s"]
    if "ingest" in ours:
        analysis["ratios"]["ingest"] = {k: v["values_per_s"] for k, v in ours["ingest"].items()}
    # Targets of the issue.
    t = analysis["targets"]
    if "evaluate" in analysis["ratios"]:
        e = analysis["ratios"]["evaluate"]
        t["a_eval_le_2ms"] = e["ours_ms"] <= 2.0
        t["a_eval_p95_le_2ms"] = e["ours_p95_ms"] <= 2.0
        t["a_100x_fastest_peer"] = e["ratio_vs_fastest_peer"] >= 100
    if "ingest_stream_values_per_s" in analysis["ratios"]:
        t["b_ge_1M_values_per_s"] = analysis["ratios"]["ingest_stream_values_per_s"] >= 1e6
    if "rss" in analysis["ratios"]:
        r = analysis["ratios"]["rss"]
        t["c_lt_150MB_and_flat"] = r["peak_mib"] * MIB / 1e6 < 150 and r["flat"]
    d = analysis["detection"]
    exporter = [v for label, v in d.items() if label.startswith("modelfleet exporter default")]
    if exporter:
        t["detection_exporter_default_5_of_5_no_false_alarm"] = (
            exporter[0]["first_window"]["tp"] == len(drifted) and exporter[0]["first_window"]["fp"] == 0)
    if "modelfleet KS + Bonferroni" in d:
        first = d["modelfleet KS + Bonferroni"]["first_window"]
        t["detection_5_of_5_no_false_alarm"] = first["tp"] == len(drifted) and first["fp"] == 0
        if "scipy exact KS + Bonferroni" in d:
            ex = d["scipy exact KS + Bonferroni"]["first_window"]
            t["detection_at_least_exact"] = first["tp"] >= ex["tp"] and first["fp"] <= ex["fp"]
    return analysis


# --------------------------------------------------------------------------- report


def markdown(results: dict[str, Any]) -> str:
    s, env, meta, libs, an = (results["settings"], results["environment"], results["meta"], results["libraries"],
                              results["analysis"])
    drifted = [f for f in meta["features"] if f["drifted"]]
    nfeat = len(meta["features"])
    pin = f"`taskset -c {s['cpu']}`" if s["cpu"] is not None else "not pinned"
    lines = [f"# Drift benchmark {results['timestamp']}", "",
             f"Command: `{results['command']}`  ",
             f"Machine: {env['cpu_model']}, {env['cores']} cores, kernel {env['kernel']}, {env['memory_gib']} GiB; "
             f"every worker a fresh process on one core ({pin}), one BLAS/OpenMP thread.  ",
             f"Data: {nfeat} numeric features, reference {meta['reference_rows']:,} rows, window "
             f"{meta['window_rows']:,} rows recomputed every {meta['step_rows']:,} rows; "
             f"{len(drifted)} features drift in the stream ({', '.join(f['name'] for f in drifted)}).  ",
             f"modelfleet at {env['git']['commit'][:12]}"
             + (f" (uncommitted changes in src/modelfleet/stats: {', '.join(env['git']['stats_dirty'])})"
                if env["git"]["stats_dirty"] else "") + f"; wall time of this run {results['wall_s']:.0f} s"
             + (f" (of which {results['cores_lock']['waited_s']:.0f} s waiting for another benchmark's cores lock)"
                if results.get("cores_lock", {}).get("waited_s") else "") + ".", ""]

    lines += ["## Summary", "",
              "| library | setup on the reference | per evaluation, median (p95) | vs modelfleet "
              "| ingest values/s/core | RSS | drifted found | false alarms |", "|---|--:|--:|--:|--:|--:|--:|--:|"]
    ours_ms = headline_ms(results) if "evaluate_all" in libs.get("modelfleet", {}) else None
    for name in s["libraries"]:
        r = libs.get(name, {})
        if "error" in r:
            lines.append(f"| {name} | failed: {str(r['error']).splitlines()[0][:120]} | | | | | | |")
            continue
        ev = headline(results)[0] if name == "modelfleet" else r.get("evaluate") or {}
        setup = fmt_ms(r["setup_s"] * 1e3) if r.get("setup_s") else "none"
        per = f"{fmt_ms(ev['median_ms'])} ({fmt_ms(ev['p95_ms'])})" if ev.get("n") else "–"
        rel = f"{ev['median_ms'] / ours_ms:,.0f}×" if ours_ms and ev.get("n") and name != "modelfleet" else "1×"
        if name == "modelfleet":
            stream = libs.get("modelfleet-stream", {})
            ingest = (f"{fmt_rate(stream['values_per_s'])} ({stream['batch_rows']:,}-row add())"
                      if "values_per_s" in stream else "–")
            rss = an["ratios"].get("rss")
            rss_text = "–"
            if rss:
                values = " / ".join(f"{v:.0f}" for v in rss["marks"].values())
                at = " / ".join(f"{int(k) / 1e6:g}M" for k in rss["marks"])
                rss_text = f"{values} MiB after {at} rows streamed"
        else:
            ingest = "n/a — batch API"
            rss_text = f"{r['memory_end']['peak_rss_mib']:.0f} MiB peak ({meta['window_rows'] // 1000}k windows)"
        views = [(label, v) for label, v in an["detection"].items() if v["library"] == name]
        found = "; ".join(f"{v['first_window']['tp']}/{len(drifted)}" + (f" ({label.split()[1]})"
                          if len(views) > 1 else "") for label, v in views) or "–"
        alarms = "; ".join(f"{v['first_window']['fp']}/{nfeat - len(drifted)}" + (f" ({label.split()[1]})"
                           if len(views) > 1 else "") for label, v in views) or "–"
        label = {"modelfleet": "**modelfleet**", "scipy": "scipy exact KS"}.get(name, name)
        lines.append(f"| {label} | {setup} | {per} | {rel} | {ingest} | {rss_text} | {found} | {alarms} |")
    lines += ["", "Detection columns: the first window (stream rows 0–"
              f"{meta['window_rows']:,}), each library at its default threshold (modelfleet and scipy: KS p-value "
              f"< {s['alpha']}/{nfeat}, Bonferroni). Setup: building the reference profile / fitting the detector "
              "once (Evidently re-reads the raw reference in every run).", ""]

    # (a)
    def other(r: dict[str, Any]) -> str:
        value = r.get("other_on_core_pct")
        return "–" if value is None else f"{value:.1f} %"

    lines += ["## (a) Cost per evaluation", "",
              "| library | what is timed | evaluations | median | min | p95 | other processes on the core |",
              "|---|---|--:|--:|--:|--:|--:|"]
    for name in s["libraries"]:
        r = libs.get(name, {})
        if "evaluate" not in r:
            continue
        api = LIBRARIES[name].api
        if name == "modelfleet":
            step_k = f"{meta['step_rows'] // 1000}k"
            for key, what in (("evaluate", f"evaluate() after each {step_k}-row add(), sliding over the stream pool"),
                              ("evaluate_repeated", "evaluate() repeated on the last window")):
                e = r[key]
                lines.append(f"| modelfleet | {what} | {e['n']} | {fmt_ms(e['median_ms'])} | {fmt_ms(e['min_ms'])} | "
                             f"{fmt_ms(e['p95_ms'])} | {other(r)} |")
            st = libs.get("modelfleet-stream", {}).get("evaluate")
            if st and st.get("n"):
                lines.append(f"| modelfleet | evaluate() once per bucket while streaming "
                             f"{libs['modelfleet-stream']['rows']:,} rows | {st['n']} | {fmt_ms(st['median_ms'])} | "
                             f"{fmt_ms(st['min_ms'])} | {fmt_ms(st['p95_ms'])} | {other(libs['modelfleet-stream'])} |")
            a = r["add_step"]
            lines.append(f"| modelfleet | add() of one {step_k}-row step (not part of the evaluation) | {a['n']} | "
                         f"{fmt_ms(a['median_ms'])} | {fmt_ms(a['min_ms'])} | {fmt_ms(a['p95_ms'])} | {other(r)} |")
            continue
        e = r["evaluate"]
        lines.append(f"| {name} | {api} | {e['n']} | {fmt_ms(e['median_ms'])} | {fmt_ms(e['min_ms'])} | "
                     f"{fmt_ms(e['p95_ms'])} | {other(r)} |")
    ratio = an["ratios"].get("evaluate")
    if ratio:
        lines += ["", f"modelfleet {fmt_ms(ratio['ours_ms'])} per evaluation (median of {ratio['ours_timing']}); "
                  f"fastest peer: {ratio['fastest_peer']} {fmt_ms(ratio['fastest_peer_ms'])} → "
                  f"**{ratio['ratio_vs_fastest_peer']:,.0f}× cheaper**; "
                  + ", ".join(f"{n} {v:,.0f}×" for n, v in ratio["ratio_vs_each"].items())
                  + (f"; exact scipy KS {ratio['ratio_vs_scipy_exact']:,.0f}×" if ratio["ratio_vs_scipy_exact"] else "")
                  + ". \"Other processes on the core\": CPU time other processes took on the pinned core while the "
                  "worker ran (/proc/stat minus the worker's own CPU time), as a share of the worker's wall time; a "
                  f"worker disturbed by more than {s['max_other']:g} % was run again (up to {s.get('retries', 0)} "
                  "times) and the least disturbed run is shown (every attempt's share is in the JSON)."]

    # (b)
    ours = libs.get("modelfleet", {})
    if "ingest" in ours:
        lines += ["", "## (b) Ingest: DriftWindows.add()", "",
                  "| batch rows | rows added | calls | µs per call | values/s (wall) | values per CPU-second |",
                  "|--:|--:|--:|--:|--:|--:|"]
        for v in ours["ingest"].values():
            per_cpu = fmt_rate(v["values_per_cpu_s"]) if v["values_per_cpu_s"] else "–"
            lines.append(f"| {v['batch_rows']:,} | {v['rows']:,} | {v['calls']:,} | {v['us_per_call']:,.0f} | "
                         f"{fmt_rate(v['values_per_s'])} | {per_cpu} |")
        stream = libs.get("modelfleet-stream", {})
        if "values_per_s" in stream:
            lines.append(f"| {stream['batch_rows']:,} (10M stream) | {stream['rows']:,} | {stream['calls']:,} | "
                         f"{stream['add_wall_s'] / stream['calls'] * 1e6:,.0f} | {fmt_rate(stream['values_per_s'])} | "
                         f"{fmt_rate(stream['values_per_cpu_s'])} |")
        lines += ["", f"A value is one feature of one row ({nfeat} per row); each batch is handed over as column "
                  "views of a row-major block, as the exporter does. Peers: n/a — batch APIs; the caller keeps "
                  f"the raw window ({meta['window_rows']:,} × {nfeat} float64 = "
                  f"{meta['window_rows'] * nfeat * 8 / MIB:.0f} MiB) and hands it over whole at every evaluation."]

    # (c)
    lines += ["", "## (c) Memory (RSS)", ""]
    stream = libs.get("modelfleet-stream", {})
    if "rss_samples" in stream:
        lines += [f"modelfleet streaming {stream['rows']:,} rows in {stream['batch_rows']:,}-row batches "
                  f"(cycling over {stream['cycle_bytes'] / MIB:.0f} MiB of stream data held by the worker), "
                  f"one evaluate() per {meta['step_rows']:,}-row bucket; ring {stream['ring_nbytes'] / MIB:.2f} MiB:",
                  "", "| rows streamed | RSS MiB | peak RSS MiB |", "|--:|--:|--:|",
                  f"| 0 (after import {stream['memory_import']['rss_mib']:.0f} MiB, profiles + data loaded) | "
                  f"{stream['memory_start']['rss_mib']:.1f} | {stream['memory_start']['peak_rss_mib']:.1f} |"]
        lines += [f"| {x['rows']:,} | {x['rss_mib']:.1f} | {x['peak_rss_mib']:.1f} |" for x in stream["rss_samples"]]
        rss = an["ratios"]["rss"]
        lines += ["", f"Growth from the first to the last sample: {rss['growth_first_to_last_mib']:+.1f} MiB "
                  f"({'flat' if rss['flat'] else 'NOT flat'}); peak {rss['peak_mib']:.1f} MiB = "
                  f"{rss['peak_mib'] * MIB / 1e6:.0f} MB.", ""]
    data_mib = (meta["reference_rows"] + meta["pool_rows"]) * nfeat * 8 / MIB
    lines += [f"Every library evaluating {meta['window_rows']:,}-row windows (RSS MiB; each worker also holds the "
              f"reference and the stream pool as arrays, {data_mib:.0f} MiB):", "",
              "| library | after import | + data loaded | after each evaluation | peak |", "|---|--:|--:|--:|--:|"]
    for name in s["libraries"]:
        r = libs.get(name, {})
        if "memory_import" not in r:
            continue
        samples = r.get("memory_per_eval") or ([r["memory_after_eval"]] if "memory_after_eval" in r else [])
        after = " → ".join(f"{m['rss_mib']:.0f}" for m in samples)
        lines.append(f"| {name} | {r['memory_import']['rss_mib']:.0f} | {r['memory_data']['rss_mib']:.0f} | "
                     f"{after} | {r['memory_end']['peak_rss_mib']:.0f} |")

    # Detection
    lines += ["", "## Detection", "",
              "| rule | drifted found (first window) | false alarms (first window) | missed | false alarms on | "
              "windows | windows with all drifted found | windows with a false alarm |",
              "|---|--:|--:|---|---|--:|--:|--:|"]
    for label, v in an["detection"].items():
        f = v["first_window"]
        lines.append(f"| {label} | {f['tp']}/{len(drifted)} | {f['fp']}/{nfeat - len(drifted)} | "
                     f"{', '.join(f['missed']) or '–'} | {', '.join(f['false_alarms']) or '–'} | {v['windows']} | "
                     f"{v['windows_all_5_found']} | {v['windows_with_false_alarm']} |")
    for label, v in an["detection"].items():
        if "chunk_alert_rate_undrifted" in v:
            lines += ["", f"{label.split(' (')[0]}: share of {meta['step_rows']:,}-row chunks that alert, over all "
                      f"its windows: {v['chunk_alert_rate_undrifted'] * 100:.1f} % for undrifted features, "
                      f"{v['chunk_alert_rate_drifted'] * 100:.1f} % for drifted ones."]
    alibi = an["detection"].get("alibi-detect KSDrift (Bonferroni)", {}).get("feature_mode_first_window")
    if alibi:
        lines += ["", f"alibi-detect with `drift_type='feature'` compares each p-value with the uncorrected p_val: "
                  f"{alibi['tp']}/{len(drifted)} found, {alibi['fp']} false alarm(s) "
                  f"({', '.join(alibi['false_alarms']) or '–'}) in the first window."]
    lines += ["", "Per feature, first window (exact values from scipy on the raw data):", "",
              "| feature | distribution | drift | exact KS | modelfleet KS | exact normed W | modelfleet normed W | "
              "Evidently normed W | modelfleet p | modelfleet PSI | decisions: mf / mf exporter default / scipy / "
              "alibi / nml-KS / nml-JS / Evidently |",
              "|---|---|---|--:|--:|--:|--:|--:|--:|--:|---|"]
    ex_w = libs.get("scipy", {}).get("windows", [{}])[0].get("stats", {})
    mf_w = libs.get("modelfleet", {}).get("windows", [{}])[0].get("stats", {})
    ev_w = libs.get("evidently", {}).get("windows", [{}])[0].get("stats", {})

    def decision(name: str, key: str, feature: str) -> str:
        windows = libs.get(name, {}).get("windows")
        if not windows or key not in windows[0]:
            return "·"
        return "D" if windows[0][key].get(feature) else "–"

    for f in meta["features"]:
        n = f["name"]
        e, m = ex_w.get(n, {}), mf_w.get(n, {})

        def num(x: Any, digits: int = 4) -> str:
            return f"{x:.{digits}f}" if isinstance(x, int | float) else "·"

        marks = " / ".join(decision(lib, key, n) for lib, key in (
            ("modelfleet", "detected"), ("modelfleet", "detected_exporter_default"), ("scipy", "detected"),
            ("alibi-detect", "detected"),
            ("nannyml", "detected_kolmogorov_smirnov"), ("nannyml", "detected_jensen_shannon"),
            ("evidently", "detected")))
        name = f"**{n}**" if f["drifted"] else n
        lines.append(f"| {name} | {f['family']} | {f['drift'] or '–'} | {num(e.get('ks'))} | {num(m.get('ks'))} | "
                     f"{num(e.get('wasserstein_normed'))} | {num(m.get('wasserstein_normed'))} | "
                     f"{num(ev_w.get(n, {}).get('score'))} | {m.get('ks_pvalue', 0):.2g} | {num(m.get('psi'))} | "
                     f"{marks} |")
    lines += ["", "D = drift detected, – = not detected. NannyML counts a feature when any of the window's 10 chunks "
              "alerts (its default thresholds: mean + 3 sd of the reference chunks' values)."]
    acc = an.get("accuracy")
    if acc:
        lines += ["", "## modelfleet's sketch statistics against the exact ones", "",
                  f"Over {acc['windows_compared']} windows × {nfeat} features: largest |KS − exact KS| = "
                  f"{acc['max_abs_ks_error']:.5f} (documented bound {acc['ks_error_bound']:.4f}); identical "
                  f"Bonferroni decisions in {acc['windows_same_decisions']}/{acc['windows_compared']} windows. "
                  f"Normed Wasserstein (first window): largest absolute error "
                  f"{acc['max_abs_wasserstein_normed_error']:.4f}, largest relative error where the exact value is "
                  f"≥ 0.05: {acc['max_rel_wasserstein_normed_error_where_exact_ge_0.05'] * 100:.1f} % "
                  f"({acc['worst_wasserstein_normed'] or '–'})."]
    targets = an.get("targets", {})
    if targets:
        lines += ["", "## Targets of the issue", ""]
        names = {"a_eval_le_2ms": "(a) ≤ 2 ms per evaluation (median)",
                 "a_eval_p95_le_2ms": "(a) ≤ 2 ms per evaluation at the 95th percentile too",
                 "a_100x_fastest_peer": "(a) ≥ 100× cheaper than "
                 "the fastest peer", "b_ge_1M_values_per_s": "(b) ≥ 1M values/s/core (10M stream)",
                 "c_lt_150MB_and_flat": "(c) < 150 MB and flat over the stream",
                 "detection_5_of_5_no_false_alarm": "detection: 5/5 drifted, 0 false alarms (first window)",
                 "detection_at_least_exact": "detection at least as good as exact KS + Bonferroni",
                 "detection_exporter_default_5_of_5_no_false_alarm": "detection with the exporter's default rule "
                 "(DetectionRule()): 5/5 drifted, 0 false alarms"}
        lines += [f"- {names.get(k, k)}: {'met' if v else '**not met**'}" for k, v in targets.items()]
    lines += ["", "## Versions", ""]
    for name in s["libraries"]:
        versions = libs.get(name, {}).get("versions") or libs.get(name, {}).get("packages")
        if versions:
            lines.append(f"- {name}: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    failures = {n: r["error"] for n, r in libs.items() if "error" in r}
    if failures or results["setup_errors"]:
        lines += ["", "## Failures", ""]
        for n, err in {**results["setup_errors"], **failures}.items():
            lines += [f"- {n}:", "", "  ```", *[f"  {ln}" for ln in str(err).splitlines()[-15:]], "  ```"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main


def environment() -> dict[str, Any]:
    return host_environment(["src/modelfleet/stats"], dirty_key="stats_dirty")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--modelfleet-python", default=default_modelfleet_python(),
                   help="interpreter with modelfleet installed (default: /work/.venv-dev/bin/python if present, "
                        "else the checkout's .venv)")
    p.add_argument("--base-python", default="python3.11", help="interpreter the peers' virtualenvs are made from")
    p.add_argument("--libraries", default=",".join(ALL_LIBRARIES),
                   help=f"comma-separated subset of {','.join(ALL_LIBRARIES)}")
    p.add_argument("--reference-rows", type=int, default=100_000)
    p.add_argument("--window-rows", type=int, default=100_000)
    p.add_argument("--step-rows", type=int, default=10_000, help="rows between recomputations (= one bucket)")
    p.add_argument("--pool-rows", type=int, default=200_000,
                   help="stream rows generated for the sliding windows (default 200k: 11 windows)")
    p.add_argument("--peer-evals", type=int, default=5, help="windows evaluated by each peer (default 5)")
    p.add_argument("--evidently-evals", type=int, default=3, help="windows evaluated by Evidently (default 3)")
    p.add_argument("--stream-rows", type=int, default=10_000_000, help="rows streamed for the RSS test")
    p.add_argument("--stream-batch-rows", type=int, default=10_000)
    p.add_argument("--rss-every", type=int, default=1_000_000, help="RSS sample interval in rows")
    p.add_argument("--cycle-rows", type=int, default=100_000,
                   help="stream rows the 10M-row worker holds and cycles over (default 100k)")
    p.add_argument("--ingest-batch-rows", default="100,1000,10000", help="add() batch sizes for the ingest rate")
    p.add_argument("--ingest-rows", type=int, default=1_000_000, help="rows added per ingest batch size")
    p.add_argument("--eval-repeats", type=int, default=300, help="extra evaluate() calls on the last window")
    p.add_argument("--bins", type=int, default=10, help="PSI bins of the profiles (the spec default)")
    p.add_argument("--bucket-seconds", type=float, default=10.0)
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--cpu", type=int, default=0, help="core every worker is pinned to")
    p.add_argument("--no-taskset", action="store_true", help="do not pin the workers")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per worker")
    p.add_argument("--max-other", type=float, default=10.0,
                   help="before each worker, wait until its core is at most this %% busy (default 10)")
    p.add_argument("--quiet-wait", type=float, default=60.0, help="longest such wait in seconds (default 60)")
    p.add_argument("--retries", type=int, default=2,
                   help="extra runs of a worker during which others took more than --max-other %% of its core; "
                        "the least disturbed run is kept (default 2)")
    p.add_argument("--quick", action="store_true",
                   help="small sizes for a smoke test (20k reference/window, 1M-row stream, 2 peer windows)")
    p.add_argument("--lock-timeout", type=float, default=3600.0,
                   help="longest wait for .cache/bench/cores.lock, held by a benchmark that is measuring")
    p.add_argument("--cache", type=Path, default=ROOT / ".cache" / "bench")
    p.add_argument("--rebuild-venvs", action="store_true", help="recreate the peers' virtualenvs")
    p.add_argument("--prepare-only", action="store_true", help="only create the virtualenvs")
    p.add_argument("--render", type=Path, metavar="JSON",
                   help="measure nothing: redo the analysis and the markdown of a saved drift-<timestamp>.json")
    args = p.parse_args(argv)
    if args.quick:
        args.reference_rows, args.window_rows, args.step_rows, args.pool_rows = 20_000, 20_000, 2_000, 40_000
        args.stream_rows, args.rss_every, args.stream_batch_rows = 1_000_000, 100_000, 2_000
        args.peer_evals, args.evidently_evals, args.ingest_rows, args.cycle_rows = 2, 1, 200_000, 20_000
        args.eval_repeats = 50
    args.libraries = [x for x in args.libraries.split(",") if x]
    unknown = set(args.libraries) - set(ALL_LIBRARIES)
    if unknown:
        p.error(f"unknown libraries: {', '.join(sorted(unknown))}")
    args.ingest_batch_rows = [int(x) for x in args.ingest_batch_rows.split(",") if x]
    if args.window_rows % args.step_rows or args.pool_rows < args.window_rows:
        p.error("--window-rows must be a multiple of --step-rows and at most --pool-rows")
    if args.stream_batch_rows > args.step_rows or args.step_rows % args.stream_batch_rows:
        p.error("--stream-batch-rows must divide --step-rows")
    if args.rss_every % args.stream_batch_rows or args.cycle_rows % args.stream_batch_rows:
        p.error("--rss-every and --cycle-rows must be multiples of --stream-batch-rows")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.command = shlex.join(["python", str(Path(sys.argv[0])), *(argv if argv is not None else sys.argv[1:])])
    started = time.monotonic()
    cpu = None if args.no_taskset else args.cpu
    if cpu is not None and shutil.which("taskset") is None:
        raise SystemExit("taskset not found (apt-get install -y util-linux) — or pass --no-taskset")
    if args.render:
        results = json.loads(args.render.read_text())
        results["analysis"] = analyse(results)
        args.render.write_text(json.dumps(results, indent=1))
        report = markdown(results)
        args.render.with_suffix(".md").write_text(report)
        print(report)
        return 0
    cache: Path = args.cache.resolve()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    mf_python = args.modelfleet_python
    mf_versions = package_versions(mf_python, ["modelfleet", "numpy", "scipy", "pydantic"])
    if "modelfleet" not in mf_versions:
        raise SystemExit(f"{mf_python}: modelfleet is not installed there (see --modelfleet-python)")
    setup_errors: dict[str, str] = {}
    venvs: dict[str, dict[str, Any]] = {}
    for name in args.libraries:
        venv = LIBRARIES[name].venv
        if venv is None:
            continue
        try:
            venvs[name] = ensure_venv(venv, args.base_python, cache / "drift-venvs", args.rebuild_venvs)
            state = "reused" if venvs[name]["reused"] else f"built in {venvs[name]['install_s']} s"
            log(f"venv {venv}: {state} ({', '.join(f'{k} {v}' for k, v in venvs[name]['packages'].items())})")
        except (RuntimeError, OSError) as exc:
            setup_errors[name] = str(exc)
            log(f"venv {venv}: FAILED: {exc}")
    if args.prepare_only:
        return 1 if setup_errors else 0

    with cores_lock(cache / "cores.lock", args.lock_timeout) as lock:
        if lock["waited_s"]:
            log(f"waited {lock['waited_s']} s for {lock['path']}")
        results = measure(args, cache, stamp, cpu, mf_python, mf_versions, venvs, setup_errors)
        results["cores_lock"] = lock
    results["wall_s"] = time.monotonic() - started
    results["analysis"] = analyse(results)
    md_path, json_path = cache / f"drift-{stamp}.md", cache / f"drift-{stamp}.json"
    json_path.write_text(json.dumps(results, indent=1))  # first: a report bug must not lose the measurements
    report = markdown(results)
    md_path.write_text(report)
    print(report)
    log(f"wrote {md_path} and {json_path}")
    return 1 if setup_errors or any("error" in r for r in results["libraries"].values()) else 0


def measure(args: argparse.Namespace, cache: Path, stamp: str, cpu: int | None, mf_python: str,
            mf_versions: dict[str, str], venvs: dict[str, dict[str, Any]],
            setup_errors: dict[str, str]) -> dict[str, Any]:
    """Generate the data and run every worker (while holding the cores lock); the raw results."""
    data_dir = cache / "drift-data" / stamp
    log(f"generating data in {data_dir}")
    prepared = run_quiet([mf_python, str(WORKERS / "data.py"), json.dumps(
        {"data_dir": str(data_dir), "reference_rows": args.reference_rows, "pool_rows": args.pool_rows,
         "step_rows": args.step_rows, "window_rows": args.window_rows})])
    if prepared.returncode != 0:
        raise SystemExit(f"data generation failed:\n{prepared.stderr[-3000:]}")
    meta: dict[str, Any] = json.loads(prepared.stdout.splitlines()[-1])
    common = {"data_dir": str(data_dir), "alpha": args.alpha, "bins": args.bins}
    windows_in_pool = (args.pool_rows - args.window_rows) // args.step_rows + 1
    results: dict[str, Any] = {
        "timestamp": stamp,
        "command": args.command,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()} | {"cpu": cpu},
        "environment": environment() | {"modelfleet_python": mf_python, "modelfleet_packages": mf_versions},
        "meta": meta, "setup_errors": setup_errors, "venvs": venvs, "libraries": {},
    }
    plan: list[tuple[str, str, dict[str, Any]]] = []
    if "modelfleet" in args.libraries:
        plan.append(("modelfleet", mf_python, common | {
            "mode": "eval", "bucket_seconds": args.bucket_seconds, "eval_repeats": args.eval_repeats,
            "batch_sizes": args.ingest_batch_rows, "ingest_rows": args.ingest_rows}))
        plan.append(("modelfleet-stream", mf_python, common | {
            "mode": "stream", "bucket_seconds": args.bucket_seconds, "step_rows": args.step_rows,
            "window_rows": args.window_rows, "batch_rows": args.stream_batch_rows, "cycle_rows": args.cycle_rows,
            "stream_rows": args.stream_rows, "rss_every": args.rss_every}))
    if "scipy" in args.libraries:
        plan.append(("scipy", mf_python, common | {"evals": windows_in_pool, "exact_extras": 1}))
    for name in ("alibi-detect", "nannyml", "evidently"):
        if name in args.libraries and name in venvs:
            evals = args.evidently_evals if name == "evidently" else args.peer_evals
            plan.append((name, venvs[name]["python"], common | {"evals": min(evals, windows_in_pool)}))
    for name, python, spec in plan:
        worker = LIBRARIES["modelfleet" if name == "modelfleet-stream" else name].worker
        attempts: list[dict[str, Any]] = []
        for attempt in range(args.retries + 1):
            quiet = wait_quiet(cpu, args.max_other, args.quiet_wait)
            log(f"{name}: running {worker} ({spec.get('mode', 'eval')}), attempt {attempt + 1}; "
                f"core busy before: {quiet:.0f} %")
            attempts.append(run_worker(python, worker, spec, cpu, args.timeout))
            other = attempts[-1].get("other_on_core_pct")
            if "error" in attempts[-1] or other is None or other <= args.max_other:
                break
            log(f"{name}: other processes took {other} % of core {cpu} during the run; measuring again")
        ok = [a for a in attempts if "error" not in a]
        result = min(ok, key=lambda a: a.get("other_on_core_pct") or 0.0) if ok else attempts[-1]
        result["attempts_other_on_core_pct"] = [a.get("other_on_core_pct") for a in attempts]
        results["libraries"][name] = result
        if "error" in result:
            log(f"{name}: FAILED: {result['error']}")
        else:
            ev = result.get("evaluate_all") or result.get("evaluate") or {}
            log(f"{name}: done in {result['process_wall_s']} s, other processes used "
                f"{result['other_on_core_pct']} % of its core"
                + (f"; evaluation median {fmt_ms(ev['median_ms'])}" if ev.get("n") else ""))
    shutil.rmtree(data_dir, ignore_errors=True)
    return results


if __name__ == "__main__":
    sys.exit(main())
