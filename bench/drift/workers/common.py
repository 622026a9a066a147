"""Helpers shared by every worker (standard library + numpy, so they import in any peer's venv).

A worker is started as ``python WORKER.py ARGS_JSON``; it prints progress on stderr and one JSON
object on its last stdout line (:func:`emit`).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

PAGE = os.sysconf("SC_PAGE_SIZE")
MIB = 1024.0 * 1024.0


def args() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(sys.argv[1])
    return loaded


def rss_mib() -> float:
    """Current resident set size of this process."""
    with Path("/proc/self/statm").open() as handle:
        return int(handle.read().split()[1]) * PAGE / MIB


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def memory() -> dict[str, float]:
    return {"rss_mib": round(rss_mib(), 1), "peak_rss_mib": round(peak_rss_mib(), 1)}


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def note(message: str) -> None:
    print(f"    {message}", file=sys.stderr, flush=True)


@contextmanager
def stopwatch(into: list[float]) -> Iterator[None]:
    start = time.perf_counter()
    yield
    into.append(time.perf_counter() - start)


def summary(seconds: list[float]) -> dict[str, float | int]:
    """Median, min, p95 and mean (milliseconds) of repeated timings."""
    values = np.asarray(seconds, dtype=np.float64) * 1e3
    if not values.size:
        return {"n": 0}
    return {"n": int(values.size), "median_ms": float(np.median(values)), "min_ms": float(values.min()),
            "p95_ms": float(np.percentile(values, 95)), "mean_ms": float(values.mean())}


def load(data_dir: str) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], dict[str, Any]]:
    """Reference, stream pool and metadata written by the orchestrator's prepare step."""
    root = Path(data_dir)
    meta: dict[str, Any] = json.loads((root / "meta.json").read_text())
    return np.load(root / "reference.npy"), np.load(root / "stream.npy"), meta


def windows(meta: dict[str, Any], count: int) -> list[tuple[int, int]]:
    """Row ranges ``[start, end)`` of the first ``count`` sliding windows over the stream pool."""
    window, step, pool = meta["window_rows"], meta["step_rows"], meta["pool_rows"]
    starts = range(0, pool - window + 1, step)
    return [(s, s + window) for s in starts][:count]


def versions(*names: str) -> dict[str, str]:
    from importlib import metadata

    found: dict[str, str] = {"python": sys.version.split()[0]}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def emit(result: dict[str, Any]) -> None:
    result.setdefault("memory_end", memory())
    sys.stdout.write(json.dumps(result, default=_jsonable) + "\n")
    sys.stdout.flush()


def _jsonable(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
