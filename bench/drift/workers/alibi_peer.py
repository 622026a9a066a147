"""alibi-detect: ``KSDrift(x_ref, p_val=0.05)`` (``correction="bonferroni"``, its default), ``predict(window)``.

Setup (timed once): constructing the detector on the 100k-row reference. Timed per evaluation:
``predict`` on the raw 100k-row window (one ``scipy.stats.ks_2samp(..., mode="asymp")`` per feature
inside). With the default ``drift_type="batch"`` it returns every feature's p-value and the
Bonferroni threshold ``p_val / n_features``, and flags the batch when any p-value is below it: a
feature counts as detected when its p-value is below that threshold. (``drift_type="feature"``
would compare each p-value with the uncorrected ``p_val``; those decisions are kept in the JSON as
``detected_feature_mode``.)
"""

from __future__ import annotations

import os
from typing import Any

import common


def main() -> None:
    a = common.args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    from alibi_detect.cd import KSDrift

    out: dict[str, Any] = {"library": "alibi-detect",
                           "versions": common.versions("alibi-detect", "numpy", "scipy"),
                           "memory_import": common.memory()}
    reference, pool, meta = common.load(a["data_dir"])
    names: list[str] = meta["names"]
    out["memory_data"] = common.memory()
    setup: list[float] = []
    with common.stopwatch(setup):
        detector = KSDrift(reference, p_val=a["alpha"], correction="bonferroni")
    out["setup_s"] = setup[0]
    times: list[float] = []
    per_window: list[dict[str, Any]] = []
    memory: list[dict[str, float]] = []
    for start, end in common.windows(meta, a["evals"]):
        window = np.ascontiguousarray(pool[start:end])
        with common.stopwatch(times):
            result = detector.predict(window, return_p_val=True, return_distance=True)
        data = result["data"]
        pvalues = np.asarray(data["p_val"], dtype=np.float64)
        threshold = float(data["threshold"])
        per_window.append({"start": start, "end": end, "threshold": threshold, "batch_is_drift": int(data["is_drift"]),
                           "detected": {n: bool(pvalues[j] < threshold) for j, n in enumerate(names)},
                           "detected_feature_mode": {n: bool(pvalues[j] < a["alpha"]) for j, n in enumerate(names)},
                           "stats": {n: {"ks": float(data["distance"][j]), "ks_pvalue": float(data["p_val"][j])}
                                     for j, n in enumerate(names)}})
        memory.append({"window_end": end, **common.memory()})
        common.note(f"alibi-detect window {start}:{end} {times[-1] * 1e3:.0f} ms")
    out["evaluate"] = common.summary(times)
    out["windows"] = per_window
    out["memory_per_eval"] = memory
    common.emit(out)


if __name__ == "__main__":
    main()
