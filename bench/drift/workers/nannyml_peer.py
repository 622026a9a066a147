"""NannyML: ``UnivariateDriftCalculator`` with KS and Jensen-Shannon, chunked, default thresholds.

``fit`` on the 100k-row reference (timed once as setup) with ``chunk_size = step_rows`` (10k): the
reference yields 10 chunks, from which NannyML derives its default thresholds (mean + 3 standard
deviations of the reference chunks' values, ``StandardDeviationThreshold``). Timed per evaluation:
``calculate`` on the 100k-row window (10 chunks of 10k) plus ``to_df()`` to read the alerts.
KS above 10k reference rows is NannyML's "estimated" KS (10,000-bin reference histogram).

A feature counts as detected in a window when any of the window's chunks raises an alert for that
method (what NannyML's alert summary shows for the analysis period); the JSON also keeps the share
of alerting chunks.
"""

from __future__ import annotations

import os
from typing import Any

import common

METHODS = ("kolmogorov_smirnov", "jensen_shannon")


def main() -> None:
    a = common.args()
    os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")
    import pandas as pd
    from nannyml.drift.univariate import UnivariateDriftCalculator

    out: dict[str, Any] = {"library": "nannyml", "versions": common.versions("nannyml", "pandas", "numpy", "scipy"),
                           "memory_import": common.memory()}
    reference, pool, meta = common.load(a["data_dir"])
    names: list[str] = meta["names"]
    ref_df = pd.DataFrame(reference, columns=names)
    out["memory_data"] = common.memory()
    calculator = UnivariateDriftCalculator(column_names=names, continuous_methods=list(METHODS),
                                           chunk_size=meta["step_rows"])
    setup: list[float] = []
    with common.stopwatch(setup):
        calculator.fit(ref_df)
    out["setup_s"] = setup[0]
    times: list[float] = []
    per_window: list[dict[str, Any]] = []
    memory: list[dict[str, float]] = []
    for start, end in common.windows(meta, a["evals"]):
        window_df = pd.DataFrame(pool[start:end], columns=names)
        with common.stopwatch(times):
            table = calculator.calculate(window_df).to_df()
        analysis = table[table[("chunk", "chunk", "period")] == "analysis"]
        entry: dict[str, Any] = {"start": start, "end": end, "chunks": len(analysis)}
        for method in METHODS:
            alerts = {n: analysis[(n, method, "alert")].astype(bool) for n in names}
            entry[f"detected_{method}"] = {n: bool(v.any()) for n, v in alerts.items()}
            entry[f"alert_share_{method}"] = {n: float(v.mean()) for n, v in alerts.items()}
            entry[f"stats_{method}"] = {
                n: {"value_mean": float(analysis[(n, method, "value")].mean()),
                    "upper_threshold": float(analysis[(n, method, "upper_threshold")].iloc[0])} for n in names}
        entry["detected"] = {n: entry["detected_kolmogorov_smirnov"][n] or entry["detected_jensen_shannon"][n]
                             for n in names}
        per_window.append(entry)
        memory.append({"window_end": end, **common.memory()})
        common.note(f"nannyml window {start}:{end} {times[-1] * 1e3:.0f} ms")
    out["evaluate"] = common.summary(times)
    out["windows"] = per_window
    out["memory_per_eval"] = memory
    common.emit(out)


if __name__ == "__main__":
    main()
