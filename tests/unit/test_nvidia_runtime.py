"""modelfleet.serving.nvidia_runtime: merges into daemon.json and containerd's config.toml, and bad input.

The molecule `provision` scenario checks the merged files with the real daemons' loaders (containerd config
dump, dockerd --validate); these tests cover the merge rules and the module's file handling.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import tomlkit
from harness import collection_root

sys.path.insert(0, str(collection_root()))

from ansible.module_utils.testing import patch_module_args
from ansible_collections.modelfleet.serving.plugins.module_utils.nvidia_runtime import (
    MergeError,
    merge_containerd,
    merge_docker,
)
from ansible_collections.modelfleet.serving.plugins.modules import nvidia_runtime

BINARY = "/usr/bin/nvidia-container-runtime"
DAEMON_JSON = {
    "registry-mirrors": ["https://mirror.example.internal"],
    "log-driver": "json-file",
    "log-opts": {"max-size": "10m", "max-file": "3"},
    "runtimes": {"crun": {"path": "/usr/bin/crun"}},
    "default-runtime": "runc",
}
CONTAINERD_V2 = """version = 2
# site setting: keep this comment
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.9"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = true
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kata]
      runtime_type = "io.containerd.kata.v2"
"""
CRI2 = "io.containerd.grpc.v1.cri"


def cri(text: str, plugin: str = CRI2) -> Any:
    return tomlkit.parse(text).unwrap()["plugins"][plugin]["containerd"]


# --- docker -------------------------------------------------------------------------------------------------


def test_docker_keeps_every_key() -> None:
    merged = merge_docker(json.dumps(DAEMON_JSON), "nvidia", BINARY, set_default=False)
    data = json.loads(merged.text)
    assert merged.changed and merged.runtimes == ["crun", "nvidia"]
    assert data["runtimes"]["nvidia"] == {"path": BINARY}
    others = {k: v for k, v in DAEMON_JSON.items() if k != "runtimes"}
    assert {k: v for k, v in data.items() if k != "runtimes"} == others
    assert data["runtimes"]["crun"] == {"path": "/usr/bin/crun"}
    assert merged.default_runtime == "runc"  # not asked to change it


def test_docker_default_runtime_and_idempotence() -> None:
    first = merge_docker(json.dumps(DAEMON_JSON), "nvidia", BINARY, set_default=True)
    assert first.default_runtime == "nvidia"
    second = merge_docker(first.text, "nvidia", BINARY, set_default=True)
    assert not second.changed and second.text == first.text


def test_docker_keeps_runtime_args() -> None:
    text = json.dumps({"runtimes": {"nvidia": {"path": "/old/path", "runtimeArgs": ["--debug"]}}})
    data = json.loads(merge_docker(text, "nvidia", BINARY, False).text)
    assert data["runtimes"]["nvidia"] == {"path": BINARY, "runtimeArgs": ["--debug"]}


@pytest.mark.parametrize("text", ["", "  \n"])
def test_docker_empty_file(text: str) -> None:
    merged = merge_docker(text, "nvidia", BINARY, False)
    assert json.loads(merged.text) == {"runtimes": {"nvidia": {"path": BINARY}}}


@pytest.mark.parametrize("text, message", [
    ('{"log-driver": "json-file",}', "is not valid JSON"),
    ("[1, 2]", "holds a JSON list, not an object"),
    ('{"runtimes": ["nvidia"]}', "'runtimes' is a list, not an object"),
])
def test_docker_bad_input(text: str, message: str) -> None:
    with pytest.raises(MergeError, match=message):
        merge_docker(text, "nvidia", BINARY, False)


# --- containerd ---------------------------------------------------------------------------------------------


def test_containerd_keeps_systemd_cgroup_and_other_runtimes() -> None:
    merged = merge_containerd(CONTAINERD_V2, "nvidia", BINARY, set_default=False)
    engine = cri(merged.text)
    assert merged.changed and merged.runtimes == ["kata", "nvidia", "runc"]
    assert engine["runtimes"]["runc"]["options"]["SystemdCgroup"] is True
    assert engine["runtimes"]["kata"] == {"runtime_type": "io.containerd.kata.v2"}
    assert engine["runtimes"]["nvidia"] == {"runtime_type": "io.containerd.runc.v2",
                                            "options": {"BinaryName": BINARY, "SystemdCgroup": True}}
    assert engine["default_runtime_name"] == "runc"
    assert "# site setting: keep this comment" in merged.text
    assert tomlkit.parse(merged.text)["plugins"][CRI2]["sandbox_image"] == "registry.k8s.io/pause:3.9"


def test_containerd_default_runtime_idempotent() -> None:
    first = merge_containerd(CONTAINERD_V2, "nvidia", BINARY, set_default=True)
    assert cri(first.text)["default_runtime_name"] == "nvidia" and first.default_runtime == "nvidia"
    second = merge_containerd(first.text, "nvidia", BINARY, set_default=True)
    assert not second.changed and second.text == first.text


def test_containerd_missing_file_gets_version_2() -> None:
    merged = merge_containerd("", "nvidia", BINARY, False, systemd_cgroup=True)
    doc = tomlkit.parse(merged.text).unwrap()
    assert doc["version"] == 2
    assert doc["plugins"][CRI2]["containerd"]["runtimes"]["nvidia"]["options"]["SystemdCgroup"] is True


def test_containerd_no_runc_setting_leaves_systemd_cgroup_out() -> None:
    merged = merge_containerd("version = 2\n", "nvidia", BINARY, False)
    assert "SystemdCgroup" not in cri(merged.text)["runtimes"]["nvidia"]["options"]


def test_containerd_explicit_systemd_cgroup_wins() -> None:
    merged = merge_containerd(CONTAINERD_V2, "nvidia", BINARY, False, systemd_cgroup=False)
    engine = cri(merged.text)
    assert engine["runtimes"]["nvidia"]["options"]["SystemdCgroup"] is False
    assert engine["runtimes"]["runc"]["options"]["SystemdCgroup"] is True


def test_containerd_version_3() -> None:
    text = (
        'version = 3\n[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]\n'
        "SystemdCgroup = true\n"
    )
    merged = merge_containerd(text, "nvidia", BINARY, True)
    engine = cri(merged.text, "io.containerd.cri.v1.runtime")
    assert engine["runtimes"]["nvidia"]["options"] == {"BinaryName": BINARY, "SystemdCgroup": True}
    assert engine["default_runtime_name"] == "nvidia"


@pytest.mark.parametrize("text, message", [
    ("version = 2\n[plugins\n", "is not valid TOML"),
    ('[plugins.cri]\nsystemd_cgroup = true\n', "configuration version None; only versions 2 and 3"),
    ('version = 2\nplugins = "x"\n', "plugins is a String, not a table"),
])
def test_containerd_bad_input(text: str, message: str) -> None:
    with pytest.raises(MergeError, match=message):
        merge_containerd(text, "nvidia", BINARY, False)


# --- the module ---------------------------------------------------------------------------------------------


def run_module(capsys: pytest.CaptureFixture[str], **args: Any) -> dict[str, Any]:
    capsys.readouterr()
    with patch_module_args(args), pytest.raises(SystemExit) as exited:
        nvidia_runtime.main()
    result: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert (exited.value.code == 0) == (not result.get("failed")), result
    return result


def test_module_check_mode_diff_then_apply(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps(DAEMON_JSON))
    path.chmod(0o600)
    checked = run_module(capsys, engine="docker", path=str(path), _ansible_check_mode=True, _ansible_diff=True)
    assert checked["changed"] and "nvidia" in checked["diff"]["after"]
    assert json.loads(path.read_text()) == DAEMON_JSON, "check mode writes nothing"
    applied = run_module(capsys, engine="docker", path=str(path), backup=True)
    assert applied["changed"] and applied["runtimes"] == ["crun", "nvidia"]
    assert Path(applied["backup_file"]).read_text() == json.dumps(DAEMON_JSON)
    assert path.stat().st_mode & 0o777 == 0o600
    again = run_module(capsys, engine="docker", path=str(path))
    assert not again["changed"]


def test_module_not_json_fails_and_leaves_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "daemon.json"
    path.write_text("log-driver: json-file\n")
    result = run_module(capsys, engine="docker", path=str(path))
    assert result["failed"] and "is not valid JSON" in result["msg"] and "left untouched" in result["msg"]
    assert path.read_text() == "log-driver: json-file\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["daemon.json"]


def test_module_containerd_creates_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "containerd" / "config.toml"
    result = run_module(capsys, engine="containerd", path=str(path), set_default=True, systemd_cgroup=True)
    assert result["changed"] and result["default_runtime"] == "nvidia"
    assert path.stat().st_mode & 0o777 == 0o644
    assert cri(path.read_text())["runtimes"]["nvidia"]["options"]["SystemdCgroup"] is True


def test_module_systemd_cgroup_is_containerd_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_module(capsys, engine="docker", path=str(tmp_path / "d.json"), systemd_cgroup=True)
    assert result["failed"] and "containerd only" in result["msg"]
