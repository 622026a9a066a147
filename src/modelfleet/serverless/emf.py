"""CloudWatch Embedded Metric Format: one log line per inference call, metrics named as the server's.

CloudWatch turns each line into metrics in ``Namespace`` (default ``modelfleet``) with the dimensions
``model, version`` (and ``model, version, reason`` for failures), no agent or API call needed:

- ``nv_inference_request_success`` / ``nv_inference_request_failure`` (Count; reasons as the server's
  ``reason`` label: ``invalid_request``, ``queue_full``, ``inference``, ``internal``, ``shutting_down``),
- ``nv_inference_count`` (rows), ``nv_inference_exec_count`` (model executions),
- ``modelfleet_request_duration_seconds`` (Seconds; the data plane's own measurement, successes only,
  as the server's histogram) and ``modelfleet_function_duration_seconds`` (the whole call in the handler).

The values are what the data plane counted during the call (its Prometheus counters before and after),
so the function and the server cannot disagree on what a failure is.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from modelfleet.serve.metrics import FAILURE_REASONS

_NAMES = ("nv_inference_request_success", "nv_inference_request_failure", "nv_inference_count",
          "nv_inference_exec_count", "modelfleet_request_duration_seconds", "modelfleet_function_duration_seconds")


@dataclass(frozen=True)
class CallMetrics:
    """What one call did, in the server's terms."""

    success: int
    failure_reason: str | None  # None: no failure counted (a success, or refused before the data plane)
    rows: int
    executions: int
    request_seconds: float | None  # the data plane's measurement (successes only)
    function_seconds: float
    status: int

    @classmethod
    def between(cls, before: Mapping[str, float], after: Mapping[str, float], elapsed: float,
                status: int) -> CallMetrics:
        """From the data plane's counters before and after the call."""
        def delta(key: str) -> float:
            return after[key] - before[key]

        reason = next((r for r in FAILURE_REASONS if delta(r) > 0), None)
        if reason is None and status >= 500:
            reason = "internal"  # the handler answered a bug itself; the data plane never saw it fail
        success = int(delta("success"))
        return cls(success, reason, int(delta("count")), int(delta("exec")),
                   delta("duration") if success else None, elapsed, status)


def emf_line(namespace: str, model: str, version: str, call: CallMetrics, timestamp: float | None = None) -> str:
    """One EMF JSON document (a single line, no newline)."""
    values: dict[str, Any] = {
        "nv_inference_request_success": call.success,
        "nv_inference_request_failure": 0 if call.failure_reason is None else 1,
        "nv_inference_count": call.rows,
        "nv_inference_exec_count": call.executions,
        "modelfleet_function_duration_seconds": round(call.function_seconds, 6),
    }
    if call.request_seconds is not None:
        values["modelfleet_request_duration_seconds"] = round(call.request_seconds, 6)
    dimensions = [["model", "version"]]
    properties: dict[str, Any] = {"model": model, "version": version, "status": call.status}
    if call.failure_reason is not None:
        dimensions.append(["model", "version", "reason"])
        properties["reason"] = call.failure_reason
    units = {"modelfleet_request_duration_seconds": "Seconds", "modelfleet_function_duration_seconds": "Seconds"}
    document = {
        "_aws": {"Timestamp": int((time.time() if timestamp is None else timestamp) * 1000),
                 "CloudWatchMetrics": [{"Namespace": namespace, "Dimensions": dimensions,
                                        "Metrics": [{"Name": n, "Unit": units.get(n, "Count")}
                                                    for n in _NAMES if n in values]}]},
        **properties, **values,
    }
    return orjson.dumps(document).decode()


def parse_emf(line: str) -> dict[str, Any] | None:
    """The EMF document in a log line (``None`` when the line is not one): for tests and log tools."""
    start = line.find("{")
    if start < 0:
        return None
    try:
        document = orjson.loads(line[start:])
    except orjson.JSONDecodeError:
        return None
    if not isinstance(document, dict) or "CloudWatchMetrics" not in document.get("_aws", {}):
        return None
    return document
