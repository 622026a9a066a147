"""The Lambda handler under the real AWS Lambda Runtime Interface Emulator (awslambdaric, loopback, HTTP):
predictions equal the model server's for the same rows (both examples, three event formats), the same
errors, EMF metric lines, records that the drift exporter turns into drift, and a corrupted artifact
failing the cold start."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from drift_daemon import Daemon, rows_in, value
from functionkit import Emulator, example_artifacts, payload, rows
from serverkit import Server, tensor

from modelfleet.serverless.emf import parse_emf
from modelfleet.serverless.records import export_to_spool

pytestmark = pytest.mark.integration
EXAMPLES = ("credit-risk", "mlp")


@pytest.fixture(scope="module")
def function_artifacts(trained_examples: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return example_artifacts(trained_examples, tmp_path_factory)


@pytest.fixture(scope="module")
def emulators(function_artifacts: dict[str, Path],
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Emulator]]:
    workdir = tmp_path_factory.mktemp("rie")
    started = {name: Emulator(path, workdir).start() for name, path in function_artifacts.items()}
    yield started
    for emulator in started.values():
        emulator.stop()


@pytest.fixture(scope="module")
def servers(function_artifacts: dict[str, Path],
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    workdir = tmp_path_factory.mktemp("servers")
    started = {name: Server(path, workdir).start() for name, path in function_artifacts.items()}
    yield started
    for server in started.values():
        server.stop()


@pytest.mark.parametrize("example", EXAMPLES)
@pytest.mark.parametrize("kind", ["url", "http-api", "rest"])
def test_predictions_equal_the_servers(example: str, kind: str, emulators: dict[str, Emulator],
                                       servers: dict[str, Server], trained_examples: Path) -> None:
    x = rows(trained_examples, example, 50)
    body = payload(x, request_id=f"{example}-{kind}")
    ours = emulators[example].http("POST", f"/v2/models/{example}/infer", body, kind=kind)
    theirs = servers[example].infer(example, body)
    assert ours.status == theirs.status == 200, (ours, emulators[example].output())
    assert ours.headers["content-type"] == "application/json"
    mine, server = ours.json(), theirs.json()
    assert mine["id"] == server["id"] == f"{example}-{kind}"
    assert [o["name"] for o in mine["outputs"]] == [o["name"] for o in server["outputs"]]
    for a, b in zip(mine["outputs"], server["outputs"], strict=True):
        assert (a["datatype"], a["shape"]) == (b["datatype"], b["shape"])
        np.testing.assert_allclose(np.asarray(a["data"]), np.asarray(b["data"]), rtol=1e-6, atol=1e-7)
    for path in (f"/v2/models/{example}", f"/v2/models/{example}/versions/1", f"/v2/models/{example}/ready",
                 "/v2/health/ready", "/v2/health/live"):
        mine_meta, server_meta = emulators[example].http("GET", path, kind=kind), servers[example].get(path)
        assert (mine_meta.status, mine_meta.json()) == (server_meta.status, server_meta.json()), path


BAD_REQUESTS = [
    ("POST", "/v2/models/credit-risk/infer", "{not json"),
    ("POST", "/v2/models/credit-risk/infer", {"inputs": []}),
    ("POST", "/v2/models/credit-risk/infer", {"inputs": [tensor("x", "FP64", [0.0] * 8, [1, 8])]}),
    ("POST", "/v2/models/credit-risk/infer", {"inputs": [tensor("x", "FP32", [0.0] * 7, [1, 7])]}),
    ("POST", "/v2/models/credit-risk/infer", {"inputs": [tensor("x", "FP32", ["a"] * 8, [1, 8])]}),
    ("POST", "/v2/models/credit-risk/infer", {"inputs": [tensor("x", "FP32", [0.0] * 7 + [None], [1, 8])]}),
    ("POST", "/v2/models/credit-risk/infer", {"inputs": [tensor("y", "FP32", [0.0] * 8, [1, 8])]}),
    ("POST", "/v2/models/credit-risk/infer", {"inputs": [tensor("x", "FP32", [0.0] * 8, [1, 8])],
                                              "outputs": [{"name": "nope"}]}),
    ("POST", "/v2/models/other/infer", {"inputs": [tensor("x", "FP32", [0.0] * 8, [1, 8])]}),
    ("POST", "/v2/models/credit-risk/versions/7/infer", {"inputs": [tensor("x", "FP32", [0.0] * 8, [1, 8])]}),
    ("GET", "/v2/models/credit-risk/infer", None),
    ("GET", "/nowhere", None),
]


@pytest.mark.parametrize(("method", "path", "body"), BAD_REQUESTS)
def test_bad_requests_get_the_servers_errors(method: str, path: str, body: object, emulators: dict[str, Emulator],
                                             servers: dict[str, Server]) -> None:
    ours = emulators["credit-risk"].http(method, path, body)  # type: ignore[arg-type]
    theirs = servers["credit-risk"].post(path, body) if method == "POST" else servers["credit-risk"].get(path)  # type: ignore[arg-type]
    assert 400 <= ours.status < 500
    assert (ours.status, ours.error()) == (theirs.status, theirs.error())
    assert "Traceback" not in ours.body.decode()


def test_a_bad_event_is_answered_400(emulators: dict[str, Emulator]) -> None:
    result = emulators["credit-risk"].invoke({"hello": "world"})
    assert result["statusCode"] == 400
    assert "not an HTTP event" in result["body"]


def test_emf_lines_count_successes_and_failures(function_artifacts: dict[str, Path], tmp_path: Path,
                                                trained_examples: Path) -> None:
    emulator = Emulator(function_artifacts["mlp"], tmp_path).start()
    try:
        x = rows(trained_examples, "mlp", 5)
        for i in range(3):
            assert emulator.http("POST", "/v2/models/mlp/infer", payload(x, f"ok{i}")).status == 200
        assert emulator.http("POST", "/v2/models/mlp/infer", "{broken").status == 400
        assert emulator.http("GET", "/v2/models/mlp").status == 200  # no metrics for metadata
    finally:
        emulator.stop()
    documents = [d for d in map(parse_emf, emulator.output().splitlines()) if d is not None]
    assert len(documents) == 4, emulator.output()
    directive = documents[0]["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "modelfleet" and directive["Dimensions"] == [["model", "version"]]
    names = {m["Name"]: m["Unit"] for m in directive["Metrics"]}
    assert names["nv_inference_request_success"] == "Count"
    assert names["modelfleet_request_duration_seconds"] == "Seconds"
    for document in documents[:3]:
        assert (document["model"], document["version"], document["status"]) == ("mlp", "1", 200)
        assert document["nv_inference_request_success"] == 1 and document["nv_inference_request_failure"] == 0
        assert document["nv_inference_count"] == 5 and document["nv_inference_exec_count"] == 1
        assert 0 < document["modelfleet_request_duration_seconds"] <= document["modelfleet_function_duration_seconds"]
    failed = documents[3]
    assert (failed["status"], failed["reason"], failed["nv_inference_request_failure"]) == (400, "invalid_request", 1)
    assert ["model", "version", "reason"] in failed["_aws"]["CloudWatchMetrics"][0]["Dimensions"]
    assert "modelfleet_request_duration_seconds" not in failed


def test_records_in_the_log_give_drift_in_the_exporter(function_artifacts: dict[str, Path], tmp_path: Path,
                                                      trained_examples: Path) -> None:
    """Shifted traffic through the function → its log (as exported) → spool → the real drift exporter."""
    from harness import load_example

    generate = load_example(trained_examples / "credit-risk" / "train.py").generate
    x, _ = generate(1200, seed=3, shift=1.0)
    emulator = Emulator(function_artifacts["credit-risk"], tmp_path, MODELFLEET_RECORD_SAMPLE_RATE="1").start()
    sent: dict[str, dict[str, object]] = {}
    try:
        for i in range(0, len(x), 8):
            answer = emulator.http("POST", "/v2/models/credit-risk/infer", payload(x[i:i + 8], f"d{i}"))
            assert answer.status == 200
            sent[f"d{i}"] = answer.json()
    finally:
        emulator.stop()
    exported = tmp_path / "exported.log"
    # CloudWatch's export to S3 puts a timestamp before each message: the reader must find the record after it.
    exported.write_text("".join(f"2026-12-06T11:00:00.000Z {line}\n" for line in emulator.output().splitlines()))
    spool, artifacts = tmp_path / "spool", function_artifacts["credit-risk"].parents[1]
    result = export_to_spool([exported], spool)
    assert result.records == {("credit-risk", "1"): len(sent)}
    assert not result.malformed and result.other_lines > len(sent)  # EMF lines, the emulator's own lines
    segments = sorted((spool / "credit-risk" / "1").glob("*.jsonl"))
    records = [json.loads(line) for path in segments for line in path.read_bytes().splitlines()]
    assert len(records) == len(sent)
    for record in records:
        answer = sent[record["id"]]
        outputs = {o["name"]: o["data"] for o in answer["outputs"]}  # type: ignore[attr-defined]
        assert np.ravel(record["outputs"]["label"]["data"]).tolist() == outputs["label"]
    daemon = Daemon(spool, artifacts, tmp_path / "state").start()
    try:
        rows_in(daemon, 1200)
        metrics = daemon.metrics()
        labels = {"model": "credit-risk", "version": "1", "window": "10m"}
        assert value(metrics, "modelfleet_feature_drift_detected", feature="income", **labels) == 1.0
        assert value(metrics, "modelfleet_feature_drift_detected", feature="age", **labels) == 0.0
    finally:
        daemon.close()


def test_a_corrupted_artifact_fails_the_cold_start(function_artifacts: dict[str, Path], tmp_path: Path) -> None:
    broken = tmp_path / "artifacts" / "credit-risk" / "1"
    shutil.copytree(function_artifacts["credit-risk"], broken)
    model = broken / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    emulator = Emulator(broken, tmp_path).start()
    try:
        result = emulator.invoke({"version": "2.0", "rawPath": "/v2/health/ready",
                                  "requestContext": {"http": {"method": "GET"}}}, status=502)
    finally:
        emulator.stop()
    assert result["errorType"] == "ColdStartError", result
    lines = [line for line in emulator.json_lines() if line.get("level") == "ERROR"]
    assert lines, emulator.output()
    message = lines[0]["message"]
    assert message.startswith("cold start failed:") and "model.onnx: sha256" in message, lines
    assert "does not match the manifest" in message, lines
