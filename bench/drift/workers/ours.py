"""modelfleet's streaming drift statistics (runs in modelfleet's interpreter).

Modes (first key ``mode`` of the JSON argument):

``eval``
    Build the reference profiles (timed as setup), feed the stream pool into
    ``DriftWindows(profiles, bucket_seconds, {"window": window_seconds})`` one step (= one bucket) at a
    time and evaluate the window after every step once it holds ``window_rows`` rows: timings of
    ``evaluate()`` alone and of ``add()`` alone, per-feature statistics and the decisions of every
    window: KS + Bonferroni, and the drift exporter's default rule (``DetectionRule()``: the same test,
    with a PSI threshold of 0 by default, i.e. the test alone; the result records the rule used).
    Then ingest rate per add() batch size, each on a fresh ``DriftWindows``.
    Writes the profiles to ``profiles.json`` in the data directory for the ``stream`` mode.
``stream``
    Load the profiles from ``profiles.json`` (as the drift exporter does), stream ``stream_rows`` rows
    in ``batch_rows`` batches, cycling over the first ``cycle_rows`` rows of the stream pool, with one
    bucket per ``step_rows`` rows and one ``evaluate()`` per bucket; RSS sampled every
    ``rss_every`` rows.
"""

from __future__ import annotations

import gc
import time
from pathlib import Path
from typing import Any

import common
import numpy as np
import numpy.typing as npt

from modelfleet.drift.metrics import DetectionRule
from modelfleet.stats.drift import ColumnDrift, detections, ks_error_bound
from modelfleet.stats.profile import ColumnProfile, DataProfile, NumericProfile, profile_numeric
from modelfleet.stats.window import DriftWindows

FloatArray = npt.NDArray[np.float64]
WINDOW = "window"


def columns(block: FloatArray, names: list[str]) -> dict[str, FloatArray]:
    """One batch as the exporter hands it over: a column view per feature of a row-major block."""
    return {name: block[:, j] for j, name in enumerate(names)}


def stats_of(result: dict[str, ColumnDrift]) -> dict[str, dict[str, float | None]]:
    return {name: {"ks": d.ks_statistic, "ks_pvalue": d.ks_pvalue, "wasserstein_normed": d.wasserstein_normed,
                   "psi": d.psi, "js": d.js_distance, "rows": d.rows} for name, d in result.items()}


def decide(result: dict[str, ColumnDrift], alpha: float) -> dict[str, bool]:
    return detections({name: d.pvalue for name, d in result.items()}, "bonferroni", alpha)


def run_eval(a: dict[str, Any]) -> dict[str, Any]:
    from importlib.metadata import version

    out: dict[str, Any] = {"library": "modelfleet", "versions": common.versions("modelfleet", "numpy", "scipy"),
                           "memory_import": common.memory()}
    reference, pool, meta = common.load(a["data_dir"])
    names: list[str] = meta["names"]
    step, window_rows = meta["step_rows"], meta["window_rows"]
    bucket_s = float(a["bucket_seconds"])
    window_s = bucket_s * window_rows / step
    out["memory_data"] = common.memory()

    setup: list[float] = []
    with common.stopwatch(setup):
        profiles: dict[str, ColumnProfile] = {name: profile_numeric(reference[:, j], a["bins"])
                                              for j, name in enumerate(names)}
    out["setup_s"] = setup[0]
    profile = DataProfile(rows=reference.shape[0], bins=a["bins"], features=profiles, predictions={})
    (Path(a["data_dir"]) / "profiles.json").write_text(profile.model_dump_json())
    out["profile_json_bytes"] = (Path(a["data_dir"]) / "profiles.json").stat().st_size
    out["ks_error_bound_max"] = max(_ks_bound(p) for p in profiles.values())

    drift = DriftWindows(profiles, bucket_s, {WINDOW: window_s})
    exporter_rule = DetectionRule()  # the drift exporter's default: the test rejects (PSI threshold 0)
    out["exporter_rule"] = {"correction": exporter_rule.correction, "alpha": exporter_rule.alpha,
                            "psi_threshold": exporter_rule.psi_threshold}
    out["config"] = {"bucket_seconds": bucket_s, "window_seconds": window_s, "rows_per_bucket": step,
                     "buckets_per_window": window_rows // step, "ring_nbytes": drift.ring.nbytes,
                     "ring_width": drift.ring.width, "modelfleet": version("modelfleet")}
    add_times: list[float] = []
    eval_times: list[float] = []
    per_window: list[dict[str, Any]] = []
    steps = pool.shape[0] // step
    for k in range(steps):
        now = k * bucket_s + bucket_s / 2
        batch = columns(pool[k * step:(k + 1) * step], names)
        with common.stopwatch(add_times):
            drift.add(now, batch)
        end = (k + 1) * step
        if end < window_rows:
            continue
        with common.stopwatch(eval_times):
            result = drift.evaluate(WINDOW, now)
        rows = drift.rows(WINDOW, now)
        if rows != window_rows:
            raise RuntimeError(f"window ending at row {end} holds {rows} rows, expected {window_rows}")
        per_window.append({"start": end - window_rows, "end": end, "detected": decide(result, a["alpha"]),
                           "detected_exporter_default": exporter_rule.detect(result), "stats": stats_of(result)})
    # More evaluate() samples on the last window (the same call a scrape makes), for a stable median.
    now = (steps - 1) * bucket_s + bucket_s / 2
    repeat_times: list[float] = []
    for _ in range(a["eval_repeats"]):
        with common.stopwatch(repeat_times):
            drift.evaluate(WINDOW, now)
    out["evaluate"] = common.summary(eval_times)
    out["evaluate_repeated"] = common.summary(repeat_times)
    out["evaluate_all"] = common.summary(eval_times + repeat_times)
    out["add_step"] = common.summary(add_times)
    out["add_step"]["values_per_s"] = step * len(names) / (float(np.median(add_times)))
    out["windows"] = per_window
    out["memory_after_eval"] = common.memory()
    del drift
    gc.collect()

    ingest: dict[str, Any] = {}
    for batch_rows in a["batch_sizes"]:
        ingest[str(batch_rows)] = ingest_rate(profiles, pool, names, batch_rows, step, bucket_s, window_s,
                                              a["ingest_rows"])
    out["ingest"] = ingest
    return out


def _ks_bound(profile: Any) -> float:
    return ks_error_bound(profile) if isinstance(profile, NumericProfile) else 0.0


def ingest_rate(profiles: dict[str, ColumnProfile], pool: FloatArray, names: list[str], batch_rows: int, step: int,
                bucket_s: float, window_s: float, rows_total: int) -> dict[str, Any]:
    """add() throughput for one batch size: wall and CPU seconds spent inside add() only."""
    drift = DriftWindows(profiles, bucket_s, {WINDOW: window_s})
    blocks = [columns(pool[s:s + batch_rows], names) for s in range(0, pool.shape[0] - batch_rows + 1, batch_rows)]
    done, wall, cpu, calls = 0, 0.0, 0.0, 0
    while done < rows_total:
        block = blocks[calls % len(blocks)]
        now = (done // step) * bucket_s + bucket_s / 2
        c0, t0 = time.process_time(), time.perf_counter()
        drift.add(now, block)
        wall += time.perf_counter() - t0
        cpu += time.process_time() - c0
        done += batch_rows
        calls += 1
    values = done * len(names)
    return {"batch_rows": batch_rows, "rows": done, "calls": calls, "wall_s": wall, "cpu_s": cpu,
            "values_per_s": values / wall, "values_per_cpu_s": values / cpu if cpu > 0 else None,
            "rows_per_s": done / wall, "us_per_call": wall / calls * 1e6}


def read_rows(path: Path, rows: int) -> FloatArray:
    """The first ``rows`` rows of a C-order float64 ``.npy`` file, read straight into one array.

    (No memory map: its touched pages would count in the RSS next to the copy.)
    """
    with path.open("rb") as handle:
        version = np.lib.format.read_magic(handle)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = reader(handle)
        if fortran or dtype != np.float64 or len(shape) != 2:
            raise ValueError(f"{path}: expected a C-order float64 matrix")
        out = np.empty((min(rows, shape[0]), shape[1]), dtype=np.float64)
        handle.readinto(out.data.cast("B"))
    return out


def run_stream(a: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"library": "modelfleet", "memory_import": common.memory()}
    root = Path(a["data_dir"])
    profile = DataProfile.model_validate_json((root / "profiles.json").read_text())
    names = list(profile.features)
    cycle = read_rows(root / "stream.npy", a["cycle_rows"])
    step, batch_rows = a["step_rows"], a["batch_rows"]
    bucket_s = float(a["bucket_seconds"])
    window_s = bucket_s * a["window_rows"] / step
    drift = DriftWindows(profile.features, bucket_s, {WINDOW: window_s})
    blocks = [columns(cycle[s:s + batch_rows], names) for s in range(0, cycle.shape[0] - batch_rows + 1, batch_rows)]
    out["cycle_bytes"] = cycle.nbytes
    out["ring_nbytes"] = drift.ring.nbytes
    gc.collect()
    out["memory_start"] = common.memory()
    samples: list[dict[str, Any]] = []
    add_wall = add_cpu = 0.0
    eval_times: list[float] = []
    done, calls, last_bucket = 0, 0, 0
    started = time.perf_counter()
    while done < a["stream_rows"]:
        block = blocks[calls % len(blocks)]
        bucket = done // step
        now = bucket * bucket_s + bucket_s / 2
        if bucket != last_bucket and done >= a["window_rows"]:
            with common.stopwatch(eval_times):
                drift.evaluate(WINDOW, (bucket - 1) * bucket_s + bucket_s / 2)
        last_bucket = bucket
        c0, t0 = time.process_time(), time.perf_counter()
        drift.add(now, block)
        add_wall += time.perf_counter() - t0
        add_cpu += time.process_time() - c0
        done += batch_rows
        calls += 1
        if done % a["rss_every"] == 0:
            samples.append({"rows": done, **common.memory(), "elapsed_s": round(time.perf_counter() - started, 2)})
            common.note(f"modelfleet stream: {done:,} rows, RSS {samples[-1]['rss_mib']} MiB")
    values = done * len(names)
    out.update({"rows": done, "batch_rows": batch_rows, "calls": calls, "add_wall_s": add_wall, "add_cpu_s": add_cpu,
                "values_per_s": values / add_wall, "values_per_cpu_s": values / add_cpu if add_cpu else None,
                "evaluate": common.summary(eval_times), "rss_samples": samples,
                "elapsed_s": time.perf_counter() - started, "dropped_late": drift.ring.dropped_late})
    return out


def main() -> None:
    a = common.args()
    result = run_eval(a) if a["mode"] == "eval" else run_stream(a)
    common.emit(result)


if __name__ == "__main__":
    main()
