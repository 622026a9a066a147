"""Durations: the one grammar for every time setting (model spec, rollout waits, command-line options).

A duration is a number of seconds (``90``, ``2.5``) or a decimal number with a unit: ``ms``, ``s``,
``m``, ``h`` or ``d`` (``250ms``, ``60s``, ``5m``, ``1.5h``, ``1d``). Whitespace around it is ignored.
Zero is refused unless the caller allows it (``allow_zero=True``: a wait or a cooldown that can be off).
Errors are :class:`ValueError` whose message names the value: ``'5 minutes' is not a duration like ...``.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable

UNITS: dict[str, float] = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^(?P<n>\d+(?:\.\d+)?)(?P<unit>ms|s|m|h|d)?$")
_EXAMPLES = "250ms, 60s, 5m, 1h or 1d"


def parse_duration(text: str | float, *, allow_zero: bool = False) -> float:
    """Seconds in ``text``: a duration string or a number of seconds; > 0 (>= 0 with ``allow_zero``)."""
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise ValueError(f"{text!r} is not a duration like {_EXAMPLES}")
    if isinstance(text, str):
        match = _DURATION.match(text.strip())
        if not match:
            raise ValueError(f"{text!r} is not a duration like {_EXAMPLES}")
        seconds = float(match["n"]) * UNITS[match["unit"] or "s"]
    else:
        seconds = float(text)
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        raise ValueError(f"{text!r} is not a {'duration >= 0' if allow_zero else 'positive duration'}")
    return seconds


def duration_argument(*, allow_zero: bool = False) -> Callable[[str], float]:
    """An argparse ``type=`` that parses a duration; a bad one is a usage error naming the value."""

    def duration(text: str) -> float:
        try:
            return parse_duration(text, allow_zero=allow_zero)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return duration
