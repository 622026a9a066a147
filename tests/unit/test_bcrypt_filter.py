"""The modelfleet.serving.bcrypt_hash filter: a real bcrypt hash, stable for the same input, clear errors."""

from __future__ import annotations

import bcrypt
import pytest
from ansible.errors import AnsibleFilterError
from harness import REPO, load_example

plugin = load_example(REPO / "plugins" / "filter" / "bcrypt_hash.py")


def test_hash_verifies_and_is_stable_per_seed() -> None:
    first = plugin.bcrypt_hash("s3cret", "mf-monitoring-1:ops")
    assert first.startswith("$2y$10$") and len(first) == 60
    assert bcrypt.checkpw(b"s3cret", ("$2b$" + first[4:]).encode())
    assert not bcrypt.checkpw(b"other", ("$2b$" + first[4:]).encode())
    assert plugin.bcrypt_hash("s3cret", "mf-monitoring-1:ops") == first
    assert plugin.bcrypt_hash("s3cret", "mf-monitoring-2:ops") != first
    assert plugin.bcrypt_hash("s3cret", "mf-monitoring-1:ops", 4).startswith("$2y$04$")


def test_the_filter_is_registered() -> None:
    assert plugin.FilterModule().filters()["bcrypt_hash"] is plugin.bcrypt_hash


@pytest.mark.parametrize(("password", "rounds", "message"), [
    ("", 10, "non-empty string"),
    (None, 10, "non-empty string"),
    ("x" * 73, 10, "at most 72 bytes"),
    ("é" * 37, 10, "this one has 74"),
    ("ok", 3, "rounds must be an integer from 4 to 31"),
    ("ok", "10", "rounds must be an integer"),
])
def test_bad_input_is_named(password: object, rounds: object, message: str) -> None:
    with pytest.raises(AnsibleFilterError, match=message):
        plugin.bcrypt_hash(password, "seed", rounds)
