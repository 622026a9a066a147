#!/usr/bin/env python3
"""Check that every role's meta/argument_specs.yml agrees with its defaults/main.yml (``make lint``).

For each role under roles/ (as prometheus-community/ansible does for its roles):

- every variable in defaults/main.yml is an option of an entry point in meta/argument_specs.yml;
- every option with a ``default`` is in defaults/main.yml with the same value, and every option that
  defaults/main.yml sets states that value as its ``default``;
- a ``required`` option is not in defaults/main.yml (a default there satisfies the requirement: it never fails).

Differences listed in KNOWN_DRIFT are reported but do not fail the check; a listed one that is gone fails
it (so the list only shrinks).

Usage: scripts/check_argument_specs.py [ROLES_DIR ...]  (default: roles/ beside this script's parent).
Exit status: 0 in sync, 1 differences found (each printed as ``roles/<role>: ...``), 2 unreadable files.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
#: ``<roles dir>/<role>: <option>`` drift tolerated for now (none: keep it that way).
KNOWN_DRIFT: frozenset[str] = frozenset()


class SpecFileError(Exception):
    """A defaults or argument_specs file that is not the YAML mapping it must be."""


def _load(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SpecFileError(f"{path}: not YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SpecFileError(f"{path}: must be a mapping, not {type(data).__name__}")
    return data


def _same(documented: Any, default: Any) -> bool:
    """Equal values of the same kind (``true`` is not ``1``; ``3600`` is ``3600.0``)."""
    return bool(documented == default) and isinstance(documented, bool) == isinstance(default, bool)


def options(specs: Mapping[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(entry point, option, its spec) for the top-level options of every entry point."""
    for entry, body in (specs.get("argument_specs") or {}).items():
        for name, option in ((body or {}).get("options") or {}).items():
            yield entry, name, option or {}


def role_problems(role: Path) -> Iterator[tuple[str, str]]:
    """(option, what differs) between ``role``'s defaults and its argument specs (option "" for the role)."""
    defaults = _load(role / "defaults" / "main.yml")
    spec_file = role / "meta" / "argument_specs.yml"
    if not spec_file.is_file():
        if defaults:
            yield "", "has defaults/main.yml but no meta/argument_specs.yml"
        return
    documented = list(options(_load(spec_file)))
    for name in sorted(set(defaults) - {name for _entry, name, _option in documented}):
        yield name, "in defaults/main.yml but not in meta/argument_specs.yml"
    for entry, name, option in sorted(documented, key=lambda item: (item[1], item[0] != "main", item[0])):
        where = "" if entry == "main" else f" (entry point {entry})"
        if option.get("required") and name in defaults:
            yield name, f"required{where}, yet defaults/main.yml sets {defaults[name]!r} (the requirement never fails)"
        elif "default" in option and name not in defaults:
            yield name, f"argument_specs default {option['default']!r}{where} but not in defaults/main.yml"
        elif name in defaults and "default" not in option:
            yield name, f"defaults/main.yml sets {defaults[name]!r} but argument_specs states no default{where}"
        elif name in defaults and not _same(option["default"], defaults[name]):
            yield name, f"argument_specs default {option['default']!r}{where} != defaults/main.yml {defaults[name]!r}"


def check(roles_dirs: Sequence[Path]) -> dict[str, str]:
    """Every difference of every role: ``<roles dir>/<role>: <option>`` -> what differs."""
    found = {}
    for roles_dir in roles_dirs:
        for role in sorted(p for p in roles_dir.iterdir() if p.is_dir()):
            for option, problem in role_problems(role):
                found.setdefault(f"{roles_dir.name}/{role.name}: {option}".rstrip(": "), problem)  # main's first
    return found


def main(argv: Sequence[str] | None = None, known: frozenset[str] = KNOWN_DRIFT) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    roles_dirs = [Path(a) for a in args] or [ROOT / "roles"]
    try:
        found = check(roles_dirs)
    except (SpecFileError, OSError) as exc:
        print(f"check_argument_specs: error: {exc}", file=sys.stderr)
        return 2
    failing = 0
    for key, problem in found.items():
        if key in known:
            print(f"known (KNOWN_DRIFT): {key}: {problem}")
        else:
            print(f"{key}: {problem}")
            failing += 1
    checked = {f"{d.name}/{role.name}" for d in roles_dirs for role in d.iterdir() if role.is_dir()}
    for key in sorted(k for k in known if k not in found and k.split(":")[0] in checked):
        print(f"{key}: in sync now; remove it from KNOWN_DRIFT in {Path(__file__).name}")
        failing += 1
    if failing:
        print(f"{failing} difference(s) between argument specs and defaults", file=sys.stderr)
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
