"""Evidently: ``Report([DataDriftPreset()], include_tests=True).run(window_df, reference_df)``.

Its defaults for numeric columns with more than 1000 reference rows: normed Wasserstein distance,
column drifted at >= 0.1; the default tests report one "Value Drift for column X" test per column
(FAIL = drift) and a dataset-level share-of-drifted-columns test. Timed per evaluation: ``run()``
(which also prepares the preset's widgets, as the standard API always does) plus reading the
per-column results from the snapshot.
"""

from __future__ import annotations

from typing import Any

import common


def main() -> None:
    a = common.args()
    import pandas as pd
    from evidently import Report
    from evidently.presets import DataDriftPreset

    out: dict[str, Any] = {"library": "evidently", "versions": common.versions("evidently", "pandas", "numpy", "scipy"),
                           "memory_import": common.memory()}
    reference, pool, meta = common.load(a["data_dir"])
    names: list[str] = meta["names"]
    ref_df = pd.DataFrame(reference, columns=names)
    out["memory_data"] = common.memory()
    times: list[float] = []
    per_window: list[dict[str, Any]] = []
    memory: list[dict[str, float]] = []
    for start, end in common.windows(meta, a["evals"]):
        window_df = pd.DataFrame(pool[start:end], columns=names)
        with common.stopwatch(times):
            report = Report([DataDriftPreset()], include_tests=True)
            snapshot = report.run(current_data=window_df, reference_data=ref_df)
            raw = snapshot.dict()
        detected: dict[str, bool] = {}
        scores: dict[str, dict[str, Any]] = {}
        for test in raw.get("tests", []):
            params = test.get("metric_config", {}).get("params", {})
            if params.get("type", "").endswith("ValueDrift") and params.get("column") in names:
                detected[params["column"]] = test["status"] != "SUCCESS"
        for metric in raw.get("metrics", []):
            config = metric.get("config", {})
            if config.get("type", "").endswith("ValueDrift") and config.get("column") in names:
                scores[config["column"]] = {"score": metric["value"], "method": config.get("method"),
                                            "threshold": config.get("threshold")}
        per_window.append({"start": start, "end": end, "detected": detected, "stats": scores})
        memory.append({"window_end": end, **common.memory()})
        common.note(f"evidently window {start}:{end} {times[-1]:.1f} s, RSS {memory[-1]['rss_mib']} MiB")
        del report, snapshot, raw
    out["evaluate"] = common.summary(times)
    out["setup_s"] = 0.0  # nothing is fitted ahead: every run() reads the raw reference again
    out["windows"] = per_window
    out["memory_per_eval"] = memory
    common.emit(out)


if __name__ == "__main__":
    main()
