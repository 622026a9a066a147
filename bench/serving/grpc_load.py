"""Requests beyond one-row JSON for bench/serving/run.py: gRPC load with h2load, and the bodies it sends.

Two halves:

- imported by measure.py (standard library only): :func:`h2load` drives one gRPC ``ModelInfer`` body at a
  server with nghttp2's ``h2load`` (C, one thread, HTTP/2 prior knowledge, one stream per connection) and
  returns the same keys as measure.py's ``wrk``. h2load counts HTTP 200 even for gRPC errors (the status is in
  the trailers), so the answers are checked another way: every good answer to the same request has the same
  length (measured by ``check``), a gRPC error has none, so ``DATA bytes == answers x that length`` holds
  only when every answer was one (``grpc_not_ok`` counts the shortfall);
- run with modelfleet's interpreter (numpy, tritonclient, grpcio):

      python grpc_load.py bodies MODEL_JSON OUT_PREFIX --rows N
          from prepare.py's prepared model (ort_tools.py prepare: check rows + onnxruntime's answers) writes
          N-row requests (rows repeat the check rows) as OIP JSON (.json), Triton binary tensors over HTTP
          (.bin, its JSON header length in .len.json) and a framed gRPC ModelInferRequest with
          raw_input_contents (.grpc, as tritonclient sends it), plus the expected answer (.expected.json)
      python grpc_load.py check PROTOCOL ADDRESS MODEL BODY EXPECTED_JSON
          sends BODY once (PROTOCOL json, binary or grpc), compares the probabilities output with
          onnxruntime's, prints {"max_abs_diff", "response_bytes"} as JSON; exit 1 on a mismatch
"""

from __future__ import annotations

import json
import re
import statistics
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GRPC_PATH = "/inference.GRPCInferenceService/ModelInfer"
TOLERANCE = 1e-5
LARGE_MODEL = "large"  # protocols.py's build_large: one row is 150,528 FP32 values
BATCH_ROWS = 32  # rows per request of the many-rows points, as the raw ceiling's batch


@dataclass(frozen=True)
class Load:
    """One kind of request a server is loaded with."""

    protocol: str  # "json", "binary" (Triton's binary tensor extension over HTTP) or "grpc"
    rows: int
    body: str
    expected: str | None  # onnxruntime's answer; None: the one-row JSON request that servers.py's verify checks
    header_bytes: int | None = None  # binary: the JSON header's length


def prepare_bodies(mf_python: str, model_json: Path, work: Path, large: bool) -> dict[int, dict[str, Any]]:
    """The bodies of one model's requests (``bodies`` below, in modelfleet's interpreter), by rows per request."""
    made = {}
    for rows in (1,) if large else (1, BATCH_ROWS):
        prefix = work / f"{model_json.name.split('.')[0]}.rows{rows}"
        argv = [mf_python, __file__, "bodies", str(model_json), str(prefix), "--rows", str(rows)]
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed:\n{result.stderr[-2000:]}")
        made[rows] = json.loads(result.stdout)
    return made


def loads_for(model: str, json_body: str, bodies: dict[int, dict[str, Any]], many_rows: bool,
              protocols: list[str]) -> list[Load]:
    """One-row JSON and gRPC; binary HTTP too for the large input; 32-row JSON and gRPC with ``many_rows``."""
    one = bodies[1]
    loads = [Load("json", 1, json_body, None)]
    if model == LARGE_MODEL:
        loads.append(Load("binary", 1, one["binary"], one["expected"], one["binary_header_bytes"]))
    loads.append(Load("grpc", 1, one["grpc"], one["expected"]))
    if many_rows and BATCH_ROWS in bodies:
        many = bodies[BATCH_ROWS]
        loads += [Load("json", BATCH_ROWS, many["json"], many["expected"]),
                  Load("grpc", BATCH_ROWS, many["grpc"], many["expected"])]
    return [load for load in loads if load.protocol in protocols]


def check_load(mf_python: str, load: Load, address: str, model: str) -> dict[str, Any]:
    """``check`` below in modelfleet's interpreter: the answer to ``load``'s body against onnxruntime's."""
    assert load.expected is not None
    argv = [mf_python, __file__, "check", load.protocol, address, model, load.body, load.expected]
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=300)
    if result.returncode != 0:
        raise RuntimeError(f"{load.protocol} ({load.rows} rows): {(result.stderr or result.stdout)[-600:]}")
    checked: dict[str, Any] = json.loads(result.stdout)
    return checked


# --------------------------------------------------------------------------- the load (stdlib)


def _number(pattern: str, text: str) -> float:
    found = re.search(pattern, text)
    if found is None:
        raise RuntimeError(f"h2load output lacks /{pattern}/: {text[-800:]}")
    return float(found.group(1))


def h2load(address: str, body_file: str, concurrency: int, seconds: int, cpu: int,
           answer_bytes: int) -> dict[str, Any]:
    """``concurrency`` connections, one stream each, for ``seconds``; h2load pinned to ``cpu``."""
    with tempfile.NamedTemporaryFile(prefix="h2load-", suffix=".log") as requests_log:
        argv = ["taskset", "-c", str(cpu), "h2load", "-t1", f"-c{concurrency}", "-m1", f"-D{seconds}",
                "-d", body_file, "-H", "content-type: application/grpc", "-H", "te: trailers",
                "--log-file", requests_log.name, f"http://{address}{GRPC_PATH}"]
        result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=seconds + 60)
        out = result.stdout
        if result.returncode != 0 or "requests:" not in out:
            raise RuntimeError(f"h2load failed (exit {result.returncode}): {out[-800:]}{result.stderr[-800:]}")
        latencies = sorted(int(line.split("\t")[2]) for line in Path(requests_log.name).read_text().splitlines()
                           if line.count("\t") == 2)
    return summarize(out, latencies, seconds, answer_bytes)


def summarize(out: str, latencies: list[int], seconds: int, answer_bytes: int) -> dict[str, Any]:
    """One h2load run's figures from its summary ``out`` and the per-request latencies (µs, sorted).

    h2load counts a gRPC error as a success (HTTP 200, status in the trailers). Every good answer to the prepared
    body is ``answer_bytes`` long (checked before the load) and an error carries no message, so the requests that
    the data bytes do not account for are counted as not OK (``grpc_not_ok``) and left out of ``ok_rps``.
    """
    succeeded = int(_number(r"(\d+) succeeded", out))
    failed = int(_number(r"(\d+) failed", out))
    errored = int(_number(r"(\d+) errored", out))
    timeouts = int(_number(r"(\d+) timeout", out))
    non2xx = int(sum(_number(rf"(\d+) {k}", out) for k in ("3xx", "4xx", "5xx")))
    data = int(_number(r"\((\d+)\) data", out))
    # every answer is answer_bytes long (checked before the load); errors carry none
    not_ok = max(0, succeeded - data // answer_bytes) if answer_bytes else succeeded
    duration = float(seconds)
    ok = succeeded - not_ok - non2xx

    def percentile(q: float) -> int:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else 0

    return {
        "requests": succeeded, "duration_us": int(duration * 1e6), "bytes": int(_number(r"\((\d+)\) total", out)),
        "non2xx": non2xx + not_ok, "grpc_not_ok": not_ok, "data_bytes": data, "answer_bytes": answer_bytes,
        "errors": {"failed": failed, "errored": errored, "timeout": timeouts},
        "latency_us": {"min": latencies[0] if latencies else 0,
                       "mean": statistics.fmean(latencies) if latencies else 0.0,
                       "max": latencies[-1] if latencies else 0, "p50": percentile(0.5), "p90": percentile(0.9),
                       "p99": percentile(0.99), "p999": percentile(0.999)},
        "rps": succeeded / duration, "ok_rps": ok / duration, "p50_ms": percentile(0.5) / 1000,
        "p99_ms": percentile(0.99) / 1000, "socket_errors": errored + timeouts,
        "load_generator": "h2load",
    }


def h2load_version() -> str:
    result = subprocess.run(["h2load", "--version"], capture_output=True, text=True, check=False)
    return (result.stdout.splitlines() or ["?"])[0]


# --------------------------------------------------------------------------- bodies and checks (numpy, tritonclient)


def bodies(model_json: Path, prefix: Path, rows: int) -> dict[str, Any]:
    import numpy as np
    from tritonclient.grpc import service_pb2  # type: ignore[import-untyped]

    info = json.loads(model_json.read_text())
    checks = info["checks"]
    picked = [checks[i % len(checks)] for i in range(rows)]
    data = np.array([json.loads(c["body"])["inputs"][0]["data"] for c in picked], dtype=np.float32)
    name, datatype = info["input"]["name"], info["input"]["datatype"]
    shape = list(data.shape)
    json_body = json.dumps({"inputs": [{"name": name, "shape": shape, "datatype": datatype,
                                        "data": [float(v) for v in data.ravel()]}]}, separators=(",", ":"))
    raw = data.astype("<f4").tobytes()
    header = json.dumps({"inputs": [{"name": name, "shape": shape, "datatype": datatype,
                                     "parameters": {"binary_data_size": len(raw)}}],
                         "outputs": [{"name": o["name"], "parameters": {"binary_data": True}}
                                     for o in info["outputs"]]}, separators=(",", ":")).encode()
    request = service_pb2.ModelInferRequest(model_name=info["name"], raw_input_contents=[raw])
    request.inputs.add(name=name, datatype=datatype, shape=shape)
    message = request.SerializeToString()
    files = {key: Path(f"{prefix}.{ext}") for key, ext in
             (("json", "json"), ("binary", "bin"), ("grpc", "grpc"), ("expected", "expected.json"))}
    files["json"].write_text(json_body)
    files["binary"].write_bytes(header + raw)
    files["binary"].with_suffix(".len.json").write_text(str(len(header)))
    files["grpc"].write_bytes(struct.pack(">BI", 0, len(message)) + message)
    expected = [v for c in picked for v in c["expected"]]
    files["expected"].write_text(json.dumps({"output": info["probabilities_output"], "values": expected}))
    return {"rows": rows, "binary_header_bytes": len(header), **{k: str(v) for k, v in files.items()}}


def _values(raw: bytes, datatype: str) -> list[float]:
    import numpy as np

    dtype = {"FP32": "<f4", "FP64": "<f8", "INT64": "<i8", "INT32": "<i4"}[datatype]
    return [float(v) for v in np.frombuffer(raw, dtype=dtype)]


def _answer_grpc(address: str, body: bytes) -> tuple[dict[str, list[float]], int]:
    import grpc
    from tritonclient.grpc import service_pb2

    with grpc.insecure_channel(address, options=[("grpc.max_receive_message_length", -1)]) as channel:
        call: Any = channel.unary_unary(GRPC_PATH)
        answer: bytes = call(body[5:], timeout=60)
    response = service_pb2.ModelInferResponse.FromString(answer)
    outputs = {}
    for index, output in enumerate(response.outputs):
        if response.raw_output_contents:
            outputs[output.name] = _values(response.raw_output_contents[index], output.datatype)
        else:
            field = {"FP32": "fp32_contents", "FP64": "fp64_contents", "INT64": "int64_contents",
                     "INT32": "int_contents"}[output.datatype]
            outputs[output.name] = [float(v) for v in getattr(output.contents, field)]
    return outputs, len(answer) + 5  # the DATA bytes h2load sees: 5-byte frame header + message


def _answer_http(address: str, model: str, body: bytes, header_bytes: int | None) -> tuple[dict[str, list[float]], int]:
    import urllib.request

    headers = {"Content-Type": "application/json"}
    if header_bytes is not None:
        headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(header_bytes)}
    request = urllib.request.Request(f"http://{address}/v2/models/{model}/infer", data=body, headers=headers)
    with urllib.request.urlopen(request, timeout=120) as response:
        answer = response.read()
        json_length = response.headers.get("Inference-Header-Content-Length")
    head = json.loads(answer[:int(json_length)] if json_length else answer)
    offset = int(json_length) if json_length else 0
    outputs = {}
    for output in head["outputs"]:
        size = (output.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            outputs[output["name"]] = _values(answer[offset:offset + size], output["datatype"])
            offset += size
        else:
            flat = output["data"]
            while flat and isinstance(flat[0], list):
                flat = [v for item in flat for v in item]
            outputs[output["name"]] = [float(v) for v in flat]
    return outputs, len(answer)


def check(protocol: str, address: str, model: str, body_file: Path, expected_file: Path) -> dict[str, Any]:
    body = body_file.read_bytes()
    expected = json.loads(expected_file.read_text())
    if protocol == "grpc":
        outputs, size = _answer_grpc(address, body)
    else:
        header = json.loads(body_file.with_suffix(".len.json").read_text()) if protocol == "binary" else None
        outputs, size = _answer_http(address, model, body, header)
    got = outputs.get(expected["output"])
    if got is None or len(got) != len(expected["values"]):
        raise SystemExit(f"{protocol}: output {expected['output']!r} missing or of the wrong size in "
                         f"{sorted(outputs)}: {None if got is None else len(got)} vs {len(expected['values'])}")
    diff = max(abs(a - b) for a, b in zip(got, expected["values"], strict=True))
    if diff > TOLERANCE:
        raise SystemExit(f"{protocol}: max |diff| {diff:.3g} > {TOLERANCE}")
    return {"max_abs_diff": diff, "response_bytes": size}


def main(argv: list[str]) -> int:
    if argv[:1] == ["bodies"] and len(argv) == 5 and argv[3] == "--rows":
        print(json.dumps(bodies(Path(argv[1]), Path(argv[2]), int(argv[4]))))
        return 0
    if argv[:1] == ["check"] and len(argv) == 6:
        print(json.dumps(check(argv[1], argv[2], argv[3], Path(argv[4]), Path(argv[5]))))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
