"""The exact computation with scipy: two-sample KS (``ks_2samp``) per feature on the raw window.

Timed per evaluation: the 20 ``ks_2samp`` calls on a 100k-row window against the 100k-row reference
(scipy's default method: exact statistic, asymptotic p-value at these sizes). Untimed and only for
the report: the exact normed Wasserstein distance (``wasserstein_distance / std(reference)``, what
Evidently computes) and PSI / JS on the reference-decile bins, to characterise each feature's drift
and to check modelfleet's sketch-based statistics against the exact ones.
"""

from __future__ import annotations

from typing import Any

import common
import numpy as np
import numpy.typing as npt
from scipy import stats
from scipy.spatial import distance

FloatArray = npt.NDArray[np.float64]


def bonferroni(pvalues: dict[str, float], alpha: float) -> dict[str, bool]:
    return {name: p < alpha / len(pvalues) for name, p in pvalues.items()}


def decile_fractions(reference: FloatArray, values: FloatArray, bins: int) -> tuple[FloatArray, FloatArray]:
    edges = np.unique(np.quantile(reference, np.arange(1, bins) / bins))
    edges = edges[edges > reference.min()]
    ref = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=edges.size + 1) / reference.size
    cur = np.bincount(np.searchsorted(edges, values, side="right"), minlength=edges.size + 1) / values.size
    return ref, cur


def main() -> None:
    a = common.args()
    out: dict[str, Any] = {"library": "scipy", "versions": common.versions("scipy", "numpy"),
                           "memory_import": common.memory()}
    reference, pool, meta = common.load(a["data_dir"])
    names: list[str] = meta["names"]
    ref_cols = [np.ascontiguousarray(reference[:, j]) for j in range(len(names))]
    ref_std = [float(c.std()) for c in ref_cols]
    out["memory_data"] = common.memory()
    times: list[float] = []
    per_window: list[dict[str, Any]] = []
    for index, (start, end) in enumerate(common.windows(meta, a["evals"])):
        window = pool[start:end]
        pvalues: dict[str, float] = {}
        ks: dict[str, float] = {}
        with common.stopwatch(times):
            for j, name in enumerate(names):
                result = stats.ks_2samp(ref_cols[j], window[:, j])
                ks[name], pvalues[name] = float(result.statistic), float(result.pvalue)
        entry: dict[str, Any] = {"start": start, "end": end, "detected": bonferroni(pvalues, a["alpha"]),
                                 "stats": {n: {"ks": ks[n], "ks_pvalue": pvalues[n]} for n in names}}
        if index < a["exact_extras"]:
            for j, name in enumerate(names):
                column = np.ascontiguousarray(window[:, j])
                ref_frac, cur_frac = decile_fractions(ref_cols[j], column, a["bins"])
                eps = 1e-4
                e, c = np.maximum(ref_frac, eps), np.maximum(cur_frac, eps)
                entry["stats"][name].update({
                    "wasserstein_normed": float(stats.wasserstein_distance(ref_cols[j], column)) / ref_std[j],
                    "psi": float(np.sum((c - e) * np.log(c / e))),
                    "js": float(distance.jensenshannon(ref_frac, cur_frac, base=2))})
        per_window.append(entry)
        common.note(f"scipy window {start}:{end} {times[-1] * 1e3:.0f} ms")
    out["evaluate"] = common.summary(times)
    out["windows"] = per_window
    out["memory_after_eval"] = common.memory()
    common.emit(out)


if __name__ == "__main__":
    main()
