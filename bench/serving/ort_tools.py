"""Model-side helpers for bench/serving/run.py, run with modelfleet's interpreter (numpy, onnxruntime, modelfleet).

    python ort_tools.py prepare MODEL_YML ARTIFACT_ROOT OUT_JSON BODY_FILE
        reads the spec (name, version, batching), picks sample rows, computes onnxruntime's reference
        outputs for them, writes the one-row OIP request body that wrk sends
    python ort_tools.py ceiling MODEL_ONNX SAMPLES_NPZ --seconds S --batch 1 --batch 32
        raw in-process ONNX Runtime throughput (one intra-op thread), as JSON on stdout

The session is configured exactly as the benchmarked servers configure theirs (peers/ort_session.py).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent / "peers"))
from ort_session import session, signature

MISSING_ARTIFACT = 3  # exit status of `prepare` when the artifact is not built yet
CHECK_ROWS = 3  # rows checked against onnxruntime before a server is measured (row 0 is the one wrk sends)


def _probabilities_output(outputs: list[tuple[str, str, list[Any]]]) -> str:
    for name, datatype, _ in outputs:
        if datatype in ("FP32", "FP64") and name == "probabilities":
            return name
    return next(name for name, datatype, _ in outputs if datatype in ("FP32", "FP64"))


def prepare(model_yml: Path, artifact_root: Path, out_json: Path, body_file: Path) -> dict[str, Any]:
    from modelfleet.spec import load_spec

    spec = load_spec(model_yml)
    artifact = artifact_root / spec.name / str(spec.version)
    onnx_path = artifact / "model.onnx"
    if not onnx_path.is_file():
        print(f"{onnx_path}: missing (`modelfleet convert {model_yml} --output {artifact_root}` builds it)",
              file=sys.stderr)
        raise SystemExit(MISSING_ARTIFACT)
    sess = session(str(onnx_path))
    inputs, outputs = signature(sess)
    if len(inputs) != 1:
        raise SystemExit(f"{onnx_path}: the benchmark sends one input tensor; the model has {len(inputs)}")
    input_name, input_datatype, _ = inputs[0]
    if spec.convert.parity is None:
        raise SystemExit(f"{model_yml}: convert.parity.samples names the rows the benchmark sends; it has none")
    samples_path = spec.convert.parity.samples
    with np.load(samples_path) as samples:
        rows = np.asarray(samples[input_name] if input_name in samples else samples[next(iter(samples))])
    rows = rows[:CHECK_ROWS].astype(np.float32)
    probabilities = _probabilities_output(outputs)
    position = [name for name, _, _ in outputs].index(probabilities)
    checks: list[dict[str, Any]] = []
    for row in rows:
        expected = sess.run(None, {input_name: row[None, :]})[position]
        checks.append({"body": _body(input_name, input_datatype, row),
                       "expected": [float(v) for v in np.asarray(expected, dtype=np.float64).ravel()]})
    body_file.write_text(checks[0]["body"])
    info = {
        "name": spec.name,
        "version": str(spec.version),
        "model_yml": str(model_yml),
        "artifact": str(artifact),
        "onnx": str(onnx_path),
        "samples": str(samples_path),
        "input": {"name": input_name, "datatype": input_datatype, "columns": int(rows.shape[1])},
        "outputs": [{"name": name, "datatype": datatype} for name, datatype, _ in outputs],
        "probabilities_output": probabilities,
        "max_batch": spec.serving.batching.max_batch,
        "max_queue_delay_us": spec.serving.batching.max_queue_delay_us,
        "body_file": str(body_file),
        "checks": checks,
    }
    out_json.write_text(json.dumps(info, indent=1))
    return info


def _body(input_name: str, datatype: str, row: np.ndarray) -> str:
    # float(np.float32) is exact; its repr parses back to the same float32 in every server.
    data = [float(v) for v in row]
    return json.dumps({"inputs": [{"name": input_name, "shape": [1, len(data)], "datatype": datatype,
                                   "data": data}]}, separators=(",", ":"))


def ceiling(onnx_path: Path, samples_path: Path, seconds: float, batches: list[int]) -> dict[str, Any]:
    sess = session(str(onnx_path))
    inputs, _ = signature(sess)
    input_name = inputs[0][0]
    with np.load(samples_path) as samples:
        rows = np.asarray(samples[input_name] if input_name in samples else samples[next(iter(samples))],
                          dtype=np.float32)
    results: dict[str, Any] = {"onnxruntime_threads": 1, "seconds_per_batch_size": seconds, "batches": {}}
    for size in batches:
        batch = np.ascontiguousarray(np.resize(rows, (size, rows.shape[1])))
        feeds = {input_name: batch}
        warm_until = time.perf_counter() + min(1.0, seconds / 5)
        while time.perf_counter() < warm_until:
            sess.run(None, feeds)
        calls: list[float] = []
        cpu_start = time.process_time()
        start = time.perf_counter()
        end = start + seconds
        now = start
        while now < end:
            sess.run(None, feeds)
            later = time.perf_counter()
            calls.append(later - now)
            now = later
        elapsed = now - start
        cpu = time.process_time() - cpu_start
        results["batches"][str(size)] = {
            "calls": len(calls),
            "rows_per_s": len(calls) * size / elapsed,
            "calls_per_s": len(calls) / elapsed,
            # per CPU-second of this process: what other processes on the core take away does not count
            "rows_per_cpu_s": len(calls) * size / cpu if cpu > 0 else None,
            "cpu_pct": 100.0 * cpu / elapsed,
            "call_p50_us": statistics.median(calls) * 1e6,
            "call_p99_us": statistics.quantiles(calls, n=100)[98] * 1e6 if len(calls) >= 100 else None,
        }
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    prep = commands.add_parser("prepare")
    prep.add_argument("model_yml", type=Path)
    prep.add_argument("artifact_root", type=Path)
    prep.add_argument("out_json", type=Path)
    prep.add_argument("body_file", type=Path)
    ceil = commands.add_parser("ceiling")
    ceil.add_argument("onnx", type=Path)
    ceil.add_argument("samples", type=Path)
    ceil.add_argument("--seconds", type=float, default=3.0)
    ceil.add_argument("--batch", type=int, action="append", required=True)
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args.model_yml, args.artifact_root, args.out_json, args.body_file)
    else:
        print(json.dumps(ceiling(args.onnx, args.samples, args.seconds, args.batch)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
