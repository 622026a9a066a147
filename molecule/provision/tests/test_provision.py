"""Verifier of the provision scenario: behaviour on the hosts, not task results.

STAND-INs (no GPU here): mfp-gpu-1's GPU is a fixture sysfs tree read by gpu_facts, its driver and toolkit
packages are dummy packages from a local apt repository, and its dcgm-exporter is a stand-in serving synthetic
DCGM metrics. Docker's and containerd's own configuration loaders are real (Debian's dockerd and containerd).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

SCENARIO = Path(os.environ.get("MOLECULE_SCENARIO_DIRECTORY", Path(__file__).resolve().parents[1]))
INVENTORY = SCENARIO / "inventory/hosts.yml"
GPU_HOST = "mfp-gpu-1"
DRIVER_PACKAGES = {"nvidia-driver", "nvidia-open-kernel-dkms", "nvidia-persistenced"}
TOOLKIT_PACKAGES = {"nvidia-container-toolkit", "nvidia-container-toolkit-base", "libnvidia-container-tools",
                    "libnvidia-container1"}
HARDENING = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
             "ProtectKernelModules": "yes", "ProtectControlGroups": "yes", "RestrictSUIDSGID": "yes"}


def name(host: Any) -> str:
    return str(host.backend.get_hostname())


def node_exporter_unit(host: Any) -> str:
    return "prometheus-node-exporter" if name(host) == "mfp-monitor" else "node_exporter"


def test_node_exporter_answers(host: Any) -> None:
    metrics = host.check_output("curl -fsS --max-time 10 http://127.0.0.1:9100/metrics")
    assert "node_exporter_build_info" in metrics and "node_textfile_scrape_error" in metrics


def test_node_exporter_unit_hardened_own_user(host: Any) -> None:
    unit = node_exporter_unit(host)
    shown = dict(line.split("=", 1) for line in host.check_output(
        f"systemctl show {unit} -p User -p NoNewPrivileges -p ProtectSystem -p ProtectHome -p PrivateTmp "
        "-p ProtectKernelModules -p ProtectControlGroups -p RestrictSUIDSGID -p ActiveState").splitlines())
    assert shown.pop("ActiveState") == "active"
    assert shown.pop("User") == "node-exp"
    assert shown == HARDENING
    pid = host.check_output(f"systemctl show {unit} -p MainPID --value")
    assert host.check_output(f"ps -o user= -p {pid}") == "node-exp"


def test_node_exporter_held_or_pinned(host: Any) -> None:
    if name(host) == "mfp-monitor":
        assert "prometheus-node-exporter" in host.check_output("apt-mark showhold").split()
    else:  # the release archive: the binary that was verified, at a fixed version
        assert host.file("/usr/local/bin/node_exporter").mode == 0o755
        version = host.run("/usr/local/bin/node_exporter --version")
        assert "version 1.5" in version.stdout + version.stderr


def test_dcgm_exporter_standin_only_on_the_gpu_host(host: Any) -> None:
    answer = host.run("curl -fsS --max-time 10 http://127.0.0.1:9400/metrics")
    if name(host) != GPU_HOST:
        assert answer.rc != 0, "no GPU: no dcgm exporter"
        return
    assert answer.rc == 0, answer.stderr
    served = set(re.findall(r"^(DCGM_FI_\w+)\{", answer.stdout, re.M))
    lines = host.file("/etc/dcgm-exporter/collectors.csv").content_string.splitlines()
    collectors = {line.split(",")[0] for line in lines if line and not line.startswith("#")}
    assert {"DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_XID_ERRORS", "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL"} <= served
    assert served <= collectors, "the stand-in serves what the role's collectors file names"


def test_dcgm_exporter_unit(host: Any) -> None:
    if name(host) != GPU_HOST:
        assert not host.file("/etc/systemd/system/dcgm-exporter.service").exists
        return
    shown = dict(line.split("=", 1) for line in host.check_output(
        "systemctl show dcgm-exporter -p User -p NoNewPrivileges -p ProtectSystem -p DevicePolicy "
        "-p AmbientCapabilities").splitlines())
    assert shown["User"] == "dcgm-exporter" and shown["NoNewPrivileges"] == "yes" and shown["ProtectSystem"] == "strict"
    assert shown["DevicePolicy"] == "closed"
    assert shown["AmbientCapabilities"] == "cap_sys_admin"  # no host engine: embedded DCGM needs it (#407)


def test_driver_packages_held_and_pinned(host: Any) -> None:
    held = set(host.check_output("apt-mark showhold").split())
    if name(host) != GPU_HOST:
        assert not held & (DRIVER_PACKAGES | TOOLKIT_PACKAGES), "no GPU: nothing NVIDIA installed"
        return
    assert held >= DRIVER_PACKAGES | TOOLKIT_PACKAGES
    assert host.package("nvidia-driver").version == "535.216.01-1~standin"
    policy = host.check_output("apt-cache policy nvidia-fabricmanager-535 nvidia-driver")
    assert "535.216.01-1~standin" in policy
    preferences = host.file("/etc/apt/preferences.d/modelfleet-nvidia-driver").content_string
    assert "Pin: version 535.*" in preferences and "nvidia-fabricmanager*" in preferences
    assert "nvidia-container-toolkit" not in preferences


def test_nouveau_blacklisted_and_headers(host: Any) -> None:
    if name(host) != GPU_HOST:
        assert not host.file("/etc/modprobe.d/blacklist-nouveau.conf").exists
        return
    text = host.file("/etc/modprobe.d/blacklist-nouveau.conf").content_string
    assert "blacklist nouveau" in text and "options nouveau modeset=0" in text
    kernel = host.check_output("uname -r")
    assert host.package(f"linux-headers-{kernel}").is_installed


def test_persistence_daemon_runs(host: Any) -> None:
    if name(host) == GPU_HOST:
        assert host.service("nvidia-persistenced").is_running


def test_containerd_loads_the_merged_config(host: Any) -> None:
    """containerd's own loader (`containerd config dump`): the nvidia runtime, and what the host had, survive."""
    if name(host) != GPU_HOST:
        return
    dumped = tomllib.loads(host.check_output("containerd --config /etc/containerd/config.toml config dump"))
    cri = dumped["plugins"]["io.containerd.grpc.v1.cri"]
    runtimes = cri["containerd"]["runtimes"]
    assert runtimes["nvidia"]["options"]["BinaryName"] == "/usr/bin/nvidia-container-runtime"
    assert runtimes["nvidia"]["options"]["SystemdCgroup"] is True
    assert runtimes["runc"]["options"]["SystemdCgroup"] is True
    assert runtimes["kata"]["runtime_type"] == "io.containerd.kata.v2"
    assert cri["sandbox_image"] == "registry.k8s.io/pause:3.9"
    assert "# site configuration: kept" in host.file("/etc/containerd/config.toml").content_string


def test_dockerd_loads_the_merged_config(host: Any) -> None:
    """dockerd itself (Debian's 20.10, no --validate) started on the merged daemon.json, on a private socket."""
    if name(host) != GPU_HOST:
        return
    config = json.loads(host.file("/etc/docker/daemon.json").content_string)
    assert config["runtimes"]["nvidia"] == {"path": "/usr/bin/nvidia-container-runtime"}
    assert config["runtimes"]["crun"] == {"path": "/usr/bin/crun"} and config["log-opts"]["max-size"] == "10m"
    host.run("rm -rf /tmp/mfp-docker; mkdir -p /tmp/mfp-docker")
    host.run("nohup dockerd --config-file /etc/docker/daemon.json --data-root /tmp/mfp-docker/data "
             "--exec-root /tmp/mfp-docker/exec --pidfile /tmp/mfp-docker/pid -H unix:///tmp/mfp-docker/sock "
             "--iptables=false --bridge=none >/tmp/mfp-docker/log 2>&1 &")
    try:
        info = None
        for _ in range(60):
            answer = host.run("docker -H unix:///tmp/mfp-docker/sock info --format '{{json .}}'")
            if answer.rc == 0:
                info = json.loads(answer.stdout)
                break
            time.sleep(0.5)
        log = host.file("/tmp/mfp-docker/log").content_string
        assert info is not None, f"dockerd did not start on the merged configuration:\n{log[-3000:]}"
        assert {"nvidia", "crun", "runc"} <= set(info["Runtimes"])
        assert "https://mirror.example.internal/" in info["RegistryConfig"]["Mirrors"]
        assert info["LoggingDriver"] == "json-file"
    finally:
        host.run("kill $(cat /tmp/mfp-docker/pid) 2>/dev/null; sleep 1; rm -rf /tmp/mfp-docker")


def test_prometheus_scrapes_the_dcgm_target(host: Any) -> None:
    """The dcgm job lists the host gpu_facts found a GPU on (and only it), and the scrape is up."""
    if name(host) != "mfp-monitor":
        return
    targets: list[dict[str, Any]] = []
    for _ in range(60):
        answer = json.loads(host.check_output("curl -fsS 'http://127.0.0.1:9090/api/v1/targets?state=active'"))
        targets = [t for t in answer["data"]["activeTargets"] if t["labels"]["job"] == "dcgm"]
        if targets and all(t["health"] == "up" for t in targets):
            break
        time.sleep(2)
    assert [(t["labels"]["host"], t["health"]) for t in targets] == [(GPU_HOST, "up")], targets
    query = json.loads(host.check_output(
        "curl -fsS 'http://127.0.0.1:9090/api/v1/query?query=DCGM_FI_DEV_GPU_UTIL'"))["data"]["result"]
    assert [r["metric"]["host"] for r in query] == [GPU_HOST]


def playbook(*args: str) -> subprocess.CompletedProcess[str]:
    """The scenario's converge playbook, run again from the controller as molecule runs it."""
    project = SCENARIO.parents[1]
    # Molecule forces colour (ANSIBLE_FORCE_COLOR wins over ANSIBLE_NOCOLOR): turn it off for a readable recap.
    env = {**os.environ, "MOLECULE_SCENARIO_DIRECTORY": str(SCENARIO), "MOLECULE_PROJECT_DIRECTORY": str(project),
           "ANSIBLE_COLLECTIONS_PATH": str(project / ".cache/collections"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_FORCE_COLOR": "0", "PY_COLORS": "0"}
    return subprocess.run(["ansible-playbook", "-i", str(INVENTORY), str(SCENARIO / "converge.yml"), *args],
                          capture_output=True, text=True, timeout=1200, check=False, env=env)


def output_of(done: subprocess.CompletedProcess[str]) -> str:
    """Both streams without colour codes (ansible-core writes failures and warnings to stderr)."""
    return re.sub(r"\x1b\[[0-9;]*m", "", done.stdout + "\n" + done.stderr)


def changed_counts(output: str) -> dict[str, int]:
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)", output, re.M)}


def test_check_mode_run_changes_nothing() -> None:
    done = playbook("--check")
    assert done.returncode == 0, output_of(done)[-7000:]
    counts = changed_counts(output_of(done))
    assert set(counts) >= {GPU_HOST, "mfp-plain", "mfp-monitor"} and set(counts.values()) == {0}, counts


@pytest.mark.parametrize("version, message", [
    ("535.999.99",
     "nvidia-driver 535.999.99-* is not in the configured repositories (they offer: 535.216.01-1~standin)"),
])
def test_a_pin_the_repository_lacks_fails(version: str, message: str) -> None:
    done = playbook("--check", "--limit", GPU_HOST, "--tags", "nvidia_driver_packages",
                    "-e", f"nvidia_driver_version={version}")
    assert done.returncode != 0
    assert message in " ".join(output_of(done).split()), output_of(done)[-4000:]
