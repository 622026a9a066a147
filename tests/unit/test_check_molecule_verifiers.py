"""scripts/check_molecule_verifiers.py (part of ``make lint``): no Molecule layer passes without a test."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from harness import REPO, load_example

checker = load_example(REPO / "scripts" / "check_molecule_verifiers.py")


def project(root: Path, default: str, scenarios: dict[str, dict[str, str] | None]) -> Path:
    """A project with ``MOLECULE_SCENARIOS ?= default`` and testinfra scenarios holding the given test files."""
    (root / "Makefile").write_text(f"X := 1\nMOLECULE_SCENARIOS ?= {default}\nmolecule:\n\ttrue\n")
    for name, files in scenarios.items():
        scenario = root / "molecule" / name
        scenario.mkdir(parents=True)
        (scenario / "molecule.yml").write_text(yaml.safe_dump({"verifier": {"name": "testinfra"}}))
        if files is not None:
            (scenario / "tests").mkdir()
            for file, text in files.items():
                (scenario / "tests" / file).write_text(text)
    return root


def test_the_projects_scenarios_collect_tests(capsys: pytest.CaptureFixture[str]) -> None:
    assert checker.main([str(REPO)]) == 0, capsys.readouterr().out


def test_scenarios_with_tests_pass(tmp_path: Path) -> None:
    project(tmp_path, "a b  # comment", {
        "a": {"test_a.py": "def test_one(host):\n    assert host\n"},
        "b": {"helpers.py": "", "x_test.py": "class TestB:\n    def test_m(self):\n        pass\n"},
    })
    assert checker.check(tmp_path) == []


@pytest.mark.parametrize(("files", "problem"), [
    (None, "testinfra directory tests/ is missing"),
    ({}, "testinfra directory tests/ has no test_*.py file"),
    ({"conftest.py": "def test_not_here():\n    pass\n"}, "testinfra directory tests/ has no test_*.py file"),
    ({"test_a.py": '"""Only a docstring."""\n'}, "testinfra directory tests/ defines no test_ function in 1 file(s)"),
    ({"test_a.py": "def helper():\n    def test_nested():\n        pass\n"},
     "testinfra directory tests/ defines no test_ function in 1 file(s)"),
    ({"test_a.py": "def test_(:\n"}, "test_a.py:1: not Python"),
])
def test_a_verifier_without_tests_fails(tmp_path: Path, files: dict[str, str] | None, problem: str) -> None:
    project(tmp_path, "fleet", {"fleet": files})
    problems = checker.check(tmp_path)
    assert len(problems) == 1
    assert problems[0].startswith("molecule/fleet: ")
    assert problem in problems[0]


def test_an_empty_default_fails(tmp_path: Path) -> None:
    project(tmp_path, "", {})
    assert checker.check(tmp_path) == [
        "Makefile: MOLECULE_SCENARIOS ?= names no scenario (make molecule would test nothing)"]


def test_a_named_scenario_that_does_not_exist_fails(tmp_path: Path) -> None:
    project(tmp_path, "gone", {})
    assert checker.check(tmp_path) == ["molecule/gone: no molecule.yml (the scenario does not exist)"]


def test_the_verifier_directory_and_ansible_verifier_are_honoured(tmp_path: Path) -> None:
    project(tmp_path, "custom ans", {})
    custom = tmp_path / "molecule" / "custom"
    custom.mkdir(parents=True)
    (custom / "molecule.yml").write_text(yaml.safe_dump({"verifier": {"name": "testinfra", "directory": "checks"}}))
    (custom / "checks").mkdir()
    (custom / "checks" / "test_c.py").write_text("def test_c():\n    pass\n")
    ans = tmp_path / "molecule" / "ans"
    ans.mkdir(parents=True)
    (ans / "molecule.yml").write_text(yaml.safe_dump({"verifier": {"name": "ansible"}}))
    assert checker.check(tmp_path) == ["molecule/ans: ansible verifier without verify.yml"]
    (ans / "verify.yml").write_text("---\n")
    assert checker.check(tmp_path) == ["molecule/ans: verify.yml asserts nothing (no assert task)"]
    (ans / "verify.yml").write_text(yaml.safe_dump([{"hosts": "all", "tasks": [
        {"name": "Read", "ansible.builtin.command": "true"},
        {"block": [{"name": "Check", "ansible.builtin.assert": {"that": True}}]}]}]))
    assert checker.check(tmp_path) == []


def test_role_scenarios_of_molecule_roles_are_checked(tmp_path: Path) -> None:
    """``MOLECULE_ROLES ?= ...``: each role's default scenario must exist and its verifier assert something."""
    project(tmp_path, "a", {"a": {"test_a.py": "def test_a():\n    pass\n"}})
    makefile = tmp_path / "Makefile"
    makefile.write_text(makefile.read_text() + "MOLECULE_ROLES ?= web db\n")
    web = tmp_path / "roles" / "web" / "molecule" / "default"
    web.mkdir(parents=True)
    (web / "molecule.yml").write_text(yaml.safe_dump({"verifier": {"name": "ansible"}}))
    (web / "verify.yml").write_text(yaml.safe_dump([{"hosts": "all", "tasks": [{"ansible.builtin.debug": {}}]}]))
    assert checker.check(tmp_path) == [
        "roles/web/molecule/default: verify.yml asserts nothing (no assert task)",
        "roles/db/molecule/default: no molecule.yml (the scenario does not exist)"]


def test_unreadable_project_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert checker.main([str(tmp_path)]) == 2
    assert "Makefile" in capsys.readouterr().err
    (tmp_path / "Makefile").write_text("all:\n\ttrue\n")
    assert checker.main([str(tmp_path)]) == 2
    assert "no 'MOLECULE_SCENARIOS ?= ...' line" in capsys.readouterr().err


def test_main_exits_1_and_names_each_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project(tmp_path, "a b", {"a": {}, "b": {"test_b.py": "def test_b():\n    pass\n"}})
    assert checker.main([str(tmp_path)]) == 1
    out = capsys.readouterr()
    assert out.out == "molecule/a: testinfra directory tests/ has no test_*.py file\n"
    assert "1 scenario problem(s)" in out.err


def test_make_molecule_refuses_an_empty_scenario_list() -> None:
    """The Makefile's guard runs before the testbed: ``make molecule MOLECULE_SCENARIOS=`` fails at once."""
    result = subprocess.run(["make", "-C", str(REPO), "molecule-scenarios", "MOLECULE_SCENARIOS="],
                            capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "MOLECULE_SCENARIOS is empty" in result.stderr
    result = subprocess.run(["make", "-C", str(REPO), "molecule-scenarios", "MOLECULE_SCENARIOS=fleet"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
