"""rollout_publish: the rollout's files written whole and atomically, then the weights (router_weight's logic).

The files are real files in tmp_path; the router is test_router_weight's FakeHAProxy (a stand-in for HAProxy's
runtime API socket, as in that module's unit tests; the rollout role's integration tests use a real HAProxy).
"""

from __future__ import annotations

import base64
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
from harness import collection_root

sys.path.insert(0, str(collection_root()))

from ansible_collections.modelfleet.serving.plugins.module_utils import published_files
from ansible_collections.modelfleet.serving.plugins.modules import rollout_publish
from test_router_weight import FakeHAProxy, haproxy, module_args  # noqa: F401 (fixture)


def run_module(capsys: pytest.CaptureFixture[str], **args: Any) -> dict[str, Any]:
    capsys.readouterr()
    with module_args(args), pytest.raises(SystemExit) as exited:
        rollout_publish.main()
    result: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert (exited.value.code == 0) == (not result.get("failed")), result
    return result


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Any:
    return lambda **args: run_module(capsys, **args)


def files(tmp_path: Path) -> list[dict[str, str]]:
    return [{"path": str(tmp_path / "credit-risk.rollout.json"), "content": '{"phase": "progressing"}\n'},
            {"path": str(tmp_path / "modelfleet_rollout_credit_risk.prom"), "content": "modelfleet_rollout_step 2\n"}]


def test_writes_the_files_in_order_then_is_idempotent(run: Any, tmp_path: Path) -> None:
    wanted = files(tmp_path)
    result = run(files=wanted, mode="0640", _ansible_diff=True)
    assert result["changed"] and [f["changed"] for f in result["files"]] == [True, True]
    for entry in wanted:
        path = Path(entry["path"])
        assert path.read_text() == entry["content"]
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [d["after"] for d in result["diff"]] == [e["content"] for e in wanted]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(Path(e["path"]).name for e in wanted), \
        "no temporary file is left behind"

    again = run(files=wanted, mode="0640")
    assert not again["changed"] and "router" not in again


def test_a_changed_file_is_replaced_not_rewritten_in_place(run: Any, tmp_path: Path) -> None:
    wanted = files(tmp_path)[:1]
    path = Path(wanted[0]["path"])
    path.write_text("old")
    before = path.stat().st_ino
    result = run(files=wanted)
    assert result["changed"] and path.read_text() == wanted[0]["content"]
    assert path.stat().st_ino != before, "renamed over the old file: a reader sees the old or the new content"


def test_only_the_mode_changes_when_the_content_is_there(run: Any, tmp_path: Path) -> None:
    wanted = files(tmp_path)[:1]
    path = Path(wanted[0]["path"])
    path.write_text(wanted[0]["content"])
    path.chmod(0o600)
    inode = path.stat().st_ino
    assert run(files=wanted)["changed"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o644 and path.stat().st_ino == inode


def test_missing_directories_are_created_as_copy_does(run: Any, tmp_path: Path) -> None:
    path = tmp_path / "node-exporter" / "textfile" / "x.prom"
    assert run(files=[{"path": str(path), "content": "1\n"}], _ansible_check_mode=True)["changed"]
    assert not (tmp_path / "node-exporter").exists(), "check mode creates nothing"
    assert run(files=[{"path": str(path), "content": "1\n"}])["changed"]
    assert path.read_text() == "1\n" and stat.S_IMODE(path.parent.stat().st_mode) & 0o700 == 0o700


def test_check_mode_writes_nothing(run: Any, tmp_path: Path) -> None:
    result = run(files=files(tmp_path), _ansible_check_mode=True, _ansible_diff=True)
    assert result["changed"] and list(tmp_path.iterdir()) == []
    assert result["diff"][0]["before"] == ""


def test_a_file_can_set_its_own_mode_and_group(run: Any, tmp_path: Path) -> None:
    wanted = files(tmp_path)
    wanted[1] = {**wanted[1], "mode": "0600", "group": str(os.getgid())}
    assert run(files=wanted, mode="0644")["changed"]
    modes = [stat.S_IMODE(Path(e["path"]).stat().st_mode) for e in wanted]
    assert modes == [0o644, 0o600] and Path(wanted[1]["path"]).stat().st_gid == os.getgid()
    result = run(files=[{**wanted[0], "mode": "x"}])
    assert result["failed"] and "not 'x'" in result["msg"]


def test_reads_before_it_writes_as_slurp_returns_files(run: Any, tmp_path: Path) -> None:
    wanted = files(tmp_path)[:1]
    path = Path(wanted[0]["path"])
    path.write_text("old\n")
    result = run(read=[str(path), str(tmp_path / "missing.json"), str(tmp_path)], files=wanted)
    first, missing, directory = result["read"]
    assert first == {"source": str(path), "content": base64.b64encode(b"old\n").decode(), "encoding": "base64"}
    assert "content" not in missing and "No such file" in missing["msg"]
    assert "content" not in directory and "Is a directory" in directory["msg"]
    assert path.read_text() == wanted[0]["content"], "then it writes"
    alone = run(read=[str(path)], _ansible_check_mode=True)
    assert not alone["changed"] and base64.b64decode(alone["read"][0]["content"]) == wanted[0]["content"].encode()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"files": [{"path": "relative.json", "content": "x"}]}, "path must be absolute, not 'relative.json'"),
        ({"files": [{"path": "/etc/hostname/x.json", "content": "x"}]},
         "cannot write /etc/hostname/x.json: /etc/hostname is not a directory"),
        ({"mode": "rw-r--r--"}, "mode must be an octal mode of 3 or 4 digits such as 0644, not 'rw-r--r--'"),
        ({"owner": "no-such-user-here"}, "owner 'no-such-user-here' is not a user on this host"),
        ({"group": "no-such-group-here"}, "group 'no-such-group-here' is not a group on this host"),
        ({"weights": {"blue": 90}}, "backend"),
        ({"files": [{"path": "/tmp/a", "content": "1"}, {"path": "/tmp/a", "content": "2"}]},
         "files names a path more than once: /tmp/a"),
    ],
)
def test_bad_input_is_named(run: Any, tmp_path: Path, args: dict[str, Any], message: str) -> None:
    args = {"files": files(tmp_path)[:1], **args}
    result = run(**args)
    assert result["failed"] and message in result["msg"], result["msg"]


def test_files_first_then_the_weights(run: Any, haproxy: FakeHAProxy, tmp_path: Path) -> None:  # noqa: F811
    wanted = files(tmp_path)
    result = run(files=wanted, socket=str(haproxy.path), backend="credit-risk", weights={"blue": 10, "green": 90},
                 server_state_file=str(tmp_path / "server-state"))
    assert result["changed"] and all(Path(e["path"]).read_text() == e["content"] for e in wanted)
    assert result["router"]["commands"] == haproxy.changes == [
        "set server credit-risk/green weight 90", "set server credit-risk/blue weight 10"]
    assert (tmp_path / "server-state").exists()


def test_a_router_failure_keeps_router_weights_message(run: Any, haproxy: FakeHAProxy, tmp_path: Path) -> None:  # noqa: F811
    result = run(socket=str(haproxy.path), backend="credit-risk", weights={"purple": 10},
                 server_state_file=str(tmp_path / "server-state"))
    assert result["failed"] and "backend credit-risk has no server 'purple'" in result["msg"]


def test_a_directory_in_the_way_is_named(tmp_path: Path) -> None:
    (tmp_path / "x.prom").mkdir()
    with pytest.raises(published_files.PublishError, match=r"cannot read .*x\.prom: Is a directory"):
        published_files.publish(str(tmp_path / "x.prom"), "x", 0o644, -1, -1, check=False)


def test_documentation_matches_the_argument_spec() -> None:
    import yaml

    documented = yaml.safe_load(rollout_publish.DOCUMENTATION)["options"]
    assert set(documented) == set(rollout_publish.ARGUMENT_SPEC)
    for name, spec in rollout_publish.ARGUMENT_SPEC.items():
        assert documented[name]["type"] == spec["type"], name
        assert documented[name].get("default") == spec.get("default"), name
    yaml.safe_load(rollout_publish.EXAMPLES)
    yaml.safe_load(rollout_publish.RETURN)
