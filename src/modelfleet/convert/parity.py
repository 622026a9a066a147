"""Numeric parity between the source model and ONNX Runtime on the spec's sample inputs.

An element passes when ``|actual - expected| <= atol * scale + rtol * |expected|`` with
``scale = max(1, max |expected|)`` over that output: the absolute tolerance grows with the output's
range, so a regressor predicting values near 1000 is held to 1000 × atol (float32 trees differ from
float64 scikit-learn by ~1e-2 there, onnxruntime#4130) while probabilities keep atol itself.
Non-float outputs (labels) must be identical, and for classifiers so must the predicted classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from modelfleet.errors import ValidationError
from modelfleet.spec import ModelSpec
from modelfleet.stats.columns import LABEL_COLUMN, prediction_columns


def _float_report(name: str, expected: npt.NDArray[Any], actual: npt.NDArray[Any], rtol: float,
                  atol: float) -> dict[str, Any]:
    want = expected.astype(np.float64)
    have = actual.astype(np.float64)
    if not np.isfinite(have).all() and np.isfinite(want).all():
        index = tuple(int(i) for i in np.argwhere(~np.isfinite(have))[0])
        raise ValidationError("parity", f"output {name!r}: ONNX Runtime produced {have[index]} at index "
                                        f"{list(index)} where the source gives {want[index]:.9g}")
    scale = max(1.0, float(np.nanmax(np.abs(want))) if want.size else 1.0)
    diff = np.abs(have - want)
    allowed = atol * scale + rtol * np.abs(want)
    ratio = np.where(allowed > 0, diff / np.where(allowed > 0, allowed, 1.0), np.where(diff > 0, np.inf, 0.0))
    worst = tuple(int(i) for i in np.unravel_index(int(np.nanargmax(ratio)), ratio.shape)) if ratio.size else ()
    report = {
        "kind": "float",
        "elements": int(want.size),
        "max_abs_diff": float(diff.max()) if diff.size else 0.0,
        "worst_index": list(worst),
        "expected": float(want[worst]) if ratio.size else None,
        "actual": float(have[worst]) if ratio.size else None,
        "allowed": float(allowed[worst]) if ratio.size else None,
        "failing": int((ratio > 1).sum()),
        "rtol": rtol,
        "atol": atol,
        "scale": scale,
    }
    if report["failing"]:
        raise ValidationError(
            "parity",
            f"output {name!r}: {report['failing']} of {report['elements']} elements differ beyond tolerance; "
            f"worst at index {report['worst_index']}: source {report['expected']:.9g}, ONNX "
            f"{report['actual']:.9g}, |diff| {diff[worst]:.3g} > allowed {report['allowed']:.3g} "
            f"(atol {atol:g} × scale {scale:.4g} + rtol {rtol:g} × |source|)")
    return report


def _exact_report(name: str, expected: npt.NDArray[Any], actual: npt.NDArray[Any]) -> dict[str, Any]:
    want = expected.astype(str).ravel()
    have = actual.astype(str).ravel()
    mismatched = np.flatnonzero(want != have)
    if mismatched.size:
        first = int(mismatched[0])
        raise ValidationError("parity", f"output {name!r}: {mismatched.size} of {want.size} values differ; "
                                        f"first at flat index {first}: source {want[first]!r}, ONNX {have[first]!r}")
    return {"kind": "exact", "elements": int(want.size), "mismatches": 0}


def compare_outputs(spec: ModelSpec, output_names: Sequence[str], expected: Sequence[npt.NDArray[Any]],
                    actual: Sequence[npt.NDArray[Any]], rtol: float, atol: float) -> dict[str, Any]:
    """Parity figures per output (raising :class:`ValidationError` on the first failure)."""
    if len(expected) != len(actual):
        raise ValidationError("parity", f"the source returns {len(expected)} output(s), ONNX Runtime "
                                        f"returns {len(actual)} ({list(output_names)})")
    reports: dict[str, Any] = {}
    for name, want, have in zip(output_names, expected, actual, strict=True):
        want_array, have_array = np.asarray(want), np.asarray(have)
        if want_array.size != have_array.size:
            raise ValidationError("parity", f"output {name!r}: the source gives shape {list(want_array.shape)}, "
                                            f"ONNX Runtime {list(have_array.shape)}")
        have_array = have_array.reshape(want_array.shape)
        if want_array.dtype.kind == "f" or have_array.dtype.kind == "f":
            reports[name] = _float_report(name, want_array, have_array, rtol, atol)
        else:
            reports[name] = _exact_report(name, want_array, have_array)
    if spec.task.type == "classification":
        want_labels = prediction_columns(spec, output_names, list(expected))[LABEL_COLUMN].values
        have_labels = prediction_columns(spec, output_names, list(actual))[LABEL_COLUMN].values
        reports[f"predicted {LABEL_COLUMN}"] = _exact_report(f"predicted {LABEL_COLUMN}",
                                                             np.asarray(want_labels), np.asarray(have_labels))
    return reports
