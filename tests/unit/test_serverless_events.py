"""Lambda event parsing, EMF lines, record log lines and their export back to a spool (pure logic)."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest

from modelfleet.serverless.emf import CallMetrics, emf_line, parse_emf
from modelfleet.serverless.events import EventError, request_from_lambda, response_to_lambda
from modelfleet.serverless.handler import ColdStartError, FunctionSettings, HttpResponse
from modelfleet.serverless.records import MAX_RECORD_BYTES, RecordLog, export_to_spool, read_log_records
from modelfleet.spool.reader import SpoolReader
from modelfleet.spool.record import Tensor, decode, encode


def test_function_url_and_http_api_events() -> None:
    event = {"version": "2.0", "rawPath": "/prod/v2/models/m/infer", "rawQueryString": "a=1",
             "headers": {"Content-Type": "application/json"}, "body": "{}",
             "requestContext": {"http": {"method": "POST"}, "stage": "prod"}}
    request, kind = request_from_lambda(event)
    assert (request.method, request.path, request.body, request.query, kind) == ("POST", "/v2/models/m/infer",
                                                                                  b"{}", "a=1", "2.0")
    assert request.headers == {"content-type": "application/json"}
    default = {**event, "rawPath": "/v2/health/live",
               "requestContext": {"http": {"method": "GET"}, "stage": "$default"}}
    assert request_from_lambda(default)[0].path == "/v2/health/live"


def test_rest_api_event_with_a_base64_body() -> None:
    event = {"httpMethod": "POST", "path": "/v2/models/m/infer", "headers": None,
             "body": base64.b64encode(b'{"inputs": []}').decode(), "isBase64Encoded": True}
    request, kind = request_from_lambda(event)
    assert (request.body, request.headers, kind) == (b'{"inputs": []}', {}, "1.0")


@pytest.mark.parametrize(("event", "message"), [
    ({"hello": 1}, "not an HTTP event"),
    ({"httpMethod": "POST", "path": "/x", "body": "***", "isBase64Encoded": True}, "body is not valid base64"),
    ({"httpMethod": "POST", "path": "/x", "body": {"a": 1}}, "body must be a string"),
    ({"httpMethod": "GET", "path": "/x", "headers": ["a"]}, "headers must be an object"),
])
def test_bad_events(event: dict[str, object], message: str) -> None:
    with pytest.raises(EventError, match=message):
        request_from_lambda(event)


def test_response_drops_content_length() -> None:
    answer = response_to_lambda(HttpResponse(400, b'{"error":"x"}', {"content-type": "application/json",
                                                                      "content-length": "13"}), "2.0")
    assert answer == {"statusCode": 400, "headers": {"content-type": "application/json"},
                      "body": '{"error":"x"}', "isBase64Encoded": False}


def test_settings_from_env() -> None:
    settings = FunctionSettings.from_env({"LAMBDA_TASK_ROOT": "/var/task", "MODELFLEET_RECORD_SAMPLE_RATE": "0.5"})
    assert (settings.artifact, settings.record_sample_rate) == (Path("/var/task/model"), 0.5)
    with pytest.raises(ColdStartError, match="MODELFLEET_RECORD_SAMPLE_RATE must be in"):
        FunctionSettings.from_env({"MODELFLEET_RECORD_SAMPLE_RATE": "2"})
    with pytest.raises(ColdStartError, match="bad function configuration"):
        FunctionSettings.from_env({"MODELFLEET_MAX_BATCH": "many"})


def test_emf_line_for_a_failure() -> None:
    before = dict.fromkeys(("success", "count", "exec", "duration", "invalid_request", "queue_full", "inference",
                            "internal", "shutting_down"), 0.0)
    call = CallMetrics.between(before, {**before, "queue_full": 1.0}, 0.002, 503)
    document = parse_emf("2026-12-06T11:00:00Z " + emf_line("ns", "m", "3", call, timestamp=1.5))
    assert document is not None
    assert document["_aws"]["Timestamp"] == 1500 and document["reason"] == "queue_full"
    assert document["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["model", "version"],
                                                                        ["model", "version", "reason"]]
    assert document["nv_inference_request_failure"] == 1 and "modelfleet_request_duration_seconds" not in document
    assert CallMetrics.between(before, before, 0.1, 500).failure_reason == "internal"
    assert parse_emf('{"level": "INFO"}') is None and parse_emf("START RequestId") is None


def _record(request_id: str) -> bytes:
    return encode(request_id, 10.0, "m", "1", {"x": Tensor("FP32", np.ones((2, 3), np.float32))},
                  {"y": Tensor("INT64", np.array([0, 1]))})


def test_record_log_samples_and_bounds_lines() -> None:
    out = io.StringIO()
    log = RecordLog(out, "m", "1", sample_rate=1.0)
    assert log.offer("a", 1.0, {"x": Tensor("FP32", np.zeros((1, 2), np.float32))},
                     {"y": Tensor("FP32", np.zeros(1, np.float32))})
    assert decode(out.getvalue().encode()).id == "a"
    huge = {"x": Tensor("FP32", np.zeros((MAX_RECORD_BYTES // 4, 1), np.float32))}
    assert not log.offer("b", 1.0, huge, {"y": Tensor("FP32", np.zeros(1, np.float32))})
    assert log.stats.dropped["oversized"] == 1 and log.stats.written == 1
    sampled = RecordLog(io.StringIO(), "m", "1", sample_rate=0.2)
    for i in range(2000):
        sampled.offer(str(i), 1.0, {"x": Tensor("FP32", np.zeros(1, np.float32))}, {})
    assert 300 < sampled.stats.written < 500  # binomial(2000, 0.2): mean 400, sd 18


def test_log_formats_round_trip_to_a_spool(tmp_path: Path) -> None:
    raw = _record("r1").decode().strip()
    cloudwatch_s3 = f"2026-12-06T11:00:00.000Z {_record('r2').decode()}"
    lambda_json = json.dumps({"timestamp": "x", "level": "INFO", "message": _record("r3").decode().strip()})
    gcloud = json.dumps([{"jsonPayload": json.loads(_record("r4")), "severity": "INFO"},
                         {"textPayload": "hello"}])
    emf = '{"_aws": {"CloudWatchMetrics": []}, "nv_inference_count": 1}'
    broken = '{"v": 2, "inputs": {}}'
    (tmp_path / "a.log").write_text("\n".join([raw, cloudwatch_s3.strip(), lambda_json, emf, "START", broken]) + "\n")
    (tmp_path / "b.json").write_text(gcloud)
    result = export_to_spool([tmp_path / "a.log", tmp_path / "b.json"], tmp_path / "spool")
    assert result.records == {("m", "1"): 4}
    assert result.malformed == {"version": 1} and result.other_lines == 2
    lines = SpoolReader(tmp_path / "spool" / "m" / "1").read().lines
    assert [decode(line).id for line in lines] == ["r1", "r2", "r3", "r4"]
    np.testing.assert_array_equal(decode(lines[0]).inputs["x"], np.ones((2, 3)))
    again = export_to_spool([tmp_path / "a.log"], tmp_path / "spool")  # a second export: a new segment
    assert [p.name for p in result.segments + again.segments] == ["00000000000000000001.jsonl",
                                                                  "00000000000000000002.jsonl"]
    assert [r.id for r in read_log_records([raw, "", "not json"])] == ["r1"]
