"""Label joins: the id scheme, outcomes, TTL and capacity bounds, checkpoint state; label parsing and the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from modelfleet.drift.joiner import LabelJoiner, label_key, row_keys
from modelfleet.drift.labels import LabelError, LabelFile, parse_feedback, parse_label

V1 = ("m", "1")


def _valid(_version: tuple[str, str], raw: Any) -> Any | None:
    return str(raw) if str(raw) in {"0", "1"} else None


def _joiner(**kwargs: Any) -> LabelJoiner:
    return LabelJoiner(_valid, **kwargs)


def test_id_scheme_single_and_multi_row() -> None:
    assert row_keys("req-1", 1) == ["req-1"]
    assert row_keys("req-2", 3) == ["req-2#0", "req-2#1", "req-2#2"]
    assert label_key("req-2", 1) == "req-2#1" == parse_label({"id": "req-2", "row": 1, "label": 0}).key
    assert parse_label({"id": "req-2#1", "label": 0}).key == "req-2#1"


def test_label_after_prediction_joins() -> None:
    joiner = _joiner()
    assert joiner.add_predictions(V1, ["a", "b"], ["1", "0"], now=0.0) == []
    outcome, joined = joiner.add_label("a", 1, now=1.0)
    assert outcome == "joined" and joined is not None
    assert (joined.version, joined.predicted, joined.actual) == (V1, "1", "1")
    assert joiner.add_label("a", 0, now=2.0)[0] == "duplicate"
    assert joiner.outcomes["joined"] == 1 and joiner.outcomes["duplicate"] == 1
    assert list(joiner.predictions) == ["b"]


def test_label_before_prediction_waits_and_joins_when_it_arrives() -> None:
    joiner = _joiner()
    assert joiner.add_label("x", 0, now=0.0) == ("waiting", None)
    assert joiner.add_label("x", 1, now=0.5)[0] == "duplicate"
    joined = joiner.add_predictions(V1, ["x"], ["1"], now=1.0)
    assert [(j.predicted, j.actual) for j in joined] == [("1", "0")]
    assert joiner.outcomes["joined_after_wait"] == 1
    assert not joiner.waiting and not joiner.predictions


def test_unknown_labels_become_unmatched_after_the_ttl_and_late_labels_are_told_apart() -> None:
    joiner = _joiner(ttl=10.0)
    joiner.add_label("ghost", 1, now=0.0)
    joiner.add_predictions(V1, ["p"], ["0"], now=0.0)
    joiner.expire(now=5.0)
    assert "ghost" in joiner.waiting and "p" in joiner.predictions
    joiner.expire(now=10.5)
    assert joiner.outcomes["unmatched"] == 1 and not joiner.waiting
    assert joiner.predictions_expired == 1 and not joiner.predictions
    assert joiner.add_label("p", 0, now=11.0)[0] == "late"


def test_invalid_labels_are_counted_when_joined() -> None:
    joiner = _joiner()
    joiner.add_predictions(V1, ["a"], ["1"], now=0.0)
    assert joiner.add_label("a", 7, now=0.0) == ("invalid", None)
    assert joiner.outcomes["invalid"] == 1 and joiner.outcomes["joined"] == 0


def test_memory_is_bounded() -> None:
    joiner = _joiner(max_predictions=3, max_labels=2, max_tombstones=4)
    joiner.add_predictions(V1, [f"p{i}" for i in range(10)], ["0"] * 10, now=0.0)
    assert list(joiner.predictions) == ["p7", "p8", "p9"] and joiner.predictions_expired == 7
    assert len(joiner.tombstones) == 4
    for i in range(5):
        joiner.add_label(f"l{i}", 1, now=0.0)
    assert list(joiner.waiting) == ["l3", "l4"] and joiner.outcomes["unmatched"] == 3


def test_state_round_trips_through_json() -> None:
    joiner = _joiner(ttl=100.0)
    joiner.add_predictions(V1, ["a", "b"], ["0", "1"], now=1.0)
    joiner.add_predictions(("m", "2"), ["c"], ["1"], now=2.0)
    joiner.add_label("early", 1, now=3.0)
    joiner.add_label("a", 0, now=4.0)
    restored = _joiner(ttl=100.0)
    restored.load_state(json.loads(json.dumps(joiner.state_dict())))
    assert restored.state_dict() == joiner.state_dict()
    assert restored.add_label("c", 1, now=5.0)[1] is not None
    assert restored.add_label("a", 1, now=5.0)[0] == "duplicate"
    assert restored.add_predictions(V1, ["early"], ["1"], now=5.0)[0].actual == "1"


@pytest.mark.parametrize(("body", "message"), [
    (b"{", "not valid JSON"),
    (b"[]", "expected an object"),
    (b'{"label": 1}', ".id"),
    (b'{"id": "", "label": 1}', ".id"),
    (b'{"id": "a"}', ".label: required"),
    (b'{"id": "a", "label": null}', "number or a string"),
    (b'{"id": "a", "label": true}', "number or a string"),
    (b'{"id": "a", "label": 1, "row": -1}', ".row"),
    (b'{"id": "a", "label": 1, "extra": 2}', "unknown field"),
    (b'{"labels": [{"id": "a", "label": 1}, {"id": 3, "label": 1}]}', "labels[1].id"),
    (b'{"labels": {"id": "a"}}', "a batch is"),
])
def test_feedback_bodies_are_validated(body: bytes, message: str) -> None:
    with pytest.raises(LabelError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_feedback(body, max_labels=10)


def test_feedback_single_and_batch() -> None:
    assert [label.key for label in parse_feedback(b'{"id": "a", "label": 1}', 10)] == ["a"]
    batch = parse_feedback(b'{"labels": [{"id": "a", "label": 1}, {"id": "b", "row": 2, "label": "x"}]}', 10)
    assert [(label.key, label.value) for label in batch] == [("a", 1), ("b#2", "x")]
    with pytest.raises(LabelError, match="at most 1"):
        parse_feedback(b'{"labels": [{"id": "a", "label": 1}, {"id": "b", "label": 1}]}', 1)


def test_label_file_is_tailed_across_partial_lines_truncation_and_replacement(tmp_path: Path) -> None:
    path = tmp_path / "labels.jsonl"
    tail = LabelFile(path)
    assert tail.read() == ([], 0)  # not there yet
    path.write_bytes(b'{"id": "a", "label": 1}\nnot json\n{"id": "b", "label": 0}')
    labels, invalid = tail.read()
    assert [label.key for label in labels] == ["a"] and invalid == 1
    with path.open("ab") as handle:
        handle.write(b"\n")
    assert [label.key for label in tail.read()[0]] == ["b"]
    resumed = LabelFile(path, tail.state_dict())
    assert resumed.read() == ([], 0)
    replacement = tmp_path / "labels.new"
    replacement.write_bytes(b'{"id": "c", "label": 1}\n')
    replacement.replace(path)  # logrotate-style: a new file under the same name
    assert [label.key for label in resumed.read()[0]] == ["c"]
    path.write_bytes(b"")
    assert resumed.read() == ([], 0)
