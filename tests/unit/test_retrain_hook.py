"""The retraining hook: payload parsing, grouping, cooldown, state, command and URL actions, HTTP answers."""

from __future__ import annotations

import argparse
import asyncio
import http.server
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelfleet.alerting import add_parser
from modelfleet.alerting.actions import ActionError, CommandAction, UrlAction
from modelfleet.alerting.app import HookApp
from modelfleet.alerting.command import duration, listen_address
from modelfleet.alerting.hook import RetrainHook
from modelfleet.alerting.payload import PayloadError, RetrainRequest, parse_notification, retrain_requests
from modelfleet.alerting.state import TriggerState


def alert(status: str = "firing", starts: str = "2024-05-01T10:00:00.123456789Z", **labels: str) -> dict[str, Any]:
    return {
        "status": status,
        "labels": labels,
        "annotations": {"summary": "s"},
        "startsAt": starts,
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus/graph",
        "fingerprint": "abc123",
    }


def notification(*alerts: dict[str, Any]) -> dict[str, Any]:
    """The shape Alertmanager 0.25 posts (webhook payload version 4)."""
    return {
        "version": "4",
        "groupKey": '{}/{retrain="true"}:{model="m", version="1"}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "modelfleet-retrain",
        "groupLabels": {"model": "m"},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://am:9093",
        "alerts": list(alerts),
    }


def drift(model: str = "credit-risk", version: str = "3", feature: str = "age", **extra: str) -> dict[str, Any]:
    labels = {
        "alertname": "ModelFeatureDrift",
        "retrain": "true",
        "model": model,
        "version": version,
        "feature": feature,
        "window": "1h",
        "severity": "warning",
        "host": "serving-1",
    }
    return alert(**(labels | extra))


def body(*alerts: dict[str, Any]) -> bytes:
    return orjson.dumps(notification(*alerts))


class Recorder:
    """An action that records what it was asked to do (and fails on demand)."""

    kind = "command"

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fail = False
        self.release = threading.Event()
        self.release.set()

    def __call__(self, request: RetrainRequest, document: bytes) -> None:
        self.release.wait(10)
        self.calls.append(json.loads(document))
        if self.fail:
            raise ActionError("the training system said no")


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def hook(recorder: Recorder, clock: Clock, tmp_path: Path) -> Iterator[RetrainHook]:
    retrain_hook = RetrainHook(recorder, TriggerState(tmp_path / "state.json"), cooldown=3600, clock=clock)
    retrain_hook.start()
    yield retrain_hook
    retrain_hook.stop()


def submit(hook: RetrainHook, *alerts: dict[str, Any]) -> list[str]:
    decisions, _ignored = hook.submit(parse_notification(body(*alerts)))
    assert hook.wait_idle(10)
    return [d.outcome for d in decisions]


def counter(hook: RetrainHook, outcome: str) -> float:
    value = hook.registry.get_sample_value("modelfleet_retrain_requests_total", {"outcome": outcome})
    assert value is not None
    return value


# --- parsing ---------------------------------------------------------------------------------------


def test_parses_an_alertmanager_notification() -> None:
    parsed = parse_notification(body(drift(), alert("resolved", alertname="Other")))
    assert parsed.receiver == "modelfleet-retrain"
    assert [a.status for a in parsed.alerts] == ["firing", "resolved"]
    assert parsed.alerts[0].labels["model"] == "credit-risk"
    assert parsed.alerts[0].starts_at.isoformat() == "2024-05-01T10:00:00.123456+00:00"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"not json", "body is not JSON"),
        (b"[]", "body: must be a JSON object"),
        (b'{"alerts": []}', 'version: must be "4"'),
        (b'{"version": 4, "alerts": []}', 'version: must be "4"'),
        (b'{"version": "4"}', "alerts: must be a list"),
        (b'{"version": "4", "alerts": [1]}', "alerts[0]: must be an object"),
        (
            b'{"version": "4", "alerts": [{"status": "on", "labels": {}, "startsAt": "2024-01-01T00:00:00Z"}]}',
            "alerts[0].status",
        ),
        (
            b'{"version": "4", "alerts": [{"status": "firing", "startsAt": "2024-01-01T00:00:00Z"}]}',
            "alerts[0].labels: must be an object",
        ),
        (
            b'{"version": "4", "alerts": [{"status": "firing", "labels": {"model": 3},'
            b' "startsAt": "2024-01-01T00:00:00Z"}]}',
            "alerts[0].labels.model: must be a string, got 3",
        ),
        (
            b'{"version": "4", "alerts": [{"status": "firing", "labels": {}, "startsAt": "yesterday"}]}',
            "alerts[0].startsAt: 'yesterday' is not an RFC 3339 time",
        ),
        (b'{"version": "4", "alerts": [{"status": "firing", "labels": {}}]}', "alerts[0].startsAt: must be"),
        (b'{"version": "4", "receiver": [], "alerts": []}', "receiver: must be a string"),
    ],
)
def test_malformed_payloads_say_where(payload: bytes, message: str) -> None:
    with pytest.raises(PayloadError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_notification(payload)


# --- grouping --------------------------------------------------------------------------------------


def test_groups_alerts_per_model_version_with_the_union_of_features() -> None:
    parsed = parse_notification(
        body(
            drift(feature="age"),
            drift(feature="income"),
            drift(feature="age", window="5m"),
            alert(
                alertname="ModelPredictionDrift",
                retrain="true",
                model="credit-risk",
                version="3",
                output="label",
                starts="2024-05-01T09:00:00Z",
            ),
            drift(version="4", feature="region"),
            drift(model="churn", version="1", feature="tenure"),
            alert("resolved", alertname="ModelFeatureDrift", retrain="true", model="churn", version="2", feature="x"),
            alert(alertname="HighLatency", model="credit-risk", version="3", severity="critical"),
            alert(alertname="ModelFeatureDrift", retrain="false", model="fraud", version="1", feature="amount"),
            alert(alertname="FleetDrift", retrain="true", feature="age"),
        )
    )
    requests, ignored = retrain_requests(parsed)
    assert {(r.model, r.version): r.features for r in requests} == {
        ("credit-risk", "3"): ("age", "income", "label"),
        ("credit-risk", "4"): ("region",),
        ("churn", "1"): ("tenure",),
    }
    assert ignored == ['alerts[9] (FleetDrift): retrain="true" but no model label']
    first = next(r for r in requests if r.key == ("credit-risk", "3"))
    assert len(first.alerts) == 4
    document = first.document(1_714_557_600.0)
    assert document["fired_at"] == "2024-05-01T09:00:00.000Z"
    assert document["triggered_at"] == "2024-05-01T10:00:00.000Z"
    assert document["alerts"][0] == {
        "name": "ModelFeatureDrift",
        "labels": drift()["labels"],
        "starts_at": "2024-05-01T10:00:00.123Z",
        "fingerprint": "abc123",
    }


def test_a_model_level_alert_without_version_is_one_request() -> None:
    requests, _ignored = retrain_requests(
        parse_notification(body(alert(alertname="ModelAccuracyDrop", retrain="true", model="credit-risk")))
    )
    assert [(r.model, r.version, r.features) for r in requests] == [("credit-risk", "", ())]
    assert requests[0].document(0)["version"] is None


# --- cooldown, in-flight and failures ----------------------------------------------------------------


def test_one_trigger_per_cooldown_despite_repeated_notifications(
    hook: RetrainHook, recorder: Recorder, clock: Clock
) -> None:
    assert submit(hook, drift(feature="age"), drift(feature="income")) == ["queued"]
    assert recorder.calls[0]["model"] == "credit-risk"
    assert recorder.calls[0]["features"] == ["age", "income"]
    clock.now += 600  # Alertmanager's repeat
    assert submit(hook, drift()) == ["cooldown"]
    assert submit(hook, drift(version="4")) == ["queued"]  # another version is not held back
    clock.now += 3000  # 3600 s after the first trigger
    assert submit(hook, drift()) == ["queued"]
    assert len(recorder.calls) == 3
    assert counter(hook, "triggered") == 3
    assert counter(hook, "cooldown") == 1


def test_a_trigger_still_running_is_not_started_twice(hook: RetrainHook, recorder: Recorder) -> None:
    recorder.release.clear()
    first, _ignored = hook.submit(parse_notification(body(drift())))
    second, _ignored = hook.submit(parse_notification(body(drift(feature="income"))))
    assert [d.outcome for d in first + second] == ["queued", "in_flight"]
    recorder.release.set()
    assert hook.wait_idle(10)
    assert len(recorder.calls) == 1
    assert counter(hook, "in_flight") == 1


def test_a_failed_trigger_does_not_start_the_cooldown(hook: RetrainHook, recorder: Recorder) -> None:
    recorder.fail = True
    assert submit(hook, drift()) == ["queued"]
    assert counter(hook, "failed") == 1
    recorder.fail = False
    assert submit(hook, drift()) == ["queued"]
    assert counter(hook, "triggered") == 1
    assert len(recorder.calls) == 2


def test_cooldown_zero_triggers_every_time(recorder: Recorder, clock: Clock) -> None:
    retrain_hook = RetrainHook(recorder, TriggerState(None), cooldown=0, clock=clock)
    retrain_hook.start()
    try:
        assert submit(retrain_hook, drift()) == ["queued"]
        assert submit(retrain_hook, drift()) == ["queued"]
    finally:
        retrain_hook.stop()


# --- state -----------------------------------------------------------------------------------------


def test_trigger_times_survive_a_restart(recorder: Recorder, clock: Clock, tmp_path: Path) -> None:
    path = tmp_path / "state" / "state.json"
    first = RetrainHook(recorder, TriggerState(path), cooldown=3600, clock=clock)
    first.start()
    assert submit(first, drift()) == ["queued"]
    first.stop()
    saved = json.loads(path.read_text())
    assert saved == {"version": 1, "triggers": [{"model": "credit-risk", "version": "3", "at": clock.now}]}

    clock.now += 1800
    second = RetrainHook(recorder, TriggerState(path), cooldown=3600, clock=clock)
    second.start()
    try:
        assert submit(second, drift()) == ["cooldown"]
        assert (
            second.registry.get_sample_value(
                "modelfleet_retrain_last_trigger_timestamp_seconds", {"model": "credit-risk", "version": "3"}
            )
            == clock.now - 1800
        )
        clock.now += 1801
        assert submit(second, drift()) == ["queued"]
    finally:
        second.stop()
    assert len(recorder.calls) == 2


def test_old_entries_are_pruned(tmp_path: Path) -> None:
    state = TriggerState(tmp_path / "state.json")
    state.record(("a", "1"), 100.0, keep_since=0)
    state.record(("b", "1"), 5000.0, keep_since=5000 - 3600)
    assert TriggerState(tmp_path / "state.json").snapshot() == {("b", "1"): 5000.0}


@pytest.mark.parametrize(
    "content",
    [
        b"{broken",
        b'{"version": 2, "triggers": []}',
        b'{"version": 1}',
        b'{"version": 1, "triggers": [{"model": "m", "version": "1", "at": "x"}]}',
    ],
)
def test_an_unreadable_state_file_is_set_aside(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(content)
    assert TriggerState(path).snapshot() == {}
    assert (tmp_path / "state.json.corrupt").read_bytes() == content
    assert not path.exists()
    assert "unreadable" in caplog.text


def test_a_state_file_that_cannot_be_written_keeps_the_cooldown_in_memory(
    recorder: Recorder, clock: Clock, tmp_path: Path
) -> None:
    blocker = tmp_path / "state"
    retrain_hook = RetrainHook(recorder, TriggerState(blocker / "state.json"), cooldown=3600, clock=clock)
    blocker.write_text("")  # a file where the state directory should be
    retrain_hook.start()
    try:
        assert submit(retrain_hook, drift()) == ["queued"]
        assert submit(retrain_hook, drift()) == ["cooldown"]
        assert retrain_hook.registry.get_sample_value("modelfleet_retrain_state_write_failures_total") == 1
    finally:
        retrain_hook.stop()


# --- the command -----------------------------------------------------------------------------------

WRITER = (
    "import json, os, sys, pathlib; document = json.load(sys.stdin); "
    "document['env'] = {k: v for k, v in os.environ.items() if k.startswith('MODELFLEET_')}; "
    "pathlib.Path(sys.argv[1]).write_text(json.dumps(document))"
)


def test_the_command_gets_the_request_on_stdin_and_in_its_environment(tmp_path: Path, clock: Clock) -> None:
    out = tmp_path / "request.json"
    action = CommandAction([sys.executable, "-c", WRITER, str(out)], timeout=30)
    retrain_hook = RetrainHook(action, TriggerState(None), cooldown=3600, clock=clock)
    retrain_hook.start()
    try:
        assert submit(retrain_hook, drift(feature="age"), drift(feature="income")) == ["queued"]
    finally:
        retrain_hook.stop()
    written = json.loads(out.read_text())
    assert written["model"] == "credit-risk"
    assert written["version"] == "3"
    assert written["features"] == ["age", "income"]
    assert written["env"] == {
        "MODELFLEET_MODEL": "credit-risk",
        "MODELFLEET_VERSION": "3",
        "MODELFLEET_FEATURES": "age,income",
    }
    assert counter(retrain_hook, "triggered") == 1


def test_a_failing_command_is_reported_with_its_output(tmp_path: Path) -> None:
    request = retrain_requests(parse_notification(body(drift())))[0][0]
    failing = CommandAction([sys.executable, "-c", "import sys; sys.stderr.write('no GPU quota'); sys.exit(3)"], 30)
    with pytest.raises(ActionError, match="exited with status 3: no GPU quota"):
        failing(request, b"{}")
    with pytest.raises(ActionError, match="could not be started"):
        CommandAction([str(tmp_path / "missing")], 30)(request, b"{}")
    slow = CommandAction([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.3)
    with pytest.raises(ActionError, match=r"did not finish within 0\.3 s"):
        slow(request, b"{}")


# --- the URL ---------------------------------------------------------------------------------------


class Receiver(http.server.ThreadingHTTPServer):
    """A real HTTP endpoint that answers with the queued statuses (then 200) and keeps what it got."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.received: list[tuple[dict[str, str], bytes]] = []
        super().__init__(("127.0.0.1", 0), _ReceiverHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/retrain"


class _ReceiverHandler(http.server.BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        content = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((dict(self.headers.items()), content))
        status = self.server.statuses.pop(0) if self.server.statuses else 200
        reply = b'{"queued": true}' if status == 200 else b"busy"
        self.send_response(status)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_the_url_gets_the_request_as_json(receiver: Receiver, clock: Clock) -> None:
    action = UrlAction(receiver.url, timeout=5, retries=2, backoff=0.01, token="t0ken")
    retrain_hook = RetrainHook(action, TriggerState(None), cooldown=3600, clock=clock)
    retrain_hook.start()
    try:
        assert submit(retrain_hook, drift(feature="age"), drift(model="churn", version="1", feature="tenure")) == [
            "queued",
            "queued",
        ]
    finally:
        retrain_hook.stop()
    documents = sorted((json.loads(content) for _headers, content in receiver.received), key=lambda d: d["model"])
    assert [(d["model"], d["version"], d["features"]) for d in documents] == [
        ("churn", "1", ["tenure"]),
        ("credit-risk", "3", ["age"]),
    ]
    headers = receiver.received[0][0]
    assert headers["Authorization"] == "Bearer t0ken"
    assert headers["Content-Type"] == "application/json"


def test_the_url_is_retried_on_5xx_and_429_with_backoff(receiver: Receiver) -> None:
    receiver.statuses = [503, 429, 500]
    request = retrain_requests(parse_notification(body(drift())))[0][0]
    UrlAction(receiver.url, timeout=5, retries=3, backoff=0.01)(request, b"{}")
    assert len(receiver.received) == 4


def test_the_url_gives_up_after_the_retries(receiver: Receiver) -> None:
    receiver.statuses = [502, 502, 502]
    request = retrain_requests(parse_notification(body(drift())))[0][0]
    with pytest.raises(ActionError, match="failed after 3 attempts: HTTP 502"):
        UrlAction(receiver.url, timeout=5, retries=2, backoff=0.01)(request, b"{}")


def test_a_refusal_is_not_retried(receiver: Receiver) -> None:
    receiver.statuses = [400]
    request = retrain_requests(parse_notification(body(drift())))[0][0]
    with pytest.raises(ActionError, match="was refused: HTTP 400 Bad Request: busy"):
        UrlAction(receiver.url, timeout=5, retries=3, backoff=0.01)(request, b"{}")
    assert len(receiver.received) == 1


def test_an_unreachable_url_is_retried_then_fails() -> None:
    request = retrain_requests(parse_notification(body(drift())))[0][0]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ReceiverHandler)
    port = server.server_address[1]
    server.server_close()  # nothing listens there now
    with pytest.raises(ActionError, match="failed after 2 attempts"):
        UrlAction(f"http://127.0.0.1:{port}/", timeout=1, retries=1, backoff=0.01)(request, b"{}")


# --- HTTP ------------------------------------------------------------------------------------------


def call(
    app: HookApp,
    method: str,
    path: str,
    content: bytes = b"",
    chunks: int = 1,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> tuple[int, bytes]:
    """One request through the ASGI app, as uvicorn would make it."""
    size = max(1, -(-len(content) // chunks))
    parts = [content[i : i + size] for i in range(0, len(content), size)] or [b""]
    messages = [{"type": "http.request", "body": part, "more_body": i < len(parts) - 1} for i, part in enumerate(parts)]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "headers": headers if headers is not None else [(b"content-length", str(len(content)).encode())],
    }
    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], sent[1]["body"]


@pytest.fixture
def app(recorder: Recorder, clock: Clock) -> HookApp:
    return HookApp(RetrainHook(recorder, TriggerState(None), cooldown=3600, clock=clock), max_body_bytes=64 << 10)


def test_http_answers(app: HookApp) -> None:
    status, reply = call(app, "POST", "/alerts", body(drift()))
    assert status == 200
    assert json.loads(reply) == {
        "requests": [{"model": "credit-risk", "version": "3", "features": ["age"], "outcome": "queued", "detail": ""}],
        "ignored": [],
    }
    status, reply = call(app, "POST", "/alerts", b'{"version": "4", "alerts": {}}')
    assert (status, json.loads(reply)) == (400, {"error": "alerts: must be a list"})
    assert call(app, "GET", "/alerts")[0] == 405
    assert call(app, "GET", "/nowhere")[0] == 404
    assert call(app, "GET", "/healthz")[0] == 503  # the worker was never started
    assert call(app, "GET", "/")[0] == 200
    status, exposed = call(app, "GET", "/metrics")
    assert status == 200
    assert b'modelfleet_retrain_notifications_total{code="200"} 1.0' in exposed
    assert b'modelfleet_retrain_notifications_total{code="400"} 1.0' in exposed


def test_oversized_notifications_get_413(app: HookApp) -> None:
    big = body(*[drift(feature=f"f{i}") for i in range(400)])
    assert len(big) > 64 << 10
    assert call(app, "POST", "/alerts", big)[0] == 413
    # no Content-Length: counted as it streams in
    assert call(app, "POST", "/alerts", big, chunks=20, headers=[])[0] == 413
    assert app.hook.registry.get_sample_value("modelfleet_retrain_notifications_total", {"code": "413"}) == 2


def test_metrics_are_promtool_clean(hook: RetrainHook, promtool: str) -> None:
    submit(hook, drift(), alert(alertname="X", retrain="true"))
    app = HookApp(hook)
    status, exposed = call(app, "GET", "/metrics")
    assert status == 200
    checked = subprocess.run([promtool, "check", "metrics"], input=exposed, capture_output=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert b"modelfleet_retrain_requests_total" in exposed


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


@st.composite
def damaged_notifications(draw: st.DrawFn) -> bytes:
    """A real notification with one field, somewhere, replaced by an arbitrary JSON value."""
    document = notification(drift(), drift(feature="income"), alert("resolved", alertname="X"))
    paths: list[list[Any]] = [[key] for key in document]
    for index, item in enumerate(document["alerts"]):
        paths += [["alerts", index, key] for key in item]
        paths += [["alerts", index, "labels", key] for key in item["labels"]]
    path = draw(st.sampled_from(paths))
    target = document
    for step in path[:-1]:
        target = target[step]
    if draw(st.booleans()):
        target[path[-1]] = draw(json_values)
    else:
        del target[path[-1]]
    return json.dumps(document).encode()  # integers beyond 64 bits too


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    content=st.binary(max_size=200)
    | json_values.map(lambda value: json.dumps(value).encode())
    | damaged_notifications()
)
def test_malformed_payloads_get_400_never_500(app: HookApp, content: bytes) -> None:
    status, reply = call(app, "POST", "/alerts", content)
    assert status in (200, 400), reply
    if status == 400:
        assert json.loads(reply)["error"]


# --- command line ----------------------------------------------------------------------------------


def test_command_line() -> None:
    parser = argparse.ArgumentParser(prog="modelfleet")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        [
            "retrain-hook",
            "--listen",
            "[::1]:9095",
            "--command",
            "/usr/bin/retrain --queue 'gpu a'",
            "--cooldown",
            "2h",
            "--state-file",
            "/var/lib/x/state.json",
        ]
    )
    assert args.command == "retrain-hook"
    assert args.listen == ("::1", 9095)
    assert args.command_line == "/usr/bin/retrain --queue 'gpu a'"
    assert args.cooldown == 7200
    assert callable(args.handler)
    with pytest.raises(SystemExit):
        parser.parse_args(["retrain-hook", "--command", "x", "--url", "http://y"])
    with pytest.raises(SystemExit):
        parser.parse_args(["retrain-hook"])
    assert duration("1d") == 86400
    assert duration("0") == 0
    assert duration("250ms") == 0.25
    assert listen_address(":9095") == ("0.0.0.0", 9095)
    for bad in ("5 minutes", "-1s"):
        with pytest.raises(argparse.ArgumentTypeError):
            duration(bad)
    for bad in ("9095", "host:99999", "a:b:1"):
        with pytest.raises(argparse.ArgumentTypeError):
            listen_address(bad)


def test_bad_settings_stop_the_command_with_a_message(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "modelfleet.alerting", "--url", "ftp://x"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2  # a usage error (modelfleet.exitcodes)
    assert "is not an http(s) URL" in result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "modelfleet.alerting", "--command", "unbalanced 'quote"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2  # a usage error (modelfleet.exitcodes)
    assert "No closing quotation" in result.stderr
