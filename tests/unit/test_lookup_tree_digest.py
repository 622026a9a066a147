"""The modelfleet.serving.tree_digest lookup: one digest per tree, stable for the same content and names."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from ansible.errors import AnsibleLookupError
from harness import REPO, load_example

plugin = load_example(REPO / "plugins" / "lookup" / "tree_digest.py")


def _tree(root: Path) -> Path:
    (root / "tasks").mkdir(parents=True)
    (root / "tasks" / "main.yml").write_text("- name: A task\n")
    (root / "defaults.yml").write_text("x: 1\n")
    return root


def test_the_same_content_under_the_same_names_has_one_digest_wherever_it_lies(tmp_path: Path) -> None:
    first, second = _tree(tmp_path / "a"), _tree(tmp_path / "b")
    assert plugin.tree_digest(str(first)) == plugin.tree_digest(str(second))
    assert len(plugin.tree_digest(str(first))) == 64


@pytest.mark.parametrize("change", ["edit", "add", "remove", "rename"])
def test_a_changed_added_removed_or_renamed_file_changes_the_digest(tmp_path: Path, change: str) -> None:
    root = _tree(tmp_path / "role")
    before = plugin.tree_digest(str(root))
    if change == "edit":
        (root / "defaults.yml").write_text("x: 2\n")
    elif change == "add":
        (root / "tasks" / "extra.yml").write_text("")
    elif change == "remove":
        (root / "defaults.yml").unlink()
    else:
        (root / "defaults.yml").rename(root / "vars.yml")
    assert plugin.tree_digest(str(root)) != before


def test_python_caches_are_left_out(tmp_path: Path) -> None:
    root = _tree(tmp_path / "role")
    before = plugin.tree_digest(str(root))
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    (root / "stray.pyc").write_bytes(b"\0")
    assert plugin.tree_digest(str(root)) == before


def test_a_file_term_is_its_own_tree(tmp_path: Path) -> None:
    archive = tmp_path / "wheelhouse.tar"
    archive.write_bytes(b"wheels")
    copy = tmp_path / "elsewhere"
    copy.mkdir()
    shutil.copy(archive, copy / "wheelhouse.tar")
    assert plugin.tree_digest(str(archive)) == plugin.tree_digest(str(copy / "wheelhouse.tar"))
    archive.write_bytes(b"other wheels")
    assert plugin.tree_digest(str(archive)) != plugin.tree_digest(str(copy / "wheelhouse.tar"))


def test_the_lookup_answers_one_digest_per_term_and_refuses_a_missing_path(tmp_path: Path) -> None:
    first, second = _tree(tmp_path / "a"), tmp_path / "file"
    second.write_text("x")
    lookup = plugin.LookupModule()
    assert lookup.run([str(first), str(second)], variables={}) == [plugin.tree_digest(str(first)),
                                                                 plugin.tree_digest(str(second))]
    with pytest.raises(AnsibleLookupError, match="does not exist on the controller"):
        lookup.run([str(tmp_path / "missing")], variables={})
    with pytest.raises(AnsibleLookupError, match="at least one"):
        lookup.run([], variables={})
