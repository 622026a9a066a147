"""The drift exporter's HTTP side on a real daemon: feedback labels (endpoint and file), late and unmatched
labels, quality metrics against scikit-learn, request validation, TLS and basic auth from a web config."""

from __future__ import annotations

import http.client
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from types import ModuleType

import bcrypt
import numpy as np
import orjson
import pytest
from drift_daemon import MODEL, Daemon, rows_in, spool_traffic, value
from harness import wait_for
from sklearn.metrics import accuracy_score, precision_recall_fscore_support

pytestmark = pytest.mark.integration


def _post(daemon: Daemon, body: object) -> tuple[int, dict[str, object]]:
    status, raw, _ = daemon.request("POST", "/v1/feedback", orjson.dumps(body), {"Content-Type": "application/json"})
    return status, orjson.loads(raw)


def _outcome(daemon: Daemon, outcome: str) -> float | None:
    return value(daemon.metrics(), "modelfleet_labels_total", outcome=outcome)


def test_labels_join_late_and_unmatched_and_quality_matches_sklearn(artifacts: Path, train: ModuleType,
                                                                    tmp_path: Path, daemons: list[Daemon]) -> None:
    spool, labels_file = tmp_path / "spool", tmp_path / "labels.jsonl"
    multi, _ = spool_traffic(spool, artifacts, train.generate, records=60, rows_per_record=2, prefix="a", seed=4)
    single, _ = spool_traffic(spool, artifacts, train.generate, records=50, prefix="s", seed=5)
    daemon = Daemon(spool, artifacts, tmp_path / "state", "--labels-file", str(labels_file), "--label-ttl", "4s")
    daemons.append(daemon.start())
    rows_in(daemon, 170)

    truth: list[int] = []
    predicted: list[int] = []

    def expect(traffic_y: np.ndarray, traffic_p: np.ndarray, rows: range) -> None:
        truth.extend(int(v) for v in traffic_y[rows])
        predicted.extend(int(v) for v in traffic_p[rows])

    status, body = _post(daemon, {"id": "s0", "label": int(single.y[0])})
    assert status == 200 and body == {"received": 1, "outcomes": {"joined": 1}}
    expect(single.y, single.predicted, range(1))
    batch = [{"id": f"a{i // 2}", "row": i % 2, "label": int(multi.y[i])} for i in range(0, 60)]
    batch += [{"id": f"a{i // 2}#{i % 2}", "label": int(multi.y[i])} for i in range(60, 120)]
    status, body = _post(daemon, {"labels": batch})
    assert status == 200 and body["outcomes"] == {"joined": 120}
    expect(multi.y, multi.predicted, range(120))
    lines = [orjson.dumps({"id": f"s{i}", "label": int(single.y[i])}) for i in range(1, 30)]
    labels_file.write_bytes(b"\n".join([*lines, b"{broken"]) + b"\n")
    expect(single.y, single.predicted, range(1, 30))
    assert _post(daemon, {"id": "s0", "label": 1})[1]["outcomes"] == {"duplicate": 1}
    assert _post(daemon, {"id": "s30", "label": 7})[1]["outcomes"] == {"invalid": 1}
    assert _post(daemon, {"id": "ghost", "label": 1})[1]["outcomes"] == {"waiting": 1}
    assert _post(daemon, {"id": "early0", "label": 1})[1]["outcomes"] == {"waiting": 1}
    early, _ = spool_traffic(spool, artifacts, train.generate, records=1, prefix="early", seed=6)
    truth.append(1)
    predicted.append(int(early.predicted[0]))
    wait_for(lambda: _outcome(daemon, "joined_after_wait") == 1, 10, what="the early label to join")
    wait_for(lambda: _outcome(daemon, "joined") == 150, 10, what="the labels file to be read")

    metrics = daemon.metrics()
    window = {"model": MODEL, "version": "1", "window": "10m"}
    assert value(metrics, "modelfleet_model_labelled_rows", **window) == len(truth) == 151
    assert value(metrics, "modelfleet_model_accuracy", **window) == pytest.approx(accuracy_score(truth, predicted))
    precision, recall, f1, _ = precision_recall_fscore_support(truth, predicted, labels=[0, 1], zero_division=0)
    for i, label in enumerate(("0", "1")):
        assert value(metrics, "modelfleet_model_precision", **window, **{"class": label}) == pytest.approx(precision[i])
        assert value(metrics, "modelfleet_model_recall", **window, **{"class": label}) == pytest.approx(recall[i])
        assert value(metrics, "modelfleet_model_f1", **window, **{"class": label}) == pytest.approx(f1[i])
    assert value(metrics, "modelfleet_model_f1_macro", **window) == pytest.approx(f1.mean())
    assert value(metrics, "modelfleet_model_precision_macro", **window) == pytest.approx(precision.mean())
    assert value(metrics, "modelfleet_model_recall_macro", **window) == pytest.approx(recall.mean())
    assert value(metrics, "modelfleet_labels_total", outcome="malformed") == 1

    # After the TTL: the unknown label is unmatched, and a label for an expired prediction is late.
    wait_for(lambda: _outcome(daemon, "unmatched") == 1, 15, what="the unknown label to expire")
    assert _post(daemon, {"id": "s40", "label": 0})[1]["outcomes"] == {"late": 1}
    metrics = daemon.metrics()
    assert value(metrics, "modelfleet_labels_pending", kind="labels") == 0
    assert value(metrics, "modelfleet_labels_predictions_expired_total") == 170 - 150 - 1  # joined, invalid


def test_feedback_requests_are_validated(artifacts: Path, tmp_path: Path, daemons: list[Daemon]) -> None:
    daemon = Daemon(tmp_path / "spool", artifacts, tmp_path / "state")
    daemons.append(daemon.start())
    for body, fragment in ((b"{", "not valid JSON"), (b'{"label": 1}', "id"), (b'{"id": "a"}', "label"),
                           (b'{"labels": [{"id": "a", "label": [1]}]}', "labels[0].label")):
        status, raw, _ = daemon.request("POST", "/v1/feedback", body)
        assert status == 400 and fragment in orjson.loads(raw)["error"], raw
    status, _, headers = daemon.request("GET", "/v1/feedback")
    assert status == 405 and headers["Allow"] == "POST"
    assert daemon.request("GET", "/nope")[0] == 404
    connection = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=10)
    connection.putrequest("POST", "/v1/feedback")
    connection.putheader("Content-Length", str(5 << 20))  # refused on the header, before the body is sent
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413 and "limit" in orjson.loads(response.read())["error"]
    connection.close()
    assert daemon.request("GET", "/")[0] == 200
    assert orjson.loads(daemon.request("GET", "/healthz")[1])["status"] == "ok"


def test_tls_and_basic_auth_from_a_web_config(artifacts: Path, tmp_path: Path, daemons: list[Daemon]) -> None:
    cert, key = tmp_path / "server.crt", tmp_path / "server.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    web = tmp_path / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
                   f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    context = ssl.create_default_context(cafile=str(cert))
    daemon = Daemon(tmp_path / "spool", artifacts, tmp_path / "state", "--web-config-file", str(web),
                    scheme="https", ssl_context=context, auth=("prometheus", "s3cret"))
    daemons.append(daemon.start())

    assert daemon.request("GET", "/metrics")[0] == 200
    assert _post(daemon, {"id": "x", "label": 1})[0] == 200
    for credentials in (("prometheus", "wrong"), ("nobody", "s3cret")):
        status, _, headers = daemon.request("GET", "/metrics", auth=credentials)
        assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
    daemon.auth = None
    status, _, headers = daemon.request("GET", "/metrics")
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(f"http://127.0.0.1:{daemon.port}/metrics", timeout=5)  # plain HTTP is refused
    untrusted = ssl.create_default_context()
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(f"https://127.0.0.1:{daemon.port}/metrics", timeout=5, context=untrusted)
