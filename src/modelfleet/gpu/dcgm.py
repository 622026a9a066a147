"""dcgm-exporter collector lists: parse its CSV format, check field names, find the fields our monitoring uses."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

#: A DCGM field as dcgm-exporter names it (DCGM_FI_*) or one of the exporter's own (DCGM_EXP_*).
FIELD = re.compile(r"\bDCGM_(?:FI|EXP)_[A-Z0-9_]+\b")
METRIC_TYPES = frozenset({"gauge", "counter", "label", "histogram"})


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    help: str
    enabled: bool


class CollectorsError(ValueError):
    """A collectors CSV line that dcgm-exporter would reject, or field names it does not know."""


def parse_counters(text: str, *, include_commented: bool = False) -> dict[str, Field]:
    """Fields of a dcgm-exporter counters CSV (``FIELD, type, help``); commented-out rows only when asked."""
    fields: dict[str, Field] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        enabled = not line.startswith("#")
        body = line.lstrip("#").strip()
        if not body or not body.startswith("DCGM_"):
            continue  # blank line or prose comment
        if not enabled and not include_commented:
            continue
        parts = [p.strip() for p in body.split(",", 2)]
        if len(parts) != 3 or not FIELD.fullmatch(parts[0]) or parts[1] not in METRIC_TYPES:
            if not enabled:
                continue  # a commented line that is not a counter row
            raise CollectorsError(f"line {number}: {raw!r} is not 'DCGM_FI_FIELD, <gauge|counter|label>, help'")
        fields[parts[0]] = Field(parts[0], parts[1], parts[2], enabled)
    return fields


def unknown_fields(names: Iterable[str], known: Mapping[str, object]) -> list[str]:
    """The names that are not known fields, in the order given."""
    return [name for name in names if name not in known]


def check_collectors(names: Iterable[str], known: Mapping[str, object]) -> None:
    """Raise CollectorsError naming every unknown field."""
    unknown = unknown_fields(names, known)
    if unknown:
        raise CollectorsError(f"unknown DCGM field(s): {', '.join(unknown)}")


def fields_used(paths: Iterable[Path]) -> set[str]:
    """Every DCGM field named in the given files (alert rules, dashboards)."""
    found: set[str] = set()
    for path in paths:
        found |= set(FIELD.findall(path.read_text()))
    return found


def exposition_fields(text: str) -> set[str]:
    """The DCGM metric names in a Prometheus exposition (what an exporter actually serves)."""
    names = (line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#"))
    return {name for name in names if FIELD.fullmatch(name)}
