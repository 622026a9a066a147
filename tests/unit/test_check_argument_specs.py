"""scripts/check_argument_specs.py (part of ``make lint``): argument specs and defaults of every role agree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import REPO, load_example

checker = load_example(REPO / "scripts" / "check_argument_specs.py")


def role(root: Path, name: str, defaults: dict[str, Any] | None, options: dict[str, Any] | None) -> Path:
    path = root / "roles" / name
    (path / "tasks").mkdir(parents=True)
    if defaults is not None:
        (path / "defaults").mkdir()
        (path / "defaults" / "main.yml").write_text(yaml.safe_dump(defaults))
    if options is not None:
        (path / "meta").mkdir()
        specs = {"argument_specs": {"main": {"short_description": "x", "options": options}}}
        (path / "meta" / "argument_specs.yml").write_text(yaml.safe_dump(specs))
    return path


def test_the_collections_roles_are_in_sync(capsys: pytest.CaptureFixture[str]) -> None:
    assert checker.main([str(REPO / "roles")]) == 0, capsys.readouterr().out


def test_every_kind_of_drift_is_named(tmp_path: Path) -> None:
    role(tmp_path, "good", {"a": 1, "b": [], "c": True}, {"a": {"type": "int", "default": 1},
                                                           "b": {"type": "list", "default": []},
                                                           "c": {"type": "bool", "default": True},
                                                           "d": {"type": "str", "required": True}})
    role(tmp_path, "drifted", {"undocumented": 1, "other": 2, "silent": "x", "needed": "", "flag": 1},
         {"other": {"default": 3}, "silent": {"type": "str"}, "needed": {"required": True},
          "missing": {"default": "y"}, "flag": {"type": "bool", "default": True}})
    role(tmp_path, "unspecified", {"v": 1}, None)
    role(tmp_path, "bare", None, None)
    assert checker.check([tmp_path / "roles"]) == {
        "roles/drifted: flag": "argument_specs default True != defaults/main.yml 1",
        "roles/drifted: undocumented": "in defaults/main.yml but not in meta/argument_specs.yml",
        "roles/drifted: missing": "argument_specs default 'y' but not in defaults/main.yml",
        "roles/drifted: needed": "required, yet defaults/main.yml sets '' (the requirement never fails)",
        "roles/drifted: other": "argument_specs default 3 != defaults/main.yml 2",
        "roles/drifted: silent": "defaults/main.yml sets 'x' but argument_specs states no default",
        "roles/unspecified": "has defaults/main.yml but no meta/argument_specs.yml",
    }


def test_every_entry_point_is_checked(tmp_path: Path) -> None:
    path = role(tmp_path, "multi", {"a": 1}, {"a": {"default": 1}})
    specs = yaml.safe_load((path / "meta" / "argument_specs.yml").read_text())
    specs["argument_specs"]["other"] = {"short_description": "y", "options": {"a": {"default": 2}}}
    (path / "meta" / "argument_specs.yml").write_text(yaml.safe_dump(specs))
    assert checker.check([tmp_path / "roles"]) == {
        "roles/multi: a": "argument_specs default 2 (entry point other) != defaults/main.yml 1"}


def test_exit_status_known_drift_and_stale_exceptions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    role(tmp_path, "r", {"a": 1}, {"a": {"default": 2}})
    roles = str(tmp_path / "roles")
    assert checker.main([roles], known=frozenset()) == 1
    assert "roles/r: a: argument_specs default 2 != defaults/main.yml 1" in capsys.readouterr().out
    assert checker.main([roles], known=frozenset({"roles/r: a"})) == 0
    assert checker.main([roles], known=frozenset({"roles/r: a", "roles/r: b"})) == 1
    assert "roles/r: b: in sync now; remove it from KNOWN_DRIFT" in capsys.readouterr().out
    (tmp_path / "roles" / "r" / "defaults" / "main.yml").write_text("- not a mapping\n")
    assert checker.main([roles]) == 2
