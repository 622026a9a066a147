#!/usr/bin/env python3
"""Check that every Molecule scenario ``make molecule`` runs has a verifier that collects tests (``make lint``).

A testinfra verifier whose folder holds no test passes silently (pytest exits 5, which Molecule's
testinfra verifier does not treat as a failure in every version), and an empty ``MOLECULE_SCENARIOS``
runs nothing. This static check fails instead, for the scenarios named by the Makefile's default:

- the default ``MOLECULE_SCENARIOS ?= ...`` names at least one scenario;
- each is ``molecule/<scenario>/molecule.yml`` with ``verifier.name: testinfra`` (or ``ansible``, whose
  ``verify.yml`` must hold at least one ``assert`` task);
- the roles of ``MOLECULE_ROLES ?= ...`` (role scenarios, ``roles/<role>/molecule/default``) likewise;
- its verifier directory (``verifier.directory``, default ``tests``) holds a ``test_*.py`` or
  ``*_test.py`` file with at least one top-level ``test_`` function (or a ``Test*`` class with one).

Usage: scripts/check_molecule_verifiers.py [PROJECT_DIR]  (default: this script's parent's parent).
Exit status: 0 every scenario collects tests, 1 problems found (each printed), 2 unreadable files.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
_DEFAULT = re.compile(r"^MOLECULE_SCENARIOS\s*\?=(?P<names>.*)$", re.MULTILINE)
_ROLES = re.compile(r"^MOLECULE_ROLES\s*\?=(?P<names>.*)$", re.MULTILINE)
_ASSERT_ACTIONS = ("assert", "ansible.builtin.assert", "ansible.legacy.assert")


class ProjectError(Exception):
    """A Makefile or molecule.yml that cannot be read as this check needs."""


def _makefile_text(makefile: Path) -> str:
    try:
        return makefile.read_text()
    except OSError as exc:
        raise ProjectError(f"{makefile}: {exc.strerror or exc}") from None


def default_scenarios(makefile: Path) -> list[str]:
    """The scenario names of the Makefile's ``MOLECULE_SCENARIOS ?=`` line."""
    match = _DEFAULT.search(_makefile_text(makefile))
    if match is None:
        raise ProjectError(f"{makefile}: no 'MOLECULE_SCENARIOS ?= ...' line")
    return match.group("names").split("#", 1)[0].split()


def default_roles(makefile: Path) -> list[str]:
    """The role names of the Makefile's ``MOLECULE_ROLES ?=`` line (none without the line)."""
    match = _ROLES.search(_makefile_text(makefile))
    return match.group("names").split("#", 1)[0].split() if match else []


def _asserts_in(tasks: Any) -> int:
    """``assert`` tasks in a task list, blocks, rescues and always sections included."""
    count = 0
    for task in tasks if isinstance(tasks, list) else []:
        if not isinstance(task, dict):
            continue
        count += any(action in task for action in _ASSERT_ACTIONS)
        count += sum(_asserts_in(task.get(section)) for section in ("block", "rescue", "always"))
    return count


def _verify_playbook_problems(path: Path) -> Iterator[str]:
    if not path.is_file():
        yield "ansible verifier without verify.yml"
        return
    try:
        plays = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        yield f"verify.yml is not YAML: {exc}"
        return
    if not sum(_asserts_in(play.get("tasks")) for play in plays or [] if isinstance(play, dict)):
        yield "verify.yml asserts nothing (no assert task)"


def _tests_in(path: Path) -> int:
    """Top-level ``test_*`` functions plus ``test_*`` methods of top-level ``Test*`` classes in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    count = 0
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test"):
            count += 1
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            count += sum(isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and item.name.startswith("test")
                         for item in node.body)
    return count


def _config(scenario_dir: Path) -> dict[str, Any]:
    path = scenario_dir / "molecule.yml"
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ProjectError(f"{path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ProjectError(f"{path}: not YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ProjectError(f"{path}: must be a mapping")
    return data


def scenario_problems(scenario_dir: Path) -> Iterator[str]:
    """What keeps the scenario at ``scenario_dir`` from collecting at least one test."""
    if not (scenario_dir / "molecule.yml").is_file():
        yield "no molecule.yml (the scenario does not exist)"
        return
    verifier = _config(scenario_dir).get("verifier") or {}
    name = verifier.get("name", "ansible")
    if name == "ansible":
        yield from _verify_playbook_problems(scenario_dir / "verify.yml")
        return
    if name != "testinfra":
        yield f"verifier {name!r}: this check knows testinfra and ansible"
        return
    tests_dir = scenario_dir / str(verifier.get("directory", "tests"))
    if not tests_dir.is_dir():
        yield f"testinfra directory {tests_dir.name}/ is missing"
        return
    files = sorted(p for p in tests_dir.rglob("*.py") if p.name.startswith("test_") or p.name.endswith("_test.py"))
    if not files:
        yield f"testinfra directory {tests_dir.name}/ has no test_*.py file"
        return
    try:
        total = sum(_tests_in(p) for p in files)
    except SyntaxError as exc:
        yield f"{exc.filename}:{exc.lineno}: not Python: {exc.msg}"
        return
    if total == 0:
        yield f"testinfra directory {tests_dir.name}/ defines no test_ function in {len(files)} file(s)"


def check(project: Path) -> list[str]:
    """Every problem of the Makefile's default scenarios and role scenarios, as ``<scenario dir>: problem``."""
    names = default_scenarios(project / "Makefile")
    if not names:
        return ["Makefile: MOLECULE_SCENARIOS ?= names no scenario (make molecule would test nothing)"]
    directories = [f"molecule/{name}" for name in names]
    directories += [f"roles/{role}/molecule/default" for role in default_roles(project / "Makefile")]
    return [f"{directory}: {problem}" for directory in directories
            for problem in scenario_problems(project / directory)]


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    project = Path(args[0]) if args else ROOT
    try:
        problems = check(project)
    except ProjectError as exc:
        print(f"check_molecule_verifiers: error: {exc}", file=sys.stderr)
        return 2
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} scenario problem(s): a CI layer would pass without testing", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
