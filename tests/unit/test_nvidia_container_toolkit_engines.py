"""The nvidia_container_toolkit role's engine step (tasks/engines.yml), run by ansible-playbook on this machine.

Which engines are found (dockerd in /usr/sbin as Debian's docker.io installs it, or /usr/bin, /usr/local/bin),
which configuration is merged, and that an engine is restarted only when its own configuration changed. The
engine binaries are empty STAND-IN files in a temporary directory; the run is in check mode, so the handlers
(``systemctl try-restart``) are notified and listed but do not touch this machine's services. The merge itself
is the real module (tests/unit/test_nvidia_runtime.py); the provision scenario runs the role on Debian hosts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from harness import collection_root

BINARY = "/usr/bin/nvidia-container-runtime"
DOCKER_HANDLER = "Restart docker for the nvidia runtime"
CONTAINERD_HANDLER = "Restart containerd for the nvidia runtime"
MERGED_DAEMON_JSON = {"log-driver": "json-file", "runtimes": {"nvidia": {"path": BINARY}}}


def run_engines(work: Path, engine_dirs: list[Path]) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """engines.yml in check mode over the local connection; the JSON callback's result."""
    (work / "play.yml").write_text(json.dumps([{
        "name": "Engines", "hosts": "localhost", "gather_facts": False,
        "tasks": [{"name": "Engine step", "ansible.builtin.include_role": {
            "name": "modelfleet.serving.nvidia_container_toolkit", "tasks_from": "engines.yml"}}]}]))
    (work / "vars.json").write_text(json.dumps({
        "_nvidia_container_toolkit_engine_dirs": [str(d) for d in engine_dirs],
        "nvidia_container_toolkit_docker_config": str(work / "daemon.json"),
        "nvidia_container_toolkit_containerd_config": str(work / "config.toml"),
        "ansible_python_interpreter": sys.executable}))
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(collection_root()), "ANSIBLE_HOME": str(work / "home"),
           "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", "ANSIBLE_CALLBACK_RESULT_FORMAT": "json",
           "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCALHOST_WARNING": "0", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0"}
    playbook = shutil.which("ansible-playbook", path=str(Path(sys.executable).parent)) or "ansible-playbook"
    done = subprocess.run([playbook, "--check", "-c", "local", "-i", "localhost,", "-e", f"@{work / 'vars.json'}",
                           str(work / "play.yml")], env=env, cwd=work, capture_output=True, text=True, timeout=300)
    start = done.stdout.find("{")
    return done, (json.loads(done.stdout[start:]) if start >= 0 else {})


def task_results(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Task name (without the role's prefix) -> the localhost result of every task and handler that ran."""
    return {task["task"]["name"].rpartition(" : ")[2]: task["hosts"].get("localhost", {})
            for play in result.get("plays", []) for task in play["tasks"]}


def engine_binaries(directory: Path, *names: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        (directory / name).write_text("#!/bin/sh\n# stand-in engine binary\n")
        (directory / name).chmod(0o755)
    return directory


def test_docker_in_sbin_is_found_and_only_its_handler_is_notified(tmp_path: Path) -> None:
    """Debian's docker.io: dockerd in /usr/sbin. daemon.json needs the runtime; containerd is already merged."""
    (tmp_path / "daemon.json").write_text(json.dumps({"log-driver": "json-file"}))
    usr_bin = engine_binaries(tmp_path / "usr/bin", "containerd")
    usr_sbin = engine_binaries(tmp_path / "usr/sbin", "dockerd")
    subprocess.run([sys.executable, "-c", "import tomlkit"], check=True)  # the containerd merge needs it
    (tmp_path / "config.toml").write_text(
        'version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia]\n'
        f'runtime_type = "io.containerd.runc.v2"\n'
        f'[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia.options]\nBinaryName = "{BINARY}"\n')
    done, result = run_engines(tmp_path, [usr_bin, usr_sbin, tmp_path / "usr/local/bin"])
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    tasks = task_results(result)
    assert tasks["Note the engines found"]["ansible_facts"]["_nvidia_container_toolkit_engines_found"] == [
        "docker", "containerd"]
    assert tasks["Merge the nvidia runtime into Docker's daemon.json"]["changed"] is True
    assert tasks["Merge the nvidia runtime into containerd's config.toml"]["changed"] is False
    assert DOCKER_HANDLER in tasks and CONTAINERD_HANDLER not in tasks, sorted(tasks)
    assert json.loads((tmp_path / "daemon.json").read_text()) == {"log-driver": "json-file"}, "check mode"


def test_an_engine_that_is_not_installed_is_left_alone(tmp_path: Path) -> None:
    """Only containerd is installed: daemon.json is neither read nor created; containerd's file would be."""
    local_bin = engine_binaries(tmp_path / "usr/local/bin", "containerd")
    done, result = run_engines(tmp_path, [tmp_path / "usr/bin", tmp_path / "usr/sbin", local_bin])
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    tasks = task_results(result)
    assert tasks["Merge the nvidia runtime into Docker's daemon.json"].get("skipped") is True
    assert tasks["Merge the nvidia runtime into containerd's config.toml"]["changed"] is True
    assert CONTAINERD_HANDLER in tasks and DOCKER_HANDLER not in tasks, sorted(tasks)
    assert not (tmp_path / "daemon.json").exists() and not (tmp_path / "config.toml").exists()


def test_an_already_merged_daemon_json_notifies_nothing(tmp_path: Path) -> None:
    (tmp_path / "daemon.json").write_text(json.dumps(MERGED_DAEMON_JSON))
    usr_bin = engine_binaries(tmp_path / "usr/bin", "dockerd")
    done, result = run_engines(tmp_path, [usr_bin])
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    tasks = task_results(result)
    assert tasks["Merge the nvidia runtime into Docker's daemon.json"]["changed"] is False
    assert DOCKER_HANDLER not in tasks and CONTAINERD_HANDLER not in tasks, sorted(tasks)


@pytest.mark.parametrize("content", ["log-driver: json-file\n", '{"runtimes": {"nvidia": '])
def test_a_daemon_json_that_is_not_json_fails_the_role_and_stays(tmp_path: Path, content: str) -> None:
    (tmp_path / "daemon.json").write_text(content)
    usr_bin = engine_binaries(tmp_path / "usr/bin", "dockerd")
    done, result = run_engines(tmp_path, [usr_bin])
    assert done.returncode != 0
    failed = task_results(result)["Merge the nvidia runtime into Docker's daemon.json"]
    assert failed["failed"] is True and "is not valid JSON" in failed["msg"], failed
    assert (tmp_path / "daemon.json").read_text() == content
    assert DOCKER_HANDLER not in task_results(result)
